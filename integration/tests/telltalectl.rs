//! `telltalectl` as a user runs it, against a real daemon.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use telltale_integration::daemon::{run_in, Pod};
use telltale_integration::{kernel_tests_enabled, telltalectl_bin, workload_bin};
use telltale_sidecar::api::token_sha256;

fn ctl(addr: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(telltalectl_bin());
    c.env_remove("TELLTALE_TOKEN").arg("--addr").arg(addr);
    if let Some(t) = token {
        c.env("TELLTALE_TOKEN", t);
    }
    c.args(args).output().expect("telltalectl runs")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn status_profile_and_watch_from_the_command_line() {
    if !kernel_tests_enabled("status_profile_and_watch_from_the_command_line") {
        return;
    }
    let cfg = format!(
        "[learning]\nmin_duration = \"2s\"\nstable_period = \"2s\"\nmax_duration = \"60s\"\nwarmup = \"0s\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\n\
         [[api.tokens]]\nprincipal = \"vera\"\nrole = \"viewer\"\nsha256 = \"{}\"\n\
         [[api.tokens]]\nprincipal = \"rita\"\nrole = \"responder\"\nsha256 = \"{}\"\n",
        token_sha256("v"),
        token_sha256("r")
    );
    let pod = Pod::new("ctl", &[("app", "web:v3")], &cfg);
    let d = pod.start();
    let addr = d.api.clone().expect("api");

    let o = ctl(&addr, None, &["status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("gRPC status Unauthenticated"), "{:?}", text(&o));

    let o = ctl(&addr, Some("v"), &["--json", "status"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v[0]["image"], "web");
    assert_eq!(v[0]["types"].as_array().map(Vec::len), Some(4));
    let o = ctl(&addr, Some("v"), &["status"]);
    assert!(text(&o).0.contains("IMAGE") && text(&o).0.contains("learning"), "{:?}", text(&o));

    let o = ctl(&addr, Some("v"), &["profile", "add", "web", "--exec", "/usr/bin/allowed"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("PermissionDenied"), "{:?}", text(&o));
    let o = ctl(&addr, Some("r"), &["profile", "add", "web", "--exec", "/usr/bin/allowed", "--parent", "/bin/init"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains("added 1"), "{:?}", text(&o));
    let o =
        ctl(&addr, Some("r"), &["profile", "add", "web", "--file", "etc/x", "--access", "r", "--process", "/bin/a"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("InvalidArgument") && text(&o).1.contains("file.path"), "{:?}", text(&o));
    let o = ctl(&addr, Some("r"), &["profile", "add", "web", "--connect", "10.0.0.0/8:0/tcp", "--process", "/bin/a"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = ctl(&addr, Some("v"), &["profile", "show", "web"]);
    let (out, _) = text(&o);
    assert!(out.contains("/bin/init -> /usr/bin/allowed") && out.contains("10.0.0.0/8:0"), "{out}");
    let o = ctl(&addr, Some("v"), &["profile", "export", "web", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("export json");
    assert_eq!((&doc["kind"], &doc["metadata"]["name"]), (&"SecurityProfile".into(), &"web".into()));

    // Once stable, a new process shows up in `watch`.
    let start = Instant::now();
    while String::from_utf8_lossy(&ctl(&addr, Some("v"), &["--json", "status"]).stdout)
        .contains("\"state\":\"learning\"")
    {
        assert!(start.elapsed() < Duration::from_secs(30), "never stable");
        std::thread::sleep(Duration::from_millis(200));
    }
    run_in(&pod.container("app"), &[&workload_bin(), "open", "/etc/hostname"]);
    let o = ctl(&addr, Some("v"), &["--json", "watch", "--after", "0", "--count", "1"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one json line");
    assert_eq!(line["type"], "exec");
    assert_eq!(line["container"]["id"], "app");
    assert_eq!(line["lineage"], serde_json::json!([workload_bin()]));
    d.stop();
}
