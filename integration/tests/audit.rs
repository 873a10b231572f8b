//! The audit trail through the API: every action and failed auth is
//! recorded, queries filter by facet and by role, tampering is detected.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::time::{Duration, Instant};

use telltale_client::{behaviour, AuditEvent, Client};
use telltale_integration::daemon::Pod;
use telltale_integration::{kernel_tests_enabled, telltalectl_bin};
use telltale_sidecar::api::token_sha256;

async fn client(addr: &str, token: &str) -> Client {
    Client::builder(addr).token(token).connect().await.expect("connect")
}

async fn wait_for(admin: &Client, query: &str, n: usize) -> Vec<AuditEvent> {
    let start = Instant::now();
    loop {
        let ev = admin.audit(query, None, None, 0).await.expect("audit");
        if ev.len() >= n {
            return ev;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "only {} of {n} audit events for {query}: {ev:?}", ev.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_audited_filtered_by_role_and_tamper_evident() {
    if !kernel_tests_enabled("actions_are_audited_filtered_by_role_and_tamper_evident") {
        return;
    }
    let mut cfg = String::from("[api]\nlisten = \"127.0.0.1:0\"\n");
    for (who, role, token) in [("vera", "viewer", "tv"), ("rita", "responder", "tr"), ("adam", "admin", "ta")] {
        cfg.push_str(&format!(
            "[[api.tokens]]\nprincipal = \"{who}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
            token_sha256(token)
        ));
    }
    let pod = Pod::new("audit", &[("app", "web:v1")], &cfg);
    let d = pod.start();
    let addr = d.api.clone().expect("api");
    let (vera, rita, adam) = (client(&addr, "tv").await, client(&addr, "tr").await, client(&addr, "ta").await);

    rita.add_to_profile("web", vec![behaviour::exec(&["/usr/bin/ok"])]).await.expect("add");
    rita.add_to_profile("nope", vec![behaviour::dns(&["/usr/bin/ok"], "x.example", "A")])
        .await
        .expect_err("unknown profile");
    vera.add_to_profile("web", vec![behaviour::exec(&["/usr/bin/x"])]).await.expect_err("viewer");
    client(&addr, "wrong").await.learning_status(None).await.expect_err("bad token");

    let q = r#"@evt.name:"Cloud Security Platform" @asset.type:security_profile"#;
    let profile_events = wait_for(&adam, q, 2).await;
    let summary: Vec<(String, String, String, String)> = profile_events
        .iter()
        .map(|e| (e.principal.clone(), e.asset_id.clone(), e.action.clone(), e.outcome.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("rita".into(), "web".into(), "add_to_profile".into(), "success".into()),
            ("rita".into(), "nope".into(), "add_to_profile".into(), "failure".into()),
        ]
    );
    assert!(profile_events[0].after.as_ref().is_some_and(|a| a["added"] == 1), "{:?}", profile_events[0]);
    assert!(profile_events.iter().all(|e| e.evt_name == "Cloud Security Platform"));
    let denied = wait_for(&adam, "@asset.type:api @outcome:failure", 2).await;
    let who: Vec<(&str, &str)> = denied.iter().map(|e| (e.principal.as_str(), e.action.as_str())).collect();
    assert!(who.contains(&("vera", "authorize")) && who.contains(&("anonymous", "authenticate")), "{who:?}");

    // Without admin, a principal sees only its own actions.
    let mine = rita.audit("", None, None, 0).await.expect("rita");
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|e| e.principal == "rita"));
    let mine = vera.audit("", None, None, 0).await.expect("vera");
    assert!(mine.iter().all(|e| e.principal == "vera") && !mine.is_empty());
    // Time range and bad queries.
    let tomorrow = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let future = adam.audit("", Some(tomorrow), None, 0).await.expect("range");
    assert!(future.is_empty());
    let e = adam.audit("@asset.type:(", None, None, 0).await.expect_err("bad query");
    assert_eq!(e.code(), Some(tonic::Code::InvalidArgument));
    assert!(e.to_string().contains("column"), "{e}");

    // Verification: admin only; intact, then edited, then a deleted record.
    let e = vera.verify_audit().await.expect_err("viewer cannot verify");
    assert_eq!(e.code(), Some(tonic::Code::PermissionDenied));
    let v = adam.verify_audit().await.expect("verify");
    assert!(v.ok, "{v:?}");
    let all = adam.audit("", None, None, 0).await.expect("all");
    let db = rusqlite::Connection::open(pod.dir.join("data/telltale.db")).expect("db");
    let original: String = db.query_row("SELECT body FROM audit WHERE seq = 1", [], |r| r.get(0)).expect("row");
    db.execute("UPDATE audit SET body = replace(body, '\"rita\"', '\"mallory\"') WHERE seq = 1", []).expect("tamper");
    let v = adam.verify_audit().await.expect("verify");
    assert!(!v.ok && v.error.contains("record 1 was altered"), "{v:?}");
    let out = std::process::Command::new(telltalectl_bin())
        .args(["--addr", &addr, "--token", "ta", "audit", "verify"])
        .output()
        .expect("telltalectl");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("TAMPERED"));
    db.execute("UPDATE audit SET body = ?1 WHERE seq = 1", [original]).expect("restore");
    assert!(adam.verify_audit().await.expect("verify").ok);
    db.execute("DELETE FROM audit WHERE seq = 2", []).expect("delete");
    let v = adam.verify_audit().await.expect("verify");
    assert!(!v.ok && v.error.contains("broken before record 3"), "{v:?} ({} records before)", all.len());
    d.stop();
}
