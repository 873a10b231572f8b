//! `telltalectl`: command-line client of the telltale API. Parsing is
//! [`cli`], running [`cli::run`], output [`cli::print`].

mod cli;

use std::process::ExitCode;

use clap::Parser;
use telltale_client::ClientError;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("telltalectl: error: {e}");
            return ExitCode::from(1);
        }
    };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    match runtime.block_on(cli::run::run(cli, &mut out, &mut err)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = match e.downcast_ref::<ClientError>() {
                Some(ClientError::Status(s)) => format!("gRPC status {:?}: {}", s.code(), s.message()),
                _ => format!("{e:#}"),
            };
            eprintln!("telltalectl: error: {msg}");
            ExitCode::from(1)
        }
    }
}
