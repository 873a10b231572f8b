use super::*;

const ID: &str = "8d0e3f4a9c1b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e";
const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const UID: &str = "5f8e7b2c-1a3d-4e6f-9b8a-7c6d5e4f3a2b";
const UID_: &str = "5f8e7b2c_1a3d_4e6f_9b8a_7c6d5e4f3a2b";

fn pod(path: &str) -> PodPath {
    parse_pod_path(path).unwrap_or_else(|| panic!("no pod in {path}"))
}

#[test]
fn cgroupfs_layouts() {
    let p = pod(&format!("/kubepods/burstable/pod{UID}/{ID}"));
    assert_eq!(p.dir, format!("/kubepods/burstable/pod{UID}"));
    assert_eq!((p.uid.as_str(), p.qos, p.member_prefix.as_deref()), (UID, Qos::Burstable, None));
    assert_eq!(p.container, Some(ContainerCgroup { runtime: Runtime::Unknown, id: ID.into(), conmon: false }));

    let p = pod(&format!("/kubepods/besteffort/pod{UID}/crio-{ID}"));
    assert_eq!((p.qos, p.container.as_ref().map(|c| c.runtime)), (Qos::BestEffort, Some(Runtime::Crio)));
    let p = pod(&format!("/kubepods/besteffort/pod{UID}/crio-conmon-{ID}"));
    assert!(p.container.unwrap().conmon);

    // Guaranteed pods sit directly under kubepods.
    let p = pod(&format!("/kubepods/pod{UID}/{ID}"));
    assert_eq!((p.dir.as_str(), p.qos), (format!("/kubepods/pod{UID}").as_str(), Qos::Guaranteed));
    // The pod directory itself, and a process in a nested cgroup of a container.
    assert_eq!(pod(&format!("/kubepods/pod{UID}")).container, None);
    assert_eq!(pod(&format!("/kubepods/pod{UID}/{ID}/worker")).container.unwrap().id, ID);
    // Static pods have a 32-hex UID.
    assert_eq!(pod(&format!("/kubepods/burstable/pod{}/{ID}", "e5e5e0bde3c1a3f6a2b4c6d8e0f2a4b6")).qos, Qos::Burstable);
}

#[test]
fn systemd_layouts() {
    let base = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice");
    let p = pod(&format!("{base}/cri-containerd-{ID}.scope"));
    assert_eq!((p.dir.as_str(), p.uid.as_str(), p.qos), (base.as_str(), UID, Qos::Burstable));
    assert_eq!(p.container, Some(ContainerCgroup { runtime: Runtime::Containerd, id: ID.into(), conmon: false }));

    let p = pod(&format!("{base}/crio-{ID}.scope"));
    assert_eq!(p.container.unwrap().runtime, Runtime::Crio);
    let p = pod(&format!("{base}/crio-conmon-{ID}.scope"));
    assert_eq!(p.container, Some(ContainerCgroup { runtime: Runtime::Crio, id: ID.into(), conmon: true }));
    let p = pod(&format!("{base}/docker-{ID}.scope"));
    assert_eq!(p.container.unwrap().runtime, Runtime::Docker);

    let g = format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope");
    assert_eq!(pod(&g).qos, Qos::Guaranteed);
    let b = format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope");
    assert_eq!(pod(&b).qos, Qos::BestEffort);
    // kind: kubelet runs with --cgroup-root=/kubelet.
    let kind = format!(
        "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/\
         kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
    );
    assert_eq!((pod(&kind).uid.as_str(), pod(&kind).qos), (UID, Qos::BestEffort));
    // Other scopes below the pod are not containers.
    assert_eq!(pod(&format!("{base}/init.scope")).container, None);
}

