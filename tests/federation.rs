//! Federation against MCP servers nobody here wrote, through Warden, driven by the official SDK
//! clients: the reference server `@modelcontextprotocol/server-everything` (npm) over stdio and
//! over Streamable HTTP, the reference `mcp-server-time` (PyPI) over stdio, and a FastMCP server
//! (the official Python SDK) over Streamable HTTP that requires its own bearer. Also: a stdio
//! server killed mid-run is restarted and serves again.
//!
//! Needs the servers and SDKs: `scripts/test` installs them and runs these with
//! `WARDEN_NODE_BIN`, `WARDEN_PYTHON`, `WARDEN_PYTHON_1X` and `WARDEN_PYTHON_SERVERS` set (they are
//! `#[ignore]`d in a plain `cargo test`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{TestIssuer, gateway};

const KEY: &str = "fastmcp-own-key-0123456789abcdef";

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} must be set: run scripts/test"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed when the test ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a process and waits until a line of its stderr or stdout contains `ready`.
fn start(mut command: Command, ready: &str, from_stderr: bool) -> Proc {
    let mut child = if from_stderr { command.stderr(Stdio::piped()) } else { command.stdout(Stdio::piped()) }.spawn().unwrap();
    let out: Box<dyn std::io::Read + Send> =
        if from_stderr { Box::new(child.stderr.take().unwrap()) } else { Box::new(child.stdout.take().unwrap()) };
    let ready = ready.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains(&ready)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("the server did not start");
    Proc(child)
}

fn everything_js() -> String {
    format!("{}/../@modelcontextprotocol/server-everything/dist/index.js", env("WARDEN_NODE_BIN"))
}

struct Servers {
    yaml: String,
    _procs: Vec<Proc>,
}

