//! The tamper-evident audit trail end to end: a gateway writing to a rotating file with signed
//! checkpoints, stopped and restarted (the chain resumes), the public key at its well-known
//! URL, and `warden audit verify` finding each tampering.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common::{TestIssuer, listen};

/// A gateway on `dir/audit.jsonl` (rotating at 4 KB) with checkpoints every 5 records signed by
/// `dir/audit.key`; makes `calls` requests, then shuts down (draining the audit).
async fn run_gateway(issuer: &TestIssuer, dir: &Path, calls: usize) -> Value {
    let (listener, url) = listen().await;
    let yaml = format!(
        "server:\n  listen: {addr}\n  public_url: {url}\nidentity:\n  issuers:\n    - issuer: {iss}\naudit:\n  sinks:\n    - {{type: file, path: audit.jsonl, max_bytes: 4000, keep: 50}}\n  chain: {{signing_key_file: audit.key, checkpoint_every: 5}}\ntools: []\n",
        addr = listener.local_addr().unwrap(),
        iss = issuer.url
    );
    std::fs::write(dir.join("warden.yaml"), &yaml).unwrap();
    let config = warden::config::load_file(&dir.join("warden.yaml"), &HashMap::new()).unwrap();
    let gw = warden::Gateway::build(&config).unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(warden::run(gw, listener, shutdown.clone().cancelled_owned()));
    let http = reqwest::Client::new();
    let token = issuer.sign(&issuer.claims("alice", "", &format!("{url}/mcp")));
    for i in 0..calls {
        let body = serde_json::json!({"jsonrpc": "2.0", "id": i, "method": "tools/list"});
        let r = http
            .post(format!("{url}/mcp"))
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let keys: Value = http.get(format!("{url}/.well-known/warden-audit-keys")).send().await.unwrap().json().await.unwrap();
    shutdown.cancel();
    served.await.unwrap().unwrap();
    keys
}

/// `warden keys generate --audit --out PATH`: the public key it prints.
async fn generate_key(path: &Path) -> String {
    let generated = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["keys", "generate", "--audit", "--out"])
        .arg(path)
        .output()
        .await
        .unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    String::from_utf8(generated.stdout).unwrap().trim().to_owned()
}