#[test]
fn flat_containerd_layout() {
    let path = format!("/system.slice/containerd.service/kubepods-burstable-pod{UID_}.slice:cri-containerd:{ID}");
    let p = pod(&path);
    assert_eq!(p.dir, "/system.slice/containerd.service");
    assert_eq!(p.member_prefix, Some(format!("kubepods-burstable-pod{UID_}.slice:")));
    assert_eq!((p.uid.as_str(), p.container.unwrap().id.as_str()), (UID, ID));
    assert!(is_flat_member_of(&format!("kubepods-burstable-pod{UID_}.slice:cri-containerd:{ID2}"), UID).is_some());
    let member = parse_container(&format!("kubepods-burstable-pod{UID_}.slice:crio:{ID2}")).unwrap();
    assert_eq!((member.runtime, member.id.as_str()), (Runtime::Crio, ID2));
    assert_eq!(parse_container(&format!("kubepods-burstable-pod{UID_}.slice:rkt:{ID2}")), None);
    assert_eq!(parse_container(&format!("x:cri-containerd:{ID2}")), None);
    assert!(
        is_flat_member_of(&format!("kubepods-burstable-pod{UID_}.slice:cri-containerd:{ID2}"), "1-2-3-4-5").is_none()
    );
}

#[test]
fn prefixes_and_nesting() {
    // Under a test prefix, a kind node, or a container: the innermost pod wins.
    let test =
        format!("/telltale-podtest-42/kubepods.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope");
    assert_eq!(pod(&test).dir, format!("/telltale-podtest-42/kubepods.slice/kubepods-burstable-pod{UID_}.slice"));
    let nested =
        format!("/kubepods/burstable/pod11111111-2222-3333-4444-555555555555/{ID2}/kubepods/besteffort/pod{UID}/{ID}");
    let p = pod(&nested);
    assert_eq!((p.uid.as_str(), p.container.unwrap().id.as_str()), (UID, ID));
    let docker_kind = format!(
        "/system.slice/docker-{ID2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"
    );
    assert_eq!(pod(&docker_kind).uid, UID);
}

#[test]
fn not_pods_and_hostile_paths() {
    for path in [
        "/",
        "",
        "/user.slice/user-1000.slice/session-2.scope",
        "/system.slice/containerd.service",
        "/kubepods",
        "/kubepods/burstable",
        "/pod1234",
        "/other/pod5f8e7b2c-1a3d-4e6f-9b8a-7c6d5e4f3a2b/x", // no kubepods parent
        "/kubepods/burstable/podzzzz-not-hex/abc",
        "/kubepods.slice/kubepods-burstable-pod.slice",
        "/kubepods.slice/kubepods-burstable-pod5f8e7b2c-1a3d-4e6f-9b8a-7c6d5e4f3a2b.slice", // dashes, not underscores
        "/kubepods/burstable/pod5f8e7b2c-1a3d-4e6f-9b8a-7c6d5e4f3a2b/../../etc",
        "/kubepods/./pod5f8e7b2c-1a3d-4e6f-9b8a-7c6d5e4f3a2b",
        "/kubepods/pod5f8e7b2c\u{0}1a3d/x",
        "/kubepods/pod5f8e7b2c-1a3d-4e6f-9b8a-7c6d5e4f3a2bé/x",
    ] {
        assert_eq!(parse_pod_path(path), None, "{path:?}");
    }
    // A long path of junk is no problem.
    assert_eq!(parse_pod_path(&"/a".repeat(100_000)), None);
    // Odd container names under a real pod: no container.
    for name in
        ["cri-containerd-xyz.scope", "crio-.scope", "docker-12.scope", "abc", &"a".repeat(65), "cri-containerd-.scope"]
    {
        assert_eq!(parse_container(name), None, "{name}");
    }
    assert_eq!(parse_container(&format!("{ID}.scope")), None, "a bare id never has .scope");
    assert!(parse_container(&format!("docker-conmon-{ID}.scope")).is_none(), "conmon is CRI-O's");
}

