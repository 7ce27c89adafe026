//! URL templates: `https://api.example.com/users/{user}/events`. Placeholders are allowed in
//! the path only, so an argument can never choose the host, and each value is encoded as one
//! path segment, so it can never add segments or walk up with `..`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// Everything but RFC 3986 unreserved characters is encoded, `/` included.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Param(String),
}

#[derive(Debug, Clone)]
pub struct UrlTemplate {
    parts: Vec<Part>,
}

impl UrlTemplate {
    pub fn parse(template: &str) -> Result<Self, String> {
        let scheme_end = template.find("://").ok_or("must be an absolute http(s) URL")?;
        let path_start = template[scheme_end + 3..].find('/').map(|i| i + scheme_end + 3);
        let query_start = template.find('?');
        let mut parts = Vec::new();
        let mut rest = template;
        let mut offset = 0;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').ok_or("unterminated { in URL")? + open;
            let name = &rest[open + 1..close];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(format!("invalid placeholder {{{name}}}"));
            }
            let at = offset + open;
            if path_start.is_none_or(|p| at < p) {
                return Err("placeholders are allowed in the path only, never in scheme, host or port".into());
            }
            if query_start.is_some_and(|q| at > q) {
                return Err("placeholders are not allowed in the query; map arguments with `query`".into());
            }
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            parts.push(Part::Param(name.to_owned()));
            offset += close + 1;
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err("unmatched } in URL".into());
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        let template = Self { parts };
        let sample = template.render(|_| Some("x".to_owned())).map_err(|_| "invalid URL".to_owned())?;
        match url::Url::parse(&sample) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.fragment().is_none() => Ok(template),
            _ => Err("must be an absolute http(s) URL without fragment".into()),
        }
    }

    /// The placeholder names, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Param(n) => Some(n.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Fills placeholders from arguments. A missing value, an empty one, `.` or `..`, or a
    /// non-scalar is refused with the argument name.
    pub fn expand(&self, args: &serde_json::Map<String, Value>) -> Result<url::Url, String> {
        let rendered = self.render(|name| match args.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })?;
        url::Url::parse(&rendered).map_err(|_| "arguments produce an invalid URL".to_owned())
    }

    fn render(&self, value: impl Fn(&str) -> Option<String>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Param(name) => {
                    let v = value(name).ok_or_else(|| format!("argument {name:?} is required as a string, number or boolean"))?;
                    if v.is_empty() || v == "." || v == ".." {
                        return Err(format!("argument {name:?} is not a valid path segment"));
                    }
                    out.extend(utf8_percent_encode(&v, SEGMENT));
                }
            }
        }
        Ok(out)
    }
}
