//! Hostile and broken federated servers (issue 25, part A): a real stdio MCP server
//! (`tests/fixtures/hostile_mcp.py`, Python's standard library only) that answers too much,
//! answers what cannot be read, pages forever, writes stderr without newlines or UTF-8, exits
//! after initialize, asks the client for what it never declared, and takes other servers'
//! names. Warden must stay up, bounded, and clear about what happened.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestGateway, TestIssuer, eventually, gateway};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hostile_mcp.py");

/// A `servers:` entry for the fixture, with its flags and more keys.
fn server(name: &str, flags: &[&str], more: &str) -> String {
    let args: Vec<String> = std::iter::once(FIXTURE.to_owned()).chain(flags.iter().map(|f| (*f).to_owned())).collect();
    format!("  - {{name: {name}, command: python3, args: {}, timeout: 60s{more}}}\n", serde_json::to_string(&args).unwrap())
}

async fn with_servers(entries: &[String], extra: &str) -> (TestIssuer, TestGateway, String) {
    let issuer = TestIssuer::start().await;
    let yaml = format!("servers:\n{}{extra}", entries.concat());
    let gw = gateway(&issuer, "  []", &yaml).await;
    let token = issuer.sign(&issuer.claims("alice", "", &gw.mcp));
    (issuer, gw, token)
}

async fn wait_for_tool(gw: &TestGateway, token: &str, name: &str) {
    let names = eventually(|| gw.tool_names(token), |n| n.iter().any(|t| t == name)).await;
    assert!(names.iter().any(|t| t == name), "{name} never listed: {names:?}");
}

