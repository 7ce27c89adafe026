//! What a federated server answers, read within bounds and attributed to the request it
//! answers: one decoder for every transport (a stdio line, an HTTP body, an SSE event).
//!
//! - A message that cannot be read (not UTF-8, not JSON-RPC, nested deeper than
//!   [`MAX_DEPTH`]) or that is larger than the server's `max_response_bytes` fails the request
//!   it answers at once, with a JSON-RPC error Warden makes for it (codes [`TOO_LARGE`] and
//!   [`INVALID`], which `link` turns into `upstream_too_large` and `upstream_invalid_response`).
//!   Its id is found by a streaming scan even in a line too large to keep.
//! - When no id can be found, or the id answers no request in flight, every request in flight
//!   on that session fails the same way: any of them could have been the one answered, and
//!   none is left to wait for its timeout.
//! - A `tools/call` result is not built into rmcp's types: its bytes are checked
//!   ([`RawResult`]) and kept in the link's [`Stash`]; rmcp is handed a small stand-in naming
//!   it, which `link` exchanges for the bytes.
//!
//! Never panics on what a server sends, and never keeps more than one message's bound.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rmcp::model::{ErrorCode, ErrorData, RequestId, ServerJsonRpcMessage, ServerResult};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::frame::Scan;
use crate::tools::RawResult;
use crate::tools::raw::RawRefusal;

/// Deeper nesting than this is refused (serde_json's own recursion limit).
pub const MAX_DEPTH: usize = 128;
/// The error Warden answers a request with when the server's answer was too large.
pub const TOO_LARGE: i32 = -32097;
/// The error Warden answers a request with when the server's answer could not be read.
pub const INVALID: i32 = -32098;
/// The `_meta` key of the stand-in result that names stashed bytes.
const STASH_KEY: &str = "warden/stash";
/// Stashed results nobody collected (their call was cancelled or timed out) go after this.
const STASH_TTL: Duration = Duration::from_secs(600);

/// Why an answer failed its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    TooLarge,
    Invalid(&'static str),
}

impl Unreadable {
    /// The JSON-RPC error a request gets for it.
    pub fn error(self) -> ErrorData {
        match self {
            Self::TooLarge => ErrorData::new(
                ErrorCode(TOO_LARGE),
                "the server's answer is larger than max_response_bytes",
                Some(serde_json::json!({"code": "upstream_too_large"})),
            ),
            Self::Invalid(why) => ErrorData::new(ErrorCode(INVALID), why, Some(serde_json::json!({"code": "upstream_invalid_response"}))),
        }
    }

    /// The failure of the request, as a message for rmcp.
    pub fn answer(self, id: RequestId) -> ServerJsonRpcMessage {
        ServerJsonRpcMessage::error(self.error(), Some(id))
    }

    /// A Warden-made error back into what it stands for.
    pub fn from_error(error: &ErrorData) -> Option<Self> {
        let code = error.data.as_ref().and_then(|d| d.get("code")).and_then(|c| c.as_str());
        match (error.code.0, code) {
            (TOO_LARGE, Some("upstream_too_large")) => Some(Self::TooLarge),
            (INVALID, Some("upstream_invalid_response")) => Some(Self::Invalid(invalid_reason(&error.message))),
            _ => None,
        }
    }
}

/// The static words of an [`Unreadable::Invalid`] back from its message.
fn invalid_reason(message: &str) -> &'static str {
    const REASONS: &[&str] = &[NOT_UTF8, TOO_DEEP, NOT_JSON_RPC, NOT_A_RESULT, NOT_ANSWERED, UNKNOWN_ID];
    REASONS.iter().find(|r| **r == message).copied().unwrap_or(NOT_JSON_RPC)
}

pub const NOT_UTF8: &str = "the answer is not UTF-8";
pub const TOO_DEEP: &str = "the answer is nested too deeply";
pub const NOT_JSON_RPC: &str = "the answer is not a JSON-RPC message MCP defines";
pub const NOT_A_RESULT: &str = "the answer is not a CallToolResult";
pub const NOT_ANSWERED: &str = "the server accepted a request without answering it";
pub const UNKNOWN_ID: &str = "the server answered a request that was not sent (an unknown id)";

/// One message read: for rmcp, or a failure for the request it answers (when one is known).
#[derive(Debug)]
pub enum Decoded {
    Message(ServerJsonRpcMessage),
    Unreadable { id: Option<RequestId>, why: Unreadable },
}

/// Results of `tools/call`, as received, until their call collects them.
#[derive(Default)]
pub struct Stash {
    results: dashmap::DashMap<String, (Instant, RawResult)>,
}

