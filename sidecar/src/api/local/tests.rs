//! The socket file and the placement of this test process (no root needed).

use super::*;
use std::os::unix::fs::MetadataExt;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("telltale-local-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// This process's cgroup directory (the host's cgroup namespace).
fn own_cgroup() -> PathBuf {
    let mount = cgroup2_mount().expect("a cgroup2 mount");
    let view = own_view().expect("own cgroup");
    peer::resolve(&view, &mount, &mount).expect("own cgroup under the mount")
}

#[test]
fn nothing_watched_admits_everyone() {
    assert_eq!(Admits::resolve(None), Admits::Everyone);
    assert!(Admits::Everyone.verdict(Some(std::process::id())).admits());
}

#[test]
fn a_process_in_the_watched_cgroup_is_refused_and_one_outside_admitted() {
    let own = own_cgroup();
    // Watching the cgroup this test runs in: the test is a watched process.
    let admits = Admits::resolve(Some(&own));
    let Admits::Outside(placement) = &admits else { panic!("placed: {admits:?}") };
    assert_eq!(placement.own, None, "the daemon's own cgroup is the watched one: no exemption");
    match admits.verdict(Some(std::process::id())) {
        Verdict::Watched { cgroup } => assert_eq!(cgroup, own),
        other => panic!("{other:?}"),
    }
    // Unknown processes are refused.
    assert!(matches!(admits.verdict(None), Verdict::Unknown { .. }));
    assert!(matches!(admits.verdict(Some(0)), Verdict::Unknown { .. }));
    assert!(matches!(admits.verdict(Some(u32::MAX)), Verdict::Unknown { .. }));
    // Watching another cgroup: the test process is outside it.
    let elsewhere =
        Admits::Outside(Placement { watched: placement.mount.join("telltale-not-this-one"), ..placement.clone() });
    if !own.starts_with(placement.mount.join("telltale-not-this-one")) {
        assert_eq!(elsewhere.verdict(Some(std::process::id())), Verdict::Outside { cgroup: own });
    }
}

#[test]
fn an_unplaceable_daemon_admits_no_one() {
    let admits = Admits::resolve(Some(Path::new("/nonexistent/cgroup")));
    assert!(matches!(admits, Admits::NoOne { .. }), "{admits:?}");
    assert!(!admits.verdict(Some(std::process::id())).admits());
}

#[tokio::test]
async fn the_socket_is_private_replaces_a_stale_one_and_goes_away() {
    let dir = scratch("bind");
    let socket = dir.join("sub").join("api.sock");
    let channel = LocalChannel { socket: socket.clone(), watched: None };
    let listener = bind(&channel).await.expect("bind");
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(socket.parent().expect("dir")), 0o700);
    // A live socket is not taken over.
    let e = bind(&channel).await.expect_err("in use");
    assert!(e.to_string().contains("api.sock"), "{e}");
    drop(listener);
    assert!(!socket.exists(), "removed when the listener is dropped");

    // A stale socket file (its server gone without removing it) is replaced.
    let stale = std::os::unix::net::UnixListener::bind(&socket).expect("stale");
    drop(stale);
    assert!(socket.exists());
    let listener = bind(&channel).await.expect("replaces the stale socket");
    drop(listener);

    // Anything else in the way is left alone.
    std::fs::write(&socket, "not a socket").expect("file");
    let e = bind(&channel).await.expect_err("a file in the way");
    assert!(format!("{e:?}").contains("not a socket"), "{e:?}");
    assert_eq!(std::fs::read_to_string(&socket).expect("kept"), "not a socket");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn accepted_connections_carry_their_peer() {
    let dir = scratch("peer");
    let socket = dir.join("api.sock");
    let listener = bind(&LocalChannel { socket: socket.clone(), watched: None }).await.expect("bind");
    let _client = UnixStream::connect(&socket).await.expect("connect");
    let conn = listener.accept_one().await.expect("accepted");
    let peer = conn.connect_info();
    assert_eq!(peer.pid, Some(std::process::id()));
    assert_eq!(peer.uid, nix::unistd::geteuid().as_raw());
    assert!(peer.verdict.admits());
    assert_eq!(peer.principal(), format!("uid:{} pid:{}", peer.uid, std::process::id()));
    drop(listener);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_refused_callers_connection_is_cut_soon() {
    use tokio::io::AsyncReadExt;
    let dir = scratch("cut");
    let socket = dir.join("api.sock");
    // Watching the cgroup this test runs in: the test is refused.
    let listener = bind(&LocalChannel { socket: socket.clone(), watched: Some(own_cgroup()) }).await.expect("bind");
    let _client = UnixStream::connect(&socket).await.expect("connect");
    let mut conn = listener.accept_one().await.expect("accepted");
    assert!(matches!(conn.connect_info().verdict, Verdict::Watched { .. }), "{:?}", conn.connect_info());
    let mut buf = [0u8; 16];
    let e =
        tokio::time::timeout(REFUSED_LIFETIME * 6, conn.read(&mut buf)).await.expect("cut in time").expect_err("cut");
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    drop(listener);
    let _ = std::fs::remove_dir_all(&dir);
}
