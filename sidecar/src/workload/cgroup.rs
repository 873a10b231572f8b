//! cgroup v2 discovery and management: find the unified hierarchy (at
//! `/sys/fs/cgroup` or, on hybrid hosts, `/sys/fs/cgroup/unified`), resolve
//! a cgroup directory to its id and level, create and remove child cgroups.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Errors of cgroup handling.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup2 filesystem is mounted.
    #[error(
        "no cgroup v2 hierarchy is mounted (looked for a cgroup2 mount in /proc/self/mountinfo); \
         mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified` or boot with systemd.unified_cgroup_hierarchy=1"
    )]
    NoCgroup2,
    /// mountinfo could not be read.
    #[error("reading /proc/self/mountinfo")]
    Mountinfo(#[source] std::io::Error),
    /// The given path is not a directory of the cgroup v2 hierarchy.
    #[error("{path} is not a cgroup v2 directory (the cgroup v2 hierarchy is mounted at {mount})")]
    NotInHierarchy {
        /// The path given.
        path: PathBuf,
        /// Where cgroup2 is mounted.
        mount: PathBuf,
    },
    /// The cgroup does not exist.
    #[error("cgroup {path} does not exist")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// A filesystem operation on a cgroup failed.
    #[error("{what} {path}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Processes did not leave a cgroup that is being removed.
    #[error("cgroup {path} still has processes after {waited:?}")]
    Busy {
        /// The cgroup.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io { what, path: path.to_owned(), source }
}

/// The mount point of the cgroup v2 hierarchy, from a mountinfo text.
pub fn cgroup2_mount_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // id parent major:minor root mountpoint opts [optional...] - fstype source superopts
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        let mountpoint = left.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_mountinfo(mountpoint)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup v2 mount point of this machine.
pub fn cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(CgroupError::Mountinfo)?;
    cgroup2_mount_in(&text).ok_or(CgroupError::NoCgroup2)
}

/// A cgroup v2 directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    /// Absolute path of the directory.
    pub path: PathBuf,
    /// cgroup id: the directory's inode number.
    pub id: u64,
    /// Depth below the hierarchy root (the root is 0).
    pub level: u32,
}

impl Cgroup {
    /// Resolve an existing cgroup directory. Relative paths are taken
    /// relative to the cgroup v2 mount (`kubepods/pod1` works).
    pub fn open(path: &Path) -> Result<Self, CgroupError> {
        let mount = cgroup2_mount()?;
        Self::open_in(&mount, path)
    }

    /// [`Cgroup::open`] with a known mount point.
    pub fn open_in(mount: &Path, path: &Path) -> Result<Self, CgroupError> {
        let joined = if path.is_absolute() { path.to_owned() } else { mount.join(path) };
        let canonical = match joined.canonicalize() {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CgroupError::NotFound { path: path.to_owned() })
            }
            Err(e) => return Err(io("resolving", path)(e)),
        };
        let rel = canonical
            .strip_prefix(mount)
            .map_err(|_| CgroupError::NotInHierarchy { path: path.to_owned(), mount: mount.to_owned() })?;
        if !canonical.join("cgroup.procs").exists() {
            return Err(CgroupError::NotInHierarchy { path: path.to_owned(), mount: mount.to_owned() });
        }
        let meta = std::fs::metadata(&canonical).map_err(io("reading", &canonical))?;
        let level = u32::try_from(rel.components().count()).unwrap_or(u32::MAX);
        Ok(Self { path: canonical, id: meta.ino(), level })
    }

    /// Create a new child cgroup `name` under `self`.
    pub fn create_child(&self, name: &str) -> Result<Cgroup, CgroupError> {
        let path = self.path.join(name);
        std::fs::create_dir(&path).map_err(io("creating cgroup", &path))?;
        let meta = std::fs::metadata(&path).map_err(io("reading", &path))?;
        Ok(Cgroup { path, id: meta.ino(), level: self.level + 1 })
    }

    /// The root of the hierarchy.
    pub fn root() -> Result<Cgroup, CgroupError> {
        let mount = cgroup2_mount()?;
        let meta = std::fs::metadata(&mount).map_err(io("reading", &mount))?;
        Ok(Cgroup { path: mount, id: meta.ino(), level: 0 })
    }

    /// Open `cgroup.procs` for writing: writing "0" to it moves the writer.
    pub fn procs_file(&self) -> Result<File, CgroupError> {
        let p = self.path.join("cgroup.procs");
        std::fs::OpenOptions::new().write(true).open(&p).map_err(io("opening", &p))
    }

    /// Move process `pid` into this cgroup.
    pub fn add_process(&self, pid: u32) -> Result<(), CgroupError> {
        let p = self.path.join("cgroup.procs");
        std::fs::write(&p, pid.to_string()).map_err(io("writing", &p))
    }

    /// Process ids currently in this cgroup (not its children).
    pub fn processes(&self) -> Result<Vec<u32>, CgroupError> {
        let p = self.path.join("cgroup.procs");
        let text = std::fs::read_to_string(&p).map_err(io("reading", &p))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Kill every process in the subtree (cgroup.kill), wait for them to
    /// leave, and remove the directory (children first).
    pub fn kill_and_remove(&self, timeout: Duration) -> Result<(), CgroupError> {
        let kill = self.path.join("cgroup.kill");
        if kill.exists() {
            std::fs::write(&kill, "1").map_err(io("writing", &kill))?;
        } else {
            for pid in self.processes()? {
                if let Ok(pid) = i32::try_from(pid) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        self.remove_tree(Instant::now() + timeout, timeout)
    }

    fn remove_tree(&self, deadline: Instant, timeout: Duration) -> Result<(), CgroupError> {
        let entries = std::fs::read_dir(&self.path).map_err(io("listing", &self.path))?;
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                let child = Cgroup { path: entry.path(), id: 0, level: self.level + 1 };
                child.remove_tree(deadline, timeout)?;
            }
        }
        loop {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    return Err(CgroupError::Busy { path: self.path.clone(), waited: timeout })
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io("removing cgroup", &self.path)(e)),
            }
        }
    }
}

