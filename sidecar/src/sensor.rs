//! The kernel sensors: load the eBPF object with aya, scope it to cgroup
//! subtrees, read the ring buffer and turn records into typed [`Event`]s.

pub mod dns;
pub mod node;
pub mod process;
pub mod registry;

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use aya::maps::{HashMap, Map, MapData, PerCpuArray, RingBuf};
use aya::programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, RawTracePoint, TestRun};
use aya::{Ebpf, EbpfLoader};
use telltale_ebpf::{abi, decode, maps, programs};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::sensor::dns::stream::{Segment, StreamLimits, TcpStreams};
use crate::sensor::process::{Outcome, ProcSnapshot, ProcessTable};
use crate::workload::cgroup::Cgroup;
use telltale_core::event::Event;

/// Where the sensors could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    /// Not running as root.
    #[error(
        "telltale must run as root to load eBPF programs (it needs CAP_BPF, CAP_PERFMON and \
         CAP_SYS_ADMIN); run it with sudo or as root"
    )]
    NotRoot,
    /// The kernel has no BTF.
    #[error(
        "/sys/kernel/btf/vmlinux is missing: the kernel must be built with BTF \
         (CONFIG_DEBUG_INFO_BTF=y) for telltale's CO-RE eBPF programs"
    )]
    NoBtf,
    /// tracefs is not mounted.
    #[error(
        "tracefs is not mounted (no /sys/kernel/tracing/events): mount it with \
         `mount -t tracefs tracefs /sys/kernel/tracing`"
    )]
    NoTracefs,
    /// The kernel BTF could not be parsed.
    #[error("reading the kernel BTF")]
    Btf(#[source] aya::BtfError),
    /// The object could not be loaded.
    #[error("loading the eBPF object")]
    Load(#[source] aya::EbpfError),
    /// A program is missing from the object.
    #[error("eBPF program `{0}` is missing from the object")]
    MissingProgram(&'static str),
    /// A map is missing from the object.
    #[error("eBPF map `{0}` is missing from the object")]
    MissingMap(&'static str),
    /// A program could not be loaded or attached.
    #[error("{action} eBPF program `{program}`")]
    Program {
        /// load or attach.
        action: &'static str,
        /// Program name.
        program: &'static str,
        /// Cause.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map operation failed.
    #[error("eBPF map `{map}`")]
    Map {
        /// Map name.
        map: &'static str,
        /// Cause.
        #[source]
        source: aya::maps::MapError,
    },
    /// All scope slots are in use.
    #[error("cannot watch more than {max} cgroup subtrees with one sensor")]
    TooManyScopes {
        /// The limit.
        max: u32,
    },
    /// The node set's directory is not on a bpf filesystem.
    #[error(
        "{path} is not on a bpf filesystem: mount one with `mount -t bpf bpf /sys/fs/bpf` (in Kubernetes, \
         mount the node's /sys/fs/bpf into the sidecar; the injector does)"
    )]
    NotBpffs {
        /// The directory.
        path: String,
    },
    /// A file operation on the node set failed.
    #[error("{action} {path}")]
    NodeSet {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Pinning a program, link or map failed.
    #[error("pinning {path}")]
    Pin {
        /// The path.
        path: String,
        /// Cause.
        #[source]
        source: aya::pin::PinError,
    },
    /// Every slot of the node set is taken.
    #[error("the node set serves at most {max} sidecars and all are registered")]
    NodeFull {
        /// The limit.
        max: u32,
    },
    /// The watched cgroups are at too many different depths.
    #[error("the sidecars on this node watch cgroups at more than {max} different depths")]
    TooManyLevels {
        /// The limit.
        max: usize,
    },
    /// Another live sidecar watches this cgroup.
    #[error("cgroup {path} is already watched by another telltale on this node ({by}, pid {pid})")]
    AlreadyWatched {
        /// The cgroup.
        path: String,
        /// The other sidecar's name.
        by: String,
        /// Its process id (as the node numbers it).
        pid: u32,
    },
    /// The pod maps could not be loaded.
    #[error("loading this sidecar's kernel maps")]
    LoadPod(#[source] aya::EbpfError),
    /// Running `tt_whoami` failed.
    #[error("asking the kernel for telltale's own process id")]
    Whoami(#[source] aya::programs::ProgramError),
    /// A cgroup directory could not be opened.
    #[error("opening cgroup {path}")]
    CgroupOpen {
        /// The path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Polling the ring buffer failed.
    #[error("polling the ring buffer")]
    Poll(#[source] std::io::Error),
}

/// Options of the sensors.
#[derive(Debug, Clone)]
pub struct SensorOptions {
    /// Drop repeats of identical behaviour in the kernel (default true).
    pub dedup: bool,
    /// Where node sets are pinned (a directory on bpffs).
    pub node_root: PathBuf,
    /// Bytes of this pod's ring buffer (a power of two, at least a page).
    pub ring_buffer: u32,
    /// A registration whose lease is older than this is freed by the other
    /// sidecars on the node.
    pub lease_timeout: Duration,
    /// Who this sidecar is (pod name), shown in the node's registry.
    pub name: String,
}

/// Default size of a pod's ring buffer (see BENCHMARKS.md, "Many pods on one node").
pub const DEFAULT_RING_BUFFER: u32 = 2 << 20;
/// Default lease timeout.
pub const DEFAULT_LEASE_TIMEOUT: Duration = Duration::from_secs(15);

impl Default for SensorOptions {
    fn default() -> Self {
        Self {
            dedup: true,
            node_root: PathBuf::from(node::DEFAULT_ROOT),
            ring_buffer: DEFAULT_RING_BUFFER,
            lease_timeout: DEFAULT_LEASE_TIMEOUT,
            name: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| format!("pid-{}", std::process::id())),
        }
    }
}

/// Counts per event kind, from the kernel's per-CPU counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KindCounts {
    /// Records written to the ring buffer.
    pub emitted: u64,
    /// Repeats dropped in the kernel.
    pub dropped_repeats: u64,
    /// Records lost because the ring buffer was full.
    pub lost: u64,
    /// Records with a truncated path, argv or payload.
    pub truncated: u64,
    /// Repeats of behaviour user space marked known, dropped in the kernel.
    pub filtered_known: u64,
}

/// Everything the sensors counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// exec events.
    pub exec: KindCounts,
    /// file events.
    pub file: KindCounts,
    /// dns events.
    pub dns: KindCounts,
    /// connect events.
    pub connect: KindCounts,
    /// mechanism (io_uring) events.
    pub mechanism: KindCounts,
    /// process exits (bookkeeping).
    pub exit: KindCounts,
    /// DNS payloads that were not valid queries, and DNS-over-TCP messages
    /// that could not be reassembled (bytes missing, over the bound, cut by
    /// the end or eviction of their connection).
    pub malformed_dns: u64,
    /// DNS-over-TCP connections no longer followed to stay within the
    /// reassembler's bound (the least recently active first).
    pub dns_tcp_evicted: u64,
    /// Records that could not be decoded.
    pub undecodable: u64,
    /// This sidecar in the node's shared set (none for a replay).
    pub node: Option<NodeInfo>,
}

/// This sidecar's place in the node's shared set of kernel programs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeInfo {
    /// Its slot.
    pub slot: u32,
    /// It loaded the set (it was the first sidecar on the node).
    pub loaded_here: bool,
    /// Sidecars registered on the node at the last lease renewal.
    pub sidecars: u32,
    /// Times its registration lapsed (not renewed in time; events of the
    /// gap were not seen).
    pub lapses: u64,
}

impl Counters {
    /// Sum over the event kinds (exits excluded).
    pub fn events(&self) -> KindCounts {
        [self.exec, self.file, self.dns, self.connect, self.mechanism].iter().fold(KindCounts::default(), |a, k| {
            KindCounts {
                emitted: a.emitted + k.emitted,
                dropped_repeats: a.dropped_repeats + k.dropped_repeats,
                lost: a.lost + k.lost,
                truncated: a.truncated + k.truncated,
                filtered_known: a.filtered_known + k.filtered_known,
            }
        })
    }
}

/// Turns decoded records into events: the process table, the DNS-over-TCP
/// reassembly, and what user space counts.
#[derive(Debug)]
struct Assembler {
    table: ProcessTable,
    streams: TcpStreams,
    malformed_dns: u64,
    undecodable: u64,
}

impl Assembler {
    fn new(boot_epoch_ns: i128) -> Self {
        Self {
            table: ProcessTable::new(boot_epoch_ns),
            streams: TcpStreams::new(StreamLimits::default()),
            malformed_dns: 0,
            undecodable: 0,
        }
    }

    /// One decoded ring-buffer record; its events (none, one, or several
    /// pipelined DNS-over-TCP queries) go to `out`.
    fn feed(&mut self, record: Result<decode::Record, decode::DecodeError>, out: &mut Vec<Event>) {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                self.undecodable += 1;
                tracing::warn!(error = %e, "Undecodable ring-buffer record.");
                return;
            }
        };
        let outcomes = match record {
            decode::Record::Dns(r) if r.protocol == abi::PROTO_TCP => {
                let segment = Segment {
                    stream: r.sock_cookie,
                    seq: r.tcp_seq,
                    len: r.payload_len,
                    bytes: &r.payload,
                    flags: r.tcp_flags,
                };
                let before = self.streams.counts().malformed;
                let messages = self.streams.feed(segment);
                let lost = self.streams.counts().malformed - before;
                if lost > 0 {
                    self.malformed_dns += lost;
                    tracing::debug!(lost, "DNS-over-TCP messages could not be reassembled.");
                }
                messages
                    .iter()
                    .map(|m| self.table.dns_message(&r.header, r.protocol, r.server, m, &proc_snapshot))
                    .collect()
            }
            record => vec![self.table.feed(record, &proc_snapshot)],
        };
        for outcome in outcomes {
            match outcome {
                Outcome::Event(e) => out.push(*e),
                Outcome::Internal => {}
                Outcome::MalformedDns(e) => {
                    self.malformed_dns += 1;
                    tracing::debug!(error = %e, "Malformed DNS payload skipped.");
                }
                Outcome::UnknownMechanism(m) => {
                    self.undecodable += 1;
                    tracing::warn!(mechanism = m, "Mechanism record of an unknown kind.");
                }
            }
        }
    }
}

/// The node set and this sidecar's place in it, shared with the lease thread.
#[derive(Debug)]
struct Membership {
    root: PathBuf,
    set: node::NodeSet,
    me: node::Member,
    timeout_ns: u64,
}

/// Renews the lease from a thread of its own, so a busy daemon loop never
/// makes the sidecar look dead.
#[derive(Debug)]
struct LeaseThread {
    stop: mpsc::Sender<()>,
    handle: std::thread::JoinHandle<()>,
}

/// How often the lease is renewed.
const LEASE_RENEWAL: Duration = Duration::from_secs(2);

/// Loaded, attached sensors: this pod's place in the node set.
pub struct Sensor {
    ring: AsyncFd<RingBuf<MapData>>,
    known: HashMap<MapData, u64, u8>,
    counters: PerCpuArray<MapData, u64>,
    cgroup_lost: HashMap<MapData, u64, node::PodCgroupLost>,
    skb: CgroupSkb,
    sock_addr: Vec<CgroupSockAddr>,
    membership: Arc<Mutex<Membership>>,
    lease: Option<LeaseThread>,
    lapses: Arc<std::sync::atomic::AtomicU64>,
    sidecars: Arc<std::sync::atomic::AtomicU32>,
    loaded_node_set: bool,
    assembler: Assembler,
    scopes: Vec<Cgroup>,
}

impl std::fmt::Debug for Sensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sensor")
            .field("scopes", &self.scopes)
            .field("processes", &self.assembler.table.len())
            .field("dns_tcp_streams", &self.assembler.streams.len())
            .finish()
    }
}

