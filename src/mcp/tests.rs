use serde_json::json;

use super::message::check_message;

fn reason(body: &str) -> Result<(), &'static str> {
    check_message(body.as_bytes(), &|_, _| None).map(|_| ()).map_err(|r| r.1.reason())
}

#[test]
fn repeated_member_names_are_refused_at_any_depth() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"q":"x","q":"forbidden"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"l":[{"k":1,"k":2}]}}}"#,
    ] {
        assert_eq!(reason(body), Err("invalid_request"), "{body}");
    }
    // Not JSON stays a parse error; the same names in different objects are fine.
    assert_eq!(reason(r#"{"jsonrpc":"2.0","id":1,"#), Err("parse_error"));
    assert_eq!(
        reason(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"a":{"k":1},"b":{"k":1}}}}"#),
        Ok(())
    );
}

#[test]
fn text_that_is_not_utf8_is_a_parse_error() {
    // JSON is UTF-8 text: invalid bytes inside a string make the body not JSON (-32700), not a
    // JSON-RPC message of the wrong shape.
    for body in [&b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\"\xff\"}}"[..], b"\xff\xfe", b"{\"a\":\"\xc3\"}"] {
        let refused = check_message(body, &|_, _| None).map(|_| ()).map_err(|r| r.1.reason());
        assert_eq!(refused, Err("parse_error"), "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn the_strict_reader_reads_what_serde_json_reads() {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "t", "arguments": {
        "i": -3, "u": u64::MAX, "f": 1.5, "s": "é\u{0}\"", "b": true, "n": null, "l": [1, [2, {}]], "o": {"x": []}
    }}});
    let m = check_message(body.to_string().as_bytes(), &|_, _| None).unwrap_or_else(|r| panic!("{}", r.1));
    let super::message::Kind::CallTool(call) = m.kind else { panic!("not a call") };
    assert_eq!(call.arguments.map(serde_json::Value::Object), body["params"].get("arguments").cloned());
    assert_eq!(m.id, Some(json!(7)));
}

#[test]
fn requests_need_an_id_and_notifications_do_not() {
    assert_eq!(reason(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"}}"#), Err("invalid_request"));
    assert_eq!(reason(r#"{"jsonrpc":"2.0","method":"ping"}"#), Err("invalid_request"));
    assert_eq!(reason(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#), Ok(()));
}

#[test]
fn per_request_revision_metadata_is_noticed() {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    assert!(check_message(body.to_string().as_bytes(), &|_, _| None).is_ok_and(|m| m.names_revision()));
    let plain = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    assert!(check_message(plain.to_string().as_bytes(), &|_, _| None).is_ok_and(|m| !m.names_revision()));
}

mod hostile {
    use proptest::prelude::*;

    use super::super::message::check_message;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Any bytes get a verdict: a message or a refusal, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = check_message(&bytes, &|_, _| None);
        }

        /// Near-misses of a real message (JSON-ish text built from its own pieces) get a verdict
        /// too, and a message accepted has the id and method it was sent with.
        #[test]
        fn json_like_text_never_panics(pieces in prop::collection::vec(prop_oneof![
            Just("{"), Just("}"), Just("["), Just("]"), Just(","), Just(":"), Just("\"jsonrpc\""), Just("\"2.0\""),
            Just("\"id\""), Just("1"), Just("-0"), Just("1e999"), Just("\"method\""), Just("\"tools/call\""),
            Just("\"params\""), Just("\"name\""), Just("\"arguments\""), Just("null"), Just("\"\\u0000\""), Just("\"\\ud800\""),
        ], 0..40)) {
            let text: String = pieces.concat();
            if let Ok(m) = check_message(text.as_bytes(), &|_, _| None) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                prop_assert_eq!(m.id, v.get("id").cloned());
                prop_assert_eq!(m.method.as_deref(), v.get("method").and_then(|m| m.as_str()));
            }
        }
    }
}
