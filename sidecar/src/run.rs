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
use crate::daemon::{Daemon, DaemonError, Discovery, EventSource, Parts};
use crate::sensor::{Sensor, SensorError};
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
    /// The fleet profile store could not be opened (its queue file, the
    /// replica name; an unreachable etcd is not an error).
    #[error("fleet profiles")]
    Fleet(#[from] telltale_fleet::Error),
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
    let mut sensor = Sensor::load(&cfg.sensor.options(cfg.replica_id()))?;

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
    let (root, data_dir) = (pod.root.clone(), cfg.data_dir.clone());
    let watched = Some(root.path.clone());
    let socket = cfg.api.enabled.then(|| cfg.api.socket_path(&cfg.data_dir)).flatten();
    let banner = move |l: &Listening| {
        let mut note = String::new();
        if let Some(addr) = l.api {
            note.push_str(&format!("; API on {addr}"));
            if let Some(socket) = &socket {
                note.push_str(&format!("; admin socket {}", socket.display()));
            }
        }
        if let Some(addr) = l.metrics {
            note.push_str(&format!("; metrics on http://{addr}/metrics"));
        }
        eprintln!(
            "telltale: watching {} (cgroup id {}); data in {}{note}",
            root.path.display(),
            root.id,
            data_dir.display()
        );
    };
    let discovery = HostDiscovery { workload: pod, cfg: cfg.clone() };
    let shell = Shell { cfg, store, out, clock: Arc::new(telltale_core::clock::now_ms), watched };
    shell.serve(sensor, discovery, banner, stop).await?;
    if let Some(cg) = owned {
        cg.remove()?;
    }
    Ok(())
}

/// Where the daemon listens, once it does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listening {
    /// The gRPC API, if enabled.
    pub api: Option<std::net::SocketAddr>,
    /// The Prometheus endpoint, if enabled.
    pub metrics: Option<std::net::SocketAddr>,
}

/// Everything around the daemon loop that does not depend on where events
/// come from: telemetry, the API server, notification delivery, shutdown.
pub struct Shell {
    /// The configuration.
    pub cfg: Config,
    /// The open store.
    pub store: Store,
    /// Anomalies as JSON lines, if asked for.
    pub out: Option<Box<dyn Write + Send>>,
    /// The wall clock.
    pub clock: crate::daemon::Clock,
    /// The cgroup watched (none: events come from elsewhere): no process in
    /// it or below it may use the local admin socket.
    pub watched: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell").field("data_dir", &self.cfg.data_dir).finish_non_exhaustive()
    }
}

impl Shell {
    /// Serve events from `source` and containers from `discovery` until
    /// `stop` resolves. `listening` is told where the API and metrics
    /// listen before the first event is read. An API server that fails
    /// while running stops the daemon with its error: a daemon that says
    /// it serves must serve.
    pub async fn serve<S: EventSource, D: Discovery>(
        self,
        source: S,
        discovery: D,
        listening: impl FnOnce(&Listening),
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), RunError> {
        let Shell { cfg, store, out, clock, watched } = self;
        let telemetry = crate::telemetry::Telemetry::start(&cfg).await?;
        let feeds = crate::bus::Feeds::new(cfg.api.stream_buffer);
        let (cmd_tx, cmd_rx) = tokio::sync::mpsc::channel(crate::bus::INBOX);
        let (closing_tx, closing) = tokio::sync::watch::channel(false);
        let mut api_task = None;
        let mut at = Listening { api: None, metrics: telemetry.prometheus_addr() };
        if cfg.api.enabled {
            let local = cfg
                .api
                .socket_path(&cfg.data_dir)
                .map(|socket| crate::api::LocalChannel { socket, watched: watched.clone() });
            let listener = crate::api::bind(&cfg.api, local.as_ref()).await?;
            at.api = listener.local_addr().ok();
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
        let notifier =
            tokio::spawn(crate::notify::deliver::run(cfg.data_dir.clone(), closing.clone(), telemetry.metrics.clone()));
        let fleet = crate::daemon::fleet::FleetLink::connect(&cfg, clock.clone()).await?;
        let mut d = Daemon::new(Parts { cfg, store, source, discovery, feeds, telemetry, out, clock, fleet })?;
        listening(&at);
        // Stop on request, or when the API server ends on its own (it only
        // ends early on an error: TLS set-up, the listener...).
        let api_failed = async {
            match api_task.as_mut() {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        };
        let mut api_result = None;
        let stopped = async {
            tokio::select! {
                () = stop => {}
                r = api_failed => api_result = Some(r),
            }
        };
        d.run(cmd_rx, stopped).await?;
        let api_ended = api_result.is_some();
        match api_result {
            Some(Ok(Err(e))) => return Err(RunError::Api(e)),
            Some(Err(e)) => tracing::warn!(error = %e, "API task ended abnormally."),
            Some(Ok(Ok(()))) | None => {}
        }
        // Streams end, then the server drains; give it a few seconds.
        let _ = closing_tx.send(true);
        match tokio::time::timeout(Duration::from_secs(15), notifier).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "Notification delivery stopped with an error."),
            Ok(Err(e)) => tracing::warn!(error = %e, "Notification task ended abnormally."),
            Err(_) => tracing::warn!("Notification delivery did not stop in 15 s."),
            Ok(Ok(Ok(()))) => {}
        }
        if let Some(mut task) = api_task.filter(|_| !api_ended) {
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
        Ok(())
    }
}
