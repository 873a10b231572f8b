//! Who is calling and what they may do. A bearer token's SHA-256 names a
//! principal with a role (viewer < responder < admin); the interceptor
//! ([`Gate`]) authenticates every call of the service and of reflection,
//! and each handler asks for the role its [`Call`] needs. Failures of both
//! kinds are audited through [`FailureAudit`]: the first of a kind at
//! once, its repeats within a minute in one record with their count (see
//! `tally`), so that a flood of them makes a bounded number of records and
//! none is dropped silently.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use telltale_core::audit::{Action, Verb};
use telltale_core::clock::now_ms;

use super::error::{echo, CallError};
use super::local::{LocalPeer, Verdict};
use crate::bus::Command;
use crate::config::{ApiConfig, Role};
use crate::telemetry::metrics::Metrics;
use tally::{Failure, Offer, Tally};

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Name from the token configuration.
    pub name: String,
    /// Role.
    pub role: Role,
}

/// Who may call over TCP: the holders of a configured token; without
/// tokens, clients with a certificate of `api.tls.client_ca` (mTLS, checked
/// by the TLS handshake) as admins; without either, no one (the local
/// admin socket is the way in). The local socket's callers are identified
/// by their process instead ([`Auth::local`]).
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: HashMap<String, Principal>,
    client_certificates: bool,
}

/// The principal of an mTLS client when no tokens are configured.
pub const MTLS_PRINCIPAL: &str = "mtls-client";

/// Hex SHA-256 of a token, as stored in the configuration.
pub fn token_sha256(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a caller was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// TCP without tokens or client certificates: no one may call.
    #[error(
        "the API over TCP admits no one: no [[api.tokens]] (or api.tls.client_ca) are configured. \
         Use the local admin socket from outside the watched containers (telltalectl --socket <data_dir>/api.sock, \
         address unix://<data_dir>/api.sock) or configure tokens"
    )]
    NoCredentialsConfigured,
    /// A local caller whose process is in the watched cgroup.
    #[error("{principal} is in the watched cgroup {}: what telltale watches may not administer it", echo(.cgroup))]
    WatchedCaller {
        /// `uid:<uid> pid:<pid>`.
        principal: String,
        /// Its cgroup directory.
        cgroup: String,
    },
    /// A local caller that cannot be told apart from a watched process.
    #[error("{principal} cannot be placed outside the watched cgroup ({why}): refused")]
    UnplacedCaller {
        /// `uid:<uid> pid:<pid>`.
        principal: String,
        /// Why.
        why: String,
    },
    /// No `authorization` header.
    #[error("missing credentials: send `authorization: Bearer <token>`")]
    Missing,
    /// The header holds bytes that are not visible ASCII.
    #[error("authorization header is not ASCII")]
    NotAscii,
    /// The header is not `Bearer <token>`.
    #[error("authorization header must be `Bearer <token>`")]
    Scheme,
    /// No configured token has this hash.
    #[error("invalid token")]
    BadToken,
    /// The request did not pass the interceptor (a wiring mistake).
    #[error("request was not authenticated")]
    NotChecked,
}

impl Auth {
    /// From the configured tokens.
    pub fn new(cfg: &ApiConfig) -> Self {
        Self {
            tokens: cfg
                .tokens
                .iter()
                .map(|t| (t.sha256.to_ascii_lowercase(), Principal { name: t.principal.clone(), role: t.role }))
                .collect(),
            client_certificates: cfg.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        }
    }

    /// Authenticate a TCP request's metadata.
    pub fn authenticate(&self, md: &MetadataMap) -> Result<Principal, AuthError> {
        if self.tokens.is_empty() {
            return if self.client_certificates {
                Ok(Principal { name: MTLS_PRINCIPAL.into(), role: Role::Admin })
            } else {
                Err(AuthError::NoCredentialsConfigured)
            };
        }
        let header = md.get("authorization").ok_or(AuthError::Missing)?;
        let value = header.to_str().map_err(|_| AuthError::NotAscii)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Scheme)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Scheme);
        }
        self.tokens.get(&token_sha256(token.trim())).cloned().ok_or(AuthError::BadToken)
    }
}

