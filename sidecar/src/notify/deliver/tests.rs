use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::store::{Batch, Outgoing, RuleChange};
use telltale_core::notify::Rule;

/// A request a test receiver got.
#[derive(Debug, Clone)]
struct Received {
    delivery: String,
    signature: Option<String>,
    body: String,
}

/// How a test receiver answers.
#[derive(Clone)]
enum Answer {
    /// 200 to everything.
    Accept,
    /// Never answers.
    Hang,
    /// These statuses first, then 200.
    Statuses(Arc<Mutex<Vec<u16>>>),
    /// 200, once the gate lets it through.
    Gated(Arc<Semaphore>),
}

/// A webhook receiver on 127.0.0.1.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(answer: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else { return };
                tokio::spawn(handle(conn, answer.clone(), log.clone()));
            }
        });
        Receiver { url, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn handle(mut conn: TcpStream, answer: Answer, log: Arc<Mutex<Vec<Received>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).await.unwrap();
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "body cut short");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
    let delivery = header("x-telltale-delivery").unwrap_or_default();
    log.lock().unwrap().push(Received { delivery, signature: header("x-telltale-signature"), body });
    let status = match answer {
        Answer::Accept => 200,
        Answer::Hang => {
            std::future::pending::<()>().await;
            return;
        }
        Answer::Statuses(s) => {
            let mut s = s.lock().unwrap();
            if s.is_empty() {
                200
            } else {
                s.remove(0)
            }
        }
        Answer::Gated(gate) => {
            let _pass = gate.acquire().await.unwrap();
            200
        }
    };
    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = conn.write_all(reply.as_bytes()).await;
}