impl Stash {
    /// Keeps `raw`; the stand-in result that names it.
    fn put(&self, raw: RawResult) -> rmcp::model::CallToolResult {
        let now = Instant::now();
        self.results.retain(|_, (at, _)| now.duration_since(*at) < STASH_TTL);
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.results.insert(token.clone(), (now, raw));
        let mut stand_in = rmcp::model::CallToolResult::success(Vec::new());
        let mut meta = serde_json::Map::new();
        meta.insert(STASH_KEY.into(), serde_json::Value::String(token));
        stand_in.meta = Some(rmcp::model::MetaObject(meta));
        stand_in
    }

    /// The bytes a stand-in result names (once); `None` for a result of rmcp's types.
    pub fn take_for(&self, result: &rmcp::model::CallToolResult) -> Option<RawResult> {
        if !result.content.is_empty() {
            return None;
        }
        let token = result.meta.as_ref()?.0.get(STASH_KEY)?.as_str()?;
        self.results.remove(token).map(|(_, (_, raw))| raw)
    }
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(default)]
    id: Option<RequestId>,
    #[serde(default, borrow)]
    method: Option<&'a RawValue>,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
}

/// Reads one message of at most the bound. `is_call` says whether an id is that of a
/// `tools/call` in flight, whose result is passed through: kept in the message it came in,
/// never copied out of it.
pub fn decode(bytes: Vec<u8>, scan: &Scan, is_call: impl Fn(&RequestId) -> bool, stash: &Stash) -> Decoded {
    let scanned = || scan.id.as_deref().and_then(|id| serde_json::from_slice::<RequestId>(id).ok());
    let unreadable = |why| Decoded::Unreadable { id: scanned(), why: Unreadable::Invalid(why) };
    if scan.depth > MAX_DEPTH {
        return unreadable(TOO_DEEP);
    }
    let Ok(text) = String::from_utf8(bytes) else { return unreadable(NOT_UTF8) };
    let Ok(peek) = serde_json::from_str::<Peek<'_>>(&text) else { return unreadable(NOT_JSON_RPC) };
    let (id, result) = (peek.id, peek.result.filter(|_| peek.method.is_none()));
    // Where the result is in the message: a `RawValue` borrows its text from it.
    let range = result.map(|r| {
        let start = (r.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
        start..start + r.get().len()
    });
    let text = match (range, id) {
        (Some(range), Some(id)) if is_call(&id) => match RawResult::check_within(text, range) {
            Ok(raw) => {
                let stand_in = stash.put(raw);
                return Decoded::Message(ServerJsonRpcMessage::response(ServerResult::CallToolResult(stand_in), id));
            }
            Err((RawRefusal::Shape, _)) => return Decoded::Unreadable { id: Some(id), why: Unreadable::Invalid(NOT_A_RESULT) },
            // An input request (2026-07-28) is read into rmcp's types below.
            Err((RawRefusal::NotComplete, text)) => text,
        },
        (_, _) => text,
    };
    match serde_json::from_str::<ServerJsonRpcMessage>(&text) {
        Ok(message) => Decoded::Message(message),
        Err(_) => {
            let id = serde_json::from_str::<Peek<'_>>(&text).ok().and_then(|p| p.id);
            Decoded::Unreadable { id: id.or_else(scanned), why: Unreadable::Invalid(NOT_JSON_RPC) }
        }
    }
}

/// The requests in flight on one session (what they asked), and those recently given up on
/// (cancelled or timed out), whose late answers are dropped quietly as the spec allows.
#[derive(Default)]
pub struct Ledger {
    inner: Mutex<LedgerInner>,
}

#[derive(Default)]
struct LedgerInner {
    in_flight: HashMap<RequestId, bool>,
    retired: VecDeque<RequestId>,
}

/// Requests remembered as given up on; and the most in flight before the oldest are forgotten
/// (rmcp answers its own timeouts, so a request can leave without an answer).
const RETIRED: usize = 256;
const IN_FLIGHT: usize = 10_000;

/// What to do with an answer, by its id.
#[derive(Debug, PartialEq, Eq)]
pub enum Known {
    /// It answers a request in flight.
    InFlight,
    /// It answers a request given up on: drop it.
    Late,
    /// It answers nothing sent.
    Unknown,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A request sent; `call` for a `tools/call`.
    pub fn sent(&self, id: RequestId, call: bool) {
        let mut inner = self.lock();
        if inner.in_flight.len() >= IN_FLIGHT {
            inner.in_flight.clear();
        }
        inner.in_flight.insert(id, call);
    }

    /// A request the client gave up on (`notifications/cancelled`).
    pub fn cancelled(&self, id: &RequestId) {
        let mut inner = self.lock();
        if inner.in_flight.remove(id).is_some() {
            inner.retired.push_back(id.clone());
            if inner.retired.len() > RETIRED {
                inner.retired.pop_front();
            }
        }
    }

    pub fn is_call(&self, id: &RequestId) -> bool {
        self.lock().in_flight.get(id).copied().unwrap_or(false)
    }

    /// An answer to `id` arrived: whether it was expected (and it is no longer in flight).
    pub fn answered(&self, id: &RequestId) -> Known {
        let mut inner = self.lock();
        if inner.in_flight.remove(id).is_some() {
            Known::InFlight
        } else if inner.retired.contains(id) {
            Known::Late
        } else {
            Known::Unknown
        }
    }

    /// Every request in flight, now failed.
    pub fn fail_all(&self) -> Vec<RequestId> {
        self.lock().in_flight.drain().map(|(id, _)| id).collect()
    }
}

/// The id a message answers, if it is an answer.
pub fn answer_id(message: &ServerJsonRpcMessage) -> Option<&RequestId> {
    match message {
        ServerJsonRpcMessage::Response(r) => Some(&r.id),
        ServerJsonRpcMessage::Error(e) => e.id.as_ref(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::frame::Scanner;

    fn scan(text: &[u8]) -> Scan {
        let mut s = Scanner::default();
        s.feed(text);
        s.finish()
    }

    fn decode_call(text: &[u8], stash: &Stash) -> Decoded {
        decode(text.to_vec(), &scan(text), |_| true, stash)
    }

    #[test]
    fn a_call_result_is_stashed_as_it_came_and_collected_once() {
        let stash = Stash::default();
        let text = br#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"hi"}],"isError":true}}"#;
        let Decoded::Message(ServerJsonRpcMessage::Response(r)) = decode_call(text, &stash) else { panic!() };
        assert_eq!(r.id, RequestId::Number(3));
        let ServerResult::CallToolResult(stand_in) = r.result else { panic!() };
        let raw = stash.take_for(&stand_in).expect("stashed");
        assert!(raw.is_error);
        assert_eq!(raw.to_json(true), r#"{"content":[{"type":"text","text":"hi"}],"isError":true}"#);
        assert!(stash.take_for(&stand_in).is_none(), "collected once");

        // Found where it is in the message, whatever comes around it.
        let text = " { \"result\" :\t{\"content\":[{\"type\":\"text\",\"text\":\"é\"}]} , \"jsonrpc\":\"2.0\",\"id\":4 }\n".as_bytes();
        let Decoded::Message(ServerJsonRpcMessage::Response(r)) = decode_call(text, &stash) else { panic!() };
        let ServerResult::CallToolResult(stand_in) = r.result else { panic!() };
        let raw = stash.take_for(&stand_in).expect("stashed");
        assert_eq!(raw.to_json(true), r#"{"content":[{"type":"text","text":"é"}]}"#);
    }

    #[test]
    fn unreadable_answers_name_the_request_they_answer() {
        let stash = Stash::default();
        let deep = format!(r#"{{"jsonrpc":"2.0","id":5,"result":{{"x":{}{}}}}}"#, "[".repeat(200), "]".repeat(200));
        let cases: [(&[u8], Unreadable); 4] = [
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"\xff\"}]}}",
                Unreadable::Invalid(NOT_UTF8),
            ),
            (br#"{"jsonrpc":"2.0","id":5,"result":{"content":"nope"}}"#, Unreadable::Invalid(NOT_A_RESULT)),
            (br#"{"jsonrpc":"2.0","id":5,"result":{"content":[]},"#, Unreadable::Invalid(NOT_JSON_RPC)),
            (deep.as_bytes(), Unreadable::Invalid(TOO_DEEP)),
        ];
        for (text, why) in cases {
            match decode_call(text, &stash) {
                Decoded::Unreadable { id, why: got } => assert_eq!((id, got), (Some(RequestId::Number(5)), why)),
                other => panic!("{other:?}"),
            }
        }
        let Decoded::Unreadable { id: None, .. } = decode_call(b"garbage", &stash) else { panic!() };
    }

    #[test]
    fn warden_made_errors_map_back() {
        for why in [Unreadable::TooLarge, Unreadable::Invalid(UNKNOWN_ID), Unreadable::Invalid(TOO_DEEP)] {
            assert_eq!(Unreadable::from_error(&why.error()), Some(why));
        }
        assert_eq!(Unreadable::from_error(&ErrorData::invalid_params("x", None)), None);
    }

    #[test]
    fn the_ledger_tells_late_answers_from_unknown_ones() {
        let ledger = Ledger::default();
        ledger.sent(RequestId::Number(1), true);
        ledger.sent(RequestId::Number(2), false);
        assert!(ledger.is_call(&RequestId::Number(1)) && !ledger.is_call(&RequestId::Number(2)));
        ledger.cancelled(&RequestId::Number(1));
        assert_eq!(ledger.answered(&RequestId::Number(1)), Known::Late);
        assert_eq!(ledger.answered(&RequestId::Number(9)), Known::Unknown);
        assert_eq!(ledger.fail_all(), vec![RequestId::Number(2)]);
        assert_eq!(ledger.answered(&RequestId::Number(2)), Known::Unknown);
    }
}
