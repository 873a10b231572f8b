//! Pod-aware identity: the real daemon finds its pod cgroup in a
//! kubepods-like tree (systemd driver: from its own cgroup; cgroupfs driver:
//! by the pod UID), names each container from TELLTALE_CONTAINER_NAME and
//! the injector's map (or the single-container fallback), and leaves out its
//! own container and the pause container. The Kubernetes API client is
//! tested against a local HTTPS server serving a pod.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use telltale_integration::daemon::Daemon;
use telltale_integration::{kernel_tests_enabled, telltale_bin, workload_bin, TempDir};
use telltale_sidecar::workload::cgroup::{Cgroup, OwnedCgroup};
use telltale_sidecar::workload::kubeapi::api_containers;
use telltale_sidecar::workload::kubeapi::KubeApi;

const LEARNING: &str =
    "[learning]\nmin_duration = \"2s\"\nstable_period = \"2s\"\nmax_duration = \"120s\"\nwarmup = \"0s\"\n\
                        [api]\nenabled = false\n";

/// A 64-hex container id made of one digit.
fn cid(d: char) -> String {
    std::iter::repeat_n(d, 64).collect()
}

/// A unique pod UID.
fn pod_uid() -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let hex = format!("{:032x}", n ^ (u128::from(std::process::id()) << 64));
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Create `rel` (slash-separated) below `base`, each level a cgroup.
fn mkdirs(base: &Cgroup, rel: &str) -> Cgroup {
    let mut cg = base.clone();
    for seg in rel.split('/') {
        cg = cg.create_child(seg).expect("cgroup");
    }
    cg
}

/// Spawn `cmd` inside `cgroup` (moved there before exec).
fn spawn_in(cgroup: &Cgroup, mut cmd: Command) -> Child {
    let procs = std::fs::OpenOptions::new().write(true).open(cgroup.path.join("cgroup.procs")).expect("procs");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&procs);
    // SAFETY: only write(2), async-signal-safe, on a descriptor open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // This machine may itself run in a cluster: only a test's own API counts.
    if !cmd.get_envs().any(|(k, _)| k == "KUBERNETES_SERVICE_HOST") {
        cmd.env_remove("KUBERNETES_SERVICE_HOST").env_remove("KUBERNETES_SERVICE_PORT");
    }
    let child = cmd.spawn().expect("spawn");
    drop(procs);
    child
}

/// Long-running processes, killed and reaped on drop (also on failure).
struct Reaped(Vec<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A container's long-running main process, with the injector's env var.
fn main_process(cgroup: &Cgroup, name: Option<&str>) -> Child {
    let mut cmd = Command::new("sleep");
    cmd.arg("600");
    if let Some(n) = name {
        cmd.env("TELLTALE_CONTAINER_NAME", n);
    }
    spawn_in(cgroup, cmd)
}

/// The pod's pause process: `sleep` started as `/pause`.
fn pause_process(cgroup: &Cgroup) -> Child {
    let mut cmd = Command::new("sleep");
    cmd.arg0("/pause").arg("600");
    spawn_in(cgroup, cmd)
}

/// Run `sh -c script` in `cgroup` (as container `name`) and wait.
fn run_in(cgroup: &Cgroup, name: Option<&str>, script: &str) {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script]);
    if let Some(n) = name {
        cmd.env("TELLTALE_CONTAINER_NAME", n);
    }
    let status = spawn_in(cgroup, cmd).wait().expect("wait");
    assert!(status.success(), "{script} failed");
}

