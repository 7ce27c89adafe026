//! `warden-conformance`: a black-box suite for any Warden, over HTTP only.
//!
//! `init` prepares what the suite brings (its own token issuer and an echo backend) and writes
//! a Warden config that trusts them; `run` serves them and checks the Warden at `--url`:
//! discovery, challenges, the token rejection matrix, tool filtering and calls, identity
//! injection, JSON-RPC errors and protocol revisions. It writes `report.json` and `report.md`
//! from the actual results and exits 1 when a check fails.
// The suite is an HTTP client of the server under test, with its own timeouts.
#![allow(clippy::disallowed_methods)]

mod checks;
mod fixtures;
mod relay;
mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "warden-conformance", version, about = "Black-box conformance suite for a Warden MCP gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the suite's issuer key, choose its addresses and write a Warden config for them.
    Init {
        /// Where to keep the state, the key and the generated warden.yaml.
        #[arg(long, default_value = "target/conformance")]
        dir: PathBuf,
        /// The address the generated config makes Warden listen on. Default: a free port.
        #[arg(long)]
        gateway: Option<SocketAddr>,
        /// Serve the suite's tool fixtures from this MCP server — a stdio command and its
        /// arguments, or one Streamable HTTP URL — federated with no prefix, instead of from
        /// HTTP tools: the suite's tool scenarios then check what Warden passes through from a
        /// server it federates.
        #[arg(long, num_args = 1.., allow_hyphen_values = true)]
        federate: Option<Vec<String>>,
    },
    /// Serve the suite's issuer and echo backend and check the Warden at --url.
    Run {
        #[arg(long, default_value = "target/conformance")]
        dir: PathBuf,
        /// The MCP endpoint under test. Default: the one the generated config names.
        #[arg(long)]
        url: Option<String>,
        /// Where report.json and report.md go. Default: --dir.
        #[arg(long)]
        report_dir: Option<PathBuf>,
    },
    /// Forward requests to --upstream adding a fresh bearer token from the suite's issuer (for
    /// clients that cannot send one, such as the official MCP conformance suite).
    Relay {
        #[arg(long, default_value = "target/conformance")]
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// The MCP endpoint to forward to. Default: the one the generated config names.
        #[arg(long)]
        upstream: Option<String>,
        /// Scopes the tokens carry.
        #[arg(long, default_value = "conformance:read conformance:write")]
        scope: String,
    },
}

fn main() -> ExitCode {
    warden::install_crypto();
    let cli = Cli::parse();
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        eprintln!("error: cannot start the async runtime");
        return ExitCode::from(1);
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Waits up to 30 s for the target to accept connections.
async fn wait_for(url: &str) -> Result<(), String> {
    let u = url::Url::parse(url).map_err(|e| format!("--url: {e}"))?;
    let addr = format!("{}:{}", u.host_str().unwrap_or("127.0.0.1"), u.port_or_known_default().unwrap_or(80));
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(format!("{addr} did not accept connections within 30 s"))
}

async fn dispatch(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Init { dir, gateway, federate } => {
            let state = fixtures::init(&dir, gateway, federate.as_deref())?;
            println!(
                "wrote {}/warden.yaml (issuer {}, echo {}, gateway {})",
                dir.display(),
                state.issuer(),
                state.echo(),
                state.gateway_addr
            );
            println!("next: warden serve --config {}/warden.yaml   then: warden-conformance run --dir {}", dir.display(), dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Relay { dir, listen, upstream, scope } => {
            let (state, key) = fixtures::load(&dir)?;
            let key = Arc::new(key);
            fixtures::serve(&state, Arc::clone(&key)).await?;
            let upstream = upstream.unwrap_or_else(|| format!("http://{}/mcp", state.gateway_addr));
            relay::serve(listen, upstream, state.issuer(), scope, key).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { dir, url, report_dir } => {
            let (state, key) = fixtures::load(&dir)?;
            let key = Arc::new(key);
            fixtures::serve(&state, Arc::clone(&key)).await?;
            let url = url.unwrap_or_else(|| format!("http://{}/mcp", state.gateway_addr));
            wait_for(&url).await?;
            let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            let mut suite = checks::Suite::new(&url, &state, key)?;
            suite.run().await;
            for r in &suite.results {
                println!("{} {:<36} {}", if r.passed { "pass" } else { "FAIL" }, r.id, r.detail);
            }
            let report_dir = report_dir.unwrap_or(dir);
            let (passed, failed) = report::write(&report_dir, &url, &started, &suite.results)?;
            println!("report: {0}/report.json, {0}/report.md", report_dir.display());
            println!("{passed} passed, {failed} failed");
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}
