use super::*;
use crate::config::ApiToken;
use std::time::Duration;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::Code;

const VIEWER_TOKEN: &str = "v-token";
const RESPONDER_TOKEN: &str = "r-token";
const ADMIN_TOKEN: &str = "a-token";

fn cfg() -> ApiConfig {
    let token = |principal: &str, role, token: &str| ApiToken {
        principal: principal.into(),
        role,
        sha256: token_sha256(token),
    };
    ApiConfig {
        tokens: vec![
            token("vera", Role::Viewer, VIEWER_TOKEN),
            token("rita", Role::Responder, RESPONDER_TOKEN),
            // Hashes are matched whatever their case in the configuration.
            ApiToken { principal: "adam".into(), role: Role::Admin, sha256: token_sha256(ADMIN_TOKEN).to_uppercase() },
        ],
        ..ApiConfig::default()
    }
}

fn metadata(authorization: Option<&str>) -> MetadataMap {
    let mut md = MetadataMap::new();
    if let Some(v) = authorization {
        md.insert("authorization", MetadataValue::try_from(v).unwrap());
    }
    md
}

/// Failures audited through `tx`, repeats counted for a minute.
fn failures(tx: &mpsc::Sender<Command>) -> FailureAudit {
    FailureAudit::new(tx.clone(), Arc::new(Metrics::default()))
}

fn audited(rx: &mut mpsc::Receiver<Command>) -> Vec<Action> {
    let mut out = Vec::new();
    while let Ok(c) = rx.try_recv() {
        match c {
            Command::Audit(a) => out.push(a),
            other => panic!("unexpected command {other:?}"),
        }
    }
    out
}

#[test]
fn token_hash_is_hex_sha256() {
    assert_eq!(token_sha256("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

#[test]
fn without_tokens_or_client_certificates_tcp_admits_no_one() {
    let auth = Auth::new(&ApiConfig::default());
    for header in [None, Some("Bearer anything")] {
        let e = auth.authenticate(&metadata(header)).expect_err("no one");
        assert_eq!(e, AuthError::NoCredentialsConfigured);
        let status = Status::from(CallError::from(e));
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(
            status.message().contains("--socket") && status.message().contains("api.tokens"),
            "{}",
            status.message()
        );
    }
}

#[test]
fn without_tokens_a_verified_client_certificate_is_an_admin() {
    let cfg = ApiConfig {
        tls: Some(crate::config::TlsConfig {
            cert: "/c.pem".into(),
            key: "/k.pem".into(),
            client_ca: Some("/ca.pem".into()),
        }),
        ..ApiConfig::default()
    };
    let admin = Principal { name: MTLS_PRINCIPAL.into(), role: Role::Admin };
    assert_eq!(Auth::new(&cfg).authenticate(&metadata(None)), Ok(admin));
}

fn peer(verdict: Verdict) -> LocalPeer {
    LocalPeer { pid: Some(4242), uid: 1000, verdict }
}

#[test]
fn local_callers_are_admins_named_by_their_process_unless_watched() {
    let admin = Principal { name: "uid:1000 pid:4242".into(), role: Role::Admin };
    let outside = peer(Verdict::Outside { cgroup: "/sys/fs/cgroup/user.slice".into() });
    assert_eq!(Auth::local(Some(&outside)), Ok(admin.clone()));
    let own = peer(Verdict::OwnContainer { cgroup: "/sys/fs/cgroup/pod/sidecar".into() });
    assert_eq!(Auth::local(Some(&own)), Ok(admin));

    let watched = peer(Verdict::Watched { cgroup: "/sys/fs/cgroup/pod/web\n".into() });
    let e = Auth::local(Some(&watched)).expect_err("watched");
    assert_eq!(
        e.to_string(),
        "uid:1000 pid:4242 is in the watched cgroup \"/sys/fs/cgroup/pod/web\\n\": what telltale watches may not administer it"
    );
    let unknown = peer(Verdict::Unknown { why: "gone".into() });
    assert!(matches!(Auth::local(Some(&unknown)), Err(AuthError::UnplacedCaller { .. })));
    assert_eq!(Auth::local(None), Err(AuthError::NotChecked));
}

#[test]
fn the_local_gate_refuses_watched_callers_whatever_token_they_send_and_audits_them() {
    let (tx, mut rx) = mpsc::channel(8);
    let mut gate = Gate::local(failures(&tx));
    let mut req = Request::new(());
    *req.metadata_mut() = metadata(Some("Bearer a-token"));
    req.extensions_mut().insert(peer(Verdict::Watched { cgroup: "/sys/fs/cgroup/pod/web".into() }));
    let status = gate.call(req).expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);
    let records = audited(&mut rx);
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].principal.as_str(), records[0].action.as_str()), ("uid:1000 pid:4242", "authenticate"));
    assert_eq!(records[0].after.as_ref().expect("details")["peer"], "local socket");

    let mut req = Request::new(());
    req.extensions_mut().insert(peer(Verdict::Outside { cgroup: "/sys/fs/cgroup/user.slice".into() }));
    let req = gate.call(req).expect("admitted");
    assert_eq!(
        req.extensions().get::<Principal>().map(|p| (p.name.as_str(), p.role)),
        Some(("uid:1000 pid:4242", Role::Admin))
    );
    // A request that did not come through the socket has no peer.
    assert_eq!(gate.call(Request::new(())).expect_err("no peer").code(), Code::Unauthenticated);
}

