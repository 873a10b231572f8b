//! Where the daemon's events and containers come from: the kernel sensors
//! and the pod's cgroups in production; a replay of typed events and a
//! fixed list of containers in tests, so the pipeline, commands, API,
//! audit and notification paths run without root or BTF.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use telltale_core::event::{Event, EventKind};
use telltale_core::profile::{EventType, Lost};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::sensor::{Counters, KindCounts, Sensor, SensorError};
use crate::workload::discover::{Found, Workload};

/// A stream of typed events with the kernel's in-kernel filter of known
/// behaviour behind it.
pub trait EventSource: Send {
    /// Wait for events and append them to `out` (at least one, unless an
    /// error is returned).
    fn next_events(&mut self, out: &mut Vec<Event>) -> impl Future<Output = Result<(), SensorError>> + Send;
    /// Append what is still buffered, without waiting. Returns how many.
    fn drain(&mut self, out: &mut Vec<Event>) -> usize;
    /// Drop future repeats of these behaviours (dedup keys) at the source.
    fn mark_known(&mut self, keys: &[u64]) -> Result<(), SensorError>;
    /// What the source counted so far.
    fn counters(&self) -> Result<Counters, SensorError>;
    /// Records lost so far (cumulative) by the cgroup they came from, as far
    /// as the source can tell; the rest of `counters()`' losses is nobody's.
    fn lost_by_cgroup(&self) -> Vec<(u64, Lost)>;
}

/// A kernel per-kind loss count as the types a profile learns: mechanism
/// use is judged with exec, exits are no behaviour.
pub fn lost_of_kinds(lost: &[u64; 8]) -> Lost {
    use telltale_ebpf::abi;
    let at = |k: u16| lost.get(usize::from(k)).copied().unwrap_or(0);
    let mut l = Lost::default();
    l.add(EventType::Exec, at(abi::EVENT_EXEC) + at(abi::EVENT_MECHANISM));
    l.add(EventType::File, at(abi::EVENT_FILE));
    l.add(EventType::Dns, at(abi::EVENT_DNS));
    l.add(EventType::Connect, at(abi::EVENT_CONNECT));
    l
}

impl EventSource for Sensor {
    fn next_events(&mut self, out: &mut Vec<Event>) -> impl Future<Output = Result<(), SensorError>> + Send {
        Sensor::next_events(self, out)
    }

    fn drain(&mut self, out: &mut Vec<Event>) -> usize {
        Sensor::drain(self, out)
    }

    fn mark_known(&mut self, keys: &[u64]) -> Result<(), SensorError> {
        Sensor::mark_known(self, keys)
    }

    fn counters(&self) -> Result<Counters, SensorError> {
        Sensor::counters(self)
    }

    fn lost_by_cgroup(&self) -> Vec<(u64, Lost)> {
        Sensor::lost_by_cgroup(self).into_iter().map(|(id, l)| (id, lost_of_kinds(&l.lost))).collect()
    }
}

/// Containers appearing and going away under the watched cgroup.
pub trait Discovery: Send {
    /// Containers not yet `known` (by cgroup id), and every cgroup id of
    /// the pod mapped to the container cgroup it belongs to.
    fn scan(&mut self, known: &dyn Fn(u64) -> bool) -> (Vec<Found>, HashMap<u64, u64>);
    /// Kubernetes pod name and namespace (empty outside Kubernetes).
    fn pod(&self) -> (&str, &str);
    /// Is the watched cgroup still the one the sensors were attached to?
    /// A deleted (or deleted and recreated) cgroup is watched by nothing.
    fn check(&self) -> Result<(), WatchLost>;
}

/// The watched cgroup is gone: the sensors' scope no longer exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the watched cgroup {path} {what}; nothing in it is watched any more (restart telltale to attach to a new one)"
)]
pub struct WatchLost {
    /// The cgroup directory.
    pub path: String,
    /// What happened to it.
    pub what: String,
}

