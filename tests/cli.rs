//! The real binary: exit codes, configuration errors naming their path, the dev server's
//! refusal to start unasked, SIGTERM drain; and every shipped example config loads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;

fn warden() -> Command {
    Command::cargo_bin("warden").unwrap()
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("warden.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

const VALID: &str = "
server:
  listen: 127.0.0.1:0
identity:
  issuers:
    - issuer: http://127.0.0.1:1
tools:
  - name: t
    description: d
    http:
      url: http://127.0.0.1:1/x
";

/// A config without tools, loopback upstreams allowed, for `servers[]` to be appended.
const VALID_NO_TOOLS: &str = "
server:
  listen: 127.0.0.1:0
identity:
  issuers:
    - issuer: http://127.0.0.1:1
upstream:
  allow_cidrs: [127.0.0.1/32]
";

/// An authorization-code connection, prepended to [`VALID`].
const CONNECTION: &str = "
vault:
  database: sqlite://v.db
  keys: \"k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"
admin:
  token: admin-token-0123456789abcdef0123456789
credentials:
  - name: gh
    placement: bearer
    oauth: {grant: authorization_code, provider: github, client_id: i, client_secret: s, pkce: S256}
";

#[test]
fn check_accepts_a_valid_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), VALID);
    let out = warden().args(["check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

const PETSTORE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openapi/petstore-3.0.json");

#[test]
fn check_names_the_failing_path() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (VALID.replace("http://127.0.0.1:1/x", "ftp://x/y"), "tools[0].http.url"),
        (VALID.replace("url: http://127.0.0.1:1/x", "url: http://{host}/x"), "tools[0].http.url"),
        (VALID.replace("    description: d\n", "    description: d\n    colour: blue\n"), "tools[0].colour"),
        (VALID.replace("name: t", "name: \"bad name!\""), "tools[0].name"),
        (
            VALID.replace("    - issuer: http://127.0.0.1:1", "    - issuer: http://127.0.0.1:1\n      algorithms: [HS256]"),
            "identity.issuers[0].algorithms[0]",
        ),
        (VALID.replace("listen: 127.0.0.1:0", "listen: nowhere"), "server.listen"),
        (VALID.replace("http://127.0.0.1:1/x", "${UNSET_WARDEN_TEST_VAR}"), "tools[0].http.url"),
        (format!("{VALID}  - name: t\n    description: again\n    http:\n      url: http://127.0.0.1:1/y\n"), "tools[1].name"),
        (VALID.replace("    http:\n", "    scopes: [\"a b\"]\n    http:\n"), "tools[0].scopes[0]"),
        (format!("{CONNECTION}{VALID}").replace("pkce: S256", "pkce: plain"), "credentials[0].oauth.pkce"),
        (format!("{CONNECTION}{VALID}"), "server.public_url"),
        (
            format!("{CONNECTION}{VALID}")
                .replace("vault:\n  database: sqlite://v.db\n  keys: \"k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n", ""),
            "credentials[0].oauth.grant",
        ),
        (
            format!("{CONNECTION}{VALID}")
                .replace("server:\n", "server:\n  public_url: https://mcp.example.com\n")
                .replace("token: admin-token-0123456789abcdef0123456789", "token: short"),
            "admin.token",
        ),
        (format!("openapi:\n  - {{name: p, spec: no-such-document.json}}\n{VALID}"), "openapi[0].spec"),
        (
            format!("openapi:\n  - {{name: p, spec: {PETSTORE}, base_url: http://127.0.0.1:1, operations: {{nope: {{}}}}}}\n{VALID}"),
            "openapi[0].operations",
        ),
        (format!("openapi:\n  - {{name: p, spec: {PETSTORE}, base_url: http://127.0.0.1:1, colour: blue}}\n{VALID}"), "openapi[0].colour"),
        (format!("routes:\n  - {{name: crm, upstream: 'http://127.0.0.1:1/?q=1'}}\n{VALID}"), "routes[0].upstream"),
        (format!("routes:\n  - {{name: 'bad/name', upstream: 'http://127.0.0.1:1'}}\n{VALID}"), "routes[0].name"),
        (format!("routes:\n  - {{name: crm, upstream: 'http://127.0.0.1:1', methods: [BREW]}}\n{VALID}"), "routes[0].methods[0]"),
        (format!("routes:\n  - {{name: crm, upstream: 'http://127.0.0.1:1', paths: [/a/../b]}}\n{VALID}"), "routes[0].paths[0]"),
        (format!("routes:\n  - {{name: crm, upstream: 'http://127.0.0.1:1', credential: nope}}\n{VALID}"), "routes[0].credential"),
        (format!("api_keys: {{enabled: true, hash_key: 0123456789abcdef0123456789abcdef}}\n{VALID}"), "api_keys.enabled"),
        (
            format!(
                "admin:\n  token: admin-token-0123456789abcdef0123456789\n  console:\n    oidc: {{issuer: 'https://elsewhere.example', client_id: c}}\n{VALID}"
            ),
            "admin.console.oidc.issuer",
        ),
    ];
    for (text, path) in cases {
        let file = write(dir.path(), &text);
        let out = warden().args(["check", "--config"]).arg(&file).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "expected exit 3 for {path}: {stderr}");
        assert!(stderr.contains(&format!("{path}:")), "expected {path} in: {stderr}");
    }
}

