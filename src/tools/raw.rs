//! A tool's result as the bytes its MCP server sent: passed to the client without being built
//! into a tree of values (the tree of a result of many small items is tens of times its size).
//! What Warden needs of it, whether it is an error, is read by a scan that allocates nothing,
//! and the scan also checks the shape MCP gives a `CallToolResult` (an object whose `content`,
//! when present, is a list of objects that each name their `type`).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A checked `CallToolResult`, as received: the message it came in, kept whole (never copied
/// out of it), and where in it the result is.
#[derive(Debug)]
pub struct RawResult {
    source: String,
    range: std::ops::Range<usize>,
    pub is_error: bool,
    /// Whether the object has a `resultType` member of its own.
    has_result_type: bool,
}

/// Why a result was not passed through.
#[derive(Debug, PartialEq, Eq)]
pub enum RawRefusal {
    /// Not the shape of a `CallToolResult`.
    Shape,
    /// A `resultType` other than `complete` (an input request, 2026-07-28): read as a typed
    /// result instead.
    NotComplete,
}

#[derive(Deserialize)]
struct Shape<'a> {
    #[serde(default)]
    content: Option<Items>,
    #[serde(default, rename = "isError")]
    is_error: Option<bool>,
    #[serde(default, rename = "resultType", borrow)]
    result_type: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(rename = "type", borrow)]
    _kind: std::borrow::Cow<'a, str>,
}

/// A list of content items, checked one by one and kept by none.
struct Items;

impl<'de> Deserialize<'de> for Items {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Each;
        impl<'de> Visitor<'de> for Each {
            type Value = Items;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of content items")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Items, A::Error> {
                while seq.next_element::<Item<'de>>()?.is_some() {}
                Ok(Items)
            }
        }
        d.deserialize_seq(Each)
    }
}

impl RawResult {
    /// Checks `json` (one JSON value, already known to be JSON) as a `CallToolResult`.
    pub fn check(json: Box<RawValue>) -> Result<Self, (RawRefusal, String)> {
        let source = String::from(Box::<str>::from(json));
        let whole = 0..source.len();
        Self::check_within(source, whole)
    }

    /// Checks the JSON value at `range` of `source` (a message already known to be JSON) as a
    /// `CallToolResult`, keeping `source` as it is; `source` back when refused.
    pub fn check_within(source: String, range: std::ops::Range<usize>) -> Result<Self, (RawRefusal, String)> {
        let Some(json) = source.get(range.clone()) else { return Err((RawRefusal::Shape, source)) };
        let shape = match serde_json::from_str::<Shape<'_>>(json) {
            Ok(shape) => shape,
            Err(_) => return Err((RawRefusal::Shape, source)),
        };
        let _ = shape.content;
        let complete = matches!(shape.result_type.as_deref(), None | Some("complete"));
        let (is_error, has_result_type) = (shape.is_error.unwrap_or(false), shape.result_type.is_some());
        if !complete {
            return Err((RawRefusal::NotComplete, source));
        }
        Ok(Self { source, range, is_error, has_result_type })
    }

    /// The result's bytes as they came, in the buffer they came in (no copy), when they go out
    /// unchanged: no `resultType` to add (2026-07-28) or remove (`legacy`). Else `self` back.
    pub fn into_bytes(self, legacy: bool) -> Result<bytes::Bytes, Self> {
        if !self.unchanged(legacy) || self.source.get(self.range.clone()).is_none() {
            return Err(self);
        }
        Ok(bytes::Bytes::from(self.source).slice(self.range))
    }

    /// Whether the result goes out as it came for `legacy` (the revisions before 2026-07-28,
    /// which have no `resultType`) or not: it has the member exactly where the revision wants it.
    fn unchanged(&self, legacy: bool) -> bool {
        legacy != self.has_result_type
    }

    /// The length of the result's text.
    pub fn text_len(&self) -> usize {
        self.range.len()
    }

    fn text(&self) -> &str {
        self.source.get(self.range.clone()).unwrap_or("{}")
    }

    /// The result as JSON, with `resultType: "complete"` (2026-07-28) or without any
    /// (`legacy`, the revisions before it).
    pub fn to_json(&self, legacy: bool) -> std::borrow::Cow<'_, str> {
        let text = self.text();
        if self.unchanged(legacy) {
            return std::borrow::Cow::Borrowed(text);
        }
        if !legacy {
            // An object (checked): the member goes first.
            let rest = text.trim_start().strip_prefix('{').unwrap_or_default().trim_start();
            let sep = if rest.starts_with('}') { "" } else { "," };
            std::borrow::Cow::Owned(format!("{{\"resultType\":\"complete\"{sep}{rest}"))
        } else {
            // The member cut out of the text, with the comma that joined it to the others.
            if let Some(cut) = result_type_member(text) {
                return std::borrow::Cow::Owned(format!("{}{}", &text[..cut.start], &text[cut.end..]));
            }
            // A key written with escapes: rebuilt from its members, each kept as it came.
            let map: std::collections::BTreeMap<std::borrow::Cow<'_, str>, &RawValue> = serde_json::from_str(text).unwrap_or_default();
            let kept: std::collections::BTreeMap<_, _> = map.into_iter().filter(|(k, _)| k != "resultType").collect();
            std::borrow::Cow::Owned(serde_json::to_string(&kept).unwrap_or_else(|_| "{}".into()))
        }
    }
}

