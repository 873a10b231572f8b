//! Kubernetes pods, pure logic (no I/O): where a pod and its containers sit
//! in a cgroup path, `/proc/<pid>/cgroup` and `/proc/<pid>/environ` texts,
//! the injector's container → image map, the API's container statuses, and
//! which name and image a container cgroup gets.
//!
//! Layouts understood (the kubepods part may sit under any prefix: nested
//! containers, kind, tests):
//! - cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>`,
//!   `/kubepods/besteffort/pod<uid>/crio-<id>`, `/kubepods/pod<uid>/<id>`;
//! - systemd driver: `/kubepods.slice/kubepods-burstable.slice/
//!   kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope` (also
//!   `crio-<id>.scope`, `crio-conmon-<id>.scope`, `docker-<id>.scope`);
//! - containerd's own cgroup without systemd (kind-like nodes):
//!   `/system.slice/containerd.service/kubepods-burstable-pod<uid_>.slice:cri-containerd:<id>`,
//!   where containers of every pod are siblings ("flat").

use std::collections::BTreeMap;

use crate::workload::image::ImageRef;

/// Largest `/proc/<pid>/cgroup`, environ or container-map text looked at.
pub const MAX_TEXT: usize = 256 * 1024;

/// What is wrong with a pod-related input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PodError {
    /// `/proc/<pid>/cgroup` has no cgroup v2 (`0::`) line nor a usable v1 line.
    #[error("no cgroup v2 (`0::`) line in the process's cgroup list")]
    NoUnifiedLine,
    /// A `/proc/<pid>/cgroup` line is not `id:controllers:path`.
    #[error("malformed cgroup line {0:?}")]
    MalformedLine(String),
    /// A pod UID with characters other than hex digits, `-` and `_`.
    #[error("pod UID {0:?} is not a UID (hex digits and dashes)")]
    BadUid(String),
    /// The container map is not a JSON object of strings.
    #[error("container map is not a JSON object {{\"name\": \"image\"}}: {0}")]
    BadMap(String),
    /// An input is larger than [`MAX_TEXT`].
    #[error("{what} is larger than {max} bytes")]
    TooLarge {
        /// Which input.
        what: &'static str,
        /// The limit.
        max: usize,
    },
}

/// Pod quality-of-service class (the cgroup level above the pod).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// Directly under kubepods.
    Guaranteed,
    /// `burstable`.
    Burstable,
    /// `besteffort`.
    BestEffort,
}

/// The container runtime a cgroup name points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `cri-containerd-…` / `cri-containerd:…`.
    Containerd,
    /// `crio-…`.
    Crio,
    /// `docker-…`.
    Docker,
    /// A bare id (cgroupfs driver with containerd or Docker).
    Unknown,
}

/// A container's cgroup directory name, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    /// Runtime.
    pub runtime: Runtime,
    /// Container id (lowercase hex).
    pub id: String,
    /// CRI-O's conmon monitor (`crio-conmon-<id>`): not a container.
    pub conmon: bool,
}

/// A pod found in a cgroup path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPath {
    /// The directory holding the pod's container cgroups, as a cgroup path
    /// (`/…`, relative to the hierarchy root the input was relative to).
    pub dir: String,
    /// Flat layout: container cgroups of this pod are the children of `dir`
    /// whose names start with this (`kubepods-…-pod<uid_>.slice:`); `dir`
    /// is shared with other pods.
    pub member_prefix: Option<String>,
    /// Pod UID, with dashes.
    pub uid: String,
    /// QoS class.
    pub qos: Qos,
    /// The container the path is in (the segment below the pod), if any.
    pub container: Option<ContainerCgroup>,
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A container id: 12 to 64 hex digits (runtimes use 64).
fn container_id(s: &str) -> Option<String> {
    (12..=64).contains(&s.len()).then_some(())?;
    is_hex(s).then(|| s.to_ascii_lowercase())
}

/// A pod UID as Kubernetes writes it (UUID, or 32 hex for static pods).
fn uid(s: &str) -> Option<String> {
    let ok = (8..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_hexdigit());
    ok.then(|| s.to_ascii_lowercase())
}

/// Check a configured pod UID (`kubernetes.pod_uid`); `_` is read as `-`.
pub fn parse_uid(s: &str) -> Result<String, PodError> {
    uid(&s.trim().replace('_', "-")).ok_or_else(|| PodError::BadUid(s.chars().take(80).collect()))
}

