//! The node set: one copy of the kernel programs per node, pinned in bpffs
//! and shared by every sidecar on the node, so the cost every task on the
//! node pays does not grow with the number of pods.
//!
//! Layout, under a root directory on bpffs (default `/sys/fs/bpf/telltale`):
//! one directory per set, named by the ABI version and a hash of the node
//! object (`v3-1a2b3c4d5e6f`), so two telltale versions on one node never
//! share an incompatible layout. It holds the pinned `tp_btf` links
//! (`link_<program>`), the per-pod cgroup programs (`prog_<program>`), and
//! the maps `scopes`, `node`, `pod_*` and `registry` (pinned last: a set
//! without it is incomplete and is rebuilt).
//!
//! Every change (load, register, renew, leave, sweep) happens under an
//! exclusive `flock` on the root directory, so two sidecars starting at the
//! same instant load the set once. A sidecar holds a slot by a lease it
//! renews every second from a thread of its own; one whose lease is older
//! than the timeout (killed with -9, frozen) is swept by the next sidecar
//! that registers or renews: its scopes are removed and its maps released
//! (they are freed when no one holds them any more). The last sidecar to
//! leave unpins the whole set.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use aya::maps::{Array, ArrayOfMaps, HashMap, Map, MapData, MapError};
use aya::programs::{BtfTracePoint, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, CgroupSockAddrAttachType};
use aya::{Btf, EbpfLoader};
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};
use telltale_ebpf::{abi, maps, programs};

use super::registry::{self, Slot};
use super::{program, SensorError};

/// Where node sets live unless configured otherwise.
pub const DEFAULT_ROOT: &str = telltale_core::contract::NODE_BPFFS_DIR;

/// `statfs` magic of bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

macro_rules! pod_value {
    ($name:ident, $inner:ty) => {
        #[repr(transparent)]
        #[derive(Clone, Copy)]
        pub(crate) struct $name(pub(crate) $inner);
        // SAFETY: the ABI structs are #[repr(C)] plain old data with
        // explicit padding (checked against the C header by a test).
        unsafe impl aya::Pod for $name {}
    };
}
pod_value!(PodScope, abi::Scope);
pod_value!(PodNodeState, abi::NodeState);
pod_value!(PodRegistration, abi::Registration);
pod_value!(PodCgroupLost, abi::CgroupLost);

/// The set's directory name: ABI version and a hash of the node object.
pub fn set_name() -> String {
    let digest = Sha256::digest(telltale_ebpf::node_object());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("v{}-{hex}", abi::ABI_VERSION)
}

/// CLOCK_BOOTTIME in ns: the same for every process on the node, whatever
/// its namespaces, and it counts suspended time.
pub fn boot_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .map(|t| {
            u64::try_from(t.tv_sec()).unwrap_or(0).saturating_mul(1_000_000_000)
                + u64::try_from(t.tv_nsec()).unwrap_or(0)
        })
        .unwrap_or(0)
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SensorError + 'a {
    move |source| SensorError::NodeSet { action, path: path.display().to_string(), source }
}

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> SensorError {
    move |source| SensorError::Map { map, source }
}

/// The root directory, created if missing, checked to be on bpffs.
pub fn prepare_root(root: &Path) -> Result<(), SensorError> {
    std::fs::create_dir_all(root).map_err(io_err("creating", root))?;
    let fs = nix::sys::statfs::statfs(root).map_err(|e| io_err("inspecting", root)(e.into()))?;
    // The magic's type differs between libcs; compare as i64.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let magic = fs.filesystem_type().0 as i64;
    if magic != BPF_FS_MAGIC {
        return Err(SensorError::NotBpffs { path: root.display().to_string() });
    }
    Ok(())
}

/// The exclusive lock on the root directory; released when dropped (and by
/// the kernel when the holder dies).
pub struct NodeLock(#[allow(dead_code)] Flock<File>);

impl std::fmt::Debug for NodeLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeLock")
    }
}

/// Take the lock, waiting for whoever holds it (a sidecar loading the set
/// takes a second or two).
pub fn lock(root: &Path) -> Result<NodeLock, SensorError> {
    let dir = File::open(root).map_err(io_err("opening", root))?;
    Flock::lock(dir, FlockArg::LockExclusive)
        .map(NodeLock)
        .map_err(|(_, e)| io_err("locking", root)(std::io::Error::from(e)))
}

