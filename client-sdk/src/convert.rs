//! SDK types ↔ `telltale.v1` proto messages, in one place. Exhaustive
//! destructuring and struct literals: a new proto field breaks the build
//! here, not the wire. Unknown enum numbers become `Unknown(n)`, unknown or
//! absent oneofs an `Unknown` variant; a message the server must send but
//! did not, or a time out of range, is a [`ClientError::Response`] naming
//! the field. Nothing here panics on what the server sends.

use std::time::Duration;

use telltale_proto::v1 as pb;
use time::OffsetDateTime;

use crate::types::{
    Access, Anomaly, AnomalyStreamItem, AuditEvent, AuditVerification, Behaviour, BehaviourToAdd, Benign, Container,
    DnsEntry, DnsQuestion, EndpointEntry, Event, EventKind, EventType, FileEntry, Lagged, LearningState,
    NotificationRule, NotificationTarget, Process, ProcessNode, Profile, ProfileAddition, ProfileStatus, Protocol,
    SequencedAnomaly, Severity, Signal, SignalChange, SignalEntry, SignalStatus, SignalStreamItem, SignalSummary,
    SignalUpdate, SignalUpdated, Suppression, TypeStatus,
};
use crate::{ClientError, WatchFilter};

pub(crate) type Result<T> = std::result::Result<T, ClientError>;

/// A wire value → an SDK value (fallible: the server may leave out what it must send).
pub(crate) trait FromWire<W>: Sized {
    /// Convert.
    fn from_wire(w: W) -> Result<Self>;
}

/// An SDK value → a wire value.
pub(crate) trait ToWire<W> {
    /// Convert.
    fn to_wire(self) -> W;
}

/// Every element, failing on the first that does not convert.
pub(crate) fn all<W, T: FromWire<W>>(v: Vec<W>) -> Result<Vec<T>> {
    v.into_iter().map(T::from_wire).collect()
}

fn bad(field: &str, problem: impl Into<String>) -> ClientError {
    ClientError::Response { field: field.to_owned(), problem: problem.into() }
}

/// A message field the server always sends.
fn required<W>(w: Option<W>, field: &str) -> Result<W> {
    w.ok_or_else(|| bad(field, "is missing"))
}

/// Milliseconds since the epoch.
pub(crate) fn time_ms(ms: i64, field: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| bad(field, format!("{ms} ms since the epoch is out of range: {e}")))
}

/// Milliseconds since the epoch, 0 meaning "never".
fn time_ms_or_never(ms: i64, field: &str) -> Result<Option<OffsetDateTime>> {
    if ms == 0 {
        Ok(None)
    } else {
        time_ms(ms, field).map(Some)
    }
}

/// Nanoseconds since the epoch.
fn time_ns(ns: i64, field: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .map_err(|e| bad(field, format!("{ns} ns since the epoch is out of range: {e}")))
}

/// Milliseconds since the epoch, saturating (every `OffsetDateTime` fits).
pub(crate) fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

/// A JSON document, empty meaning absent.
fn json_doc(s: String, field: &str) -> Result<Option<serde_json::Value>> {
    if s.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&s).map(Some).map_err(|e| bad(field, format!("is not JSON: {e}")))
}

// Enums: every proto variant named, so a new one breaks the build.

impl From<i32> for EventType {
    fn from(n: i32) -> Self {
        match pb::EventType::try_from(n) {
            Ok(pb::EventType::Exec) => EventType::Exec,
            Ok(pb::EventType::File) => EventType::File,
            Ok(pb::EventType::Dns) => EventType::Dns,
            Ok(pb::EventType::Connect) => EventType::Connect,
            Ok(pb::EventType::Unspecified) | Err(_) => EventType::Unknown(n),
        }
    }
}

impl From<EventType> for i32 {
    fn from(t: EventType) -> i32 {
        match t {
            EventType::Exec => pb::EventType::Exec as i32,
            EventType::File => pb::EventType::File as i32,
            EventType::Dns => pb::EventType::Dns as i32,
            EventType::Connect => pb::EventType::Connect as i32,
            EventType::Unknown(n) => n,
        }
    }
}

