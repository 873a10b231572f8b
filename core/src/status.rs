//! `telltale status`: learning status per profile and event type, read from
//! the store (works while the daemon runs).

use serde::Serialize;

use crate::profile::lifecycle::{LearningConfig, State};
use crate::profile::{EventType, Profile};

/// Status of one event type of one profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypeStatus {
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Lifecycle state.
    pub state: State,
    /// When learning began (RFC 3339).
    pub learning_started: String,
    /// When the current state was entered (RFC 3339).
    pub since: String,
    /// Behaviours of this type in the profile.
    pub behaviours: u64,
    /// When a new behaviour was last learned (RFC 3339), if ever.
    pub last_new_behaviour: Option<String>,
    /// Seconds until stable if nothing new appears (learning only).
    pub time_left_seconds: Option<i64>,
    /// Kernel events lost while this type was learning.
    pub lost_events: u64,
    /// `learning_started` in ms since the epoch.
    pub learning_started_ms: i64,
    /// `since` in ms since the epoch.
    pub since_ms: i64,
    /// `last_new_behaviour` in ms since the epoch.
    pub last_new_behaviour_ms: Option<i64>,
}

/// Status of one profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProfileStatus {
    /// Short image name.
    pub image: String,
    /// Tags (versions) seen.
    pub tags: Vec<String>,
    /// Behaviours in the profile (all types, process nodes included).
    pub behaviours: usize,
    /// Per event type.
    pub types: Vec<TypeStatus>,
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// The status of `profiles` at `now_ms`.
pub fn status(profiles: &[Profile], cfg: &LearningConfig, now_ms: i64) -> Vec<ProfileStatus> {
    profiles
        .iter()
        .map(|p| ProfileStatus {
            image: p.image.clone(),
            tags: p.tags.iter().cloned().collect(),
            behaviours: p.behaviour_count(),
            types: EventType::ALL
                .into_iter()
                .map(|t| {
                    let c = p.clock(t);
                    TypeStatus {
                        event_type: t,
                        state: c.state,
                        learning_started: rfc3339(c.started_ms),
                        since: rfc3339(c.state_since_ms),
                        behaviours: c.behaviours,
                        last_new_behaviour: c.last_new_ms.map(rfc3339),
                        time_left_seconds: c.time_left_ms(now_ms, cfg).map(|ms| (ms + 999) / 1000),
                        lost_events: c.lost_events,
                        learning_started_ms: c.started_ms,
                        since_ms: c.state_since_ms,
                        last_new_behaviour_ms: c.last_new_ms,
                    }
                })
                .collect(),
        })
        .collect()
}

/// A readable table.
pub fn table(statuses: &[ProfileStatus]) -> String {
    let mut s = format!(
        "{:<24} {:<8} {:<9} {:<21} {:>10} {:<21} {:>10} {}\n",
        "IMAGE", "TYPE", "STATE", "SINCE", "BEHAVIOURS", "LAST NEW", "TIME LEFT", "NOTE"
    );
    if statuses.is_empty() {
        s.push_str("(no profiles yet)\n");
    }
    for p in statuses {
        for t in &p.types {
            let left = t.time_left_seconds.map_or_else(
                || "-".to_owned(),
                |secs| {
                    humantime::format_duration(std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
                        .to_string()
                },
            );
            let note = match (t.state, t.lost_events) {
                (State::Unstable, _) => "never settled: no anomalies for this type".to_owned(),
                (_, 0) => String::new(),
                (_, n) => format!("learned with {n} lost events"),
            };
            s.push_str(&format!(
                "{:<24} {:<8} {:<9} {:<21} {:>10} {:<21} {:>10} {}\n",
                p.image,
                t.event_type.name(),
                t.state.name(),
                &t.since.get(..19).unwrap_or(&t.since),
                t.behaviours,
                t.last_new_behaviour.as_deref().and_then(|l| l.get(..19)).unwrap_or("-"),
                left,
                note
            ));
        }
    }
    s
}

/// One line about the kernel side, from the counters the daemon saved.
pub fn counters_line(c: &serde_json::Value) -> String {
    let sum = |field: &str| -> u64 {
        ["exec", "file", "dns", "connect"].iter().map(|k| c[*k][field].as_u64().unwrap_or(0)).sum()
    };
    let mut line = format!(
        "sensors: {} events to user space, {} repeats of known behaviour filtered in kernel, \
         {} repeats dropped in kernel, {} records lost, {} malformed DNS packets",
        sum("emitted"),
        sum("filtered_known"),
        sum("dropped_repeats"),
        sum("lost") + c["exit"]["lost"].as_u64().unwrap_or(0),
        c["malformed_dns"].as_u64().unwrap_or(0)
    );
    let node = &c["node"];
    if node.is_object() {
        line.push_str(&format!(
            "; node set shared by {} sidecars (slot {}{})",
            node["sidecars"].as_u64().unwrap_or(0),
            node["slot"].as_u64().unwrap_or(0),
            if node["loaded_here"].as_bool().unwrap_or(false) { ", loaded by this one" } else { "" }
        ));
        let lapses = node["lapses"].as_u64().unwrap_or(0);
        if lapses > 0 {
            line.push_str(&format!(", registration lapsed {lapses} times: events were missed"));
        }
    }
    line
}

/// Where profiles live and, when they are fleet-wide, the link's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreStatus {
    /// `local` or `etcd`.
    pub kind: String,
    /// etcd: `connected`, `disconnected` or `resyncing`.
    pub connection: String,
    /// Since when (ms).
    pub since_ms: i64,
    /// Why it is disconnected.
    pub reason: Option<String>,
    /// Behaviours waiting for etcd.
    pub queued: u64,
    /// The etcd revision last seen.
    pub revision: i64,
    /// This replica's name.
    pub replica: String,
    /// The fleet's name.
    pub cluster: String,
}

