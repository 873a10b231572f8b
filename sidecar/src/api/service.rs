//! The `telltale.v1.Telltale` service: each call checks the caller's role,
//! validates its request, then asks the daemon loop over its inbox (the
//! loop owns the detector, signals and store writes), reads the store, or
//! opens a resumable stream. Every failure is a [`CallError`].

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use telltale_proto::v1 as pb;
use telltale_proto::v1::telltale_server::Telltale;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use telltale_core::detect::Anomaly;
use telltale_core::profile::{EventType, Profile};
use telltale_core::query::Query;
use telltale_core::signal::{SignalChange, UpdateError};
use telltale_core::status::ProfileStatus;

use super::auth::{require, Call, FailureAudit, Principal};
use super::convert;
use super::error::{echo, CallError};
use super::stream::{Backlog, Feed, Streams};
use crate::bus::{Command, Feeds};
use crate::config::Role;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics::Metrics;

/// Signals per page of `ListSignals` unless asked otherwise, and at most.
const SIGNAL_PAGE: (usize, u32) = (100, 1000);

/// Audit records returned by `QueryAuditTrail` unless asked otherwise.
const AUDIT_LIMIT: usize = 1000;

/// The service.
#[derive(Debug, Clone)]
pub struct Api {
    commands: mpsc::Sender<Command>,
    failures: FailureAudit,
    feeds: Feeds,
    data_dir: PathBuf,
    streams: Streams,
}

impl Api {
    /// A service talking to the daemon loop over `commands`; streams follow
    /// `feeds` after the stored backlog in `data_dir`, and end when
    /// `closing` turns true.
    pub fn new(
        commands: mpsc::Sender<Command>,
        feeds: Feeds,
        data_dir: PathBuf,
        closing: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let failures = FailureAudit::new(commands.clone(), metrics.clone());
        Self { commands, failures, feeds, data_dir, streams: Streams::new(closing, metrics) }
    }

    /// With failed authentications and denied calls audited through
    /// `failures` (by default: repeats counted for a minute into one
    /// record, see [`FailureAudit`]).
    pub fn with_failure_audit(self, failures: FailureAudit) -> Self {
        Self { failures, ..self }
    }

    /// Where failed authentication and authorization are audited.
    pub(super) fn failures(&self) -> FailureAudit {
        self.failures.clone()
    }

    /// The caller, if their role allows `call` (a denial is audited).
    fn require<T>(&self, req: &Request<T>, call: Call) -> Result<Principal, CallError> {
        require(req, call, &self.failures)
    }

    /// Ask the daemon loop.
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, CallError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| CallError::ShuttingDown)?;
        rx.await.map_err(|_| CallError::ShuttingDown)
    }

    /// Read the store (read-only, off the async threads).
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Result<T, StoreError>, CallError> {
        let dir = self.data_dir.clone();
        Ok(tokio::task::spawn_blocking(move || Store::open_read_only(&dir).and_then(|s| read(&s))).await?)
    }

    async fn profile(&self, image: &str) -> Result<(Profile, ProfileStatus), CallError> {
        if image.trim().is_empty() {
            return Err(CallError::field("image", "is empty"));
        }
        let name = image.to_owned();
        self.ask(|reply| Command::Profile { image: name, reply })
            .await?
            .ok_or_else(|| CallError::not_found("profile for image", image))
    }
}

/// The anomalies a `StreamAnomalies` client asked for.
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

fn parse_query(field: &str, text: &str) -> Result<Query, CallError> {
    Query::parse(text).map_err(|e| CallError::field(field, e.to_string()))
}

fn anomaly_item(sequence: u64, a: &Anomaly) -> pb::AnomalyStreamItem {
    pb::AnomalyStreamItem {
        item: Some(pb::anomaly_stream_item::Item::Anomaly(pb::SequencedAnomaly {
            sequence,
            anomaly: Some(convert::anomaly(a)),
        })),
    }
}

fn anomaly_lagged(l: pb::Lagged) -> pb::AnomalyStreamItem {
    pb::AnomalyStreamItem { item: Some(pb::anomaly_stream_item::Item::Lagged(l)) }
}

fn change_item(sequence: u64, c: &SignalChange) -> pb::SignalStreamItem {
    pb::SignalStreamItem {
        item: Some(pb::signal_stream_item::Item::Change(pb::SignalChange {
            sequence,
            created: c.created,
            signal: Some(convert::signal_summary(&c.signal)),
        })),
    }
}

