//! Typed async client for telltale's gRPC API (`telltale.v1.Telltale`).
//!
//! Callers get Rust types ([`types`], re-exported here): enums such as
//! [`EventType`] and [`SignalStatus`] instead of wire numbers, times as
//! [`time::OffsetDateTime`]. The protobuf messages stay inside the SDK.
//!
//! ```no_run
//! # async fn demo() -> Result<(), telltale_client::ClientError> {
//! use tokio_stream::StreamExt;
//! let client = telltale_client::Client::builder("http://127.0.0.1:7443").token("secret").connect().await?;
//! // Or, on the daemon's machine and outside the watched containers, the
//! // local admin socket (no token): `Client::builder("unix:///var/lib/telltale/api.sock")`.
//! for p in client.learning_status(None).await? {
//!     println!("{}: {} behaviours", p.image, p.behaviours);
//! }
//! // Every anomaly after sequence 0, resuming by itself after disconnects.
//! let mut anomalies = client.watch(telltale_client::WatchFilter::default(), 0);
//! while let Some(a) = anomalies.next().await {
//!     let a = a?;
//!     println!("#{} {} {}", a.sequence, a.anomaly.event_type, a.anomaly.id);
//! }
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use telltale_proto::v1 as pb;
use telltale_proto::v1::telltale_client::TelltaleClient;
use time::OffsetDateTime;
use tokio::net::UnixStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

mod convert;
mod resume;
pub mod types;

use convert::{all, FromWire, ToWire};
pub use types::*;

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
    /// The server's answer cannot be read: a message it must send is
    /// missing, a time is out of range, a document is not JSON.
    #[error("the server's answer is not understood: {field} {problem}")]
    Response {
        /// The proto field (`Anomaly.container`).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
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

/// The scheme of a local socket address: `unix:///var/lib/telltale/api.sock`.
pub const UNIX_SCHEME: &str = "unix://";

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
        if let Some(path) = self.addr.strip_prefix(UNIX_SCHEME) {
            if path.is_empty() {
                return Err(
                    bad("a unix:// address needs the socket's path (unix:///var/lib/telltale/api.sock)".into()),
                );
            }
            if self.ca.is_some() || self.identity.is_some() {
                return Err(bad("the local socket does not speak TLS: drop --ca/--cert/--key".into()));
            }
            let path = PathBuf::from(path);
            // The URI only fills the requests' :authority; the connector
            // goes to the socket, every time the channel (re)connects.
            let endpoint = Endpoint::from_static("http://localhost").connect_timeout(Duration::from_secs(5));
            let connector = tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(UnixStream::connect(path).await?)) }
            });
            let channel = endpoint
                .connect_with_connector(connector)
                .await
                .map_err(|source| ClientError::Connect { addr: self.addr.clone(), source })?;
            return self.finish(channel);
        }
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
        self.finish(channel)
    }

    /// The client over a connected `channel`.
    fn finish(self, channel: Channel) -> Result<Client, ClientError> {
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

/// Filters of [`Client::watch`] (empty / `None`: everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchFilter {
    /// Short image name.
    pub image: String,
    /// Container id or name.
    pub container: String,
    /// Event type.
    pub event_type: Option<EventType>,
}

/// One `StreamAnomalies` call's items.
pub type AnomalyStream = Pin<Box<dyn Stream<Item = Result<AnomalyStreamItem, ClientError>> + Send>>;

/// One `StreamSignals` call's items.
pub type SignalStream = Pin<Box<dyn Stream<Item = Result<SignalStreamItem, ClientError>> + Send>>;

/// A connected client. Cheap to clone (one HTTP/2 connection).
#[derive(Debug, Clone)]
pub struct Client {
    inner: Inner,
    timeout: Duration,
}

/// Convert a raw gRPC stream, skipping items of kinds this client does not know.
fn typed<W, T>(raw: tonic::Streaming<W>) -> Pin<Box<dyn Stream<Item = Result<T, ClientError>> + Send>>
where
    W: Send + 'static,
    T: Send + 'static,
    Option<T>: FromWire<W>,
{
    Box::pin(raw.filter_map(|item| match item {
        Ok(w) => Option::<T>::from_wire(w).transpose(),
        Err(status) => Some(Err(ClientError::Status(status))),
    }))
}

impl Client {
    /// Start building a client for `addr`: `http://host:port`,
    /// `https://host:port`, or the daemon's local admin socket
    /// `unix:///path/api.sock` (no TLS; the daemon identifies the caller by
    /// its process, so no token is needed, and refuses processes in the
    /// containers it watches).
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
    pub async fn learning_status(&self, image: Option<&str>) -> Result<Vec<ProfileStatus>, ClientError> {
        let r = pb::GetLearningStatusRequest { image: image.unwrap_or_default().to_owned() };
        all(self.inner.clone().get_learning_status(self.req(r)).await?.into_inner().profiles)
    }