/// Start `telltale run` in `cgroup` with `env`; returns once it watches.
fn start_daemon(cgroup: &Cgroup, dir: &TempDir, args: &[&str], env: &[(&str, String)]) -> (Daemon, String) {
    let mut cmd = Command::new(telltale_bin());
    cmd.args(["run", "--config"]).arg(dir.join("telltale.toml"));
    cmd.arg("--anomalies-json").arg(dir.join("anomalies.jsonl")).args(args);
    cmd.envs(env.iter().map(|(k, v)| (k, v))).env("TELLTALE_LOG", "info");
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = spawn_in(cgroup, cmd);
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let log = dir.join("daemon.log");
    let mut line = String::new();
    let mut seen = String::new();
    loop {
        line.clear();
        let n = stderr.read_line(&mut line).expect("read");
        seen.push_str(&line);
        assert!(n > 0, "daemon did not start:\n{seen}");
        if line.contains("telltale: watching") {
            break;
        }
    }
    let watched = line.clone();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::File::create(log).expect("log");
        let mut l = String::new();
        while stderr.read_line(&mut l).map(|n| n > 0).unwrap_or(false) {
            let _ = f.write_all(l.as_bytes());
            l.clear();
        }
    });
    (Daemon { child, api: None, socket: None, metrics: None }, watched)
}

fn status(dir: &TempDir) -> Vec<Value> {
    let out = Command::new(telltale_bin())
        .args(["status", "--json", "--data-dir"])
        .arg(dir.join("data"))
        .output()
        .expect("status");
    assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status json")
}