/// The profile store line of `telltale status`, from the JSON the daemon
/// saves every second (`profile_store` meta key) when profiles are
/// fleet-wide; `now_ms` dates the status.
pub fn fleet_line(f: &serde_json::Value, now_ms: i64) -> String {
    if f["store"] != "etcd" {
        return "profiles: local (this pod's store only)".to_owned();
    }
    let text = |k: &str| f[k].as_str().unwrap_or("?").to_owned();
    let since =
        f["since_ms"].as_i64().map_or(String::new(), |s| format!(" for {} s", now_ms.saturating_sub(s).max(0) / 1000));
    let reason = f["reason"].as_str().map_or(String::new(), |r| format!(" ({})", crate::text::escape(r)));
    format!(
        "profiles: etcd, cluster {}, replica {}: {}{since}{reason}; {} behaviours queued, etcd revision {}",
        crate::text::escape(&text("cluster")),
        crate::text::escape(&text("replica")),
        text("connection"),
        f["queued"].as_u64().unwrap_or(0),
        f["revision"].as_i64().unwrap_or(0)
    )
}

/// Whether a daemon is watching: it saves its sensor counters (with
/// `updated_ms`) every second, so counters older than `max_age_ms` mean it
/// is gone or stuck.
pub fn ready(counters: Option<&serde_json::Value>, now_ms: i64, max_age_ms: i64) -> Result<(), String> {
    let updated = counters
        .and_then(|c| c["updated_ms"].as_i64())
        .ok_or_else(|| "no daemon has started watching with this data directory yet".to_owned())?;
    let age = now_ms.saturating_sub(updated);
    if age > max_age_ms {
        return Err(format!("the daemon last reported {} s ago", age / 1000));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fleet_line_says_where_profiles_live_and_why_they_may_lag() {
        let f = serde_json::json!({"store": "etcd", "cluster": "prod", "replica": "web-1\nforged", "connection": "disconnected",
            "since_ms": 1_000, "reason": "connect refused", "queued": 3, "revision": 42});
        assert_eq!(
            super::fleet_line(&f, 31_000),
            "profiles: etcd, cluster prod, replica web-1\\nforged: disconnected for 30 s (connect refused); \
             3 behaviours queued, etcd revision 42"
        );
        assert_eq!(
            super::fleet_line(&serde_json::json!({"store": "local"}), 0),
            "profiles: local (this pod's store only)"
        );
    }

    use super::*;
    use crate::profile::{Behaviour, Observation};
    use std::time::Duration;

    #[test]
    fn ready_means_counters_saved_recently() {
        let c = serde_json::json!({"updated_ms": 10_000});
        assert_eq!(ready(Some(&c), 12_000, 5_000), Ok(()));
        assert!(ready(Some(&c), 20_000, 5_000).unwrap_err().contains("10 s ago"));
        assert!(ready(None, 0, 5_000).unwrap_err().contains("no daemon"));
        assert!(ready(Some(&serde_json::json!({"exec": {}})), 0, 5_000).is_err());
    }

    #[test]
    fn status_reports_states_time_left_and_lost_events() {
        let cfg = LearningConfig {
            min_duration: Duration::from_secs(10),
            stable_period: Duration::from_secs(5),
            max_duration: Duration::from_secs(60),
            warmup: Duration::ZERO,
        };
        let mut p = Profile::new("web", 0);
        p.add(&Observation { lineage: vec!["/bin/app".into()], behaviour: Behaviour::Exec }, "v1", 1_000);
        let mut lost = crate::profile::Lost::default();
        lost.add(EventType::Exec, 2);
        p.add_lost_events(&lost);
        let s = status(&[p], &cfg, 4_000);
        assert_eq!(s[0].image, "web");
        let exec = &s[0].types[0];
        assert_eq!(exec.state, State::Learning);
        assert_eq!(exec.behaviours, 1);
        assert_eq!(exec.time_left_seconds, Some(6));
        assert_eq!(exec.lost_events, 2);
        let text = table(&s);
        assert!(text.contains("learned with 2 lost events"), "{text}");
        assert!(text.contains("web"), "{text}");
    }
}

#[cfg(test)]
mod counters_line_tests {
    use super::counters_line;

    #[test]
    fn the_node_set_and_its_lapses_are_said() {
        let c = serde_json::json!({
            "exec": {"emitted": 2, "lost": 1}, "file": {"emitted": 3}, "exit": {"lost": 1},
            "node": {"slot": 4, "loaded_here": true, "sidecars": 7, "lapses": 0}
        });
        let line = counters_line(&c);
        assert!(line.contains("5 events to user space"), "{line}");
        assert!(line.contains("2 records lost"), "{line}");
        assert!(line.ends_with("node set shared by 7 sidecars (slot 4, loaded by this one)"), "{line}");
        let lapsed = serde_json::json!({"node": {"slot": 1, "sidecars": 2, "lapses": 3}});
        assert!(counters_line(&lapsed).ends_with("(slot 1), registration lapsed 3 times: events were missed"));
        assert!(!counters_line(&serde_json::json!({})).contains("node set"), "a replay has no node set");
    }
}
