use super::*;

const MOUNT: &str = "/sys/fs/cgroup";
const POD: &str = "/sys/fs/cgroup/kubepods.slice/kubepods-pod1.slice";

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// The daemon in the host's cgroup namespace, outside the watched cgroup
/// (local mode: `telltale run --cgroup`).
fn host() -> Placement {
    Placement { mount: p(MOUNT), ns_root: p(MOUNT), watched: p(POD), own: None }
}

/// The sidecar in a pod, in a cgroup namespace rooted at its own container.
fn sidecar() -> Placement {
    let own = p(&format!("{POD}/cri-containerd-sidecar.scope"));
    Placement { mount: p(MOUNT), ns_root: own.clone(), watched: p(POD), own: Some(own) }
}

#[test]
fn processes_in_the_watched_cgroup_or_below_it_are_refused() {
    for line in [
        "0::/kubepods.slice/kubepods-pod1.slice\n",
        "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-web.scope\n",
        "0::/kubepods.slice/kubepods-pod1.slice/web/deeper/still\n",
        // Hybrid hosts list v1 hierarchies too: the v2 line decides.
        "12:cpu,cpuacct:/elsewhere\n0::/kubepods.slice/kubepods-pod1.slice/web\n",
        // `..` that stays inside is still inside.
        "0::/kubepods.slice/other/../kubepods-pod1.slice/web\n",
    ] {
        let v = judge(line, &host());
        assert!(matches!(v, Verdict::Watched { .. }), "{line:?}: {v:?}");
        assert!(!v.admits());
    }
}

#[test]
fn processes_outside_are_admitted() {
    for (line, dir) in [
        ("0::/user.slice/user-0.slice/session-1.scope\n", "/sys/fs/cgroup/user.slice/user-0.slice/session-1.scope"),
        ("0::/\n", MOUNT),
        // A sibling whose name starts like the pod's is not inside it.
        (
            "0::/kubepods.slice/kubepods-pod1.slice-other/x\n",
            "/sys/fs/cgroup/kubepods.slice/kubepods-pod1.slice-other/x",
        ),
        ("0::/kubepods.slice\n", "/sys/fs/cgroup/kubepods.slice"),
    ] {
        assert_eq!(judge(line, &host()), Verdict::Outside { cgroup: p(dir) }, "{line:?}");
    }
}

#[test]
fn in_a_cgroup_namespace_paths_are_relative_to_its_root() {
    let s = sidecar();
    // The sidecar's own container (`kubectl exec -c telltale`): its own.
    assert_eq!(judge("0::/\n", &s), Verdict::OwnContainer { cgroup: s.ns_root.clone() });
    assert!(judge("0::/\n", &s).admits());
    // A workload container is a sibling: `/../<container>`.
    assert_eq!(
        judge("0::/../cri-containerd-web.scope\n", &s),
        Verdict::Watched { cgroup: p(&format!("{POD}/cri-containerd-web.scope")) }
    );
    // The pause container, the pod cgroup itself: watched.
    assert!(matches!(judge("0::/..\n", &s), Verdict::Watched { .. }));
    // Another pod entirely: outside.
    assert_eq!(
        judge("0::/../../kubepods-pod2.slice/c\n", &s),
        Verdict::Outside { cgroup: p("/sys/fs/cgroup/kubepods.slice/kubepods-pod2.slice/c") }
    );
}

#[test]
fn the_own_cgroup_exemption_needs_the_own_cgroup_below_the_watched_one() {
    // The daemon's own cgroup is the watched one: no exemption there.
    let mut same = host();
    same.own = None;
    same.ns_root = p(MOUNT);
    assert!(matches!(judge("0::/kubepods.slice/kubepods-pod1.slice\n", &same), Verdict::Watched { .. }));
}

#[test]
fn what_cannot_be_placed_is_refused() {
    for line in [
        "",
        "garbage",
        "12:cpu:/only/v1\n",
        // Above the mount: not in the hierarchy the daemon sees.
        "0::/../../../../..\n",
        "0::relative/path\n",
    ] {
        let v = judge(line, &sidecar());
        assert!(matches!(v, Verdict::Unknown { .. }), "{line:?}: {v:?}");
        assert!(!v.admits());
    }
    assert!(matches!(judge("0::/..\n", &host()), Verdict::Unknown { .. }));
}

#[test]
fn the_namespace_root_is_found_from_the_daemons_own_cgroup() {
    let own = p(&format!("{POD}/sidecar"));
    assert_eq!(ns_root_of(&own, "/", &p(MOUNT)), Some(own.clone()));
    assert_eq!(ns_root_of(&own, "/kubepods.slice/kubepods-pod1.slice/sidecar", &p(MOUNT)), Some(p(MOUNT)));
    assert_eq!(ns_root_of(&own, "/sidecar", &p(MOUNT)), Some(p(POD)));
    for bad in ["/other", "/../x", "relative", "/a/kubepods.slice/kubepods-pod1.slice/sidecar"] {
        assert_eq!(ns_root_of(&own, bad, &p(MOUNT)), None, "{bad:?}");
    }
}

#[test]
fn resolving_never_climbs_above_the_mount() {
    assert_eq!(resolve("/a/../b", &p(MOUNT), &p(MOUNT)), Some(p("/sys/fs/cgroup/b")));
    assert_eq!(resolve("/..", &p(MOUNT), &p(MOUNT)), None);
    assert_eq!(resolve("/a/../../b", &p(MOUNT), &p(MOUNT)), None);
}