/// `servers[]` is validated with paths, before anything is started or connected.
#[test]
fn check_names_the_failing_server_path() {
    let dir = tempfile::tempdir().unwrap();
    let with = |servers: &str| format!("{VALID_NO_TOOLS}servers:\n{servers}");
    let cases = [
        (with("  - {name: a, url: http://127.0.0.1:1/mcp, command: x}\n"), "servers[0].url", "exactly one of url and command"),
        (with("  - {name: a}\n"), "servers[0].url", "exactly one"),
        (with("  - {name: \"bad name\", command: x}\n"), "servers[0].name", ""),
        (with("  - {name: a, command: x}\n  - {name: a, command: y}\n"), "servers[1].name", "duplicate"),
        (with("  - {name: a, command: x, prefix: p_}\n  - {name: b, command: y, prefix: p_}\n"), "servers[1].prefix", "server \"a\""),
        // Default prefixes `a_` and `a_b_`: a's `b_x` and a_b's `x` would both be `a_b_x`.
        (with("  - {name: a, command: x}\n  - {name: a_b, command: y}\n"), "servers[1].prefix", "start alike"),
        (with("  - {name: a_b, command: x}\n  - {name: a, command: y}\n"), "servers[1].prefix", "server \"a_b\""),
        (with("  - {name: a, url: ftp://x/mcp}\n"), "servers[0].url", "http(s)"),
        (with("  - {name: a, url: \"http://10.0.0.1/mcp\"}\n"), "servers[0].url", "SSRF"),
        (with("  - {name: a, command: x, credential: nope}\n"), "servers[0].credential", ""),
        (with("  - {name: a, url: \"http://127.0.0.1:1/mcp\", credential: nope}\n"), "servers[0].credential", "no credential named"),
        (with("  - {name: a, command: x, pinning: maybe}\n"), "servers[0].pinning", ""),
        (with("  - {name: a, command: x, tags: [\"a b\"]}\n"), "servers[0].tags[0]", ""),
        (with("  - {name: a, command: x, colour: blue}\n"), "servers[0].colour", ""),
        (
            format!("{VALID}servers:\n  - {{name: t, command: x, prefix: \"\"}}\n  - {{name: u, command: y, prefix: t}}\n"),
            "servers[1].prefix",
            "tools[]",
        ),
    ];
    for (text, path, says) in cases {
        let file = write(dir.path(), &text);
        let out = warden().args(["check", "--config"]).arg(&file).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "expected exit 3 for {path}: {stderr}");
        assert!(stderr.contains(&format!("{path}:")) && stderr.contains(says), "expected {path} ({says}) in: {stderr}");
    }
    let ok = write(
        dir.path(),
        &with(
            "  - {name: a, url: \"http://127.0.0.1:1/mcp\", include: [\"get_*\"], pinning: warn}\n  - {name: b, command: x, args: [-y], env: {K: v}}\n",
        ),
    );
    let out = warden().args(["check", "--config"]).arg(&ok).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn interpolation_errors_never_echo_values() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), &VALID.replace("http://127.0.0.1:1/x", "${WARDEN_TEST_SECRET}"));
    let out = warden().args(["check", "--config"]).arg(&file).env("WARDEN_TEST_SECRET", "s3cr3t-value").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3));
    assert!(!stderr.contains("s3cr3t-value"), "{stderr}");
}