fn data_of(map: Map) -> Option<MapData> {
    match map {
        Map::Array(d)
        | Map::ArrayOfMaps(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::RingBuf(d) => Some(d),
        _ => None,
    }
}

/// Handles on a node set's pinned maps and programs.
pub struct NodeSet {
    dir: PathBuf,
    scopes: HashMap<MapData, u64, PodScope>,
    node: Array<MapData, PodNodeState>,
    registry: Array<MapData, PodRegistration>,
    outer: Vec<Map>,
    /// This process loaded the programs (the first sidecar on the node).
    pub loaded_here: bool,
}

impl std::fmt::Debug for NodeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSet").field("dir", &self.dir).field("loaded_here", &self.loaded_here).finish()
    }
}

/// Open the node set under `root`, loading and pinning it first if it does
/// not exist (or is incomplete). Call with the lock held.
pub fn open_or_load(root: &Path, _lock: &NodeLock) -> Result<NodeSet, SensorError> {
    let dir = root.join(set_name());
    if dir.join(maps::REGISTRY).exists() {
        match open(&dir, false) {
            Ok(set) => return Ok(set),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %crate::error_chain(&e), "The node set is broken; loading it again.");
            }
        }
    }
    if dir.exists() {
        // Left half-made by a sidecar that died while loading it.
        unpin_dir(&dir)?;
    }
    std::fs::create_dir(&dir).map_err(io_err("creating", &dir))?;
    if let Err(e) = load(&dir) {
        let _ = unpin_dir(&dir);
        return Err(e);
    }
    open(&dir, true)
}

fn pin_path(dir: &Path, kind: &str, name: &str) -> PathBuf {
    dir.join(format!("{kind}_{name}"))
}

/// Load the node object, attach the tracepoints, pin everything.
fn load(dir: &Path) -> Result<(), SensorError> {
    let btf = Btf::from_sys_fs().map_err(SensorError::Btf)?;
    let mut ebpf = EbpfLoader::new().btf(Some(&btf)).load(telltale_ebpf::node_object()).map_err(SensorError::Load)?;
    let pin_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| SensorError::Pin { path, source }
    };
    for &(name, tp) in programs::BTF_TRACEPOINTS {
        let prog: &mut BtfTracePoint = program(&mut ebpf, name)?;
        prog.load(tp, &btf).map_err(|source| SensorError::Program { action: "loading", program: name, source })?;
        let id = prog.attach().map_err(|source| SensorError::Program { action: "attaching", program: name, source })?;
        let link =
            prog.take_link(id).map_err(|source| SensorError::Program { action: "taking", program: name, source })?;
        let link: aya::programs::links::FdLink = link.into();
        let path = pin_path(dir, "link", name);
        link.pin(&path).map_err(pin_err(&path))?;
    }
    for &name in programs::SOCK_ADDR {
        let prog: &mut CgroupSockAddr = program(&mut ebpf, name)?;
        prog.load().map_err(|source| SensorError::Program { action: "loading", program: name, source })?;
        let path = pin_path(dir, "prog", name);
        prog.pin(&path).map_err(pin_err(&path))?;
    }
    let skb: &mut CgroupSkb = program(&mut ebpf, programs::SKB_EGRESS)?;
    skb.load().map_err(|source| SensorError::Program { action: "loading", program: programs::SKB_EGRESS, source })?;
    let path = pin_path(dir, "prog", programs::SKB_EGRESS);
    skb.pin(&path).map_err(pin_err(&path))?;

    let mut names: Vec<&'static str> = vec![maps::SCOPES, maps::NODE];
    names.extend(maps::POD_MAPS.iter().map(|&(outer, _)| outer));
    names.push(maps::REGISTRY); // last: its presence says the set is complete
    for name in names {
        let map = ebpf.take_map(name).ok_or(SensorError::MissingMap(name))?;
        let data = data_of(map).ok_or(SensorError::MissingMap(name))?;
        let path = dir.join(name);
        data.pin(&path).map_err(pin_err(&path))?;
    }
    Ok(())
}

