//! A flood of failed logins against the real daemon (events replayed, no
//! root): a bounded number of audit records, every failure counted.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::time::{Duration, Instant};

use telltale_client::Client;
use telltale_integration::replay::Running;
use telltale_sidecar::api::token_sha256;

/// The value of the series `name` (exactly, labels included) in `/metrics`.
async fn metric(url: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_failed_logins_makes_one_record_per_kind_and_is_counted() {
    const N: usize = 200;
    let cfg = format!(
        "[api]\nlisten = \"127.0.0.1:0\"\n[[api.tokens]]\nprincipal = \"adam\"\nrole = \"admin\"\nsha256 = \"{}\"\n\
         [telemetry.prometheus]\nenabled = true\nlisten = \"127.0.0.1:0\"\n",
        token_sha256("ta")
    );
    let r = Running::start("audit-flood", &cfg).await;
    let addr = r.api();
    // A new guess each time, from several connections.
    for batch in 0..4 {
        let guesser = Client::builder(&addr).token(format!("guess-{batch}")).connect().await.unwrap();
        for _ in 0..N / 4 {
            let e = guesser.learning_status(None).await.unwrap_err();
            assert_eq!(e.code(), Some(tonic::Code::Unauthenticated));
        }
    }
    let adam = Client::builder(&addr).token("ta").connect().await.unwrap();
    let start = Instant::now();
    let failed = loop {
        let failed = adam.audit("@asset.type:api @outcome:failure", None, None, 0).await.unwrap();
        if !failed.is_empty() || start.elapsed() > Duration::from_secs(10) {
            break failed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // One kind (one peer, one reason): its first failure is recorded at
    // once, the repeats wait for the end of the minute in one record.
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].principal, "anonymous");
    let after = failed[0].after.as_ref().expect("details");
    assert_eq!((after["count"].as_u64(), after["peer"].as_str()), (Some(1), Some("127.0.0.1")), "{after}");
    assert!(adam.verify_audit().await.unwrap().ok);

    let url = format!("http://{}/metrics", r.at.metrics.expect("the metrics endpoint listens"));
    assert_eq!(metric(&url, "telltale_api_auth_failures_total{action=\"authenticate\"}").await, Some(N as f64));
    assert_eq!(metric(&url, "telltale_audit_unrecorded_total").await, Some(0.0));
    r.stop().await;
}
