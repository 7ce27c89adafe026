//! The `warden` command's subcommands: `main.rs` parses the command line and calls
//! [`dispatch`]. Each subcommand loads and validates what it needs before binding anything.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage error, 3 invalid configuration.

mod admin_client;
mod api_keys;
mod approvals;
mod audit;
mod connections;
mod keys;
mod limits;
mod policy;
mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{self, ProcessEnv};
use crate::demo::{Demo, DemoOptions};
use crate::devidp::{DevIdp, DevIdpConfig, SigningKey, UsersFile};

/// A runtime failure.
pub const EXIT_RUNTIME: u8 = 1;
/// Invalid configuration.
pub const EXIT_CONFIG: u8 = 3;

#[derive(Parser)]
#[command(name = "warden", version, about = "MCP-native identity and governance gateway for AI agents", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Probe a running gateway's /healthz (for container health checks, where no curl is
    /// installed): exit 0 when it answers 200 within 3 s, 1 otherwise.
    Health {
        #[arg(long, env = "WARDEN_HEALTH_URL", default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
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
        /// Extra root certificates (PEM) to trust when fetching client ID metadata documents.
        #[arg(long)]
        client_metadata_ca: Option<PathBuf>,
        /// Sign with the RSA key in this PEM file (created if missing); its `kid` is its
        /// thumbprint. Default: a fresh key for each start.
        #[arg(long)]
        signing_key: Option<PathBuf>,
        /// Also publish this earlier key's public half in the JWKS (a rotation's overlap);
        /// may be repeated.
        #[arg(long)]
        publish_key: Vec<PathBuf>,
    },
    /// Test and explain policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage the vault's encryption keys and the audit chain's signing key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The audit trail: verify its hash chain and signed checkpoints.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Upstream OAuth connections, through a running gateway's admin API. The admin token is
    /// read from WARDEN_ADMIN_TOKEN (never from the command line, where other users could see it).
    Connections {
        /// The gateway's base URL.
        #[arg(long, env = "WARDEN_GATEWAY_URL", default_value = "http://127.0.0.1:8080", global = true)]
        gateway: String,
        #[command(subcommand)]
        command: ConnectionsCommand,
    },
    /// Federated tools' pinned definitions, through a running gateway's admin API (token from
    /// WARDEN_ADMIN_TOKEN): list them, show a change, approve it.
    Tools {
        /// The gateway's base URL.
        #[arg(long, env = "WARDEN_GATEWAY_URL", default_value = "http://127.0.0.1:8080", global = true)]
        gateway: String,
        #[command(subcommand)]
        command: ToolsCommand,
    },
    /// Rate limits and quotas, through a running gateway's admin API (token from
    /// WARDEN_ADMIN_TOKEN): quota usage per subject, tenant or client.
    Limits {
        /// The gateway's base URL.
        #[arg(long, env = "WARDEN_GATEWAY_URL", default_value = "http://127.0.0.1:8080", global = true)]
        gateway: String,
        #[command(subcommand)]
        command: LimitsCommand,
    },
    /// Gateway-issued API keys (`wdn_live_…`), through a running gateway's admin API (token from
    /// WARDEN_ADMIN_TOKEN): create one (shown once), list them, revoke one.
    ApiKeys {
        /// The gateway's base URL.
        #[arg(long, env = "WARDEN_GATEWAY_URL", default_value = "http://127.0.0.1:8080", global = true)]
        gateway: String,
        #[command(subcommand)]
        command: ApiKeysCommand,
    },
    /// The calls `approve` policy rules hold back: list them, approve or deny one. An approver
    /// uses their own bearer token (WARDEN_APPROVER_TOKEN); else the admin token
    /// (WARDEN_ADMIN_TOKEN) lists.
    Approvals {
        /// The gateway's base URL.
        #[arg(long, env = "WARDEN_GATEWAY_URL", default_value = "http://127.0.0.1:8080", global = true)]
        gateway: String,
        #[command(subcommand)]
        command: ApprovalsCommand,
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
        /// The enterprise set-up: Warden is the authorization server clients sign in at, and the
        /// development server stands behind it as the company's IdP.
        #[arg(long)]
        enterprise: bool,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Audit events from the database sink, through a running gateway's admin API (token from
    /// WARDEN_ADMIN_TOKEN), newest first, one JSON line each.
    Query {
        /// The gateway's base URL.
        #[arg(long, env = "WARDEN_GATEWAY_URL", default_value = "http://127.0.0.1:8080")]
        gateway: String,
        #[arg(long)]
        subject: Option<String>,
        #[arg(long)]
        tool: Option<String>,
        /// allow, deny or error.
        #[arg(long)]
        decision: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        /// RFC 3339 (UTC), inclusive.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339 (UTC), exclusive.
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Checks audit files (a path also takes its rotated files PATH.N, oldest first) and reports
    /// the first deleted, inserted, reordered or altered record, a bad checkpoint signature,
    /// and the records after the last checkpoint. Exit status: 0 verified, 1 a fault, 3
    /// verified but with records no checkpoint covers.
    Verify {
        /// Audit files, oldest first.
        #[arg(required_unless_present = "database")]
        files: Vec<PathBuf>,
        /// A checkpoint public key (base64url), as `warden keys generate --audit` printed it;
        /// once per key when the key was rotated. (A key may begin with `-`.)
        #[arg(long, conflicts_with = "keys_url", allow_hyphen_values = true)]
        key: Vec<String>,
        /// Fetch the keys from a gateway's `/.well-known/warden-audit-keys`.
        #[arg(long)]
        keys_url: Option<String>,
        /// Verify the database sink's records instead of files: every chain in the vault's
        /// database of this config.
        #[arg(long, conflicts_with = "files")]
        database: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// Requests waiting for a decision (with --all, every recent one).
    List {
        #[arg(long)]
        all: bool,
        /// The admin API's JSON, as it came.
        #[arg(long)]
        json: bool,
    },
    /// Approve a request: the caller's retry of the same call then runs, once.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a request.
    Deny {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print a new random key, to add to the key ring as `kid:KEY`; with --audit, write a new
    /// Ed25519 key for signing audit checkpoints to --out and print its public key.
    Generate {
        /// An audit checkpoint signing key instead of a vault key.
        #[arg(long, requires = "out")]
        audit: bool,
        /// Where the audit key is written (created with mode 0600; never overwritten).
        #[arg(long)]
        out: Option<PathBuf>,
    },
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
    /// Make a new key for what Warden signs: its authorization server's access tokens (default)
    /// or, with `--key assertions`, the identity assertions it sends backends. Every replica
    /// signs with it within a minute (and accepts a new access token key at once); the previous
    /// key stays published, so what it signed verifies until it expires; older keys are retired.
    /// Rotate at most once per token (or assertion) lifetime.
    RotateSigning {
        #[arg(long, short, env = "WARDEN_CONFIG")]
        config: PathBuf,
        /// Which key: `access-tokens` (RS256, the authorization server's) or `assertions`
        /// (ES256, the identity assertions sent to backends).
        #[arg(long, value_enum, default_value = "access-tokens")]
        key: keys::SigningKind,
    },
}

#[derive(Subcommand)]
pub enum ApiKeysCommand {
    /// Issue a key; it is printed once, on standard output, and never shown again.
    Create {
        /// A name to tell the key apart (`ci-nightly`).
        #[arg(long)]
        name: String,
        /// The service, or the person, the key acts as.
        #[arg(long)]
        subject: String,
        #[arg(long)]
        tenant: Option<String>,
        /// Scopes (repeat, or space-separated).
        #[arg(long = "scope", value_delimiter = ' ')]
        scopes: Vec<String>,
        /// Roles (repeat).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Tools (or `route:NAME`) the key may call (repeat); default: what policy allows.
        #[arg(long = "tool")]
        tools: Vec<String>,
        /// Lifetime (`30d`, `12h`); default: the gateway's `api_keys.default_lifetime`.
        #[arg(long)]
        expires_in: Option<String>,
        /// A `wdn_test_` key instead of `wdn_live_`.
        #[arg(long)]
        test: bool,
    },
    /// Keys and their status (never a key).
    List {
        /// Revoked keys too.
        #[arg(long)]
        all: bool,
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id (`key_…`).
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum LimitsCommand {
    /// Quota usage: cost units spent per quota, bucket and period, against the budget. Every
    /// filter given must match (a tenant's quota is found with --tenant, not --subject).
    Usage {
        #[arg(long)]
        subject: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        client: Option<String>,
        /// Only this quota (`limits.quotas[].name`).
        #[arg(long)]
        quota: Option<String>,
        /// Only this period (`2026-11` or `2026-11-30`).
        #[arg(long)]
        period: Option<String>,
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ToolsCommand {
    /// Every pinned tool, and whether its server now presents a changed definition.
    Pins,
    /// The change between a tool's approved definition and the one its server presents now.
    Diff {
        /// The server's name (`servers[].name`).
        server: String,
        /// The tool's name on that server (without the prefix).
        tool: String,
    },
    /// Shows the change, then approves the definition shown (by its hash): the tool is served
    /// again.
    Approve { server: String, tool: String },
    /// Approves every changed definition of a server, showing each change.
    Pin { server: String },
}

#[derive(Subcommand)]
pub enum ConnectionsCommand {
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
pub enum PolicyCommand {
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

impl Command {
    /// `serve` sets the process's subscriber itself (its config may export traces).
    pub fn is_serve(&self) -> bool {
        matches!(self, Self::Serve { .. })
    }
}

/// Runs a subcommand; `None` is the demo.
pub async fn dispatch(command: Option<Command>) -> ExitCode {
    let command = command.unwrap_or(Command::Demo {
        port: 8080,
        idp_port: 9000,
        backend_port: 9100,
        auto_approve: None,
        audit: "stdout".into(),
        challenge_scopes: None,
        enterprise: false,
    });
    match command {
        Command::Health { url } => health(&url).await,
        Command::Check { config } => match load(&config) {
            Ok(_) => {
                println!("{}: valid", config.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Serve { config } => {
            let loaded = tracing::subscriber::with_default(crate::telemetry::traces::log_subscriber(), || {
                let (config, gateway) = load(&config)?;
                let plan = config.telemetry.trace_plan(&|k| config::Env::var(&ProcessEnv, k)).map_err(config_error)?;
                let exporter = plan.as_ref().map(crate::telemetry::traces::exporter).transpose().map_err(config_error)?;
                Ok((config, gateway, exporter))
            });
            let (config_file, (config, mut gateway, traces)) = match loaded {
                Ok(v) => (config, v),
                Err(code) => return code,
            };
            gateway.config_file = Some(config_file);
            let traces = match traces {
                Some((layer, installed)) => {
                    crate::telemetry::traces::init_subscriber(Some(layer));
                    tracing::info!("exporting traces over OTLP/HTTP");
                    Some(installed)
                }
                None => {
                    crate::telemetry::traces::init_subscriber(None);
                    None
                }
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
            let served = crate::run(gateway, listener, shutdown.cancelled_owned()).await;
            // The last spans are sent before the process exits.
            drop(traces);
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("server error: {e}")),
            }
        }
        Command::DevIdp {
            insecure_dev_only,
            listen,
            issuer,
            users,
            auto_approve,
            token_ttl,
            client_metadata_ca,
            signing_key,
            publish_key,
        } => {
            if !insecure_dev_only {
                eprintln!(
                    "error: the development authorization server is not a production identity provider.\n       Start it with --insecure-dev-only to acknowledge that, or use `warden demo`."
                );
                return ExitCode::from(2);
            }
            let users = match users.map_or_else(|| UsersFile::parse(crate::devidp::DEMO_USERS), |p| UsersFile::load(&p)) {
                Ok(u) => u.users,
                Err(e) => return config_error(e),
            };
            let issuer = issuer.unwrap_or_else(|| format!("http://{listen}")).trim_end_matches('/').to_owned();
            let client_metadata_ca = match client_metadata_ca.map(std::fs::read).transpose() {
                Ok(pem) => pem,
                Err(e) => return fail(format!("--client-metadata-ca: {e}")),
            };
            let config = DevIdpConfig { issuer: issuer.clone(), users, auto_approve, access_token_ttl: token_ttl, client_metadata_ca };
            let key = match signing_key.as_deref().map_or_else(SigningKey::generate, SigningKey::load_or_create) {
                Ok(k) => k,
                Err(e) => return fail(format!("--signing-key: {e}")),
            };
            let previous: Result<Vec<SigningKey>, _> = publish_key.iter().map(|p| SigningKey::load(p)).collect();
            let previous = match previous {
                Ok(p) => p,
                Err(e) => return fail(format!("--publish-key: {e}")),
            };
            eprintln!("warden dev-idp: signing with kid {}", key.kid);
            let idp = match DevIdp::with_keys(config, key, &previous) {
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
            match axum::serve(listener, crate::devidp::router(Arc::clone(&idp))).with_graceful_shutdown(shutdown.cancelled_owned()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(format!("server error: {e}")),
            }
        }
        Command::Keys(KeysCommand::Generate { audit: false, .. }) => {
            println!("{}", crate::credentials::envelope::KeyRing::generate_key().expose());
            ExitCode::SUCCESS
        }
        Command::Keys(KeysCommand::Generate { audit: true, out }) => audit::generate_key(out.as_deref()),
        Command::Audit(AuditCommand::Verify { files, key, keys_url, database }) => {
            audit::verify(&files, &key, keys_url.as_deref(), database.as_deref()).await
        }
        Command::Audit(AuditCommand::Query { gateway, subject, tool, decision, tenant, since, until, limit }) => {
            let filter =
                [("subject", subject), ("tool", tool), ("decision", decision), ("tenant", tenant), ("since", since), ("until", until)];
            audit::query(&gateway, &filter, limit).await
        }
        Command::Keys(KeysCommand::Rotate { config, batch }) => keys::rotate(&config, batch).await,
        Command::Keys(KeysCommand::RotateSigning { config, key }) => keys::rotate_signing(&config, key).await,
        Command::Connections { gateway, command } => connections::run(&gateway, command).await,
        Command::Tools { gateway, command } => tools::run(&gateway, command).await,
        Command::Limits { gateway, command } => limits::run(&gateway, command).await,
        Command::ApiKeys { gateway, command } => api_keys::run(&gateway, command).await,
        Command::Approvals { gateway, command } => approvals::run(&gateway, command).await,
        Command::Policy(PolicyCommand::Test { dir }) => policy::test(&dir),
        Command::Policy(PolicyCommand::Explain { config, token, tool, args }) => policy::explain(&config, &token, &tool, args.as_deref()),
        Command::Demo { port, idp_port, backend_port, auto_approve, audit, challenge_scopes, enterprise } => {
            let shutdown = CancellationToken::new();
            let challenge_scopes = challenge_scopes.map(|s| s.split_whitespace().map(str::to_owned).collect());
            let options = DemoOptions {
                gateway_port: port,
                idp_port,
                backend_port,
                auto_approve,
                audit,
                challenge_scopes,
                enterprise,
                ..DemoOptions::default()
            };
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

/// Parse, validate and build every runtime type, binding nothing.
pub(crate) fn load(path: &std::path::Path) -> Result<(config::Config, crate::Gateway), ExitCode> {
    let config = config::load_file(path, &ProcessEnv).map_err(|e| config_error(e.to_string()))?;
    let gateway = crate::Gateway::build(&config).map_err(|e| config_error(e.to_string()))?;
    Ok((config, gateway))
}

pub(crate) fn config_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: invalid configuration: {message}");
    ExitCode::from(EXIT_CONFIG)
}

pub(crate) fn fail(message: String) -> ExitCode {
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

/// `warden health`: one GET, bounded in time.
async fn health(url: &str) -> ExitCode {
    let client = match crate::upstream::control_plane_client() {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), client.get(url).send()).await {
        Ok(Ok(r)) if r.status() == reqwest::StatusCode::OK => ExitCode::SUCCESS,
        Ok(Ok(r)) => fail(format!("{url} answered {}", r.status())),
        Ok(Err(e)) => fail(format!("{url}: {e}")),
        Err(_) => fail(format!("{url}: no answer within 3 s")),
    }
}
