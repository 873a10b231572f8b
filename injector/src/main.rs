//! `telltale-injector`: the admission webhook binary. Parses the flags,
//! starts logging (`TELLTALE_LOG`, default `warn`) and serves until SIGTERM.

use std::process::ExitCode;

use clap::Parser as _;
use telltale_core::{contract, error_chain};
use telltale_injector::WebhookArgs;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(contract::LOG_ENV)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = WebhookArgs::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("telltale-injector: error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(telltale_injector::serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("telltale-injector: error: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}
