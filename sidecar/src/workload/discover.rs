//! Finding the containers to watch (I/O).
//!
//! - Local mode (`--cgroup PATH` or `-- CMD`): the child cgroups of the given
//!   cgroup are the containers (the cgroup itself when it has none), named
//!   and imaged by `[[containers]]` (by cgroup directory name) or `--image`.
//! - Pod mode (`[kubernetes] enabled`): the pod cgroup is found from this
//!   process's own cgroup (`/proc/self/cgroup`) or, when that is hidden (a
//!   cgroup namespace) or not a kubepods path, by searching the cgroup v2
//!   hierarchy for the directory of `pod_uid`. Its container cgroups are
//!   identified by the Kubernetes API, `TELLTALE_CONTAINER_NAME` in their
//!   processes' environment plus the injector's map, or fallbacks
//!   ([`pod::identify`]); the sidecar's own container, the pause container
//!   and CRI-O's conmon are left out.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::{Config, KubernetesConfig};
use crate::workload::cgroup::{cgroup2_mount, Cgroup, CgroupError};
use crate::workload::kubeapi::ApiView;
use telltale_core::workload::image::ImageRef;
use telltale_core::workload::pod::{self, ContainerMap, Decision, Excluded, Observed, PodError, ProcCgroup, Sources};

/// Why the pod cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// A cgroup could not be used.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// `/proc/self/cgroup` could not be read.
    #[error("reading /proc/self/cgroup")]
    ProcSelf(#[source] std::io::Error),
    /// An input is not what it should be.
    #[error("{what}")]
    Pod {
        /// Which input.
        what: String,
        /// Cause.
        #[source]
        source: PodError,
    },
    /// The pod cgroup was not found.
    #[error(
        "pod cgroup not found: this process's cgroup ({own}) is not in a kubepods pod, and {searched}; \
         set TELLTALE_KUBERNETES__POD_UID (downward API metadata.uid) or give --cgroup PATH"
    )]
    PodNotFound {
        /// This process's cgroup v2 path.
        own: String,
        /// What the search did.
        searched: String,
    },
}

/// Largest number of directories looked at when searching for the pod.
const SEARCH_MAX_DIRS: usize = 50_000;
/// How deep below the cgroup2 mount the pod directory may be.
const SEARCH_MAX_DEPTH: usize = 10;
/// Processes of one container looked at to identify it.
const MAX_PROCS: usize = 32;

/// A container to start watching.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its cgroup.
    pub cgroup: Cgroup,
    /// Container id (runtime id, or the cgroup directory name).
    pub id: String,
    /// Container name.
    pub name: String,
    /// Its image.
    pub image: ImageRef,
}

/// What to watch, and how containers get their identity.
#[derive(Debug)]
pub struct Workload {
    /// The watched cgroup (the pod; the shared parent in the flat layout).
    pub root: Cgroup,
    /// Pod name (empty in local mode).
    pub pod_name: String,
    /// Pod namespace (empty in local mode).
    pub namespace: String,
    pod: Option<PodState>,
}

#[derive(Debug)]
struct PodState {
    member_prefix: Option<String>,
    containers_file: Option<PathBuf>,
    map_text: Option<String>,
    map: Option<ContainerMap>,
    api: Option<ApiView>,
    /// Cgroups left out for good (by cgroup id), logged once.
    excluded: HashMap<u64, Excluded>,
    /// Cgroups whose "not one of the pod's containers" was logged.
    not_in_pod: HashSet<u64>,
    /// Cgroups the API was asked about again (once each).
    asked: HashSet<u64>,
}

fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?.take(pod::MAX_TEXT as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

fn dir_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Every cgroup id in `dir`'s subtree, mapped to `to`.
fn alias_subtree(dir: &Path, to: u64, aliases: &mut HashMap<u64, u64>) {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        if let Ok(meta) = std::fs::metadata(&d) {
            aliases.insert(meta.ino(), to);
        }
        stack.extend(subdirs(&d));
    }
}

/// The containers of a pod cgroup in local mode: its child cgroups, or the
/// pod cgroup itself when it has none. Maps every cgroup id in each
/// container's subtree to the container's cgroup id.
fn discover_local(pod: &Cgroup) -> (Vec<Cgroup>, HashMap<u64, u64>) {
    let children: Vec<Cgroup> = subdirs(&pod.path).iter().filter_map(|p| Cgroup::open(p).ok()).collect();
    let containers = if children.is_empty() { vec![pod.clone()] } else { children };
    let mut aliases = HashMap::new();
    for c in &containers {
        alias_subtree(&c.path, c.id, &mut aliases);
    }
    (containers, aliases)
}