    /// Where the daemon keeps its profiles: this pod's store, or the
    /// fleet's etcd with the state of its link.
    pub async fn profile_store(&self) -> Result<ProfileStore, ClientError> {
        let r = pb::GetLearningStatusRequest { image: String::new() };
        let store = self.inner.clone().get_learning_status(self.req(r)).await?.into_inner().store;
        Ok(store.map(ProfileStore::from).unwrap_or_else(|| pb::ProfileStoreStatus::default().into()))
    }

    /// A profile with its activity tree.
    pub async fn profile(&self, image: &str) -> Result<Profile, ClientError> {
        let r = pb::GetProfileRequest { image: image.to_owned() };
        Profile::from_wire(self.inner.clone().get_profile(self.req(r)).await?.into_inner())
    }

    /// A profile as a JSON document.
    pub async fn export_profile(&self, image: &str) -> Result<String, ClientError> {
        let r = pb::ExportProfileRequest { image: image.to_owned() };
        Ok(self.inner.clone().export_profile(self.req(r)).await?.into_inner().json)
    }

    /// Add behaviours (built with [`behaviour`]) to a profile: they are never
    /// reported again.
    pub async fn add_to_profile(
        &self,
        image: &str,
        behaviours: Vec<BehaviourToAdd>,
    ) -> Result<ProfileAddition, ClientError> {
        let r = pb::AddToProfileRequest {
            image: image.to_owned(),
            behaviours: behaviours.into_iter().map(ToWire::to_wire).collect(),
        };
        ProfileAddition::from_wire(self.inner.clone().add_to_profile(self.req(r)).await?.into_inner())
    }

    /// Audit events matching a facet query (e.g. `@asset.type:security_profile`)
    /// in an optional time range (inclusive), most recent `limit` (0: 1000).
    pub async fn audit(
        &self,
        query: &str,
        from: Option<OffsetDateTime>,
        to: Option<OffsetDateTime>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, ClientError> {
        let r = convert::audit_request(query, from, to, limit);
        all(self.inner.clone().query_audit_trail(self.req(r)).await?.into_inner().events)
    }

    /// Every signal matching a facet query (e.g. `status:open severity:high`),
    /// newest first (all pages).
    pub async fn signals(&self, query: &str) -> Result<Vec<SignalSummary>, ClientError> {
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let r = pb::ListSignalsRequest { query: query.to_owned(), page_size: 500, page_token };
            let pb::ListSignalsResponse { signals, next_page_token } =
                self.inner.clone().list_signals(self.req(r)).await?.into_inner();
            out.extend(all::<_, SignalSummary>(signals)?);
            if next_page_token.is_empty() {
                return Ok(out);
            }
            page_token = next_page_token;
        }
    }

    /// One signal with its overview.
    pub async fn signal(&self, id: &str) -> Result<Signal, ClientError> {
        let r = pb::GetSignalRequest { id: id.to_owned() };
        Signal::from_wire(self.inner.clone().get_signal(self.req(r)).await?.into_inner())
    }

    /// Triage a signal: new status, assignee, or mark benign (all of its
    /// anomalies, or some).
    pub async fn update_signal(&self, update: SignalUpdate) -> Result<SignalUpdated, ClientError> {
        SignalUpdated::from_wire(self.inner.clone().update_signal(self.req(update.to_wire())).await?.into_inner())
    }

    /// Create a notification rule (admin); the server gives its id.
    pub async fn create_rule(&self, rule: NotificationRule) -> Result<NotificationRule, ClientError> {
        NotificationRule::from_wire(
            self.inner.clone().create_notification_rule(self.req(rule.to_wire())).await?.into_inner(),
        )
    }

    /// Replace the notification rule `rule.id` (admin).
    pub async fn update_rule(&self, rule: NotificationRule) -> Result<NotificationRule, ClientError> {
        NotificationRule::from_wire(
            self.inner.clone().update_notification_rule(self.req(rule.to_wire())).await?.into_inner(),
        )
    }

    /// Delete a notification rule (admin).
    pub async fn delete_rule(&self, id: &str) -> Result<(), ClientError> {
        let r = pb::DeleteNotificationRuleRequest { id: id.to_owned() };
        self.inner.clone().delete_notification_rule(self.req(r)).await?;
        Ok(())
    }

    /// Every notification rule, secrets redacted (admin).
    pub async fn rules(&self) -> Result<Vec<NotificationRule>, ClientError> {
        let r = pb::ListNotificationRulesRequest {};
        all(self.inner.clone().list_notification_rules(self.req(r)).await?.into_inner().rules)
    }

    /// Create a suppression rule (responder); the server gives its id.
    pub async fn create_suppression(&self, rule: Suppression) -> Result<Suppression, ClientError> {
        Suppression::from_wire(self.inner.clone().create_suppression(self.req(rule.to_wire())).await?.into_inner())
    }

