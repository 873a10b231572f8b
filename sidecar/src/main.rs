//! `telltale`: the daemon binary. Parses arguments and calls the library.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use telltale_sidecar::trace::{self, format, Target, TraceOptions};

#[derive(Debug, Parser)]
#[command(
    name = "telltale",
    version,
    about = "Runtime anomaly detection for containerized workloads."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print what processes in a cgroup do: execs, file opens, DNS queries, connects.
    ///
    /// `telltale trace -- CMD [ARGS...]` runs CMD in a fresh cgroup and exits
    /// with its status; `telltale trace --cgroup PATH` watches an existing
    /// cgroup subtree until SIGINT/SIGTERM. A summary goes to stderr.
    Trace {
        /// One JSON object per line (fields documented in the README).
        #[arg(long)]
        json: bool,
        /// Report every occurrence instead of dropping repeats in the kernel.
        #[arg(long)]
        no_dedup: bool,
        /// Watch this existing cgroup v2 directory (absolute, or relative to the cgroup2 mount).
        #[arg(long, value_name = "PATH", conflicts_with = "command")]
        cgroup: Option<PathBuf>,
        /// The command to run, after `--`.
        #[arg(last = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TELLTALE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Trace {
            json,
            no_dedup,
            cgroup,
            command,
        } => {
            let target = match (cgroup, command.is_empty()) {
                (Some(path), _) => Target::Cgroup(path),
                (None, false) => Target::Command(command),
                (None, true) => {
                    eprintln!("telltale: error: give a command after `--` or `--cgroup PATH`");
                    return ExitCode::from(2);
                }
            };
            trace_main(TraceOptions {
                target,
                json,
                dedup: !no_dedup,
            })
        }
    }
}

fn trace_main(options: TraceOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("telltale: error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match runtime.block_on(trace::run(&options, &mut out)) {
        Ok(summary) => {
            let _ = out.flush();
            let text = if options.json {
                format::summary_json(summary.printed, &summary.counters)
            } else {
                format::summary_text(summary.printed, &summary.counters)
            };
            eprint!("{text}");
            ExitCode::from(u8::try_from(summary.exit_code).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("telltale: error: {}", error_chain(&e));
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
