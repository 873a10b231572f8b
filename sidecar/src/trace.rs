//! `telltale trace`: run a command (or watch a cgroup) with the sensors
//! attached and print every event.

pub mod format;

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitStatus;

use tokio::signal::unix::{signal, SignalKind};

use crate::sensor::{Counters, Sensor, SensorError, SensorOptions};
use crate::workload::cgroup::{Cgroup, CgroupError, OwnedCgroup};
use telltale_core::event::Event;

/// What to trace.
#[derive(Debug, Clone)]
pub enum Target {
    /// Start this command (program + args) in a fresh cgroup.
    Command(Vec<OsString>),
    /// Watch this existing cgroup subtree until SIGINT/SIGTERM.
    Cgroup(PathBuf),
}

/// Options of `telltale trace`.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    /// What to trace.
    pub target: Target,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Drop repeats of identical behaviour in the kernel.
    pub dedup: bool,
    /// Directory on bpffs of the node's shared kernel programs.
    pub node_dir: std::path::PathBuf,
    /// Lease timeout of the node registration.
    pub lease_timeout: std::time::Duration,
}

impl TraceOptions {
    fn sensor(&self) -> SensorOptions {
        SensorOptions {
            dedup: self.dedup,
            node_root: self.node_dir.clone(),
            lease_timeout: self.lease_timeout,
            ..SensorOptions::default()
        }
    }
}

/// Why tracing failed.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The sensors could not be set up or read.
    #[error(transparent)]
    Sensor(#[from] SensorError),
    /// A cgroup could not be found, created or removed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The command does not exist.
    #[error("{program}: command not found")]
    CommandNotFound {
        /// The program name.
        program: String,
    },
    /// The command exists but cannot be executed.
    #[error("{program}: cannot execute")]
    CommandNotExecutable {
        /// The program name.
        program: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Another failure to start the command.
    #[error("starting {program}")]
    Spawn {
        /// The program name.
        program: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The command line was empty.
    #[error("no command given: use `telltale trace -- CMD [ARGS...]` or `--cgroup PATH`")]
    NoCommand,
    /// Installing signal handlers or waiting failed.
    #[error("waiting for the command or a signal")]
    Wait(#[source] std::io::Error),
    /// Writing the events failed.
    #[error("writing events")]
    Output(#[source] std::io::Error),
}

impl TraceError {
    /// The exit code a shell would use for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            TraceError::CommandNotFound { .. } => 127,
            TraceError::CommandNotExecutable { .. } => 126,
            _ => 1,
        }
    }
}

/// The result of a trace.
#[derive(Debug, Clone)]
pub struct TraceSummary {
    /// Events printed.
    pub printed: u64,
    /// Kernel and user-space counters.
    pub counters: Counters,
    /// Exit code of the command (shell convention; 0 in cgroup mode).
    pub exit_code: i32,
}

/// Run a trace, writing events to `out`. The summary is returned (and
/// printed to stderr by the binary).
pub async fn run(options: &TraceOptions, out: &mut dyn Write) -> Result<TraceSummary, TraceError> {
    match &options.target {
        Target::Command(argv) => run_command(options, argv, out).await,
        Target::Cgroup(path) => run_cgroup(options, path, out).await,
    }
}

async fn run_command(
    options: &TraceOptions,
    argv: &[OsString],
    out: &mut dyn Write,
) -> Result<TraceSummary, TraceError> {
    let (program, args) = argv.split_first().ok_or(TraceError::NoCommand)?;
    let mut sensor = Sensor::load(&options.sensor())?;
    let cgroup = OwnedCgroup::create("telltale-trace")?;
    sensor.watch(cgroup.cgroup())?;

    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    let mut child = spawn_in(cgroup.cgroup(), cmd)?;
    let mut printed = 0u64;
    let mut batch = Vec::new();
    let mut sigterm = signal(SignalKind::terminate()).map_err(TraceError::Wait)?;
    let status: ExitStatus = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(TraceError::Wait)?,
            r = sensor.next_events(&mut batch) => {
                r?;
                printed += write_events(&mut batch, options.json, out)?;
            }
            _ = sigterm.recv() => {
                if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
                }
            }
        }
    };
    // Everything the command did is in the ring buffer by now.
    sensor.drain(&mut batch);
    printed += write_events(&mut batch, options.json, out)?;
    let counters = sensor.counters()?;
    cgroup.remove()?;
    Ok(TraceSummary { printed, counters, exit_code: exit_code(status) })
}

async fn run_cgroup(
    options: &TraceOptions,
    path: &std::path::Path,
    out: &mut dyn Write,
) -> Result<TraceSummary, TraceError> {
    let cgroup = Cgroup::open(path)?;
    let mut sensor = Sensor::load(&options.sensor())?;
    sensor.watch(&cgroup)?;
    eprintln!("telltale: watching {} (cgroup id {}); stop with Ctrl-C", cgroup.path.display(), cgroup.id);
    let mut sigterm = signal(SignalKind::terminate()).map_err(TraceError::Wait)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(TraceError::Wait)?;
    let mut printed = 0u64;
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            r = sensor.next_events(&mut batch) => {
                r?;
                printed += write_events(&mut batch, options.json, out)?;
            }
        }
    }
    sensor.drain(&mut batch);
    printed += write_events(&mut batch, options.json, out)?;
    Ok(TraceSummary { printed, counters: sensor.counters()?, exit_code: 0 })
}

/// Start `cmd` inside `cgroup`: the child moves itself into the cgroup
/// between fork and exec, so everything the program does is in scope.
pub fn spawn_in(cgroup: &Cgroup, mut cmd: tokio::process::Command) -> Result<tokio::process::Child, TraceError> {
    let procs = cgroup.procs_file()?;
    let fd = procs.as_raw_fd();
    // SAFETY: the closure only calls write(2), which is async-signal-safe,
    // on a descriptor that stays open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            let zero = b"0";
            if libc::write(fd, zero.as_ptr().cast(), zero.len()) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let name = cmd.as_std().get_program().to_string_lossy().into_owned();
    let child = cmd.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => TraceError::CommandNotFound { program: name.clone() },
        std::io::ErrorKind::PermissionDenied => TraceError::CommandNotExecutable { program: name.clone(), source },
        _ => TraceError::Spawn { program: name.clone(), source },
    })?;
    drop(procs);
    Ok(child)
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

fn write_events(batch: &mut Vec<Event>, json: bool, out: &mut dyn Write) -> Result<u64, TraceError> {
    let n = batch.len() as u64;
    for event in batch.drain(..) {
        let line = if json { format::json_line(&event) } else { format::text_line(&event) };
        out.write_all(line.as_bytes()).map_err(TraceError::Output)?;
    }
    out.flush().map_err(TraceError::Output)?;
    Ok(n)
}
