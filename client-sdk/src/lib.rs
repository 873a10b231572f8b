//! Typed async client for telltale's gRPC API (`telltale.v1.Telltale`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), telltale_client::ClientError> {
//! use tokio_stream::StreamExt;
//! let client = telltale_client::Client::builder("http://127.0.0.1:7443").token("secret").connect().await?;
//! for p in client.learning_status(None).await? {
//!     println!("{}: {} behaviours", p.image, p.behaviours);
//! }
//! // Every anomaly after sequence 0, resuming by itself after disconnects.
//! let mut anomalies = client.watch(telltale_client::WatchFilter::default(), 0);
//! while let Some(a) = anomalies.next().await {
//!     let a = a?;
//!     println!("#{} {:?}", a.sequence, a.anomaly.map(|x| x.id));
//! }
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::time::Duration;

pub use telltale_proto::v1 as proto;
use telltale_proto::v1::telltale_client::TelltaleClient;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

/// Client failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not a valid URI.
    #[error("invalid server address {addr:?}: {reason}")]
    Address {
        /// What was given.
        addr: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A TLS file could not be read.
    #[error("reading {path}")]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The token cannot be sent as a header.
    #[error("the token contains characters not allowed in a header")]
    Token,
    /// The traceparent is not a W3C trace context.
    #[error("traceparent {0:?} is not a W3C trace context (00-<32 hex trace id>-<16 hex span id>-<2 hex flags>)")]
    Traceparent(String),
    /// Connecting failed.
    #[error("connecting to {addr}")]
    Connect {
        /// The server.
        addr: String,
        /// Cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// The server answered with an error status.
    #[error("gRPC status {}: {}", .0.code(), .0.message())]
    Status(#[from] Status),
}

impl ClientError {
    /// The gRPC status code, for errors the server returned.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

/// Adds `authorization: Bearer <token>` and, when set, a W3C `traceparent`
/// to every call.
#[derive(Debug, Clone)]
pub struct BearerAuth(Option<MetadataValue<tonic::metadata::Ascii>>, Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        if let Some(v) = &self.1 {
            req.metadata_mut().insert("traceparent", v.clone());
        }
        Ok(req)
    }
}

/// Whether `v` is a W3C trace context `traceparent` (version 00).
pub fn valid_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && parts[1] != "0".repeat(32)
        && hex(parts[2], 16)
        && parts[2] != "0".repeat(16)
        && hex(parts[3], 2)
}

type Inner = TelltaleClient<InterceptedService<Channel, BearerAuth>>;

/// How to connect.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    addr: String,
    token: Option<String>,
    ca: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
    domain: Option<String>,
    timeout: Duration,
    traceparent: Option<String>,
}

impl ClientBuilder {
    /// Join the caller's trace: every call carries this W3C `traceparent`
    /// (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`), so the
    /// daemon's server spans become its children.
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Bearer token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Optional bearer token.
    pub fn maybe_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Trust this CA (PEM) for the server certificate (TLS, `https://` address).
    pub fn ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.ca = Some(ca.into());
        self
    }

    /// Client certificate and key (PEM) for mTLS.
    pub fn identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// Server name to verify (default: the address's host).
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Per-call timeout of unary calls (default 30 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Connect.
    pub async fn connect(self) -> Result<Client, ClientError> {
        let bad = |reason: String| ClientError::Address { addr: self.addr.clone(), reason };
        let mut endpoint = Endpoint::from_shared(self.addr.clone()).map_err(|e| bad(e.to_string()))?;
        endpoint = endpoint.connect_timeout(Duration::from_secs(5));
        let read = |p: &PathBuf| std::fs::read(p).map_err(|source| ClientError::TlsFile { path: p.clone(), source });
        if self.addr.starts_with("https://") || self.ca.is_some() || self.identity.is_some() {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &self.ca {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let Some((cert, key)) = &self.identity {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            if let Some(d) = &self.domain {
                tls = tls.domain_name(d.clone());
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| bad(e.to_string()))?;
        }
        let channel =
            endpoint.connect().await.map_err(|source| ClientError::Connect { addr: self.addr.clone(), source })?;
        let header = match &self.token {
            Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| ClientError::Token)?),
            None => None,
        };
        let traceparent = match &self.traceparent {
            Some(t) if valid_traceparent(t) => Some(t.parse().map_err(|_| ClientError::Traceparent(t.clone()))?),
            Some(t) => return Err(ClientError::Traceparent(t.clone())),
            None => None,
        };
        let inner = TelltaleClient::with_interceptor(channel, BearerAuth(header, traceparent))
            .max_decoding_message_size(64 << 20);
        Ok(Client { inner, timeout: self.timeout })
    }
}