/// server-everything over stdio (`every`) and over HTTP (`everyhttp`), mcp-server-time over
/// stdio (`time`), FastMCP with its own bearer (`py`).
fn servers() -> Servers {
    let node = format!("{}/node", env("WARDEN_NODE_BIN"));
    let http_port = free_port();
    let mut everything_http = Command::new(&node);
    everything_http.args([everything_js().as_str(), "streamableHttp"]).env("PORT", http_port.to_string());
    let everything_http = start(everything_http, "listening", true);
    let py_port = free_port();
    let mut fastmcp = Command::new(env("WARDEN_PYTHON_1X"));
    fastmcp.args([concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/fastmcp_server.py"), &py_port.to_string(), KEY]);
    let fastmcp = start(fastmcp, "ready", false);
    let yaml = format!(
        "upstream:\n  allow_cidrs: [127.0.0.1/32]\ncredentials:\n  - {{name: py-key, secret: {KEY}, placement: bearer}}\nservers:\n\
         \x20 - {{name: every, command: {node}, args: [{js}, stdio], include: [echo, get-sum], timeout: 10s}}\n\
         \x20 - {{name: everyhttp, url: \"http://127.0.0.1:{http_port}/mcp\", include: [echo], timeout: 10s}}\n\
         \x20 - {{name: time, command: {time}, args: [-m, mcp_server_time, --local-timezone, UTC], timeout: 10s}}\n\
         \x20 - {{name: py, url: \"http://127.0.0.1:{py_port}/mcp\", credential: py-key, timeout: 10s}}\n",
        js = everything_js(),
        time = env("WARDEN_PYTHON_SERVERS"),
    );
    Servers { yaml, _procs: vec![everything_http, fastmcp] }
}

async fn python_client(python: String, url: &str, token: &str, tool: &str, args: Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/python_federation_client.py");
    let (url, token, tool, args) = (url.to_owned(), token.to_owned(), tool.to_owned(), args.to_string());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python).args([script, "--url", &url, "--token", &token, "--tool", &tool, "--args", &args]).output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "python client failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

async fn ts_client(url: &str, token: &str, tool: &str, args: Value) -> Value {
    ts_client_completing(url, token, tool, args, None).await
}

/// The TypeScript client, also asking for a completion (`completion/complete` params).
async fn ts_client_completing(url: &str, token: &str, tool: &str, args: Value, complete: Option<Value>) -> Value {
    let node = format!("{}/node", env("WARDEN_NODE_BIN"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/ts_federation_client.mjs");
    let modules = format!("{}/..", env("WARDEN_NODE_BIN"));
    let (url, token, tool, args) = (url.to_owned(), token.to_owned(), tool.to_owned(), args.to_string());
    let mut argv = vec![script.to_owned(), "--url".into(), url, "--token".into(), token, "--tool".into(), tool, "--args".into(), args];
    argv.extend(complete.map(|c| ["--complete".to_owned(), c.to_string()]).into_iter().flatten());
    let output = tokio::task::spawn_blocking(move || Command::new(node).args(&argv).env("WARDEN_NODE_MODULES", modules).output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "ts client failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

fn text(result: &Value) -> String {
    result["content"].as_array().into_iter().flatten().filter_map(|c| c["text"].as_str()).collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the reference servers and SDKs: run scripts/test"]
async fn reference_servers_through_warden_with_the_official_sdk_clients() {
    let issuer = TestIssuer::start().await;
    let servers = servers();
    let gw = gateway(&issuer, "  []", &servers.yaml).await;
    let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));

    let expected = ["every_echo", "every_get-sum", "everyhttp_echo", "time_get_current_time", "time_convert_time", "py_add", "py_whoami"];
    for python in [env("WARDEN_PYTHON"), env("WARDEN_PYTHON_1X")] {
        let report = python_client(python, &gw.mcp, &token, "every_echo", json!({"message": "hi"})).await;
        let tools: Vec<&str> = report["tools"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        for name in expected {
            assert!(tools.contains(&name), "{name} not in {tools:?}");
        }
        assert_eq!(text(&report["result"]), "Echo: hi", "{report}");
    }
    let http = ts_client(&gw.mcp, &token, "everyhttp_echo", json!({"message": "over http"})).await;
    assert_eq!(text(&http["result"]), "Echo: over http", "{http}");
    // The SDK's complete() through Warden to server-everything's completable prompt, by its
    // exposed name, with the context that narrows the second argument by the first.
    let complete = json!({
        "ref": {"type": "ref/prompt", "name": "every_completable-prompt"},
        "argument": {"name": "name", "value": "A"},
        "context": {"arguments": {"department": "Engineering"}}
    });
    let sum = ts_client_completing(&gw.mcp, &token, "every_get-sum", json!({"a": 2, "b": 3}), Some(complete)).await;
    assert!(text(&sum["result"]).contains('5'), "{sum}");
    assert_eq!(sum["completion"]["values"], json!(["Alice"]), "{sum}");
    let time = ts_client(&gw.mcp, &token, "time_get_current_time", json!({"timezone": "UTC"})).await;
    assert!(text(&time["result"]).contains("UTC"), "{time}");
    let add = python_client(env("WARDEN_PYTHON"), &gw.mcp, &token, "py_add", json!({"a": 2, "b": 40})).await;
    assert_eq!(text(&add["result"]), "42", "{add}");
    let who = python_client(env("WARDEN_PYTHON"), &gw.mcp, &token, "py_whoami", json!({})).await;
    let who: Value = serde_json::from_str(&text(&who["result"])).unwrap();
    assert_eq!(
        who,
        json!({"user": "alice", "authorization_is_ours": true}),
        "identity, and the server's own key; never the caller's token"
    );

    let events = gw.audit();
    for server in ["every", "everyhttp", "time", "py"] {
        assert!(events.iter().any(|e| e["server"] == server && e["decision"] == "allow"), "{server} calls audited");
    }
    assert!(
        events.iter().any(|e| e["method"] == "completion/complete" && e["tool"] == "every_completable-prompt" && e["decision"] == "allow"),
        "the completion is audited with the prompt's exposed name"
    );
}

/// Children of this test process whose command line contains `needle`.
fn children(needle: &str) -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(1)).unwrap_or_default().to_owned();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == me && String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the reference servers: run scripts/test"]
async fn a_stdio_server_killed_mid_run_is_restarted() {
    let issuer = TestIssuer::start().await;
    let yaml = format!(
        "servers:\n  - {{name: time, command: {}, args: [-m, mcp_server_time, --local-timezone, Etc/UTC], timeout: 10s}}\n",
        env("WARDEN_PYTHON_SERVERS")
    );
    let gw = gateway(&issuer, "  []", &yaml).await;
    let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    let call = || gw.call(&token, "time_get_current_time", json!({"timezone": "UTC"}));
    assert!(call().await.result()["content"][0]["text"].as_str().unwrap().contains("UTC"));

    // Told apart from the other test's server (same parent) by its time zone argument.
    let pids = children("Etc/UTC");
    assert_eq!(pids.len(), 1, "one server process: {pids:?}");
    Command::new("kill").args(["-9", &pids[0].to_string()]).status().unwrap();

    // While it is down the tool stays listed (the last good catalog) and a call fails at once
    // with a stable code, never a hang; then the supervisor has started it again.
    let started = Instant::now();
    let mut codes = Vec::new();
    loop {
        let reply = call().await;
        if reply.result()["isError"] != true {
            break;
        }
        codes.push(gw.audit().last().unwrap()["reason"].as_str().unwrap().to_owned());
        assert!(started.elapsed() < Duration::from_secs(30), "not restarted: {codes:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(codes.iter().all(|c| c == "upstream_unavailable" || c == "upstream_unreachable"), "{codes:?}");
    assert_eq!(gw.tool_names(&token).await.iter().filter(|n| n.starts_with("time_")).count(), 2);
    let now = children("Etc/UTC");
    assert_eq!(now.len(), 1, "restarted once: {now:?}");
    assert_ne!(now[0], pids[0]);
}
