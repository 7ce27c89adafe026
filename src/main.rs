//! The `warden` command: parse the CLI, load and validate config without binding, bind, wire
//! signals, run. Everything else lives in the library.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage error, 3 invalid configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use warden::config::{self, ProcessEnv};
use warden::demo::{Demo, DemoOptions};
use warden::devidp::{DevIdp, DevIdpConfig, UsersFile};

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 3;

#[derive(Parser)]
#[command(name = "warden", version, about = "MCP-native identity and governance gateway for AI agents", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a config file.
    Serve {
        /// Path to warden.yaml.
        #[arg(long, short, env = "WARDEN_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file without serving: exit 0 when valid, 3 with the failing path when not.
    Check {
        #[arg(long, short, env = "WARDEN_CONFIG")]
        config: PathBuf,
    },
    /// Run the development authorization server (demos and tests only; never production).
    DevIdp {
        /// Required: acknowledges that this server is for development only.
        #[arg(long)]
        insecure_dev_only: bool,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
        /// Issuer URL. Default: http://{listen}.
        #[arg(long)]
        issuer: Option<String>,
        /// Users file (YAML). Default: the demo users.
        #[arg(long)]
        users: Option<PathBuf>,
        /// Approve every authorization as this user, without a consent page.
        #[arg(long)]
        auto_approve: Option<String>,
        /// Access token lifetime, e.g. 1h.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        token_ttl: Duration,
    },
    /// Test and explain policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage the vault's encryption keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Upstream OAuth connections, through a running gateway's admin API. The admin token is
    /// read from WARDEN_ADMIN_TOKEN (never from the command line, where other users could see it).
    Connections {
        /// The gateway's base URL.
        #[arg(long, env = "WARDEN_GATEWAY_URL", default_value = "http://127.0.0.1:8080", global = true)]
        gateway: String,
        #[command(subcommand)]
        command: ConnectionsCommand,
    },
    /// Run the demo: gateway, development authorization server and a calendar backend. The default
    /// when no command is given.
    Demo {
        /// Gateway port (MCP at http://127.0.0.1:PORT/mcp).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Development authorization server port.
        #[arg(long, default_value_t = 9000)]
        idp_port: u16,
        /// Demo backend port.
        #[arg(long, default_value_t = 9100)]
        backend_port: u16,
        /// Approve every sign-in as this demo user (alice, bob or carol) without a consent page.
        #[arg(long)]
        auto_approve: Option<String>,
        /// Where audit events go: stdout, stderr, off, or a file path.
        #[arg(long, default_value = "stdout")]
        audit: String,
        /// Scopes a 401 challenge asks for (space-separated), so clients start with less and step
        /// up when a tool needs more. Default: every scope the tools require.
        #[arg(long)]
        challenge_scopes: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new random key, to add to the key ring as `kid:KEY`.
    Generate,
    /// Re-encrypt every stored secret under the active key (the first in the vault's key ring), in
    /// batches, while gateways keep serving. Run it after making a new key active; remove the old
    /// key from the ring afterwards.
    Rotate {
        #[arg(long, short, env = "WARDEN_CONFIG")]
        config: PathBuf,
        /// Rows per transaction.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
}

#[derive(Subcommand)]
enum ConnectionsCommand {
    /// Status of every connection (never a token).
    List {
        /// Only this credential's connections.
        #[arg(long)]
        credential: Option<String>,
    },
    /// Delete a connection: a shared one, or with --issuer and --subject one user's.
    Disconnect {
        credential: String,
        #[arg(long, requires = "subject")]
        issuer: Option<String>,
        #[arg(long, requires = "issuer")]
        subject: Option<String>,
    },
    /// Print a single-use link (valid 10 minutes) that makes or renews a shared connection.
    ConnectLink { credential: String },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run the fixtures (*.test.yaml) in DIR against the policies in DIR; exit 1 on any mismatch.
    Test {
        /// Directory of policy files and their fixtures.
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// Print how the policy decides one call, step by step. The token is decoded, NOT verified.
    Explain {
        /// The gateway config whose tools and policies to use.
        #[arg(long, short, env = "WARDEN_CONFIG")]
        config: PathBuf,
        /// An access token (JWT) whose claims describe the caller.
        #[arg(long)]
        token: String,
        /// The tool called.
        #[arg(long)]
        tool: String,
        /// The call's arguments as JSON; omit to explain the tools/list decision.
        #[arg(long)]
        args: Option<String>,
    },
}

fn main() -> ExitCode {
    init_logging();
    warden::install_crypto();
    let cli = Cli::parse();
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        eprintln!("error: cannot start the async runtime");
        return ExitCode::from(EXIT_RUNTIME);
    };
    let command = cli.command.unwrap_or(Command::Demo {
        port: 8080,
        idp_port: 9000,
        backend_port: 9100,
        auto_approve: None,
        audit: "stdout".into(),
        challenge_scopes: None,
    });
    runtime.block_on(dispatch(command))
}

async fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Check { config } => match load(&config) {
            Ok(_) => {
                println!("{}: valid", config.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Serve { config } => {
            let (config, gateway) = match load(&config) {
                Ok(v) => v,
                Err(code) => return code,
            };
            if let Some(vault) = &gateway.vault
                && let Err(e) = vault.store().await
            {
                return fail(format!("vault.database: {e}"));
            }
            let listener = match tokio::net::TcpListener::bind(config.server.listen).await {
                Ok(l) => l,
                Err(e) => return fail(format!("cannot listen on {}: {e}", config.server.listen)),
            };
            tracing::info!(listen = %config.server.listen, resource = %config.server.resource(), tools = config.tools.len(), "warden serving");
            let shutdown = CancellationToken::new();
            tokio::spawn(signal(shutdown.clone()));
            match warden::run(gateway, listener, shutdown.cancelled_owned()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("server error: {e}")),
            }
        }
        Command::DevIdp { insecure_dev_only, listen, issuer, users, auto_approve, token_ttl } => {
            if !insecure_dev_only {
                eprintln!(
                    "error: the development authorization server is not a production identity provider.\n       Start it with --insecure-dev-only to acknowledge that, or use `warden demo`."
                );
                return ExitCode::from(2);
            }
            let users = match users.map_or_else(|| UsersFile::parse(warden::devidp::DEMO_USERS), |p| UsersFile::load(&p)) {
                Ok(u) => u.users,
                Err(e) => return config_error(e),
            };
            let issuer = issuer.unwrap_or_else(|| format!("http://{listen}")).trim_end_matches('/').to_owned();
            let idp = match DevIdp::new(DevIdpConfig { issuer: issuer.clone(), users, auto_approve, access_token_ttl: token_ttl }) {
                Ok(idp) => idp,
                Err(e) => return config_error(e),
            };
            let listener = match tokio::net::TcpListener::bind(listen).await {
                Ok(l) => l,
                Err(e) => return fail(format!("cannot listen on {listen}: {e}")),
            };
            eprintln!("warden dev-idp: DEVELOPMENT ONLY authorization server at {issuer}");
            let shutdown = CancellationToken::new();
            tokio::spawn(signal(shutdown.clone()));
            match axum::serve(listener, warden::devidp::router(Arc::clone(&idp))).with_graceful_shutdown(shutdown.cancelled_owned()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("server error: {e}")),
            }
        }
        Command::Keys(KeysCommand::Generate) => {
            println!("{}", warden::credentials::envelope::KeyRing::generate_key().expose());
            ExitCode::SUCCESS
        }
        Command::Keys(KeysCommand::Rotate { config, batch }) => keys_rotate(&config, batch).await,
        Command::Connections { gateway, command } => connections(&gateway, command).await,
        Command::Policy(PolicyCommand::Test { dir }) => policy_test(&dir),
        Command::Policy(PolicyCommand::Explain { config, token, tool, args }) => policy_explain(&config, &token, &tool, args.as_deref()),
        Command::Demo { port, idp_port, backend_port, auto_approve, audit, challenge_scopes } => {
            let shutdown = CancellationToken::new();
            let challenge_scopes = challenge_scopes.map(|s| s.split_whitespace().map(str::to_owned).collect());
            let options =
                DemoOptions { gateway_port: port, idp_port, backend_port, auto_approve, audit, challenge_scopes, ..DemoOptions::default() };
            let demo = match Demo::start(options, shutdown.clone()).await {
                Ok(d) => d,
                Err(e) => return fail(e.to_string()),
            };
            eprintln!("{}", demo.instructions());
            tokio::spawn(signal(shutdown));
            match demo.wait().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("server error: {e}")),
            }
        }
    }
}

