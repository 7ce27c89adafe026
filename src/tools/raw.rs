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

    fn text(&self) -> &str {
        self.source.get(self.range.clone()).unwrap_or("{}")
    }

    /// The result as JSON, with `resultType: "complete"` (2026-07-28) or without any
    /// (`legacy`, the revisions before it).
    pub fn to_json(&self, legacy: bool) -> std::borrow::Cow<'_, str> {
        let text = self.text();
        match (legacy, self.has_result_type) {
            (false, true) | (true, false) => std::borrow::Cow::Borrowed(text),
            (false, false) => {
                // An object (checked): the member goes first.
                let rest = text.trim_start().strip_prefix('{').unwrap_or_default().trim_start();
                let sep = if rest.starts_with('}') { "" } else { "," };
                std::borrow::Cow::Owned(format!("{{\"resultType\":\"complete\"{sep}{rest}"))
            }
            (true, true) => {
                // Rebuilt from its members, each kept as it came, without `resultType`.
                let map: std::collections::BTreeMap<std::borrow::Cow<'_, str>, &RawValue> = serde_json::from_str(text).unwrap_or_default();
                let kept: std::collections::BTreeMap<_, _> = map.into_iter().filter(|(k, _)| k != "resultType").collect();
                std::borrow::Cow::Owned(serde_json::to_string(&kept).unwrap_or_else(|_| "{}".into()))
            }
        }
    }
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
}