async fn verify(dir: &Path, key: &str) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["audit", "verify", &format!("--key={key}")])
        .arg(dir.join("audit.jsonl"))
        .output()
        .await
        .unwrap();
    (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Every record of `dir/audit.jsonl` and its rotated files, oldest first.
fn records(dir: &Path) -> Vec<Value> {
    let mut files: Vec<(usize, std::path::PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            let n = if name == "audit.jsonl" { 0 } else { name.strip_prefix("audit.jsonl.")?.parse().ok()? };
            Some((n, p))
        })
        .collect();
    files.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    files
        .iter()
        .flat_map(|(_, p)| std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<Value>>())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_chain_survives_rotation_and_restart_and_each_tampering_is_found() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let public = generate_key(&dir.path().join("audit.key")).await;

    let keys = run_gateway(&issuer, dir.path(), 30).await;
    assert_eq!(keys["keys"][0]["x"], public.as_str(), "the published key is the signing key's");
    assert!(dir.path().join("audit.jsonl.1").exists(), "rotated at 4 KB");
    let (code, out) = verify(dir.path(), &public).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verified 3"), "30 events and their checkpoints: {out}");

    // A restart continues the same chain, in the same file.
    let before = records(dir.path());
    let last = before.last().unwrap().clone();
    assert_eq!(last["kind"], "checkpoint", "shutdown signs the end of the chain");
    run_gateway(&issuer, dir.path(), 3).await;
    let after = records(dir.path());
    let resumed = &after[before.len()];
    assert_eq!((resumed["chain"].clone(), resumed["seq"].as_u64()), (last["chain"].clone(), Some(last["seq"].as_u64().unwrap() + 1)));
    assert_eq!(resumed["prev_hash"], last["hash"]);
    let (code, out) = verify(dir.path(), &public).await;
    assert_eq!(code, 0, "{out}");

    let pristine: Vec<(std::path::PathBuf, String)> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("audit.jsonl"))
        .map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    let restore = || {
        for (p, text) in &pristine {
            std::fs::write(p, text).unwrap();
        }
    };
    let rotated = dir.path().join("audit.jsonl.1");
    let edit = |f: &dyn Fn(&mut Vec<String>)| {
        let mut lines: Vec<String> = std::fs::read_to_string(&rotated).unwrap().lines().map(str::to_owned).collect();
        f(&mut lines);
        std::fs::write(&rotated, lines.join("\n") + "\n").unwrap();
    };
    // Altered: alice becomes mallory (in the first event of hers in the file).
    let text = std::fs::read_to_string(&rotated).unwrap();
    let at = text.lines().position(|l| l.contains("\"alice\"")).unwrap();
    edit(&|l| l[at] = l[at].replace("\"alice\"", "\"mallory\""));
    let (code, out) = verify(dir.path(), &public).await;
    assert!(code == 1 && out.contains("FAULT altered") && out.contains(&format!("audit.jsonl.1:{}", at + 1)), "{out}");
    restore();
    // Deleted.
    edit(&|l| {
        l.remove(4);
    });
    let (code, out) = verify(dir.path(), &public).await;
    assert!(code == 1 && out.contains("FAULT deleted"), "{out}");
    restore();
    // Reordered.
    edit(&|l| l.swap(3, 4));
    let (code, out) = verify(dir.path(), &public).await;
    assert!(code == 1 && (out.contains("FAULT deleted") || out.contains("FAULT reordered")), "{out}");
    restore();
    // Inserted: a record replayed.
    edit(&|l| {
        let copy = l[1].clone();
        l.insert(5, copy);
    });
    let (code, out) = verify(dir.path(), &public).await;
    assert!(code == 1 && (out.contains("FAULT reordered") || out.contains("FAULT inserted")), "{out}");
    restore();
    // Truncated: the file cut at its last checkpoint (the records before it are then covered
    // by none).
    let current = dir.path().join("audit.jsonl");
    let text = std::fs::read_to_string(&current).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let last_checkpoint = lines.iter().rposition(|l| l.contains("\"kind\":\"checkpoint\"")).unwrap();
    std::fs::write(&current, lines[..last_checkpoint].iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let (code, out) = verify(dir.path(), &public).await;
    assert!(code == 3 && out.contains("TAIL"), "{out}");
    restore();
    // Another key: the signatures do not verify.
    let other_public = generate_key(&dir.path().join("other.key")).await;
    let (code, out) = verify(dir.path(), &other_public).await;
    assert!(code == 1 && out.contains("FAULT unknown_key"), "{out}");
}

const ADMIN: &str = "admin-token-0123456789abcdef0123456789";