fn open(dir: &Path, loaded_here: bool) -> Result<NodeSet, SensorError> {
    let pinned = |name: &'static str| -> Result<MapData, SensorError> {
        MapData::from_pin(dir.join(name)).map_err(map_err(name))
    };
    let scopes = HashMap::try_from(Map::HashMap(pinned(maps::SCOPES)?)).map_err(map_err(maps::SCOPES))?;
    let node = Array::try_from(Map::Array(pinned(maps::NODE)?)).map_err(map_err(maps::NODE))?;
    let registry = Array::try_from(Map::Array(pinned(maps::REGISTRY)?)).map_err(map_err(maps::REGISTRY))?;
    let mut outer = Vec::new();
    for &(name, _) in maps::POD_MAPS {
        let map = Map::ArrayOfMaps(pinned(name)?);
        ArrayOfMaps::<&MapData, MapData>::try_from(&map).map_err(map_err(name))?;
        outer.push(map);
    }
    for &(name, _) in programs::BTF_TRACEPOINTS {
        let path = pin_path(dir, "link", name);
        if !path.exists() {
            return Err(SensorError::NodeSet {
                action: "finding",
                path: path.display().to_string(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
    }
    Ok(NodeSet { dir: dir.to_owned(), scopes, node, registry, outer, loaded_here })
}

/// Remove every pin of a set and its directory.
fn unpin_dir(dir: &Path) -> Result<(), SensorError> {
    let entries = std::fs::read_dir(dir).map_err(io_err("listing", dir))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            // A `live-<slot>` directory (see [`Liveness`]).
            std::fs::remove_dir(&path).map_err(io_err("removing", &path))?;
        } else {
            std::fs::remove_file(&path).map_err(io_err("unpinning", &path))?;
        }
    }
    std::fs::remove_dir(dir).map_err(io_err("removing", dir))
}

/// A sidecar's proof of life that needs nothing from it: an exclusive
/// `flock` on the set's `live-<slot>` directory, held for as long as the
/// process lives (the kernel drops it when the process dies, however it
/// dies). Another sidecar that can take the lock knows the slot's holder
/// is gone, at once, without waiting for the lease to run out.
pub struct Liveness(#[allow(dead_code)] Flock<File>);

impl std::fmt::Debug for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Liveness")
    }
}

fn live_dir(dir: &Path, slot: u32) -> PathBuf {
    dir.join(format!("live-{slot}"))
}

/// Take the lock of `slot` (creating its directory).
fn hold_liveness(dir: &Path, slot: u32) -> Result<Liveness, SensorError> {
    let path = live_dir(dir, slot);
    match std::fs::create_dir(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("creating", &path)(e)),
    }
    let f = File::open(&path).map_err(io_err("opening", &path))?;
    Flock::lock(f, FlockArg::LockExclusiveNonblock)
        .map(Liveness)
        .map_err(|(_, e)| io_err("locking (is another sidecar in this slot?)", &path)(std::io::Error::from(e)))
}

/// Is the holder of `slot` known to be dead (its lock can be taken)?
/// False when it is alive or when it cannot be told (no directory).
fn holder_is_dead(dir: &Path, slot: u32) -> bool {
    let Ok(f) = File::open(live_dir(dir, slot)) else { return false };
    // Taken and released at once (dropped): only a test.
    Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok()
}

/// What `telltale node` shows of one registration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Registered {
    /// Its slot.
    pub slot: u32,
    /// Sidecar name (pod name).
    pub name: String,
    /// Its process, as the node numbers it.
    pub pid: u32,
    /// Seconds since it last renewed its lease.
    pub lease_age_s: u64,
    /// Seconds since it registered.
    pub registered_s: u64,
    /// The cgroup ids it watches.
    pub cgroups: Vec<u64>,
    /// Its process is gone (its liveness lock is free).
    pub dead: bool,
}

/// `telltale node`: the node set under `root` (none: `Ok(None)`), its
/// registrations; with `gc`, free the dead and stale ones first, and unpin
/// the set when no sidecar is left (what the last sidecar out does, for a
/// last sidecar that was killed).
pub fn inspect(
    root: &Path,
    timeout_ns: u64,
    gc: bool,
) -> Result<Option<(PathBuf, Vec<Registered>, bool)>, SensorError> {
    prepare_root(root)?;
    let lock = lock(root)?;
    let dir = root.join(set_name());
    if !dir.join(maps::REGISTRY).exists() {
        return Ok(None);
    }
    let mut set = open(&dir, false)?;
    let mut unpinned = false;
    if gc {
        let (_, live) = set.sweep(boot_ns(), timeout_ns, &lock)?;
        if live == 0 {
            set.unpin(&lock)?;
            unpinned = true;
        }
    }
    let now = boot_ns();
    let regs = if unpinned {
        Vec::new()
    } else {
        set.slots()?
            .into_iter()
            .filter(|s| s.registration.owner != 0)
            .map(|s| {
                let r = &s.registration;
                Registered {
                    slot: s.index,
                    name: registry::name_of(r),
                    pid: r.host_tgid,
                    lease_age_s: now.saturating_sub(r.lease_ns) / 1_000_000_000,
                    registered_s: now.saturating_sub(r.since_ns) / 1_000_000_000,
                    cgroups: registry::cgroups_of(r).to_vec(),
                    dead: holder_is_dead(&dir, s.index),
                }
            })
            .collect()
    };
    Ok(Some((dir, regs, unpinned)))
}