/// Wait until every event type of `image` is stable.
fn wait_stable(dir: &TempDir, image: &str) {
    let start = Instant::now();
    loop {
        let s = status(dir);
        let stable = s.iter().find(|p| p["image"] == image).is_some_and(|p| {
            p["types"].as_array().is_some_and(|ts| !ts.is_empty() && ts.iter().all(|t| t["state"] == "stable"))
        });
        if stable {
            return;
        }
        let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
        assert!(start.elapsed() < Duration::from_secs(40), "{image} not stable: {s:?}\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Anomalies once the daemon stopped writing new ones.
fn settle(path: &Path) -> Vec<Value> {
    let read = || -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("anomaly json"))
            .collect()
    };
    let mut last = usize::MAX;
    loop {
        std::thread::sleep(Duration::from_millis(800));
        let a = read();
        if a.len() == last {
            return a;
        }
        last = a.len();
    }
}

fn paths(anomalies: &[Value]) -> Vec<String> {
    anomalies.iter().map(|a| a["event"].to_string()).collect()
}

#[test]
fn systemd_pod_containers_are_named_and_the_sidecar_and_pause_left_out() {
    if !kernel_tests_enabled("systemd_pod_containers_are_named_and_the_sidecar_and_pause_left_out") {
        return;
    }
    let top = OwnedCgroup::create("telltale-podtest").expect("test cgroup");
    let uid = pod_uid();
    let pod_rel =
        format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice", uid.replace('-', "_"));
    let pod = mkdirs(top.cgroup(), &pod_rel);
    let scope = |d: char| pod.create_child(&format!("cri-containerd-{}.scope", cid(d))).expect("scope");
    let (web, migrate, pause, sidecar) = (scope('a'), scope('b'), scope('c'), scope('d'));
    let dir = TempDir::new("podid");
    std::fs::write(dir.join("telltale.toml"), format!("data_dir = \"{}/data\"\n{LEARNING}", dir.str())).unwrap();
    let map = dir.join("containers");
    std::fs::write(
        &map,
        r#"{"web":"registry.example.com:5000/shop/cws-webapp:v2","migrate":"registry.example.com/shop/migrate:v3"}"#,
    )
    .unwrap();

    let _procs =
        Reaped(vec![pause_process(&pause), main_process(&web, Some("web")), main_process(&migrate, Some("migrate"))]);
    let env = [
        ("TELLTALE_KUBERNETES__ENABLED", "true".to_owned()),
        ("TELLTALE_KUBERNETES__POD_NAME", "web-7d4b9c".to_owned()),
        ("TELLTALE_KUBERNETES__NAMESPACE", "shop".to_owned()),
        ("TELLTALE_KUBERNETES__POD_UID", uid.clone()),
        ("TELLTALE_KUBERNETES__CONTAINERS_FILE", map.display().to_string()),
        // The injector sets it on app containers only, but it must not trip the config.
        ("TELLTALE_CONTAINER_NAME", "telltale".to_owned()),
    ];
    let (mut d, watched) = start_daemon(&sidecar, &dir, &[], &env);
    assert!(watched.contains(&pod.path.display().to_string()), "watches the pod cgroup: {watched}");

    let w = workload_bin();
    run_in(&web, Some("web"), &format!("{w} open /etc/hostname"));
    run_in(&migrate, Some("migrate"), &format!("{w} open /etc/hostname"));
    wait_stable(&dir, "cws-webapp");
    wait_stable(&dir, "migrate");

    // New behaviour in each container; the same in the pause and sidecar containers.
    run_in(&web, Some("web"), &format!("{w} open /etc/passwd"));
    run_in(&migrate, Some("migrate"), &format!("{w} open /etc/group"));
    let mut as_pause = Command::new(&w);
    as_pause.arg0("/pause").args(["open", "/etc/shells"]);
    assert!(spawn_in(&pause, as_pause).wait().unwrap().success());
    run_in(&sidecar, None, &format!("{w} open /etc/shells"));

    let anomalies = settle(&dir.join("anomalies.jsonl"));
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    let mut by_name: Vec<(String, String, String, String, String, String)> = anomalies
        .iter()
        .map(|a| {
            let c = &a["container"];
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("name"), s("id"), s("image"), s("tag"), s("pod"), s("namespace"))
        })
        .collect();
    by_name.sort();
    by_name.dedup();
    assert_eq!(
        by_name,
        vec![
            ("migrate".into(), cid('b'), "migrate".into(), "v3".into(), "web-7d4b9c".into(), "shop".into()),
            ("web".into(), cid('a'), "cws-webapp".into(), "v2".into(), "web-7d4b9c".into(), "shop".into()),
        ],
        "anomalies: {:?}\n{log}",
        paths(&anomalies)
    );
    let all = paths(&anomalies).join("\n");
    assert!(all.contains("/etc/passwd") && all.contains("/etc/group"), "{all}");
    assert!(!all.contains("/etc/shells"), "pause and sidecar are not watched: {all}");
    assert!(log.contains("Sidecar") && log.contains("Pause"), "exclusions logged:\n{log}");

    // A container appears while the daemon runs. Its first process is the
    // runtime's `runc init` (runc's environment: no TELLTALE_CONTAINER_NAME)
    // for a few seconds before it becomes the container's own process.
    std::fs::write(
        &map,
        r#"{"web":"registry.example.com:5000/shop/cws-webapp:v2","migrate":"registry.example.com/shop/migrate:v3","worker":"registry.example.com/shop/worker:v1"}"#,
    )
    .unwrap();
    let late = scope('e');
    let mut runc = Command::new("/bin/sh");
    // Like runc init, it turns into the container process by one exec.
    runc.arg0("runc").args(["-c", "sleep 3; export TELLTALE_CONTAINER_NAME=worker; exec sleep 600"]);
    let mut worker = Reaped(vec![spawn_in(&late, runc)]);
    std::thread::sleep(Duration::from_secs(4));
    run_in(&late, Some("worker"), &format!("{w} open /etc/hostname"));
    wait_stable(&dir, "worker");
    run_in(&late, Some("worker"), &format!("{w} open /etc/services"));
    let anomalies = settle(&dir.join("anomalies.jsonl"));
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    let of_late: Vec<(String, String)> = anomalies
        .iter()
        .filter(|a| a["container"]["id"] == cid('e'))
        .map(|a| (a["container"]["name"].as_str().unwrap_or_default().to_owned(), a["event"].to_string()))
        .collect();
    assert!(!of_late.is_empty(), "no anomaly from the late container:\n{log}");
    assert!(of_late.iter().all(|(name, _)| name == "worker"), "named while runc init ran: {of_late:?}\n{log}");
    assert!(of_late.iter().any(|(_, e)| e.contains("/etc/services")), "{of_late:?}");

    // It goes away: the daemon lets go of it and goes on with the others.
    for c in &mut worker.0 {
        let _ = c.kill();
        let _ = c.wait();
    }
    std::fs::remove_dir(&late.path).expect("remove the late container's cgroup");
    run_in(&migrate, Some("migrate"), &format!("{w} open /etc/protocols"));
    let after = settle(&dir.join("anomalies.jsonl"));
    assert!(paths(&after).join("\n").contains("/etc/protocols"), "detection stopped after a container left");
    assert!(d.child.try_wait().unwrap().is_none(), "daemon exited after a container left");
    d.stop();
}

