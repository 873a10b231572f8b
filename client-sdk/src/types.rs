//! The API's resources as Rust types: enums instead of wire numbers, times
//! as [`OffsetDateTime`], absent values as `Option`. The wire (`telltale.v1`
//! proto messages) is converted in one private module; nothing here names it.
//!
//! Every type serializes (serde) with stable, lower-case names and RFC 3339
//! times, which is what `telltalectl -o json|yaml` prints. The types a user
//! writes ([`NotificationRule`], [`NotificationTarget`], [`Suppression`])
//! also deserialize, refusing unknown keys.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

/// A name that is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}: use {}", .expected.join(", "))]
pub struct UnknownName {
    /// What was being parsed (`event type`).
    pub what: &'static str,
    /// The text given.
    pub given: String,
    /// The accepted names.
    pub expected: Vec<&'static str>,
}

/// An enum of the API: the values this client knows by name, and `Unknown`
/// with the wire number for a value from a newer server.
macro_rules! api_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this client does not know (from a newer server), with
            /// its wire number. Printed and parsed as `unknown(N)`.
            Unknown(i32),
        }

        impl $name {
            /// Every value this client knows, in wire order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable name (`None` for [`Self::Unknown`]).
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( $name::$variant => Some($text), )+
                    $name::Unknown(_) => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "unknown({})", match self { $name::Unknown(n) => *n, _ => 0 }),
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    other => parse_unknown(other).map($name::Unknown).ok_or_else(|| UnknownName {
                        what: $what,
                        given: other.to_owned(),
                        expected: vec![$($text),+],
                    }),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// `unknown(N)` → N.
fn parse_unknown(s: &str) -> Option<i32> {
    s.strip_prefix("unknown(")?.strip_suffix(')')?.parse().ok()
}

api_enum! {
    /// What kind of behaviour an event, anomaly or profile entry is about.
    EventType, "event type" {
        /// A program was executed.
        Exec => "exec",
        /// A file was opened.
        File => "file",
        /// A DNS name was resolved.
        Dns => "dns",
        /// A connection was made.
        Connect => "connect",
    }
}

api_enum! {
    /// Where a profile's event type is in its learning lifecycle.
    LearningState, "learning state" {
        /// Still learning: nothing is reported.
        Learning => "learning",
        /// Learned: anything new is an anomaly.
        Stable => "stable",
        /// Never settled within the maximum learning time.
        Unstable => "unstable",
    }
}

api_enum! {
    /// Triage status of a signal.
    SignalStatus, "signal status" {
        /// New, nobody has looked at it.
        Open => "open",
        /// Someone took it on.
        UnderReview => "under_review",
        /// Done with (benign or handled).
        Archived => "archived",
    }
}

api_enum! {
    /// How a file was opened.
    Access, "access" {
        /// Opened for reading.
        Read => "read",
        /// Opened for writing.
        Write => "write",
        /// Created.
        Create => "create",
        /// Truncated.
        Truncate => "truncate",
    }
}

api_enum! {
    /// Transport protocol of a connection or DNS query.
    Protocol, "protocol" {
        /// TCP.
        Tcp => "tcp",
        /// UDP.
        Udp => "udp",
    }
}

/// Severity of a signal (the highest of its anomalies).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Severity {
    /// e.g. a new file read.
    Low,
    /// e.g. a new DNS name, endpoint or file write.
    Medium,
    /// e.g. a new process.
    High,
    /// A severity this client does not know (from a newer server).
    Other(String),
}

impl Severity {
    /// `low`, `medium`, `high`, or the unknown name as sent.
    pub fn as_str(&self) -> &str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Other(s) => s,
        }
    }
}

