//! The policy engine through /mcp: the demo's role-gated model and per-tenant records, the
//! decision record in audit, and hot reload.

use std::time::Duration;

use serde_json::{Value, json};
use warden::demo::Demo;

use crate::common::{TestIssuer, Upstream, demo, gateway, mcp_post, tool_call};

fn token(demo: &Demo, user: &str, scopes: &[&str]) -> String {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    demo.idp.mint(user, "test-client", &scopes, &demo.resource).unwrap()
}

async fn call(demo: &Demo, token: &str, tool: &str, args: Value) -> (u16, http::HeaderMap, Value) {
    mcp_post(&reqwest::Client::new(), &demo.mcp_url, token, &tool_call(7, tool, args)).await
}

async fn tools(demo: &Demo, token: &str) -> Vec<String> {
    let (_, _, r) =
        mcp_post(&reqwest::Client::new(), &demo.mcp_url, token, &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    r["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_medical_model_is_for_doctors_with_the_scope() {
    let (demo, shutdown) = demo(None).await;
    let prompt = json!({"prompt": "fever and rash"});

    let house = token(&demo, "dr-house", &["medical:write"]);
    assert!(tools(&demo, &house).await.contains(&"gpt-4-medical".to_owned()));
    let (status, _, body) = call(&demo, &house, "gpt-4-medical", prompt.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["structuredContent"]["user"], "dr-house", "{body}");

    let seen_before = demo.calendar.seen().len();
    let joy = token(&demo, "nurse-joy", &["medical:write"]);
    assert!(!tools(&demo, &joy).await.contains(&"gpt-4-medical".to_owned()), "a nurse must not see the model");
    let (status, _, body) = call(&demo, &joy, "gpt-4-medical", prompt.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(body["error"]["code"], -32003, "{body}");
    assert_eq!(
        body["error"]["data"],
        json!({"code": "policy_denied", "rule": "medical/doctors", "reason": "only licensed doctors may use the medical model"})
    );
    assert_eq!(body["id"], 7);

    let wilson = token(&demo, "dr-wilson", &[]);
    let (status, headers, _) = call(&demo, &wilson, "gpt-4-medical", prompt).await;
    assert_eq!(status, 403);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer error=\"insufficient_scope\", scope=\"medical:write\""), "{challenge}");
    assert_eq!(demo.calendar.seen().len(), seen_before, "a refused call reached the backend");
    shutdown.cancel();
}

#[tokio::test]
async fn records_are_per_tenant_by_argument() {
    let (demo, shutdown) = demo(None).await;
    let alice = token(&demo, "alice", &["records:read"]);
    assert!(tools(&demo, &alice).await.contains(&"get_record".to_owned()));
    let (_, _, body) = call(&demo, &alice, "get_record", json!({"tenant": "acme", "id": "r-1"})).await;
    assert_eq!(body["result"]["structuredContent"]["tenant"], "acme", "{body}");
    let (_, _, body) = call(&demo, &alice, "get_record", json!({"tenant": "globex", "id": "r-9"})).await;
    assert_eq!(body["error"]["data"]["rule"], "records/own-tenant", "{body}");
    // The tool exists and is visible: the denial is never "unknown tool".
    assert_ne!(body["error"]["code"], -32602);
    let carol = token(&demo, "carol", &["records:read"]);
    let (_, _, body) = call(&demo, &carol, "get_record", json!({"tenant": "globex", "id": "r-9"})).await;
    assert_eq!(body["result"]["isError"], false, "{body}");
    shutdown.cancel();
}

const TOOLS: &str = "  - {name: report, description: Report., tags: [reports], http: {url: UPSTREAM/report}}\n";

fn write_policy(path: &std::path::Path, text: &str) {
    // Write then rename, as editors and config management do, so a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn decisions_are_audited_with_their_rule() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("reports.yaml");
    write_policy(&policy, "rules:\n  - {id: analysts, effect: allow, tools: [\"tag:reports\"], roles: [analyst], reason: analysts only}\n");
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let extra = format!("upstream:\n  allow_cidrs: [127.0.0.1/32]\npolicy:\n  files: [{}]", policy.display());
    let gw = gateway(&issuer, &TOOLS.replace("UPSTREAM", &upstream.url), &extra).await;
    let mut claims = issuer.claims("ann", "", &gw.mcp);
    claims["roles"] = json!(["analyst"]);
    let analyst = issuer.sign(&claims);
    let viewer = issuer.sign(&issuer.claims("vic", "", &gw.mcp));

    assert_eq!(gw.call(&analyst, "report", json!({})).await.result()["isError"], false);
    let e = gw.audit().pop().unwrap();
    assert_eq!((e["decision"].as_str(), e["rule"].as_str()), (Some("allow"), Some("reports/analysts")));

    let r = gw.call(&viewer, "report", json!({})).await;
    assert_eq!(r.body["error"]["data"]["rule"], "reports/analysts");
    let e = gw.audit().pop().unwrap();
    assert_eq!(
        (e["decision"].as_str(), e["reason"].as_str(), e["rule"].as_str()),
        (Some("deny"), Some("policy_denied"), Some("reports/analysts"))
    );
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn policy_files_reload_without_dropping_requests_and_broken_files_keep_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("reports.yaml");
    let allow = "rules:\n  - {id: everyone, effect: allow, tools: [report]}\n";
    let deny = "rules:\n  - {id: everyone, effect: allow, tools: [report]}\n  - {id: closed, effect: deny, tools: [report], reason: closed for maintenance}\n";
    write_policy(&policy, allow);
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    let extra = format!("upstream:\n  allow_cidrs: [127.0.0.1/32]\npolicy:\n  files: [{}]\n  reload_interval: 100ms", policy.display());
    let gw = gateway(&issuer, &TOOLS.replace("UPSTREAM", &upstream.url), &extra).await;
    let token = issuer.sign(&issuer.claims("ann", "", &gw.mcp));

    // Keep calls running through every reload: each must get a well-formed answer.
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load = {
        let (running, token, mcp) = (running.clone(), token.clone(), gw.mcp.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let (mut ok, mut denied) = (0, 0);
            while running.load(std::sync::atomic::Ordering::SeqCst) {
                let (_, _, body) = mcp_post(&http, &mcp, &token, &tool_call(1, "report", json!({}))).await;
                if body["result"]["isError"] == false {
                    ok += 1;
                } else {
                    assert_eq!(body["error"]["data"]["rule"], "reports/closed", "unexpected answer during reload: {body}");
                    denied += 1;
                }
            }
            (ok, denied)
        })
    };

    async fn until(gw: &crate::common::TestGateway, token: &str, rule: &str) {
        for _ in 0..50 {
            let r = gw.call(token, "report", json!({})).await;
            let decided = r.body["error"]["data"]["rule"].as_str().map(str::to_owned).unwrap_or_else(|| "reports/everyone".into());
            if decided == rule {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("policy did not change to {rule}");
    }

    until(&gw, &token, "reports/everyone").await;
    write_policy(&policy, deny);
    until(&gw, &token, "reports/closed").await;

    // A broken edit: the last good policy stays in force, and the failure is audited.
    write_policy(&policy, "rules:\n  - {id: broken, effect: allow, tools: [report], when: \"args.x ==\"}\n");
    tokio::time::sleep(Duration::from_millis(400)).await;
    until(&gw, &token, "reports/closed").await;
    assert!(
        gw.audit().iter().any(|e| e["method"] == "policy/reload" && e["reason"] == "policy_invalid"),
        "the failed reload was not audited"
    );

    write_policy(&policy, allow);
    until(&gw, &token, "reports/everyone").await;
    assert!(gw.audit().iter().filter(|e| e["reason"] == "policy_reloaded").count() >= 2);

    running.store(false, std::sync::atomic::Ordering::SeqCst);
    let (ok, denied) = load.await.unwrap();
    assert!(ok > 0 && denied > 0, "traffic saw both policies: {ok} allowed, {denied} denied");
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_policy_files() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("reports.yaml");
    write_policy(&policy, "rules:\n  - {id: everyone, effect: allow, tools: [report]}\n");
    let issuer = TestIssuer::start().await;
    let upstream = Upstream::start().await;
    // Polling off: only SIGHUP reloads.
    let extra = format!("upstream:\n  allow_cidrs: [127.0.0.1/32]\npolicy:\n  files: [{}]\n  reload_interval: 0s", policy.display());
    let gw = gateway(&issuer, &TOOLS.replace("UPSTREAM", &upstream.url), &extra).await;
    let token = issuer.sign(&issuer.claims("ann", "", &gw.mcp));
    assert_eq!(gw.call(&token, "report", json!({})).await.result()["isError"], false);
    write_policy(&policy, "rules:\n  - {id: nobody, effect: allow, tools: [report], roles: [none]}\n");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gw.call(&token, "report", json!({})).await.result()["isError"], false, "reloaded without a signal");
    // The gateway's handler is installed at start-up; the signal goes to this test process.
    std::process::Command::new("kill").args(["-HUP", &std::process::id().to_string()]).status().unwrap();
    for _ in 0..50 {
        if gw.call(&token, "report", json!({})).await.body["error"]["data"]["rule"] == "reports/nobody" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("SIGHUP did not reload the policy");
}