/// An event type where unspecified (0) means "any".
pub(crate) fn event_type_filter(n: i32) -> Option<EventType> {
    (n != pb::EventType::Unspecified as i32).then(|| EventType::from(n))
}

/// The wire number of an optional event type (`None`: unspecified).
pub(crate) fn event_type_filter_to_wire(t: Option<EventType>) -> i32 {
    t.map_or(pb::EventType::Unspecified as i32, i32::from)
}

impl From<i32> for LearningState {
    fn from(n: i32) -> Self {
        match pb::LearningState::try_from(n) {
            Ok(pb::LearningState::Learning) => LearningState::Learning,
            Ok(pb::LearningState::Stable) => LearningState::Stable,
            Ok(pb::LearningState::Unstable) => LearningState::Unstable,
            Ok(pb::LearningState::Unspecified) | Err(_) => LearningState::Unknown(n),
        }
    }
}

impl From<LearningState> for i32 {
    fn from(s: LearningState) -> i32 {
        match s {
            LearningState::Learning => pb::LearningState::Learning as i32,
            LearningState::Stable => pb::LearningState::Stable as i32,
            LearningState::Unstable => pb::LearningState::Unstable as i32,
            LearningState::Unknown(n) => n,
        }
    }
}

impl From<i32> for SignalStatus {
    fn from(n: i32) -> Self {
        match pb::SignalStatus::try_from(n) {
            Ok(pb::SignalStatus::Open) => SignalStatus::Open,
            Ok(pb::SignalStatus::UnderReview) => SignalStatus::UnderReview,
            Ok(pb::SignalStatus::Archived) => SignalStatus::Archived,
            Ok(pb::SignalStatus::Unspecified) | Err(_) => SignalStatus::Unknown(n),
        }
    }
}

impl From<SignalStatus> for i32 {
    fn from(s: SignalStatus) -> i32 {
        match s {
            SignalStatus::Open => pb::SignalStatus::Open as i32,
            SignalStatus::UnderReview => pb::SignalStatus::UnderReview as i32,
            SignalStatus::Archived => pb::SignalStatus::Archived as i32,
            SignalStatus::Unknown(n) => n,
        }
    }
}

impl From<i32> for Access {
    fn from(n: i32) -> Self {
        match pb::Access::try_from(n) {
            Ok(pb::Access::Read) => Access::Read,
            Ok(pb::Access::Write) => Access::Write,
            Ok(pb::Access::Create) => Access::Create,
            Ok(pb::Access::Truncate) => Access::Truncate,
            Ok(pb::Access::Unspecified) | Err(_) => Access::Unknown(n),
        }
    }
}

impl From<Access> for i32 {
    fn from(a: Access) -> i32 {
        match a {
            Access::Read => pb::Access::Read as i32,
            Access::Write => pb::Access::Write as i32,
            Access::Create => pb::Access::Create as i32,
            Access::Truncate => pb::Access::Truncate as i32,
            Access::Unknown(n) => n,
        }
    }
}

impl From<i32> for Protocol {
    fn from(n: i32) -> Self {
        match pb::Protocol::try_from(n) {
            Ok(pb::Protocol::Tcp) => Protocol::Tcp,
            Ok(pb::Protocol::Udp) => Protocol::Udp,
            Ok(pb::Protocol::Unspecified) | Err(_) => Protocol::Unknown(n),
        }
    }
}

impl From<Protocol> for i32 {
    fn from(p: Protocol) -> i32 {
        match p {
            Protocol::Tcp => pb::Protocol::Tcp as i32,
            Protocol::Udp => pb::Protocol::Udp as i32,
            Protocol::Unknown(n) => n,
        }
    }
}

fn accesses(v: Vec<i32>) -> Vec<Access> {
    v.into_iter().map(Access::from).collect()
}