impl From<&str> for Severity {
    fn from(s: &str) -> Self {
        match s {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            other => Severity::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Severity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A container of the watched pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Container {
    /// Container id (the name given in the configuration, or the runtime's id).
    pub id: String,
    /// Container name.
    pub name: String,
    /// Short image name (`cws-webapp`).
    pub image: String,
    /// Image tag (the profile version).
    pub tag: String,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// Kubernetes pod name (empty outside Kubernetes).
    pub pod: String,
    /// Kubernetes namespace (empty outside Kubernetes).
    pub namespace: String,
    /// The image's repository as the pod spec names it, without tag or digest.
    pub repository: String,
}

/// A behaviour: what a process node did, as profiles record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Behaviour {
    /// The process node (its lineage) itself.
    Exec,
    /// A file opened.
    File {
        /// An absolute path, generalized like learned paths (`/proc/<pid>/...`).
        path: String,
        /// How it was opened.
        access: Vec<Access>,
    },
    /// A DNS question.
    Dns {
        /// The name.
        name: String,
        /// Query type, e.g. `A` (empty: A).
        #[serde(rename = "type")]
        qtype: String,
    },
    /// A connection.
    Connect {
        /// TCP or UDP.
        protocol: Protocol,
        /// An IP address or a CIDR range (`10.0.0.0/8`).
        address: String,
        /// 1-65535; 0 only with a CIDR range: any port.
        port: u32,
    },
    /// A file pattern as profiles store and export it
    /// (`/proc/{pid}/status`, `{{` for a literal brace), added as it is
    /// instead of generalized like [`Behaviour::File`]'s path.
    FilePattern {
        /// The pattern.
        pattern: String,
        /// How it may be opened.
        access: Vec<Access>,
    },
    /// A mechanism the sensors cannot see through (`io_uring`): its use
    /// is judged with the exec type.
    Mechanism {
        /// Its name (`io_uring`).
        name: String,
    },
    /// Not set, or a kind this client does not know (from a newer server).
    Unknown,
}

/// The process that caused an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Kernel command name (`comm`).
    pub comm: String,
    /// Absolute executable path (the script, for `#!` scripts).
    pub path: String,
    /// The interpreter, when `path` is a `#!` script.
    pub interpreter: Option<String>,
    /// Arguments, `argv[0]` first.
    pub args: Vec<String>,
    /// Whether `args` were cut short.
    pub args_truncated: bool,
    /// Executable paths of the ancestors, outermost first.
    pub ancestors: Vec<String>,
}

/// One DNS question of a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsQuestion {
    /// The name asked for.
    pub name: String,
    /// Query type, e.g. `A`.
    #[serde(rename = "type")]
    pub qtype: String,
}

/// What an observed event was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A successful exec: the process is the new program.
    Exec,
    /// A file opened.
    File {
        /// The path as opened.
        path: String,
        /// How.
        access: Vec<Access>,
        /// Whether the path was cut short.
        truncated: bool,
    },
    /// A DNS query sent.
    Dns {
        /// Its questions.
        questions: Vec<DnsQuestion>,
        /// Transport.
        protocol: Protocol,
        /// The server it was sent to.
        server: String,
    },
    /// A connection made.
    Connect {
        /// Transport.
        protocol: Protocol,
        /// Remote address.
        address: String,
        /// Remote port.
        port: u32,
    },
    /// A mechanism the sensors cannot see through was used.
    Mechanism {
        /// Its name (`io_uring`).
        name: String,
    },
    /// Not set, or a kind this client does not know (from a newer server).
    Unknown,
}

/// An event as the sensors observed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Wall-clock time.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// cgroup v2 id of the process's cgroup.
    pub cgroup_id: u64,
    /// The process.
    pub process: Process,
    /// What it did.
    pub kind: EventKind,
}

/// Something a container did that its profile does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// Unique id.
    pub id: String,
    /// When it happened (the event's time).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Where.
    pub container: Container,
    /// What kind of behaviour.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The profile version (image tag) it was judged against.
    pub profile_version: String,
    /// Executable paths, outermost ancestor first, the process itself last.
    pub lineage: Vec<String>,
    /// The new behaviour, as it would be added to the profile.
    pub behaviour: Behaviour,
    /// The event as observed (process with args, raw path, ...).
    pub event: Event,
}

