//! The kernel sensors: load the eBPF object with aya, scope it to cgroup
//! subtrees, read the ring buffer and turn records into typed [`Event`]s.

pub mod dns;
pub mod process;

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr};
use aya::{Btf, Ebpf, EbpfLoader};
use telltale_ebpf::{abi, decode, globals, maps, programs};
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
}

impl Default for SensorOptions {
    fn default() -> Self {
        Self { dedup: true }
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

#[repr(transparent)]
#[derive(Clone, Copy)]
struct PodScope(abi::Scope);
// SAFETY: abi::Scope is #[repr(C)] plain old data with explicit padding.
unsafe impl aya::Pod for PodScope {}

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

/// Loaded, attached sensors.
pub struct Sensor {
    ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
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

impl Sensor {
    /// Load the eBPF object and attach the task-level hooks. No event is
    /// produced until [`Sensor::watch`] adds a cgroup subtree.
    pub fn load(options: &SensorOptions) -> Result<Self, SensorError> {
        preflight()?;
        let btf = Btf::from_sys_fs().map_err(SensorError::Btf)?;
        let self_tgid = std::process::id();
        let dedup = u32::from(options.dedup);
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global(globals::SELF_TGID, &self_tgid, true)
            .override_global(globals::DEDUP_ENABLED, &dedup, true)
            .load(telltale_ebpf::object())
            .map_err(SensorError::Load)?;

        for &(name, tp) in programs::BTF_TRACEPOINTS {
            let prog: &mut BtfTracePoint = program(&mut ebpf, name)?;
            prog.load(tp, &btf).map_err(|source| SensorError::Program { action: "loading", program: name, source })?;
            prog.attach().map_err(|source| SensorError::Program { action: "attaching", program: name, source })?;
        }
        for &name in programs::SOCK_ADDR {
            let prog: &mut CgroupSockAddr = program(&mut ebpf, name)?;
            prog.load().map_err(|source| SensorError::Program { action: "loading", program: name, source })?;
        }
        let skb: &mut CgroupSkb = program(&mut ebpf, programs::SKB_EGRESS)?;
        skb.load().map_err(|source| SensorError::Program {
            action: "loading",
            program: programs::SKB_EGRESS,
            source,
        })?;

        let ring_map = ebpf.take_map(maps::EVENTS).ok_or(SensorError::MissingMap(maps::EVENTS))?;
        let ring = RingBuf::try_from(ring_map).map_err(|source| SensorError::Map { map: maps::EVENTS, source })?;
        // SAFETY: the ring buffer's fd is owned by `ring`, which the AsyncFd
        // owns, so it stays open for as long as it is registered.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| SensorError::Poll(e.into()))?;
        Ok(Self { ebpf, ring, assembler: Assembler::new(boot_epoch_ns()), scopes: Vec::new() })
    }

    /// Watch the subtree of `cgroup`: its tasks (and its descendants')
    /// produce events from now on.
    pub fn watch(&mut self, cgroup: &Cgroup) -> Result<(), SensorError> {
        let slot = u32::try_from(self.scopes.len()).unwrap_or(u32::MAX);
        if slot >= abi::MAX_SCOPES {
            return Err(SensorError::TooManyScopes { max: abi::MAX_SCOPES });
        }
        let dir = File::open(&cgroup.path)
            .map_err(|source| SensorError::CgroupOpen { path: cgroup.path.display().to_string(), source })?;
        for &name in programs::SOCK_ADDR {
            let prog: &mut CgroupSockAddr = program(&mut self.ebpf, name)?;
            prog.attach(dir.as_fd(), CgroupAttachMode::Single).map_err(|source| SensorError::Program {
                action: "attaching",
                program: name,
                source,
            })?;
        }
        let skb: &mut CgroupSkb = program(&mut self.ebpf, programs::SKB_EGRESS)?;
        skb.attach(dir.as_fd(), CgroupSkbAttachType::Egress, CgroupAttachMode::Single)
            .map_err(|source| SensorError::Program { action: "attaching", program: programs::SKB_EGRESS, source })?;
        let map = self.ebpf.map_mut(maps::SCOPES).ok_or(SensorError::MissingMap(maps::SCOPES))?;
        let mut scopes: Array<&mut MapData, PodScope> =
            Array::try_from(map).map_err(|source| SensorError::Map { map: maps::SCOPES, source })?;
        let value = PodScope(abi::Scope { cgroup_id: cgroup.id, level: cgroup.level, pad: 0 });
        scopes.set(slot, value, 0).map_err(|source| SensorError::Map { map: maps::SCOPES, source })?;
        self.scopes.push(cgroup.clone());
        Ok(())
    }

    /// Tell the kernel these behaviours are known: their repeats are
    /// dropped (and counted) before reaching the ring buffer. Keys of 0 are
    /// ignored. Fails when the kernel map is full.
    pub fn mark_known(&mut self, keys: &[u64]) -> Result<(), SensorError> {
        let map = self.ebpf.map_mut(maps::KNOWN).ok_or(SensorError::MissingMap(maps::KNOWN))?;
        let mut known: HashMap<&mut MapData, u64, u8> =
            HashMap::try_from(map).map_err(|source| SensorError::Map { map: maps::KNOWN, source })?;
        for &k in keys.iter().filter(|&&k| k != 0) {
            known.insert(k, 1, 0).map_err(|source| SensorError::Map { map: maps::KNOWN, source })?;
        }
        Ok(())
    }

    /// The watched cgroups.
    pub fn scopes(&self) -> &[Cgroup] {
        &self.scopes
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

    /// Read the kernel counters (summed over CPUs) and user-space counts.
    pub fn counters(&self) -> Result<Counters, SensorError> {
        let map = self.ebpf.map(maps::COUNTERS).ok_or(SensorError::MissingMap(maps::COUNTERS))?;
        let arr: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(|source| SensorError::Map { map: maps::COUNTERS, source })?;
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
        })
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