#[test]
fn missing_file_and_bad_yaml_are_config_errors() {
    let out = warden().args(["check", "--config", "/nonexistent/warden.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "server: [unclosed");
    assert_eq!(warden().args(["check", "--config"]).arg(&file).output().unwrap().status.code(), Some(3));
}

#[test]
fn usage_errors_exit_2_and_help_documents_each_command() {
    assert_eq!(warden().arg("frobnicate").output().unwrap().status.code(), Some(2));
    let help = String::from_utf8(warden().arg("--help").output().unwrap().stdout).unwrap();
    for cmd in ["serve", "check", "dev-idp", "demo"] {
        assert!(help.contains(cmd), "--help does not mention {cmd}");
    }
}

#[test]
fn dev_idp_refuses_to_start_without_the_flag() {
    let out = warden().args(["dev-idp", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a production identity provider"));
}

#[cfg(unix)]
#[test]
fn serve_survives_sighup_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), VALID);
    let bin = assert_cmd::cargo::cargo_bin("warden");
    let mut child = std::process::Command::new(bin).args(["serve", "--config"]).arg(&path).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "serve exited early");
    // SIGHUP means reload, even with nothing to reload: never a shutdown.
    std::process::Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP terminated serve");
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM while 32 clients keep calling: in-flight requests are answered, and every answered
/// request's audit event is written before the process exits (the writer's queue is drained,
/// not dropped). The audit "file" is a pipe this test does not read until after the SIGTERM,
/// so the writer is stuck, its queue full and the requests waiting on it when the signal comes.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_writes_every_audit_event_before_exit() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let audit = dir.path().join("audit.pipe");
    assert!(std::process::Command::new("mkfifo").arg(&audit).status().unwrap().success());
    let go = Arc::new(std::sync::Barrier::new(2));
    let reader = {
        let (audit, go) = (audit.clone(), Arc::clone(&go));
        std::thread::spawn(move || {
            use std::io::Read;
            let mut pipe = std::fs::File::open(audit).unwrap();
            go.wait();
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let config = VALID.replace("127.0.0.1:0", &format!("127.0.0.1:{port}")) + &format!("audit:\n  output: {}\n", audit.display());
    let path = write(dir.path(), &config);
    let bin = assert_cmd::cargo::cargo_bin("warden");
    let mut child =
        std::process::Command::new(bin).args(["serve", "--config"]).arg(&path).stderr(std::process::Stdio::null()).spawn().unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while http.get(format!("{url}/healthz")).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..32 {
        let (http, url, answered) = (http.clone(), url.clone(), Arc::clone(&answered));
        clients.push(tokio::spawn(async move {
            loop {
                // Each is refused (no token) and each refusal is one audit event.
                let sent = http
                    .post(format!("{url}/mcp"))
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .body(format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 401 => answered.fetch_add(1, Ordering::SeqCst),
                    _ => break,
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    go.wait();
    for c in clients {
        tokio::time::timeout(Duration::from_secs(20), c).await.expect("a client hung after SIGTERM").unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "serve did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
    let answered = answered.load(Ordering::SeqCst);
    let text = reader.join().unwrap();
    let lines = text.lines().filter(|l| l.contains("\"token_missing\"")).count();
    assert!(answered > 100, "too little load to test the drain: {answered}");
    assert_eq!(lines, answered, "audit events against answered requests");
}

/// Values for the `${...}` placeholders example configs use.
fn example_env() -> HashMap<String, String> {
    HashMap::from([
        ("WARDEN_DEMO_GATEWAY".into(), "127.0.0.1:8080".into()),
        ("WARDEN_DEMO_ISSUER".into(), "http://127.0.0.1:9000".into()),
        ("WARDEN_DEMO_BACKEND".into(), "http://127.0.0.1:9100".into()),
        ("WARDEN_DEMO_VAULT".into(), "sqlite://warden-demo-vault.db".into()),
        ("WARDEN_DEMO_VAULT_KEYS".into(), "demo:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into()),
        ("WARDEN_DEMO_NOTES_SECRET".into(), "example-secret".into()),
        ("WARDEN_DEMO_ADMIN_TOKEN".into(), "example-admin-token-0123456789abcdef".into()),
        ("WARDEN_DEMO_CONSOLE_SECRET".into(), "example-secret".into()),
        ("WARDEN_DEMO_API_KEY_HASH_KEY".into(), "example-api-key-hash-key-0123456789".into()),
        ("WARDEN_API_KEY_HASH_KEY".into(), "example-api-key-hash-key-0123456789".into()),
        ("WARDEN_CONSOLE_CLIENT_SECRET".into(), "example-secret".into()),
        ("CRM_API_KEY".into(), "example-key".into()),
        ("ENTRA_TENANT_ID".into(), "00000000-0000-0000-0000-000000000000".into()),
        ("ENTRA_CLIENT_ID".into(), "11111111-1111-1111-1111-111111111111".into()),
        ("WARDEN_IDP_SECRET".into(), "example-secret".into()),
        ("CRM_API_TOKEN".into(), "example-token".into()),
        ("WARDEN_VAULT_KEYS".into(), "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into()),
        ("WARDEN_VAULT_DATABASE".into(), "postgres://warden@db.internal/warden".into()),
        ("WARDEN_ADMIN_TOKEN".into(), "example-admin-token-0123456789abcdef".into()),
        ("GITHUB_CLIENT_ID".into(), "Iv23liExample".into()),
        ("GITHUB_CLIENT_SECRET".into(), "example-secret".into()),
        ("GOOGLE_CLIENT_ID".into(), "1234.apps.googleusercontent.com".into()),
        ("GOOGLE_CLIENT_SECRET".into(), "example-secret".into()),
    ])
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_example_config_in_demos_and_docs_loads() {
    warden::install_crypto();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    yaml_files(&root.join("demos"), &mut files);
    yaml_files(&root.join("docs"), &mut files);
    let mut configs = 0;
    for file in &files {
        // Prometheus rules, not Warden configs (checked by promtool in scripts/test).
        if file.parent().and_then(Path::file_name).is_some_and(|d| d == "dashboards") {
            continue;
        }
        if file.file_name().is_some_and(|n| n == "users.yaml") {
            warden::devidp::UsersFile::load(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            continue;
        }
        let config = warden::config::load_file(file, &example_env()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        warden::Gateway::build(&config).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        configs += 1;
    }
    assert!(configs >= 5, "expected the demo and docs example configs, found {configs}");
}

#[test]
fn shipped_policies_pass_their_fixtures_and_each_has_some() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let out = warden().args(["policy", "test"]).arg(&root).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().last().is_some_and(|l| l.ends_with(" passed, 0 failed")), "{stdout}");
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        if warden::policy::is_policy_file(&path) {
            let fixture = path.with_extension("test.yaml");
            assert!(fixture.exists(), "{} has no fixtures ({})", path.display(), fixture.display());
        }
    }
}

#[test]
fn policy_test_fails_on_a_mismatch_and_on_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), "rules:\n  - {id: a, effect: allow, tools: [t], roles: [admin]}\n").unwrap();
    std::fs::write(
        dir.path().join("p.test.yaml"),
        "tools: [{name: t}]\ncases:\n  - {name: admin, principal: {sub: a, roles: [admin]}, tool: t, expect: allow}\n  - {name: wrong, principal: {sub: b}, tool: t, expect: allow}\n",
    )
    .unwrap();
    let out = warden().args(["policy", "test"]).arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL") && stdout.contains("wrong") && stdout.contains("1 passed, 1 failed"), "{stdout}");

    std::fs::write(dir.path().join("p.yaml"), "rules:\n  - {id: a, effect: allow, tools: [t], when: \"nope.x == 1\"}\n").unwrap();
    let out = warden().args(["policy", "test"]).arg(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("p: rules[0] (a): when: unknown variable \"nope\""), "{stderr}");
}

#[test]
fn check_names_the_policy_file_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "rules:\n  - {id: ok, effect: allow, tools: [t]}\n  - {id: broken, effect: deny, tools: [t], when: \"args.x >\"}\n",
    )
    .unwrap();
    let path = write(dir.path(), &format!("{VALID}policy:\n  files: [bad.yaml]\n"));
    let out = warden().args(["check", "--config"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("policy.files: bad: rules[1] (broken): when: invalid CEL"), "{stderr}");
}

#[test]
fn policy_explain_prints_the_trace() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), "rules:\n  - {id: admins, effect: allow, tools: [t], roles: [admin], reason: admins only}\n")
        .unwrap();
    let path = write(dir.path(), &format!("{VALID}policy:\n  files: [p.yaml]\n"));
    let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let token = format!(
        "{}.{}.sig",
        b64(serde_json::json!({"alg": "RS256"})),
        b64(serde_json::json!({"iss": "http://127.0.0.1:1", "sub": "u1", "roles": ["user"]}))
    );
    let out = warden()
        .args(["policy", "explain", "--config"])
        .arg(&path)
        .args(["--token", &token, "--tool", "t", "--args", "{}"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("not verified"), "{stdout}");
    assert!(stdout.contains("p/admins (allow): not applicable, needs a role of admin"), "{stdout}");
    assert!(stdout.contains("decision: deny: admins only (by p/admins)"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_rotate_reencrypts_a_vault_under_the_new_key() {
    use std::sync::Arc;
    use warden::credentials::Secret;
    use warden::credentials::envelope::KeyRing;
    use warden::store::{ConnectionKey, Store, Tokens};

    let out = warden().args(["keys", "generate"]).output().unwrap();
    let k2 = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &k2).map(|b| b.len()).ok(), Some(32));
    let k1 = KeyRing::generate_key().expose().to_owned();

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("vault.db").display());
    let old = Store::open(&db, Arc::new(KeyRing::parse(&Secret::new(format!("k1:{k1}"))).unwrap())).await.unwrap();
    let who = ConnectionKey { credential: "github".into(), issuer: String::new(), subject: String::new() };
    let tokens = Tokens { access_token: Secret::new("gho_before_rotation"), refresh_token: None, expires_at: None, scope: None };
    old.put_tokens(&who, &tokens).await.unwrap();

    let path = write(dir.path(), &format!("{VALID}vault:\n  database: {db}\n  keys: ${{WARDEN_TEST_VAULT_KEYS}}\n"));
    let rotate = |keys: String| {
        let path = path.clone();
        move || warden().args(["keys", "rotate", "--config"]).arg(&path).env("WARDEN_TEST_VAULT_KEYS", keys).output().unwrap()
    };
    let out = tokio::task::spawn_blocking(rotate(format!("k2:{k2},k1:{k1}"))).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "1 rows, 1 secrets re-encrypted under key k2");
    let new_only = Store::open(&db, Arc::new(KeyRing::parse(&Secret::new(format!("k2:{k2}"))).unwrap())).await.unwrap();
    assert_eq!(new_only.get_tokens(&who).await.unwrap(), Some(tokens));

    // A bad key ring is a configuration error naming vault.keys, never echoing the material.
    let out = tokio::task::spawn_blocking(rotate("k2:not-a-key".into())).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("vault.keys") && !stderr.contains("not-a-key"), "{stderr}");

    // The ring can come from a file (one key per line, as a mounted secret would hold it).
    std::fs::write(dir.path().join("vault-keys"), format!("k3:{k2}\nk2:{k2}\n")).unwrap();
    let path = write(dir.path(), &format!("{VALID}vault:\n  database: {db}\n  keys_file: vault-keys\n"));
    let out =
        tokio::task::spawn_blocking(move || warden().args(["keys", "rotate", "--config"]).arg(&path).output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "1 rows, 1 secrets re-encrypted under key k3");
    for (vault, field) in [
        ("  keys_file: missing-file\n".to_owned(), "vault.keys_file"),
        (format!("  keys_file: vault-keys\n  keys: \"k1:{k1}\"\n"), "vault.keys"),
    ] {
        let path = write(dir.path(), &format!("{VALID}vault:\n  database: {db}\n{vault}"));
        let out = warden().args(["check", "--config"]).arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(stderr.contains(&format!("{field}:")) && !stderr.contains(&k1), "{stderr}");
    }
}

/// The Dockerfile, checked without a Docker engine: every path the build reads (the manifest's
/// targets, `include_str!`ed files, embedded migrations) is copied into the build stage; the
/// bases are pinned; the runtime runs as a numeric non-root user, with a health check through
/// `warden health`; nothing is fetched with ADD.
#[test]
fn the_dockerfile_copies_what_the_build_reads_and_runs_unprivileged() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
    let stages: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| l.starts_with("FROM ")).map(|(i, _)| i).collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    for i in &stages {
        let image = lines[*i].split_whitespace().nth(1).unwrap();
        assert!(image.contains(':') && !image.ends_with(":latest"), "unpinned base {image}");
    }
    let (build, runtime) = (&lines[stages[0]..stages[1]], &lines[stages[1]..]);
    let copied: Vec<&str> = build
        .iter()
        .filter_map(|l| l.strip_prefix("COPY "))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts[..parts.len() - 1].to_vec()
        })
        .map(|p| p.trim_end_matches('/'))
        .collect();
    // What the build reads: the manifest's declared targets and the files compiled in.
    let mut needed: Vec<String> = vec!["Cargo.toml".into(), "Cargo.lock".into(), "src".into(), "migrations".into()];
    // The build script, and the symbol order it hands the linker.
    if root.join("build.rs").exists() {
        needed.extend(["build.rs".into(), "build".into()]);
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for line in manifest.lines() {
        if let Some(path) = line.strip_prefix("path = \"") {
            needed.push(path.split('/').next().unwrap().to_owned());
        }
        if line.trim() == "[[bench]]" {
            needed.push("benches".into());
        }
    }
    let mut sources = Vec::new();
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    rust_files(&root.join("src"), &mut sources);
    for file in &sources {
        let text = std::fs::read_to_string(file).unwrap();
        for part in text.split("include_str!(\"").skip(1) {
            let relative = &part[..part.find('"').unwrap()];
            let resolved = file.parent().unwrap().join(relative).canonicalize().unwrap();
            let top = resolved.strip_prefix(root.canonicalize().unwrap()).unwrap().components().next().unwrap();
            needed.push(top.as_os_str().to_string_lossy().into_owned());
        }
    }
    needed.sort();
    needed.dedup();
    for path in &needed {
        assert!(copied.contains(&path.as_str()), "the build stage reads {path} but does not COPY it: {copied:?}");
    }
    assert!(!lines.iter().any(|l| l.starts_with("ADD ")), "COPY, never ADD");
    let user = runtime.iter().rev().find_map(|l| l.strip_prefix("USER ")).expect("the runtime sets a USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid.parse::<u32>().is_ok_and(|u| u != 0), "a numeric, non-root user (Kubernetes runAsNonRoot needs a number): {user}");
    let check = runtime.iter().find(|l| l.starts_with("HEALTHCHECK ")).expect("a health check");
    assert!(check.contains("\"warden\", \"health\""), "{check}");

    // The health check's command works against a running gateway, and fails without one.
    let dir = tempfile::tempdir().unwrap();
    let (listener, port) = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    };
    drop(listener);
    let config = write(dir.path(), &VALID.replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}")));
    let mut serving = std::process::Command::new(env!("CARGO_BIN_EXE_warden")).args(["serve", "--config"]).arg(&config).spawn().unwrap();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let healthy = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        warden().args(["health", "--url", &url]).output().unwrap().status.success()
    });
    serving.kill().unwrap();
    serving.wait().unwrap();
    assert!(healthy, "warden health never saw the gateway healthy");
    assert_eq!(warden().args(["health", "--url", &url]).output().unwrap().status.code(), Some(1), "nothing listens now");
}

/// A base64url key may begin with `-` (one key in 64): it is taken as the key, not as a flag.
#[test]
fn an_audit_key_that_begins_with_a_dash_is_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    std::fs::write(&file, "").unwrap();
    let out = warden().args(["audit", "verify", "--key", "-QZ8yWQ5bN6x0Yw3m0l2n1x6t5c4b3a2z1y0x9w8v7u6"]).arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("unexpected argument"), "{stderr}");
    assert_ne!(out.status.code(), Some(2), "not a usage error: {stderr}");
}