/// Is the cgroup at `path` still the one with id `id`?
pub fn check_cgroup(path: &std::path::Path, id: u64) -> Result<(), WatchLost> {
    use std::os::unix::fs::MetadataExt;
    let lost = |what: String| WatchLost { path: path.display().to_string(), what };
    match std::fs::metadata(path) {
        Ok(m) if m.ino() == id => Ok(()),
        Ok(m) => Err(lost(format!("was deleted and recreated (cgroup id {id} is now {})", m.ino()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(lost("was deleted".into())),
        Err(e) => Err(lost(format!("cannot be read: {e}"))),
    }
}

/// The pod's cgroups on this host, named by configuration, the injector's
/// map, the processes or the Kubernetes API.
#[derive(Debug)]
pub struct HostDiscovery {
    /// What is watched.
    pub workload: Workload,
    /// Names and images from configuration.
    pub cfg: Config,
}

impl Discovery for HostDiscovery {
    fn scan(&mut self, known: &dyn Fn(u64) -> bool) -> (Vec<Found>, HashMap<u64, u64>) {
        self.workload.scan(&self.cfg, known)
    }

    fn pod(&self) -> (&str, &str) {
        (&self.workload.pod_name, &self.workload.namespace)
    }

    fn check(&self) -> Result<(), WatchLost> {
        check_cgroup(&self.workload.root.path, self.workload.root.id)
    }
}

/// A fixed set of containers (tests): each is found once, and its cgroup id
/// is its own alias.
#[derive(Debug, Clone, Default)]
pub struct FixedContainers {
    containers: Vec<Found>,
    pod: (String, String),
}

impl FixedContainers {
    /// These containers, outside Kubernetes.
    pub fn new(containers: Vec<Found>) -> Self {
        Self { containers, pod: Default::default() }
    }

    /// The same containers in pod `namespace/name`.
    #[must_use]
    pub fn in_pod(mut self, name: &str, namespace: &str) -> Self {
        self.pod = (name.to_owned(), namespace.to_owned());
        self
    }
}

impl Discovery for FixedContainers {
    fn scan(&mut self, known: &dyn Fn(u64) -> bool) -> (Vec<Found>, HashMap<u64, u64>) {
        let aliases = self.containers.iter().map(|f| (f.cgroup.id, f.cgroup.id)).collect();
        let found = self.containers.iter().filter(|f| !known(f.cgroup.id)).cloned().collect();
        (found, aliases)
    }

    fn pod(&self) -> (&str, &str) {
        (&self.pod.0, &self.pod.1)
    }

    fn check(&self) -> Result<(), WatchLost> {
        Ok(())
    }
}

/// What a replay has seen, shared with the test driving it.
#[derive(Debug, Default)]
pub struct ReplayState {
    /// Dedup keys marked known (the kernel map, as user space filled it).
    pub known: HashSet<u64>,
    /// What the source counted (emitted, filtered as known, lost...).
    pub counters: Counters,
    /// Records lost by the cgroup they came from (cumulative).
    pub lost_by_cgroup: HashMap<u64, Lost>,
}

/// Typed events sent by a test, filtered by the known keys as the kernel
/// filters them: an event whose dedup key was marked known is counted as
/// `filtered_known` and never delivered.
#[derive(Debug)]
pub struct ReplaySource {
    events: mpsc::UnboundedReceiver<Vec<Event>>,
    state: Arc<Mutex<ReplayState>>,
    closed: bool,
}

/// The test's end of a [`ReplaySource`].
#[derive(Debug, Clone)]
pub struct Replay {
    events: mpsc::UnboundedSender<Vec<Event>>,
    state: Arc<Mutex<ReplayState>>,
}

impl ReplaySource {
    /// A source and the handle that feeds it.
    pub fn new() -> (Self, Replay) {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(ReplayState::default()));
        (Self { events: rx, state: state.clone(), closed: false }, Replay { events: tx, state })
    }

    fn admit(&self, batch: Vec<Event>, out: &mut Vec<Event>) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for e in batch {
            let known = e.dedup_key != 0 && st.known.contains(&e.dedup_key);
            let counts = kind_counts(&mut st.counters, &e.kind);
            if known {
                counts.filtered_known += 1;
                continue;
            }
            counts.emitted += 1;
            out.push(e);
        }
    }
}

fn kind_counts<'a>(c: &'a mut Counters, kind: &EventKind) -> &'a mut KindCounts {
    match kind {
        EventKind::Exec => &mut c.exec,
        EventKind::File { .. } => &mut c.file,
        EventKind::Dns { .. } => &mut c.dns,
        EventKind::Connect { .. } => &mut c.connect,
        EventKind::Mechanism { .. } => &mut c.mechanism,
    }
}