/// Parse a container cgroup directory name (also the flat layout's
/// `<pod slice>:<runtime>:<id>`).
pub fn parse_container(name: &str) -> Option<ContainerCgroup> {
    if name.contains(':') {
        return flat_member(name).map(|(.., c)| c);
    }
    let base = name.strip_suffix(".scope").unwrap_or(name);
    let (runtime, rest) = if let Some(r) = base.strip_prefix("cri-containerd-") {
        (Runtime::Containerd, r)
    } else if let Some(r) = base.strip_prefix("crio-") {
        (Runtime::Crio, r)
    } else if let Some(r) = base.strip_prefix("docker-") {
        (Runtime::Docker, r)
    } else if base.len() == name.len() {
        (Runtime::Unknown, base)
    } else {
        return None;
    };
    let (conmon, id) = match rest.strip_prefix("conmon-") {
        Some(id) if runtime == Runtime::Crio => (true, id),
        _ => (false, rest),
    };
    Some(ContainerCgroup { runtime, id: container_id(id)?, conmon })
}

/// `kubepods-burstable-pod<uid_>.slice` (also `kubelet-kubepods-…`).
fn systemd_pod_slice(seg: &str) -> Option<(String, Qos)> {
    let body = seg.strip_suffix(".slice")?;
    let (head, uid_) = body.rsplit_once("-pod")?;
    let qos = if head.ends_with("kubepods-burstable") {
        Qos::Burstable
    } else if head.ends_with("kubepods-besteffort") {
        Qos::BestEffort
    } else if head.ends_with("kubepods") {
        Qos::Guaranteed
    } else {
        return None;
    };
    if uid_.contains('-') {
        return None;
    }
    Some((uid(&uid_.replace('_', "-"))?, qos))
}

/// `kubepods-…-pod<uid_>.slice:cri-containerd:<id>` (flat layout).
fn flat_member(seg: &str) -> Option<(String, String, Qos, ContainerCgroup)> {
    let mut parts = seg.splitn(3, ':');
    let (slice, runtime, id) = (parts.next()?, parts.next()?, parts.next()?);
    let (uid, qos) = systemd_pod_slice(slice)?;
    let runtime = match runtime {
        "cri-containerd" => Runtime::Containerd,
        "crio" => Runtime::Crio,
        "docker" => Runtime::Docker,
        _ => return None,
    };
    let container = ContainerCgroup { runtime, id: container_id(id)?, conmon: false };
    Some((format!("{slice}:"), uid, qos, container))
}

/// Find the (innermost) pod in a cgroup path. Paths with `.` or `..`
/// segments are refused.
pub fn parse_pod_path(path: &str) -> Option<PodPath> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.iter().any(|s| *s == "." || *s == ".." || s.contains('\0')) {
        return None;
    }
    let join = |n: usize| format!("/{}", segs[..n].join("/"));
    let below = |i: usize| segs.get(i + 1).and_then(|s| parse_container(s));
    for i in (0..segs.len()).rev() {
        let seg = segs[i];
        if let Some((prefix, uid, qos, container)) = flat_member(seg) {
            return Some(PodPath { dir: join(i), member_prefix: Some(prefix), uid, qos, container: Some(container) });
        }
        if let Some((uid, qos)) = systemd_pod_slice(seg) {
            return Some(PodPath { dir: join(i + 1), member_prefix: None, uid, qos, container: below(i) });
        }
        // cgroupfs: kubepods[/burstable|/besteffort]/pod<uid>
        if let Some(u) = seg.strip_prefix("pod").and_then(uid) {
            let qos = match i.checked_sub(1).map(|p| segs[p]) {
                Some("kubepods") => Some(Qos::Guaranteed),
                Some("burstable") if i >= 2 && segs[i - 2] == "kubepods" => Some(Qos::Burstable),
                Some("besteffort") if i >= 2 && segs[i - 2] == "kubepods" => Some(Qos::BestEffort),
                _ => None,
            };
            if let Some(qos) = qos {
                return Some(PodPath { dir: join(i + 1), member_prefix: None, uid: u, qos, container: below(i) });
            }
        }
    }
    None
}

/// Whether a cgroup directory name is the pod directory of `uid` (dashes):
/// `pod<uid>` or `…kubepods…-pod<uid_>.slice`.
pub fn is_pod_dir_of(name: &str, uid: &str) -> bool {
    name.strip_prefix("pod").is_some_and(|u| u.eq_ignore_ascii_case(uid))
        || systemd_pod_slice(name).is_some_and(|(u, _)| u == uid)
}

/// Whether a cgroup directory name is a flat-layout container of `uid`.
pub fn is_flat_member_of(name: &str, uid: &str) -> Option<String> {
    flat_member(name).filter(|(_, u, _, _)| u == uid).map(|(prefix, ..)| prefix)
}

