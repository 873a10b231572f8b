//! Notification rules end to end: real daemon and sensors, a local HTTP
//! listener (Slack and webhook) and a local SMTP server started by the test.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use telltale_client::{Client, LearningState, NotificationRule, NotificationTarget};
use telltale_integration::daemon::{run_in, Pod};
use telltale_integration::{kernel_tests_enabled, workload_bin};
use telltale_sidecar::api::token_sha256;

#[derive(Debug, Clone)]
struct Req {
    path: String,
    headers: HashMap<String, String>,
    body: String,
    status: u16,
}

/// An HTTP listener that records every request; paths in `fail` answer 503
/// while their counter is above 0.
#[derive(Clone)]
struct Http {
    addr: String,
    reqs: Arc<Mutex<Vec<Req>>>,
    fail: Arc<Mutex<HashMap<String, u32>>>,
}

impl Http {
    fn start() -> Http {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let h =
            Http { addr: format!("http://{}", l.local_addr().unwrap()), reqs: Arc::default(), fail: Arc::default() };
        let me = h.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut r = BufReader::new(s);
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut headers = HashMap::new();
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = l.trim_end().split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    }
                }
                let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                let status = {
                    let mut fail = me.fail.lock().unwrap();
                    match fail.get_mut(&path) {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            503
                        }
                        _ => 200,
                    }
                };
                me.reqs.lock().unwrap().push(Req {
                    path,
                    headers,
                    body: String::from_utf8_lossy(&body).into(),
                    status,
                });
                let mut s = r.into_inner();
                let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        h
    }

    fn fail(&self, path: &str, n: u32) {
        self.fail.lock().unwrap().insert(path.to_owned(), n);
    }

    /// Accepted (200) requests to `path` about `signal`.
    fn accepted(&self, path: &str, signal: &str) -> Vec<Req> {
        self.reqs
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path && r.status == 200 && r.body.contains(signal))
            .cloned()
            .collect()
    }
}

/// A minimal SMTP server recording each message's DATA.
fn smtp() -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let mails: Arc<Mutex<Vec<String>>> = Arc::default();
    let store = mails.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let _ = w.write_all(b"220 localhost ESMTP test\r\n");
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                let cmd = line.to_ascii_uppercase();
                if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                    let _ = w.write_all(b"250-localhost\r\n250 8BITMIME\r\n");
                } else if cmd.starts_with("DATA") {
                    let _ = w.write_all(b"354 go ahead\r\n");
                    let mut data = String::new();
                    loop {
                        let mut l = String::new();
                        if r.read_line(&mut l).unwrap_or(0) == 0 || l == ".\r\n" {
                            break;
                        }
                        data.push_str(&l);
                    }
                    store.lock().unwrap().push(data);
                    let _ = w.write_all(b"250 queued\r\n");
                } else if cmd.starts_with("QUIT") {
                    let _ = w.write_all(b"221 bye\r\n");
                    break;
                } else {
                    let _ = w.write_all(b"250 ok\r\n");
                }
                line.clear();
            }
        }
    });
    (addr, mails)
}