/// Filters of [`Client::watch`] (empty: everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchFilter {
    /// Short image name.
    pub image: String,
    /// Container id or name.
    pub container: String,
    /// Event type.
    pub event_type: proto::EventType,
}

/// A connected client. Cheap to clone (one HTTP/2 connection).
#[derive(Debug, Clone)]
pub struct Client {
    inner: Inner,
    timeout: Duration,
}

impl Client {
    /// Start building a client for `addr` (`http://host:port`, or `https://`).
    pub fn builder(addr: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            addr: addr.into(),
            token: None,
            ca: None,
            identity: None,
            domain: None,
            timeout: Duration::from_secs(30),
            traceparent: None,
        }
    }

    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.set_timeout(self.timeout);
        r
    }

    /// Learning status of every profile, or of one image.
    pub async fn learning_status(&self, image: Option<&str>) -> Result<Vec<proto::ProfileStatus>, ClientError> {
        let r = proto::GetLearningStatusRequest { image: image.unwrap_or_default().to_owned() };
        Ok(self.inner.clone().get_learning_status(self.req(r)).await?.into_inner().profiles)
    }

    /// A profile with its activity tree.
    pub async fn profile(&self, image: &str) -> Result<proto::Profile, ClientError> {
        let r = proto::GetProfileRequest { image: image.to_owned() };
        let p = self.inner.clone().get_profile(self.req(r)).await?.into_inner().profile;
        p.ok_or_else(|| ClientError::Status(Status::internal("server sent no profile")))
    }

    /// A profile as a JSON document.
    pub async fn export_profile(&self, image: &str) -> Result<String, ClientError> {
        let r = proto::ExportProfileRequest { image: image.to_owned() };
        Ok(self.inner.clone().export_profile(self.req(r)).await?.into_inner().json)
    }

    /// Add behaviours to a profile.
    pub async fn add_to_profile(
        &self,
        image: &str,
        behaviours: Vec<proto::BehaviourToAdd>,
    ) -> Result<proto::AddToProfileResponse, ClientError> {
        let r = proto::AddToProfileRequest { image: image.to_owned(), behaviours };
        Ok(self.inner.clone().add_to_profile(self.req(r)).await?.into_inner())
    }

    /// Audit events matching a facet query (e.g. `@asset.type:security_profile`)
    /// in an optional time range (ms since the epoch), most recent `limit`.
    pub async fn audit(
        &self,
        query: &str,
        from_unix_ms: Option<i64>,
        to_unix_ms: Option<i64>,
        limit: u32,
    ) -> Result<Vec<proto::AuditEvent>, ClientError> {
        let r = proto::QueryAuditTrailRequest {
            query: query.to_owned(),
            from_unix_ms: from_unix_ms.unwrap_or(0),
            to_unix_ms: to_unix_ms.unwrap_or(0),
            limit,
        };
        Ok(self.inner.clone().query_audit_trail(self.req(r)).await?.into_inner().events)
    }

    /// Every signal matching a facet query (e.g. `status:open severity:high`),
    /// newest first (all pages).
    pub async fn signals(&self, query: &str) -> Result<Vec<proto::SignalSummary>, ClientError> {
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let r = proto::ListSignalsRequest { query: query.to_owned(), page_size: 500, page_token };
            let resp = self.inner.clone().list_signals(self.req(r)).await?.into_inner();
            out.extend(resp.signals);
            if resp.next_page_token.is_empty() {
                return Ok(out);
            }
            page_token = resp.next_page_token;
        }
    }

    /// One signal with its overview.
    pub async fn signal(&self, id: &str) -> Result<proto::Signal, ClientError> {
        Ok(self.inner.clone().get_signal(self.req(proto::GetSignalRequest { id: id.to_owned() })).await?.into_inner())
    }

    /// Triage a signal: new status, assignee, or mark benign (all of its
    /// anomalies, or `benign_anomaly_ids`).
    pub async fn update_signal(
        &self,
        request: proto::UpdateSignalRequest,
    ) -> Result<proto::UpdateSignalResponse, ClientError> {
        Ok(self.inner.clone().update_signal(self.req(request)).await?.into_inner())
    }

    /// Create a notification rule (admin); the server gives its id.
    pub async fn create_rule(&self, rule: proto::NotificationRule) -> Result<proto::NotificationRule, ClientError> {
        Ok(self.inner.clone().create_notification_rule(self.req(rule)).await?.into_inner())
    }

    /// Replace a notification rule (admin).
    pub async fn update_rule(&self, rule: proto::NotificationRule) -> Result<proto::NotificationRule, ClientError> {
        Ok(self.inner.clone().update_notification_rule(self.req(rule)).await?.into_inner())
    }

    /// Delete a notification rule (admin).
    pub async fn delete_rule(&self, id: &str) -> Result<(), ClientError> {
        let r = proto::DeleteNotificationRuleRequest { id: id.to_owned() };
        self.inner.clone().delete_notification_rule(self.req(r)).await?;
        Ok(())
    }

    /// Every notification rule, secrets redacted (admin).
    pub async fn rules(&self) -> Result<Vec<proto::NotificationRule>, ClientError> {
        let r = proto::ListNotificationRulesRequest {};
        Ok(self.inner.clone().list_notification_rules(self.req(r)).await?.into_inner().rules)
    }

    /// Create a suppression rule (responder); the server gives its id.
    pub async fn create_suppression(&self, rule: proto::Suppression) -> Result<proto::Suppression, ClientError> {
        Ok(self.inner.clone().create_suppression(self.req(rule)).await?.into_inner())
    }

    /// Delete a suppression rule (responder).
    pub async fn delete_suppression(&self, id: &str) -> Result<(), ClientError> {
        let r = proto::DeleteSuppressionRequest { id: id.to_owned() };
        self.inner.clone().delete_suppression(self.req(r)).await?;
        Ok(())
    }

    /// Every suppression rule.
    pub async fn suppressions(&self) -> Result<Vec<proto::Suppression>, ClientError> {
        let r = proto::ListSuppressionsRequest {};
        Ok(self.inner.clone().list_suppressions(self.req(r)).await?.into_inner().suppressions)
    }

    /// Verify the audit trail's hash chain (admin).
    pub async fn verify_audit(&self) -> Result<proto::VerifyAuditTrailResponse, ClientError> {
        Ok(self.inner.clone().verify_audit_trail(self.req(proto::VerifyAuditTrailRequest {})).await?.into_inner())
    }

    /// One `StreamSignals` call: signal creations and updates after
    /// `after_sequence` matching `query`, then live ones.
    pub async fn stream_signals(
        &self,
        query: &str,
        after_sequence: u64,
    ) -> Result<tonic::Streaming<proto::SignalStreamItem>, ClientError> {
        let r = proto::StreamSignalsRequest { after_sequence, query: query.to_owned() };
        Ok(self.inner.clone().stream_signals(Request::new(r)).await?.into_inner())
    }

    /// One `StreamAnomalies` call, as the server sends it (lag notices included).
    pub async fn stream_anomalies(
        &self,
        filter: &WatchFilter,
        after_sequence: u64,
    ) -> Result<tonic::Streaming<proto::AnomalyStreamItem>, ClientError> {
        let r = proto::StreamAnomaliesRequest {
            after_sequence,
            image: filter.image.clone(),
            container: filter.container.clone(),
            r#type: filter.event_type as i32,
        };
        Ok(self.inner.clone().stream_anomalies(Request::new(r)).await?.into_inner())
    }

    /// Every anomaly after `after_sequence`, then live ones, forever:
    /// reconnects (with backoff) and resumes from the last sequence number
    /// by itself, including after a "lagged" notice, so nothing is missed
    /// or repeated. Errors that retrying cannot fix (authentication,
    /// permission, bad arguments) end the stream.
    pub fn watch(
        &self,
        filter: WatchFilter,
        after_sequence: u64,
    ) -> ReceiverStream<Result<proto::SequencedAnomaly, ClientError>> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let client = self.clone();
        tokio::spawn(async move {
            let mut last = after_sequence;
            let mut backoff = Duration::from_millis(100);
            loop {
                match client.stream_anomalies(&filter, last).await {
                    Ok(mut stream) => {
                        backoff = Duration::from_millis(100);
                        while let Some(item) = stream.next().await {
                            match item.map(|i| i.item) {
                                Ok(Some(proto::anomaly_stream_item::Item::Anomaly(a))) => {
                                    if a.sequence <= last {
                                        continue;
                                    }
                                    last = a.sequence;
                                    if tx.send(Ok(a)).await.is_err() {
                                        return;
                                    }
                                }
                                Ok(Some(proto::anomaly_stream_item::Item::Lagged(l))) => {
                                    tracing::debug!(
                                        skipped = l.skipped,
                                        resume_after = l.resume_after,
                                        "Lagged; resuming."
                                    );
                                    last = last.min(l.resume_after);
                                    break;
                                }
                                Ok(None) => {}
                                Err(status) => {
                                    tracing::debug!(%status, "Anomaly stream broke; reconnecting.");
                                    break;
                                }
                            }
                        }
                    }
                    Err(ClientError::Status(s)) if !retryable(s.code()) => {
                        let _ = tx.send(Err(ClientError::Status(s))).await;
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "Anomaly stream unavailable; retrying.");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        ReceiverStream::new(rx)
    }
}

fn retryable(code: tonic::Code) -> bool {
    !matches!(
        code,
        tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
            | tonic::Code::InvalidArgument
            | tonic::Code::NotFound
            | tonic::Code::Unimplemented
    )
}

/// Stable names of the API's enums, for printing.
pub mod names {
    use super::proto;

    /// `exec`, `file`, `dns`, `connect` (`?` if unknown).
    pub fn event_type(t: i32) -> &'static str {
        match proto::EventType::try_from(t) {
            Ok(proto::EventType::Exec) => "exec",
            Ok(proto::EventType::File) => "file",
            Ok(proto::EventType::Dns) => "dns",
            Ok(proto::EventType::Connect) => "connect",
            _ => "?",
        }
    }

    /// `open`, `under_review`, `archived` (`?` if unknown).
    pub fn signal_status(s: i32) -> &'static str {
        match proto::SignalStatus::try_from(s) {
            Ok(proto::SignalStatus::Open) => "open",
            Ok(proto::SignalStatus::UnderReview) => "under_review",
            Ok(proto::SignalStatus::Archived) => "archived",
            _ => "?",
        }
    }

    /// A signal as text: a header line, then What happened, Suggested next
    /// steps and Anomaly events.
    pub fn signal_text(s: &proto::Signal) -> String {
        let summary = s.summary.clone().unwrap_or_default();
        let c = summary.container.unwrap_or_default();
        let mut out = format!(
            "signal {}  rule_id:{}  severity:{}  status:{}  container:{}  image:{}:{}\n",
            summary.id,
            summary.rule_id,
            summary.severity,
            signal_status(summary.status),
            c.id,
            c.image,
            c.tag
        );
        out.push_str(&format!("\nWhat happened\n  {}\n\nSuggested next steps\n", s.what_happened));
        for n in &s.next_steps {
            out.push_str(&format!("  - {n}\n"));
        }
        out.push_str("\nAnomaly events\n");
        for e in &s.events {
            out.push_str(&format!("  {e}\n"));
        }
        out
    }

    /// `learning`, `stable`, `unstable` (`?` if unknown).
    pub fn learning_state(s: i32) -> &'static str {
        match proto::LearningState::try_from(s) {
            Ok(proto::LearningState::Learning) => "learning",
            Ok(proto::LearningState::Stable) => "stable",
            Ok(proto::LearningState::Unstable) => "unstable",
            _ => "?",
        }
    }
}