#[test]
fn credentials_are_checked() {
    let auth = Auth::new(&cfg());
    assert_eq!(auth.authenticate(&metadata(None)), Err(AuthError::Missing));
    for wrong_scheme in ["Basic dmVyYTp4", "Token v-token", "Bearerv-token", "v-token", "", "Bearer "] {
        assert_eq!(auth.authenticate(&metadata(Some(wrong_scheme))), Err(AuthError::Scheme), "{wrong_scheme:?}");
    }
    for bad in ["Bearer nope", "Bearer x y", "Bearer V-TOKEN", "Bearer v-token2"] {
        assert_eq!(auth.authenticate(&metadata(Some(bad))), Err(AuthError::BadToken), "{bad:?}");
    }
    let mut md = MetadataMap::new();
    md.insert("authorization", MetadataValue::try_from(&b"Bearer v-tok\xe9n"[..]).unwrap());
    assert_eq!(auth.authenticate(&md), Err(AuthError::NotAscii));

    let vera = Principal { name: "vera".into(), role: Role::Viewer };
    for good in ["Bearer v-token", "bearer v-token", "BEARER  v-token ", " Bearer v-token"] {
        assert_eq!(auth.authenticate(&metadata(Some(good))), Ok(vera.clone()), "{good:?}");
    }
    assert_eq!(
        auth.authenticate(&metadata(Some("Bearer a-token"))),
        Ok(Principal { name: "adam".into(), role: Role::Admin })
    );
    assert_eq!(
        auth.authenticate(&metadata(Some("Bearer r-token"))),
        Ok(Principal { name: "rita".into(), role: Role::Responder })
    );
}

#[test]
fn each_call_needs_the_documented_role() {
    use Call::*;
    let viewer = [
        StreamAnomalies,
        StreamSignals,
        GetLearningStatus,
        GetProfile,
        ExportProfile,
        ListSignals,
        GetSignal,
        ListSuppressions,
        QueryAuditTrail,
    ];
    let responder = [AddToProfile, UpdateSignal, CreateSuppression, DeleteSuppression];
    let admin = [
        CreateNotificationRule,
        UpdateNotificationRule,
        DeleteNotificationRule,
        ListNotificationRules,
        VerifyAuditTrail,
    ];
    assert_eq!(viewer.len() + responder.len() + admin.len(), Call::ALL.len());
    for c in Call::ALL {
        let want = if viewer.contains(&c) {
            Role::Viewer
        } else if responder.contains(&c) {
            Role::Responder
        } else {
            assert!(admin.contains(&c), "{c} is in no list");
            Role::Admin
        };
        assert_eq!(c.needs(), want, "{c}");
    }
    let names: std::collections::BTreeSet<&str> = Call::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(names.len(), Call::ALL.len());
}

#[test]
fn each_role_is_allowed_exactly_the_calls_it_covers_and_denials_are_audited() {
    let (tx, mut rx) = mpsc::channel(64);
    let failures = failures(&tx);
    for role in [Role::Viewer, Role::Responder, Role::Admin] {
        for call in Call::ALL {
            let mut req = Request::new(());
            req.extensions_mut().insert(Principal { name: "p".into(), role });
            let got = require(&req, call, &failures);
            let records = audited(&mut rx);
            if role >= call.needs() {
                assert_eq!(got.ok(), Some(Principal { name: "p".into(), role }), "{role:?} {call}");
                assert!(records.is_empty(), "{role:?} {call}: {records:?}");
            } else {
                let e = got.expect_err("denied");
                let status = Status::from(e);
                assert_eq!(status.code(), Code::PermissionDenied, "{role:?} {call}");
                assert_eq!(
                    status.message(),
                    format!("principal \"p\" has role {role:?}; {call} needs {:?}", call.needs())
                );
                assert_eq!(records.len(), 1, "{role:?} {call}");
                let a = &records[0];
                assert_eq!(
                    (a.principal.as_str(), a.action.as_str(), a.outcome.as_str(), a.asset_id.as_str()),
                    ("p", "authorize", "failure", call.name())
                );
                let after = a.after.as_ref().expect("details");
                assert_eq!(after["needed"], format!("{:?}", call.needs()));
                assert_eq!(after["count"], 1);
            }
        }
    }
}