fn wait<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_deliver_to_slack_webhook_and_email_through_outages_and_restarts() {
    if !kernel_tests_enabled("rules_deliver_to_slack_webhook_and_email_through_outages_and_restarts") {
        return;
    }
    let cfg = format!(
        "[learning]\nmin_duration = \"2s\"\nstable_period = \"2s\"\nmax_duration = \"120s\"\nwarmup = \"0s\"\n\
         [notifications]\nrate_limit = \"3s\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\n\
         [[api.tokens]]\nprincipal = \"adam\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
        token_sha256("ta")
    );
    let pod = Pod::new("notify", &[("app", "web:v1"), ("app2", "web:v1")], &cfg);
    let http = Http::start();
    let (smtp_addr, mails) = smtp();
    let d = pod.start();
    let addr = d.api.clone().expect("api");
    let adam = Client::builder(&addr).token("ta").connect().await.expect("connect");
    let w = workload_bin();
    let (app, app2) = (pod.container("app"), pod.container("app2"));
    run_in(&app, &["/bin/sh", "-c", &format!("{w} open /etc/hostname")]);
    let start = Instant::now();
    while adam.learning_status(Some("web")).await.expect("status")[0]
        .types
        .iter()
        .any(|t| t.state != LearningState::Stable)
    {
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Rules: a bad query is refused with its column; the real one has three targets.
    let mut rule = NotificationRule {
        id: String::new(),
        name: "high severity".into(),
        enabled: true,
        query: "rule_id:anomaly_detection AND (severity:high".into(),
        notify_on_update: true,
        targets: vec![
            NotificationTarget::Webhook {
                url: format!("{}/hook", http.addr),
                secret: Some("s3cret".into()),
                headers: [("X-Team".to_owned(), "red".to_owned())].into_iter().collect(),
            },
            NotificationTarget::Slack { url: format!("{}/slack", http.addr) },
            NotificationTarget::Email {
                server: smtp_addr.clone(),
                starttls: false,
                username: None,
                password: None,
                from: "telltale@example.com".into(),
                to: vec!["soc@example.com".into()],
            },
        ],
    };
    let e = adam.create_rule(rule.clone()).await.expect_err("bad query");
    assert_eq!(e.code(), Some(tonic::Code::InvalidArgument));
    assert!(e.to_string().contains("query") && e.to_string().contains("column"), "{e}");
    rule.query = "rule_id:anomaly_detection AND (severity:high OR severity:medium)".into();
    let created = adam.create_rule(rule).await.expect("create");
    assert!(!created.id.is_empty());
    let listed = adam.rules().await.expect("list");
    let hook = &listed[0].targets[0];
    assert!(matches!(hook, NotificationTarget::Webhook { secret: Some(s), .. } if s == "********"), "{hook:?}");

    // The webhook target is down for its first two attempts.
    http.fail("/hook", 2);
    run_in(&app, &["/bin/sh", "-c", "/bin/true"]);
    let signal = wait("a signal", 20, || {
        futures_lite_block(adam.signals("container:app")).ok().and_then(|s| s.first().map(|s| s.id.clone()))
    });
    let hooks = wait("the webhook delivery", 20, || Some(http.accepted("/hook", &signal)).filter(|v| !v.is_empty()));
    assert_eq!(hooks.len(), 1, "delivered once despite the outage");
    let h = &hooks[0];
    let expected = format!("sha256={}", telltale_core::notify::signature("s3cret", h.body.as_bytes()));
    assert_eq!(h.headers.get("x-telltale-signature"), Some(&expected), "HMAC verifies");
    assert_eq!(h.headers.get("x-team").map(String::as_str), Some("red"));
    let v: serde_json::Value = serde_json::from_str(&h.body).expect("json");
    assert_eq!(v["event"], "signal.created");
    assert_eq!(v["signal"]["severity"], "high");
    let failed = http.reqs.lock().unwrap().iter().filter(|r| r.path == "/hook" && r.status == 503).count();
    assert_eq!(failed, 2);
    let slack = wait("the slack delivery", 10, || Some(http.accepted("/slack", &signal)).filter(|v| !v.is_empty()));
    let blocks = serde_json::from_str::<serde_json::Value>(&slack[0].body).expect("json")["blocks"].to_string();
    assert!(
        blocks.contains("What happened")
            && blocks.contains("Suggested next steps")
            && blocks.contains("Anomaly events")
    );
    let mail = wait("the email", 10, || mails.lock().unwrap().first().cloned());
    assert!(
        mail.contains("new high signal") && mail.contains("soc@example.com") && mail.contains("What happened"),
        "{mail}"
    );

    // An update storm is one message per rate-limit window, with everything in it.
    for f in ["/etc/group", "/etc/shells", "/etc/services", "/etc/protocols", "/etc/networks"] {
        run_in(&app, &["/bin/sh", "-c", &format!("{w} open {f}")]);
    }
    let updates = wait("the coalesced update", 15, || {
        let v = http.accepted("/hook", &signal);
        (v.len() >= 2 && v.last().is_some_and(|r| r.body.contains("/etc/networks"))).then_some(v)
    });
    std::thread::sleep(Duration::from_secs(4));
    let all = http.accepted("/hook", &signal);
    assert!(all.len() <= 3, "rate limited: {} messages for 6 changes", all.len());
    assert!(updates.last().unwrap().body.contains("signal.updated"));

    // Target down, daemon killed, target up, daemon back: delivered once.
    http.fail("/hook", 1_000_000);
    run_in(&app2, &["/bin/sh", "-c", "/bin/true"]);
    let signal2 = wait("a second signal", 20, || {
        futures_lite_block(adam.signals("container:app2")).ok().and_then(|s| s.first().map(|s| s.id.clone()))
    });
    wait("a failed attempt", 10, || {
        http.reqs
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.path == "/hook" && r.status == 503 && r.body.contains(&signal2))
            .then_some(())
    });
    d.kill9();
    http.fail("/hook", 0);
    let d = pod.start();
    let delivered =
        wait("delivery after restart", 20, || Some(http.accepted("/hook", &signal2)).filter(|v| !v.is_empty()));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(delivered.len(), 1);
    assert_eq!(http.accepted("/hook", &signal2).len(), 1, "exactly once");
    let addr = d.api.clone().expect("api");
    let adam = Client::builder(&addr).token("ta").connect().await.expect("connect");
    let audit = adam.audit("@asset.type:notification_rule", None, None, 0).await.expect("audit");
    assert!(audit.iter().any(|e| e.action == "create" && e.principal == "adam"), "{audit:?}");
    d.stop();
}

/// Run a future to completion from sync code inside the test's runtime.
fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