/// A cgroup created by us and removed (with its processes) when dropped.
#[derive(Debug)]
pub struct OwnedCgroup {
    cgroup: Cgroup,
    removed: bool,
}

impl OwnedCgroup {
    /// Create a fresh child of the hierarchy root named `prefix-<pid>-<n>`.
    /// Cgroups of the same prefix left by a process that no longer runs
    /// (killed with -9 before it could remove them) are removed first,
    /// with whatever still runs in them.
    pub fn create(prefix: &str) -> Result<Self, CgroupError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let root = Cgroup::root()?;
        remove_stale(&root, prefix);
        let name = format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        Ok(Self { cgroup: root.create_child(&name)?, removed: false })
    }

    /// The cgroup.
    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }

    /// Kill what is left inside and remove it now, reporting errors.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.removed = true;
        self.cgroup.kill_and_remove(Duration::from_secs(5))
    }
}

/// The creator's pid if `name` is `prefix-<pid>-<n>`.
fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let (pid, n) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(n)).then(|| pid.parse().ok()).flatten()
}

/// Remove `prefix-<pid>-<n>` children of `root` whose creator is gone.
fn remove_stale(root: &Cgroup, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(&root.path) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name, prefix) else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let stale = Cgroup { path: entry.path(), id: 0, level: root.level + 1 };
        match stale.kill_and_remove(Duration::from_secs(5)) {
            Ok(()) => {
                tracing::info!(cgroup = %stale.path.display(), pid, "Removed a cgroup left by a process that is gone.")
            }
            Err(e) => tracing::warn!(cgroup = %stale.path.display(), error = %e, "Could not remove a stale cgroup."),
        }
    }
}

impl Drop for OwnedCgroup {
    fn drop(&mut self) {
        if !self.removed {
            if let Err(e) = self.cgroup.kill_and_remove(Duration::from_secs(5)) {
                tracing::warn!(cgroup = %self.cgroup.path.display(), error = %e, "Could not remove cgroup.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pids_of_our_names_only() {
        assert_eq!(owner_pid("telltale-run-4242-0", "telltale-run"), Some(4242));
        assert_eq!(owner_pid("telltale-run-4242-17", "telltale-run"), Some(4242));
        for other in [
            "telltale-run",
            "telltale-run-4242",
            "telltale-run-x-0",
            "telltale-runner-1-0",
            "kubepods",
            "telltale-run-1-0-0",
            "telltale-run--0",
        ] {
            assert_eq!(owner_pid(other, "telltale-run"), None, "{other}");
        }
    }

    const HYBRID: &str = "\
35 25 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
37 35 0:32 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
";
    const UNIFIED: &str = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
27 24 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn finds_cgroup2_in_hybrid_and_unified_layouts() {
        assert_eq!(cgroup2_mount_in(HYBRID), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(cgroup2_mount_in(UNIFIED), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(cgroup2_mount_in("35 25 0:30 / /x rw - tmpfs tmpfs rw\n"), None);
        assert_eq!(cgroup2_mount_in(""), None);
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        let line = "1 2 0:1 / /mnt/with\\040space rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount_in(line), Some(PathBuf::from("/mnt/with space")));
        assert_eq!(unescape_mountinfo("a\\134b"), "a\\b");
        assert_eq!(unescape_mountinfo("trailing\\04"), "trailing\\04");
    }
}
