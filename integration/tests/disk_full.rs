//! A full disk under the data dir (a real tmpfs filled to the last byte)
//! does not stop detection: anomalies keep streaming from memory, the
//! metrics say the store is full, and once space returns everything waiting
//! is stored, in order, with nothing lost.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use telltale_client::{Client, WatchFilter};
use telltale_integration::daemon::{run_in, Pod};
use telltale_integration::{kernel_tests_enabled, wait_stable, workload_bin};
use telltale_sidecar::store::Store;
use tokio_stream::StreamExt;

/// A small tmpfs mounted on `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs on {} (the test needs root)", dir.display());
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Write zeros to `path` until the file system has no space left.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = f.sync_all();
}

async fn metric(url: &str, name: &str) -> u64 {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

async fn until_metric(url: &str, name: &str, want: u64) {
    let start = Instant::now();
    loop {
        let v = metric(url, name).await;
        if v == want {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{name} = {v}, waiting for {want}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_keeps_detection_and_streams_going_and_nothing_is_lost() {
    if !kernel_tests_enabled("a_full_disk_keeps_detection_and_streams_going_and_nothing_is_lost") {
        return;
    }
    let cfg = "[learning]\nmin_duration = \"2s\"\nstable_period = \"2s\"\nmax_duration = \"120s\"\nwarmup = \"0s\"\n\
               [api]\nlisten = \"127.0.0.1:0\"\n\
               [telemetry.prometheus]\nenabled = true\nlisten = \"127.0.0.1:0\"\n";
    let pod = Pod::new("diskfull", &[("app", "diskfull-app:v1")], cfg);
    let data = pod.dir.join("data");
    let _mount = Tmpfs::mount(&data, "4m");
    let mut d = pod.start();
    let metrics = d.metrics.clone().expect("metrics endpoint");
    let client = Client::builder(d.socket.clone().unwrap()).connect().await.unwrap();
    let app = pod.container("app");
    let w = workload_bin();
    run_in(&app, &[w.as_str(), "open", "/etc/hostname"]);
    wait_stable(&client, Some("diskfull-app")).await;
    let mut live = client.watch(WatchFilter::default(), 0);

    // The disk fills up; new behaviour goes on being detected and streamed.
    fill(&data.join("filler"));
    let files = ["/etc/services", "/etc/protocols", "/etc/passwd", "/etc/group"];
    for f in files {
        run_in(&app, &[w.as_str(), "open", f]);
    }
    let mut streamed = Vec::new();
    while streamed.len() < files.len() {
        let a = tokio::time::timeout(Duration::from_secs(20), live.next())
            .await
            .expect("anomalies keep streaming with the disk full")
            .expect("stream open")
            .expect("ok");
        streamed.push(a.sequence);
    }
    until_metric(&metrics, "telltale_store_full", 1).await;
    assert!(metric(&metrics, "telltale_store_backlog").await >= 1);
    assert!(d.child.try_wait().unwrap().is_none(), "the daemon keeps running with the disk full");

    // Space returns: everything waiting is stored.
    std::fs::remove_file(data.join("filler")).unwrap();
    until_metric(&metrics, "telltale_store_full", 0).await;
    until_metric(&metrics, "telltale_store_backlog", 0).await;
    assert_eq!(metric(&metrics, "telltale_store_dropped_total").await, 0);
    let stored: Vec<u64> =
        Store::open_read_only(&data).unwrap().anomalies_after(0, usize::MAX).unwrap().iter().map(|(s, _)| *s).collect();
    for s in &streamed {
        assert!(stored.contains(s), "streamed anomaly {s} is stored once space returned: {stored:?}");
    }
    d.stop();
}