#[test]
fn a_request_that_skipped_the_gate_is_unauthenticated() {
    let (tx, mut rx) = mpsc::channel(4);
    let status = Status::from(require(&Request::new(()), Call::GetSignal, &failures(&tx)).expect_err("no principal"));
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(audited(&mut rx).is_empty());
}

#[test]
fn the_gate_admits_known_tokens_and_audits_the_rest() {
    let (tx, mut rx) = mpsc::channel(8);
    let mut gate = Gate::new(Auth::new(&cfg()), failures(&tx));

    let mut req = Request::new(());
    *req.metadata_mut() = metadata(Some("Bearer r-token"));
    let req = gate.call(req).expect("admitted");
    assert_eq!(req.extensions().get::<Principal>(), Some(&Principal { name: "rita".into(), role: Role::Responder }));
    assert!(audited(&mut rx).is_empty());

    for (header, reason) in [(None, AuthError::Missing), (Some("Bearer stolen"), AuthError::BadToken)] {
        let mut req = Request::new(());
        *req.metadata_mut() = metadata(header);
        let status = gate.call(req).expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), reason.to_string());
        let records = audited(&mut rx);
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].principal.as_str(), records[0].action.as_str()), ("anonymous", "authenticate"));
        assert_eq!(records[0].after.as_ref().expect("details")["reason"], reason.to_string());
    }
}

/// The `count` of each record.
fn counts(records: &[Action]) -> Vec<u64> {
    records.iter().map(|a| a.after.as_ref().and_then(|v| v["count"].as_u64()).expect("a count")).collect()
}

#[tokio::test]
async fn a_full_audit_queue_never_blocks_a_call_and_loses_nothing() {
    let (tx, mut rx) = mpsc::channel(1);
    let metrics = Arc::new(Metrics::default());
    let failures = FailureAudit::with(tx.clone(), metrics.clone(), Duration::from_millis(1), 16);
    let mut gate = Gate::new(Auth::new(&cfg()), failures.clone());
    let refuse = |gate: &mut Gate| {
        let status = gate.call(Request::new(())).expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated);
    };
    // The first is queued; the queue is then full.
    for _ in 0..3 {
        refuse(&mut gate);
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    // The repeats wait for room, counting on.
    assert_eq!(failures.flush(false, |a| failures.offer(a)), 2);
    refuse(&mut gate);
    assert_eq!(counts(&audited(&mut rx)), [1]);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(failures.flush(false, |a| failures.offer(a)), 0);
    assert_eq!(counts(&audited(&mut rx)), [3]);

    // Once the daemon stopped, what cannot be written is counted and logged:
    // the first of a kind at once, the repeats when the server stops.
    drop(rx);
    let unrecorded = |m: &Metrics| {
        m.samples().iter().find(|s| s.def.name == crate::telemetry::metrics::AUDIT_UNRECORDED).map(|s| s.value)
    };
    assert_eq!(unrecorded(&metrics), Some(0));
    refuse(&mut gate);
    refuse(&mut gate);
    refuse(&mut gate);
    assert_eq!(unrecorded(&metrics), Some(1));
    tokio::time::timeout(Duration::from_secs(10), failures.run(async {})).await.expect("ends at once");
    assert_eq!(unrecorded(&metrics), Some(3));
    let failed = metrics.samples().into_iter().find(|s| {
        s.def.name == crate::telemetry::metrics::AUTH_FAILURES && s.labels == [("action", "authenticate".to_owned())]
    });
    assert_eq!(failed.map(|s| s.value), Some(7));
}

#[test]
fn repeated_failures_make_one_record_with_their_count() {
    let (tx, mut rx) = mpsc::channel(64);
    let failures = FailureAudit::with(tx, Arc::new(Metrics::default()), Duration::from_secs(3600), 16);
    let mut gate = Gate::new(Auth::new(&cfg()), failures.clone());
    for header in [Some("Bearer stolen"), Some("Bearer stolen"), None, Some("Bearer other"), Some("Bearer stolen")] {
        let mut req = Request::new(());
        *req.metadata_mut() = metadata(header);
        gate.call(req).expect_err("refused");
    }
    let first = audited(&mut rx);
    assert_eq!(counts(&first), [1, 1], "the first of each reason at once: {first:#?}");
    // A window still open is only flushed when asked for everything.
    assert_eq!(failures.flush(false, |a| failures.offer(a)), 0);
    assert!(audited(&mut rx).is_empty());
    failures.flush(true, |a| failures.offer(a));
    let repeats = audited(&mut rx);
    assert_eq!(counts(&repeats), [3]);
    let after = repeats[0].after.as_ref().expect("details");
    assert_eq!(after["reason"], AuthError::BadToken.to_string());
    assert!(after["first_ms"].as_i64() <= after["last_ms"].as_i64());
}
