//! The `warden` command: parse the CLI, load and validate config without binding, bind, wire
//! signals, run. Everything else lives in the library.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage error, 3 invalid configuration.

use std::process::ExitCode;

use clap::Parser;
use warden::cli::{Cli, EXIT_RUNTIME};

/// mimalloc: the request path allocates in many small pieces on several threads, where glibc's
/// allocator spent a sixth of a `tools/call`'s CPU (docs/architecture.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    init_logging();
    warden::install_crypto();
    let cli = Cli::parse();
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        eprintln!("error: cannot start the async runtime");
        return ExitCode::from(EXIT_RUNTIME);
    };
    runtime.block_on(warden::cli::dispatch(cli.command))
}

fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warden=info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