/// `/proc/<pid>/cgroup`, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcCgroup {
    /// The cgroup v2 path (the `0::` line).
    pub unified: Option<String>,
    /// cgroup v1 lines (hybrid hosts): (controllers, path).
    pub legacy: Vec<(String, String)>,
}

impl ProcCgroup {
    /// Parse the text. Lines are `hierarchy-id:controllers:path`.
    pub fn parse(text: &str) -> Result<Self, PodError> {
        if text.len() > MAX_TEXT {
            return Err(PodError::TooLarge { what: "cgroup list", max: MAX_TEXT });
        }
        let mut out = Self::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(PodError::MalformedLine(line.chars().take(200).collect()));
            };
            if id.parse::<u32>().is_err() || !path.starts_with('/') {
                return Err(PodError::MalformedLine(line.chars().take(200).collect()));
            }
            if id == "0" && ctrl.is_empty() {
                out.unified = Some(path.to_owned());
            } else {
                out.legacy.push((ctrl.to_owned(), path.to_owned()));
            }
        }
        if out.unified.is_none() && out.legacy.is_empty() {
            return Err(PodError::NoUnifiedLine);
        }
        Ok(out)
    }

    /// The pod of the cgroup v2 path, if it is a kubepods path.
    pub fn unified_pod(&self) -> Option<PodPath> {
        self.unified.as_deref().and_then(parse_pod_path)
    }

    /// The pod named by any line (v2 first, then v1 `name=systemd`, then
    /// the other controllers): on hybrid hosts with the cgroupfs driver only
    /// the v1 paths name the pod; its UID then locates the v2 directory.
    pub fn any_pod(&self) -> Option<PodPath> {
        self.unified_pod().or_else(|| {
            let systemd = self.legacy.iter().filter(|(c, _)| c == "name=systemd");
            let others = self.legacy.iter().filter(|(c, _)| c != "name=systemd");
            systemd.chain(others).find_map(|(_, p)| parse_pod_path(p))
        })
    }
}

/// The environment variable the injector sets on every app and init
/// container: the container's name.
pub const CONTAINER_NAME_ENV: &str = crate::contract::CONTAINER_NAME_ENV;

/// A Kubernetes container name: a DNS-1123 label.
pub fn valid_container_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `TELLTALE_CONTAINER_NAME` from a `/proc/<pid>/environ` (NUL-separated),
/// if present and a valid container name. The first occurrence counts (as
/// with getenv).
pub fn container_name_from_environ(environ: &[u8]) -> Option<String> {
    let key = format!("{CONTAINER_NAME_ENV}=");
    let value = environ.split(|b| *b == 0).find_map(|kv| kv.strip_prefix(key.as_bytes()))?;
    let s = std::str::from_utf8(value).ok()?;
    valid_container_name(s).then(|| s.to_owned())
}

/// Whether a process's `/proc/<pid>/cmdline` is a pod sandbox's pause
/// process (`/pause`, `…/pause`, OpenShift's `/usr/bin/pod`).
pub fn is_pause_cmdline(cmdline: &[u8]) -> bool {
    let (argv0, base) = argv0(cmdline);
    argv0 == b"/usr/bin/pod" || base == b"pause"
}

/// `argv[0]` of a `/proc/<pid>/cmdline` and its last path component.
fn argv0(cmdline: &[u8]) -> (&[u8], &[u8]) {
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    (argv0, argv0.rsplit(|b| *b == b'/').next().unwrap_or_default())
}

/// A container runtime still setting the container up (`runc init`, crun,
/// youki, gVisor's runsc before exec): its environment is the runtime's,
/// not the container's, so the container's name cannot be read yet.
pub fn is_runtime_init_cmdline(cmdline: &[u8]) -> bool {
    let (_, base) = argv0(cmdline);
    [b"runc".as_slice(), b"crun", b"youki", b"runsc", b"runc:[2:INIT]", b"runc:[1:CHILD]"].contains(&base)
}

/// The injector's map (pod annotation `telltale.dev/containers`): container
/// name → image reference, for app and init containers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerMap(pub BTreeMap<String, String>);

impl ContainerMap {
    /// Parse the compact JSON object. Entries with an invalid name or image
    /// are left out and described in the second value.
    pub fn parse(text: &str) -> Result<(Self, Vec<String>), PodError> {
        if text.len() > MAX_TEXT {
            return Err(PodError::TooLarge { what: "container map", max: MAX_TEXT });
        }
        let raw: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(text.trim()).map_err(|e| PodError::BadMap(e.to_string()))?;
        let mut map = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, v) in raw {
            let shown: String = name.chars().take(80).collect();
            let Some(image) = v.as_str() else {
                problems.push(format!("container {shown:?}: image is not a string"));
                continue;
            };
            if !valid_container_name(&name) {
                problems.push(format!("container {shown:?}: not a container name"));
            } else if let Err(e) = ImageRef::parse(image) {
                problems.push(format!("container {shown:?}: {e}"));
            } else {
                map.insert(name, image.to_owned());
            }
        }
        Ok((Self(map), problems))
    }
}

