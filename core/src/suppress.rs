//! Suppression rules: a pattern on image and behaviour; future anomalies
//! that match are added to the profile instead of being reported (what
//! "mark benign" does for one signal, for a whole class). Pure logic.

use serde::{Deserialize, Serialize};

use crate::profile::{Behaviour, EventType, Observation};
use crate::query::glob;

/// A suppression rule. Empty patterns match anything; `*` is a wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// Unique id (given by the daemon).
    pub id: String,
    /// Why (shown in listings and the audit trail).
    pub name: String,
    /// Short image name pattern (`cws-*`).
    pub image: String,
    /// Only this event type.
    pub event_type: Option<EventType>,
    /// Executable pattern of the process (the lineage's last element).
    pub process: String,
    /// Pattern on the behaviour: file pattern, DNS name, `address:port`,
    /// mechanism (`io_uring`).
    pub detail: String,
}

/// The detail string a suppression's `detail` pattern is matched against.
pub fn detail(b: &Behaviour) -> String {
    match b {
        Behaviour::Exec => String::new(),
        Behaviour::File { pattern, .. } => pattern.clone(),
        Behaviour::Dns { name, .. } => name.clone(),
        Behaviour::Connect { address, port, .. } => format!("{address}:{port}"),
        Behaviour::ConnectRange { network, port, .. } => format!("{network}:{port}"),
        Behaviour::Mechanism { mechanism } => mechanism.name().to_owned(),
    }
}

impl Suppression {
    /// Does it cover this anomaly of `image`?
    pub fn matches(&self, image: &str, o: &Observation) -> bool {
        let any_or = |pattern: &str, value: &str| pattern.is_empty() || glob(pattern, value);
        any_or(&self.image, image)
            && self.event_type.is_none_or(|t| t == o.event_type())
            && any_or(&self.process, o.lineage.last().map_or("", String::as_str))
            && any_or(&self.detail, &detail(&o.behaviour))
    }

    /// Check it: a rule that matches everything would silence detection.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("field `name`: is empty".into());
        }
        let open = |p: &str| p.is_empty() || p.chars().all(|c| c == '*');
        if open(&self.image) && open(&self.process) && open(&self.detail) {
            return Err("field `detail`: a suppression must narrow by image, process or detail".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(image: &str, t: Option<EventType>, process: &str, detail: &str) -> Suppression {
        Suppression {
            id: "s1".into(),
            name: "n".into(),
            image: image.into(),
            event_type: t,
            process: process.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn matching() {
        let dns = Observation {
            lineage: vec!["/bin/sh".into(), "/usr/bin/curl".into()],
            behaviour: Behaviour::Dns { name: "api.partner.example".into(), qtype: "A".into() },
        };
        assert!(s("cws-*", Some(EventType::Dns), "", "*.partner.example").matches("cws-webapp", &dns));
        assert!(!s("cws-*", Some(EventType::File), "", "").matches("cws-webapp", &dns));
        assert!(!s("nginx", None, "", "*.partner.example").matches("cws-webapp", &dns));
        assert!(s("", None, "/usr/bin/curl", "").matches("x", &dns));
        assert!(!s("", None, "/usr/bin/wget", "").matches("x", &dns));
    }

    #[test]
    fn a_rule_must_narrow() {
        assert!(s("", None, "", "").validate().is_err());
        assert!(s("*", None, "*", "").validate().is_err());
        assert!(s("web", None, "", "").validate().is_ok());
    }
}
