//! A caller's own session with a federated server (a per-user credential) carries that caller's
//! resource subscriptions: the server is subscribed on it, and again when the server forgets the
//! session and rmcp's client starts it again in place.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::common::provider::{ConnectionOptions, FakeProvider, connection_config, keyring, sign_in, visit};
use crate::common::{TestIssuer, eventually, gateway};
use crate::federation::start_upstream_with;

#[tokio::test]
async fn a_callers_own_session_is_subscribed_again_when_the_server_forgets_it() {
    let issuer = TestIssuer::start().await;
    let provider = FakeProvider::start(3600).await;
    let api = provider.url.clone();
    let (upstream, url) = start_upstream_with(Arc::new(move |auth: Option<String>| {
        let api = api.clone();
        async move {
            let Some(auth) = auth else { return false };
            let me = reqwest::Client::new().get(format!("{api}/api/me")).header("authorization", auth).send().await;
            me.is_ok_and(|r| r.status().is_success())
        }
    }))
    .await;
    // A server of the older revisions: sessions, `resources/subscribe`.
    upstream.legacy.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("vault.db").display());
    let keys = keyring();
    let options = ConnectionOptions {
        database: &database,
        keys: &keys,
        name: "gh",
        mode: "per_user",
        discover: false,
        admin_token: "admin-token-for-the-federation-test-0123456789",
        token_cache: "0s",
    };
    let (_, extra) = connection_config(&provider.url, &options);
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "rules:\n  - id: gh\n    effect: allow\n    tools: [\"server:gh\"]\n").unwrap();
    let policy = policy.display();
    let extra = format!(
        "{extra}\npolicy:\n  files: [{policy}]\nservers:\n  - {{name: gh, url: \"{url}\", credential: gh, refresh_interval: 0s}}\n"
    );
    let gw = gateway(&issuer, "  []", &extra).await;
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