/// An anomaly with its position in the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SequencedAnomaly {
    /// Sequence number: resume after it with [`crate::Client::watch`].
    pub sequence: u64,
    /// The anomaly.
    #[serde(flatten)]
    pub anomaly: Anomaly,
}

/// The client fell behind: `skipped` items were not sent; reconnect after
/// `resume_after` to get them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Lagged {
    /// Items not sent.
    pub skipped: u64,
    /// Resume after this sequence number.
    pub resume_after: u64,
    /// The server's explanation.
    pub message: String,
}

/// One item of a single [`crate::Client::stream_anomalies`] call.
// Nearly every item is the large variant: boxing would only add an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnomalyStreamItem {
    /// An anomaly.
    Anomaly(SequencedAnomaly),
    /// The stream fell behind and ends.
    Lagged(Lagged),
}

/// Learning status of one event type of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypeStatus {
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Its state.
    pub state: LearningState,
    /// When learning started.
    #[serde(with = "time::serde::rfc3339")]
    pub learning_started: OffsetDateTime,
    /// When it entered its current state.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// Behaviours known.
    pub behaviours: u64,
    /// When the last new behaviour was learned (`None`: never).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_new_behaviour: Option<OffsetDateTime>,
    /// Learning time left at most (`None`: not learning).
    #[serde(with = "humantime_serde")]
    pub time_left: Option<Duration>,
    /// Events lost (ring buffer full) while learning.
    pub lost_events: u64,
}

/// Where the daemon keeps its profiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProfileStore {
    /// `local` (this pod's store only) or `etcd` (fleet-wide).
    pub kind: String,
    /// etcd: `connected`, `disconnected` or `resyncing`; empty for local.
    pub connection: String,
    /// Since when the connection state holds (ms), if known.
    pub since_ms: Option<i64>,
    /// Why it is disconnected.
    pub reason: Option<String>,
    /// Behaviours waiting for etcd.
    pub queued: u64,
    /// The etcd revision last seen.
    pub revision: i64,
    /// This replica's name in the fleet.
    pub replica: String,
    /// The fleet's name.
    pub cluster: String,
}

/// Learning status of one profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProfileStatus {
    /// Short image name.
    pub image: String,
    /// Versions (image tags) seen.
    pub tags: Vec<String>,
    /// Behaviours known, all types.
    pub behaviours: u64,
    /// Per event type.
    pub types: Vec<TypeStatus>,
}

/// A file pattern of a process node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// Path pattern.
    pub pattern: String,
    /// Accesses allowed.
    pub access: Vec<Access>,
}

/// A DNS name of a process node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsEntry {
    /// The name.
    pub name: String,
    /// Query type.
    #[serde(rename = "type")]
    pub qtype: String,
}

/// An endpoint of a process node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointEntry {
    /// Transport.
    pub protocol: Protocol,
    /// Address or CIDR range.
    pub address: String,
    /// Port (0: any, with a range).
    pub port: u32,
}

/// A process node of a profile's activity tree, with what it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessNode {
    /// Executable paths, outermost first, the process last.
    pub lineage: Vec<String>,
    /// First seen.
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    /// Last seen.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// Versions it was seen in.
    pub tags: Vec<String>,
    /// Files.
    pub files: Vec<FileEntry>,
    /// DNS names.
    pub dns: Vec<DnsEntry>,
    /// Endpoints.
    pub endpoints: Vec<EndpointEntry>,
    /// Mechanisms used that the sensors cannot see through (`io_uring`).
    pub mechanisms: Vec<String>,
}

/// A security profile: an image's activity tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// Short image name.
    pub image: String,
    /// Versions (image tags).
    pub tags: Vec<String>,
    /// Process nodes.
    pub nodes: Vec<ProcessNode>,
    /// Learning status, when the server sends it.
    pub status: Option<ProfileStatus>,
}