impl Auth {
    /// Authenticate a caller of the local admin socket by its process: an
    /// admin named `uid:<uid> pid:<pid>` unless it is in (or cannot be
    /// placed outside) the watched cgroup. Tokens play no part.
    pub fn local(peer: Option<&LocalPeer>) -> Result<Principal, AuthError> {
        let peer = peer.ok_or(AuthError::NotChecked)?;
        let principal = peer.principal();
        match &peer.verdict {
            Verdict::Outside { .. } | Verdict::OwnContainer { .. } => {
                Ok(Principal { name: principal, role: Role::Admin })
            }
            Verdict::Watched { cgroup } => {
                Err(AuthError::WatchedCaller { principal, cgroup: cgroup.display().to_string() })
            }
            Verdict::Unknown { why } => Err(AuthError::UnplacedCaller { principal, why: why.clone() }),
        }
    }
}

/// The calls of `telltale.v1.Telltale`, each needing a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// Follow anomalies.
    StreamAnomalies,
    /// Follow signal changes.
    StreamSignals,
    /// Learning status of the profiles.
    GetLearningStatus,
    /// One profile.
    GetProfile,
    /// One profile as JSON.
    ExportProfile,
    /// Add behaviours to a profile.
    AddToProfile,
    /// Signals matching a query.
    ListSignals,
    /// One signal.
    GetSignal,
    /// Triage a signal (status, assignee, mark benign).
    UpdateSignal,
    /// Create a notification rule.
    CreateNotificationRule,
    /// Replace a notification rule.
    UpdateNotificationRule,
    /// Delete a notification rule.
    DeleteNotificationRule,
    /// Every notification rule (secrets redacted).
    ListNotificationRules,
    /// Create a suppression rule.
    CreateSuppression,
    /// Delete a suppression rule.
    DeleteSuppression,
    /// Every suppression rule.
    ListSuppressions,
    /// Query the audit trail (viewers and responders see their own records).
    QueryAuditTrail,
    /// Check the audit trail's hash chain.
    VerifyAuditTrail,
}

impl Call {
    /// Every call.
    pub const ALL: [Call; 18] = [
        Call::StreamAnomalies,
        Call::StreamSignals,
        Call::GetLearningStatus,
        Call::GetProfile,
        Call::ExportProfile,
        Call::AddToProfile,
        Call::ListSignals,
        Call::GetSignal,
        Call::UpdateSignal,
        Call::CreateNotificationRule,
        Call::UpdateNotificationRule,
        Call::DeleteNotificationRule,
        Call::ListNotificationRules,
        Call::CreateSuppression,
        Call::DeleteSuppression,
        Call::ListSuppressions,
        Call::QueryAuditTrail,
        Call::VerifyAuditTrail,
    ];

    /// The role the call needs: viewers read and stream, responders triage
    /// and add to profiles, admins manage notification rules and verify
    /// the audit trail.
    pub fn needs(self) -> Role {
        match self {
            Call::StreamAnomalies
            | Call::StreamSignals
            | Call::GetLearningStatus
            | Call::GetProfile
            | Call::ExportProfile
            | Call::ListSignals
            | Call::GetSignal
            | Call::ListSuppressions
            | Call::QueryAuditTrail => Role::Viewer,
            Call::AddToProfile | Call::UpdateSignal | Call::CreateSuppression | Call::DeleteSuppression => {
                Role::Responder
            }
            Call::CreateNotificationRule
            | Call::UpdateNotificationRule
            | Call::DeleteNotificationRule
            | Call::ListNotificationRules
            | Call::VerifyAuditTrail => Role::Admin,
        }
    }