pub(crate) fn accesses_to_wire(v: Vec<Access>) -> Vec<i32> {
    v.into_iter().map(i32::from).collect()
}

// Messages.

impl FromWire<pb::Container> for Container {
    fn from_wire(w: pb::Container) -> Result<Self> {
        let pb::Container { id, name, image, tag, cgroup_id, pod, namespace, repository } = w;
        Ok(Container { id, name, image, tag, cgroup_id, pod, namespace, repository })
    }
}

impl FromWire<Option<pb::Behaviour>> for Behaviour {
    fn from_wire(w: Option<pb::Behaviour>) -> Result<Self> {
        use pb::behaviour::Kind;
        Ok(match w.and_then(|pb::Behaviour { kind }| kind) {
            Some(Kind::Exec(pb::ExecBehaviour {})) => Behaviour::Exec,
            Some(Kind::File(pb::FileBehaviour { path, access, pattern: false })) => {
                Behaviour::File { path, access: accesses(access) }
            }
            Some(Kind::File(pb::FileBehaviour { path, access, pattern: true })) => {
                Behaviour::FilePattern { pattern: path, access: accesses(access) }
            }
            Some(Kind::Dns(pb::DnsBehaviour { name, r#type })) => Behaviour::Dns { name, qtype: r#type },
            Some(Kind::Connect(pb::ConnectBehaviour { protocol, address, port })) => {
                Behaviour::Connect { protocol: protocol.into(), address, port }
            }
            Some(Kind::Mechanism(pb::MechanismBehaviour { name })) => Behaviour::Mechanism { name },
            None => Behaviour::Unknown,
        })
    }
}

impl ToWire<Option<pb::Behaviour>> for Behaviour {
    fn to_wire(self) -> Option<pb::Behaviour> {
        use pb::behaviour::Kind;
        let kind = match self {
            Behaviour::Exec => Kind::Exec(pb::ExecBehaviour {}),
            Behaviour::File { path, access } => {
                Kind::File(pb::FileBehaviour { path, access: accesses_to_wire(access), pattern: false })
            }
            Behaviour::FilePattern { pattern, access } => {
                Kind::File(pb::FileBehaviour { path: pattern, access: accesses_to_wire(access), pattern: true })
            }
            Behaviour::Dns { name, qtype } => Kind::Dns(pb::DnsBehaviour { name, r#type: qtype }),
            Behaviour::Connect { protocol, address, port } => {
                Kind::Connect(pb::ConnectBehaviour { protocol: protocol.into(), address, port })
            }
            Behaviour::Mechanism { name } => Kind::Mechanism(pb::MechanismBehaviour { name }),
            Behaviour::Unknown => return None,
        };
        Some(pb::Behaviour { kind: Some(kind) })
    }
}

impl FromWire<pb::Process> for Process {
    fn from_wire(w: pb::Process) -> Result<Self> {
        let pb::Process { pid, ppid, uid, gid, comm, path, interpreter, args, args_truncated, ancestors } = w;
        Ok(Process {
            pid,
            ppid,
            uid,
            gid,
            comm,
            path,
            interpreter: non_empty(interpreter),
            args,
            args_truncated,
            ancestors,
        })
    }
}

impl FromWire<Option<pb::event::Kind>> for EventKind {
    fn from_wire(w: Option<pb::event::Kind>) -> Result<Self> {
        use pb::event::Kind;
        Ok(match w {
            Some(Kind::Exec(pb::Exec {})) => EventKind::Exec,
            Some(Kind::File(pb::FileAccess { path, access, truncated })) => {
                EventKind::File { path, access: accesses(access), truncated }
            }
            Some(Kind::Dns(pb::DnsQuery { questions, protocol, server })) => EventKind::Dns {
                questions: questions
                    .into_iter()
                    .map(|pb::DnsQuestion { name, r#type }| DnsQuestion { name, qtype: r#type })
                    .collect(),
                protocol: protocol.into(),
                server,
            },
            Some(Kind::Connect(pb::Endpoint { protocol, address, port })) => {
                EventKind::Connect { protocol: protocol.into(), address, port }
            }
            Some(Kind::Mechanism(pb::MechanismUse { name })) => EventKind::Mechanism { name },
            None => EventKind::Unknown,
        })
    }
}

impl FromWire<pb::Event> for Event {
    fn from_wire(w: pb::Event) -> Result<Self> {
        let pb::Event { time_unix_nano, cgroup_id, process, kind } = w;
        Ok(Event {
            time: time_ns(time_unix_nano, "Event.time_unix_nano")?,
            cgroup_id,
            process: Process::from_wire(required(process, "Event.process")?)?,
            kind: EventKind::from_wire(kind)?,
        })
    }
}

impl FromWire<pb::Anomaly> for Anomaly {
    fn from_wire(w: pb::Anomaly) -> Result<Self> {
        let pb::Anomaly { id, time_unix_nano, container, r#type, profile_version, lineage, behaviour, event } = w;
        Ok(Anomaly {
            id,
            time: time_ns(time_unix_nano, "Anomaly.time_unix_nano")?,
            container: Container::from_wire(required(container, "Anomaly.container")?)?,
            event_type: r#type.into(),
            profile_version,
            lineage,
            behaviour: Behaviour::from_wire(behaviour)?,
            event: Event::from_wire(required(event, "Anomaly.event")?)?,
        })
    }
}

impl FromWire<pb::SequencedAnomaly> for SequencedAnomaly {
    fn from_wire(w: pb::SequencedAnomaly) -> Result<Self> {
        let pb::SequencedAnomaly { sequence, anomaly } = w;
        Ok(SequencedAnomaly { sequence, anomaly: Anomaly::from_wire(required(anomaly, "SequencedAnomaly.anomaly")?)? })
    }
}

impl FromWire<pb::Lagged> for Lagged {
    fn from_wire(w: pb::Lagged) -> Result<Self> {
        let pb::Lagged { skipped, resume_after, message } = w;
        Ok(Lagged { skipped, resume_after, message })
    }
}

/// `None` for an item without a kind this client knows (skipped).
impl FromWire<pb::AnomalyStreamItem> for Option<AnomalyStreamItem> {
    fn from_wire(w: pb::AnomalyStreamItem) -> Result<Self> {
        use pb::anomaly_stream_item::Item;
        let pb::AnomalyStreamItem { item } = w;
        Ok(match item {
            Some(Item::Anomaly(a)) => Some(AnomalyStreamItem::Anomaly(SequencedAnomaly::from_wire(a)?)),
            Some(Item::Lagged(l)) => Some(AnomalyStreamItem::Lagged(Lagged::from_wire(l)?)),
            None => None,
        })
    }
}

impl FromWire<pb::TypeStatus> for TypeStatus {
    fn from_wire(w: pb::TypeStatus) -> Result<Self> {
        let pb::TypeStatus {
            r#type,
            state,
            learning_started_unix_ms,
            since_unix_ms,
            behaviours,
            last_new_behaviour_unix_ms,
            time_left_seconds,
            lost_events,
        } = w;
        Ok(TypeStatus {
            event_type: r#type.into(),
            state: state.into(),
            learning_started: time_ms(learning_started_unix_ms, "TypeStatus.learning_started_unix_ms")?,
            since: time_ms(since_unix_ms, "TypeStatus.since_unix_ms")?,
            behaviours,
            last_new_behaviour: time_ms_or_never(last_new_behaviour_unix_ms, "TypeStatus.last_new_behaviour_unix_ms")?,
            time_left: u64::try_from(time_left_seconds).ok().map(Duration::from_secs),
            lost_events,
        })
    }
}

impl FromWire<pb::ProfileStatus> for ProfileStatus {
    fn from_wire(w: pb::ProfileStatus) -> Result<Self> {
        let pb::ProfileStatus { image, tags, behaviours, types } = w;
        Ok(ProfileStatus { image, tags, behaviours, types: all(types)? })
    }
}

impl FromWire<pb::ProcessNode> for ProcessNode {
    fn from_wire(w: pb::ProcessNode) -> Result<Self> {
        let pb::ProcessNode { lineage, first_seen_unix_ms, last_seen_unix_ms, tags, files, dns, endpoints, mechanisms } =
            w;
        Ok(ProcessNode {
            lineage,
            first_seen: time_ms(first_seen_unix_ms, "ProcessNode.first_seen_unix_ms")?,
            last_seen: time_ms(last_seen_unix_ms, "ProcessNode.last_seen_unix_ms")?,
            tags,
            files: files
                .into_iter()
                .map(|pb::FileEntry { pattern, access }| FileEntry { pattern, access: accesses(access) })
                .collect(),
            dns: dns.into_iter().map(|pb::DnsEntry { name, r#type }| DnsEntry { name, qtype: r#type }).collect(),
            endpoints: endpoints
                .into_iter()
                .map(|pb::EndpointEntry { protocol, address, port }| EndpointEntry {
                    protocol: protocol.into(),
                    address,
                    port,
                })
                .collect(),
            mechanisms,
        })
    }
}

impl FromWire<pb::Profile> for Profile {
    fn from_wire(w: pb::Profile) -> Result<Self> {
        let pb::Profile { image, tags, nodes, status } = w;
        Ok(Profile { image, tags, nodes: all(nodes)?, status: status.map(ProfileStatus::from_wire).transpose()? })
    }
}

impl FromWire<pb::GetProfileResponse> for Profile {
    fn from_wire(w: pb::GetProfileResponse) -> Result<Self> {
        let pb::GetProfileResponse { profile } = w;
        Profile::from_wire(required(profile, "GetProfileResponse.profile")?)
    }
}

impl ToWire<pb::BehaviourToAdd> for BehaviourToAdd {
    fn to_wire(self) -> pb::BehaviourToAdd {
        let BehaviourToAdd { lineage, behaviour } = self;
        pb::BehaviourToAdd { lineage, behaviour: behaviour.to_wire() }
    }
}

impl FromWire<pb::AddToProfileResponse> for ProfileAddition {
    fn from_wire(w: pb::AddToProfileResponse) -> Result<Self> {
        let pb::AddToProfileResponse { added, already_known } = w;
        Ok(ProfileAddition { added, already_known })
    }
}

impl FromWire<pb::AuditEvent> for AuditEvent {
    fn from_wire(w: pb::AuditEvent) -> Result<Self> {
        let pb::AuditEvent {
            sequence,
            time_unix_ms,
            principal,
            evt_name,
            asset_type,
            asset_id,
            action,
            outcome,
            before,
            after,
            prev_hash,
            hash,
        } = w;
        Ok(AuditEvent {
            sequence,
            time: time_ms(time_unix_ms, "AuditEvent.time_unix_ms")?,
            principal,
            evt_name,
            asset_type,
            asset_id,
            action,
            outcome,
            before: json_doc(before, "AuditEvent.before")?,
            after: json_doc(after, "AuditEvent.after")?,
            prev_hash,
            hash,
        })
    }
}

impl FromWire<pb::VerifyAuditTrailResponse> for AuditVerification {
    fn from_wire(w: pb::VerifyAuditTrailResponse) -> Result<Self> {
        let pb::VerifyAuditTrailResponse { ok, records, error } = w;
        Ok(AuditVerification { ok, records, error })
    }
}

impl FromWire<pb::SignalSummary> for SignalSummary {
    fn from_wire(w: pb::SignalSummary) -> Result<Self> {
        let pb::SignalSummary {
            id,
            rule_id,
            severity,
            status,
            assignee,
            container,
            first_seen_unix_ms,
            last_seen_unix_ms,
            anomalies,
            version,
        } = w;
        Ok(SignalSummary {
            id,
            rule_id,
            severity: Severity::from(severity.as_str()),
            status: status.into(),
            assignee: non_empty(assignee),
            container: Container::from_wire(required(container, "SignalSummary.container")?)?,
            first_seen: time_ms(first_seen_unix_ms, "SignalSummary.first_seen_unix_ms")?,
            last_seen: time_ms(last_seen_unix_ms, "SignalSummary.last_seen_unix_ms")?,
            anomalies,
            version,
        })
    }
}

impl FromWire<pb::SignalEntry> for SignalEntry {
    fn from_wire(w: pb::SignalEntry) -> Result<Self> {
        let pb::SignalEntry { sequence, anomaly_id, time_unix_ms, r#type, lineage, behaviour, summary } = w;
        Ok(SignalEntry {
            sequence,
            anomaly_id,
            time: time_ms(time_unix_ms, "SignalEntry.time_unix_ms")?,
            event_type: r#type.into(),
            lineage,
            behaviour: Behaviour::from_wire(behaviour)?,
            summary,
        })
    }
}

impl FromWire<pb::Signal> for Signal {
    fn from_wire(w: pb::Signal) -> Result<Self> {
        let pb::Signal { summary, what_happened, next_steps, events, entries } = w;
        Ok(Signal {
            summary: SignalSummary::from_wire(required(summary, "Signal.summary")?)?,
            what_happened,
            next_steps,
            events,
            entries: all(entries)?,
        })
    }
}

impl ToWire<pb::UpdateSignalRequest> for SignalUpdate {
    fn to_wire(self) -> pb::UpdateSignalRequest {
        let SignalUpdate { id, status, assignee, benign } = self;
        let (mark_benign, benign_anomaly_ids) = match benign {
            None => (false, Vec::new()),
            Some(Benign::All) => (true, Vec::new()),
            Some(Benign::Only(ids)) => (true, ids),
        };
        pb::UpdateSignalRequest {
            id,
            status: status.map_or(pb::SignalStatus::Unspecified as i32, i32::from),
            assignee,
            mark_benign,
            benign_anomaly_ids,
        }
    }
}

impl FromWire<pb::UpdateSignalResponse> for SignalUpdated {
    fn from_wire(w: pb::UpdateSignalResponse) -> Result<Self> {
        let pb::UpdateSignalResponse { signal, behaviours_added } = w;
        Ok(SignalUpdated {
            signal: Signal::from_wire(required(signal, "UpdateSignalResponse.signal")?)?,
            behaviours_added,
        })
    }
}

impl FromWire<pb::SignalChange> for SignalChange {
    fn from_wire(w: pb::SignalChange) -> Result<Self> {
        let pb::SignalChange { sequence, created, signal } = w;
        Ok(SignalChange {
            sequence,
            created,
            signal: SignalSummary::from_wire(required(signal, "SignalChange.signal")?)?,
        })
    }
}

/// `None` for an item without a kind this client knows (skipped).
impl FromWire<pb::SignalStreamItem> for Option<SignalStreamItem> {
    fn from_wire(w: pb::SignalStreamItem) -> Result<Self> {
        use pb::signal_stream_item::Item;
        let pb::SignalStreamItem { item } = w;
        Ok(match item {
            Some(Item::Change(c)) => Some(SignalStreamItem::Change(SignalChange::from_wire(c)?)),
            Some(Item::Lagged(l)) => Some(SignalStreamItem::Lagged(Lagged::from_wire(l)?)),
            None => None,
        })
    }
}

impl FromWire<pb::NotificationTarget> for NotificationTarget {
    fn from_wire(w: pb::NotificationTarget) -> Result<Self> {
        use pb::notification_target::Kind;
        let pb::NotificationTarget { kind } = w;
        Ok(match kind {
            Some(Kind::Slack(pb::SlackTarget { url })) => NotificationTarget::Slack { url },
            Some(Kind::Webhook(pb::WebhookTarget { url, secret, headers })) => {
                NotificationTarget::Webhook { url, secret: non_empty(secret), headers: headers.into_iter().collect() }
            }
            Some(Kind::Email(pb::EmailTarget { server, starttls, username, password, from, to })) => {
                NotificationTarget::Email {
                    server,
                    starttls,
                    username: non_empty(username),
                    password: non_empty(password),
                    from,
                    to,
                }
            }
            None => NotificationTarget::Unknown,
        })
    }
}

impl ToWire<pb::NotificationTarget> for NotificationTarget {
    fn to_wire(self) -> pb::NotificationTarget {
        use pb::notification_target::Kind;
        let kind = match self {
            NotificationTarget::Slack { url } => Some(Kind::Slack(pb::SlackTarget { url })),
            NotificationTarget::Webhook { url, secret, headers } => Some(Kind::Webhook(pb::WebhookTarget {
                url,
                secret: secret.unwrap_or_default(),
                headers: headers.into_iter().collect(),
            })),
            NotificationTarget::Email { server, starttls, username, password, from, to } => {
                Some(Kind::Email(pb::EmailTarget {
                    server,
                    starttls,
                    username: username.unwrap_or_default(),
                    password: password.unwrap_or_default(),
                    from,
                    to,
                }))
            }
            NotificationTarget::Unknown => None,
        };
        pb::NotificationTarget { kind }
    }
}

impl FromWire<pb::NotificationRule> for NotificationRule {
    fn from_wire(w: pb::NotificationRule) -> Result<Self> {
        let pb::NotificationRule { id, name, enabled, query, targets, notify_on_update } = w;
        Ok(NotificationRule { id, name, enabled, query, targets: all(targets)?, notify_on_update })
    }
}

impl ToWire<pb::NotificationRule> for NotificationRule {
    fn to_wire(self) -> pb::NotificationRule {
        let NotificationRule { id, name, enabled, query, targets, notify_on_update } = self;
        pb::NotificationRule {
            id,
            name,
            enabled,
            query,
            targets: targets.into_iter().map(NotificationTarget::to_wire).collect(),
            notify_on_update,
        }
    }
}

impl FromWire<pb::Suppression> for Suppression {
    fn from_wire(w: pb::Suppression) -> Result<Self> {
        let pb::Suppression { id, name, image, r#type, process, detail } = w;
        Ok(Suppression { id, name, image, event_type: event_type_filter(r#type), process, detail })
    }
}

impl ToWire<pb::Suppression> for Suppression {
    fn to_wire(self) -> pb::Suppression {
        let Suppression { id, name, image, event_type, process, detail } = self;
        pb::Suppression { id, name, image, r#type: event_type_filter_to_wire(event_type), process, detail }
    }
}

/// The `StreamAnomalies` request of a filter.
pub(crate) fn anomalies_request(filter: &WatchFilter, after_sequence: u64) -> pb::StreamAnomaliesRequest {
    let WatchFilter { image, container, event_type } = filter;
    pb::StreamAnomaliesRequest {
        after_sequence,
        image: image.clone(),
        container: container.clone(),
        r#type: event_type_filter_to_wire(*event_type),
    }
}

/// The `QueryAuditTrail` request (unbounded ends are 0 on the wire).
pub(crate) fn audit_request(
    query: &str,
    from: Option<OffsetDateTime>,
    to: Option<OffsetDateTime>,
    limit: u32,
) -> pb::QueryAuditTrailRequest {
    pb::QueryAuditTrailRequest {
        query: query.to_owned(),
        from_unix_ms: from.map_or(0, to_ms),
        to_unix_ms: to.map_or(0, to_ms),
        limit,
    }
}

#[cfg(test)]
mod tests;

impl From<pb::ProfileStoreStatus> for crate::ProfileStore {
    fn from(s: pb::ProfileStoreStatus) -> Self {
        let pb::ProfileStoreStatus { kind, connection, since_unix_ms, reason, queued, revision, replica, cluster } = s;
        Self {
            kind,
            connection,
            since_ms: (since_unix_ms != 0).then_some(since_unix_ms),
            reason: (!reason.is_empty()).then_some(reason),
            queued,
            revision,
            replica,
            cluster,
        }
    }
}