/// The per-pod cgroup programs of a set, opened from their pins, to be
/// attached to a pod's cgroup by its sidecar.
pub fn cgroup_programs(set: &NodeSet) -> Result<(CgroupSkb, Vec<CgroupSockAddr>), SensorError> {
    let from_pin_err =
        |name: &'static str| move |source| SensorError::Program { action: "opening", program: name, source };
    let skb = CgroupSkb::from_pin(pin_path(&set.dir, "prog", programs::SKB_EGRESS), CgroupSkbAttachType::Egress)
        .map_err(from_pin_err(programs::SKB_EGRESS))?;
    let mut sock = Vec::new();
    for &name in programs::SOCK_ADDR {
        let attach = match name {
            "tt_connect4" => CgroupSockAddrAttachType::Connect4,
            "tt_connect6" => CgroupSockAddrAttachType::Connect6,
            "tt_sendmsg4" => CgroupSockAddrAttachType::UDPSendMsg4,
            _ => CgroupSockAddrAttachType::UDPSendMsg6,
        };
        sock.push(CgroupSockAddr::from_pin(pin_path(&set.dir, "prog", name), attach).map_err(from_pin_err(name))?);
    }
    Ok((skb, sock))
}

/// `BPF_MAP_DELETE_ELEM` on an array of maps (aya has no call for it):
/// the slot holds no map afterwards, and the map is freed once no one else
/// holds it. A slot already empty is not an error.
fn clear_outer(map: &Map, slot: u32) -> std::io::Result<()> {
    #[repr(C)]
    struct Attr {
        map_fd: u32,
        pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
    let Map::ArrayOfMaps(data) = map else {
        return Err(std::io::ErrorKind::InvalidInput.into());
    };
    let attr = Attr {
        map_fd: u32::try_from(data.fd().as_fd().as_raw_fd()).unwrap_or(u32::MAX),
        pad: 0,
        key: std::ptr::addr_of!(slot) as u64,
        value: 0,
        flags: 0,
    };
    // SAFETY: attr is a valid bpf_attr prefix for BPF_MAP_DELETE_ELEM whose
    // key points to a live u32; the kernel reads size_of::<Attr>() bytes.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_MAP_DELETE_ELEM, std::ptr::addr_of!(attr), std::mem::size_of::<Attr>())
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e);
        }
    }
    Ok(())
}

/// What one sidecar holds in a node set.
pub struct Member {
    /// Its slot.
    pub slot: u32,
    owner: u64,
    host_tgid: u32,
    flags: u32,
    name: [u8; 64],
    since_ns: u64,
    /// (cgroup id, depth) of the subtrees it watches.
    scopes: Vec<(u64, u32)>,
    /// Its maps, in [`maps::POD_MAPS`] order.
    inner: Vec<MapData>,
    /// Its proof of life in its slot.
    liveness: Option<Liveness>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("slot", &self.slot)
            .field("host_tgid", &self.host_tgid)
            .field("scopes", &self.scopes)
            .finish()
    }
}

fn random_owner() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    let v = u64::from_ne_bytes(b);
    if v == 0 {
        // Never 0 (a free slot): fall back to time and pid.
        boot_ns() ^ (u64::from(std::process::id()) << 32) | 1
    } else {
        v
    }
}

impl Member {
    /// A member holding `inner` (the pod object's maps, in
    /// [`maps::POD_MAPS`] order), not yet registered.
    pub fn new(host_tgid: u32, dedup: bool, name: &str, inner: Vec<MapData>) -> Self {
        Self {
            slot: u32::MAX,
            owner: random_owner(),
            host_tgid,
            flags: if dedup { 0 } else { abi::SCOPE_NO_DEDUP },
            name: registry::name_field(name),
            since_ns: boot_ns(),
            scopes: Vec::new(),
            inner,
            liveness: None,
        }
    }

    fn registration(&self, lease_ns: u64) -> abi::Registration {
        let mut r = abi::Registration {
            owner: self.owner,
            lease_ns,
            since_ns: self.since_ns,
            host_tgid: self.host_tgid,
            nscopes: u32::try_from(self.scopes.len()).unwrap_or(0),
            name: self.name,
            ..Default::default()
        };
        for (i, &(id, _)) in self.scopes.iter().enumerate().take(r.cgroups.len()) {
            r.cgroups[i] = id;
        }
        r
    }

