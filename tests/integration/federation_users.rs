//! A caller's own session with a federated server (a per-user credential) carries that caller's
//! resource subscriptions: the server is subscribed on it, and again when the server forgets the
//! session and rmcp's client starts it again in place.

use serde_json::{Value, json};

use crate::common::eventually;
use crate::common::provider::{sign_in, visit};
use crate::federation::{PerUser, per_user_server};

#[tokio::test]
async fn a_callers_own_session_is_subscribed_again_when_the_server_forgets_it() {
    // A server of the older revisions (sessions, `resources/subscribe`), its resources allowed.
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(policy.path(), "rules:\n  - id: gh\n    effect: allow\n    tools: [\"server:gh\"]\n").unwrap();
    let PerUser { issuer, provider: _provider, upstream, gw, vault: _vault } =
        per_user_server(true, &format!("policy:\n  files: [{}]\n", policy.path().display())).await;
    let alice = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let first = gw.call(&alice, "gh_connect", json!({})).await;
    let link = first.body["error"]["data"]["elicitations"][0]["url"].as_str().unwrap().to_owned();
    let (callback, cookie) = sign_in(&link, "gh-alice", false).await;
    assert_eq!(visit(&callback, Some(&cookie)).await.0, 200);
    // Connected: her call starts her own session, which brings the catalog in.
    assert_eq!(gw.call(&alice, "gh_connect", json!({})).await.result()["isError"], false);
    let listed = eventually(|| gw.tool_names(&alice), |names| names.contains(&"gh_echo".to_owned())).await;
    assert!(listed.contains(&"gh_echo".to_owned()), "{listed:?}");

    let session = gw.initialize_session(&alice, json!({})).await.unwrap();
    let subscribe = json!({"jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": {"uri": "docs://readme"}});
    let reply = gw.post_in_session(&alice, Some(&session), &subscribe).send().await.unwrap();
    assert_eq!(reply.json::<Value>().await.unwrap()["result"], json!({}));
    assert_eq!(*upstream.subscriptions.lock().unwrap(), ["+docs://readme"], "on alice's own session");

    // The server forgets alice's session: her next call starts it again in place (HTTP 404,
    // then a new `initialize`), and it is subscribed again.
    let forgotten: Vec<_> = upstream.sessions.sessions.read().await.keys().cloned().collect();
    for id in forgotten {
        rmcp::transport::streamable_http_server::SessionManager::close_session(&*upstream.sessions, &id).await.unwrap();
    }
    assert_eq!(gw.call(&alice, "gh_echo", json!({"text": "a"})).await.result()["content"][0]["text"], "echo: a");
    let again = eventually(async || upstream.subscriptions.lock().unwrap().clone(), |s| s.len() == 2).await;
    assert_eq!(again, ["+docs://readme", "+docs://readme"]);
}