/// The image for a container without a known one: `--image`, else a name
/// made of its cgroup directory (with a warning).
fn fallback_image(cfg: &Config, dir: &str) -> ImageRef {
    cfg.image.as_deref().and_then(|r| ImageRef::parse(r).ok()).unwrap_or_else(|| {
        tracing::warn!(cgroup = %dir, "No image configured for this container: using its cgroup name.");
        let short: String =
            dir.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        ImageRef { repository: short.clone(), short_name: short, tag: "latest".into() }
    })
}

/// The image of a container cgroup in local mode, from `[[containers]]` or `--image`.
fn image_of(cfg: &Config, cgroup: &Cgroup) -> (String, ImageRef) {
    let dir = dir_name(&cgroup.path);
    let mapped = cfg.containers.iter().find(|c| c.cgroup == dir);
    let name = mapped.and_then(|c| c.name.clone()).unwrap_or_else(|| dir.clone());
    // Validated at start-up; a container without a mapping is named after its cgroup.
    let image = match mapped.and_then(|c| ImageRef::parse(&c.image).ok()) {
        Some(i) => i,
        None => fallback_image(cfg, &dir),
    };
    (name, image)
}

/// Find the pod cgroup of this process (see the module docs). Returns the
/// directory to watch and, in the flat layout, the prefix of the pod's
/// container cgroup names.
pub fn locate_pod(k: &KubernetesConfig) -> Result<(Cgroup, Option<String>), DiscoverError> {
    let mount = cgroup2_mount()?;
    let text = read_capped(Path::new("/proc/self/cgroup")).map_err(DiscoverError::ProcSelf)?;
    let own = ProcCgroup::parse(&String::from_utf8_lossy(&text))
        .map_err(|source| DiscoverError::Pod { what: "parsing /proc/self/cgroup".into(), source })?;
    let configured = k
        .pod_uid
        .as_deref()
        .map(pod::parse_uid)
        .transpose()
        .map_err(|source| DiscoverError::Pod { what: "key `kubernetes.pod_uid`".into(), source })?;
    if let Some(p) = own.unified_pod() {
        let dir = mount.join(p.dir.trim_start_matches('/'));
        match &configured {
            Some(uid) if *uid != p.uid => tracing::warn!(
                own = %p.uid, configured = %uid,
                "This process's cgroup names another pod than kubernetes.pod_uid: searching for the configured one."
            ),
            _ if dir.is_dir() => return Ok((Cgroup::open_in(&mount, &dir)?, p.member_prefix)),
            _ => {}
        }
    }
    let own_path = own.unified.clone().unwrap_or_else(|| "(no cgroup v2 line)".into());
    let Some(uid) = configured.or_else(|| own.any_pod().map(|p| p.uid)) else {
        return Err(DiscoverError::PodNotFound { own: own_path, searched: "no pod UID is configured".into() });
    };
    match search_pod(&mount, &uid) {
        Some((dir, prefix)) => {
            tracing::info!(pod_uid = %uid, cgroup = %dir.display(), "Pod cgroup found by its UID.");
            Ok((Cgroup::open_in(&mount, &dir)?, prefix))
        }
        None => Err(DiscoverError::PodNotFound {
            own: own_path,
            searched: format!("no directory of pod UID {uid} within {SEARCH_MAX_DEPTH} levels of {}", mount.display()),
        }),
    }
}

/// Breadth-first search below `mount` for the pod directory of `uid` (or,
/// in the flat layout, a directory holding its container cgroups).
fn search_pod(mount: &Path, uid: &str) -> Option<(PathBuf, Option<String>)> {
    let mut level = vec![mount.to_owned()];
    let mut seen = 0;
    for _ in 0..SEARCH_MAX_DEPTH {
        let mut next = Vec::new();
        for dir in &level {
            for child in subdirs(dir) {
                seen += 1;
                let name = dir_name(&child);
                if pod::is_pod_dir_of(&name, uid) {
                    return Some((child, None));
                }
                if let Some(prefix) = pod::is_flat_member_of(&name, uid) {
                    return Some((dir.clone(), Some(prefix)));
                }
                if seen >= SEARCH_MAX_DIRS {
                    return None;
                }
                next.push(child);
            }
        }
        level = next;
    }
    None
}

/// Process ids in a cgroup subtree (at most `MAX_PROCS`).
fn subtree_pids(dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if pids.len() >= MAX_PROCS {
            pids.truncate(MAX_PROCS);
            break;
        }
        stack.extend(subdirs(&d));
    }
    pids
}