    fn scope(&self, level: u32) -> PodScope {
        PodScope(abi::Scope { slot: self.slot, level, self_tgid: self.host_tgid, flags: self.flags })
    }
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The lease was ours and is renewed.
    Renewed,
    /// Our slot had been swept (we did not renew in time): registered
    /// again, in a new slot; events of the gap were not seen.
    Lapsed,
}

impl NodeSet {
    fn slots(&self) -> Result<Vec<Slot>, SensorError> {
        (0..abi::MAX_PODS)
            .map(|index| {
                self.registry.get(&index, 0).map(|r| Slot { index, registration: r.0 }).map_err(map_err(maps::REGISTRY))
            })
            .collect()
    }

    /// Free the slots whose lease expired. Returns how many were freed and
    /// how many sidecars are left.
    pub fn sweep(&mut self, now_ns: u64, timeout_ns: u64, _lock: &NodeLock) -> Result<(usize, u32), SensorError> {
        let slots = self.slots()?;
        let dead = |s: &Slot| s.registration.owner != 0 && holder_is_dead(&self.dir, s.index);
        let stale: Vec<(&Slot, bool)> = slots
            .iter()
            .filter_map(|s| {
                if dead(s) {
                    Some((s, true))
                } else {
                    registry::is_stale(&s.registration, now_ns, timeout_ns).then_some((s, false))
                }
            })
            .collect();
        for (s, died) in &stale {
            tracing::warn!(
                slot = s.index,
                sidecar = %registry::name_of(&s.registration),
                pid = s.registration.host_tgid,
                silent_for_s = now_ns.saturating_sub(s.registration.lease_ns) / 1_000_000_000,
                why = if *died { "its process is gone" } else { "its lease ran out" },
                "Freeing the kernel maps of a sidecar that left this node without saying so."
            );
            self.free(s.index, &s.registration)?;
        }
        if !stale.is_empty() {
            self.update_levels()?;
        }
        let live = slots.iter().filter(|s| s.registration.owner != 0).count() - stale.len();
        Ok((stale.len(), u32::try_from(live).unwrap_or(u32::MAX)))
    }

    fn free(&mut self, slot: u32, r: &abi::Registration) -> Result<(), SensorError> {
        for &id in registry::cgroups_of(r) {
            if self.scopes.get(&id, 0).map(|s| s.0.slot == slot).unwrap_or(false) {
                let _ = self.scopes.remove(&id);
            }
        }
        for (map, &(name, _)) in self.outer.iter().zip(maps::POD_MAPS) {
            clear_outer(map, slot).map_err(io_err("clearing a slot of", &self.dir.join(name)))?;
        }
        self.registry.set(slot, PodRegistration(abi::Registration::default()), 0).map_err(map_err(maps::REGISTRY))
    }

    /// Recompute the depths the programs look at from the live scopes; every
    /// change of the scopes goes through here.
    fn update_levels(&mut self) -> Result<(), SensorError> {
        let mut levels = Vec::new();
        for s in self.slots()? {
            if s.registration.owner == 0 {
                continue;
            }
            for id in registry::cgroups_of(&s.registration) {
                if let Ok(scope) = self.scopes.get(id, 0) {
                    levels.push(scope.0.level);
                }
            }
        }
        let mut state = registry::node_state(levels).ok_or(SensorError::TooManyLevels { max: abi::MAX_LEVELS })?;
        // A new generation: the programs' per-CPU scope caches judge again.
        let before = self.node.get(&0, 0).map(|n| n.0.generation).unwrap_or(0);
        state.generation = before.wrapping_add(1);
        self.node.set(0, PodNodeState(state), 0).map_err(map_err(maps::NODE))
    }