/// The database sink beside a file: queried by subject and decision through the admin API and
/// the CLI, verified from the database, and a changed or deleted row found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_sink_is_queried_and_verified() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let public = generate_key(&dir.path().join("audit.key")).await;
    let keys = format!("k1:{}", warden::credentials::envelope::KeyRing::generate_key().expose());
    let db = dir.path().join("vault.db");
    let (listener, url) = listen().await;
    let yaml = format!(
        "server:\n  listen: {addr}\n  public_url: {url}\nidentity:\n  issuers:\n    - issuer: {iss}\nvault:\n  database: \"sqlite://{db}\"\n  keys: \"{keys}\"\nadmin:\n  token: {ADMIN}\naudit:\n  sinks:\n    - {{type: file, path: audit.jsonl}}\n    - {{type: database}}\n  chain: {{signing_key_file: audit.key, checkpoint_every: 4}}\ntools: []\n",
        addr = listener.local_addr().unwrap(),
        iss = issuer.url,
        db = db.display()
    );
    let config_path = dir.path().join("warden.yaml");
    std::fs::write(&config_path, &yaml).unwrap();
    let config = warden::config::load_file(&config_path, &HashMap::new()).unwrap();
    let gw = warden::Gateway::build(&config).unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(warden::run(gw, listener, shutdown.clone().cancelled_owned()));
    let http = reqwest::Client::new();
    let post = |who: &str, body: Value| {
        let token = issuer.sign(&issuer.claims(who, "", &format!("{url}/mcp")));
        http.post(format!("{url}/mcp"))
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body)
            .send()
    };
    for _ in 0..3 {
        assert_eq!(post("alice", serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await.unwrap().status(), 200);
    }
    let call = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "nothing", "arguments": {}}});
    assert_eq!(post("bob", call).await.unwrap().status(), 200);
    // The database is written by the writer thread in batches: ask until all are there.
    let query = |q: &'static str, expected: usize| {
        let http = http.clone();
        let url = url.clone();
        async move {
            for _ in 0..50 {
                let r: Value = http.get(format!("{url}/admin/v1/audit?{q}")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
                let records = r["records"].as_array().cloned().unwrap_or_default();
                if records.len() >= expected {
                    return records;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Vec::new()
        }
    };
    let alice = query("subject=alice", 3).await;
    assert_eq!(alice.len(), 3, "{alice:?}");
    assert!(alice.iter().all(|r| r["subject"] == "alice" && r["method"] == "tools/list"));
    let denied = query("decision=deny", 1).await;
    assert_eq!((denied.len(), denied[0]["subject"].as_str(), denied[0]["reason"].as_str()), (1, Some("bob"), Some("unknown_tool")));
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["audit", "query", "--subject", "bob", "--gateway", &url])
        .env("WARDEN_ADMIN_TOKEN", ADMIN)
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success() && out.lines().count() == 1 && out.contains("\"unknown_tool\""), "{out}");
    shutdown.cancel();
    served.await.unwrap().unwrap();

    let verify = || async {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["audit", "verify", &format!("--key={public}"), "--database"])
            .arg(&config_path)
            .output()
            .await
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = verify().await;
    assert_eq!(code, Some(0), "{out}");
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    sqlx::query("UPDATE audit_records SET record = replace(record, '\"bob\"', '\"eve\"') WHERE subject = 'bob'")
        .execute(&mut conn)
        .await
        .unwrap();
    let (code, out) = verify().await;
    assert!(code == Some(1) && out.contains("FAULT altered"), "{out}");
    sqlx::query("DELETE FROM audit_records WHERE subject = 'bob'").execute(&mut conn).await.unwrap();
    let (code, out) = verify().await;
    assert!(code == Some(1) && out.contains("FAULT deleted"), "{out}");
}

/// `audit_arguments: digest`: the event carries a SHA-256 of the canonical arguments (keys
/// sorted), never a value; other tools carry nothing.
#[tokio::test]
async fn argument_digests_match_without_revealing_values() {
    let issuer = TestIssuer::start().await;
    let upstream = crate::common::Upstream::start().await;
    let tools = format!(
        "  - {{name: search, description: d, audit_arguments: digest, input_schema: {{type: object}}, http: {{method: POST, url: \"{u}/s\"}}}}\n  - {{name: plain, description: d, input_schema: {{type: object}}, http: {{method: POST, url: \"{u}/p\"}}}}\n",
        u = upstream.url
    );
    let gw = crate::common::gateway(&issuer, &tools, "upstream:\n  allow_cidrs: [127.0.0.1/32]\n").await;
    let alice = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let args = serde_json::json!({"z": 1, "q": "secret-value-91f2"});
    assert_eq!(gw.call(&alice, "search", args.clone()).await.result()["isError"], false);
    assert_eq!(gw.call(&alice, "plain", args).await.result()["isError"], false);
    let events = gw.audit();
    let digest = |tool: &str| events.iter().find(|e| e["tool"] == tool).unwrap()["arguments_sha256"].clone();
    assert_eq!(digest("search"), warden::sha256_hex(r#"{"q":"secret-value-91f2","z":1}"#).as_str());
    assert!(digest("plain").is_null());
    assert!(!gw.audit_text().contains("secret-value-91f2"));
}