/// Check what the sensors need before trying to load them.
pub fn preflight() -> Result<(), SensorError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(SensorError::NotRoot);
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(SensorError::NoBtf);
    }
    if !Path::new("/sys/kernel/tracing/events").exists() && !Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Err(SensorError::NoTracefs);
    }
    Ok(())
}

fn boot_epoch_ns() -> i128 {
    use nix::time::{clock_gettime, ClockId};
    let ns =
        |c| clock_gettime(c).map(|t| i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec())).unwrap_or(0);
    ns(ClockId::CLOCK_REALTIME) - ns(ClockId::CLOCK_BOOTTIME)
}

/// What /proc says about a process that predates the sensor.
fn proc_snapshot(pid: u32) -> Option<ProcSnapshot> {
    let path = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args = cmdline
        .strip_suffix(&[0])
        .unwrap_or(&cmdline)
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| telltale_core::text::name_from_bytes(a).into_owned())
        .collect();
    let path = telltale_core::text::name_from_bytes(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()));
    Some(ProcSnapshot { path: path.into_owned(), args })
}

fn take_data(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, SensorError> {
    ebpf.take_map(name).ok_or(SensorError::MissingMap(name))
}

/// A second handle on a map (the lease thread and the node set keep theirs).
fn dup(map: &Map, name: &'static str) -> Result<MapData, SensorError> {
    let data = match map {
        Map::RingBuf(d) | Map::LruHashMap(d) | Map::HashMap(d) | Map::PerCpuArray(d) => d,
        _ => return Err(SensorError::MissingMap(name)),
    };
    let fd = data.fd().as_fd().try_clone_to_owned().map_err(|source| SensorError::NodeSet {
        action: "duplicating the handle of map",
        path: name.to_owned(),
        source,
    })?;
    MapData::from_fd(fd).map_err(|source| SensorError::Map { map: name, source })
}

/// glibc keeps freed heap (BTF parsing, object loading, a burst's
/// transient buffers) unless asked.
pub(crate) fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Sensor {
    /// Join the node set (loading it if this is the first sidecar on the
    /// node) with this pod's own maps. No event is produced until
    /// [`Sensor::watch`] adds a cgroup subtree.
    pub fn load(options: &SensorOptions) -> Result<Self, SensorError> {
        preflight()?;
        node::prepare_root(&options.node_root)?;

        // This pod's maps first, outside the lock: they are ours alone.
        let mut pod = EbpfLoader::new()
            .btf(None)
            .map_max_entries(maps::EVENTS, options.ring_buffer)
            .load(telltale_ebpf::pod_object())
            .map_err(SensorError::LoadPod)?;
        let whoami: &mut RawTracePoint = program(&mut pod, programs::WHOAMI)?;
        whoami.load().map_err(|source| SensorError::Program {
            action: "loading",
            program: programs::WHOAMI,
            source,
        })?;
        let host_tgid =
            whoami.test_run(aya::programs::RawTracePointRunOptions::new()).map_err(SensorError::Whoami)?.return_value;

        let mut taken = Vec::new();
        for &(_, name) in maps::POD_MAPS {
            taken.push((name, take_data(&mut pod, name)?));
        }
        let inner = taken.iter().map(|(name, map)| dup(map, name)).collect::<Result<Vec<_>, _>>()?;
        let mut by_name: std::collections::HashMap<&str, Map> = taken.into_iter().collect();
        let mut take = |name: &'static str| by_name.remove(name).ok_or(SensorError::MissingMap(name));
        let ring =
            RingBuf::try_from(take(maps::EVENTS)?).map_err(|source| SensorError::Map { map: maps::EVENTS, source })?;
        let known =
            HashMap::try_from(take(maps::KNOWN)?).map_err(|source| SensorError::Map { map: maps::KNOWN, source })?;
        let counters = PerCpuArray::try_from(take(maps::COUNTERS)?)
            .map_err(|source| SensorError::Map { map: maps::COUNTERS, source })?;
        let cgroup_lost = HashMap::try_from(take(maps::CGROUP_LOST)?)
            .map_err(|source| SensorError::Map { map: maps::CGROUP_LOST, source })?;

        let mut me = node::Member::new(host_tgid, options.dedup, &options.name, inner);
        let timeout_ns = u64::try_from(options.lease_timeout.as_nanos()).unwrap_or(u64::MAX);
        let (set, skb, sock_addr, sidecars) = {
            let lock = node::lock(&options.node_root)?;
            let mut set = node::open_or_load(&options.node_root, &lock)?;
            let (_, others) = set.sweep(node::boot_ns(), timeout_ns, &lock)?;
            set.register(&mut me, &lock)?;
            let sidecars = others + 1;
            let (skb, sock_addr) = node::cgroup_programs(&set)?;
            (set, skb, sock_addr, sidecars)
        };
        let loaded_node_set = set.loaded_here;
        tracing::info!(
            node_set = %set.dir().display(),
            slot = me.slot,
            loaded = loaded_node_set,
            "Joined the node's shared sensors."
        );
        return_freed_memory();

        // SAFETY: the ring buffer's fd is owned by `ring`, which the AsyncFd
        // owns, so it stays open for as long as it is registered.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| SensorError::Poll(e.into()))?;
        let membership = Arc::new(Mutex::new(Membership { root: options.node_root.clone(), set, me, timeout_ns }));
        let lapses = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sidecars = Arc::new(std::sync::atomic::AtomicU32::new(sidecars));
        let lease = Some(spawn_lease(membership.clone(), lapses.clone(), sidecars.clone()));
        drop(pod);
        Ok(Self {
            ring,
            known,
            counters,
            cgroup_lost,
            skb,
            sock_addr,
            membership,
            lease,
            lapses,
            sidecars,
            loaded_node_set,
            assembler: Assembler::new(boot_epoch_ns()),
            scopes: Vec::new(),
        })
    }

    /// Watch the subtree of `cgroup`: its tasks (and its descendants')
    /// produce events from now on.
    pub fn watch(&mut self, cgroup: &Cgroup) -> Result<(), SensorError> {
        let dir = File::open(&cgroup.path)
            .map_err(|source| SensorError::CgroupOpen { path: cgroup.path.display().to_string(), source })?;
        {
            let mut guard = self.membership.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let Membership { root, set, me, .. } = &mut *guard;
            let lock = node::lock(root)?;
            set.add_scope(me, cgroup.id, cgroup.level, &cgroup.path, &lock)?;
        }
        for (prog, &name) in self.sock_addr.iter_mut().zip(programs::SOCK_ADDR) {
            prog.attach(dir.as_fd(), CgroupAttachMode::Single).map_err(|source| SensorError::Program {
                action: "attaching",
                program: name,
                source,
            })?;
        }
        self.skb
            .attach(dir.as_fd(), CgroupSkbAttachType::Egress, CgroupAttachMode::Single)
            .map_err(|source| SensorError::Program { action: "attaching", program: programs::SKB_EGRESS, source })?;
        self.scopes.push(cgroup.clone());
        Ok(())
    }

    /// Tell the kernel these behaviours are known: their repeats are
    /// dropped (and counted) before reaching the ring buffer. Keys of 0 are
    /// ignored. Fails when the kernel map is full.
    pub fn mark_known(&mut self, keys: &[u64]) -> Result<(), SensorError> {
        for &k in keys.iter().filter(|&&k| k != 0) {
            self.known.insert(k, 1, 0).map_err(|source| SensorError::Map { map: maps::KNOWN, source })?;
        }
        Ok(())
    }

    /// The watched cgroups.
    pub fn scopes(&self) -> &[Cgroup] {
        &self.scopes
    }

    /// This sidecar loaded the node set (it was the first on the node).
    pub fn loaded_node_set(&self) -> bool {
        self.loaded_node_set
    }

    /// This sidecar's slot in the node set.
    pub fn slot(&self) -> u32 {
        self.membership.lock().unwrap_or_else(std::sync::PoisonError::into_inner).me.slot
    }

    /// How many times this sidecar's registration lapsed (it did not renew
    /// its lease in time and was registered again: events were missed).
    pub fn lapses(&self) -> u64 {
        self.lapses.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Wait until records are available, then decode all of them into `out`.
    pub async fn next_events(&mut self, out: &mut Vec<Event>) -> Result<(), SensorError> {
        let Self { ring, assembler, .. } = self;
        let mut guard = ring.readable_mut().await.map_err(SensorError::Poll)?;
        drain_ring(guard.get_inner_mut(), assembler, out);
        guard.clear_ready();
        Ok(())
    }

    /// Decode every record already in the ring buffer into `out`, without
    /// waiting. Returns how many events were added.
    pub fn drain(&mut self, out: &mut Vec<Event>) -> usize {
        let before = out.len();
        let Self { ring, assembler, .. } = self;
        drain_ring(ring.get_mut(), assembler, out);
        out.len() - before
    }

    /// Records lost (ring buffer full) by the cgroup they came from and
    /// event kind (`abi::EVENT_*` indexes).
    pub fn lost_by_cgroup(&self) -> Vec<(u64, abi::CgroupLost)> {
        self.cgroup_lost.iter().filter_map(Result::ok).map(|(id, v)| (id, v.0)).collect()
    }

    /// Read this pod's kernel counters (summed over CPUs) and user-space counts.
    pub fn counters(&self) -> Result<Counters, SensorError> {
        let arr = &self.counters;
        let get = |what: u32, kind: u16| -> Result<u64, SensorError> {
            let idx = what * abi::KIND_SLOTS + u32::from(kind);
            let values = arr.get(&idx, 0).map_err(|source| SensorError::Map { map: maps::COUNTERS, source })?;
            Ok(values.iter().sum())
        };
        let kind = |k: u16| -> Result<KindCounts, SensorError> {
            Ok(KindCounts {
                emitted: get(abi::CNT_EMITTED, k)?,
                dropped_repeats: get(abi::CNT_DEDUP, k)?,
                lost: get(abi::CNT_LOST, k)?,
                truncated: get(abi::CNT_TRUNCATED, k)?,
                filtered_known: get(abi::CNT_KNOWN, k)?,
            })
        };
        Ok(Counters {
            exec: kind(abi::EVENT_EXEC)?,
            file: kind(abi::EVENT_FILE)?,
            dns: kind(abi::EVENT_DNS)?,
            connect: kind(abi::EVENT_CONNECT)?,
            mechanism: kind(abi::EVENT_MECHANISM)?,
            exit: kind(abi::EVENT_EXIT)?,
            malformed_dns: self.assembler.malformed_dns,
            dns_tcp_evicted: self.assembler.streams.counts().evicted,
            undecodable: self.assembler.undecodable,
            node: Some(NodeInfo {
                slot: self.slot(),
                loaded_here: self.loaded_node_set,
                sidecars: self.sidecars.load(std::sync::atomic::Ordering::Relaxed),
                lapses: self.lapses(),
            }),
        })
    }
}

fn spawn_lease(
    membership: Arc<Mutex<Membership>>,
    lapses: Arc<std::sync::atomic::AtomicU64>,
    sidecars: Arc<std::sync::atomic::AtomicU32>,
) -> LeaseThread {
    let (stop, rx) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("telltale-lease".into())
        .spawn(move || loop {
            match rx.recv_timeout(LEASE_RENEWAL) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            let mut guard = membership.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let Membership { root, set, me, timeout_ns } = &mut *guard;
            let result = node::lock(root).and_then(|lock| {
                let (renewal, live) = set.renew(me, *timeout_ns, &lock)?;
                sidecars.store(live, std::sync::atomic::Ordering::Relaxed);
                Ok(renewal)
            });
            match result {
                Ok(node::Renewal::Renewed) => {}
                Ok(node::Renewal::Lapsed) => {
                    lapses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(
                        slot = me.slot,
                        "This sidecar did not renew its node registration in time and was registered again: \
                         events of the gap were not seen."
                    );
                }
                Err(e) => tracing::warn!(error = %crate::error_chain(&e), "Renewing the node registration failed."),
            }
        })
        .unwrap_or_else(|e| {
            // Without the thread the lease lapses and the sweep frees us; say so.
            tracing::error!(error = %e, "Could not start the lease thread.");
            std::thread::spawn(|| {})
        });
    LeaseThread { stop, handle }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            let _ = lease.stop.send(());
            let _ = lease.handle.join();
        }
        self.leave();
    }
}

impl Sensor {
    /// Give this pod's slot back; the last sidecar out unpins the set.
    fn leave(&mut self) {
        let mut guard = self.membership.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Membership { root, set, me, timeout_ns } = &mut *guard;
        let result = node::lock(root).and_then(|lock| {
            if set.leave(me, *timeout_ns, &lock)? {
                set.unpin(&lock)?;
                tracing::info!(node_set = %set.dir().display(), "Last sidecar on the node: unpinned the shared sensors.");
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!(error = %crate::error_chain(&e), "Leaving the node's shared sensors failed.");
        }
    }
}

fn drain_ring(ring: &mut RingBuf<MapData>, assembler: &mut Assembler, out: &mut Vec<Event>) {
    while let Some(item) = ring.next() {
        let record = decode::decode(&item);
        drop(item);
        assembler.feed(record, out);
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, SensorError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program>,
{
    let prog = ebpf.program_mut(name).ok_or(SensorError::MissingProgram(name))?;
    prog.try_into().map_err(|_| SensorError::MissingProgram(name))
}