/// An object's key as the input holds it: its text borrowed from the input, or `None` when it is
/// written with escapes (serde's `Cow` would copy every key).
struct Key<'de>(Option<&'de str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Some(v)))
            }
            fn visit_str<E>(self, _: &str) -> Result<Key<'de>, E> {
                Ok(Key(None))
            }
        }
        d.deserialize_str(Text)
    }
}

/// Where the top-level `resultType` member of `text` (a JSON object) is, with the comma that
/// joins it to its neighbours: the bytes to cut so the rest reads as the same object without it.
/// `None` when there is none, or its key is written with escapes (not found where it stands).
fn result_type_member(text: &str) -> Option<std::ops::Range<usize>> {
    struct Find<'t>(&'t str);
    impl<'de, 't> Visitor<'de> for Find<'t> {
        type Value = Option<std::ops::Range<usize>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let base = self.0.as_ptr() as usize;
            let mut found = None;
            while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                let value: &'de RawValue = map.next_value()?;
                if let (Some(k), None) = (key, &found)
                    && k == "resultType"
                {
                    // The key's text is the input's own: its opening quote is the byte before.
                    let start = (k.as_ptr() as usize).saturating_sub(base).saturating_sub(1);
                    let end = (value.get().as_ptr() as usize).saturating_sub(base) + value.get().len();
                    found = Some(start..end);
                }
            }
            Ok(found)
        }
    }
    let mut reader = serde_json::Deserializer::from_str(text);
    let member = serde::Deserializer::deserialize_map(&mut reader, Find(text)).ok()??;
    let bytes = text.as_bytes();
    let after = member.end + bytes[member.end..].iter().take_while(|b| b.is_ascii_whitespace()).count();
    if bytes.get(after) == Some(&b',') {
        // Not the last member: it goes with the comma after it.
        let next = after + 1 + bytes[after + 1..].iter().take_while(|b| b.is_ascii_whitespace()).count();
        return Some(member.start..next);
    }
    // The last member: it goes with the comma before it, if there is one.
    let before = bytes[..member.start].iter().rposition(|b| !b.is_ascii_whitespace())?;
    Some(if bytes[before] == b',' { before..member.end } else { member.start..member.end })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn results_are_checked_without_being_built() {
        let r = RawResult::check(raw(r#"{"content":[{"type":"text","text":"a"}],"isError":true}"#)).unwrap();
        assert!(r.is_error);
        assert!(RawResult::check(raw(r#"{"content":[{"text":"no type"}]}"#)).is_err());
        assert!(RawResult::check(raw(r#"{"content":{"type":"text"}}"#)).is_err());
        assert!(RawResult::check(raw(r#"[1]"#)).is_err());
        let (why, _) = RawResult::check(raw(r#"{"resultType":"input_required","inputRequests":{}}"#)).unwrap_err();
        assert_eq!(why, RawRefusal::NotComplete);
    }

    #[test]
    fn result_type_is_added_or_removed_as_the_revision_needs() {
        let r = RawResult::check(raw(r#"{"content":[],"isError":false}"#)).unwrap();
        let with: serde_json::Value = serde_json::from_str(&r.to_json(false)).unwrap();
        assert_eq!(with, serde_json::json!({"resultType": "complete", "content": [], "isError": false}));
        assert_eq!(r.to_json(true), r#"{"content":[],"isError":false}"#);
        let r = RawResult::check(raw(r#"{"resultType":"complete","content":[{"type":"text","text":"x"}]}"#)).unwrap();
        let without: serde_json::Value = serde_json::from_str(&r.to_json(true)).unwrap();
        assert_eq!(without, serde_json::json!({"content": [{"type": "text", "text": "x"}]}));
        let empty = RawResult::check(raw("{}")).unwrap();
        assert_eq!(empty.to_json(false), r#"{"resultType":"complete"}"#);
    }

    /// `resultType` is cut out wherever it stands, its neighbours and any nested `resultType`
    /// left as they are; a key written with escapes is still found (by rebuilding).
    #[test]
    fn result_type_is_cut_out_wherever_it_stands() {
        let cases = [
            r#"{"resultType":"complete","content":[],"isError":false}"#,
            r#"{"content":[],"resultType":"complete","isError":false}"#,
            r#"{"content":[],"isError":false,"resultType":"complete"}"#,
            r#"{ "content" : [] , "resultType" : "complete" , "isError" : false }"#,
            "{\n  \"content\": [],\n  \"isError\": false,\n  \"resultType\": \"complete\"\n}",
            r#"{"content":[],"isError":false,"result\u0054ype":"complete"}"#,
        ];
        for text in cases {
            let r = RawResult::check(raw(text)).unwrap();
            let out = r.to_json(true);
            let parsed: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{text} -> {out}: {e}"));
            assert_eq!(parsed, serde_json::json!({"content": [], "isError": false}), "{text} -> {out}");
        }
        let only = RawResult::check(raw(r#"{"resultType":"complete"}"#)).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&only.to_json(true)).unwrap(), serde_json::json!({}));
        let nested = r#"{"resultType":"complete","content":[],"structuredContent":{"resultType":"mine"}}"#;
        let r = RawResult::check(raw(nested)).unwrap();
        assert_eq!(r.to_json(true), r#"{"content":[],"structuredContent":{"resultType":"mine"}}"#);
    }

    #[test]
    fn a_result_that_goes_out_unchanged_is_handed_over_in_its_own_buffer() {
        let message = r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","content":[]}}"#.to_owned();
        let start = message.find("{\"resultType").unwrap();
        let check = || RawResult::check_within(message.clone(), start..message.len() - 1).unwrap();
        // 2026-07-28 keeps the member the server wrote: the bytes as they came.
        assert_eq!(check().into_bytes(false).unwrap(), check().to_json(false).as_bytes());
        // The older revisions lose it: not unchanged, so not handed over.
        assert!(check().into_bytes(true).is_err());
        let plain = RawResult::check(raw(r#"{"content":[]}"#)).unwrap();
        assert_eq!(plain.into_bytes(true).unwrap(), r#"{"content":[]}"#.as_bytes());
        assert!(RawResult::check(raw(r#"{"content":[]}"#)).unwrap().into_bytes(false).is_err(), "2026-07-28 adds the member");
    }
}
