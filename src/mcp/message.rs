//! One JSON-RPC message, read once: a strict parse (duplicate member names refused, so no two
//! readers can see different values), the shape checks MCP needs before anything acts on it,
//! and one typed message (rmcp's model types) that every later stage reads. The body's bytes
//! are parsed once; the typed message is built by moving the parsed values, not by reading the
//! bytes again.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use rmcp::model::{CallToolRequestParams, ClientJsonRpcMessage, InitializeRequestParams, RequestMetaObject};

use crate::error::GatewayError;

/// A refused message: its id when it could be read, and why.
pub type Refused = Box<(Option<Value>, GatewayError)>;

/// One checked JSON-RPC message.
#[derive(Debug)]
pub struct Message {
    /// The id as sent (for refusals and audit, which echo it as JSON).
    pub id: Option<Value>,
    pub method: Option<String>,
    /// A request's `params._meta` (2026-07-28 carries the request's revision, the client's
    /// identity and capabilities in it).
    pub meta: Option<RequestMetaObject>,
    /// The message, typed.
    pub kind: Kind,
}

/// A message by what it asks, with its params in rmcp's types. The four requests Warden serves
/// are read straight into their params type; everything else is read as rmcp's whole
/// `ClientJsonRpcMessage` (whose untagged enums buffer and retry, several times the cost).
#[derive(Debug)]
pub enum Kind {
    Initialize(Box<InitializeRequestParams>),
    Ping,
    ListTools,
    CallTool(Box<CallToolRequestParams>),
    /// A notification, a response, `server/discover`, or a federated server's resources,
    /// prompts and completions.
    Other(Box<ClientJsonRpcMessage>),
}

const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// JSON-RPC 2.0 as MCP uses it: one object (batches were removed in 2025-06-18), `jsonrpc`
/// exactly "2.0", an id that is a string or an integer, a string method, object params, and an
/// id on every request that is not a notification. The result must also be a message rmcp can
/// read, so that no malformed body reaches it and comes back as a plain-text 415.
///
/// `unserved` judges a request's method first (given whether `_meta` names a revision), so a
/// method the server does not serve is refused as such, whatever its params.
pub fn check_message(bytes: &[u8], unserved: &dyn Fn(&str, bool) -> Option<GatewayError>) -> Result<Message, Refused> {
    let value = match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(v)) => v,
        // Valid JSON that the strict reader refused has a repeated member name. (Skipping a
        // string does not check its UTF-8: text that is not UTF-8 is not JSON, a parse error.)
        Err(_) if std::str::from_utf8(bytes).is_ok() && serde_json::from_slice::<de::IgnoredAny>(bytes).is_ok() => {
            return Err(Box::new((None, GatewayError::InvalidRequest("a JSON object repeats a member name"))));
        }
        Err(_) => return Err(Box::new((None, GatewayError::Parse))),
    };
    let obj = match &value {
        Value::Object(o) => o,
        Value::Array(_) => return Err(Box::new((None, GatewayError::InvalidRequest("JSON-RPC batches are not supported")))),
        _ => return Err(Box::new((None, GatewayError::InvalidRequest("a JSON-RPC message must be an object")))),
    };
    let id = match obj.get("id") {
        None => None,
        Some(id @ Value::String(_)) => Some(id.clone()),
        Some(id @ Value::Number(n)) if n.is_i64() || n.is_u64() => Some(id.clone()),
        Some(_) => return Err(Box::new((None, GatewayError::InvalidRequest("id must be a string or an integer")))),
    };
    let fail = |e| Err(Box::new((id.clone(), e)));
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return fail(GatewayError::InvalidRequest("jsonrpc must be \"2.0\""));
    }
    let method = match obj.get("method") {
        None => None,
        Some(Value::String(m)) if !m.is_empty() => Some(m.clone()),
        Some(_) => return fail(GatewayError::InvalidRequest("method must be a non-empty string")),
    };
    if obj.get("params").is_some_and(|p| !p.is_object()) {
        return fail(GatewayError::InvalidParams("params must be an object"));
    }
    let params = obj.get("params").and_then(Value::as_object);
    match &method {
        None => {
            let is_response = id.is_some() && (obj.contains_key("result") ^ obj.contains_key("error"));
            if !is_response {
                return fail(GatewayError::InvalidRequest("a message needs a method, or an id with result or error"));
            }
        }
        // A request sent without an id would be served with no answer and no record.
        Some(m) if id.is_none() && !m.starts_with("notifications/") => {
            return fail(GatewayError::InvalidRequest("a request needs an id; only notifications/* may omit it"));
        }
        Some(_) => {}
    }
    // rmcp reads a known method with unusable params as a custom request (-32601); the params
    // of the methods Warden serves are checked here so they get -32602.
    if method.as_deref() == Some("tools/call") {
        let p = params.as_ref();
        if !p.and_then(|p| p.get("name")).is_some_and(Value::is_string) {
            return fail(GatewayError::InvalidParams("tools/call needs params.name as a string"));
        }
        if p.and_then(|p| p.get("arguments")).is_some_and(|a| !a.is_object() && !a.is_null()) {
            return fail(GatewayError::InvalidParams("tools/call arguments must be an object"));
        }
    }
    let meta = params.and_then(|p| p.get("_meta")).and_then(Value::as_object);
    let names_revision = meta.is_some_and(|m| m.contains_key(META_PROTOCOL_VERSION));
    if let (Some(m), true) = (&method, id.is_some())
        && let Some(error) = unserved(m, names_revision)
    {
        return fail(error);
    }
    let meta = meta.map(|m| RequestMetaObject(rmcp::model::MetaObject(m.clone())));
    let mismatch = || (id.clone(), GatewayError::InvalidParams("params do not match the method"));
    // The parsed values move into the typed message: no second read of the bytes, no copy.
    let kind = match (method.as_deref(), id.is_some()) {
        (Some("initialize"), true) => Kind::Initialize(Box::new(params_of(value).map_err(|_| mismatch())?)),
        (Some("ping"), true) => Kind::Ping,
        (Some("tools/list"), true) => {
            // Cursor and `_meta` are the only params; checked, then not needed.
            if let Some(p) = params
                && rmcp::model::PaginatedRequestParams::deserialize(p).is_err()
            {
                return Err(Box::new(mismatch()));
            }
            Kind::ListTools
        }
        (Some("tools/call"), true) => Kind::CallTool(Box::new(params_of(value).map_err(|_| mismatch())?)),
        _ => Kind::Other(Box::new(ClientJsonRpcMessage::deserialize(value).map_err(|_| mismatch())?)),
    };
    Ok(Message { id, method, meta, kind })
}

impl Message {
    /// Whether `params._meta` names a protocol revision (2026-07-28 per-request metadata).
    pub fn names_revision(&self) -> bool {
        self.meta.as_ref().is_some_and(|m| m.contains_key(META_PROTOCOL_VERSION))
    }
}

/// The `params` member of a message object, as `T`.
fn params_of<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    let params = match value {
        Value::Object(mut o) => o.remove("params").unwrap_or(Value::Null),
        _ => Value::Null,
    };
    T::deserialize(params)
}

/// A JSON value read by a parser that refuses an object with a repeated member name (RFC 8259
/// leaves those to the reader; two readers may pick different ones).
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.insert(key, v).is_some() {
                return Err(de::Error::custom("repeated member name"));
            }
        }
        Ok(Value::Object(out))
    }
}
