//! `telltale run`: the daemon. Watches a pod cgroup (or a command it starts),
//! learns a profile per image and reports what stable profiles never saw.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use crate::config::Config;
use crate::daemon::source::HostDiscovery;
use crate::daemon::{Daemon, DaemonError, Parts};
use crate::sensor::{Sensor, SensorError, SensorOptions};
use crate::store::{Store, StoreError};
use crate::trace::{spawn_in, TraceError};
use crate::workload::cgroup::{Cgroup, CgroupError, OwnedCgroup};
use crate::workload::discover::{DiscoverError, Workload};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The sensors failed.
    #[error(transparent)]
    Sensor(#[from] SensorError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A cgroup could not be used.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The pod could not be found.
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    /// The command could not be started.
    #[error(transparent)]
    Command(#[from] TraceError),
    /// Nothing to watch.
    #[error("nothing to watch: give --cgroup PATH (the pod cgroup), --pod, or a command after `--`")]
    NoTarget,
    /// The anomalies output could not be opened or written.
    #[error("anomalies output {path}")]
    Output {
        /// The path (`-` for stdout).
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Installing signal handlers failed.
    #[error("installing signal handlers")]
    Signals(#[source] std::io::Error),
    /// The API server failed.
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
    /// Telemetry could not start.
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    /// The daemon loop stopped.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
}

fn open_output(spec: &Option<String>) -> Result<Option<Box<dyn Write + Send>>, RunError> {
    match spec.as_deref() {
        None => Ok(None),
        Some("-") => Ok(Some(Box::new(std::io::stdout()))),
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(Path::new(path))
                .map_err(|source| RunError::Output { path: path.to_owned(), source })?;
            Ok(Some(Box::new(f)))
        }
    }
}

/// Run the daemon until SIGINT/SIGTERM.
pub async fn run(cfg: Config, command: Vec<OsString>) -> Result<(), RunError> {
    let store = Store::open(&cfg.data_dir)?;
    let out = open_output(&cfg.anomalies_json)?;
    let mut sensor = Sensor::load(&SensorOptions::default())?;

    let mut owned = None;
    let mut child = None;
    let pod = if let Some((program, args)) = command.split_first() {
        let cg = OwnedCgroup::create("telltale-run")?;
        sensor.watch(cg.cgroup())?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args);
        child = Some(spawn_in(cg.cgroup(), cmd)?);
        let pod = cg.cgroup().clone();
        owned = Some(cg);
        Workload::local(pod)
    } else if let Some(path) = cfg.cgroup.clone() {
        let pod = Cgroup::open(&path)?;
        sensor.watch(&pod)?;
        Workload::local(pod)
    } else if cfg.kubernetes.enabled {
        let (pod, member_prefix) = crate::workload::discover::locate_pod(&cfg.kubernetes)?;
        sensor.watch(&pod)?;
        let api = crate::workload::kubeapi::for_pod(&cfg.kubernetes).await;
        Workload::pod(pod, member_prefix, &cfg.kubernetes, api)
    } else {
        return Err(RunError::NoTarget);
    };
    let telemetry = crate::telemetry::Telemetry::start(&cfg).await?;
    let feeds = crate::bus::Feeds::new(cfg.api.stream_buffer);
    let (cmd_tx, cmd_rx) = tokio::sync::mpsc::channel(crate::bus::INBOX);
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let mut api_task = None;
    let mut api_note = String::new();
    if cfg.api.enabled {
        let listener = crate::api::bind(&cfg.api).await?;
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        api_note = format!("; API on {addr}");
        let api = crate::api::Api::new(
            cmd_tx.clone(),
            feeds.clone(),
            cfg.data_dir.clone(),
            closing.clone(),
            telemetry.metrics.clone(),
        );
        let mut stop = closing.clone();
        let tracer = telemetry.tracer();
        api_task = Some(tokio::spawn(crate::api::serve(cfg.api.clone(), listener, api, tracer, async move {
            let _ = stop.wait_for(|c| *c).await;
        })));
    }
    drop(cmd_tx);
    if let Some(addr) = telemetry.prometheus_addr() {
        api_note.push_str(&format!("; metrics on http://{addr}/metrics"));
    }
    eprintln!(
        "telltale: watching {} (cgroup id {}); data in {}{api_note}",
        pod.root.path.display(),
        pod.root.id,
        cfg.data_dir.display()
    );
    let notifier =
        tokio::spawn(crate::notify::deliver::run(cfg.data_dir.clone(), closing.clone(), telemetry.metrics.clone()));
    if let Some(mut c) = child {
        // Local mode: the command's end is news, not a reason to stop.
        tokio::spawn(async move {
            if let Ok(status) = c.wait().await {
                tracing::info!(%status, "Command exited; still watching until SIGTERM/SIGINT.");
            }
        });
    }
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let stop = async move {
        tokio::select! {
            _ = sigterm.recv() => {}
            _ = sigint.recv() => {}
        }
    };
    let discovery = HostDiscovery { workload: pod, cfg: cfg.clone() };
    let mut d = Daemon::new(Parts {
        cfg,
        store,
        source: sensor,
        discovery,
        feeds,
        telemetry,
        out,
        clock: Arc::new(telltale_core::clock::now_ms),
    })?;
    d.run(cmd_rx, stop).await?;
    // Streams end, then the server drains; give it a few seconds.
    let _ = closing_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(15), notifier).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "Notification delivery stopped with an error."),
        Ok(Err(e)) => tracing::warn!(error = %e, "Notification task ended abnormally."),
        Err(_) => tracing::warn!("Notification delivery did not stop in 15 s."),
        Ok(Ok(Ok(()))) => {}
    }
    if let Some(mut task) = api_task {
        match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
            Ok(Ok(r)) => r?,
            Ok(Err(e)) => tracing::warn!(error = %e, "API task ended abnormally."),
            Err(_) => {
                // Aborted, not left running: it holds the tracer, whose
                // span queue the trace export below waits to see closed.
                task.abort();
                tracing::warn!("API clients did not disconnect in 5 s; stopping anyway.");
            }
        }
    }
    d.final_metrics()?;
    d.into_telemetry().shutdown(Duration::from_secs(5)).await;
    if let Some(cg) = owned {
        cg.remove()?;
    }
    Ok(())
}
