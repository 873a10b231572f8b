//! Typed events built by hand: what a replayed event source feeds the
//! daemon instead of the kernel. Each event's dedup key is derived from
//! what it did, as the kernel derives it: the same behaviour, the same key.

use super::{Access, Event, EventKind, FileAccess, Mechanism, Process};

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

/// FNV-1a over the parts: a stable, nonzero stand-in for the kernel's key.
fn key(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h.max(1)
}

/// A read of `path` by `process` in cgroup `cgroup_id`.
pub fn read(cgroup_id: u64, process: Process, path: &str) -> Event {
    let mut lineage: Vec<&str> = process.ancestors.iter().map(String::as_str).collect();
    lineage.push(&process.path);
    lineage.push(path);
    let dedup_key = key(&lineage);
    Event {
        time: time::OffsetDateTime::UNIX_EPOCH,
        cgroup_id,
        process,
        kind: EventKind::File { file: FileAccess { path: path.into(), access: vec![Access::Read], truncated: false } },
        dedup_key,
    }
}

/// `process` executed in cgroup `cgroup_id`.
pub fn exec(cgroup_id: u64, process: Process) -> Event {
    let mut lineage: Vec<&str> = process.ancestors.iter().map(String::as_str).collect();
    lineage.push(&process.path);
    let dedup_key = key(&lineage);
    Event { time: time::OffsetDateTime::UNIX_EPOCH, cgroup_id, process, kind: EventKind::Exec, dedup_key }
}

/// `process` in cgroup `cgroup_id` used `mechanism` (io_uring).
pub fn mechanism(cgroup_id: u64, process: Process, mechanism: Mechanism) -> Event {
    let mut lineage: Vec<&str> = process.ancestors.iter().map(String::as_str).collect();
    lineage.push(&process.path);
    lineage.push(mechanism.name());
    let dedup_key = key(&lineage);
    Event {
        time: time::OffsetDateTime::UNIX_EPOCH,
        cgroup_id,
        process,
        kind: EventKind::Mechanism { mechanism },
        dedup_key,
    }
}