    /// Delete a suppression rule (responder).
    pub async fn delete_suppression(&self, id: &str) -> Result<(), ClientError> {
        let r = pb::DeleteSuppressionRequest { id: id.to_owned() };
        self.inner.clone().delete_suppression(self.req(r)).await?;
        Ok(())
    }

    /// Every suppression rule.
    pub async fn suppressions(&self) -> Result<Vec<Suppression>, ClientError> {
        let r = pb::ListSuppressionsRequest {};
        all(self.inner.clone().list_suppressions(self.req(r)).await?.into_inner().suppressions)
    }

    /// Verify the audit trail's hash chain (admin).
    pub async fn verify_audit(&self) -> Result<AuditVerification, ClientError> {
        let r = pb::VerifyAuditTrailRequest {};
        AuditVerification::from_wire(self.inner.clone().verify_audit_trail(self.req(r)).await?.into_inner())
    }

    /// One `StreamSignals` call: signal creations and updates after
    /// `after_sequence` matching `query`, then live ones, lag notices
    /// included. [`Client::watch_signals`] resumes by itself.
    pub async fn stream_signals(&self, query: &str, after_sequence: u64) -> Result<SignalStream, ClientError> {
        let r = pb::StreamSignalsRequest { after_sequence, query: query.to_owned() };
        Ok(typed(self.inner.clone().stream_signals(Request::new(r)).await?.into_inner()))
    }

    /// One `StreamAnomalies` call, as the server sends it (lag notices
    /// included). [`Client::watch`] resumes by itself.
    pub async fn stream_anomalies(
        &self,
        filter: &WatchFilter,
        after_sequence: u64,
    ) -> Result<AnomalyStream, ClientError> {
        let r = convert::anomalies_request(filter, after_sequence);
        Ok(typed(self.inner.clone().stream_anomalies(Request::new(r)).await?.into_inner()))
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
    ) -> ReceiverStream<Result<SequencedAnomaly, ClientError>> {
        let client = self.clone();
        resume::resume(after_sequence, move |after| {
            let (client, filter) = (client.clone(), filter.clone());
            Box::pin(async move { client.stream_anomalies(&filter, after).await })
        })
    }

    /// Every signal creation and update matching `query` after
    /// `after_sequence`, then live ones, forever; resumes by itself like
    /// [`Client::watch`].
    pub fn watch_signals(&self, query: &str, after_sequence: u64) -> ReceiverStream<Result<SignalChange, ClientError>> {
        let client = self.clone();
        let query = query.to_owned();
        resume::resume(after_sequence, move |after| {
            let (client, query) = (client.clone(), query.clone());
            Box::pin(async move { client.stream_signals(&query, after).await })
        })
    }
}

/// Behaviour builders for [`Client::add_to_profile`].
pub mod behaviour {
    use crate::types::{Access, Behaviour, BehaviourToAdd, Protocol};

    fn with(lineage: &[&str], behaviour: Behaviour) -> BehaviourToAdd {
        BehaviourToAdd { lineage: lineage.iter().map(|s| (*s).to_owned()).collect(), behaviour }
    }

    /// The process node `lineage` (outermost first, the executable last).
    pub fn exec(lineage: &[&str]) -> BehaviourToAdd {
        with(lineage, Behaviour::Exec)
    }

    /// A file opened by the process `lineage`.
    pub fn file(lineage: &[&str], path: &str, access: &[Access]) -> BehaviourToAdd {
        with(lineage, Behaviour::File { path: path.to_owned(), access: access.to_vec() })
    }

    /// A file pattern (as profiles store and export it: `/proc/{pid}/status`)
    /// opened by the process `lineage`; added as it is, not generalized.
    pub fn file_pattern(lineage: &[&str], pattern: &str, access: &[Access]) -> BehaviourToAdd {
        with(lineage, Behaviour::FilePattern { pattern: pattern.to_owned(), access: access.to_vec() })
    }

    /// A DNS question by the process `lineage`.
    pub fn dns(lineage: &[&str], name: &str, qtype: &str) -> BehaviourToAdd {
        with(lineage, Behaviour::Dns { name: name.to_owned(), qtype: qtype.to_owned() })
    }

    /// An endpoint (address or CIDR; port 0 = any, with a CIDR).
    pub fn connect(lineage: &[&str], protocol: Protocol, address: &str, port: u32) -> BehaviourToAdd {
        with(lineage, Behaviour::Connect { protocol, address: address.to_owned(), port })
    }

    /// A mechanism (`io_uring`) used by the process `lineage`.
    pub fn mechanism(lineage: &[&str], name: &str) -> BehaviourToAdd {
        with(lineage, Behaviour::Mechanism { name: name.to_owned() })
    }
}
