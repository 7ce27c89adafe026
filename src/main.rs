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
    warden::install_crypto();
    let cli = Cli::parse();
    // `serve` sets the subscriber itself, once its config says whether traces are exported.
    if !cli.command.as_ref().is_some_and(warden::cli::Command::is_serve) {
        warden::telemetry::traces::init_subscriber(None);
    }
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        eprintln!("error: cannot start the async runtime");
        return ExitCode::from(EXIT_RUNTIME);
    };
    runtime.block_on(warden::cli::dispatch(cli.command))
}
