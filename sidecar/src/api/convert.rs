//! Domain ↔ proto, in one place, private to the API. Exhaustive
//! destructuring: a new field on either side breaks the build here, not
//! the wire. Input quoted in a refusal goes through [`echo`].

use std::net::IpAddr;

use telltale_proto::v1 as pb;

use telltale_core::detect::{Anomaly, Container};
use telltale_core::event::{Access, DnsQuery, Endpoint, Event, EventKind, FileAccess, Mechanism, Process, Protocol};
use telltale_core::field::FieldError;
use telltale_core::profile::generalize::{check_pattern, path_pattern};
use telltale_core::profile::lifecycle::State;
use telltale_core::profile::{Behaviour, EventType, Node, Observation, Profile};
use telltale_core::status::{ProfileStatus, TypeStatus};

use super::error::echo;

fn bad(field: impl Into<String>, problem: impl Into<String>) -> FieldError {
    FieldError::new(field, problem)
}

/// Proto event type.
pub fn event_type(t: EventType) -> pb::EventType {
    match t {
        EventType::Exec => pb::EventType::Exec,
        EventType::File => pb::EventType::File,
        EventType::Dns => pb::EventType::Dns,
        EventType::Connect => pb::EventType::Connect,
    }
}

/// Domain event type (None for unspecified).
pub fn from_event_type(t: pb::EventType) -> Option<EventType> {
    match t {
        pb::EventType::Unspecified => None,
        pb::EventType::Exec => Some(EventType::Exec),
        pb::EventType::File => Some(EventType::File),
        pb::EventType::Dns => Some(EventType::Dns),
        pb::EventType::Connect => Some(EventType::Connect),
    }
}

fn state(s: State) -> pb::LearningState {
    match s {
        State::Learning => pb::LearningState::Learning,
        State::Stable => pb::LearningState::Stable,
        State::Unstable => pb::LearningState::Unstable,
    }
}

fn access(a: Access) -> pb::Access {
    match a {
        Access::Read => pb::Access::Read,
        Access::Write => pb::Access::Write,
        Access::Create => pb::Access::Create,
        Access::Truncate => pb::Access::Truncate,
    }
}

fn access_from_bits(bits: u8) -> Vec<i32> {
    [(1, pb::Access::Read), (2, pb::Access::Write), (4, pb::Access::Create), (8, pb::Access::Truncate)]
        .into_iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, a)| a as i32)
        .collect()
}

fn protocol(p: Protocol) -> pb::Protocol {
    match p {
        Protocol::Tcp => pb::Protocol::Tcp,
        Protocol::Udp => pb::Protocol::Udp,
        Protocol::Other(_) => pb::Protocol::Unspecified,
    }
}

