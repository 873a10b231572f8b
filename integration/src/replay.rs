//! The real daemon (API, store, notification delivery, telemetry) with a
//! replay of typed events instead of the kernel: tests that need no root.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use telltale_core::event::{build, Event};
use telltale_core::workload::image::ImageRef;
use telltale_sidecar::config::Config;
use telltale_sidecar::daemon::source::{FixedContainers, Replay, ReplaySource};
use telltale_sidecar::run::{Listening, RunError, Shell};
use telltale_sidecar::store::Store;
use telltale_sidecar::workload::cgroup::Cgroup;
use telltale_sidecar::workload::discover::Found;

use crate::TempDir;

/// cgroup id of the one container, `web` (image `web:v1`).
pub const WEB: u64 = 7;

/// A read of `path` by `/usr/bin/app` (child of `/bin/sh`) in `web`.
pub fn read(path: &str) -> Event {
    build::read(WEB, build::process("/usr/bin/app", &["/bin/sh"]), path)
}

/// An exec of `/usr/bin/app` in `web`.
pub fn exec() -> Event {
    build::exec(WEB, build::process("/usr/bin/app", &["/bin/sh"]))
}

/// A running daemon fed by a replay.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub at: Listening,
    /// Feeds it events.
    pub replay: Replay,
    /// Its wall clock (ms); tests move it.
    pub clock: Arc<AtomicI64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), RunError>>>,
    /// Its data directory's parent.
    pub dir: TempDir,
}

impl Running {
    /// Start with learning 10 s / 5 s (clock at 0), the API on loopback and
    /// `extra` appended to the configuration.
    pub async fn start(tag: &str, extra: &str) -> Running {
        let dir = TempDir::new(tag);
        let toml = format!(
            "data_dir = \"{}/data\"\n{extra}\n[learning]\nmin_duration = \"10s\"\nstable_period = \"5s\"\nmax_duration = \"60s\"\nwarmup = \"0s\"\n",
            dir.str()
        );
        let path = dir.join("telltale.toml");
        std::fs::write(&path, toml).unwrap();
        let cfg = Config::load(Some(&path), &Default::default()).unwrap();
        let store = Store::open(&cfg.data_dir).unwrap();
        let (source, replay) = ReplaySource::new();
        let web = Found {
            cgroup: Cgroup { path: "/sys/fs/cgroup/pod/web".into(), id: WEB, level: 2 },
            id: "c-web".into(),
            name: "web".into(),
            image: ImageRef::parse("registry.example.com/shop/web:v1").unwrap(),
        };
        let clock = Arc::new(AtomicI64::new(0));
        let read_clock = clock.clone();
        let clock_fn = Arc::new(move || read_clock.load(Ordering::SeqCst));
        // Nothing is watched: the local admin socket admits its callers.
        let shell = Shell { cfg, store, out: None, clock: clock_fn, watched: None };
        let (at_tx, at_rx) = tokio::sync::oneshot::channel::<Listening>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(shell.serve(
            source,
            FixedContainers::new(vec![web]),
            move |l| {
                let _ = at_tx.send(*l);
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let at = tokio::time::timeout(Duration::from_secs(10), at_rx).await.unwrap().unwrap();
        Running { at, replay, clock, stop: Some(stop), task: Some(task), dir }
    }

    /// The API's URL (TCP: a token is needed).
    pub fn api(&self) -> String {
        format!("http://{}", self.at.api.expect("the API listens"))
    }

    /// The local admin socket's address (`unix://…`): admin, no token.
    pub fn socket(&self) -> String {
        format!("unix://{}", self.dir.join("data").join(telltale_sidecar::config::API_SOCKET_FILE).display())
    }

    /// Move the daemon's clock.
    pub fn at_ms(&self, ms: i64) {
        self.clock.store(ms, Ordering::SeqCst);
    }

    /// Stop it and check it stopped cleanly.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
    }
}
