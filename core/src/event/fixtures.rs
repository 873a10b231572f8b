//! Events for unit tests.

use super::{Access, Event, EventKind, FileAccess, Process};

/// A process running `path` under `ancestors`.
pub fn process(path: &str, ancestors: &[&str]) -> Process {
    Process {
        pid: 10,
        ppid: 1,
        uid: 0,
        gid: 0,
        comm: "app".into(),
        path: path.into(),
        interpreter: None,
        args: vec!["app".into()],
        args_truncated: false,
        ancestors: ancestors.iter().map(|a| (*a).to_owned()).collect(),
    }
}

/// A read of `path` by `process` in cgroup `cgroup_id`.
pub fn read(cgroup_id: u64, process: Process, path: &str) -> Event {
    Event {
        time: time::OffsetDateTime::UNIX_EPOCH,
        cgroup_id,
        process,
        kind: EventKind::File { file: FileAccess { path: path.into(), access: vec![Access::Read], truncated: false } },
        dedup_key: 7,
    }
}
