//! `telltale`: the daemon binary. Parses arguments and calls the library.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use telltale_core::error_chain;
use telltale_sidecar::config::{Config, KubernetesOverrides, Overrides};
use telltale_sidecar::store::Store;
use telltale_sidecar::trace::{self, format, Target, TraceOptions};

#[derive(Debug, Parser)]
#[command(name = "telltale", version, about = "Runtime anomaly detection for containerized workloads.")]
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
        /// Directory on bpffs of the node's shared kernel programs.
        #[arg(long, value_name = "DIR", env = "TELLTALE_SENSOR__NODE_DIR", default_value = telltale_sidecar::sensor::node::DEFAULT_ROOT)]
        node_dir: PathBuf,
        /// A sidecar that has not renewed its node registration for this long is removed by the others.
        #[arg(long, value_name = "DURATION", env = "TELLTALE_SENSOR__LEASE_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
        lease_timeout: std::time::Duration,
        /// The command to run, after `--`.
        #[arg(last = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Run the daemon: learn a profile per image, report anomalies.
    ///
    /// Watches the pod cgroup given by --cgroup (each child cgroup is a
    /// container), the Kubernetes pod it runs in (--pod) or, with `-- CMD`, starts CMD in a fresh cgroup and keeps
    /// watching after it exits. Stops on SIGINT/SIGTERM.
    Run {
        /// TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Data directory for the SQLite store [default: /var/lib/telltale].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The pod cgroup (absolute, or relative to the cgroup2 mount).
        #[arg(long, value_name = "PATH", conflicts_with = "command")]
        cgroup: Option<PathBuf>,
        /// Image of the containers (when one container, or none mapped in the config).
        #[arg(long, value_name = "NAME")]
        image: Option<String>,
        /// Also write anomalies as JSON lines to PATH (`-` for stdout).
        #[arg(long, value_name = "PATH")]
        anomalies_json: Option<String>,
        /// Watch the Kubernetes pod this process runs in (kubernetes.enabled):
        /// found from its own cgroup or TELLTALE_KUBERNETES__POD_UID.
        #[arg(long, conflicts_with_all = ["cgroup", "command"])]
        pod: bool,
        /// Local mode: the command to run and watch, after `--`.
        #[arg(last = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Show the node's shared set of kernel programs and the sidecars
    /// registered in it; `--gc` frees the slots of sidecars that are gone
    /// and unpins the set when none is left (as the last sidecar out does).
    Node {
        /// Directory on bpffs of the node's shared kernel programs.
        #[arg(long, value_name = "DIR", env = "TELLTALE_SENSOR__NODE_DIR", default_value = telltale_sidecar::sensor::node::DEFAULT_ROOT)]
        node_dir: PathBuf,
        /// A registration not renewed for this long counts as gone.
        #[arg(long, value_name = "DURATION", env = "TELLTALE_SENSOR__LEASE_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
        lease_timeout: std::time::Duration,
        /// Free the slots of sidecars that are gone; unpin an empty set.
        #[arg(long)]
        gc: bool,
        /// One JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Print the learning status of every profile and event type.
    Status {
        /// TOML configuration file (for its data_dir).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Data directory [default: /var/lib/telltale].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
        /// Only check that a daemon is watching (its sensor counters were
        /// saved in the last 5 s): exit 0 if so, 1 if not. For startup and
        /// liveness probes.
        #[arg(long, conflicts_with = "json")]
        ready: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(telltale_core::contract::LOG_ENV)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Trace { json, no_dedup, cgroup, node_dir, lease_timeout, command } => {
            let target = match (cgroup, command.is_empty()) {
                (Some(path), _) => Target::Cgroup(path),
                (None, false) => Target::Command(command),
                (None, true) => {
                    eprintln!("telltale: error: give a command after `--` or `--cgroup PATH`");
                    return ExitCode::from(2);
                }
            };
            trace_main(TraceOptions { target, json, dedup: !no_dedup, node_dir, lease_timeout })
        }
        Command::Run { config, data_dir, cgroup, image, anomalies_json, pod, command } => {
            let kubernetes = pod.then_some(KubernetesOverrides { enabled: true });
            let overrides = Overrides { data_dir, cgroup, image, anomalies_json, kubernetes };
            let cfg = match Config::load(config.as_deref(), &overrides) {
                Ok(c) => c,
                Err(e) => return fail(&e, 1),
            };
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            match runtime.block_on(telltale_sidecar::run::run(cfg, command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e, 1),
            }
        }
        Command::Node { node_dir, lease_timeout, gc, json } => node_main(&node_dir, lease_timeout, gc, json),
        Command::Status { config, data_dir, json, ready } => {
            let overrides = Overrides { data_dir, ..Overrides::default() };
            let cfg = match Config::load(config.as_deref(), &overrides) {
                Ok(c) => c,
                Err(e) => return fail(&e, 1),
            };
            if ready {
                return ready_main(&cfg);
            }
            status_main(&cfg, json)
        }
    }
}

fn fail(e: &dyn std::error::Error, code: u8) -> ExitCode {
    eprintln!("telltale: error: {}", error_chain(e));
    ExitCode::from(code)
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| {
        eprintln!("telltale: error: starting the runtime: {e}");
        ExitCode::from(1)
    })
}

