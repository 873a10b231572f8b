//! Many pods on one node: one set of kernel programs, pinned in bpffs and
//! shared by every sidecar, each pod with its own maps. Real sensors, real
//! `telltale trace` processes; each test uses a node directory of its own so
//! the tests of this file do not share a set.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aya::maps::{Array, ArrayOfMaps, Map, MapData};
use telltale_core::event::EventKind;
use telltale_ebpf::{abi, maps};
use telltale_integration::{kernel_tests_enabled, telltale_bin, workload_bin, TempDir, Traced};
use telltale_sidecar::sensor::node;
use telltale_sidecar::sensor::SensorOptions;
use telltale_sidecar::trace::spawn_in;
use telltale_sidecar::workload::cgroup::OwnedCgroup;

/// A node directory of its own on bpffs, removed (with what is left in it) on drop.
struct NodeDir(PathBuf);

impl NodeDir {
    fn new(name: &str) -> Self {
        let dir = PathBuf::from(format!("/sys/fs/bpf/telltale-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    /// The set directories in it.
    fn sets(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.0) else { return Vec::new() };
        entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
    }

    fn set_dir(&self) -> PathBuf {
        self.0.join(node::set_name())
    }

    /// The live registrations: (slot, registration).
    fn registrations(&self) -> Vec<(u32, abi::Registration)> {
        let data = MapData::from_pin(self.set_dir().join(maps::REGISTRY)).expect("registry pin");
        let map = Map::Array(data);
        let arr: Array<&MapData, Reg> = Array::try_from(&map).expect("registry");
        (0..abi::MAX_PODS).filter_map(|i| arr.get(&i, 0).ok().map(|r| (i, r.0))).filter(|(_, r)| r.owner != 0).collect()
    }

    /// Ids of the maps a slot holds (ring buffer, dedup, ...).
    fn slot_map_ids(&self, slot: u32) -> Vec<u32> {
        maps::POD_MAPS
            .iter()
            .filter_map(|&(outer, _)| {
                let data = MapData::from_pin(self.set_dir().join(outer)).expect("outer pin");
                let map = Map::ArrayOfMaps(data);
                let arr: ArrayOfMaps<&MapData, MapData> = ArrayOfMaps::try_from(&map).expect("outer");
                arr.get(&slot, 0).ok().map(|m| m.info().expect("map info").id())
            })
            .collect()
    }

    fn options(&self) -> SensorOptions {
        SensorOptions { node_root: self.0.clone(), ..SensorOptions::default() }
    }
}

impl Drop for NodeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[repr(transparent)]
#[derive(Clone, Copy)]
struct Reg(abi::Registration);
// SAFETY: plain old data, checked against the C header.
unsafe impl aya::Pod for Reg {}

/// A `telltale trace --json --cgroup` process: a sidecar of its own.
struct Sidecar {
    child: Child,
    out: PathBuf,
}

impl Sidecar {
    fn start(node_dir: &NodeDir, cgroup: &Path, out: PathBuf) -> Self {
        Self::start_with_lease(node_dir, cgroup, out, "5s")
    }

    fn start_with_lease(node_dir: &NodeDir, cgroup: &Path, out: PathBuf, lease: &str) -> Self {
        let child = Command::new(telltale_bin())
            .args(["trace", "--json", "--lease-timeout", lease, "--node-dir"])
            .arg(&node_dir.0)
            .arg("--cgroup")
            .arg(cgroup)
            .stdout(std::fs::File::create(&out).expect("output file"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("telltale trace");
        Self { child, out }
    }

    /// Wait for its "watching" line.
    fn ready(&mut self) {
        let stderr = self.child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        loop {
            let line = lines.next().expect("telltale trace exited before watching").expect("stderr");
            if line.contains("watching") {
                break;
            }
        }
        // Keep draining stderr so the process never blocks on it.
        std::thread::spawn(move || for _ in lines {});
    }

    /// The file paths it printed so far.
    fn files(&self) -> BTreeSet<String> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == "file")
            .filter_map(|v| v["file"]["path"].as_str().map(str::to_owned))
            .collect()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill {sig}");
    }

    fn stop(mut self) {
        self.signal(libc::SIGINT);
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "telltale trace exited with {status}");
    }
}

/// A path in `tmp`, as a string.
fn path(tmp: &TempDir, name: &str) -> String {
    tmp.join(name).display().to_string()
}

/// Run the workload helper in `cgroup` and wait for it.
async fn run_in(cgroup: &OwnedCgroup, args: &[&str]) {
    let mut cmd = tokio::process::Command::new(workload_bin());
    cmd.args(args);
    let status = spawn_in(cgroup.cgroup(), cmd).expect("spawn").wait().await.expect("wait");
    assert!(status.success(), "workload {args:?}: {status}");
}

/// Wait until `f` holds (up to `limit`).
async fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sidecars_see_their_own_pods_a_killed_one_is_freed_and_the_last_one_out_unpins() {
    if !kernel_tests_enabled("three_sidecars_see_their_own_pods") {
        return;
    }
    let node_dir = NodeDir::new("three");
    let tmp = TempDir::new("node-three");
    let pods: Vec<OwnedCgroup> = (0..3).map(|_| OwnedCgroup::create("telltale-pod").expect("cgroup")).collect();
    // A lease long enough that only the liveness lock can explain a quick sweep.
    let mut sidecars: Vec<Sidecar> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| Sidecar::start_with_lease(&node_dir, &pod.cgroup().path, tmp.join(&format!("out{i}")), "60s"))
        .collect();
    for s in &mut sidecars {
        s.ready();
    }
    assert_eq!(node_dir.sets(), vec![node::set_name()], "one set for the node");
    let regs = node_dir.registrations();
    assert_eq!(regs.len(), 3, "{regs:?}");