#[test]
fn pod_dirs_by_uid() {
    assert!(is_pod_dir_of(&format!("pod{UID}"), UID));
    assert!(is_pod_dir_of(&format!("kubepods-besteffort-pod{UID_}.slice"), UID));
    assert!(is_pod_dir_of(&format!("kubepods-pod{UID_}.slice"), UID));
    assert!(!is_pod_dir_of(&format!("pod{UID}x"), UID));
    assert!(!is_pod_dir_of("kubepods-burstable.slice", UID));
    assert_eq!(parse_uid(UID), Ok(UID.to_owned()));
    assert_eq!(parse_uid(UID_), Ok(UID.to_owned()));
    assert_eq!(parse_uid(&UID.to_uppercase()), Ok(UID.to_owned()));
    assert!(matches!(parse_uid("../../etc"), Err(PodError::BadUid(_))));
    assert!(matches!(parse_uid(""), Err(PodError::BadUid(_))));
    assert!(matches!(parse_uid("pod/1234-5678"), Err(PodError::BadUid(_))));
}

#[test]
fn proc_cgroup_v2_and_hybrid() {
    let v2 = format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
    );
    let p = ProcCgroup::parse(&v2).unwrap();
    assert_eq!(p.unified_pod().unwrap().uid, UID);
    assert!(p.legacy.is_empty());

    // Hybrid host, cgroupfs driver: v1 controllers name the pod; the v2 line
    // shows where the runtime left the process in the unified hierarchy.
    let hybrid = format!(
        "12:cpuset:/kubepods/besteffort/pod{UID}/{ID}\n\
         11:memory:/kubepods/besteffort/pod{UID}/{ID}\n\
         4:cpu,cpuacct:/kubepods/besteffort/pod{UID}/{ID}\n\
         1:name=systemd:/kubepods/besteffort/pod{UID}/{ID}\n\
         0::/kubepods/besteffort/pod{UID}/{ID}\n"
    );
    let p = ProcCgroup::parse(&hybrid).unwrap();
    assert_eq!(p.legacy.len(), 4);
    assert_eq!(p.unified_pod().unwrap().dir, format!("/kubepods/besteffort/pod{UID}"));
    let hybrid_root = format!(
        "1:name=systemd:/kubepods/besteffort/pod{UID}/{ID}\n3:memory:/kubepods/besteffort/pod{UID}/{ID}\n0::/\n"
    );
    let p = ProcCgroup::parse(&hybrid_root).unwrap();
    assert_eq!(p.unified.as_deref(), Some("/"));
    assert_eq!(p.unified_pod(), None);
    assert_eq!(p.any_pod().unwrap().uid, UID, "found through the v1 lines");

    // A cgroup namespace hides the path.
    let ns = ProcCgroup::parse("0::/\n").unwrap();
    assert_eq!((ns.unified_pod(), ns.any_pod()), (None, None));
    // Paths may contain ':'.
    let flat = format!("0::/system.slice/containerd.service/kubepods-besteffort-pod{UID_}.slice:cri-containerd:{ID}\n");
    assert_eq!(ProcCgroup::parse(&flat).unwrap().unified_pod().unwrap().container.unwrap().id, ID);
}

#[test]
fn proc_cgroup_hostile() {
    assert_eq!(ProcCgroup::parse(""), Err(PodError::NoUnifiedLine));
    assert!(matches!(ProcCgroup::parse("garbage\n"), Err(PodError::MalformedLine(_))));
    assert!(matches!(ProcCgroup::parse("x::/a\n"), Err(PodError::MalformedLine(_))));
    assert!(matches!(ProcCgroup::parse("0::relative\n"), Err(PodError::MalformedLine(_))));
    assert!(matches!(ProcCgroup::parse(&"0::/a\n".repeat(100_000)), Err(PodError::TooLarge { .. })));
    let odd = String::from_utf8_lossy(b"0::/kubepods/\xff\xfe/pod\x01\n").into_owned();
    let p = ProcCgroup::parse(&odd).unwrap();
    assert_eq!(p.any_pod(), None);
}

