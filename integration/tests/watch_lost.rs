//! A watched cgroup that disappears must not leave a daemon that says it
//! watches while it sees nothing: it says so and exits non-zero, so the
//! container restarts and attaches to whatever is there now.

use std::time::Duration;

use telltale_integration::daemon::Pod;
use telltale_integration::kernel_tests_enabled;

#[test]
fn a_deleted_pod_cgroup_stops_the_daemon_with_an_error() {
    if !kernel_tests_enabled("a_deleted_pod_cgroup_stops_the_daemon_with_an_error") {
        return;
    }
    let pod = Pod::new("watchlost", &[("app", "lost-app:v1")], "");
    let root = pod.pod.cgroup().path.clone();
    let (status, stderr) = pod.run_until_exit(
        || {
            std::fs::remove_dir(root.join("app")).expect("remove the container cgroup");
            std::fs::remove_dir(&root).expect("remove the pod cgroup");
            // The same path again: a new cgroup the sensors are not attached to.
            std::fs::create_dir(&root).expect("recreate the pod cgroup");
        },
        Duration::from_secs(15),
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("was deleted and recreated") || stderr.contains("was deleted"), "{stderr}");
    assert!(stderr.contains(&root.display().to_string()), "names the cgroup: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