async fn keys_rotate(path: &std::path::Path, batch: usize) -> ExitCode {
    let config = match config::load_file(path, &ProcessEnv) {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    let Some(vault) = config.vault else {
        return config_error(format!("{}: no vault section", path.display()));
    };
    let keys = match vault.key_ring(&config.base_dir) {
        Ok(k) => Arc::new(k),
        Err(e) => return config_error(e),
    };
    let active = keys.active_kid().to_owned();
    let store = match warden::store::Store::open(&vault.database, keys).await {
        Ok(s) => s,
        Err(e) => return fail(format!("vault.database: {e}")),
    };
    match store.rotate_keys(batch).await {
        Ok(r) => {
            println!("{} rows, {} secrets re-encrypted under key {active}", r.rows, r.reencrypted);
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("rotation stopped: {e}")),
    }
}

/// `warden connections`: one admin API call, its result printed.
async fn connections(gateway: &str, command: ConnectionsCommand) -> ExitCode {
    let Ok(token) = std::env::var("WARDEN_ADMIN_TOKEN") else {
        eprintln!("error: set WARDEN_ADMIN_TOKEN to the gateway's admin.token");
        return ExitCode::from(2);
    };
    let client = match warden::upstream::control_plane_client() {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let base = gateway.trim_end_matches('/');
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    let request = match &command {
        ConnectionsCommand::List { credential } => {
            let query = credential.as_deref().map(|c| format!("?credential={}", enc(c))).unwrap_or_default();
            client.get(format!("{base}/admin/v1/connections{query}"))
        }
        ConnectionsCommand::Disconnect { credential, issuer, subject } => {
            let query = match (issuer, subject) {
                (Some(i), Some(s)) => format!("?issuer={}&subject={}", enc(i), enc(s)),
                _ => String::new(),
            };
            client.delete(format!("{base}/admin/v1/connections/{}{query}", enc(credential)))
        }
        ConnectionsCommand::ConnectLink { credential } => {
            client.post(format!("{base}/admin/v1/connections/{}/connect-link", enc(credential)))
        }
    };
    let response = match request.bearer_auth(token).send().await {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot reach the gateway at {base}: {e}")),
    };
    let status = response.status();
    let body: serde_json::Value = match warden::upstream::read_limited(response, 4 * 1024 * 1024).await {
        Ok(b) => serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
        Err(e) => return fail(format!("reading the gateway's answer: {e}")),
    };
    if !status.is_success() {
        return fail(format!("{status}: {}", body.get("message").and_then(|m| m.as_str()).unwrap_or("request failed")));
    }
    match command {
        ConnectionsCommand::List { .. } => {
            let rows = body.get("connections").and_then(|c| c.as_array()).cloned().unwrap_or_default();
            println!("{:<20} {:<40} {:<10} {:<32} EXPIRES", "CREDENTIAL", "OWNER", "STATUS", "REASON");
            for r in &rows {
                let text = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                let owner =
                    if text("subject").is_empty() { "(shared)".to_owned() } else { format!("{} @ {}", text("subject"), text("issuer")) };
                let expires = r
                    .get("expires_at")
                    .and_then(serde_json::Value::as_u64)
                    .map(|t| humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(t)).to_string())
                    .unwrap_or_else(|| "-".into());
                println!("{:<20} {:<40} {:<10} {:<32} {expires}", text("credential"), owner, text("status"), text("status_reason"));
            }
            println!("{} connection(s)", rows.len());
        }
        ConnectionsCommand::Disconnect { credential, .. } => println!("disconnected {credential}"),
        ConnectionsCommand::ConnectLink { .. } => {
            println!("{}", body.get("url").and_then(|u| u.as_str()).unwrap_or_default());
            eprintln!("single use, valid for 10 minutes: open it in a browser and sign in to the provider");
        }
    }
    ExitCode::SUCCESS
}

fn policy_test(dir: &std::path::Path) -> ExitCode {
    let results = match warden::policy::fixtures::run_dir(dir) {
        Ok(r) => r,
        Err(e) => return config_error(e),
    };
    let failed = results.iter().filter(|r| !r.passed).count();
    for r in &results {
        println!("{} {}: {} — {}", if r.passed { "ok  " } else { "FAIL" }, r.file, r.name, r.detail);
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(EXIT_RUNTIME) }
}

fn policy_explain(config: &std::path::Path, token: &str, tool: &str, args: Option<&str>) -> ExitCode {
    let (_, gateway) = match load(config) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let principal = match gateway.authenticator.principal_unverified(token) {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot read the token: {e}")),
    };
    let Some(tool) = gateway.tools.get(tool) else {
        return fail(format!("no tool named {tool:?} in {}", config.display()));
    };
    let args: Option<serde_json::Value> = match args.map(serde_json::from_str).transpose() {
        Ok(a) => a,
        Err(e) => return fail(format!("--args is not JSON: {e}")),
    };
    let stage = match &args {
        Some(a) => warden::policy::Stage::Call(a),
        None => warden::policy::Stage::List,
    };
    println!("NOTE: the token is decoded, not verified.");
    println!(
        "caller: sub={} issuer={} tenant={} roles=[{}] scopes=[{}]",
        principal.subject,
        principal.issuer,
        principal.tenant.as_deref().unwrap_or("-"),
        principal.roles.join(", "),
        principal.scopes.iter().cloned().collect::<Vec<_>>().join(" ")
    );
    println!("tool: {} at {}", tool.name, if args.is_some() { "call time" } else { "list time" });
    let mut trace = Vec::new();
    let decision =
        gateway.policy.load().decide(&principal, &tool.facts(), stage, &warden::policy::RequestFacts::default(), Some(&mut trace));
    for line in &trace {
        println!("  {line}");
    }
    match decision.outcome {
        Ok(()) => println!("decision: allow (by {})", decision.rule),
        Err(warden::policy::Denial::InsufficientScope { needed, .. }) => {
            println!("decision: step-up, needs {} (by {})", needed.join(" "), decision.rule)
        }
        Err(warden::policy::Denial::Forbidden { reason }) => println!("decision: deny: {reason} (by {})", decision.rule),
    }
    ExitCode::SUCCESS
}

/// Parse, validate and build every runtime type, binding nothing.
fn load(path: &std::path::Path) -> Result<(config::Config, warden::Gateway), ExitCode> {
    let config = config::load_file(path, &ProcessEnv).map_err(|e| config_error(e.to_string()))?;
    let gateway = warden::Gateway::build(&config).map_err(|e| config_error(e.to_string()))?;
    Ok((config, gateway))
}

fn config_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: invalid configuration: {message}");
    ExitCode::from(EXIT_CONFIG)
}

fn fail(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_RUNTIME)
}

/// Cancels `token` on Ctrl-C or SIGTERM.
async fn signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                token.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
    token.cancel();
}

fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warden=info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
