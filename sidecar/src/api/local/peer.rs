//! Whether a local caller may administer the daemon: where its process is
//! in the cgroup v2 hierarchy, against the watched cgroup. Pure: the text of
//! `/proc/<pid>/cgroup` and the daemon's [`Placement`] in, a [`Verdict`] out.
//!
//! `/proc/<pid>/cgroup` paths are relative to the root of the *reader's*
//! cgroup namespace (a process outside it shows as `/../…`), so they are
//! resolved against where that root is in the mounted hierarchy
//! ([`Placement::ns_root`]), never taken as mount-relative.

use std::path::{Component, Path, PathBuf};

use telltale_core::workload::pod::ProcCgroup;

/// Where the daemon stands in the cgroup v2 hierarchy (directories under
/// the cgroup2 mount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The cgroup2 mount: no resolved path may climb above it.
    pub mount: PathBuf,
    /// The directory of the root of the daemon's cgroup namespace: what
    /// `/proc/<pid>/cgroup` paths are relative to.
    pub ns_root: PathBuf,
    /// The watched cgroup: no process in it or below it may administer
    /// the daemon.
    pub watched: PathBuf,
    /// The daemon's own cgroup, when it is strictly below `watched` (the
    /// sidecar's container in a pod, which is not watched): callers in it
    /// (`kubectl exec` into the sidecar) are the operator's.
    pub own: Option<PathBuf>,
}

/// Where a local caller's process is, and so whether it may administer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Outside the watched cgroup: it may.
    Outside {
        /// Its cgroup directory.
        cgroup: PathBuf,
    },
    /// In the daemon's own (unwatched) container cgroup: it may.
    OwnContainer {
        /// Its cgroup directory.
        cgroup: PathBuf,
    },
    /// In the watched cgroup or below it: it may not.
    Watched {
        /// Its cgroup directory.
        cgroup: PathBuf,
    },
    /// Where it is is not known: it may not.
    Unknown {
        /// Why.
        why: String,
    },
}

impl Verdict {
    /// Whether the caller may use the API at all.
    pub fn admits(&self) -> bool {
        matches!(self, Verdict::Outside { .. } | Verdict::OwnContainer { .. })
    }
}

/// Whether `path` is `dir` or below it (whole components).
pub fn within(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

/// The directory of a `/proc/<pid>/cgroup` path (`0::` line) relative to
/// `ns_root`, or `None` when it is not absolute or climbs above `mount`.
pub fn resolve(view: &str, ns_root: &Path, mount: &Path) -> Option<PathBuf> {
    let rel = view.strip_prefix('/')?;
    let mut dir = ns_root.to_path_buf();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(name) => dir.push(name),
            Component::ParentDir => {
                if dir == mount || !dir.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    within(&dir, mount).then_some(dir)
}

/// The verdict on a process whose `/proc/<pid>/cgroup` reads `proc_cgroup`.
pub fn judge(proc_cgroup: &str, placement: &Placement) -> Verdict {
    let parsed = match ProcCgroup::parse(proc_cgroup) {
        Ok(p) => p,
        Err(e) => return Verdict::Unknown { why: format!("its cgroup list cannot be read: {e}") },
    };
    let Some(view) = parsed.unified else {
        return Verdict::Unknown { why: "it has no cgroup v2 path".into() };
    };
    let Some(cgroup) = resolve(&view, &placement.ns_root, &placement.mount) else {
        return Verdict::Unknown { why: format!("its cgroup {view:?} is outside the daemon's view of the hierarchy") };
    };
    if placement.own.as_deref().is_some_and(|own| within(&cgroup, own)) {
        Verdict::OwnContainer { cgroup }
    } else if within(&cgroup, &placement.watched) {
        Verdict::Watched { cgroup }
    } else {
        Verdict::Outside { cgroup }
    }
}

/// The root of the daemon's cgroup namespace, from its own cgroup
/// directory `own_dir` and its own `/proc/self/cgroup` path `own_view`
/// (`own_dir` without the trailing components `own_view` names); `None`
/// when `own_view` climbs (`/..`), does not end `own_dir`, or the root would
/// be above `mount`.
pub fn ns_root_of(own_dir: &Path, own_view: &str, mount: &Path) -> Option<PathBuf> {
    let rel = Path::new(own_view.strip_prefix('/')?);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) || !own_dir.ends_with(rel) {
        return None;
    }
    let mut root = own_dir.to_path_buf();
    for _ in rel.components() {
        root.pop();
    }
    within(&root, mount).then_some(root)
}

#[cfg(test)]
mod tests;