    /// Take a free slot for `me` and put its maps and scopes in it.
    pub fn register(&mut self, me: &mut Member, _lock: &NodeLock) -> Result<(), SensorError> {
        // Our own lock of a slot we lost goes first (we may get that slot again).
        me.liveness = None;
        // A free slot whose lock is free too: a frozen sidecar swept for its
        // lease still holds its slot's lock, and gets a new slot when it wakes.
        let mut taken = None;
        for s in self.slots()?.iter().filter(|s| s.registration.owner == 0) {
            if let Ok(l) = hold_liveness(&self.dir, s.index) {
                taken = Some((s.index, l));
                break;
            }
        }
        let (slot, liveness) = taken.ok_or(SensorError::NodeFull { max: abi::MAX_PODS })?;
        me.liveness = Some(liveness);
        me.slot = slot;
        for ((outer, &(name, _)), inner) in self.outer.iter_mut().zip(maps::POD_MAPS).zip(&me.inner) {
            let mut arr = ArrayOfMaps::<&mut MapData, MapData>::try_from(outer).map_err(map_err(name))?;
            arr.set(slot, inner, 0).map_err(map_err(name))?;
        }
        self.registry.set(slot, PodRegistration(me.registration(boot_ns())), 0).map_err(map_err(maps::REGISTRY))?;
        for &(id, level) in &me.scopes {
            self.scopes.insert(id, me.scope(level), 0).map_err(map_err(maps::SCOPES))?;
        }
        self.update_levels()
    }

    /// Add a watched subtree to `me`. Refused when another live sidecar
    /// watches that very cgroup.
    pub fn add_scope(
        &mut self,
        me: &mut Member,
        id: u64,
        level: u32,
        path: &Path,
        _lock: &NodeLock,
    ) -> Result<(), SensorError> {
        if me.scopes.len() >= abi::MAX_SCOPES as usize {
            return Err(SensorError::TooManyScopes { max: abi::MAX_SCOPES });
        }
        if let Ok(existing) = self.scopes.get(&id, 0) {
            let other = existing.0.slot;
            if other != me.slot {
                let holder = self.registry.get(&other, 0).map(|r| r.0).unwrap_or_default();
                if holder.owner != 0 {
                    return Err(SensorError::AlreadyWatched {
                        path: path.display().to_string(),
                        by: registry::name_of(&holder),
                        pid: holder.host_tgid,
                    });
                }
            }
        }
        me.scopes.push((id, level));
        let result = self
            .scopes
            .insert(id, me.scope(level), 0)
            .map_err(map_err(maps::SCOPES))
            .and_then(|()| {
                self.registry
                    .set(me.slot, PodRegistration(me.registration(boot_ns())), 0)
                    .map_err(map_err(maps::REGISTRY))
            })
            .and_then(|()| self.update_levels());
        if let Err(e) = result {
            me.scopes.pop();
            let _ = self.scopes.remove(&id);
            let _ = self.registry.set(me.slot, PodRegistration(me.registration(boot_ns())), 0);
            let _ = self.update_levels();
            return Err(e);
        }
        Ok(())
    }

    /// Renew `me`'s lease, sweep the stale ones; register again if we were
    /// swept ourselves.
    pub fn renew(&mut self, me: &mut Member, timeout_ns: u64, lock: &NodeLock) -> Result<(Renewal, u32), SensorError> {
        let now = boot_ns();
        let current = self.registry.get(&me.slot, 0).map(|r| r.0).unwrap_or_default();
        let renewal = if current.owner == me.owner {
            self.registry.set(me.slot, PodRegistration(me.registration(now)), 0).map_err(map_err(maps::REGISTRY))?;
            Renewal::Renewed
        } else {
            self.register(me, lock)?;
            Renewal::Lapsed
        };
        let (_, live) = self.sweep(now, timeout_ns, lock)?;
        Ok((renewal, live))
    }

    /// Give `me`'s slot back. Returns true when no sidecar is left: the
    /// caller then unpins the set with [`NodeSet::unpin`].
    /// Those whose lease expired are swept first, so a last sidecar that
    /// outlived a killed one still unpins.
    pub fn leave(&mut self, me: &Member, timeout_ns: u64, lock: &NodeLock) -> Result<bool, SensorError> {
        let current = self.registry.get(&me.slot, 0).map(|r| r.0).unwrap_or_default();
        if current.owner == me.owner {
            self.free(me.slot, &current)?;
            self.update_levels()?;
        }
        let (_, live) = self.sweep(boot_ns(), timeout_ns, lock)?;
        Ok(live == 0)
    }

    /// Remove the set from bpffs: its programs detach when the last handle
    /// on them closes.
    pub fn unpin(&self, _lock: &NodeLock) -> Result<(), SensorError> {
        unpin_dir(&self.dir)
    }

    /// The registrations, for `telltale node` and tests.
    pub fn registrations(&self) -> Result<Vec<Slot>, SensorError> {
        Ok(self.slots()?.into_iter().filter(|s| s.registration.owner != 0).collect())
    }

    /// The set's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