/// A container of the pod according to the Kubernetes API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiContainer {
    /// Container id (without the `containerd://` scheme).
    pub id: String,
    /// Container name.
    pub name: String,
    /// Image reference from the pod spec (the status's when absent).
    pub image: String,
    /// An init container.
    pub init: bool,
}

/// `containerd://<id>`, `cri-o://<id>`, `docker://<id>` → id.
pub fn parse_container_id(s: &str) -> Option<String> {
    let (scheme, id) = s.split_once("://")?;
    matches!(scheme, "containerd" | "cri-o" | "docker").then_some(())?;
    container_id(id)
}

/// What is known about one container cgroup of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The cgroup directory name.
    pub cgroup_name: String,
    /// The name, parsed.
    pub container: Option<ContainerCgroup>,
    /// It holds this sidecar.
    pub is_self: bool,
    /// It has processes.
    pub has_processes: bool,
    /// Every process is a pause process.
    pub pause: bool,
    /// A process is the container runtime still setting the container up.
    pub runtime_init: bool,
    /// `TELLTALE_CONTAINER_NAME` of its processes.
    pub env_name: Option<String>,
}

/// Where a container's identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The Kubernetes API's container statuses.
    Api,
    /// `TELLTALE_CONTAINER_NAME` (+ the injector's map for the image).
    Env,
    /// The only app container of the map and the only container cgroup.
    Single,
    /// Nothing: named after its id, image from `--image` or its cgroup.
    Fallback,
}

/// Why a cgroup under the pod is not watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    /// The sidecar's own container.
    Sidecar,
    /// CRI-O's conmon.
    Conmon,
    /// The pod sandbox (pause).
    Pause,
    /// The API lists it as none of the pod's containers.
    NotInPod,
}

/// The decision about one cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Watch it as this container.
    Watch {
        /// Container id (the runtime's, or the cgroup name).
        id: String,
        /// Container name.
        name: String,
        /// Image reference, if known.
        image: Option<String>,
        /// Where the identity came from.
        source: Source,
    },
    /// Do not watch it.
    Exclude(Excluded),
    /// Not decidable yet (no processes to ask, or the runtime is still
    /// setting the container up): look again later.
    Pending,
}

/// The sources of identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sources<'a> {
    /// The API's containers (None: API not used or not reached).
    pub api: Option<&'a [ApiContainer]>,
    /// The injector's map.
    pub map: Option<&'a ContainerMap>,
}

/// Decide what `o` is, given every cgroup of the pod (`all`, including `o`).
pub fn identify(o: &Observed, all: &[Observed], src: Sources<'_>) -> Decision {
    let id = o.container.as_ref().map_or_else(|| o.cgroup_name.clone(), |c| c.id.clone());
    if o.container.as_ref().is_some_and(|c| c.conmon) {
        return Decision::Exclude(Excluded::Conmon);
    }
    if o.is_self {
        return Decision::Exclude(Excluded::Sidecar);
    }
    if let Some(a) = src.api.and_then(|api| api.iter().find(|a| a.id == id)) {
        return Decision::Watch { id, name: a.name.clone(), image: Some(a.image.clone()), source: Source::Api };
    }
    if o.pause {
        return Decision::Exclude(Excluded::Pause);
    }
    let map_image = |name: &str| {
        let api = src.api.and_then(|api| api.iter().find(|a| a.name == name)).map(|a| a.image.clone());
        api.or_else(|| src.map.and_then(|m| m.0.get(name).cloned()))
    };
    if let Some(name) = &o.env_name {
        return Decision::Watch { id, name: name.clone(), image: map_image(name), source: Source::Env };
    }
    if !o.has_processes || o.runtime_init {
        return Decision::Pending;
    }
    if src.api.is_some_and(|api| !api.is_empty()) {
        return Decision::Exclude(Excluded::NotInPod);
    }
    let candidates =
        all.iter().filter(|x| !x.is_self && !x.pause && !x.container.as_ref().is_some_and(|c| c.conmon)).count();
    if let Some(m) = src.map.filter(|m| m.0.len() == 1 && candidates == 1) {
        if let Some((name, image)) = m.0.iter().next() {
            return Decision::Watch { id, name: name.clone(), image: Some(image.clone()), source: Source::Single };
        }
    }
    let name = id.chars().take(12).collect();
    Decision::Watch { id, name, image: None, source: Source::Fallback }
}

#[cfg(test)]
mod tests;