/// A call's result text and whether it is an error; the call must come back well before the
/// server's 60 s timeout (the client gives up at 20 s), so nothing waits for the timeout.
async fn call(gw: &TestGateway, token: &str, tool: &str, args: Value) -> (bool, String) {
    let r = tokio::time::timeout(Duration::from_secs(20), gw.call(token, tool, args))
        .await
        .unwrap_or_else(|_| panic!("{tool}: no answer within 20 s (the caller waited for the timeout)"));
    assert_eq!(r.status, 200, "{tool}: {:?}", r.body);
    let result = r.result();
    (result["isError"].as_bool().unwrap_or(false), result["content"][0]["text"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_too_large_or_unreadable_fails_its_call_at_once_with_a_stable_code() {
    let (_issuer, gw, token) = with_servers(&[server("h", &[], ", max_response_bytes: 1048576")], "").await;
    wait_for_tool(&gw, &token, "h_echo").await;
    let cases = [
        ("h_big", json!({"bytes": 2_000_000}), "upstream_too_large"),
        ("h_deep", json!({"depth": 10_000}), "upstream_invalid_response"),
        ("h_bad_utf8", json!({}), "upstream_invalid_response"),
        ("h_unknown_id", json!({}), "upstream_invalid_response"),
        ("h_garbage", json!({}), "upstream_invalid_response"),
    ];
    for (tool, args, code) in cases {
        let (is_error, text) = call(&gw, &token, tool, args).await;
        assert!(is_error, "{tool}: {text}");
        let event = gw.audit().into_iter().rev().find(|e| e["tool"] == tool).unwrap_or_else(|| panic!("{tool} not audited"));
        assert_eq!((event["decision"].as_str(), event["reason"].as_str()), (Some("error"), Some(code)), "{tool}: {event}");
        // The server is still there for the next call.
        let (is_error, text) = call(&gw, &token, "h_echo", json!({"text": "still here"})).await;
        assert_eq!((is_error, text.as_str()), (false, "echo: still here"), "after {tool}");
    }
    // Under the bound, a large answer comes through.
    let (is_error, text) = call(&gw, &token, "h_big", json!({"bytes": 900_000})).await;
    assert!(!is_error && text.len() == 900_000);
    assert_eq!(gw.audit().iter().filter(|e| e["tool"] == "h_garbage").count(), 1, "audited once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_of_many_items_passes_through_as_the_server_sent_it() {
    let (_issuer, gw, token) = with_servers(&[server("h", &[], "")], "").await;
    wait_for_tool(&gw, &token, "h_items").await;
    let r = gw.call(&token, "h_items", json!({"count": 50_000})).await;
    assert_eq!(r.status, 200);
    let content = r.result()["content"].as_array().unwrap();
    assert_eq!(content.len(), 50_000);
    assert!(content.iter().all(|c| *c == json!({"type": "text", "text": "x"})));
    assert!(r.result().get("resultType").is_none(), "no resultType before 2026-07-28: {:?}", r.result().get("resultType"));
    assert_eq!(r.body["id"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_from_the_server_for_undeclared_capabilities_are_method_not_found() {
    let (_issuer, gw, token) = with_servers(&[server("h", &[], "")], "").await;
    wait_for_tool(&gw, &token, "h_ask_client").await;
    let (is_error, text) = call(&gw, &token, "h_ask_client", json!({})).await;
    assert!(!is_error, "{text}");
    let answers: Value = serde_json::from_str(&text).unwrap();
    for request in ["roots", "sampling", "elicitation"] {
        assert_eq!(answers[request]["code"], -32601, "{request}: {answers}");
    }
    assert_eq!(answers["capabilities"], json!({}), "Warden declares no client capability");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_without_newlines_or_utf8_is_read_to_the_end() {
    let binary = server("b", &["--stderr", "binary"], "");
    let long = server("l", &["--stderr", "no-newline:20000000"], "");
    let (_issuer, gw, token) = with_servers(&[binary, long], "").await;
    wait_for_tool(&gw, &token, "b_stderr").await;
    wait_for_tool(&gw, &token, "l_stderr").await;
    // A stderr reader that stopped would make the server's next stderr write fail (EPIPE):
    // Python dies of it, and the calls would fail.
    for i in 1..=20 {
        for tool in ["b_stderr", "l_stderr"] {
            let (is_error, text) = call(&gw, &token, tool, json!({})).await;
            assert_eq!((is_error, text), (false, format!("wrote stderr line {i}")), "{tool}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_exits_after_initialize_is_restarted_ever_more_slowly() {
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let starts_arg = starts.display().to_string();
    let (_issuer, _gw, _token) = with_servers(&[server("c", &["--exit-after-init", "--starts", &starts_arg], "")], "").await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let count = std::fs::read_to_string(&starts).unwrap_or_default().lines().count();
    // Backoff 0.5, 1, 2, 4 s: at most five starts in six seconds (a reset on every initialize
    // restarted it about every 0.6 s, ten times).
    assert!((2..=5).contains(&count), "{count} starts in 6 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_that_never_ends_is_refused_within_its_bounds() {
    let endless = server("e", &["--paging", "endless"], "");
    let circular = server("s", &["--paging", "same-cursor"], "");
    let good = server("g", &["--tools", "echo"], "");
    let (_issuer, gw, token) = with_servers(&[endless, circular, good], "").await;
    wait_for_tool(&gw, &token, "g_echo").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let names = gw.tool_names(&token).await;
    assert_eq!(names, ["g_echo"], "nothing of a catalog past its bounds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_that_turns_endless_keeps_the_last_good_one() {
    let (_issuer, gw, token) = with_servers(&[server("g", &["--tools", "echo,go_endless"], "")], "").await;
    wait_for_tool(&gw, &token, "g_echo").await;
    let (is_error, text) = call(&gw, &token, "g_go_endless", json!({})).await;
    assert!(!is_error, "{text}");
    // The notification's read (a second after it) fails at its bounds: the last good catalog
    // stays, and the server's tools keep working.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(gw.tool_names(&token).await, ["g_echo", "g_go_endless"]);
    let (is_error, text) = call(&gw, &token, "g_echo", json!({"text": "still"})).await;
    assert_eq!((is_error, text.as_str()), (false, "echo: still"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_name_stays_with_its_server() {
    // `a` (no prefix, first in config) adds `b_secret` while `b` serves it.
    let a = server("a", &["--tools", "echo,add_tool", "--label", "a"], ", prefix: \"\"");
    let b = server("b", &["--tools", "secret", "--label", "b"], "");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, "rules:\n  - {id: a-all, effect: allow, tools: [\"server:a\"]}\n  - {id: b-for-bob, effect: allow, tools: [\"server:b\"], when: \"principal.sub == 'bob'\"}\n").unwrap();
    let extra = format!("policy:\n  files: [{}]\n  reload_interval: 0s\n", policy.display());
    let (issuer, gw, token) = with_servers(&[a, b], &extra).await;
    let bob = issuer.sign(&issuer.claims("bob", "", &gw.mcp));
    wait_for_tool(&gw, &bob, "b_secret").await;
    wait_for_tool(&gw, &token, "add_tool").await;
    for _ in 0..3 {
        let (is_error, text) = call(&gw, &token, "add_tool", json!({"name": "b_secret"})).await;
        assert!(!is_error, "{text}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    // Still b's: bob (allowed only on server:b) calls it, alice (allowed only on a) does not
    // see it.
    let (is_error, text) = call(&gw, &bob, "b_secret", json!({})).await;
    assert_eq!((is_error, text.as_str()), (false, "b: secret"));
    assert!(!gw.tool_names(&token).await.contains(&"b_secret".to_owned()));
    let collisions = || gw.audit().into_iter().filter(|e| e["reason"] == "tool_name_collision").collect::<Vec<Value>>();
    let first = eventually(|| async { collisions() }, |c| !c.is_empty()).await;
    assert!(!first.is_empty(), "the collision was never audited");
    // More notifications, more refreshes: still one event.
    let (is_error, _) = call(&gw, &token, "add_tool", json!({"name": "b_secret"})).await;
    assert!(!is_error);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let collisions = collisions();
    assert_eq!(collisions.len(), 1, "audited once: {collisions:#?}");
    let event = &collisions[0];
    assert_eq!((event["server"].as_str(), event["tool"].as_str()), (Some("a"), Some("b_secret")));
    assert!(event["explanation"].as_str().unwrap_or_default().contains("server b"), "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_uri_is_read_from_the_server_that_listed_it() {
    // `ra` (first in config) offers a template that matches anything; `rb` lists the URI.
    let ra = server("ra", &["--tools", "echo", "--label", "ra", "--templates", "{+anything}"], "");
    let rb = server("rb", &["--tools", "echo", "--label", "rb", "--resources", "b://secret/doc", "--templates", "b://secret/{doc}"], "");
    let (_issuer, gw, token) = with_servers(&[ra, rb], "").await;
    wait_for_tool(&gw, &token, "rb_echo").await;
    wait_for_tool(&gw, &token, "ra_echo").await;
    let read = |uri: &'static str| {
        let gw = &gw;
        let token = &token;
        async move {
            gw.rpc(token, "resources/read", json!({"uri": uri})).await.result()["contents"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    let text = eventually(|| read("b://secret/doc"), |t| !t.is_empty()).await;
    assert_eq!(text, "rb read b://secret/doc", "an exact listing beats any template");
    assert_eq!(read("b://secret/other").await, "rb read b://secret/other", "the most specific template wins");
    assert_eq!(read("x://elsewhere").await, "ra read x://elsewhere");
}

/// Peak and current resident memory of a process, in KiB (Linux `/proc`).
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap()
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Issue 25's goal, measured in a process of its own (`warden serve`): a result just under
/// `max_response_bytes` (4 MiB, the default) made of 150,000 small items raises Warden's peak
/// RSS by less than 64 MB over idle, from a stdio server and from a Streamable HTTP one. (Built
/// into rmcp's types, such a result took about 50 times its size.) Four such answers at once
/// are printed, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_under_the_bound_costs_a_small_multiple_of_its_size() {
    let (single, four) = peak_above_idle(&server("h", &[], "")).await;
    println!("stdio: {single} KiB above idle for one 4.05 MB result of 150,000 items, {four} KiB for four at once");
    assert!(single < 64 * 1024, "stdio: peak RSS {single} KiB above idle (goal: under 64 MB)");

    let (mut http, port) = http_fixture(&[]).await;
    let entry = format!("  - {{name: h, url: \"http://127.0.0.1:{port}/mcp\", timeout: 60s}}\n");
    let (single, four) = peak_above_idle(&entry).await;
    println!("HTTP: {single} KiB above idle for one 4.05 MB result of 150,000 items, {four} KiB for four at once");
    assert!(single < 64 * 1024, "HTTP: peak RSS {single} KiB above idle (goal: under 64 MB)");
    let _ = http.kill().await;
}

/// `warden serve` with the server `entry` (exposing `h_items`): its peak RSS above idle, in
/// KiB, while relaying one result of 150,000 items, then four at once.
async fn peak_above_idle(entry: &str) -> (u64, u64) {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (serving, url) = warden_serve(&issuer, dir.path(), entry, &[]);
    let pid = serving.0.id();
    let token = issuer.sign(&issuer.claims("alice", "", &format!("{url}/mcp")));
    let call = |count: u64| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            let answer = tools_call(&url, &token, "h_items", json!({"count": count})).await;
            answer["result"]["content"].as_array().map(Vec::len)
        }
    };
    let mut ready = None;
    for _ in 0..200 {
        ready = call(10).await;
        if ready == Some(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, Some(10), "the server's tools never came");
    for _ in 0..3 {
        assert_eq!(call(1000).await, Some(1000));
    }
    // The peak from here on (writing 5 to clear_refs resets VmHWM).
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let (_, idle) = memory_kib(pid);
    assert_eq!(call(150_000).await, Some(150_000), "under the bound, the whole result comes");
    let (peak, _) = memory_kib(pid);
    let single = peak.saturating_sub(idle);
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let (_, idle) = memory_kib(pid);
    let four = futures::future::join_all((0..4).map(|_| call(150_000))).await;
    assert!(four.iter().all(|n| *n == Some(150_000)), "{four:?}");
    let (peak, _) = memory_kib(pid);
    drop(serving);
    (single, peak.saturating_sub(idle))
}

/// The fixture serving Streamable HTTP (`--http`, then `flags`): the process and its port.
async fn http_fixture(flags: &[&str]) -> (tokio::process::Child, String) {
    let mut http = tokio::process::Command::new("python3")
        .arg(FIXTURE)
        .arg("--http")
        .args(flags)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(http.stdout.take().unwrap()));
    let port = lines.next_line().await.unwrap().unwrap().trim_start_matches("listening ").to_owned();
    (http, port)
}

/// `warden serve` in a process of its own (its config and audit in `dir`), in front of
/// `servers` (entries of `servers:`), with `env` set: the process and its URL.
fn warden_serve(issuer: &TestIssuer, dir: &std::path::Path, servers: &str, env: &[(&str, &str)]) -> (crate::common::Serving, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let config = format!(
        "server:\n  listen: 127.0.0.1:{port}\n  public_url: {url}\nidentity:\n  issuers:\n    - issuer: {}\naudit:\n  output: {}\n\
         upstream:\n  allow_cidrs: [127.0.0.1/32, \"::1/128\"]\nservers:\n{servers}",
        issuer.url,
        dir.join(format!("audit-{port}.jsonl")).display(),
    );
    let path = dir.join(format!("warden-{port}.yaml"));
    std::fs::write(&path, config).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--config"])
        .arg(&path)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (crate::common::Serving(child), url)
}

/// A `tools/call` through `url`'s `/mcp`: the JSON-RPC answer, `Null` when none came.
async fn tools_call(url: &str, token: &str, tool: &str, arguments: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}});
    let sent = reqwest::Client::new()
        .post(format!("{url}/mcp"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&body)
        .send()
        .await;
    match sent {
        Ok(r) => r.json::<Value>().await.unwrap_or_default(),
        Err(_) => Value::Null,
    }
}

/// The bounds on a catalog read, seen from outside (`warden serve` in its own process): a server
/// that pages forever and one whose cursor comes back are each refused once, with the bound or
/// the repeated cursor named in one log line, however often they say their list changed, and
/// Warden's memory stays small (unbounded, the endless catalog took 1.19 GB in 4 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_catalogs_are_refused_once_and_cost_little() {
    let issuer = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "server:\n  listen: 127.0.0.1:{port}\n  public_url: http://127.0.0.1:{port}\nidentity:\n  issuers:\n    - issuer: {}\naudit:\n  output: {}\nservers:\n{}{}",
        issuer.url,
        dir.path().join("audit.jsonl").display(),
        server("e", &["--paging", "endless"], ", refresh_interval: 1s"),
        server("s", &["--paging", "same-cursor"], ", refresh_interval: 1s"),
    );
    let path = dir.path().join("warden.yaml");
    std::fs::write(&path, config).unwrap();
    let log = dir.path().join("warden.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let refused = |server: &str| {
        let text = std::fs::read_to_string(&log).unwrap();
        text.lines()
            .filter(|l| l.contains("catalog was not read") && l.contains(&format!("server={server}")))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // Until both were refused (a slow machine takes longer), then three more refreshes of each.
    for _ in 0..100 {
        if !refused("e").is_empty() && !refused("s").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (peak, _) = memory_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let endless = refused("e");
    assert_eq!(endless.len(), 1, "logged once: {endless:#?}");
    assert!(endless[0].contains("catalog.max_items"), "{}", endless[0]);
    let circular = refused("s");
    assert_eq!(circular.len(), 1, "logged once: {circular:#?}");
    assert!(circular[0].contains("came back"), "{}", circular[0]);
    assert!(peak < 300 * 1024, "peak RSS {peak} KiB");
}

/// A federated server over HTTPS: its certificate is checked against the platform's trust
/// store (here a test CA, given as `SSL_CERT_FILE`, which the store honours on Linux) for the
/// session and for each call, which goes over hyper's client (`upstream::lean`) rather than the
/// session's; a Warden whose store does not trust the certificate never connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_server_over_https_is_reached_only_with_a_trusted_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = crate::common::test_certificates(dir.path());
    let (mut https, port) = http_fixture(&["--tls", &certificates.cert, &certificates.key]).await;
    let issuer = TestIssuer::start().await;
    let servers = format!("  - {{name: h, url: \"https://localhost:{port}/mcp\"}}\n");
    let call =
        |url: String, token: String, text: &'static str| async move { tools_call(&url, &token, "h_echo", json!({"text": text})).await };

    let (_trusting, url) = warden_serve(&issuer, dir.path(), &servers, &[("SSL_CERT_FILE", &certificates.ca)]);
    let token = issuer.sign(&issuer.claims("alice", "", &format!("{url}/mcp")));
    let first = eventually(|| call(url.clone(), token.clone(), "one"), |r| r["result"]["content"][0]["text"] == "echo: one").await;
    assert_eq!(first["result"]["content"][0]["text"], "echo: one", "{first}");
    let second = call(url.clone(), token.clone(), "two").await;
    assert_eq!(second["result"]["content"][0]["text"], "echo: two", "{second}");

    let (_distrusting, url) = warden_serve(&issuer, dir.path(), &servers, &[]);
    let token = issuer.sign(&issuer.claims("alice", "", &format!("{url}/mcp")));
    let refused = eventually(|| call(url.clone(), token.clone(), "three"), |r| !r.is_null()).await;
    assert_eq!(refused["error"]["data"]["code"], "unknown_tool", "the untrusted server's tools never came: {refused}");
    let _ = https.kill().await;
}