    /// The method name in the proto service.
    pub fn name(self) -> &'static str {
        match self {
            Call::StreamAnomalies => "StreamAnomalies",
            Call::StreamSignals => "StreamSignals",
            Call::GetLearningStatus => "GetLearningStatus",
            Call::GetProfile => "GetProfile",
            Call::ExportProfile => "ExportProfile",
            Call::AddToProfile => "AddToProfile",
            Call::ListSignals => "ListSignals",
            Call::GetSignal => "GetSignal",
            Call::UpdateSignal => "UpdateSignal",
            Call::CreateNotificationRule => "CreateNotificationRule",
            Call::UpdateNotificationRule => "UpdateNotificationRule",
            Call::DeleteNotificationRule => "DeleteNotificationRule",
            Call::ListNotificationRules => "ListNotificationRules",
            Call::CreateSuppression => "CreateSuppression",
            Call::DeleteSuppression => "DeleteSuppression",
            Call::ListSuppressions => "ListSuppressions",
            Call::QueryAuditTrail => "QueryAuditTrail",
            Call::VerifyAuditTrail => "VerifyAuditTrail",
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How long the repeats of a kind of failure are counted into one audit
/// record, from the first.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Kinds of failure (peer, principal, reason...) counted apart at once;
/// failures of more kinds are counted together, per action.
pub const FAILURE_KINDS: usize = 1024;

/// How long the last records wait for room in the daemon's inbox when the
/// server stops.
const LAST_FLUSH: Duration = Duration::from_secs(2);

/// Failed authentications and denied calls on their way to the audit trail
/// (the daemon's inbox), counted in a [`Tally`]. Never blocks a call. A
/// record the inbox has no room for is kept and counted on, and offered
/// again every second by [`FailureAudit::run`]; one that can never be
/// written (the daemon stopped) is logged and counted in
/// `telltale.audit.unrecorded`.
#[derive(Debug, Clone)]
pub struct FailureAudit {
    tally: Arc<Mutex<Tally>>,
    inbox: mpsc::Sender<Command>,
    metrics: Arc<Metrics>,
    window: Duration,
}

impl FailureAudit {
    /// Records through `inbox`; repeats counted for [`FAILURE_WINDOW`],
    /// [`FAILURE_KINDS`] kinds apart.
    pub fn new(inbox: mpsc::Sender<Command>, metrics: Arc<Metrics>) -> Self {
        Self::with(inbox, metrics, FAILURE_WINDOW, FAILURE_KINDS)
    }

    /// The same with another window (at least 1 ms) and bound.
    pub fn with(inbox: mpsc::Sender<Command>, metrics: Arc<Metrics>, window: Duration, kinds: usize) -> Self {
        let window = window.max(Duration::from_millis(1));
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        Self { tally: Arc::new(Mutex::new(Tally::new(window_ms, kinds))), inbox, metrics, window }
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        // A panic while counting leaves plain counts behind: keep using them.
        self.tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn offer(&self, action: Action) -> Offer {
        match self.inbox.try_send(Command::Audit(action)) {
            Ok(()) => Offer::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => Offer::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Closed,
        }
    }

    /// Count one failure (recorded at once when it is the first of its kind).
    fn failed(&self, failure: Failure) {
        self.metrics.auth_failure(failure.verb.name());
        let lost = self.tally().add(failure, now_ms(), |a| self.offer(a));
        self.unrecorded(lost.as_slice());
    }

    /// Offer the records of the windows that ended (every one, with `all`)
    /// through `offer`. Returns how many failures wait for room.
    fn flush(&self, all: bool, offer: impl FnMut(Action) -> Offer) -> u64 {
        let done = self.tally().flush(now_ms(), all, offer);
        self.unrecorded(&done.lost);
        done.waiting
    }

    /// Log and count records that can never be written.
    fn unrecorded(&self, lost: &[Action]) {
        for a in lost {
            let count = a.after.as_ref().and_then(|v| v["count"].as_u64()).unwrap_or(1);
            self.metrics.audit_unrecorded(count);
            let details = a.after.as_ref().map(ToString::to_string).unwrap_or_default();
            tracing::error!(
                principal = %a.principal,
                action = %a.action,
                call = %a.asset_id,
                count,
                %details,
                "Audit record of failures not written: the daemon no longer reads its inbox."
            );
        }
    }

    /// Every second (every half window, if shorter) until `stop`: offer the
    /// records of the windows that ended, with a warning when some start
    /// waiting for room. Then offer every record, waiting up to 2 s for
    /// room; what still cannot be written is logged and counted.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let period = (self.window / 2).clamp(Duration::from_millis(1), Duration::from_secs(1));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        let mut waiting = 0;
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = ticker.tick() => {
                    let now_waiting = self.flush(false, |a| self.offer(a));
                    if now_waiting > 0 && waiting == 0 {
                        tracing::warn!(failures = now_waiting, "Audit queue full: records of failed authentications and denied calls wait in memory, counting on.");
                    }
                    waiting = now_waiting;
                }
            }
        }
        let deadline = tokio::time::Instant::now() + LAST_FLUSH;
        while self.flush(true, |a| self.offer(a)) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.flush(true, |_| Offer::Closed);
    }
}

