//! Real etcd processes for the tests (from `telltale-etcd-test`), a TCP
//! proxy that can cut one replica off, and small builders.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use telltale_etcd_test::{free_port, Cluster};

use telltale_core::profile::lifecycle::LearningConfig;
use telltale_core::profile::{Behaviour, Observation};
use telltale_fleet::{EtcdConfig, Fleet, FleetOptions, NewBehaviour, Update, Updates};

/// A TCP proxy in front of an etcd member that can drop every connection
/// and refuse new ones (a replica cut off from etcd while others go on).
pub struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Proxy 127.0.0.1:<new port> → `target` (host:port).
    pub async fn start(target: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (up2, conns2) = (Arc::clone(&up), Arc::clone(&conns));
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                conns2.lock().expect("conns").push(h);
            }
        });
        Proxy { port, up, conns, task }
    }

    /// Its client URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Drop every connection and refuse new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for h in self.conns.lock().expect("conns").drain(..) {
            h.abort();
        }
    }

    /// Accept connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// Lifecycle durations for tests (fleet time is passed explicitly).
pub fn learning() -> LearningConfig {
    LearningConfig {
        min_duration: Duration::from_secs(10),
        stable_period: Duration::from_secs(5),
        max_duration: Duration::from_secs(60),
        warmup: Duration::from_secs(0),
    }
}

/// A configuration for these endpoints with a test-local cluster name.
pub fn config(endpoints: Vec<String>, cluster: &str) -> EtcdConfig {
    EtcdConfig {
        cluster: cluster.to_owned(),
        batch_delay: Duration::from_millis(20),
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..EtcdConfig::new(endpoints)
    }
}

/// Options of a replica with its queue under `dir`.
pub fn options(dir: &Path, replica: &str) -> FleetOptions {
    FleetOptions {
        replica_id: replica.to_owned(),
        queue_path: dir.join(format!("{replica}-queue.db")),
        learning: learning(),
    }
}

/// Connect a replica and wait until it watches live.
pub async fn replica(cfg: &EtcdConfig, dir: &Path, name: &str) -> Fleet {
    let f = Fleet::connect(cfg.clone(), options(dir, name)).await.expect("connect");
    assert!(f.wait_connected(Duration::from_secs(20)).await, "{name} did not connect: {:?}", f.status());
    f
}

/// `/usr/bin/<name>` launched by `/app/entrypoint`.
pub fn exec(name: &str) -> Observation {
    Observation { lineage: vec!["/app/entrypoint".to_owned(), format!("/usr/bin/{name}")], behaviour: Behaviour::Exec }
}

/// The entrypoint opening `path` with access bits `access`.
pub fn file(path: &str, access: u8) -> Observation {
    Observation {
        lineage: vec!["/app/entrypoint".to_owned()],
        behaviour: Behaviour::File { pattern: path.to_owned(), access },
    }
}

/// The entrypoint resolving `name`.
pub fn dns(name: &str) -> Observation {
    Observation {
        lineage: vec!["/app/entrypoint".to_owned()],
        behaviour: Behaviour::Dns { name: name.to_owned(), qtype: "A".to_owned() },
    }
}

/// Learned behaviours of `image` seen at `seen_ms`.
pub fn learned(image: &str, seen_ms: i64, observations: &[Observation]) -> Vec<NewBehaviour> {
    observations
        .iter()
        .map(|o| NewBehaviour {
            image: image.to_owned(),
            tag: "v1".to_owned(),
            observation: o.clone(),
            seen_ms,
            manual: false,
        })
        .collect()
}

/// The next update matching `pred`, failing after `timeout`.
pub async fn wait_update(updates: &mut Updates, timeout: Duration, mut pred: impl FnMut(&Update) -> bool) -> Update {
    tokio::time::timeout(timeout, async {
        loop {
            match updates.recv().await {
                Some(u) if pred(&u) => return u,
                Some(_) => {}
                None => panic!("the update stream ended"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no matching update within {timeout:?}"))
}

/// Wait until `cond` holds, failing after `timeout`.
pub async fn eventually(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every behaviour key of `image` in `cluster` (default prefix), with its
/// version (1 = written once, never overwritten).
pub async fn behaviour_keys(client: &mut etcd_client::Client, cluster: &str, image: &str) -> Vec<(String, i64)> {
    let prefix = format!("/telltale/v1/{cluster}/profiles/{image}/b/");
    let resp = client.get(prefix, Some(etcd_client::GetOptions::new().with_prefix())).await.expect("range read");
    resp.kvs().iter().map(|kv| (kv.key_str().expect("utf-8 key").to_owned(), kv.version())).collect()
}