/// Behaviour builders for [`Client::add_to_profile`].
pub mod behaviour {
    use super::proto;

    fn with(lineage: &[&str], kind: proto::behaviour::Kind) -> proto::BehaviourToAdd {
        proto::BehaviourToAdd {
            lineage: lineage.iter().map(|s| (*s).to_owned()).collect(),
            behaviour: Some(proto::Behaviour { kind: Some(kind) }),
        }
    }

    /// The process node `lineage` (outermost first, the executable last).
    pub fn exec(lineage: &[&str]) -> proto::BehaviourToAdd {
        with(lineage, proto::behaviour::Kind::Exec(proto::ExecBehaviour {}))
    }

    /// A file opened by the process `lineage`.
    pub fn file(lineage: &[&str], path: &str, access: &[proto::Access]) -> proto::BehaviourToAdd {
        with(
            lineage,
            proto::behaviour::Kind::File(proto::FileBehaviour {
                path: path.to_owned(),
                access: access.iter().map(|a| *a as i32).collect(),
            }),
        )
    }

    /// A DNS question by the process `lineage`.
    pub fn dns(lineage: &[&str], name: &str, qtype: &str) -> proto::BehaviourToAdd {
        with(
            lineage,
            proto::behaviour::Kind::Dns(proto::DnsBehaviour { name: name.to_owned(), r#type: qtype.to_owned() }),
        )
    }

    /// An endpoint (address or CIDR; port 0 = any, with a CIDR).
    pub fn connect(lineage: &[&str], protocol: proto::Protocol, address: &str, port: u32) -> proto::BehaviourToAdd {
        with(
            lineage,
            proto::behaviour::Kind::Connect(proto::ConnectBehaviour {
                protocol: protocol as i32,
                address: address.to_owned(),
                port,
            }),
        )
    }
}
