//! Profiles as code end to end: a profile learned by one daemon, exported
//! with `telltalectl profile export -o yaml`, imported into a second, empty
//! daemon (another pod, another data directory) judges the same workload
//! the same way; `profile diff` and `profile import --dry-run` against real
//! daemons.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::net::TcpListener;
use std::process::{Command, Output};

use serde_json::Value;
use telltale_integration::daemon::{run_in, Pod};
use telltale_integration::{kernel_tests_enabled, telltalectl_bin, wait_stable, workload_bin, TempDir};
use telltale_sidecar::api::token_sha256;

fn ctl(addr: &str, args: &[&str]) -> Output {
    Command::new(telltalectl_bin())
        .env("TELLTALE_TOKEN", "r")
        .arg("--addr")
        .arg(addr)
        .args(args)
        .output()
        .expect("telltalectl runs")
}

fn text(o: &Output) -> (Option<i32>, String, String) {
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Learning in seconds, a responder token, the API on a free port.
fn config(containers: &str) -> String {
    format!(
        "[learning]\nmin_duration = \"3s\"\nstable_period = \"2s\"\nmax_duration = \"120s\"\nwarmup = \"0s\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\n\
         [[api.tokens]]\nprincipal = \"rita\"\nrole = \"responder\"\nsha256 = \"{}\"\n{containers}",
        token_sha256("r")
    )
}

/// (container id, type, detail) of each anomaly.
fn summary(a: &Value) -> (String, String, String) {
    let o = &a["observation"];
    let detail = match o["behaviour"]["type"].as_str().unwrap_or("") {
        "exec" => o["lineage"].as_array().and_then(|l| l.last()).and_then(Value::as_str).unwrap_or("").to_owned(),
        "file" => o["behaviour"]["pattern"].as_str().unwrap_or("").to_owned(),
        "dns" => o["behaviour"]["name"].as_str().unwrap_or("").to_owned(),
        other => other.to_owned(),
    };
    (a["container"]["id"].as_str().unwrap_or("").to_owned(), a["type"].as_str().unwrap_or("").to_owned(), detail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_profile_imported_into_an_empty_daemon_judges_the_same() {
    if !kernel_tests_enabled("an_exported_profile_imported_into_an_empty_daemon_judges_the_same") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || for _ in listener.incoming() {});
    // One scratch directory for both pods: the workload's paths are the same.
    let scratch = TempDir::new("pac-mix");
    let w = workload_bin();
    let d = scratch.str();
    let mix = format!(
        "set -e\n{w} open /etc/hostname\nf=$(mktemp -p {d})\n{w} write \"$f\"\n{w} write {d}/app-$(date +%F).log\n\
         {w} open /proc/self/status\n{w} dns-udp 127.0.0.1:53 learned.telltale.test A\n{w} connect 127.0.0.1:{port}\n"
    );
    std::fs::write(scratch.join("mix.sh"), mix).expect("mix script");
    let mix = scratch.join("mix.sh").display().to_string();
    let new_file = format!("{w} open /etc/passwd");

    // Pod A learns the workload until stable.
    let a = Pod::new("pac-a", &[("app", "shop:v1")], &config(""));
    let da = a.start();
    let addr_a = da.api.clone().expect("api");
    let client_a = telltale_client::Client::builder(addr_a.clone()).token("r").connect().await.expect("connect");
    run_in(&a.container("app"), &["/bin/sh", &mix]);
    run_in(&a.container("app"), &["/bin/sh", &mix]);
    wait_stable(&client_a, Some("shop")).await;
    run_in(&a.container("app"), &["/bin/sh", &mix]);
    assert!(a.settle().is_empty(), "learned: no anomaly in A: {:?}", a.anomalies());

    let o = ctl(&addr_a, &["profile", "export", "shop", "-o", "yaml"]);
    let (code, yaml, err) = text(&o);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        yaml.starts_with("apiVersion: telltale.dev/v1\nkind: SecurityProfile\nmetadata:\n  name: shop\n"),
        "{yaml}"
    );
    assert!(yaml.contains("/proc/{pid}/status") && yaml.contains("learned.telltale.test"), "{yaml}");
    let file = scratch.join("shop.yaml").display().to_string();
    std::fs::write(&file, &yaml).expect("write the export");
    let o = ctl(&addr_a, &["profile", "diff", &file]);
    assert_eq!(text(&o), (Some(0), String::new(), String::new()), "A is identical to its own export");

    // Pod B: same image, its own data directory, no container yet (so no
    // profile either): the container's cgroup appears after the import.
    let b = Pod::new("pac-b", &[], &config("[[containers]]\ncgroup = \"app\"\nimage = \"shop:v1\"\n"));
    let db = b.start();
    let addr_b = db.api.clone().expect("api");
    let client_b = telltale_client::Client::builder(addr_b.clone()).token("r").connect().await.expect("connect");
    let no_profile = |r: Result<Vec<telltale_client::ProfileStatus>, telltale_client::ClientError>| matches!(r, Err(e) if e.code() == Some(tonic::Code::NotFound));
    assert!(no_profile(client_b.learning_status(Some("shop")).await), "B starts without the profile");

    let (code, out, err) = text(&ctl(&addr_b, &["profile", "diff", &file]));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.lines().all(|l| l.starts_with("+ ")) && err.contains("There is no profile shop yet."), "{out}{err}");
    let (code, out, err) = text(&ctl(&addr_b, &["profile", "import", "--dry-run", &file]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.ends_with("(a new profile); nothing changed (dry run)\n"), "{out}");
    assert!(no_profile(client_b.learning_status(Some("shop")).await), "a dry run changes nothing");

    let (code, out, err) = text(&ctl(&addr_b, &["profile", "import", &file]));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!("imported {file} into shop: added ")) && out.ends_with("(0 already known)\n"),
        "{out}"
    );
    assert_eq!(text(&ctl(&addr_b, &["profile", "diff", &file])), (Some(0), String::new(), String::new()));
    let again = text(&ctl(&addr_b, &["profile", "export", "shop", "-o", "yaml"])).1;
    let processes = |y: &str| y.split_once("  processes:").map(|(_, p)| p.to_owned());
    assert_eq!(processes(&again), processes(&yaml), "B exports what A exported (tags aside)");
    assert!(processes(&yaml).is_some());
    // The import is audited like any addition.
    let trail = client_b.audit("@asset.type:security_profile", None, None, 10).await.expect("audit");
    assert!(trail.iter().all(|e| e.principal == "rita" && e.outcome == "success" && e.asset_id == "shop"), "{trail:?}");
    assert!(!trail.is_empty());

    // The imported profile settles (nothing new arrives), then the same
    // workload in B raises nothing, and a behaviour not in the file does.
    wait_stable(&client_b, Some("shop")).await;
    b.pod.cgroup().create_child("app").expect("container cgroup");
    run_in(&b.container("app"), &["/bin/sh", &mix]);
    run_in(&b.container("app"), &["/bin/sh", &mix]);
    assert!(b.settle().is_empty(), "the imported profile knows the workload: {:#?}", b.anomalies());
    run_in(&a.container("app"), &["/bin/sh", "-c", &new_file]);
    run_in(&b.container("app"), &["/bin/sh", "-c", &new_file]);
    let (got_a, got_b): (Vec<_>, Vec<_>) =
        (a.settle().iter().map(summary).collect(), b.settle().iter().map(summary).collect());
    let expected = vec![("app".to_owned(), "file".to_owned(), "/etc/passwd".to_owned())];
    assert_eq!(got_b, expected, "a behaviour not in the file is an anomaly in B");
    assert_eq!(got_a, got_b, "the same verdicts in A and B");

    // Still identical (anomalies are not learned), and a dry run of a file
    // with one more behaviour names it and changes nothing.
    assert_eq!(text(&ctl(&addr_b, &["profile", "diff", &file])).0, Some(0));
    let more = scratch.join("more.yaml").display().to_string();
    let sh = std::fs::canonicalize("/bin/sh").expect("sh").display().to_string();
    let extra = format!(
        "  - lineage:\n    - {sh}\n    - /usr/bin/nslookup\n    dns:\n    - name: extra.telltale.test\n      type: A\n"
    );
    std::fs::write(&more, format!("{yaml}{extra}")).expect("write");
    let (code, out, _) = text(&ctl(&addr_b, &["profile", "import", "--dry-run", &more]));
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        format!(
            "+ {sh} -> /usr/bin/nslookup: exec\n+ {sh} -> /usr/bin/nslookup: dns extra.telltale.test A\n\
             would add 2 behaviour(s) to shop; nothing changed (dry run)\n"
        )
    );
    let (code, out, _) = text(&ctl(&addr_b, &["profile", "diff", &more]));
    assert_eq!((code, out.lines().count()), (Some(1), 2), "{out}");
    assert_eq!(text(&ctl(&addr_b, &["profile", "diff", &file])).0, Some(0), "the dry run changed nothing");

    // A misspelled key is refused naming it; nothing is sent.
    let typo = scratch.join("typo.yaml").display().to_string();
    std::fs::write(&typo, yaml.replace("processes:", "proceses:")).expect("write");
    let (code, _, err) = text(&ctl(&addr_b, &["profile", "import", &typo]));
    assert_eq!(code, Some(1));
    assert!(err.contains("typo.yaml") && err.contains("unknown field `proceses`"), "{err}");
    da.stop();
    db.stop();
}
