//! Who is calling and what they may do. A bearer token's SHA-256 names a
//! principal with a role (viewer < responder < admin); the interceptor
//! ([`Gate`]) authenticates every call of the service and of reflection,
//! and each handler asks for the role its [`Call`] needs. Failures of both
//! kinds are audited.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use telltale_core::audit::{Action, AssetType, Outcome, Verb};
use telltale_core::clock::now_ms;

use super::error::CallError;
use crate::bus::Command;
use crate::config::{ApiConfig, Role};

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Name from the token configuration.
    pub name: String,
    /// Role.
    pub role: Role,
}

/// Token hashes → principals. Empty: no authentication (loopback only,
/// enforced by the configuration check); every caller is a local admin.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: HashMap<String, Principal>,
}

/// Hex SHA-256 of a token, as stored in the configuration.
pub fn token_sha256(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a caller was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
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
        }
    }

    /// Authenticate a request's metadata.
    pub fn authenticate(&self, md: &MetadataMap) -> Result<Principal, AuthError> {
        if self.tokens.is_empty() {
            return Ok(Principal { name: "local".into(), role: Role::Admin });
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

/// Queue an audit record for the daemon. Never blocks a call: a full
/// queue drops the record, with a log line.
pub(super) fn record(audit: &mpsc::Sender<Command>, action: Action) {
    let (principal, verb) = (action.principal.clone(), action.action.clone());
    if audit.try_send(Command::Audit(action)).is_err() {
        tracing::warn!(%principal, action = %verb, "Audit queue full: record not written.");
    }
}

/// The caller of `req` (set by [`Gate`]) if their role allows `call`;
/// a denial is audited through `audit`.
pub(super) fn require<T>(req: &Request<T>, call: Call, audit: &mpsc::Sender<Command>) -> Result<Principal, CallError> {
    let p = req.extensions().get::<Principal>().cloned().ok_or(AuthError::NotChecked)?;
    let need = call.needs();
    if p.role < need {
        record(
            audit,
            Action::new(now_ms(), &p.name, AssetType::Api, call.name(), Verb::Authorize, Outcome::Failure).after(Some(
                serde_json::json!({"role": format!("{:?}", p.role), "needed": format!("{need:?}"), "call": call.name()}),
            )),
        );
        return Err(CallError::Forbidden { principal: p.name, have: p.role, call, need });
    }
    Ok(p)
}

/// The interceptor: authenticates a call and leaves its [`Principal`] in
/// the request's extensions; a failure is audited (with the peer address)
/// and answered `UNAUTHENTICATED`.
#[derive(Debug, Clone)]
pub struct Gate {
    auth: Arc<Auth>,
    audit: mpsc::Sender<Command>,
}

impl Gate {
    /// Checks calls against `auth`, auditing failures through `audit`.
    pub fn new(auth: Auth, audit: mpsc::Sender<Command>) -> Self {
        Self { auth: Arc::new(auth), audit }
    }
}

impl tonic::service::Interceptor for Gate {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        match self.auth.authenticate(req.metadata()) {
            Ok(principal) => {
                req.extensions_mut().insert(principal);
                Ok(req)
            }
            Err(e) => {
                let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
                record(
                    &self.audit,
                    Action::new(now_ms(), "anonymous", AssetType::Api, "", Verb::Authenticate, Outcome::Failure)
                        .after(Some(serde_json::json!({"reason": e.to_string(), "peer": peer}))),
                );
                Err(CallError::from(e).into())
            }
        }
    }
}

#[cfg(test)]
mod tests;
