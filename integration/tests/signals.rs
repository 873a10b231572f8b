//! Signals through the SDK against a real daemon: grouping per container,
//! overview, triage, mark benign (the same actions never signal again), audit.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use std::time::{Duration, Instant};

use telltale_client::{
    Benign, Client, EventType, LearningState, Severity, SignalStatus, SignalStreamItem, SignalSummary, SignalUpdate,
    Suppression,
};
use telltale_integration::daemon::{run_in, Pod};
use telltale_integration::{kernel_tests_enabled, telltalectl_bin, workload_bin};
use telltale_sidecar::api::token_sha256;

async fn wait_signals(c: &Client, query: &str, pred: impl Fn(&[SignalSummary]) -> bool) -> Vec<SignalSummary> {
    let start = Instant::now();
    loop {
        let s = c.signals(query).await.expect("signals");
        if pred(&s) {
            return s;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "signals never matched: {s:#?}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_group_triage_and_mark_benign() {
    if !kernel_tests_enabled("signals_group_triage_and_mark_benign") {
        return;
    }
    let cfg = format!(
        "[learning]\nmin_duration = \"2s\"\nstable_period = \"2s\"\nmax_duration = \"120s\"\nwarmup = \"0s\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\n\
         [[api.tokens]]\nprincipal = \"vera\"\nrole = \"viewer\"\nsha256 = \"{}\"\n\
         [[api.tokens]]\nprincipal = \"rita\"\nrole = \"responder\"\nsha256 = \"{}\"\n\
         [[api.tokens]]\nprincipal = \"adam\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
        token_sha256("tv"),
        token_sha256("tr"),
        token_sha256("ta")
    );
    let pod = Pod::new("signals", &[("app", "web:v1"), ("app2", "web:v1")], &cfg);
    let d = pod.start();
    let addr = d.api.clone().expect("api");
    let viewer = Client::builder(&addr).token("tv").connect().await.expect("connect");
    let rita = Client::builder(&addr).token("tr").connect().await.expect("connect");
    let w = workload_bin();
    let (app, app2) = (pod.container("app"), pod.container("app2"));
    let learned = format!("{w} open /etc/hostname");
    run_in(&app, &["/bin/sh", "-c", &learned]);
    let start = Instant::now();
    while viewer.learning_status(Some("web")).await.expect("status")[0]
        .types
        .iter()
        .any(|t| t.state != LearningState::Stable)
    {
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The attack: a new program, then a new file. One signal, in order.
    let attack = format!("/bin/true && {w} open /etc/passwd");
    run_in(&app, &["/bin/sh", "-c", &attack]);
    let s = wait_signals(&viewer, "container:app", |s| s.len() == 1 && s[0].anomalies == 2).await;
    let sig = &s[0];
    assert_eq!((sig.rule_id.as_str(), &sig.severity), ("anomaly_detection", &Severity::High));
    assert_eq!(sig.status, SignalStatus::Open);
    let full = viewer.signal(&sig.id).await.expect("get");
    assert!(full.what_happened.contains("app") && full.what_happened.contains("web:v1"), "{}", full.what_happened);
    assert!(full.next_steps.iter().any(|n| n.contains("telltalectl profile show web")), "{:?}", full.next_steps);
    assert!(full.next_steps.iter().any(|n| n.contains(&format!("telltalectl signals benign {}", sig.id))));
    assert_eq!(full.events.len(), 2);
    assert!(full.events[0].contains("new process /usr/bin/true"), "{:?}", full.events);
    assert!(full.events[1].contains("/etc/passwd"), "{:?}", full.events);
    // Another container of the image gets its own signal.
    run_in(&app2, &["/bin/sh", "-c", &attack]);
    wait_signals(&viewer, "image:web", |s| s.len() == 2).await;
    let e = viewer.signal("nope").await.expect_err("unknown");
    assert_eq!(e.code(), Some(tonic::Code::NotFound));
    let e = viewer.signals("status:(").await.expect_err("bad query");
    assert_eq!(e.code(), Some(tonic::Code::InvalidArgument));

    // Triage: under review, then mark benign (viewer may not).
    let review = SignalUpdate::new(sig.id.clone()).status(SignalStatus::UnderReview).assignee("rita");
    let e = viewer.update_signal(review.clone()).await.expect_err("viewer");
    assert_eq!(e.code(), Some(tonic::Code::PermissionDenied));
    let r = rita.update_signal(review).await.expect("review");
    assert_eq!(r.signal.summary.status, SignalStatus::UnderReview);
    let benign = SignalUpdate::new(sig.id.clone()).benign(Benign::All);
    let r = rita.update_signal(benign).await.expect("benign");
    assert!(r.behaviours_added >= 2, "the new program, what it loaded, and the file: {}", r.behaviours_added);
    assert_eq!(r.signal.summary.status, SignalStatus::Archived);

    // The same actions no longer signal; something else still does.
    run_in(&app, &["/bin/sh", "-c", &attack]);
    run_in(&app, &["/bin/sh", "-c", &format!("{w} open /etc/group")]);
    let s = wait_signals(&viewer, "container:app status:open", |s| s.len() == 1).await;
    let after = viewer.signal(&s[0].id).await.expect("get");
    assert_eq!(after.events.len(), 1, "only the marker: {:?}", after.events);
    assert!(after.events[0].contains("/etc/group"), "{:?}", after.events);

    // A suppression rule: matching anomalies are learned, not signalled.
    let e = rita
        .create_suppression(Suppression { name: "everything".into(), ..Default::default() })
        .await
        .expect_err("too wide");
    assert_eq!(e.code(), Some(tonic::Code::InvalidArgument));
    let sup = rita
        .create_suppression(Suppression {
            name: "the app reads its certificates".into(),
            image: "web".into(),
            event_type: Some(EventType::File),
            detail: "/etc/ssl/*".into(),
            ..Default::default()
        })
        .await
        .expect("suppression");
    assert_eq!(viewer.suppressions().await.expect("list").len(), 1);
    run_in(&app2, &["/bin/sh", "-c", &format!("{w} open /etc/ssl/openssl.cnf")]);
    run_in(&app2, &["/bin/sh", "-c", &format!("{w} open /etc/issue")]);
    let s2 = wait_signals(&viewer, "container:app2", |s| s.iter().any(|x| x.anomalies >= 3)).await;
    let full2 = viewer.signal(&s2[0].id).await.expect("get");
    assert!(full2.events.iter().any(|e| e.contains("/etc/issue")), "{:?}", full2.events);
    assert!(!full2.events.iter().any(|e| e.contains("/etc/ssl")), "suppressed: {:?}", full2.events);
    rita.delete_suppression(&sup.id).await.expect("delete");
    assert!(viewer.suppressions().await.expect("list").is_empty());

    // Every triage action is in the audit trail.
    let adam = Client::builder(&addr).token("ta").connect().await.expect("connect");
    let audit = adam.audit("@asset.type:security_signal", None, None, 0).await.expect("audit");
    let actions: Vec<(&str, &str, &str)> =
        audit.iter().map(|e| (e.principal.as_str(), e.action.as_str(), e.outcome.as_str())).collect();
    assert!(
        actions.contains(&("rita", "update", "success")) && actions.contains(&("rita", "mark_benign", "success")),
        "{actions:?}"
    );

    // The signal feed: creations and updates in order, resumable.
    let mut feed = viewer.stream_signals("container:app", 0).await.expect("stream");
    let mut changes = Vec::new();
    while let Ok(Some(Ok(item))) =
        tokio::time::timeout(Duration::from_millis(700), tokio_stream::StreamExt::next(&mut feed)).await
    {
        if let SignalStreamItem::Change(c) = item {
            changes.push(c);
        }
    }
    assert!(changes.len() >= 4, "created, update, review, benign, new: {changes:?}");
    assert!(changes[0].created && changes[0].signal.id == sig.id);
    assert!(changes.windows(2).all(|w| w[0].sequence < w[1].sequence));
    let statuses: Vec<SignalStatus> = changes.iter().map(|c| c.signal.status).collect();
    assert!(statuses.contains(&SignalStatus::UnderReview) && statuses.contains(&SignalStatus::Archived));
    let resume_at = changes[1].sequence;
    let mut resumed = viewer.stream_signals("container:app", resume_at).await.expect("stream");
    let first = tokio::time::timeout(Duration::from_secs(5), tokio_stream::StreamExt::next(&mut resumed))
        .await
        .expect("in time")
        .expect("item")
        .expect("ok");
    match first {
        SignalStreamItem::Change(c) => assert_eq!(c.sequence, changes[2].sequence),
        other => panic!("{other:?}"),
    }

    // And from the command line.
    let out = std::process::Command::new(telltalectl_bin())
        .args(["--addr", &addr, "--token", "tv", "signals", "show", &sig.id])
        .output()
        .expect("telltalectl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("What happened") && text.contains("Suggested next steps") && text.contains("Anomaly events"),
        "{text}"
    );
    assert!(text.contains("status:archived"), "{text}");
    d.stop();
}