/// With in-cluster credentials the daemon names containers from the pod's
/// status (container ids → names) and images from its spec: no
/// TELLTALE_CONTAINER_NAME and no injector map are needed, and a cgroup the
/// API does not list (the pause container) is left out.
#[test]
fn kubernetes_api_names_the_containers_of_a_running_daemon() {
    if !kernel_tests_enabled("kubernetes_api_names_the_containers_of_a_running_daemon") {
        return;
    }
    let top = OwnedCgroup::create("telltale-podtest").expect("test cgroup");
    let uid = pod_uid();
    let pod_rel =
        format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice", uid.replace('-', "_"));
    let pod = mkdirs(top.cgroup(), &pod_rel);
    let scope = |d: char| pod.create_child(&format!("cri-containerd-{}.scope", cid(d))).expect("scope");
    let (web, migrate, pause, sidecar) = (scope('a'), scope('b'), scope('c'), scope('d'));
    let dir = TempDir::new("podid-api");
    std::fs::write(dir.join("telltale.toml"), format!("data_dir = \"{}/data\"\n{LEARNING}", dir.str())).unwrap();

    // The service account as the kubelet mounts it, and the API server.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap().self_signed(&key).unwrap();
    let sa = dir.join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), "sa-token\n").unwrap();
    std::fs::write(sa.join("ca.crt"), cert.pem()).unwrap();
    std::fs::write(sa.join("namespace"), "shop\n").unwrap();
    let port = https_server(&cert.pem(), &key.serialize_pem(), "200 OK", pod_json());

    // No TELLTALE_CONTAINER_NAME anywhere: only the API can tell who is who.
    let _procs = Reaped(vec![pause_process(&pause), main_process(&web, None), main_process(&migrate, None)]);
    let env = [
        ("TELLTALE_KUBERNETES__ENABLED", "true".to_owned()),
        ("TELLTALE_KUBERNETES__POD_NAME", "web-7d4b9c".to_owned()),
        ("TELLTALE_KUBERNETES__POD_UID", uid.clone()),
        ("TELLTALE_KUBERNETES__SERVICE_ACCOUNT_DIR", sa.display().to_string()),
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_owned()),
        ("KUBERNETES_SERVICE_PORT", port.to_string()),
    ];
    let (d, watched) = start_daemon(&sidecar, &dir, &[], &env);
    assert!(watched.contains(&pod.path.display().to_string()), "watches the pod cgroup: {watched}");

    let w = workload_bin();
    run_in(&web, None, &format!("{w} open /etc/hostname"));
    run_in(&migrate, None, &format!("{w} open /etc/hostname"));
    wait_stable(&dir, "cws-webapp");
    wait_stable(&dir, "migrate");
    run_in(&web, None, &format!("{w} open /etc/passwd"));
    run_in(&migrate, None, &format!("{w} open /etc/group"));
    run_in(&pause, None, &format!("{w} open /etc/shells"));

    let anomalies = settle(&dir.join("anomalies.jsonl"));
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    let mut seen: Vec<(String, String, String, String)> = anomalies
        .iter()
        .map(|a| {
            let c = &a["container"];
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("name"), s("id"), s("image"), s("tag"))
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        vec![
            ("migrate".into(), cid('b'), "migrate".into(), "v3".into()),
            ("web".into(), cid('a'), "cws-webapp".into(), "v2".into()),
        ],
        "anomalies: {:?}\n{log}",
        paths(&anomalies)
    );
    assert!(!paths(&anomalies).join("\n").contains("/etc/shells"), "pause is not watched\n{log}");
    d.stop();
}

