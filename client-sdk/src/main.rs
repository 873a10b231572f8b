//! `telltalectl`: command-line client of the telltale API. Parsing is
//! [`cli`], running [`cli::run`], output [`cli::print`].

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::run::Ending;
use cli::{Command, ProfileCommand};
use telltale_client::ClientError;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // `profile diff` exits like diff: 0 same, 1 different, 2 trouble.
    let trouble = match cli.command {
        Command::Profile { command: ProfileCommand::Diff { .. } } => 2,
        _ => 1,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("telltalectl: error: {e}");
            return ExitCode::from(trouble);
        }
    };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    match runtime.block_on(cli::run::run(cli, &mut out, &mut err)) {
        Ok(Ending::Done) => ExitCode::SUCCESS,
        Ok(Ending::Differs) => ExitCode::from(1),
        Err(e) => {
            let msg = match e.downcast_ref::<ClientError>() {
                Some(ClientError::Status(s)) => format!("gRPC status {:?}: {}", s.code(), s.message()),
                _ => format!("{e:#}"),
            };
            eprintln!("telltalectl: error: {msg}");
            ExitCode::from(trouble)
        }
    }
}