    // Each pod's sidecar sees exactly its own pod's files.
    let files: Vec<String> = (0..3).map(|i| path(&tmp, &format!("pod{i}"))).collect();
    for f in &files {
        std::fs::write(f, b"x").expect("write");
    }
    for (pod, f) in pods.iter().zip(&files) {
        run_in(pod, &["open", f]).await;
    }
    for (s, f) in sidecars.iter().zip(&files) {
        eventually(Duration::from_secs(10), "each sidecar prints its pod's file", || s.files().contains(f)).await;
    }
    for (i, s) in sidecars.iter().enumerate() {
        let mine: BTreeSet<String> = s.files().into_iter().filter(|p| p.starts_with(&tmp.str())).collect();
        assert_eq!(mine, BTreeSet::from([files[i].clone()]), "sidecar {i} saw another pod's files");
    }

    // kill -9 of the second: the others find its liveness lock released at
    // their next renewal (every 2 s), long before its 60 s lease runs out.
    let victim = sidecars.remove(1);
    let (slot, _) = *node_dir
        .registrations()
        .iter()
        .find(|(_, r)| r.host_tgid == victim.child.id())
        .expect("the victim's registration");
    let ids = node_dir.slot_map_ids(slot);
    assert_eq!(ids.len(), maps::POD_MAPS.len(), "the victim's maps are in its slot");
    victim.signal(libc::SIGKILL);
    let mut victim = victim;
    victim.child.wait().expect("wait");
    eventually(Duration::from_secs(10), "the killed sidecar is deregistered", || node_dir.registrations().len() == 2)
        .await;
    assert!(node_dir.slot_map_ids(slot).is_empty(), "its slot is empty");
    eventually(Duration::from_secs(5), "its maps are freed", || ids.iter().all(|&id| MapData::from_id(id).is_err()))
        .await;

    // The other two keep working.
    let again: Vec<String> = (0..3).map(|i| path(&tmp, &format!("again{i}"))).collect();
    for f in &again {
        std::fs::write(f, b"x").expect("write");
    }
    run_in(&pods[0], &["open", &again[0]]).await;
    run_in(&pods[2], &["open", &again[2]]).await;
    for (s, f) in sidecars.iter().zip([&again[0], &again[2]]) {
        eventually(Duration::from_secs(10), "the survivors still report", || s.files().contains(f)).await;
    }