/// Look at a container cgroup's processes.
fn observe(dir: &Path) -> Observed {
    let name = dir_name(dir);
    let pids = subtree_pids(dir);
    let me = std::process::id();
    let mut env_name = None;
    let mut all_pause = true;
    let mut runtime_init = false;
    for pid in &pids {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        if env_name.is_none() {
            env_name = read_capped(&proc_dir.join("environ")).ok().and_then(|e| pod::container_name_from_environ(&e));
        }
        // A process gone meanwhile says nothing either way.
        if let Ok(cmdline) = read_capped(&proc_dir.join("cmdline")) {
            all_pause &= pod::is_pause_cmdline(&cmdline);
            runtime_init |= pod::is_runtime_init_cmdline(&cmdline);
        }
    }
    Observed {
        container: pod::parse_container(&name),
        cgroup_name: name,
        is_self: pids.contains(&me),
        has_processes: !pids.is_empty(),
        pause: !pids.is_empty() && all_pause,
        runtime_init,
        env_name,
    }
}

impl Workload {
    /// Local mode: watch `root`; its children are the containers.
    pub fn local(root: Cgroup) -> Self {
        Self { root, pod_name: String::new(), namespace: String::new(), pod: None }
    }

    /// Pod mode: the pod cgroup from [`locate_pod`], the API view if any.
    pub fn pod(root: Cgroup, member_prefix: Option<String>, k: &KubernetesConfig, api: Option<ApiView>) -> Self {
        Self {
            root,
            pod_name: k.pod_name.clone().unwrap_or_default(),
            namespace: k.namespace.clone().unwrap_or_default(),
            pod: Some(PodState {
                member_prefix,
                containers_file: k.containers_file.clone(),
                map_text: None,
                map: None,
                api,
                excluded: HashMap::new(),
                not_in_pod: HashSet::new(),
                asked: HashSet::new(),
            }),
        }
    }

    /// The containers not `known` yet, with their identity, and every
    /// cgroup id of the watched subtree that belongs to a container (or to
    /// something deliberately not watched) mapped to that container's
    /// cgroup id. Cgroups still to be identified are left out of the map,
    /// so that their first event asks again.
    pub fn scan(&mut self, cfg: &Config, known: &dyn Fn(u64) -> bool) -> (Vec<Found>, HashMap<u64, u64>) {
        let Some(state) = &mut self.pod else {
            let (containers, aliases) = discover_local(&self.root);
            let found = containers
                .into_iter()
                .filter(|cg| !known(cg.id))
                .map(|cg| {
                    let (name, image) = image_of(cfg, &cg);
                    Found { id: dir_name(&cg.path), name, image, cgroup: cg }
                })
                .collect();
            return (found, aliases);
        };
        let mut aliases = HashMap::new();
        // The pod directory itself (or the flat layout's shared parent) and
        // other pods' cgroups there: known, never attributed.
        aliases.insert(self.root.id, self.root.id);
        let mut candidates = Vec::new();
        for dir in subdirs(&self.root.path) {
            let Ok(meta) = std::fs::metadata(&dir) else { continue };
            let name = dir_name(&dir);
            if state.member_prefix.as_deref().is_some_and(|p| !name.starts_with(p)) {
                aliases.insert(meta.ino(), self.root.id);
                continue;
            }
            candidates.push((dir, meta.ino()));
        }
        let settled = |id: u64, state: &PodState| known(id) || state.excluded.contains_key(&id);
        // Processes are looked at only when something is new.
        let observed: Vec<Observed> = if candidates.iter().all(|(_, id)| settled(*id, state)) {
            Vec::new()
        } else {
            state.reload_map();
            candidates.iter().map(|(d, _)| observe(d)).collect()
        };
        let api = state.api.as_ref().and_then(ApiView::containers);
        let mut found = Vec::new();
        for (i, (dir, ino)) in candidates.iter().enumerate() {
            let o = match observed.get(i) {
                Some(o) if !settled(*ino, state) => o,
                _ => {
                    alias_subtree(dir, *ino, &mut aliases);
                    continue;
                }
            };
            if let (Some(view), Some(c)) = (&state.api, &o.container) {
                // A container the last read did not list: read again, once.
                if !api.as_ref().is_some_and(|a| a.iter().any(|x| x.id == c.id)) && state.asked.insert(*ino) {
                    view.refresh();
                }
            }
            let src = Sources { api: api.as_deref().map(Vec::as_slice), map: state.map.as_ref() };
            match pod::identify(o, &observed, src) {
                Decision::Pending => {}
                Decision::Exclude(Excluded::NotInPod) => {
                    if state.not_in_pod.insert(*ino) {
                        tracing::info!(cgroup = %o.cgroup_name, "Not watched: the Kubernetes API lists it as none of the pod's containers.");
                    }
                    alias_subtree(dir, *ino, &mut aliases);
                }
                Decision::Exclude(why) => {
                    tracing::info!(cgroup = %o.cgroup_name, reason = ?why, "Not watched.");
                    state.excluded.insert(*ino, why);
                    alias_subtree(dir, *ino, &mut aliases);
                }
                Decision::Watch { id, name, image, source } => {
                    let Ok(cgroup) = Cgroup::open(dir) else { continue };
                    let image = match image.as_deref().map(ImageRef::parse) {
                        Some(Ok(i)) => i,
                        _ => {
                            tracing::warn!(
                                container = %name, cgroup = %o.cgroup_name, ?source,
                                "Container not identified by the Kubernetes API nor the injector's map."
                            );
                            fallback_image(cfg, &o.cgroup_name)
                        }
                    };
                    tracing::debug!(container = %name, ?source, "Container identified.");
                    alias_subtree(dir, *ino, &mut aliases);
                    found.push(Found { cgroup, id, name, image });
                }
            }
        }
        let live: HashSet<u64> = candidates.iter().map(|(_, i)| *i).collect();
        state.excluded.retain(|id, _| live.contains(id));
        state.not_in_pod.retain(|id| live.contains(id));
        state.asked.retain(|id| live.contains(id));
        (found, aliases)
    }
}

