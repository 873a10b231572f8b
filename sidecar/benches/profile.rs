//! Profile judge / insert throughput on a realistic tree, and memory per
//! 10,000 behaviours.
//!
//! `cargo bench -p telltale-sidecar --bench profile`

#![allow(clippy::expect_used, clippy::unwrap_used)] // bench code

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use telltale_core::event::{Access, DnsQuery, DnsQuestion, Endpoint, Event, EventKind, FileAccess, Process, Protocol};
use telltale_core::profile::{Observation, Profile};

/// Counts live heap bytes, to measure the profile's memory.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: p was allocated by System with l.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn process(node: usize) -> Process {
    let depth = 1 + node % 4;
    let mut ancestors: Vec<String> = vec!["/usr/local/bin/entrypoint.sh".into()];
    for d in 1..depth {
        ancestors.push(format!("/usr/bin/tool{}", (node + d) % 13));
    }
    Process {
        pid: 1000 + node as u32,
        ppid: 1,
        uid: 0,
        gid: 0,
        comm: "app".into(),
        path: format!("/usr/bin/worker-{node}"),
        interpreter: None,
        args: vec!["worker".into(), "--serve".into()],
        args_truncated: false,
        ancestors,
    }
}

/// The i-th event of a realistic workload: 50 process nodes; per node
/// mostly files (libs, config, data with ids, /proc/<pid>), some DNS names
/// and endpoints. `i` < 10,000 gives 10,000 distinct behaviours.
fn event(i: usize, pid_salt: usize) -> Event {
    let node = i % 50;
    let j = i / 50;
    let kind = match j % 10 {
        0 => EventKind::Dns {
            dns: DnsQuery {
                questions: vec![DnsQuestion { name: format!("svc-{j}.ns{node}.svc.cluster.local"), qtype: "A".into() }],
                protocol: Protocol::Udp,
                server: "10.96.0.10".parse().expect("ip"),
            },
        },
        1 => EventKind::Connect {
            connect: Endpoint {
                protocol: Protocol::Tcp,
                address: format!("10.0.{}.{}", node, j % 250).parse().expect("ip"),
                port: 8000 + (j % 100) as u16,
            },
        },
        2 => EventKind::File {
            file: FileAccess {
                path: format!("/proc/{}/task/{}/stat", 4000 + pid_salt, j),
                access: vec![Access::Read],
                truncated: false,
            },
        },
        _ => EventKind::File {
            file: FileAccess {
                path: format!("/srv/app/data/shard-{j}/index-{node}.db"),
                access: vec![Access::Read, Access::Write],
                truncated: false,
            },
        },
    };
    Event { time: time::OffsetDateTime::UNIX_EPOCH, cgroup_id: 1, process: process(node), kind, dedup_key: 0 }
}

/// A profile with at least `n` behaviours; returns it and how many events built it.
fn build(n: usize) -> (Profile, usize) {
    let mut p = Profile::new("bench", 0);
    let mut i = 0;
    while p.behaviour_count() < n {
        for o in Observation::from_event(&event(i, 0)) {
            p.add(&o, "v1", 1);
        }
        i += 1;
    }
    (p, i)
}

fn benches(c: &mut Criterion) {
    let before = LIVE.load(Ordering::Relaxed);
    let (profile, built_from) = build(10_000);
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "profile memory: {} behaviours ({} process nodes) use {:.2} MiB ({:.0} bytes per behaviour); target <= 4 MiB",
        profile.behaviour_count(),
        profile.nodes().len(),
        bytes as f64 / (1024.0 * 1024.0),
        bytes as f64 / profile.behaviour_count() as f64
    );

    // Judge: event -> observation (generalization included) -> lookup.
    let events: Vec<Event> = (0..built_from).map(|i| event(i, 7)).collect();
    let mut g = c.benchmark_group("profile");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("judge known events (event -> observation -> lookup)", |b| {
        b.iter(|| {
            let mut known = 0usize;
            for e in &events {
                for o in Observation::from_event(e) {
                    known += usize::from(profile.contains(&o));
                }
            }
            assert_eq!(known, events.len());
            black_box(known)
        })
    });
    let observations: Vec<Observation> = events.iter().flat_map(Observation::from_event).collect();
    g.bench_function("lookup known observations", |b| {
        b.iter(|| black_box(observations.iter().filter(|o| profile.contains(o)).count()))
    });
    g.bench_function("insert new behaviours into an empty profile", |b| {
        b.iter(|| {
            let mut p = Profile::new("bench", 0);
            for o in &observations {
                p.add(o, "v1", 1);
            }
            black_box(p.behaviour_count())
        })
    });
    g.finish();
}

criterion_group!(profile_benches, benches);
criterion_main!(profile_benches);
