use super::*;
use crate::config::ApiToken;
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
fn without_configured_tokens_every_caller_is_the_local_admin() {
    let auth = Auth::new(&ApiConfig::default());
    let local = Principal { name: "local".into(), role: Role::Admin };
    assert_eq!(auth.authenticate(&metadata(None)), Ok(local.clone()));
    assert_eq!(auth.authenticate(&metadata(Some("Bearer anything"))), Ok(local));
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
    for role in [Role::Viewer, Role::Responder, Role::Admin] {
        for call in Call::ALL {
            let mut req = Request::new(());
            req.extensions_mut().insert(Principal { name: "p".into(), role });
            let got = require(&req, call, &tx);
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
            }
        }
    }
}

#[test]
fn a_request_that_skipped_the_gate_is_unauthenticated() {
    let (tx, mut rx) = mpsc::channel(4);
    let status = Status::from(require(&Request::new(()), Call::GetSignal, &tx).expect_err("no principal"));
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(audited(&mut rx).is_empty());
}

#[test]
fn the_gate_admits_known_tokens_and_audits_the_rest() {
    let (tx, mut rx) = mpsc::channel(8);
    let mut gate = Gate::new(Auth::new(&cfg()), tx);

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

#[test]
fn a_full_audit_queue_never_blocks_a_call() {
    let (tx, mut rx) = mpsc::channel(1);
    let mut gate = Gate::new(Auth::new(&cfg()), tx);
    for _ in 0..3 {
        let status = gate.call(Request::new(())).expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    assert_eq!(audited(&mut rx).len(), 1);
}
