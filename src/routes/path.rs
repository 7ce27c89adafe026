//! The path under a route, checked before anything is sent. The upstream URL is built from the
//! configured base and this path only, so a path that could change where the request goes is
//! refused outright rather than normalized: dot segments (`..`, `.`, encoded or not), encoded
//! separators (`%2F`, `%5C`), backslashes, empty segments (`//host`), double encoding, control
//! characters and a scheme (`http:`) in the first segment. A segment is a dot segment also
//! when only its `;params` follow the dots (`..;jsessionid=x`), as servlet containers read it.

/// A path that passed: as received (percent-encoded, for the upstream URL) and decoded once
/// (for allow-lists and policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPath {
    pub raw: String,
    pub decoded: String,
}

/// Checks `rest`, the request path after `/proxy/{name}` (empty or starting with `/`).
pub fn check(rest: &str) -> Result<CheckedPath, &'static str> {
    if rest.is_empty() {
        return Ok(CheckedPath { raw: String::new(), decoded: "/".into() });
    }
    if !rest.starts_with('/') {
        return Err("path_invalid");
    }
    let mut decoded = String::with_capacity(rest.len());
    let count = rest[1..].split('/').count();
    for (i, segment) in rest[1..].split('/').enumerate() {
        // Only a trailing slash may leave a segment empty.
        if segment.is_empty() && i + 1 != count {
            return Err("path_empty_segment");
        }
        let bytes: Vec<u8> = percent_encoding::percent_decode_str(segment).collect();
        let text = std::str::from_utf8(&bytes).map_err(|_| "path_invalid")?;
        // Tomcat, Jetty and Spring drop a segment's `;params` before resolving dot segments,
        // so `..;x` (or `%2e%2e;`, `..%3b`) is `..` to them.
        if matches!(text.split(';').next(), Some("." | "..")) {
            return Err("path_traversal");
        }
        if text.contains(['/', '\\']) || segment.contains('\\') {
            return Err("path_encoded_separator");
        }
        if text.chars().any(char::is_control) {
            return Err("path_invalid");
        }
        // `%252e%252e` decodes to `%2e%2e`: a second decoding downstream would make it `..`.
        if has_escape(text) {
            return Err("path_double_encoded");
        }
        if i == 0 && text.contains(':') {
            return Err("path_absolute_url");
        }
        decoded.push('/');
        decoded.push_str(text);
    }
    Ok(CheckedPath { raw: rest.to_owned(), decoded })
}

fn has_escape(text: &str) -> bool {
    let b = text.as_bytes();
    b.windows(3).any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

/// Whether `path` (decoded) is `prefix` or under it, on a segment boundary.
pub fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_host_tricks_are_refused() {
        for (path, code) in [
            ("/..", "path_traversal"),
            ("/a/../b", "path_traversal"),
            ("/a/%2e%2e/b", "path_traversal"),
            ("/a/%2E%2e", "path_traversal"),
            ("/a/.%2e/b", "path_traversal"),
            ("/./a", "path_traversal"),
            ("/public/..;/x", "path_traversal"),
            ("/public/%2e%2e;/x", "path_traversal"),
            ("/public/..%3b/x", "path_traversal"),
            ("/public/..%3B/x", "path_traversal"),
            ("/public/.;/x", "path_traversal"),
            ("/public/..;jsessionid=x/x", "path_traversal"),
            ("/a/%2F../b", "path_encoded_separator"),
            ("/a%2fb", "path_encoded_separator"),
            ("/a%5cb", "path_encoded_separator"),
            ("/a\\b", "path_encoded_separator"),
            ("//evil.example/x", "path_empty_segment"),
            ("/a//b", "path_empty_segment"),
            ("/%252e%252e/x", "path_double_encoded"),
            ("/a%00b", "path_invalid"),
            ("/a%0d%0aX-Injected:%201", "path_invalid"),
            ("/http:/evil.example", "path_absolute_url"),
            ("/https%3A/evil.example", "path_absolute_url"),
            ("x", "path_invalid"),
            ("/%ff", "path_invalid"),
        ] {
            assert_eq!(check(path), Err(code), "{path}");
        }
    }

    #[test]
    fn ordinary_paths_pass_decoded_once() {
        assert_eq!(check("").unwrap().decoded, "/");
        assert_eq!(check("/").unwrap().decoded, "/");
        let p = check("/v1/contacts/a%20b/").unwrap();
        assert_eq!((p.raw.as_str(), p.decoded.as_str()), ("/v1/contacts/a%20b/", "/v1/contacts/a b/"));
        assert_eq!(check("/v1/x:y").unwrap().decoded, "/v1/x:y", "a colon past the first segment is data");
        assert_eq!(check("/a/..b/c.").unwrap().decoded, "/a/..b/c.");
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(under("/v1/contacts", "/v1/contacts"));
        assert!(under("/v1/contacts/7", "/v1/contacts"));
        assert!(under("/v1/contacts/7", "/v1/contacts/"));
        assert!(!under("/v1/contactsX", "/v1/contacts"));
        assert!(!under("/v1", "/v1/contacts"));
        assert!(under("/anything", "/"));
    }

    proptest::proptest! {
        /// Whatever passes has no dot segment, no empty inner segment and no separator inside a
        /// segment once decoded, so joining it to a base cannot leave the base's path.
        #[test]
        fn nothing_that_passes_can_climb(path in "(/([a-z.%25/\\\\:]|%2e|%2E|%2f|%5c|%25){0,6}){0,5}") {
            if let Ok(p) = check(&path) {
                let segments: Vec<&str> = p.decoded[1..].split('/').collect();
                for (i, s) in segments.iter().enumerate() {
                    proptest::prop_assert!(*s != ".." && *s != ".");
                    proptest::prop_assert!(!s.is_empty() || i + 1 == segments.len());
                    proptest::prop_assert!(!s.contains('\\'));
                }
                let base = url::Url::parse("https://up.example/base/").unwrap_or_else(|e| panic!("{e}"));
                let joined = url::Url::parse(&format!("https://up.example/base{}", p.raw)).unwrap_or_else(|e| panic!("{e}"));
                proptest::prop_assert_eq!(joined.host_str(), base.host_str());
                proptest::prop_assert!(joined.path().starts_with("/base"), "{}", joined.path());
            }
        }
    }
}