impl EventSource for ReplaySource {
    async fn next_events(&mut self, out: &mut Vec<Event>) -> Result<(), SensorError> {
        loop {
            if self.closed {
                // Like a quiet pod: nothing more, ever.
                std::future::pending::<()>().await;
            }
            match self.events.recv().await {
                Some(batch) => {
                    let before = out.len();
                    self.admit(batch, out);
                    if out.len() > before {
                        return Ok(());
                    }
                }
                None => self.closed = true,
            }
        }
    }

    fn drain(&mut self, out: &mut Vec<Event>) -> usize {
        let before = out.len();
        while let Ok(batch) = self.events.try_recv() {
            self.admit(batch, out);
        }
        out.len() - before
    }

    fn mark_known(&mut self, keys: &[u64]) -> Result<(), SensorError> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).known.extend(keys.iter().copied());
        Ok(())
    }

    fn counters(&self) -> Result<Counters, SensorError> {
        Ok(self.state.lock().unwrap_or_else(PoisonError::into_inner).counters)
    }

    fn lost_by_cgroup(&self) -> Vec<(u64, Lost)> {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.lost_by_cgroup.iter().map(|(id, l)| (*id, *l)).collect()
    }
}

impl Replay {
    /// Send one batch of events (delivered together, as one ring-buffer read).
    pub fn send(&self, batch: Vec<Event>) {
        // A daemon that stopped no longer reads; the test sees that elsewhere.
        let _ = self.events.send(batch);
    }

    /// Has the daemon marked this key known?
    pub fn is_known(&self, key: u64) -> bool {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).known.contains(&key)
    }

    /// Count `n` records of type `t` lost at the source (ring buffer full)
    /// from cgroup `cgroup_id`, as the kernel tells it.
    pub fn lose_in(&self, cgroup_id: u64, t: EventType, n: u64) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .lost_by_cgroup
            .entry(cgroup_id)
            .or_default()
            .add(t, n);
        self.lose(t, n);
    }

    /// Count `n` records of type `t` lost at the source (ring buffer full),
    /// from no cgroup the source could tell.
    pub fn lose(&self, t: EventType, n: u64) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let c = &mut st.counters;
        let counts = match t {
            EventType::Exec => &mut c.exec,
            EventType::File => &mut c.file,
            EventType::Dns => &mut c.dns,
            EventType::Connect => &mut c.connect,
        };
        counts.lost += n;
    }

    /// What the source counted.
    pub fn counters(&self) -> Counters {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_or_recreated_directory_is_lost() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("telltale-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let id = std::fs::metadata(&dir).unwrap().ino();
        assert_eq!(check_cgroup(&dir, id), Ok(()));
        // A new directory at the same path: another inode (keep the old one
        // alive elsewhere so the number cannot be reused at once).
        let moved = dir.with_extension("old");
        let _ = std::fs::remove_dir_all(&moved);
        std::fs::rename(&dir, &moved).unwrap();
        std::fs::create_dir(&dir).unwrap();
        let e = check_cgroup(&dir, id).unwrap_err();
        assert!(e.what.starts_with("was deleted and recreated"), "{e}");
        std::fs::remove_dir(&dir).unwrap();
        let e = check_cgroup(&dir, id).unwrap_err();
        assert_eq!(e.what, "was deleted");
        assert!(e.to_string().contains("nothing in it is watched"), "{e}");
        std::fs::remove_dir(&moved).unwrap();
    }
}