#[test]
fn cgroupfs_pod_found_by_uid_and_single_container_fallback() {
    if !kernel_tests_enabled("cgroupfs_pod_found_by_uid_and_single_container_fallback") {
        return;
    }
    let top = OwnedCgroup::create("telltale-podtest").expect("test cgroup");
    let uid = pod_uid();
    let pod = mkdirs(top.cgroup(), &format!("kubepods/besteffort/pod{uid}"));
    let (app, pause) = (pod.create_child(&cid('e')).unwrap(), pod.create_child(&cid('f')).unwrap());
    // The sidecar runs outside the pod tree: only the UID can find the pod.
    let elsewhere = top.cgroup().create_child("elsewhere").unwrap();
    let dir = TempDir::new("podid-cgfs");
    std::fs::write(dir.join("telltale.toml"), format!("data_dir = \"{}/data\"\n{LEARNING}", dir.str())).unwrap();
    let map = dir.join("containers");
    std::fs::write(&map, r#"{"app":"docker.io/library/nginx:1.27-alpine"}"#).unwrap();
    // No TELLTALE_CONTAINER_NAME: the only container of the map is the only candidate.
    let _procs = Reaped(vec![pause_process(&pause), main_process(&app, None)]);
    let env = [
        ("TELLTALE_KUBERNETES__POD_UID", uid.clone()),
        ("TELLTALE_KUBERNETES__CONTAINERS_FILE", map.display().to_string()),
    ];
    let (d, watched) = start_daemon(&elsewhere, &dir, &["--pod"], &env);
    assert!(watched.contains(&pod.path.display().to_string()), "{watched}");
    let w = workload_bin();
    run_in(&app, None, &format!("{w} open /etc/hostname"));
    wait_stable(&dir, "nginx");
    run_in(&app, None, &format!("{w} open /etc/passwd"));
    let anomalies = settle(&dir.join("anomalies.jsonl"));
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    assert!(!anomalies.is_empty(), "{log}");
    for a in &anomalies {
        let c = &a["container"];
        assert_eq!(
            (c["name"].as_str(), c["id"].as_str(), c["image"].as_str(), c["tag"].as_str()),
            (Some("app"), Some(cid('e').as_str()), Some("nginx"), Some("1.27-alpine")),
            "{a}"
        );
        assert!(c.get("pod").is_none(), "no pod name configured: {c}");
    }
    d.stop();
}

#[test]
fn flat_containerd_layout_watches_only_this_pods_siblings() {
    if !kernel_tests_enabled("flat_containerd_layout_watches_only_this_pods_siblings") {
        return;
    }
    // containerd without systemd (kind-like nodes): every pod's containers
    // are siblings in containerd's own cgroup.
    let top = OwnedCgroup::create("telltale-podtest").expect("test cgroup");
    let service = mkdirs(top.cgroup(), "system.slice/containerd.service");
    let uid = pod_uid();
    let slice = format!("kubepods-besteffort-pod{}.slice", uid.replace('-', "_"));
    let member = |d: char| service.create_child(&format!("{slice}:cri-containerd:{}", cid(d))).unwrap();
    let (app, sidecar) = (member('1'), member('2'));
    let other_pod = service
        .create_child(&format!("kubepods-besteffort-pod{}.slice:cri-containerd:{}", "3".repeat(32), cid('3')))
        .unwrap();
    let dir = TempDir::new("podid-flat");
    std::fs::write(dir.join("telltale.toml"), format!("data_dir = \"{}/data\"\n{LEARNING}", dir.str())).unwrap();
    let map = dir.join("containers");
    std::fs::write(&map, r#"{"api":"ghcr.io/shop/api-server:2.1"}"#).unwrap();
    let _procs = Reaped(vec![main_process(&app, Some("api")), main_process(&other_pod, Some("api"))]);
    let env = [
        ("TELLTALE_KUBERNETES__ENABLED", "true".to_owned()),
        ("TELLTALE_KUBERNETES__CONTAINERS_FILE", map.display().to_string()),
    ];
    let (d, watched) = start_daemon(&sidecar, &dir, &[], &env);
    assert!(watched.contains(&service.path.display().to_string()), "{watched}");
    let w = workload_bin();
    run_in(&app, Some("api"), &format!("{w} open /etc/hostname"));
    wait_stable(&dir, "api-server");
    run_in(&app, Some("api"), &format!("{w} open /etc/passwd"));
    run_in(&other_pod, Some("api"), &format!("{w} open /etc/group"));
    run_in(&sidecar, None, &format!("{w} open /etc/shells"));
    let anomalies = settle(&dir.join("anomalies.jsonl"));
    let all = paths(&anomalies).join("\n");
    assert!(all.contains("/etc/passwd"), "{all}");
    assert!(!all.contains("/etc/group") && !all.contains("/etc/shells"), "another pod's container, the sidecar: {all}");
    for a in &anomalies {
        assert_eq!(
            (a["container"]["id"].as_str(), a["container"]["name"].as_str()),
            (Some(cid('1').as_str()), Some("api"))
        );
    }
    d.stop();
}

/// A one-connection-at-a-time HTTPS server answering every request with
/// `status` and `body`; returns its port.
fn https_server(cert: &str, key: &str, status: &'static str, body: String) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match std::io::Read::read(&mut tls, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&req);
            // The client authenticates with the service account token.
            let (status, body) = if head.to_ascii_lowercase().contains("authorization: bearer sa-token") {
                (status, body.clone())
            } else {
                ("401 Unauthorized", r#"{"kind":"Status","message":"Unauthorized"}"#.to_owned())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut tls, resp.as_bytes());
            let _ = std::io::Write::flush(&mut tls);
            tls.conn.send_close_notify();
            let _ = std::io::Write::flush(&mut tls);
        }
    });
    port
}

fn pod_json() -> String {
    serde_json::json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "web-7d4b9c", "namespace": "shop", "uid": "5f8e7b2c-1a3d-4e6f-9b8a-7c6d5e4f3a2b",
                     "annotations": {"telltale.dev/containers": "{\"web\":\"registry.example.com/shop/cws-webapp:v2\"}"}},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "registry.example.com/shop/migrate:v3"}],
            "containers": [
                {"name": "web", "image": "registry.example.com/shop/cws-webapp:v2", "env": [{"name": "TELLTALE_CONTAINER_NAME", "value": "web"}]},
                {"name": "telltale", "image": "registry.example.com/telltale:0.1"}
            ],
            "shareProcessNamespace": true
        },
        "status": {
            "phase": "Running", "podIP": "10.1.2.3",
            "initContainerStatuses": [{"name": "migrate", "containerID": format!("cri-o://{}", cid('b')),
                "image": "registry.example.com/shop/migrate:v3", "imageID": "registry.example.com/shop/migrate@sha256:1",
                "ready": true, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
            "containerStatuses": [
                {"name": "web", "containerID": format!("containerd://{}", cid('a')), "image": "registry.example.com/shop/cws-webapp:v2",
                 "imageID": "registry.example.com/shop/cws-webapp@sha256:2", "ready": true, "restartCount": 1,
                 "started": true, "state": {"running": {"startedAt": "2026-11-28T10:00:00Z"}}},
                {"name": "telltale", "containerID": format!("containerd://{}", cid('d')), "image": "registry.example.com/telltale:0.1",
                 "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2026-11-28T10:00:00Z"}}}
            ]
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_api_client_reads_the_pod_over_https() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap().self_signed(&key).unwrap();
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    let dir = TempDir::new("kubeapi");
    let token: PathBuf = dir.join("token");
    std::fs::write(&token, "sa-token\n").unwrap();

    let port = https_server(&cert_pem, &key_pem, "200 OK", pod_json());
    let base = format!("https://127.0.0.1:{port}");
    let api = KubeApi::new(&base, Some(token.clone()), Some(cert_pem.as_bytes())).unwrap();
    let pod = api.pod("shop", "web-7d4b9c").await.expect("pod");
    let mut c = api_containers(&pod);
    c.sort_by(|a, b| a.name.cmp(&b.name));
    let got: Vec<(&str, &str, &str, bool)> =
        c.iter().map(|c| (c.name.as_str(), c.id.as_str(), c.image.as_str(), c.init)).collect();
    assert_eq!(
        got,
        [
            ("migrate", cid('b').as_str(), "registry.example.com/shop/migrate:v3", true),
            ("telltale", cid('d').as_str(), "registry.example.com/telltale:0.1", false),
            ("web", cid('a').as_str(), "registry.example.com/shop/cws-webapp:v2", false),
        ]
    );

    // Without the token: a refusal.
    let anon = KubeApi::new(&base, None, Some(cert_pem.as_bytes())).unwrap();
    let e = anon.pod("shop", "web-7d4b9c").await.expect_err("refused");
    assert!(e.is_refusal() && e.to_string().contains("401") && e.to_string().contains("Unauthorized"), "{e}");
    // RBAC says no.
    let forbidden = https_server(
        &cert_pem,
        &key_pem,
        "403 Forbidden",
        r#"{"kind":"Status","status":"Failure","message":"pods \"web-7d4b9c\" is forbidden: User \"system:serviceaccount:shop:default\" cannot get resource \"pods\"","reason":"Forbidden","code":403}"#.to_owned(),
    );
    let api403 =
        KubeApi::new(&format!("https://127.0.0.1:{forbidden}"), Some(token.clone()), Some(cert_pem.as_bytes()))
            .unwrap();
    let e = api403.pod("shop", "web-7d4b9c").await.expect_err("forbidden");
    assert!(e.is_refusal() && e.to_string().contains("cannot get resource"), "{e}");
    let view = telltale_sidecar::workload::kubeapi::start(api403, "shop".into(), "web-7d4b9c".into()).await;
    assert!(view.containers().is_none(), "no API view: the env/map method decides");

    // Refused, then allowed (a rotated token, RBAC applied late): after the
    // wait that follows a refusal, a refresh reads the pod.
    let late_token = dir.join("late-token");
    std::fs::write(&late_token, "expired\n").unwrap();
    let late = KubeApi::new(&base, Some(late_token.clone()), Some(cert_pem.as_bytes())).unwrap();
    let retry = std::time::Duration::from_millis(300);
    let view = telltale_sidecar::workload::kubeapi::start_with(late, "shop".into(), "web-7d4b9c".into(), retry).await;
    assert!(view.containers().is_none(), "refused at first");
    std::fs::write(&late_token, "sa-token\n").unwrap();
    view.refresh();
    let start = std::time::Instant::now();
    while view.containers().is_none() {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "the API was never asked again");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(view.containers().unwrap().len(), 3);

    // A server we do not trust, and one that is not there: errors, not refusals.
    let other_key = rcgen::KeyPair::generate().unwrap();
    let other = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap().self_signed(&other_key).unwrap();
    let untrusted = KubeApi::new(&base, Some(token.clone()), Some(other.pem().as_bytes())).unwrap();
    let e = untrusted.pod("shop", "web-7d4b9c").await.expect_err("untrusted");
    assert!(!e.is_refusal(), "{e}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gone =
        KubeApi::new(&format!("https://127.0.0.1:{closed}"), Some(token.clone()), Some(cert_pem.as_bytes())).unwrap();
    assert!(!gone.pod("shop", "web-7d4b9c").await.expect_err("unreachable").is_refusal());
    // Names are checked before they reach a URL.
    assert!(api.pod("shop", "../../secrets").await.is_err());
    // Not a pod.
    let junk = https_server(&cert_pem, &key_pem, "200 OK", "[1,2,3]".into());
    let e = KubeApi::new(&format!("https://127.0.0.1:{junk}"), Some(token), Some(cert_pem.as_bytes()))
        .unwrap()
        .pod("shop", "web-7d4b9c")
        .await
        .expect_err("junk");
    assert!(e.to_string().contains("not a Pod"), "{e}");
}