/// A behaviour to add to a profile: built with [`crate::behaviour`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BehaviourToAdd {
    /// The process node: executable paths, outermost first, the process last.
    pub lineage: Vec<String>,
    /// The behaviour.
    pub behaviour: Behaviour,
}

/// What [`crate::Client::add_to_profile`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProfileAddition {
    /// Behaviours added.
    pub added: u32,
    /// Behaviours the profile already had.
    pub already_known: u32,
}

/// A record of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    /// Position in the hash chain.
    pub sequence: u64,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Who (`anonymous` when unauthenticated).
    pub principal: String,
    /// `evt.name` (`Cloud Security Platform`).
    #[serde(rename = "evt.name")]
    pub evt_name: String,
    /// `asset.type` (`security_profile`, `security_signal`, ...).
    #[serde(rename = "asset.type")]
    pub asset_type: String,
    /// `asset.id`.
    #[serde(rename = "asset.id")]
    pub asset_id: String,
    /// What was done (`add_to_profile`, `mark_benign`, ...).
    pub action: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// The asset before, when recorded.
    pub before: Option<serde_json::Value>,
    /// The asset after, when recorded.
    pub after: Option<serde_json::Value>,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// Hash of this record (covering the previous one).
    pub hash: String,
}

/// The result of checking the audit trail's hash chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditVerification {
    /// Whether the whole chain verifies.
    pub ok: bool,
    /// Records checked.
    pub records: u64,
    /// Why it does not verify (empty when ok).
    pub error: String,
}

/// A signal without its overview, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignalSummary {
    /// Unique id.
    pub id: String,
    /// The rule that raised it (`anomaly_detection`).
    pub rule_id: String,
    /// Highest severity of its anomalies.
    pub severity: Severity,
    /// Triage status.
    pub status: SignalStatus,
    /// Who took it on.
    pub assignee: Option<String>,
    /// The container.
    pub container: Container,
    /// First anomaly.
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    /// Latest anomaly.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// Anomalies, including those past the kept ones.
    pub anomalies: u32,
    /// Bumped on every change.
    pub version: u64,
}

/// One anomaly of a signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignalEntry {
    /// The anomaly's stream sequence number.
    pub sequence: u64,
    /// The anomaly's id.
    pub anomaly_id: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// What kind.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The process node.
    pub lineage: Vec<String>,
    /// The behaviour.
    pub behaviour: Behaviour,
    /// One line for people.
    pub summary: String,
}

/// A signal with its overview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signal {
    /// Status, severity, container, counts.
    #[serde(flatten)]
    pub summary: SignalSummary,
    /// What happened and how to evaluate it.
    pub what_happened: String,
    /// Suggested next steps (exact `telltalectl` commands).
    pub next_steps: Vec<String>,
    /// The anomaly events in order, one line each.
    pub events: Vec<String>,
    /// The anomalies.
    pub entries: Vec<SignalEntry>,
}

impl fmt::Display for Signal {
    /// A header line, then What happened, Suggested next steps and Anomaly events.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.summary;
        let c = &s.container;
        writeln!(
            f,
            "signal {}  rule_id:{}  severity:{}  status:{}  container:{}  image:{}:{}",
            s.id, s.rule_id, s.severity, s.status, c.id, c.image, c.tag
        )?;
        write!(f, "\nWhat happened\n  {}\n\nSuggested next steps\n", self.what_happened)?;
        for n in &self.next_steps {
            writeln!(f, "  - {n}")?;
        }
        f.write_str("\nAnomaly events\n")?;
        for e in &self.events {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// Which anomalies of a signal to mark benign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Benign {
    /// All of them.
    All,
    /// Only these anomaly ids.
    Only(Vec<String>),
}

/// A triage request for [`crate::Client::update_signal`]. `None` leaves a
/// field unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignalUpdate {
    /// The signal.
    pub id: String,
    /// New status.
    pub status: Option<SignalStatus>,
    /// New assignee (`Some("")` clears it).
    pub assignee: Option<String>,
    /// Mark benign: add the behaviours to the profile and archive.
    pub benign: Option<Benign>,
}