    // The last one out leaves nothing pinned.
    let last = sidecars.pop().expect("last");
    sidecars.pop().expect("first").stop();
    assert_eq!(node_dir.registrations().len(), 1);
    last.stop();
    assert!(node_dir.sets().is_empty(), "pinned after the last sidecar left: {:?}", node_dir.sets());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_one_out_right_after_a_kill_still_unpins() {
    if !kernel_tests_enabled("the_last_one_out_right_after_a_kill_still_unpins") {
        return;
    }
    let node_dir = NodeDir::new("kill-then-stop");
    let tmp = TempDir::new("node-kill-then-stop");
    let pods: Vec<OwnedCgroup> = (0..2).map(|_| OwnedCgroup::create("telltale-pod").expect("cgroup")).collect();
    let mut a = Sidecar::start_with_lease(&node_dir, &pods[0].cgroup().path, tmp.join("a"), "60s");
    let mut b = Sidecar::start_with_lease(&node_dir, &pods[1].cgroup().path, tmp.join("b"), "60s");
    a.ready();
    b.ready();
    b.signal(libc::SIGKILL);
    b.child.wait().expect("wait");
    // At once, with b's lease still running: a's leave sees b is gone.
    a.stop();
    assert!(node_dir.sets().is_empty(), "pinned after the last sidecar left: {:?}", node_dir.sets());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_starting_at_the_same_instant_load_the_set_once() {
    if !kernel_tests_enabled("sidecars_starting_at_the_same_instant_load_the_set_once") {
        return;
    }
    let node_dir = NodeDir::new("race");
    let tmp = TempDir::new("node-race");
    let pods: Vec<OwnedCgroup> = (0..4).map(|_| OwnedCgroup::create("telltale-pod").expect("cgroup")).collect();
    let mut sidecars: Vec<Sidecar> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| Sidecar::start(&node_dir, &pod.cgroup().path, tmp.join(&format!("out{i}"))))
        .collect();
    for s in &mut sidecars {
        s.ready();
    }
    assert_eq!(node_dir.sets(), vec![node::set_name()]);
    let regs = node_dir.registrations();
    assert_eq!(regs.len(), 4, "every sidecar registered: {regs:?}");
    let slots: BTreeSet<u32> = regs.iter().map(|(s, _)| *s).collect();
    assert_eq!(slots.len(), 4, "distinct slots");
    let f = path(&tmp, "seen");
    std::fs::write(&f, b"x").expect("write");
    run_in(&pods[3], &["open", &f]).await;
    eventually(Duration::from_secs(10), "the last to start reports", || sidecars[3].files().contains(&f)).await;
    for s in sidecars {
        s.stop();
    }
    assert!(node_dir.sets().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_distinct_files_in_one_pod_leaves_another_pod_alone() {
    if !kernel_tests_enabled("a_flood_of_distinct_files_in_one_pod_leaves_another_pod_alone") {
        return;
    }
    let node_dir = NodeDir::new("flood");
    let tmp = TempDir::new("node-flood");
    let known = path(&tmp, "known");
    std::fs::write(&known, b"x").expect("write");
    let mut quiet = Traced::new(node_dir.options());
    let noisy = Traced::new(SensorOptions { ring_buffer: 64 << 10, ..node_dir.options() });

    // The quiet pod's behaviour is learned: its key goes to its known map.
    let bin = workload_bin();
    let (_, events) = quiet.run(&[&bin, "open", &known]).await;
    let keys: Vec<u64> = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::File { file } if file.path == known))
        .map(|e| e.dedup_key)
        .collect();
    assert_eq!(keys.len(), 1, "{events:?}");
    quiet.sensor.mark_known(&keys).expect("mark known");

    // The noisy pod opens 100,000 distinct files and nobody reads its ring.
    let flood = path(&tmp, "flood");
    std::fs::create_dir(&flood).expect("mkdir");
    run_in(&noisy.cgroup, &["open-distinct", &flood, "100000"]).await;
    let n = noisy.sensor.counters().expect("counters");
    assert!(n.file.lost > 0, "a 64 KiB ring cannot hold 100k records: {n:?}");
    let lost: u64 = noisy
        .sensor
        .lost_by_cgroup()
        .iter()
        .filter(|(id, _)| *id == noisy.cgroup.cgroup().id)
        .map(|(_, l)| l.lost[usize::from(abi::EVENT_FILE)])
        .sum();
    assert_eq!(lost, n.file.lost, "the loss is charged to the flooding pod's cgroup");

    // The quiet pod: its known file stays quiet, nothing of it was lost.
    let other = path(&tmp, "other");
    std::fs::write(&other, b"x").expect("write");
    let (_, events) = quiet.run(&[&bin, "open", &known, &other]).await;
    let files: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::File { file } if file.path.starts_with(&tmp.str()) => Some(file.path.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(files, vec![other.as_str()], "only the new file is reported");
    let q = quiet.sensor.counters().expect("counters");
    assert_eq!(q.events().lost, 0, "{q:?}");
    assert!(q.file.filtered_known >= 1, "{q:?}");
    drop(noisy);
    drop(quiet);
    assert!(node_dir.sets().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_made_set_is_rebuilt_and_another_abi_is_left_alone() {
    if !kernel_tests_enabled("a_half_made_set_is_rebuilt_and_another_abi_is_left_alone") {
        return;
    }
    let node_dir = NodeDir::new("rebuild");
    std::fs::create_dir_all(node_dir.set_dir()).expect("mkdir");
    // A sidecar died while loading: the set has no registry.
    let other_abi = node_dir.0.join("v2-000000000000");
    std::fs::create_dir_all(&other_abi).expect("mkdir");
    let tmp = TempDir::new("node-rebuild");
    let f = path(&tmp, "f");
    std::fs::write(&f, b"x").expect("write");
    let mut t = Traced::new(node_dir.options());
    assert!(t.sensor.loaded_node_set(), "the half-made set was loaded again");
    let bin = workload_bin();
    let (_, events) = t.run(&[&bin, "open", &f]).await;
    assert!(events.iter().any(|e| matches!(&e.kind, EventKind::File { file } if file.path == f)), "{events:?}");
    drop(t);
    assert_eq!(node_dir.sets(), vec!["v2-000000000000".to_owned()], "only the other ABI's directory is left");
    assert!(other_abi.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_sidecar_past_its_lease_registers_again_when_it_wakes() {
    if !kernel_tests_enabled("a_frozen_sidecar_past_its_lease_registers_again_when_it_wakes") {
        return;
    }
    let node_dir = NodeDir::new("frozen");
    let tmp = TempDir::new("node-frozen");
    let pods: Vec<OwnedCgroup> = (0..2).map(|_| OwnedCgroup::create("telltale-pod").expect("cgroup")).collect();
    let mut a = Sidecar::start(&node_dir, &pods[0].cgroup().path, tmp.join("a"));
    let mut b = Sidecar::start(&node_dir, &pods[1].cgroup().path, tmp.join("b"));
    a.ready();
    b.ready();
    b.signal(libc::SIGSTOP);
    eventually(Duration::from_secs(15), "the frozen sidecar is swept", || node_dir.registrations().len() == 1).await;
    b.signal(libc::SIGCONT);
    eventually(Duration::from_secs(10), "it registers again", || node_dir.registrations().len() == 2).await;
    let f = path(&tmp, "after");
    std::fs::write(&f, b"x").expect("write");
    run_in(&pods[1], &["open", &f]).await;
    eventually(Duration::from_secs(10), "it reports again", || b.files().contains(&f)).await;
    a.stop();
    b.stop();
    assert!(node_dir.sets().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_whose_last_sidecar_was_killed_is_shown_and_collected_by_telltale_node() {
    if !kernel_tests_enabled("a_set_whose_last_sidecar_was_killed_is_shown_and_collected_by_telltale_node") {
        return;
    }
    let node_dir = NodeDir::new("gc");
    let tmp = TempDir::new("node-gc");
    let pod = OwnedCgroup::create("telltale-pod").expect("cgroup");
    let mut s = Sidecar::start_with_lease(&node_dir, &pod.cgroup().path, tmp.join("out"), "60s");
    s.ready();
    let pid = s.child.id();
    s.signal(libc::SIGKILL);
    s.child.wait().expect("wait");
    assert_eq!(node_dir.sets(), vec![node::set_name()], "nobody was left to unpin");

    let node = |extra: &[&str]| -> serde_json::Value {
        let out = Command::new(telltale_bin())
            .args(["node", "--json", "--node-dir"])
            .arg(&node_dir.0)
            .args(extra)
            .output()
            .expect("telltale node");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let shown = node(&[]);
    let sidecars = shown["sidecars"].as_array().expect("sidecars");
    assert_eq!(sidecars.len(), 1, "{shown}");
    assert_eq!(sidecars[0]["pid"], pid);
    assert_eq!(sidecars[0]["dead"], true, "its liveness lock is free");
    assert_eq!(sidecars[0]["cgroups"][0], pod.cgroup().id);

    let collected = node(&["--gc"]);
    assert_eq!(collected["unpinned"], true, "{collected}");
    assert!(node_dir.sets().is_empty(), "{:?}", node_dir.sets());
    assert_eq!(node(&[]), serde_json::Value::Null, "no set any more");
}
