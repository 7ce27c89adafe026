//! OCSF output: each record as an OCSF 1.1 API Activity event (class 6003), for SIEMs that
//! ingest OCSF (Amazon Security Lake, Splunk, …). The mapping is in docs/audit.md. Warden's own
//! record (chain fields included) rides along under `unmapped.warden`, so an OCSF event can be
//! matched to the chained record `warden audit verify` checks; the chain itself is verified on
//! a sink in Warden's format.

use serde_json::{Map, Value, json};

const CLASS_UID: u64 = 6003;
const CATEGORY_UID: u64 = 6;

/// One Warden record (a parsed line) as an OCSF event.
pub fn event(record: &Map<String, Value>) -> Value {
    let text = |k: &str| record.get(k).and_then(Value::as_str);
    let method = text("method").unwrap_or_default();
    let (activity_id, activity_name) = match method {
        "tools/list"
        | "resources/list"
        | "resources/templates/list"
        | "resources/read"
        | "prompts/list"
        | "prompts/get"
        | "completion/complete" => (2, "Read"),
        _ => (99, "Other"),
    };
    let decision = text("decision").unwrap_or_default();
    let (status_id, status) = if decision == "allow" { (1, "Success") } else { (2, "Failure") };
    let severity_id = match decision {
        "allow" => 1,
        "deny" => 2,
        _ => 3,
    };
    let time = text("ts").and_then(|ts| chrono::DateTime::parse_from_rfc3339(ts).ok()).map_or(0, |t| t.timestamp_millis());
    let mut actor = Map::new();
    if let Some(subject) = text("subject") {
        let mut user = json!({"uid": subject});
        if let Some(tenant) = text("tenant") {
            user["org"] = json!({"uid": tenant});
        }
        if let Some(issuer) = text("issuer") {
            user["domain"] = json!(issuer);
        }
        actor.insert("user".into(), user);
    }
    if let Some(client) = text("client_id") {
        actor.insert("app_uid".into(), json!(client));
    }
    if let Some(rule) = text("rule") {
        actor.insert("authorizations".into(), json!([{"decision": decision, "policy": {"name": rule}}]));
    }
    let mut out = json!({
        "class_uid": CLASS_UID,
        "class_name": "API Activity",
        "category_uid": CATEGORY_UID,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": CLASS_UID * 100 + activity_id,
        "time": time,
        "severity_id": severity_id,
        "status_id": status_id,
        "status": status,
        "status_code": text("reason").unwrap_or_default(),
        "metadata": {
            "version": "1.1.0",
            "uid": text("id").unwrap_or_default(),
            "correlation_uid": text("trace_id").unwrap_or_default(),
            "product": {"name": "Warden", "vendor_name": "Warden", "version": env!("CARGO_PKG_VERSION")},
        },
        "api": {
            "operation": method,
            "service": {"name": text("server").unwrap_or("warden")},
            "request": {"uid": text("request_id").unwrap_or_default()},
        },
        "actor": actor,
        "unmapped": {"warden": record},
    });
    if let Some(explanation) = text("explanation") {
        out["status_detail"] = json!(explanation);
    }
    if let Some(status) = record.get("status").and_then(Value::as_u64).filter(|s| *s > 0) {
        out["api"]["response"] = json!({"code": status});
    }
    if let Some(tool) = text("tool") {
        let mut resource = json!({"name": tool, "type": "MCP tool"});
        if let Some(server) = text("server") {
            resource["group"] = json!({"name": server});
        }
        out["resources"] = json!([resource]);
    }
    if record.get("kind").and_then(Value::as_str) == Some("checkpoint") {
        out["api"]["operation"] = json!("audit/checkpoint");
    }
    out
}

/// A batch of Warden lines as OCSF lines.
pub fn batch(lines: &[u8], out: &mut Vec<u8>) {
    for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(Value::Object(record)) = serde_json::from_slice::<Value>(line) {
            let _ = serde_json::to_writer(&mut *out, &event(&record));
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denied_call_maps_to_a_failed_api_activity() {
        let record = json!({
            "id": "01a2", "ts": "2026-11-30T08:00:00.123Z", "request_id": "r1", "trace_id": "t1",
            "subject": "alice", "issuer": "https://idp", "tenant": "acme", "client_id": "cursor",
            "method": "tools/call", "tool": "gh_create_issue", "server": "github",
            "decision": "deny", "reason": "policy_denied", "rule": "no-writes", "explanation": "read-only",
            "status": 200, "chain": "c", "seq": 7, "prev_hash": "p", "hash": "h"
        });
        let Value::Object(record) = record else { panic!() };
        let e = event(&record);
        assert_eq!((e["class_uid"].as_u64(), e["type_uid"].as_u64(), e["activity_id"].as_u64()), (Some(6003), Some(600399), Some(99)));
        assert_eq!(
            (e["status"].as_str(), e["status_code"].as_str(), e["severity_id"].as_u64()),
            (Some("Failure"), Some("policy_denied"), Some(2))
        );
        assert_eq!(e["time"].as_i64(), Some(1_796_025_600_123));
        assert_eq!(e["actor"]["user"]["uid"], "alice");
        assert_eq!(e["actor"]["user"]["org"]["uid"], "acme");
        assert_eq!(e["actor"]["authorizations"][0]["policy"]["name"], "no-writes");
        assert_eq!(
            (e["resources"][0]["name"].as_str(), e["resources"][0]["group"]["name"].as_str()),
            (Some("gh_create_issue"), Some("github"))
        );
        assert_eq!(e["unmapped"]["warden"]["seq"], 7, "the chained record rides along");
    }
}