#[test]
fn environ_names() {
    let env = b"PATH=/usr/bin\0TELLTALE_CONTAINER_NAME=web\0HOME=/\0";
    assert_eq!(container_name_from_environ(env), Some("web".into()));
    let first = b"TELLTALE_CONTAINER_NAME=init-db\0TELLTALE_CONTAINER_NAME=web\0";
    assert_eq!(container_name_from_environ(first), Some("init-db".into()));
    assert_eq!(container_name_from_environ(b"TELLTALE_CONTAINER_NAME=web"), Some("web".into()), "no trailing NUL");
    for bad in [
        b"".as_slice(),
        b"\0\0\0",
        b"XTELLTALE_CONTAINER_NAME=web\0",
        b"TELLTALE_CONTAINER_NAME=\0",
        b"TELLTALE_CONTAINER_NAME=../etc\0",
        b"TELLTALE_CONTAINER_NAME=Web\0",
        b"TELLTALE_CONTAINER_NAME=w\xffb\0",
        b"TELLTALE_CONTAINER_NAME=-web\0",
        b"TELLTALE_CONTAINER_NAME=a b\0",
    ] {
        assert_eq!(container_name_from_environ(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
    let long = format!("TELLTALE_CONTAINER_NAME={}\0", "a".repeat(64));
    assert_eq!(container_name_from_environ(long.as_bytes()), None);
    let huge = vec![b'x'; 1 << 20];
    assert_eq!(container_name_from_environ(&huge), None);
}

#[test]
fn pause_processes() {
    assert!(is_pause_cmdline(b"/pause\0"));
    assert!(is_pause_cmdline(b"/usr/bin/pod\0"));
    assert!(is_pause_cmdline(b"/tmp/x/pause\0"));
    assert!(!is_pause_cmdline(b"/bin/sleep\0pause\0"));
    assert!(!is_pause_cmdline(b"/pauser\0"));
    assert!(!is_pause_cmdline(b""));
}

#[test]
fn container_map() {
    let (m, problems) =
        ContainerMap::parse(r#"{"web":"registry.example.com:5000/team/cws-webapp:v2","init-db":"postgres:16"}"#)
            .unwrap();
    assert!(problems.is_empty());
    assert_eq!(m.0.len(), 2);
    assert_eq!(m.0["web"], "registry.example.com:5000/team/cws-webapp:v2");
    let (m, problems) =
        ContainerMap::parse(r#"{"web":"nginx","Bad Name":"x","db":"bad image","n":3,"../x":"y"}"#).unwrap();
    assert_eq!(m.0.keys().collect::<Vec<_>>(), ["web"]);
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert_eq!(ContainerMap::parse("{}\n").unwrap().0 .0.len(), 0);
    for bad in ["", "[]", "\"web\"", "{\"web\":", "null", "{\"a\":{\"b\":1}"] {
        assert!(matches!(ContainerMap::parse(bad), Err(PodError::BadMap(_))), "{bad}");
    }
    let huge = format!("{{\"a\":\"{}\"}}", "b".repeat(MAX_TEXT));
    assert!(matches!(ContainerMap::parse(&huge), Err(PodError::TooLarge { .. })));
}

#[test]
fn runtime_init_processes() {
    assert!(is_runtime_init_cmdline(b"runc\0init\0"));
    assert!(is_runtime_init_cmdline(b"/usr/local/sbin/runc\0init\0"));
    assert!(is_runtime_init_cmdline(b"/usr/bin/crun\0--root\0/run/crun\0create\0"));
    assert!(!is_runtime_init_cmdline(b"/usr/sbin/nginx\0-g\0daemon off;\0"));
    assert!(!is_runtime_init_cmdline(b"/pause\0"));
    assert!(!is_runtime_init_cmdline(b""));
    assert!(!is_runtime_init_cmdline(b"/opt/runcible\0"));
}

#[test]
fn api_container_ids() {
    assert_eq!(parse_container_id(&format!("containerd://{ID}")), Some(ID.into()));
    assert_eq!(parse_container_id(&format!("cri-o://{ID}")), Some(ID.into()));
    assert_eq!(parse_container_id(&format!("docker://{ID}")), Some(ID.into()));
    assert_eq!(parse_container_id(&format!("rkt://{ID}")), None);
    assert_eq!(parse_container_id(ID), None);
    assert_eq!(parse_container_id("containerd://../../x"), None);
}

fn observed(name: &str) -> Observed {
    Observed {
        cgroup_name: name.into(),
        container: parse_container(name),
        is_self: false,
        has_processes: true,
        pause: false,
        runtime_init: false,
        env_name: None,
    }
}

#[test]
fn identities() {
    let web = Observed { env_name: Some("web".into()), ..observed(&format!("cri-containerd-{ID}.scope")) };
    let me = Observed { is_self: true, ..observed(&format!("cri-containerd-{}.scope", "a".repeat(64))) };
    let pause = Observed { pause: true, ..observed(&format!("cri-containerd-{}.scope", "b".repeat(64))) };
    let conmon = observed(&format!("crio-conmon-{ID}.scope"));
    let all = [web.clone(), me.clone(), pause.clone(), conmon.clone()];
    let (map, _) = ContainerMap::parse(r#"{"web":"reg/cws-webapp:v2","init":"reg/init:v1"}"#).unwrap();
    let src = Sources { api: None, map: Some(&map) };
    assert_eq!(identify(&me, &all, src), Decision::Exclude(Excluded::Sidecar));
    assert_eq!(identify(&pause, &all, src), Decision::Exclude(Excluded::Pause));
    assert_eq!(identify(&conmon, &all, src), Decision::Exclude(Excluded::Conmon));
    assert_eq!(
        identify(&web, &all, src),
        Decision::Watch {
            id: ID.into(),
            name: "web".into(),
            image: Some("reg/cws-webapp:v2".into()),
            source: Source::Env
        }
    );

    // The API wins over the environment, and gives images by name.
    let api = [ApiContainer { id: ID.into(), name: "web-api".into(), image: "reg/api-name:v9".into(), init: false }];
    let with_api = Sources { api: Some(&api), map: Some(&map) };
    assert!(
        matches!(identify(&web, &all, with_api), Decision::Watch { source: Source::Api, ref name, .. } if name == "web-api")
    );
    // Not in the API, no name, not pause: not one of the pod's containers.
    let stranger = observed(&format!("cri-containerd-{}.scope", "c".repeat(64)));
    assert_eq!(identify(&stranger, &all, with_api), Decision::Exclude(Excluded::NotInPod));
    // Empty cgroup: ask again later.
    let empty = Observed { has_processes: false, ..stranger.clone() };
    assert_eq!(identify(&empty, &all, src), Decision::Pending);
    // `runc init` has not exec'd the container's process yet: its
    // environment is runc's, so wait rather than fall back for good.
    let starting = Observed { runtime_init: true, ..stranger.clone() };
    let alone_starting = [starting.clone(), me.clone()];
    assert_eq!(identify(&starting, &alone_starting, src), Decision::Pending);
    assert_eq!(identify(&starting, &all, src), Decision::Pending);

    // One app container in the map and one candidate cgroup: that one.
    let (single, _) = ContainerMap::parse(r#"{"app":"reg/app:v1"}"#).unwrap();
    let alone = [stranger.clone(), me.clone(), pause.clone()];
    let s = Sources { api: None, map: Some(&single) };
    assert_eq!(
        identify(&stranger, &alone, s),
        Decision::Watch {
            id: "c".repeat(64),
            name: "app".into(),
            image: Some("reg/app:v1".into()),
            source: Source::Single
        }
    );
    // Otherwise: named after the id.
    let two = [stranger.clone(), observed(&format!("cri-containerd-{ID2}.scope"))];
    assert_eq!(
        identify(&stranger, &two, s),
        Decision::Watch { id: "c".repeat(64), name: "c".repeat(12), image: None, source: Source::Fallback }
    );
    // A name the map does not know keeps the name, without an image.
    let other = Observed { env_name: Some("sidecar-x".into()), ..stranger };
    assert!(matches!(identify(&other, &all, src), Decision::Watch { image: None, source: Source::Env, .. }));
}