fn node_main(dir: &std::path::Path, lease_timeout: std::time::Duration, gc: bool, json: bool) -> ExitCode {
    if let Err(e) = telltale_sidecar::sensor::preflight() {
        return fail(&e, 1);
    }
    let timeout_ns = u64::try_from(lease_timeout.as_nanos()).unwrap_or(u64::MAX);
    match telltale_sidecar::sensor::node::inspect(dir, timeout_ns, gc) {
        Err(e) => fail(&e, 1),
        Ok(None) => {
            if json {
                println!("null");
            } else {
                println!("no node set of this telltale version under {}", dir.display());
            }
            ExitCode::SUCCESS
        }
        Ok(Some((set, regs, unpinned))) => {
            if json {
                let doc = serde_json::json!({ "set": set, "unpinned": unpinned, "sidecars": regs });
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            } else if unpinned {
                println!("{}: no sidecar left; unpinned", set.display());
            } else {
                println!("{}: {} sidecars", set.display(), regs.len());
                for r in &regs {
                    println!(
                        "slot {:>3}  {:<32}  pid {:>7}  lease {:>3} s ago  registered {} s ago  cgroups {:?}{}",
                        r.slot,
                        telltale_core::text::escape(&r.name),
                        r.pid,
                        r.lease_age_s,
                        r.registered_s,
                        r.cgroups,
                        if r.dead { "  (gone: its process ended)" } else { "" }
                    );
                }
            }
            ExitCode::SUCCESS
        }
    }
}

fn ready_main(cfg: &Config) -> ExitCode {
    let store = match Store::open_read_only(&cfg.data_dir) {
        Ok(s) => s,
        Err(e) => return fail(&e, 1),
    };
    let counters = match store.meta_json(telltale_sidecar::daemon::SENSOR_COUNTERS) {
        Ok(c) => c,
        Err(e) => return fail(&e, 1),
    };
    let now = telltale_core::clock::now_ms();
    match telltale_core::status::ready(counters.as_ref(), now, 5_000) {
        Ok(()) => {
            println!("ready: the daemon is watching");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("telltale: not ready: {why}");
            ExitCode::from(1)
        }
    }
}

fn status_main(cfg: &Config, json: bool) -> ExitCode {
    let store = match Store::open_read_only(&cfg.data_dir) {
        Ok(s) => s,
        Err(e) => return fail(&e, 1),
    };
    let (profiles, learning) = match (store.load_profiles(), store.learning_config()) {
        (Ok(p), Ok(l)) => (p, l.unwrap_or(cfg.learning)),
        (Err(e), _) | (_, Err(e)) => return fail(&e, 1),
    };
    let now = telltale_core::clock::now_ms();
    let statuses = telltale_core::status::status(&profiles, &learning, now);
    let counters = store.meta_json(telltale_sidecar::daemon::SENSOR_COUNTERS).ok().flatten();
    if json {
        println!("{}", serde_json::to_string_pretty(&statuses).unwrap_or_default());
    } else {
        print!("{}", telltale_core::status::table(&statuses));
        if let Some(c) = counters {
            println!("{}", telltale_core::status::counters_line(&c));
        }
        if let Ok(Some(f)) = store.meta_json(telltale_sidecar::daemon::fleet::FLEET_STATUS) {
            println!("{}", telltale_core::status::fleet_line(&f, now));
        }
    }
    ExitCode::SUCCESS
}

fn trace_main(options: TraceOptions) -> ExitCode {
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
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