impl PodState {
    /// Read the injector's map again (the downward API updates the file).
    fn reload_map(&mut self) {
        let Some(path) = &self.containers_file else { return };
        let text = match read_capped(path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                if self.map_text.as_deref() != Some("") {
                    tracing::warn!(file = %path.display(), error = %e, "Cannot read the container map.");
                    self.map_text = Some(String::new());
                }
                return;
            }
        };
        if self.map_text.as_deref() == Some(text.as_str()) {
            return;
        }
        match ContainerMap::parse(&text) {
            Ok((map, problems)) => {
                for p in problems {
                    tracing::warn!(file = %path.display(), problem = %p, "Container map entry ignored.");
                }
                self.map = Some(map);
            }
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "Container map ignored."),
        }
        self.map_text = Some(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "5f8e7b2c-1a3d-4e6f-9b8a-7c6d5e4f3a2b";

    fn tree(tag: &str, dirs: &[String]) -> PathBuf {
        let root = std::env::temp_dir().join(format!("telltale-search-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in dirs {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        root
    }

    #[test]
    fn search_finds_pod_directories_by_uid() {
        let uid_ = UID.replace('-', "_");
        let root = tree(
            "systemd",
            &[
                "system.slice/containerd.service".into(),
                format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice", "1".repeat(32)),
                format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{}.scope", "a".repeat(64)),
            ],
        );
        let (dir, prefix) = search_pod(&root, UID).unwrap();
        assert!(dir.ends_with(format!("kubepods-burstable-pod{uid_}.slice")), "{}", dir.display());
        assert_eq!(prefix, None);
        assert_eq!(search_pod(&root, "00000000-0000-0000-0000-000000000000"), None);
        std::fs::remove_dir_all(&root).unwrap();

        let root = tree("cgroupfs", &[format!("prefix/kubepods/burstable/pod{UID}/{}", "b".repeat(64))]);
        assert!(search_pod(&root, UID).unwrap().0.ends_with(format!("pod{UID}")));
        std::fs::remove_dir_all(&root).unwrap();

        let flat = format!("kubepods-besteffort-pod{uid_}.slice:cri-containerd:{}", "c".repeat(64));
        let root = tree("flat", &[format!("system.slice/containerd.service/{flat}")]);
        let (dir, prefix) = search_pod(&root, UID).unwrap();
        assert!(dir.ends_with("system.slice/containerd.service"));
        assert_eq!(prefix, Some(format!("kubepods-besteffort-pod{uid_}.slice:")));
        std::fs::remove_dir_all(&root).unwrap();

        // Deeper than the bound: not found.
        let deep: String = (0..SEARCH_MAX_DEPTH).map(|i| format!("d{i}/")).collect();
        let root = tree("deep", &[format!("{deep}pod{UID}")]);
        assert_eq!(search_pod(&root, UID), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
