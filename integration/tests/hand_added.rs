//! A process added to a profile by hand alone (`AddToProfile` of its exec)
//! is as quiet as one marked benign: its first run is learned (its own
//! library and locale loads), within bounds; what it does later is judged.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::time::{Duration, Instant};

use telltale_client::{behaviour, Behaviour, Client, EventType, WatchFilter};
use telltale_integration::daemon::{run_in, Pod};
use telltale_integration::{kernel_tests_enabled, wait_stable, workload_bin, TempDir};
use tokio_stream::StreamExt;

const CONFIG: &str =
    "[learning]\nmin_duration = \"2s\"\nstable_period = \"2s\"\nmax_duration = \"120s\"\nwarmup = \"0s\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_added_by_hand_has_its_first_run_learned_then_is_judged() {
    if !kernel_tests_enabled("a_process_added_by_hand_has_its_first_run_learned_then_is_judged") {
        return;
    }
    let pod = Pod::new("hand-added", &[("app", "web:v1")], CONFIG);
    let d = pod.start();
    let client = Client::builder(d.socket.clone().expect("admin socket")).connect().await.expect("connect");
    let app = pod.container("app");
    let w = workload_bin();
    run_in(&app, &["/bin/sh", "-c", &format!("{w} open /etc/hostname")]);
    wait_stable(&client, Some("web")).await;

    // By hand: cat, run by the shell, and nothing it does.
    let sh = std::fs::canonicalize("/bin/sh").expect("sh").display().to_string();
    let cat = std::fs::canonicalize("/usr/bin/cat").expect("cat").display().to_string();
    let r = client.add_to_profile("web", vec![behaviour::exec(&[&sh, &cat])]).await.expect("add");
    assert_eq!((r.added, r.already_known), (1, 0));

    // Its first run: libc, locale, /etc/hostname are learned, not reported.
    run_in(&app, &["/bin/sh", "-c", &format!("{cat} /etc/hostname")]);
    // Past the bound (the first run only): a new file in its next run is reported.
    let dir = TempDir::new("hand-added-later");
    let later = dir.join("later");
    std::fs::write(&later, b"x").expect("file");
    let later = later.display().to_string();
    // (cat writes to the test's output: no redirection the shell would open.)
    run_in(&app, &["/bin/sh", "-c", &format!("{cat} {later}")]);

    let mut all = client.watch(WatchFilter::default(), 0);
    let first = tokio::time::timeout(Duration::from_secs(20), all.next())
        .await
        .expect("an anomaly in time")
        .expect("stream open")
        .expect("ok");
    let a = &first.anomaly;
    assert_eq!(a.event_type, EventType::File, "nothing before the later file: {a:#?}");
    assert_eq!(a.lineage, vec![sh.clone(), cat.clone()]);
    match &a.behaviour {
        Behaviour::File { path, .. } => assert!(path.ends_with("/later"), "the first run raised nothing: {path}"),
        other => panic!("not a file anomaly: {other:?}"),
    }
    // And nothing else: the marker is the only anomaly.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        if let Ok(Some(Ok(extra))) = tokio::time::timeout(Duration::from_millis(300), all.next()).await {
            panic!("only the later file is reported, not {extra:#?}");
        }
    }
    // What the first run did is in the profile, under cat's node.
    let profile = client.profile("web").await.expect("profile");
    let node = profile.nodes.iter().find(|n| n.lineage == [sh.clone(), cat.clone()]).expect("cat's node");
    assert!(node.files.iter().any(|f| f.pattern == "/etc/hostname"), "{node:#?}");
    assert!(!node.files.iter().any(|f| f.pattern.contains("later")), "{node:#?}");
    d.stop();
}
