//! Fleet-wide profiles end to end: two pods of one image, each with its
//! own `telltale run` (real sensors, real workloads), sharing a real etcd.
//! What one pod learned and the stable state reach the other; a signal
//! marked benign in one pod is known in both.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::time::{Duration, Instant};

use telltale_client::{Benign, Client, LearningState, SignalUpdate};
use telltale_etcd_test::Cluster;
use telltale_integration::daemon::{run_in, Pod};
use telltale_integration::{kernel_tests_enabled, wait_stable, workload_bin};

fn config(endpoint: &str, replica: &str) -> String {
    format!(
        "[learning]\nmin_duration = \"2s\"\nstable_period = \"2s\"\nmax_duration = \"120s\"\nwarmup = \"0s\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\n\
         [profiles]\nstore = \"etcd\"\nreplica_id = \"{replica}\"\n\
         [profiles.etcd]\nendpoints = [\"{endpoint}\"]\ncluster = \"e2e-{}\"\n",
        std::process::id()
    )
}

fn files(anomalies: &[serde_json::Value]) -> Vec<String> {
    anomalies
        .iter()
        .map(|a| a["observation"]["behaviour"]["pattern"].as_str().unwrap_or("(not a file)").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_of_one_image_learn_and_triage_as_one() {
    if !kernel_tests_enabled("two_pods_of_one_image_learn_and_triage_as_one") {
        return;
    }
    let cluster = Cluster::start(1).await;
    let endpoint = cluster.endpoints()[0].clone();
    let w = workload_bin();
    let image = "registry.local:5000/team/fleet-app";

    let pod_a = Pod::new("fleet-a", &[("app", &format!("{image}:v1"))], &config(&endpoint, "pod-a"));
    let a = pod_a.start();
    let ca = Client::builder(a.socket.clone().unwrap()).connect().await.unwrap();
    let start = Instant::now();
    loop {
        let s = ca.profile_store().await.unwrap();
        assert_eq!((s.kind.as_str(), s.replica.as_str()), ("etcd", "pod-a"));
        if s.connection == "connected" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never connected: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run_in(&pod_a.container("app"), &[w.as_str(), "open", "/etc/hostname"]);
    wait_stable(&ca, Some("fleet-app")).await;

    // A second pod of the image (a rollout, a scale-up): stable from the
    // start, knowing what pod A learned, detecting from its first event.
    let pod_b = Pod::new("fleet-b", &[("app", &format!("{image}:v2"))], &config(&endpoint, "pod-b"));
    let b = pod_b.start();
    let cb = Client::builder(b.socket.clone().unwrap()).connect().await.unwrap();
    let st = cb.learning_status(Some("fleet-app")).await.unwrap();
    assert!(
        st.len() == 1 && st[0].types.iter().all(|t| t.state == LearningState::Stable),
        "a new pod of a stable image starts stable: {st:?}"
    );
    run_in(&pod_b.container("app"), &[w.as_str(), "open", "/etc/hostname"]);
    run_in(&pod_b.container("app"), &[w.as_str(), "open", "/etc/services"]);
    let seen = pod_b.settle();
    assert_eq!(files(&seen), vec!["/etc/services".to_owned()], "only what the fleet never saw: {seen:?}");

    // Marked benign in B: known in A too.
    let signals = cb.signals("").await.unwrap();
    assert_eq!(signals.len(), 1, "{signals:?}");
    cb.update_signal(SignalUpdate::new(&signals[0].id).benign(Benign::All)).await.unwrap();
    let start = Instant::now();
    loop {
        let p = ca.profile("fleet-app").await.unwrap();
        if format!("{p:?}").contains("/etc/services") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the benign read never reached pod A");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run_in(&pod_a.container("app"), &[w.as_str(), "open", "/etc/services"]);
    run_in(&pod_a.container("app"), &[w.as_str(), "open", "/etc/protocols"]);
    let seen = pod_a.settle();
    assert_eq!(files(&seen), vec!["/etc/protocols".to_owned()], "benign in B is known in A: {seen:?}");
    a.stop();
    b.stop();
}