impl SignalUpdate {
    /// An update of `id` that changes nothing yet.
    pub fn new(id: impl Into<String>) -> Self {
        SignalUpdate { id: id.into(), status: None, assignee: None, benign: None }
    }

    /// Set the status.
    pub fn status(mut self, status: SignalStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Set the assignee.
    pub fn assignee(mut self, assignee: impl Into<String>) -> Self {
        self.assignee = Some(assignee.into());
        self
    }

    /// Mark these anomalies (or all) benign.
    pub fn benign(mut self, which: Benign) -> Self {
        self.benign = Some(which);
        self
    }
}

/// What [`crate::Client::update_signal`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignalUpdated {
    /// The signal as it is now.
    pub signal: Signal,
    /// Behaviours added to the profile (mark benign).
    pub behaviours_added: u32,
}

/// A signal was created or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignalChange {
    /// Sequence number: resume after it with [`crate::Client::watch_signals`].
    pub sequence: u64,
    /// Whether the signal is new.
    pub created: bool,
    /// The signal as it is now.
    pub signal: SignalSummary,
}

/// One item of a single [`crate::Client::stream_signals`] call.
// Nearly every item is the large variant: boxing would only add an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalStreamItem {
    /// A change.
    Change(SignalChange),
    /// The stream fell behind and ends.
    Lagged(Lagged),
}

fn yes() -> bool {
    true
}

/// A notification rule: a facet query over signal attributes and targets.
/// As a file (`telltalectl rules create`): JSON or YAML with these keys;
/// unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationRule {
    /// Unique id, given by the server on create.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Name shown in messages.
    pub name: String,
    /// Disabled rules send nothing (default: enabled).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Facet query over signal attributes (`rule_id:anomaly_detection severity:high`).
    #[serde(default)]
    pub query: String,
    /// Where to send.
    pub targets: Vec<NotificationTarget>,
    /// Also notify when an open signal gets new anomalies (default: no).
    #[serde(default)]
    pub notify_on_update: bool,
}

/// Where a notification rule sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NotificationTarget {
    /// A Slack incoming webhook.
    Slack {
        /// The webhook URL.
        url: String,
    },
    /// Any HTTP endpoint (JSON body; e.g. automated remediation).
    Webhook {
        /// The URL.
        url: String,
        /// Key of the `X-Telltale-Signature: sha256=<HMAC>` header (`None`: unsigned).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
        /// Extra headers.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
    },
    /// Email over SMTP.
    Email {
        /// `host:port`.
        server: String,
        /// Upgrade with STARTTLS.
        #[serde(default)]
        starttls: bool,
        /// SMTP AUTH user.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        /// SMTP AUTH password.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
        /// Sender address.
        from: String,
        /// Recipients.
        to: Vec<String>,
    },
    /// Not set, or a kind this client does not know (from a newer server).
    #[serde(skip_deserializing)]
    Unknown,
}

impl NotificationTarget {
    /// `slack`, `webhook`, `email` or `unknown`.
    pub fn kind(&self) -> &'static str {
        match self {
            NotificationTarget::Slack { .. } => "slack",
            NotificationTarget::Webhook { .. } => "webhook",
            NotificationTarget::Email { .. } => "email",
            NotificationTarget::Unknown => "unknown",
        }
    }
}

/// A suppression rule: matching anomalies are added to the profile instead
/// of reported. Empty patterns match anything; `*` is a wildcard. At least
/// one of image, process and detail must narrow it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suppression {
    /// Unique id, given by the server on create.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// What it is for.
    pub name: String,
    /// Short image name pattern.
    #[serde(default)]
    pub image: String,
    /// Only this event type (`None`: any).
    #[serde(default, rename = "type")]
    pub event_type: Option<EventType>,
    /// Executable of the process.
    #[serde(default)]
    pub process: String,
    /// File pattern, DNS name, or `address:port`.
    #[serde(default)]
    pub detail: String,
}
