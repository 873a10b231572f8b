//! The gRPC API (tonic): `telltale.v1.Telltale`, standard health and server
//! reflection. Calls are authenticated by bearer token and authorized by
//! role; profile reads and writes go to the daemon loop over a channel, so
//! the detector has one owner.

pub mod convert;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use telltale_proto::v1 as pb;
use telltale_proto::v1::telltale_server::{Telltale, TelltaleServer};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::bus::{Command, Feeds};
use crate::config::{ApiConfig, Role};
use crate::store::{Store, StoreError};
use telltale_core::audit::{Action, AssetType, Outcome, Verb};
use telltale_core::clock::now_ms;
use telltale_core::detect::Anomaly;
use telltale_core::profile::{EventType, Profile};
use telltale_core::signal::SignalChange;
use telltale_core::status::ProfileStatus;

/// Items queued between a stream's forwarding task and the transport.
const CLIENT_QUEUE: usize = 32;

/// Why the API server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// TLS files could not be read.
    #[error("reading TLS file {path}")]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The server failed (bind, TLS configuration...).
    #[error("gRPC server on {addr}")]
    Serve {
        /// Listen address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// Reflection could not be built.
    #[error("building server reflection")]
    Reflection(#[source] tonic_reflection::server::Error),
    /// Binding the listener failed.
    #[error("listening on {addr}")]
    Bind {
        /// Listen address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Where `require` sends audit records of denied calls (set by the interceptor).
#[derive(Debug, Clone)]
struct AuditSink(mpsc::Sender<Command>);

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
    pub fn authenticate(&self, md: &tonic::metadata::MetadataMap) -> Result<Principal, Status> {
        if self.tokens.is_empty() {
            return Ok(Principal { name: "local".into(), role: Role::Admin });
        }
        let header = md
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing credentials: send `authorization: Bearer <token>`"))?;
        let value = header.to_str().map_err(|_| Status::unauthenticated("authorization header is not ASCII"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization header must be `Bearer <token>`"))?;
        self.tokens.get(&token_sha256(token.trim())).cloned().ok_or_else(|| Status::unauthenticated("invalid token"))
    }
}

/// Queue an audit record for the daemon (never blocks a call; a full
/// queue is logged).
fn record(commands: &mpsc::Sender<Command>, action: Action) {
    let (principal, verb) = (action.principal.clone(), action.action.clone());
    if commands.try_send(Command::Audit(action)).is_err() {
        tracing::warn!(%principal, action = %verb, "Audit queue full: record not written.");
    }
}

fn require<T>(req: &Request<T>, role: Role) -> Result<Principal, Status> {
    let p = req
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("request was not authenticated"))?;
    if p.role < role {
        if let Some(commands) = req.extensions().get::<AuditSink>() {
            record(
                &commands.0,
                Action::new(now_ms(), &p.name, AssetType::Api, "", Verb::Authorize, Outcome::Failure)
                    .after(Some(serde_json::json!({"role": format!("{:?}", p.role), "needed": format!("{role:?}")}))),
            );
        }
        return Err(Status::permission_denied(format!(
            "principal {:?} has role {:?}; this call needs {:?}",
            p.name, p.role, role
        )));
    }
    Ok(p)
}

fn store_status(e: StoreError) -> Status {
    Status::internal(format!("store: {e}"))
}

/// The service.
#[derive(Debug, Clone)]
pub struct Api {
    commands: mpsc::Sender<Command>,
    feeds: Feeds,
    data_dir: PathBuf,
    closing: tokio::sync::watch::Receiver<bool>,
    metrics: Arc<crate::telemetry::metrics::Metrics>,
}

impl Api {
    /// A service talking to the daemon loop over `commands`; streams follow
    /// `feeds` after the stored backlog in `data_dir`, and end when
    /// `closing` turns true.
    pub fn new(
        commands: mpsc::Sender<Command>,
        feeds: Feeds,
        data_dir: PathBuf,
        closing: tokio::sync::watch::Receiver<bool>,
        metrics: Arc<crate::telemetry::metrics::Metrics>,
    ) -> Self {
        Self { commands, feeds, data_dir, closing, metrics }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| Status::unavailable("the daemon is shutting down"))?;
        rx.await.map_err(|_| Status::unavailable("the daemon is shutting down"))
    }
}

struct Filter {
    image: String,
    container: String,
    event_type: Option<EventType>,
}

impl Filter {
    fn accepts(&self, a: &Anomaly) -> bool {
        (self.image.is_empty() || a.container.image == self.image)
            && (self.container.is_empty() || a.container.id == self.container || a.container.name == self.container)
            && self.event_type.is_none_or(|t| t == a.event_type)
    }
}

/// Resolves once the daemon says it is closing (or is gone).
async fn wait_closing(rx: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

type SignalStream = Pin<Box<dyn Stream<Item = Result<pb::SignalStreamItem, Status>> + Send>>;

/// Reads the stored items after a sequence number (one page).
type Backlog<T> = fn(&Store, u64) -> Result<Vec<(u64, T)>, StoreError>;

/// A resumable stream: the stored items after `after` (in pages), then live
/// ones from `live` (deduplicated by sequence), until the daemon closes. A
/// client that falls `live`'s capacity behind gets a `Lagged` item telling
/// where to resume, and the stream ends. Never blocks the sender.
#[allow(clippy::too_many_arguments)]
fn resumable<T, P>(
    mut live: broadcast::Receiver<Arc<(u64, T)>>,
    mut closing: tokio::sync::watch::Receiver<bool>,
    after: u64,
    data_dir: PathBuf,
    backlog: Backlog<T>,
    accept: impl Fn(&T) -> bool + Send + 'static,
    item: impl Fn(u64, &T) -> P + Send + 'static,
    lagged: fn(pb::Lagged) -> P,
    metrics: Arc<crate::telemetry::metrics::Metrics>,
) -> tokio_stream::wrappers::ReceiverStream<Result<P, Status>>
where
    T: Send + Sync + 'static,
    P: Send + 'static,
{
    // A small hand-off to the transport; falling behind is measured on the
    // broadcast channel (api.stream_buffer items), never here.
    let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
    let mut last = after;
    tokio::spawn(async move {
        let _client = metrics.stream_client();
        loop {
            let dir = data_dir.clone();
            let page =
                tokio::task::spawn_blocking(move || Store::open_read_only(&dir).and_then(|s| backlog(&s, last))).await;
            let page = match page {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    let _ = tx.send(Err(store_status(e))).await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                    return;
                }
            };
            if page.is_empty() {
                break;
            }
            for (seq, x) in page {
                last = seq;
                if accept(&x) && tx.send(Ok(item(seq, &x))).await.is_err() {
                    return;
                }
            }
        }
        loop {
            let received = tokio::select! {
                r = live.recv() => r,
                () = wait_closing(&mut closing) => {
                    let _ = tx.send(Err(Status::unavailable("telltale is shutting down"))).await;
                    return;
                }
            };
            match received {
                Ok(entry) => {
                    let (seq, x) = &*entry;
                    if *seq <= last {
                        continue;
                    }
                    last = *seq;
                    if accept(x) && tx.send(Ok(item(*seq, x))).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    metrics.stream_lagged(skipped);
                    let message =
                        format!("lagged: {skipped} items skipped; reconnect with after_sequence={last} to get them");
                    let _ = tx.send(Ok(lagged(pb::Lagged { skipped, resume_after: last, message }))).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

type ItemStream = Pin<Box<dyn Stream<Item = Result<pb::AnomalyStreamItem, Status>> + Send>>;

fn item(seq: u64, a: &Anomaly) -> pb::AnomalyStreamItem {
    pb::AnomalyStreamItem {
        item: Some(pb::anomaly_stream_item::Item::Anomaly(pb::SequencedAnomaly {
            sequence: seq,
            anomaly: Some(convert::anomaly(a)),
        })),
    }
}

#[tonic::async_trait]
impl Telltale for Api {
    type StreamAnomaliesStream = ItemStream;

    async fn stream_anomalies(
        &self,
        request: Request<pb::StreamAnomaliesRequest>,
    ) -> Result<Response<Self::StreamAnomaliesStream>, Status> {
        require(&request, Role::Viewer)?;
        let r = request.into_inner();
        let event_type = match pb::EventType::try_from(r.r#type) {
            Ok(t) => convert::from_event_type(t),
            Err(_) => return Err(Status::invalid_argument(format!("field `type`: unknown event type {}", r.r#type))),
        };
        let filter = Filter { image: r.image, container: r.container, event_type };
        let rx = resumable(
            self.feeds.anomalies.subscribe(),
            self.closing.clone(),
            r.after_sequence,
            self.data_dir.clone(),
            |s: &Store, after| s.anomalies_after(after, 500),
            move |a: &Anomaly| filter.accepts(a),
            item,
            |l| pb::AnomalyStreamItem { item: Some(pb::anomaly_stream_item::Item::Lagged(l)) },
            self.metrics.clone(),
        );
        Ok(Response::new(Box::pin(rx)))
    }

    type StreamSignalsStream = SignalStream;

    async fn stream_signals(
        &self,
        request: Request<pb::StreamSignalsRequest>,
    ) -> Result<Response<Self::StreamSignalsStream>, Status> {
        require(&request, Role::Viewer)?;
        let r = request.into_inner();
        let query = telltale_core::query::Query::parse(&r.query)
            .map_err(|e| Status::invalid_argument(format!("field `query`: {e}")))?;
        let rx = resumable(
            self.feeds.signals.subscribe(),
            self.closing.clone(),
            r.after_sequence,
            self.data_dir.clone(),
            |s: &Store, after| s.signal_changes_after(after, 500),
            move |c: &SignalChange| query.matches(&|k| c.signal.facet(k)),
            |seq, c: &SignalChange| pb::SignalStreamItem {
                item: Some(pb::signal_stream_item::Item::Change(pb::SignalChange {
                    sequence: seq,
                    created: c.created,
                    signal: Some(convert::signal_summary(&c.signal)),
                })),
            },
            |l| pb::SignalStreamItem { item: Some(pb::signal_stream_item::Item::Lagged(l)) },
            self.metrics.clone(),
        );
        Ok(Response::new(Box::pin(rx)))
    }

    async fn get_learning_status(
        &self,
        request: Request<pb::GetLearningStatusRequest>,
    ) -> Result<Response<pb::GetLearningStatusResponse>, Status> {
        require(&request, Role::Viewer)?;
        let image = Some(request.into_inner().image).filter(|i| !i.is_empty());
        let wanted = image.clone();
        let statuses = self.ask(|reply| Command::Status { image, reply }).await?;
        if let Some(i) = wanted {
            if statuses.is_empty() {
                return Err(Status::not_found(format!("no profile for image {i:?}")));
            }
        }
        Ok(Response::new(pb::GetLearningStatusResponse {
            profiles: statuses.iter().map(convert::profile_status).collect(),
        }))
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        require(&request, Role::Viewer)?;
        let image = request.into_inner().image;
        let (p, st) = self.profile(&image).await?;
        Ok(Response::new(pb::GetProfileResponse { profile: Some(convert::profile(&p, &st)) }))
    }

    async fn export_profile(
        &self,
        request: Request<pb::ExportProfileRequest>,
    ) -> Result<Response<pb::ExportProfileResponse>, Status> {
        require(&request, Role::Viewer)?;
        let image = request.into_inner().image;
        let (p, st) = self.profile(&image).await?;
        let mut nodes: Vec<_> = p.nodes().iter().collect();
        nodes.sort_by(|a, b| a.0.cmp(b.0));
        let doc = serde_json::json!({
            "image": p.image,
            "tags": p.tags,
            "status": st,
            "nodes": nodes.into_iter().map(|(lineage, n)| serde_json::json!({"lineage": lineage, "node": n})).collect::<Vec<_>>(),
        });
        let json = serde_json::to_string_pretty(&doc).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::ExportProfileResponse { json }))
    }

    async fn add_to_profile(
        &self,
        request: Request<pb::AddToProfileRequest>,
    ) -> Result<Response<pb::AddToProfileResponse>, Status> {
        let principal = require(&request, Role::Responder)?;
        let r = request.into_inner();
        if r.image.trim().is_empty() {
            return Err(Status::invalid_argument("field `image`: is empty"));
        }
        if r.behaviours.is_empty() {
            return Err(Status::invalid_argument("field `behaviours`: is empty"));
        }
        let observations = r
            .behaviours
            .iter()
            .enumerate()
            .map(|(i, b)| convert::behaviour_to_add(i, b))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let image = r.image.clone();
        // The daemon audits the addition in the transaction that makes it.
        let answer =
            self.ask(|reply| Command::Add { image, observations, principal: principal.name.clone(), reply }).await?;
        let Some((added, already_known)) = answer else {
            return Err(Status::not_found(format!("no profile for image {:?}", r.image)));
        };
        Ok(Response::new(pb::AddToProfileResponse { added, already_known }))
    }

    async fn list_signals(
        &self,
        request: Request<pb::ListSignalsRequest>,
    ) -> Result<Response<pb::ListSignalsResponse>, Status> {
        require(&request, Role::Viewer)?;
        let r = request.into_inner();
        let query = telltale_core::query::Query::parse(&r.query)
            .map_err(|e| Status::invalid_argument(format!("field `query`: {e}")))?;
        let offset: usize = if r.page_token.is_empty() {
            0
        } else {
            r.page_token.parse().map_err(|_| Status::invalid_argument("field `page_token`: not a token we gave"))?
        };
        let size = if r.page_size == 0 { 100 } else { r.page_size.min(1000) as usize };
        let all = self.ask(|reply| Command::Signals { query, reply }).await?;
        let page: Vec<pb::SignalSummary> = all.iter().skip(offset).take(size).map(convert::signal_summary).collect();
        let next = if offset + page.len() < all.len() { (offset + page.len()).to_string() } else { String::new() };
        Ok(Response::new(pb::ListSignalsResponse { signals: page, next_page_token: next }))
    }

    async fn get_signal(&self, request: Request<pb::GetSignalRequest>) -> Result<Response<pb::Signal>, Status> {
        require(&request, Role::Viewer)?;
        let id = request.into_inner().id;
        let wanted = id.clone();
        let s = self.ask(|reply| Command::Signal { id, reply }).await?;
        let s = s.ok_or_else(|| Status::not_found(format!("no signal {wanted:?}")))?;
        Ok(Response::new(convert::signal(&s)))
    }

    async fn update_signal(
        &self,
        request: Request<pb::UpdateSignalRequest>,
    ) -> Result<Response<pb::UpdateSignalResponse>, Status> {
        let principal = require(&request, Role::Responder)?;
        let r = request.into_inner();
        let status = match pb::SignalStatus::try_from(r.status) {
            Ok(s) => convert::from_signal_status(s),
            Err(_) => return Err(Status::invalid_argument(format!("field `status`: unknown status {}", r.status))),
        };
        if !r.mark_benign && !r.benign_anomaly_ids.is_empty() {
            return Err(Status::invalid_argument("field `benign_anomaly_ids`: only with mark_benign"));
        }
        let benign = r.mark_benign.then(|| r.benign_anomaly_ids.clone());
        let (id, name) = (r.id.clone(), principal.name.clone());
        let answer = self
            .ask(|reply| Command::UpdateSignal {
                id,
                status,
                assignee: r.assignee.clone(),
                benign,
                principal: name,
                reply,
            })
            .await?;
        match answer {
            Ok((s, added)) => Ok(Response::new(pb::UpdateSignalResponse {
                signal: Some(convert::signal(&s)),
                behaviours_added: added,
            })),
            Err(e @ telltale_core::signal::UpdateError::NotFound(_)) => Err(Status::not_found(e.to_string())),
            Err(e) => Err(Status::invalid_argument(format!("field `benign_anomaly_ids`: {e}"))),
        }
    }

    async fn create_notification_rule(
        &self,
        request: Request<pb::NotificationRule>,
    ) -> Result<Response<pb::NotificationRule>, Status> {
        let principal = require(&request, Role::Admin)?;
        let mut rule = convert::from_rule(request.get_ref()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        rule.id = String::new();
        let saved = self.ask(|reply| Command::SaveRule { rule, principal: principal.name, reply }).await?;
        let saved = saved.ok_or_else(|| Status::internal("the rule was not saved"))?;
        Ok(Response::new(convert::rule(&saved.redacted())))
    }

    async fn update_notification_rule(
        &self,
        request: Request<pb::NotificationRule>,
    ) -> Result<Response<pb::NotificationRule>, Status> {
        let principal = require(&request, Role::Admin)?;
        let rule = convert::from_rule(request.get_ref()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if rule.id.is_empty() {
            return Err(Status::invalid_argument("field `id`: is empty"));
        }
        let id = rule.id.clone();
        let saved = self.ask(|reply| Command::SaveRule { rule, principal: principal.name, reply }).await?;
        let saved = saved.ok_or_else(|| Status::not_found(format!("no notification rule {id:?}")))?;
        Ok(Response::new(convert::rule(&saved.redacted())))
    }

    async fn delete_notification_rule(
        &self,
        request: Request<pb::DeleteNotificationRuleRequest>,
    ) -> Result<Response<pb::DeleteNotificationRuleResponse>, Status> {
        let principal = require(&request, Role::Admin)?;
        let id = request.into_inner().id;
        let wanted = id.clone();
        if !self.ask(|reply| Command::DeleteRule { id, principal: principal.name, reply }).await? {
            return Err(Status::not_found(format!("no notification rule {wanted:?}")));
        }
        Ok(Response::new(pb::DeleteNotificationRuleResponse {}))
    }

    async fn list_notification_rules(
        &self,
        request: Request<pb::ListNotificationRulesRequest>,
    ) -> Result<Response<pb::ListNotificationRulesResponse>, Status> {
        require(&request, Role::Admin)?;
        let rules = self.ask(|reply| Command::Rules { reply }).await?;
        Ok(Response::new(pb::ListNotificationRulesResponse {
            rules: rules.iter().map(|r| convert::rule(&r.redacted())).collect(),
        }))
    }

    async fn create_suppression(&self, request: Request<pb::Suppression>) -> Result<Response<pb::Suppression>, Status> {
        let principal = require(&request, Role::Responder)?;
        let mut rule =
            convert::from_suppression(request.get_ref()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        rule.id = String::new();
        let saved = self.ask(|reply| Command::SaveSuppression { rule, principal: principal.name, reply }).await?;
        Ok(Response::new(convert::suppression(&saved)))
    }

    async fn delete_suppression(
        &self,
        request: Request<pb::DeleteSuppressionRequest>,
    ) -> Result<Response<pb::DeleteSuppressionResponse>, Status> {
        let principal = require(&request, Role::Responder)?;
        let id = request.into_inner().id;
        let wanted = id.clone();
        if !self.ask(|reply| Command::DeleteSuppression { id, principal: principal.name, reply }).await? {
            return Err(Status::not_found(format!("no suppression {wanted:?}")));
        }
        Ok(Response::new(pb::DeleteSuppressionResponse {}))
    }

    async fn list_suppressions(
        &self,
        request: Request<pb::ListSuppressionsRequest>,
    ) -> Result<Response<pb::ListSuppressionsResponse>, Status> {
        require(&request, Role::Viewer)?;
        let all = self.ask(|reply| Command::Suppressions { reply }).await?;
        Ok(Response::new(pb::ListSuppressionsResponse { suppressions: all.iter().map(convert::suppression).collect() }))
    }

    async fn query_audit_trail(
        &self,
        request: Request<pb::QueryAuditTrailRequest>,
    ) -> Result<Response<pb::QueryAuditTrailResponse>, Status> {
        let principal = require(&request, Role::Viewer)?;
        let r = request.into_inner();
        let query = telltale_core::query::Query::parse(&r.query)
            .map_err(|e| Status::invalid_argument(format!("field `query`: {e}")))?;
        let (from, to) = ((r.from_unix_ms != 0).then_some(r.from_unix_ms), (r.to_unix_ms != 0).then_some(r.to_unix_ms));
        let limit = if r.limit == 0 { 1000 } else { r.limit as usize };
        let records = self.audit_records().await?;
        let mut selected: Vec<pb::AuditEvent> = records
            .iter()
            .filter(|rec| principal.role == Role::Admin || rec.action.principal == principal.name)
            .filter(|rec| rec.selected(&query, from, to))
            .map(convert::audit_event)
            .collect();
        if selected.len() > limit {
            selected.drain(..selected.len() - limit);
        }
        Ok(Response::new(pb::QueryAuditTrailResponse { events: selected }))
    }

    async fn verify_audit_trail(
        &self,
        request: Request<pb::VerifyAuditTrailRequest>,
    ) -> Result<Response<pb::VerifyAuditTrailResponse>, Status> {
        require(&request, Role::Admin)?;
        let dir = self.data_dir.clone();
        let loaded = tokio::task::spawn_blocking(move || Store::open_read_only(&dir).and_then(|s| s.audit_records()))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let answer = match loaded {
            Ok(records) => match telltale_core::audit::verify(&records) {
                Ok(n) => pb::VerifyAuditTrailResponse { ok: true, records: n as u64, error: String::new() },
                Err(e) => {
                    pb::VerifyAuditTrailResponse { ok: false, records: records.len() as u64, error: e.to_string() }
                }
            },
            Err(e @ StoreError::BadRow { .. }) => {
                pb::VerifyAuditTrailResponse { ok: false, records: 0, error: e.to_string() }
            }
            Err(e) => return Err(store_status(e)),
        };
        Ok(Response::new(answer))
    }
}

impl Api {
    async fn audit_records(&self) -> Result<Vec<telltale_core::audit::Record>, Status> {
        let dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || Store::open_read_only(&dir).and_then(|s| s.audit_records()))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(store_status)
    }

    async fn profile(&self, image: &str) -> Result<(Profile, ProfileStatus), Status> {
        if image.trim().is_empty() {
            return Err(Status::invalid_argument("field `image`: is empty"));
        }
        let name = image.to_owned();
        self.ask(|reply| Command::Profile { image: name, reply })
            .await?
            .ok_or_else(|| Status::not_found(format!("no profile for image {image:?}")))
    }
}

/// Serve the API until `shutdown` resolves. Binds first so that errors
/// (address in use) are reported before the daemon starts detecting.
pub async fn bind(cfg: &ApiConfig) -> Result<tokio::net::TcpListener, ApiError> {
    tokio::net::TcpListener::bind(cfg.listen).await.map_err(|source| ApiError::Bind { addr: cfg.listen, source })
}

/// Serve on an already bound listener until `shutdown` resolves.
pub async fn serve(
    cfg: ApiConfig,
    listener: tokio::net::TcpListener,
    api: Api,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let addr = listener.local_addr().unwrap_or(cfg.listen);
    let auth = Arc::new(Auth::new(&cfg));
    let audit = api.commands.clone();
    let interceptor = move |mut req: Request<()>| -> Result<Request<()>, Status> {
        match auth.authenticate(req.metadata()) {
            Ok(principal) => {
                req.extensions_mut().insert(principal);
                req.extensions_mut().insert(AuditSink(audit.clone()));
                Ok(req)
            }
            Err(status) => {
                record(
                    &audit,
                    Action::new(now_ms(), "anonymous", AssetType::Api, "", Verb::Authenticate, Outcome::Failure)
                        .after(Some(serde_json::json!({"reason": status.message()}))),
                );
                Err(status)
            }
        }
    };
    let telltale =
        TelltaleServer::new(api).max_decoding_message_size(cfg.max_request_bytes).max_encoding_message_size(16 << 20);
    let telltale = tonic::service::interceptor::InterceptedService::new(telltale, interceptor.clone());
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(telltale_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(ApiError::Reflection)?;
    let reflection = tonic::service::interceptor::InterceptedService::new(reflection, interceptor);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<TelltaleServer<Api>>().await;

    let mut builder = tonic::transport::Server::builder().timeout(cfg.request_timeout);
    if let Some(tls) = &cfg.tls {
        let read = |p: &PathBuf| std::fs::read(p).map_err(|source| ApiError::TlsFile { path: p.clone(), source });
        let mut t = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
        if let Some(ca) = &tls.client_ca {
            t = t.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
        }
        builder = builder.tls_config(t).map_err(|source| ApiError::Serve { addr, source })?;
    }
    builder
        .layer(crate::telemetry::rpc::RpcTraceLayer(tracer))
        .add_service(health)
        .add_service(reflection)
        .add_service(telltale)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(|source| ApiError::Serve { addr, source })
}
