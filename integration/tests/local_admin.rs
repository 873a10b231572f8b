//! What the daemon watches never administers it: the local admin socket
//! refuses processes in the watched cgroup whatever they send, TCP without
//! configured tokens admits no one, and an operator outside the pod
//! administers through the socket without a token.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::process::{Command, Output};

use telltale_client::{Client, Suppression};
use telltale_integration::daemon::{output_in, Pod};
use telltale_integration::replay::Running;
use telltale_integration::{kernel_tests_enabled, telltalectl_bin};

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn suppression(name: &str) -> Suppression {
    Suppression {
        id: String::new(),
        name: name.into(),
        image: "web".into(),
        event_type: None,
        process: "/tmp/payload".into(),
        detail: String::new(),
    }
}

/// No root needed: a replaying daemon (nothing watched) without tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_tcp_admits_no_one_and_the_socket_admits_the_operator() {
    let r = Running::start("local-admin", "[api]\nlisten = \"127.0.0.1:0\"\n").await;

    // TCP: every call refused, with the way in named.
    let tcp = Client::builder(r.api()).connect().await.expect("connects");
    for e in [
        tcp.learning_status(None).await.expect_err("refused"),
        tcp.create_suppression(suppression("over tcp")).await.expect_err("refused"),
    ] {
        assert_eq!(e.code(), Some(tonic::Code::Unauthenticated), "{e}");
        assert!(e.to_string().contains("--socket") && e.to_string().contains("api.tokens"), "{e}");
    }
    let e = Client::builder(r.api()).token("anything").connect().await.unwrap().suppressions().await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unauthenticated), "{e}");

    // The socket: an admin named by its process.
    let admin = Client::builder(r.socket()).connect().await.expect("socket");
    let created = admin.create_suppression(suppression("over the socket")).await.expect("admin");
    assert_eq!(
        admin.suppressions().await.unwrap().iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["over the socket"]
    );
    assert!(admin.verify_audit().await.expect("admin-only call").ok);
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
    let me = format!("uid:{uid} pid:{}", std::process::id());
    let records = admin.audit("", None, None, 0).await.expect("audit");
    assert!(
        records.iter().any(|a| a.principal == me && a.asset_id == created.id),
        "the change is audited as {me}: {records:#?}"
    );
    assert!(
        records.iter().any(|a| a.principal == "anonymous" && a.outcome == "failure"),
        "refused TCP calls are audited: {records:#?}"
    );
    r.stop().await;
}

fn ctl(args: &[&str]) -> Output {
    Command::new(telltalectl_bin())
        .env_remove("TELLTALE_TOKEN")
        .env_remove("TELLTALE_ADDR")
        .env_remove("TELLTALE_SOCKET")
        .args(args)
        .output()
        .expect("telltalectl runs")
}

/// The real daemon on a test pod: `telltalectl` run inside the watched
/// container is refused on the socket and on TCP; the same command from
/// outside succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_in_the_watched_pod_cannot_administer_the_daemon() {
    if !kernel_tests_enabled("a_process_in_the_watched_pod_cannot_administer_the_daemon") {
        return;
    }
    let pod = Pod::new("local-admin-pod", &[("app", "web:v1")], "");
    let d = pod.start();
    let socket_addr = d.socket.clone().expect("the daemon printed its admin socket");
    let socket = socket_addr.strip_prefix("unix://").unwrap().to_owned();
    let tcp = d.api.clone().expect("api");
    let ctl_bin = telltalectl_bin();
    let create = |name: &'static str| {
        vec!["suppressions", "create", "--name", name, "--image", "web", "--process", "/tmp/payload"]
    };

    // The socket is the daemon user's alone.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&socket).expect("socket").mode() & 0o777, 0o600);

    // Inside the watched container, over the socket: refused, whatever token it sends.
    let app = pod.container("app");
    let mut inside: Vec<&str> = vec![&ctl_bin, "--socket", &socket, "--token", "stolen"];
    inside.extend(create("from inside"));
    let o = output_in(&app, &inside);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "the watched workload administered the daemon: {out}{err}");
    assert!(err.contains("Unauthenticated") && err.contains("watched cgroup"), "{err}");
    assert!(err.contains("/app"), "the message names the caller's cgroup: {err}");
    // Reading is refused too: nothing of the API is the workload's.
    let o = output_in(&app, &[&ctl_bin, "--socket", &socket, "suppressions", "list"]);
    assert!(!o.status.success(), "{:?}", text(&o));

    // Inside, over TCP without a token: refused.
    let mut inside_tcp: Vec<&str> = vec![&ctl_bin, "--addr", &tcp];
    inside_tcp.extend(create("from inside over tcp"));
    let o = output_in(&app, &inside_tcp);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "TCP without a token administered the daemon: {out}{err}");
    assert!(err.contains("Unauthenticated") && err.contains("admits no one"), "{err}");

    // The same command from outside the pod: done, audited by process.
    let mut outside: Vec<&str> = vec!["--socket", &socket];
    outside.extend(create("from outside"));
    let o = ctl(&outside);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = ctl(&["--socket", &socket, "suppressions", "list", "-o", "json"]);
    let (out, _) = text(&o);
    assert!(out.contains("from outside") && !out.contains("from inside"), "{out}");

    let admin = Client::builder(&socket_addr).connect().await.expect("socket");
    let records = admin.audit("", None, None, 0).await.expect("audit");
    let refused: Vec<_> =
        records.iter().filter(|a| a.principal.starts_with("uid:0 pid:") && a.outcome == "failure").collect();
    assert!(!refused.is_empty(), "the watched caller's attempts are audited by process: {records:#?}");
    assert!(records.iter().any(|a| a.principal.starts_with("uid:0 pid:") && a.outcome == "success"), "{records:#?}");
    d.stop();
}