/// The caller of `req` (set by [`Gate`]) if their role allows `call`;
/// a denial is audited through `failures`.
pub(super) fn require<T>(req: &Request<T>, call: Call, failures: &FailureAudit) -> Result<Principal, CallError> {
    let p = req.extensions().get::<Principal>().cloned().ok_or(AuthError::NotChecked)?;
    let need = call.needs();
    if p.role < need {
        failures.failed(Failure::new(
            Verb::Authorize,
            &p.name,
            call.name(),
            vec![("role", format!("{:?}", p.role)), ("needed", format!("{need:?}")), ("call", call.name().to_owned())],
        ));
        return Err(CallError::Forbidden { principal: p.name, have: p.role, call, need });
    }
    Ok(p)
}

/// The interceptor: authenticates a call and leaves its [`Principal`] in
/// the request's extensions; a failure is audited (with the peer: its IP
/// address, or its process on the local socket, and the reason) and
/// answered `UNAUTHENTICATED`.
#[derive(Debug, Clone)]
pub struct Gate {
    /// TCP: tokens (or mTLS); `None`: the local socket, by process.
    auth: Option<Arc<Auth>>,
    failures: FailureAudit,
}

impl Gate {
    /// Checks TCP calls against `auth`, auditing failures through `failures`.
    pub fn new(auth: Auth, failures: FailureAudit) -> Self {
        Self { auth: Some(Arc::new(auth)), failures }
    }

    /// Checks calls of the local socket by their process ([`Auth::local`]).
    pub fn local(failures: FailureAudit) -> Self {
        Self { auth: None, failures }
    }
}

impl tonic::service::Interceptor for Gate {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let (result, principal, peer) = match &self.auth {
            Some(auth) => (
                auth.authenticate(req.metadata()),
                "anonymous".to_owned(),
                // The address without the port: each connection has a port of its own.
                req.remote_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
            ),
            None => {
                let local = req.extensions().get::<LocalPeer>();
                let principal = local.map_or_else(|| "anonymous".to_owned(), LocalPeer::principal);
                (Auth::local(local), principal, "local socket".to_owned())
            }
        };
        match result {
            Ok(principal) => {
                req.extensions_mut().insert(principal);
                Ok(req)
            }
            Err(e) => {
                self.failures.failed(Failure::new(
                    Verb::Authenticate,
                    &principal,
                    "",
                    vec![("reason", e.to_string()), ("peer", peer)],
                ));
                Err(CallError::from(e).into())
            }
        }
    }
}

mod tally;

#[cfg(test)]
mod tests;