fn change_lagged(l: pb::Lagged) -> pb::SignalStreamItem {
    pb::SignalStreamItem { item: Some(pb::signal_stream_item::Item::Lagged(l)) }
}

type AnomalyStream = Pin<Box<dyn Stream<Item = Result<pb::AnomalyStreamItem, Status>> + Send>>;

type SignalStream = Pin<Box<dyn Stream<Item = Result<pb::SignalStreamItem, Status>> + Send>>;

#[tonic::async_trait]
impl Telltale for Api {
    type StreamAnomaliesStream = AnomalyStream;

    async fn stream_anomalies(
        &self,
        request: Request<pb::StreamAnomaliesRequest>,
    ) -> Result<Response<Self::StreamAnomaliesStream>, Status> {
        self.require(&request, Call::StreamAnomalies)?;
        let r = request.into_inner();
        let event_type = match pb::EventType::try_from(r.r#type) {
            Ok(t) => convert::from_event_type(t),
            Err(_) => return Err(CallError::field("type", format!("unknown event type {}", r.r#type)).into()),
        };
        let filter = Filter { image: r.image, container: r.container, event_type };
        let feed = Feed {
            live: self.feeds.anomalies.subscribe(),
            backlog: Backlog::new(self.data_dir.clone(), Store::anomalies_after),
            accept: Box::new(move |a: &Anomaly| filter.accepts(a)),
            item: anomaly_item,
            lagged: anomaly_lagged,
        };
        Ok(Response::new(Box::pin(self.streams.follow(feed, r.after_sequence))))
    }

    type StreamSignalsStream = SignalStream;

    async fn stream_signals(
        &self,
        request: Request<pb::StreamSignalsRequest>,
    ) -> Result<Response<Self::StreamSignalsStream>, Status> {
        self.require(&request, Call::StreamSignals)?;
        let r = request.into_inner();
        let query = parse_query("query", &r.query)?;
        let feed = Feed {
            live: self.feeds.signals.subscribe(),
            backlog: Backlog::new(self.data_dir.clone(), Store::signal_changes_after),
            accept: Box::new(move |c: &SignalChange| query.matches(&|k| c.signal.facet(k))),
            item: change_item,
            lagged: change_lagged,
        };
        Ok(Response::new(Box::pin(self.streams.follow(feed, r.after_sequence))))
    }

    async fn get_learning_status(
        &self,
        request: Request<pb::GetLearningStatusRequest>,
    ) -> Result<Response<pb::GetLearningStatusResponse>, Status> {
        self.require(&request, Call::GetLearningStatus)?;
        let image = Some(request.into_inner().image).filter(|i| !i.is_empty());
        let wanted = image.clone();
        let statuses = self.ask(|reply| Command::Status { image, reply }).await?;
        if let Some(i) = wanted {
            if statuses.is_empty() {
                return Err(CallError::not_found("profile for image", i).into());
            }
        }
        let store = self.ask(|reply| Command::ProfileStore { reply }).await?;
        Ok(Response::new(pb::GetLearningStatusResponse {
            profiles: statuses.iter().map(convert::profile_status).collect(),
            store: Some(convert::store_status(&store)),
        }))
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        self.require(&request, Call::GetProfile)?;
        let image = request.into_inner().image;
        let (p, st) = self.profile(&image).await?;
        Ok(Response::new(pb::GetProfileResponse { profile: Some(convert::profile(&p, &st)) }))
    }

    async fn export_profile(
        &self,
        request: Request<pb::ExportProfileRequest>,
    ) -> Result<Response<pb::ExportProfileResponse>, Status> {
        self.require(&request, Call::ExportProfile)?;
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
        let json = serde_json::to_string_pretty(&doc).map_err(CallError::from)?;
        Ok(Response::new(pb::ExportProfileResponse { json }))
    }

    async fn add_to_profile(
        &self,
        request: Request<pb::AddToProfileRequest>,
    ) -> Result<Response<pb::AddToProfileResponse>, Status> {
        let principal = self.require(&request, Call::AddToProfile)?;
        let r = request.into_inner();
        if r.image.trim().is_empty() {
            return Err(CallError::field("image", "is empty").into());
        }
        if r.behaviours.is_empty() {
            return Err(CallError::field("behaviours", "is empty").into());
        }
        let observations = r
            .behaviours
            .iter()
            .enumerate()
            .map(|(i, b)| convert::behaviour_to_add(i, b))
            .collect::<Result<Vec<_>, _>>()
            .map_err(CallError::from)?;
        let image = r.image.clone();
        // The daemon audits the addition in the transaction that makes it.
        let answer = self.ask(|reply| Command::Add { image, observations, principal: principal.name, reply }).await?;
        let Some((added, already_known)) = answer else {
            return Err(CallError::not_found("profile for image", r.image).into());
        };
        Ok(Response::new(pb::AddToProfileResponse { added, already_known }))
    }

    async fn list_signals(
        &self,
        request: Request<pb::ListSignalsRequest>,
    ) -> Result<Response<pb::ListSignalsResponse>, Status> {
        self.require(&request, Call::ListSignals)?;
        let r = request.into_inner();
        let query = parse_query("query", &r.query)?;
        let offset: usize = if r.page_token.is_empty() {
            0
        } else {
            r.page_token.parse().map_err(|_| CallError::field("page_token", "not a token we gave"))?
        };
        let size = if r.page_size == 0 { SIGNAL_PAGE.0 } else { r.page_size.min(SIGNAL_PAGE.1) as usize };
        let all = self.ask(|reply| Command::Signals { query, reply }).await?;
        let page: Vec<pb::SignalSummary> = all.iter().skip(offset).take(size).map(convert::signal_summary).collect();
        let next = if offset + page.len() < all.len() { (offset + page.len()).to_string() } else { String::new() };
        Ok(Response::new(pb::ListSignalsResponse { signals: page, next_page_token: next }))
    }

    async fn get_signal(&self, request: Request<pb::GetSignalRequest>) -> Result<Response<pb::Signal>, Status> {
        self.require(&request, Call::GetSignal)?;
        let id = request.into_inner().id;
        let wanted = id.clone();
        let s = self.ask(|reply| Command::Signal { id, reply }).await?;
        let s = s.ok_or_else(|| CallError::not_found("signal", wanted))?;
        Ok(Response::new(convert::signal(&s)))
    }

    async fn update_signal(
        &self,
        request: Request<pb::UpdateSignalRequest>,
    ) -> Result<Response<pb::UpdateSignalResponse>, Status> {
        let principal = self.require(&request, Call::UpdateSignal)?;
        let r = request.into_inner();
        let status = match pb::SignalStatus::try_from(r.status) {
            Ok(s) => convert::from_signal_status(s),
            Err(_) => return Err(CallError::field("status", format!("unknown status {}", r.status)).into()),
        };
        if !r.mark_benign && !r.benign_anomaly_ids.is_empty() {
            return Err(CallError::field("benign_anomaly_ids", "only with mark_benign").into());
        }
        let benign = r.mark_benign.then(|| r.benign_anomaly_ids.clone());
        let answer = self
            .ask(|reply| Command::UpdateSignal {
                id: r.id.clone(),
                status,
                assignee: r.assignee.clone(),
                benign,
                principal: principal.name,
                reply,
            })
            .await?;
        match answer {
            Ok((s, added)) => Ok(Response::new(pb::UpdateSignalResponse {
                signal: Some(convert::signal(&s)),
                behaviours_added: added,
            })),
            Err(UpdateError::NotFound(id)) => Err(CallError::not_found("signal", id).into()),
            Err(UpdateError::NoSuchAnomaly { signal, anomaly }) => Err(CallError::field(
                "benign_anomaly_ids",
                format!("signal {} has no anomaly {}", echo(&signal), echo(&anomaly)),
            )
            .into()),
        }
    }

    async fn create_notification_rule(
        &self,
        request: Request<pb::NotificationRule>,
    ) -> Result<Response<pb::NotificationRule>, Status> {
        let principal = self.require(&request, Call::CreateNotificationRule)?;
        let mut rule = convert::from_rule(request.get_ref()).map_err(CallError::from)?;
        rule.id = String::new();
        let saved = self.ask(|reply| Command::SaveRule { rule, principal: principal.name, reply }).await?;
        let saved = saved.ok_or(CallError::Internal("the rule was not saved"))?;
        Ok(Response::new(convert::rule(&saved.redacted())))
    }

    async fn update_notification_rule(
        &self,
        request: Request<pb::NotificationRule>,
    ) -> Result<Response<pb::NotificationRule>, Status> {
        let principal = self.require(&request, Call::UpdateNotificationRule)?;
        let rule = convert::from_rule(request.get_ref()).map_err(CallError::from)?;
        if rule.id.is_empty() {
            return Err(CallError::field("id", "is empty").into());
        }
        let id = rule.id.clone();
        let saved = self.ask(|reply| Command::SaveRule { rule, principal: principal.name, reply }).await?;
        let saved = saved.ok_or_else(|| CallError::not_found("notification rule", id))?;
        Ok(Response::new(convert::rule(&saved.redacted())))
    }

    async fn delete_notification_rule(
        &self,
        request: Request<pb::DeleteNotificationRuleRequest>,
    ) -> Result<Response<pb::DeleteNotificationRuleResponse>, Status> {
        let principal = self.require(&request, Call::DeleteNotificationRule)?;
        let id = request.into_inner().id;
        let wanted = id.clone();
        if !self.ask(|reply| Command::DeleteRule { id, principal: principal.name, reply }).await? {
            return Err(CallError::not_found("notification rule", wanted).into());
        }
        Ok(Response::new(pb::DeleteNotificationRuleResponse {}))
    }

    async fn list_notification_rules(
        &self,
        request: Request<pb::ListNotificationRulesRequest>,
    ) -> Result<Response<pb::ListNotificationRulesResponse>, Status> {
        self.require(&request, Call::ListNotificationRules)?;
        let rules = self.ask(|reply| Command::Rules { reply }).await?;
        Ok(Response::new(pb::ListNotificationRulesResponse {
            rules: rules.iter().map(|r| convert::rule(&r.redacted())).collect(),
        }))
    }

    async fn create_suppression(&self, request: Request<pb::Suppression>) -> Result<Response<pb::Suppression>, Status> {
        let principal = self.require(&request, Call::CreateSuppression)?;
        let mut rule = convert::from_suppression(request.get_ref()).map_err(CallError::from)?;
        rule.id = String::new();
        let saved = self.ask(|reply| Command::SaveSuppression { rule, principal: principal.name, reply }).await?;
        Ok(Response::new(convert::suppression(&saved)))
    }

    async fn delete_suppression(
        &self,
        request: Request<pb::DeleteSuppressionRequest>,
    ) -> Result<Response<pb::DeleteSuppressionResponse>, Status> {
        let principal = self.require(&request, Call::DeleteSuppression)?;
        let id = request.into_inner().id;
        let wanted = id.clone();
        if !self.ask(|reply| Command::DeleteSuppression { id, principal: principal.name, reply }).await? {
            return Err(CallError::not_found("suppression", wanted).into());
        }
        Ok(Response::new(pb::DeleteSuppressionResponse {}))
    }

    async fn list_suppressions(
        &self,
        request: Request<pb::ListSuppressionsRequest>,
    ) -> Result<Response<pb::ListSuppressionsResponse>, Status> {
        self.require(&request, Call::ListSuppressions)?;
        let all = self.ask(|reply| Command::Suppressions { reply }).await?;
        Ok(Response::new(pb::ListSuppressionsResponse { suppressions: all.iter().map(convert::suppression).collect() }))
    }

    async fn query_audit_trail(
        &self,
        request: Request<pb::QueryAuditTrailRequest>,
    ) -> Result<Response<pb::QueryAuditTrailResponse>, Status> {
        let principal = self.require(&request, Call::QueryAuditTrail)?;
        let r = request.into_inner();
        let query = parse_query("query", &r.query)?;
        let (from, to) = ((r.from_unix_ms != 0).then_some(r.from_unix_ms), (r.to_unix_ms != 0).then_some(r.to_unix_ms));
        let limit = if r.limit == 0 { AUDIT_LIMIT } else { r.limit as usize };
        let records = self.read(|s| s.audit_records()).await?.map_err(CallError::from)?;
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
        self.require(&request, Call::VerifyAuditTrail)?;
        // From the anchor when retention removed the oldest records.
        let answer = match self.read(|s| s.audit_trail()).await? {
            Ok(trail) => match trail.verify() {
                Ok(n) => pb::VerifyAuditTrailResponse { ok: true, records: n as u64, error: String::new() },
                Err(e) => pb::VerifyAuditTrailResponse {
                    ok: false,
                    records: trail.records.len() as u64,
                    error: e.to_string(),
                },
            },
            // A record that no longer decodes is a broken trail, not a failed call.
            Err(e @ StoreError::BadRow { .. }) => {
                pb::VerifyAuditTrailResponse { ok: false, records: 0, error: e.to_string() }
            }
            Err(e) => return Err(CallError::from(e).into()),
        };
        Ok(Response::new(answer))
    }
}