fn tmp(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("telltale-deliver-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn webhook(url: &str, secret: Option<&str>) -> Target {
    Target::Webhook { url: url.into(), secret: secret.map(Into::into), headers: Default::default() }
}

fn rule(targets: Vec<Target>) -> Rule {
    Rule {
        id: "rule-1".into(),
        name: "soc".into(),
        enabled: true,
        query: String::new(),
        targets,
        notify_on_update: true,
    }
}

fn outgoing(target: usize, signal: &str, body: &str, rate_limit_ms: i64) -> Outgoing {
    Outgoing {
        rule_id: "rule-1".into(),
        target,
        signal_id: signal.into(),
        message: Message::Http { body: body.into() },
        rate_limit_ms,
    }
}

/// A clock the test sets.
fn clock() -> (Arc<AtomicI64>, Clock) {
    let now = Arc::new(AtomicI64::new(0));
    let read = now.clone();
    (now, Arc::new(move || read.load(Ordering::SeqCst)))
}

fn http() -> reqwest::Client {
    // No timeout: a hanging receiver hangs for as long as the test runs.
    reqwest::Client::builder().build().unwrap()
}

/// Wait (up to a generous deadline, a failure not a measure) until `done`.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_hanging_target_does_not_hold_back_the_others() {
    let hanging = Receiver::start(Answer::Hang).await;
    let fast = Receiver::start(Answer::Accept).await;
    let dir = tmp("hang");
    let mut store = Store::open(&dir).unwrap();
    let r = rule(vec![webhook(&hanging.url, None), webhook(&fast.url, Some("k"))]);
    let mut batch = Batch { rules: vec![RuleChange::SaveRule(r)], ..Batch::default() };
    for s in ["sig-1", "sig-2", "sig-3"] {
        // The hanging target's message is queued first each time.
        batch.outbox.push(outgoing(0, s, &format!("{s} to hanging"), 60_000));
        batch.outbox.push(outgoing(1, s, &format!("{s} to fast"), 60_000));
    }
    store.commit(&batch).unwrap();
    let expected: Vec<String> =
        store.due(0, 10).unwrap().iter().filter(|d| d.target == 1).map(Due::delivery_id).collect();
    assert_eq!(expected.len(), 3);

    let (_, clock) = clock();
    let d = Deliverer::new(store, http(), Arc::new(Metrics::default()), 4, clock);
    let (stop, closing) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(d.run(closing));

    // Sent one after the other, the fast target would wait for ever.
    let reader = Store::open_read_only(&dir).unwrap();
    until("the fast target's messages", || {
        reader.due(i64::MAX, 10).unwrap().iter().all(|d| d.target == 0) && fast.received().len() == 3
    })
    .await;
    until("the hanging target's first request", || hanging.received().len() == 1).await;
    let got = fast.received();
    assert_eq!(got.iter().map(|r| r.delivery.clone()).collect::<Vec<_>>(), expected);
    assert_eq!(
        got.iter().map(|r| r.body.as_str()).collect::<Vec<_>>(),
        ["sig-1 to fast", "sig-2 to fast", "sig-3 to fast"]
    );
    assert!(got.iter().all(|r| r.signature.as_deref().is_some_and(|s| s.starts_with("sha256="))));
    assert_eq!(hanging.received().len(), 1, "its lane waits behind its first message");
    for s in ["sig-1", "sig-2", "sig-3"] {
        assert!(reader.was_notified("rule-1", 1, s).unwrap());
        assert!(!reader.was_notified("rule-1", 0, s).unwrap());
    }

    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(reader.due(i64::MAX, 10).unwrap().len(), 3, "the hanging target's messages stay queued");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_retry_carries_the_same_delivery_id_and_an_update_a_new_one() {
    let flaky = Receiver::start(Answer::Statuses(Arc::new(Mutex::new(vec![503, 503])))).await;
    let dir = tmp("retry");
    let mut daemon = Store::open(&dir).unwrap();
    let r = rule(vec![webhook(&flaky.url, None)]);
    daemon
        .commit(&Batch {
            rules: vec![RuleChange::SaveRule(r)],
            outbox: vec![outgoing(0, "sig-1", "created", 60_000)],
            ..Batch::default()
        })
        .unwrap();
    let (now, clock) = clock();
    let mut d = Deliverer::new(Store::open(&dir).unwrap(), http(), Arc::new(Metrics::default()), 4, clock);

    assert_eq!(d.round().await.unwrap(), 0, "503");
    now.store(999, Ordering::SeqCst);
    assert_eq!(d.round().await.unwrap(), 0);
    assert_eq!(flaky.received().len(), 1, "not before the backoff (1 s)");
    now.store(1_000, Ordering::SeqCst);
    assert_eq!(d.round().await.unwrap(), 0, "503 again");
    // An update is merged in while the message waits for its retry (3 s).
    now.store(1_500, Ordering::SeqCst);
    daemon
        .commit(&Batch { outbox: vec![outgoing(0, "sig-1", "updated", 60_000)], now_ms: 1_500, ..Batch::default() })
        .unwrap();
    now.store(3_000, Ordering::SeqCst);
    assert_eq!(d.round().await.unwrap(), 1);

    let got = flaky.received();
    let ids: Vec<&str> = got.iter().map(|r| r.delivery.as_str()).collect();
    assert_eq!(ids, ["1.1", "1.1", "1.2"]);
    assert_eq!(got.iter().map(|r| r.body.as_str()).collect::<Vec<_>>(), ["created", "created", "updated"]);
    assert!(daemon.due(i64::MAX, 10).unwrap().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_update_arriving_while_its_message_is_sent_is_delivered_next() {
    let gate = Arc::new(Semaphore::new(0));
    let slow = Receiver::start(Answer::Gated(gate.clone())).await;
    let dir = tmp("race");
    let mut daemon = Store::open(&dir).unwrap();
    daemon
        .commit(&Batch {
            rules: vec![RuleChange::SaveRule(rule(vec![webhook(&slow.url, None)]))],
            outbox: vec![outgoing(0, "sig-1", "created", 0)],
            ..Batch::default()
        })
        .unwrap();
    let (_, clock) = clock();
    let mut d = Deliverer::new(Store::open(&dir).unwrap(), http(), Arc::new(Metrics::default()), 4, clock);
    let sending = tokio::spawn(async move {
        let n = d.round().await.unwrap();
        (d, n)
    });
    until("the first request", || slow.received().len() == 1).await;
    daemon.commit(&Batch { outbox: vec![outgoing(0, "sig-1", "updated", 0)], ..Batch::default() }).unwrap();
    gate.add_permits(10);
    let (mut d, n) = sending.await.unwrap();
    assert_eq!(n, 1);
    let queued = daemon.due(i64::MAX, 10).unwrap();
    assert_eq!(queued.len(), 1, "the update was kept: {queued:?}");
    assert_eq!(d.round().await.unwrap(), 1);
    let got = slow.received();
    assert_eq!(
        got.iter().map(|r| (r.delivery.as_str(), r.body.as_str())).collect::<Vec<_>>(),
        [("1.1", "created"), ("1.2", "updated")]
    );
    assert!(daemon.due(i64::MAX, 10).unwrap().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_email_message_id_is_stable_and_names_the_sender_domain() {
    assert_eq!(message_id("7.2", "telltale@example.com"), "<telltale.7.2@example.com>");
    assert_eq!(message_id("7.2", "Telltale <alerts@corp.example>"), "<telltale.7.2@corp.example>");
    assert_eq!(message_id("7.2", "nobody"), "<telltale.7.2@telltale.invalid>");
}