fn time_nanos(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// Proto event.
pub fn event(e: &Event) -> pb::Event {
    let Event { time, cgroup_id, process: p, kind, dedup_key: _ } = e;
    let Process { pid, ppid, uid, gid, comm, path, interpreter, args, args_truncated, ancestors } = p;
    let kind = match kind {
        EventKind::Exec => pb::event::Kind::Exec(pb::Exec {}),
        EventKind::File { file: FileAccess { path, access: a, truncated } } => pb::event::Kind::File(pb::FileAccess {
            path: path.clone(),
            access: a.iter().map(|a| access(*a) as i32).collect(),
            truncated: *truncated,
        }),
        EventKind::Dns { dns: DnsQuery { questions, protocol: proto, server } } => pb::event::Kind::Dns(pb::DnsQuery {
            questions: questions
                .iter()
                .map(|q| pb::DnsQuestion { name: q.name.clone(), r#type: q.qtype.clone() })
                .collect(),
            protocol: protocol(*proto) as i32,
            server: server.to_string(),
        }),
        EventKind::Connect { connect: Endpoint { protocol: proto, address, port } } => {
            pb::event::Kind::Connect(pb::Endpoint {
                protocol: protocol(*proto) as i32,
                address: address.to_string(),
                port: u32::from(*port),
            })
        }
        EventKind::Mechanism { mechanism } => {
            pb::event::Kind::Mechanism(pb::MechanismUse { name: mechanism.name().to_owned() })
        }
    };
    pb::Event {
        time_unix_nano: time_nanos(*time),
        cgroup_id: *cgroup_id,
        process: Some(pb::Process {
            pid: *pid,
            ppid: *ppid,
            uid: *uid,
            gid: *gid,
            comm: comm.clone(),
            path: path.clone(),
            interpreter: interpreter.clone().unwrap_or_default(),
            args: args.clone(),
            args_truncated: *args_truncated,
            ancestors: ancestors.clone(),
        }),
        kind: Some(kind),
    }
}

/// Proto behaviour (file paths are the learned patterns).
pub fn behaviour(b: &Behaviour) -> pb::Behaviour {
    let kind = match b {
        Behaviour::Exec => pb::behaviour::Kind::Exec(pb::ExecBehaviour {}),
        Behaviour::File { pattern, access } => pb::behaviour::Kind::File(pb::FileBehaviour {
            path: pattern.clone(),
            access: access_from_bits(*access),
            pattern: false,
        }),
        Behaviour::Dns { name, qtype } => {
            pb::behaviour::Kind::Dns(pb::DnsBehaviour { name: name.clone(), r#type: qtype.clone() })
        }
        Behaviour::Connect { protocol: p, address, port } => pb::behaviour::Kind::Connect(pb::ConnectBehaviour {
            protocol: protocol(*p) as i32,
            address: address.to_string(),
            port: u32::from(*port),
        }),
        Behaviour::ConnectRange { protocol: p, network, port } => pb::behaviour::Kind::Connect(pb::ConnectBehaviour {
            protocol: protocol(*p) as i32,
            address: network.to_string(),
            port: u32::from(*port),
        }),
        Behaviour::Mechanism { mechanism } => {
            pb::behaviour::Kind::Mechanism(pb::MechanismBehaviour { name: mechanism.name().to_owned() })
        }
    };
    pb::Behaviour { kind: Some(kind) }
}

fn container(c: &Container) -> pb::Container {
    let Container { id, name, image, tag, repository, cgroup_id, first_seen_ms: _, pod, namespace } = c;
    pb::Container {
        id: id.clone(),
        name: name.clone(),
        image: image.clone(),
        tag: tag.clone(),
        cgroup_id: *cgroup_id,
        pod: pod.clone(),
        namespace: namespace.clone(),
        repository: repository.clone(),
    }
}

/// Proto anomaly.
pub fn anomaly(a: &Anomaly) -> pb::Anomaly {
    let Anomaly { id, time, time_ms: _, container: c, event_type: t, profile_version, observation, event: ev } = a;
    pb::Anomaly {
        id: id.clone(),
        time_unix_nano: time_nanos(*time),
        container: Some(container(c)),
        r#type: event_type(*t) as i32,
        profile_version: profile_version.clone(),
        lineage: observation.lineage.clone(),
        behaviour: Some(behaviour(&observation.behaviour)),
        event: Some(event(ev)),
    }
}

/// Proto audit event.
pub fn audit_event(r: &telltale_core::audit::Record) -> pb::AuditEvent {
    let telltale_core::audit::Record { seq, evt_name, action, prev_hash, hash } = r;
    let telltale_core::audit::Action { time_ms, principal, asset_type, asset_id, action, outcome, before, after } =
        action;
    let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_default();
    pb::AuditEvent {
        sequence: *seq,
        time_unix_ms: *time_ms,
        principal: principal.clone(),
        evt_name: evt_name.clone(),
        asset_type: asset_type.name().to_owned(),
        asset_id: asset_id.clone(),
        action: action.clone(),
        outcome: outcome.clone(),
        before: json(before),
        after: json(after),
        prev_hash: prev_hash.clone(),
        hash: hash.clone(),
    }
}

fn signal_status(s: telltale_core::signal::Status) -> pb::SignalStatus {
    match s {
        telltale_core::signal::Status::Open => pb::SignalStatus::Open,
        telltale_core::signal::Status::UnderReview => pb::SignalStatus::UnderReview,
        telltale_core::signal::Status::Archived => pb::SignalStatus::Archived,
    }
}

/// Domain signal status (None for unspecified).
pub fn from_signal_status(s: pb::SignalStatus) -> Option<telltale_core::signal::Status> {
    match s {
        pb::SignalStatus::Unspecified => None,
        pb::SignalStatus::Open => Some(telltale_core::signal::Status::Open),
        pb::SignalStatus::UnderReview => Some(telltale_core::signal::Status::UnderReview),
        pb::SignalStatus::Archived => Some(telltale_core::signal::Status::Archived),
    }
}

/// Proto signal summary.
pub fn signal_summary(s: &telltale_core::signal::Signal) -> pb::SignalSummary {
    let telltale_core::signal::Signal {
        id,
        rule_id,
        severity,
        status,
        assignee,
        container: c,
        first_seen_ms,
        last_seen_ms,
        entries,
        anomaly_count,
        version,
    } = s;
    pb::SignalSummary {
        id: id.clone(),
        rule_id: rule_id.clone(),
        severity: severity.name().to_owned(),
        status: signal_status(*status) as i32,
        assignee: assignee.clone().unwrap_or_default(),
        container: Some(container(c)),
        first_seen_unix_ms: *first_seen_ms,
        last_seen_unix_ms: *last_seen_ms,
        anomalies: u32::try_from((*anomaly_count).max(entries.len() as u64)).unwrap_or(u32::MAX),
        version: *version,
    }
}

/// Proto signal with its overview.
pub fn signal(s: &telltale_core::signal::Signal) -> pb::Signal {
    let telltale_core::signal::Overview { what_happened, next_steps, events } = s.overview();
    pb::Signal {
        summary: Some(signal_summary(s)),
        what_happened,
        next_steps,
        events,
        entries: s
            .entries
            .iter()
            .map(|e| {
                let telltale_core::signal::Entry {
                    sequence,
                    anomaly_id,
                    time_ms,
                    event_type: t,
                    observation,
                    summary,
                    related: _,
                } = e;
                pb::SignalEntry {
                    sequence: *sequence,
                    anomaly_id: anomaly_id.clone(),
                    time_unix_ms: *time_ms,
                    r#type: event_type(*t) as i32,
                    lineage: observation.lineage.clone(),
                    behaviour: Some(behaviour(&observation.behaviour)),
                    summary: summary.clone(),
                }
            })
            .collect(),
    }
}

/// Proto notification rule.
pub fn rule(r: &telltale_core::notify::Rule) -> pb::NotificationRule {
    use telltale_core::notify::{Rule, Target};
    let Rule { id, name, enabled, query, targets, notify_on_update } = r;
    pb::NotificationRule {
        id: id.clone(),
        name: name.clone(),
        enabled: *enabled,
        query: query.clone(),
        notify_on_update: *notify_on_update,
        targets: targets
            .iter()
            .map(|t| pb::NotificationTarget {
                kind: Some(match t {
                    Target::Slack { url } => pb::notification_target::Kind::Slack(pb::SlackTarget { url: url.clone() }),
                    Target::Webhook { url, secret, headers } => {
                        pb::notification_target::Kind::Webhook(pb::WebhookTarget {
                            url: url.clone(),
                            secret: secret.clone().unwrap_or_default(),
                            headers: headers.clone().into_iter().collect(),
                        })
                    }
                    Target::Email { server, starttls, username, password, from, to } => {
                        pb::notification_target::Kind::Email(pb::EmailTarget {
                            server: server.clone(),
                            starttls: *starttls,
                            username: username.clone().unwrap_or_default(),
                            password: password.clone().unwrap_or_default(),
                            from: from.clone(),
                            to: to.clone(),
                        })
                    }
                }),
            })
            .collect(),
    }
}

/// Domain notification rule, validated (the query error has its column).
pub fn from_rule(r: &pb::NotificationRule) -> Result<telltale_core::notify::Rule, FieldError> {
    use telltale_core::notify::{Rule, Target};
    let pb::NotificationRule { id, name, enabled, query, targets, notify_on_update } = r;
    let none_if_empty = |s: &String| if s.is_empty() { None } else { Some(s.clone()) };
    let targets = targets
        .iter()
        .enumerate()
        .map(|(i, t)| match &t.kind {
            Some(pb::notification_target::Kind::Slack(pb::SlackTarget { url })) => {
                Ok(Target::Slack { url: url.clone() })
            }
            Some(pb::notification_target::Kind::Webhook(pb::WebhookTarget { url, secret, headers })) => {
                Ok(Target::Webhook {
                    url: url.clone(),
                    secret: none_if_empty(secret),
                    headers: headers.clone().into_iter().collect(),
                })
            }
            Some(pb::notification_target::Kind::Email(pb::EmailTarget {
                server,
                starttls,
                username,
                password,
                from,
                to,
            })) => Ok(Target::Email {
                server: server.clone(),
                starttls: *starttls,
                username: none_if_empty(username),
                password: none_if_empty(password),
                from: from.clone(),
                to: to.clone(),
            }),
            None => Err(bad(format!("targets[{i}]"), "has no kind: slack, webhook or email")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rule = Rule {
        id: id.clone(),
        name: name.clone(),
        enabled: *enabled,
        query: query.clone(),
        targets,
        notify_on_update: *notify_on_update,
    };
    rule.validate()?;
    Ok(rule)
}

/// Proto suppression.
pub fn suppression(r: &telltale_core::suppress::Suppression) -> pb::Suppression {
    let telltale_core::suppress::Suppression { id, name, image, event_type: t, process, detail } = r;
    pb::Suppression {
        id: id.clone(),
        name: name.clone(),
        image: image.clone(),
        r#type: t.map_or(pb::EventType::Unspecified, event_type) as i32,
        process: process.clone(),
        detail: detail.clone(),
    }
}

/// Domain suppression, validated.
pub fn from_suppression(r: &pb::Suppression) -> Result<telltale_core::suppress::Suppression, FieldError> {
    let pb::Suppression { id, name, image, r#type, process, detail } = r;
    let t = pb::EventType::try_from(*r#type)
        .map_err(|_| bad("type", format!("unknown event type {type}", type = r#type)))?;
    let s = telltale_core::suppress::Suppression {
        id: id.clone(),
        name: name.clone(),
        image: image.clone(),
        event_type: from_event_type(t),
        process: process.clone(),
        detail: detail.clone(),
    };
    // Core says `field `name`: is empty`: keep its field name.
    s.validate().map_err(|e| match e.strip_prefix("field `").and_then(|rest| rest.split_once("`: ")) {
        Some((field, problem)) => bad(field, problem),
        None => bad("suppression", e),
    })?;
    Ok(s)
}

/// Proto status of one event type.
pub fn type_status(t: &TypeStatus) -> pb::TypeStatus {
    let TypeStatus {
        event_type: et,
        state: st,
        learning_started: _,
        since: _,
        behaviours,
        last_new_behaviour: _,
        time_left_seconds,
        lost_events,
        learning_started_ms,
        since_ms,
        last_new_behaviour_ms,
    } = t;
    pb::TypeStatus {
        r#type: event_type(*et) as i32,
        state: state(*st) as i32,
        learning_started_unix_ms: *learning_started_ms,
        since_unix_ms: *since_ms,
        behaviours: *behaviours,
        last_new_behaviour_unix_ms: last_new_behaviour_ms.unwrap_or(0),
        time_left_seconds: time_left_seconds.unwrap_or(-1),
        lost_events: *lost_events,
    }
}

/// Proto status of one profile.
pub fn profile_status(p: &ProfileStatus) -> pb::ProfileStatus {
    let ProfileStatus { image, tags, behaviours, types } = p;
    pb::ProfileStatus {
        image: image.clone(),
        tags: tags.clone(),
        behaviours: u64::try_from(*behaviours).unwrap_or(u64::MAX),
        types: types.iter().map(type_status).collect(),
    }
}

/// Proto status of the profile store.
pub fn store_status(s: &telltale_core::status::StoreStatus) -> pb::ProfileStoreStatus {
    let telltale_core::status::StoreStatus { kind, connection, since_ms, reason, queued, revision, replica, cluster } =
        s;
    pb::ProfileStoreStatus {
        kind: kind.clone(),
        connection: connection.clone(),
        since_unix_ms: *since_ms,
        reason: reason.clone().unwrap_or_default(),
        queued: *queued,
        revision: *revision,
        replica: replica.clone(),
        cluster: cluster.clone(),
    }
}

/// Proto profile (nodes sorted by lineage, entries sorted).
pub fn profile(p: &Profile, status: &ProfileStatus) -> pb::Profile {
    let mut nodes: Vec<(&Vec<String>, &Node)> = p.nodes().iter().collect();
    nodes.sort_by(|a, b| a.0.cmp(b.0));
    pb::Profile {
        image: p.image.clone(),
        tags: p.tags.iter().cloned().collect(),
        nodes: nodes
            .into_iter()
            .map(|(lineage, n)| {
                let Node {
                    first_seen_ms,
                    last_seen_ms,
                    tags,
                    files,
                    dns,
                    endpoints,
                    endpoint_ranges,
                    shapes,
                    mechanisms,
                } = n;
                // Collapsed sibling shapes are patterns too, with the access all siblings had.
                let collapsed: Vec<(String, u8)> = shapes
                    .iter()
                    .filter(|(_, seen)| seen.len() >= telltale_core::profile::generalize::SIBLINGS as usize)
                    .map(|(shape, seen)| (shape.clone(), seen.iter().fold(0xff, |a, b| a & b)))
                    .collect();
                let mut files: Vec<(&String, &u8)> =
                    files.iter().chain(collapsed.iter().map(|(s, a)| (s, a))).collect();
                files.sort();
                let mut dns: Vec<_> = dns.iter().collect();
                dns.sort();
                let mut eps: Vec<pb::EndpointEntry> = endpoints
                    .iter()
                    .map(|(pr, a, port)| pb::EndpointEntry {
                        protocol: protocol(*pr) as i32,
                        address: a.to_string(),
                        port: u32::from(*port),
                    })
                    .chain(endpoint_ranges.iter().map(|(pr, net, port)| pb::EndpointEntry {
                        protocol: protocol(*pr) as i32,
                        address: net.to_string(),
                        port: u32::from(*port),
                    }))
                    .collect();
                eps.sort_by(|a, b| (&a.address, a.port).cmp(&(&b.address, b.port)));
                pb::ProcessNode {
                    lineage: lineage.clone(),
                    first_seen_unix_ms: *first_seen_ms,
                    last_seen_unix_ms: *last_seen_ms,
                    tags: tags.iter().cloned().collect(),
                    files: files
                        .into_iter()
                        .map(|(pat, bits)| pb::FileEntry { pattern: pat.clone(), access: access_from_bits(*bits) })
                        .collect(),
                    dns: dns.into_iter().map(|(n, t)| pb::DnsEntry { name: n.clone(), r#type: t.clone() }).collect(),
                    endpoints: eps,
                    mechanisms: mechanisms.iter().map(|m| m.name().to_owned()).collect(),
                }
            })
            .collect(),
        status: Some(profile_status(status)),
    }
}

fn absolute_path(field: String, p: &str) -> Result<(), FieldError> {
    if p.is_empty() {
        return Err(bad(field, "is empty"));
    }
    if !p.starts_with('/') {
        return Err(bad(field, format!("{} is not an absolute path", echo(p))));
    }
    if p.len() > 4096 || p.contains('\0') {
        return Err(bad(field, "is longer than 4096 bytes or contains NUL"));
    }
    Ok(())
}

/// Validate and convert one behaviour to add. `i` is its index in the request.
pub fn behaviour_to_add(i: usize, b: &pb::BehaviourToAdd) -> Result<Observation, FieldError> {
    let pb::BehaviourToAdd { lineage, behaviour } = b;
    if lineage.is_empty() {
        return Err(bad(format!("behaviours[{i}].lineage"), "is empty: give the executable paths, outermost first"));
    }
    for (j, p) in lineage.iter().enumerate() {
        let field = format!("behaviours[{i}].lineage[{j}]");
        if telltale_core::event::is_fileless(p) {
            // A fileless program as the sensors name it (memfd:<name>).
            if p.len() > 4096 || !telltale_core::event::is_program_name(p) {
                return Err(bad(field, format!("{} is neither an absolute path nor memfd:<name>", echo(p))));
            }
        } else {
            absolute_path(field, p)?;
        }
    }
    let field = format!("behaviours[{i}].behaviour");
    let kind = behaviour.as_ref().and_then(|b| b.kind.as_ref()).ok_or_else(|| bad(&field, "is missing"))?;
    let behaviour = match kind {
        pb::behaviour::Kind::Exec(pb::ExecBehaviour {}) => Behaviour::Exec,
        pb::behaviour::Kind::File(pb::FileBehaviour { path, access, pattern }) => {
            absolute_path(format!("{field}.file.path"), path)?;
            if *pattern {
                check_pattern(path).map_err(|e| bad(format!("{field}.file.path"), format!("{} {e}", echo(path))))?;
            }
            let mut bits = 0u8;
            for (k, a) in access.iter().enumerate() {
                bits |= match pb::Access::try_from(*a) {
                    Ok(pb::Access::Read) => 1,
                    Ok(pb::Access::Write) => 2,
                    Ok(pb::Access::Create) => 4,
                    Ok(pb::Access::Truncate) => 8,
                    _ => return Err(bad(format!("{field}.file.access[{k}]"), format!("unknown access {a}"))),
                };
            }
            if bits == 0 {
                return Err(bad(format!("{field}.file.access"), "is empty: give read and/or write"));
            }
            // Escaped bytes in the sensors' spelling (`/tmp/a\xFF` → `/tmp/a\xff`).
            let path = telltale_core::text::canonical_name(path);
            Behaviour::File { pattern: if *pattern { path.into_owned() } else { path_pattern(&path) }, access: bits }
        }
        pb::behaviour::Kind::Dns(pb::DnsBehaviour { name, r#type }) => {
            let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
            if n.is_empty() {
                return Err(bad(format!("{field}.dns.name"), "is empty"));
            }
            if n.len() > 253 || n.split('.').any(|l| l.is_empty() || l.len() > 63) {
                return Err(bad(format!("{field}.dns.name"), format!("{} is not a valid DNS name", echo(name))));
            }
            let t = if r#type.is_empty() { "A".to_owned() } else { r#type.to_ascii_uppercase() };
            if t.parse::<hickory_proto::rr::RecordType>().is_err() {
                return Err(bad(format!("{field}.dns.type"), format!("unknown query type {}", echo(r#type))));
            }
            Behaviour::Dns { name: n, qtype: t }
        }
        pb::behaviour::Kind::Connect(pb::ConnectBehaviour { protocol: p, address, port }) => {
            let proto = match pb::Protocol::try_from(*p) {
                Ok(pb::Protocol::Tcp) => Protocol::Tcp,
                Ok(pb::Protocol::Udp) => Protocol::Udp,
                _ => return Err(bad(format!("{field}.connect.protocol"), "must be tcp or udp")),
            };
            let port16 = u16::try_from(*port)
                .map_err(|_| bad(format!("{field}.connect.port"), format!("{port} is not a port (1-65535)")))?;
            if address.contains('/') {
                let network: ipnet::IpNet = address.parse().map_err(|e| {
                    bad(format!("{field}.connect.address"), format!("{} is not a CIDR range: {e}", echo(address)))
                })?;
                Behaviour::ConnectRange { protocol: proto, network: network.trunc(), port: port16 }
            } else {
                let ip: IpAddr = address.parse().map_err(|e| {
                    bad(format!("{field}.connect.address"), format!("{} is not an IP address: {e}", echo(address)))
                })?;
                if port16 == 0 {
                    return Err(bad(format!("{field}.connect.port"), "0 (any port) needs a CIDR range"));
                }
                Behaviour::Connect { protocol: proto, address: ip, port: port16 }
            }
        }
        pb::behaviour::Kind::Mechanism(pb::MechanismBehaviour { name }) => Behaviour::Mechanism {
            mechanism: Mechanism::from_name(name).ok_or_else(|| {
                bad(format!("{field}.mechanism.name"), format!("unknown mechanism {} (io_uring)", echo(name)))
            })?,
        },
    };
    let lineage = lineage.iter().map(|p| telltale_core::event::canonical_program(p).into_owned()).collect();
    Ok(Observation { lineage, behaviour })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(lineage: &[&str], kind: pb::behaviour::Kind) -> pb::BehaviourToAdd {
        pb::BehaviourToAdd {
            lineage: lineage.iter().map(|s| s.to_string()).collect(),
            behaviour: Some(pb::Behaviour { kind: Some(kind) }),
        }
    }

    #[test]
    fn a_mechanism_converts_both_ways_and_an_unknown_one_is_refused() {
        let io_uring = Behaviour::Mechanism { mechanism: Mechanism::IoUring };
        let wire = pb::behaviour::Kind::Mechanism(pb::MechanismBehaviour { name: "io_uring".into() });
        assert_eq!(behaviour(&io_uring), pb::Behaviour { kind: Some(wire.clone()) });
        let o = behaviour_to_add(0, &add(&["/bin/app"], wire)).unwrap();
        assert_eq!(o.behaviour, io_uring);
        let bad = pb::behaviour::Kind::Mechanism(pb::MechanismBehaviour { name: "ptrace".into() });
        let e = behaviour_to_add(0, &add(&["/bin/app"], bad)).unwrap_err().to_string();
        assert!(e.contains("mechanism") && e.contains("ptrace"), "{e}");
        let ev = telltale_core::event::build::mechanism(
            1,
            telltale_core::event::build::process("/bin/app", &[]),
            Mechanism::IoUring,
        );
        assert_eq!(event(&ev).kind, Some(pb::event::Kind::Mechanism(pb::MechanismUse { name: "io_uring".into() })));
    }

    #[test]
    fn valid_behaviours_convert() {
        let o = behaviour_to_add(
            0,
            &add(
                &["/bin/app"],
                pb::behaviour::Kind::File(pb::FileBehaviour {
                    path: "/proc/12/status".into(),
                    access: vec![1],
                    pattern: false,
                }),
            ),
        )
        .unwrap();
        assert_eq!(o.behaviour, Behaviour::File { pattern: "/proc/{pid}/status".into(), access: 1 });
        // A pattern (an imported profile document) is kept as it is.
        for p in ["/proc/{pid}/status", "/tmp/{{num}}"] {
            let file = pb::FileBehaviour { path: p.into(), access: vec![1], pattern: true };
            let o = behaviour_to_add(0, &add(&["/bin/app"], pb::behaviour::Kind::File(file))).unwrap();
            assert_eq!(o.behaviour, Behaviour::File { pattern: p.into(), access: 1 });
        }
        let o = behaviour_to_add(
            0,
            &add(
                &["/bin/app"],
                pb::behaviour::Kind::Connect(pb::ConnectBehaviour {
                    protocol: 1,
                    address: "10.1.2.3/8".into(),
                    port: 0,
                }),
            ),
        )
        .unwrap();
        assert!(matches!(o.behaviour, Behaviour::ConnectRange { port: 0, .. }));
        let o = behaviour_to_add(
            0,
            &add(
                &["/bin/app"],
                pb::behaviour::Kind::Dns(pb::DnsBehaviour { name: "API.Example.com.".into(), r#type: String::new() }),
            ),
        )
        .unwrap();
        assert_eq!(o.behaviour, Behaviour::Dns { name: "api.example.com".into(), qtype: "A".into() });
    }

    #[test]
    fn names_that_are_not_utf8_are_added_in_the_sensors_spelling() {
        use telltale_core::text::name_from_bytes;
        let file = |path: &str, pattern| {
            let f = pb::FileBehaviour { path: path.into(), access: vec![1], pattern };
            behaviour_to_add(0, &add(&["/bin/sh", "/opt/run\\xFF"], pb::behaviour::Kind::File(f))).unwrap()
        };
        // What a person types is what the sensors report for those bytes.
        let o = file("/tmp/a\\xFF", false);
        assert_eq!(o.lineage, [name_from_bytes(b"/bin/sh"), name_from_bytes(b"/opt/run\xff")]);
        assert_eq!(o.behaviour, Behaviour::File { pattern: path_pattern(&name_from_bytes(b"/tmp/a\xff")), access: 1 });
        assert_ne!(file("/tmp/a\\xfe", false).behaviour, o.behaviour);
        assert_eq!(file("/tmp/a\\xFF", true).behaviour, o.behaviour);
        // The 4 characters `\xff` are written with their backslash escaped.
        let literal = file("/tmp/a\\x5cxff", false);
        assert_eq!(literal.behaviour, Behaviour::File { pattern: name_from_bytes(b"/tmp/a\\xff").into(), access: 1 });
    }

    #[test]
    fn a_fileless_program_can_be_added_by_its_sensor_name() {
        let o =
            behaviour_to_add(0, &add(&["/bin/sh", "memfd:payload"], pb::behaviour::Kind::Exec(pb::ExecBehaviour {})))
                .unwrap();
        assert_eq!(o.lineage, vec!["/bin/sh".to_owned(), "memfd:payload".to_owned()]);
    }

    #[test]
    fn invalid_behaviours_name_the_field() {
        let cases: Vec<(pb::BehaviourToAdd, &str)> = vec![
            (add(&[], pb::behaviour::Kind::Exec(pb::ExecBehaviour {})), "behaviours[3].lineage"),
            (add(&["/bin/a", "rel/b"], pb::behaviour::Kind::Exec(pb::ExecBehaviour {})), "behaviours[3].lineage[1]"),
            (add(&["/bin/a", "memfd:"], pb::behaviour::Kind::Exec(pb::ExecBehaviour {})), "behaviours[3].lineage[1]"),
            (add(&["memfd:a\nb"], pb::behaviour::Kind::Exec(pb::ExecBehaviour {})), "behaviours[3].lineage[0]"),
            (
                add(
                    &["/bin/a"],
                    pb::behaviour::Kind::File(pb::FileBehaviour {
                        path: "etc/passwd".into(),
                        access: vec![1],
                        pattern: false,
                    }),
                ),
                "behaviours[3].behaviour.file.path",
            ),
            (
                add(
                    &["/bin/a"],
                    pb::behaviour::Kind::File(pb::FileBehaviour {
                        path: "/tmp/{nums}".into(),
                        access: vec![1],
                        pattern: true,
                    }),
                ),
                "behaviours[3].behaviour.file.path",
            ),
            (
                add(
                    &["/bin/a"],
                    pb::behaviour::Kind::File(pb::FileBehaviour {
                        path: "/etc/passwd".into(),
                        access: vec![],
                        pattern: false,
                    }),
                ),
                "behaviours[3].behaviour.file.access",
            ),
            (
                add(
                    &["/bin/a"],
                    pb::behaviour::Kind::Dns(pb::DnsBehaviour { name: " ".into(), r#type: String::new() }),
                ),
                "behaviours[3].behaviour.dns.name",
            ),
            (
                add(
                    &["/bin/a"],
                    pb::behaviour::Kind::Connect(pb::ConnectBehaviour {
                        protocol: 1,
                        address: "10.0.0.0/99".into(),
                        port: 0,
                    }),
                ),
                "behaviours[3].behaviour.connect.address",
            ),
            (
                add(
                    &["/bin/a"],
                    pb::behaviour::Kind::Connect(pb::ConnectBehaviour {
                        protocol: 1,
                        address: "10.0.0.1".into(),
                        port: 70000,
                    }),
                ),
                "behaviours[3].behaviour.connect.port",
            ),
            (
                add(
                    &["/bin/a"],
                    pb::behaviour::Kind::Connect(pb::ConnectBehaviour {
                        protocol: 0,
                        address: "10.0.0.1".into(),
                        port: 80,
                    }),
                ),
                "behaviours[3].behaviour.connect.protocol",
            ),
            (pb::BehaviourToAdd { lineage: vec!["/bin/a".into()], behaviour: None }, "behaviours[3].behaviour"),
        ];
        for (b, field) in cases {
            let e = behaviour_to_add(3, &b).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn refusals_quote_input_bounded_and_escaped() {
        let huge = format!("evil\n{}", "x".repeat(900 * 1024));
        let cases = [
            add(&[&format!("rel/{huge}")], pb::behaviour::Kind::Exec(pb::ExecBehaviour {})),
            add(&["/bin/a"], pb::behaviour::Kind::Dns(pb::DnsBehaviour { name: huge.clone(), r#type: String::new() })),
            add(
                &["/bin/a"],
                pb::behaviour::Kind::Dns(pb::DnsBehaviour { name: "a.example".into(), r#type: huge.clone() }),
            ),
            add(
                &["/bin/a"],
                pb::behaviour::Kind::Connect(pb::ConnectBehaviour { protocol: 1, address: huge.clone(), port: 80 }),
            ),
        ];
        for b in cases {
            let e = behaviour_to_add(0, &b).unwrap_err();
            assert!(e.problem.len() < 400, "{} bytes", e.problem.len());
            assert!(e.problem.contains("bytes in all)\""), "{}", e.problem);
            assert!(!e.problem.contains('\n'), "{}", e.problem);
        }
    }

    #[test]
    fn suppression_refusals_name_core_s_field() {
        let s = pb::Suppression { name: "mute".into(), ..pb::Suppression::default() };
        let e = from_suppression(&s).unwrap_err();
        assert_eq!(e.field, "detail");
        assert_eq!(e.problem, "a suppression must narrow by image, process or detail");
    }
}
