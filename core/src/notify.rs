//! Notification rules: a facet query over signal attributes and targets
//! (Slack incoming webhook, generic webhook signed with HMAC-SHA256, email).
//! Rule matching and payload rendering are pure; delivery (from the
//! persisted outbox, with retries) is the daemon's (`telltale-sidecar`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::field::FieldError;
use crate::query::Query;
use crate::signal::Signal;

/// A notification rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Unique id (given by the daemon).
    pub id: String,
    /// Name shown in messages.
    pub name: String,
    /// Disabled rules send nothing.
    pub enabled: bool,
    /// Facet query over signal attributes (`rule_id:anomaly_detection severity:high`).
    pub query: String,
    /// Where to send.
    pub targets: Vec<Target>,
    /// Also notify when an open signal gets new anomalies.
    pub notify_on_update: bool,
}

/// A destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// A Slack incoming webhook.
    Slack {
        /// The webhook URL.
        url: String,
    },
    /// Any HTTP endpoint (JSON body; e.g. automated remediation).
    Webhook {
        /// The URL.
        url: String,
        /// Key of the `X-Telltale-Signature: sha256=<hex HMAC of the body>` header.
        secret: Option<String>,
        /// Extra headers.
        headers: BTreeMap<String, String>,
    },
    /// Email over SMTP.
    Email {
        /// `host:port`.
        server: String,
        /// Upgrade with STARTTLS (required when set).
        starttls: bool,
        /// SMTP AUTH user.
        username: Option<String>,
        /// SMTP AUTH password.
        password: Option<String>,
        /// Sender address.
        from: String,
        /// Recipients.
        to: Vec<String>,
    },
}

impl Target {
    /// `slack`, `webhook` or `email`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Slack { .. } => "slack",
            Target::Webhook { .. } => "webhook",
            Target::Email { .. } => "email",
        }
    }
}

fn bad(field: impl Into<String>, problem: impl Into<String>) -> FieldError {
    FieldError::new(field, problem)
}

fn http_url(field: String, url: &str) -> Result<(), FieldError> {
    if !(url.starts_with("http://") || url.starts_with("https://"))
        || url.len() < 10
        || url.contains(char::is_whitespace)
    {
        return Err(bad(field, format!("{url:?} is not an http(s) URL")));
    }
    Ok(())
}

impl Rule {
    /// Check a rule; the query error carries its column.
    pub fn validate(&self) -> Result<Query, FieldError> {
        if self.name.trim().is_empty() {
            return Err(bad("name", "is empty"));
        }
        if self.name.chars().any(char::is_control) {
            return Err(bad("name", format!("{} holds control characters", crate::text::bounded(&self.name, 64))));
        }
        let q = Query::parse(&self.query).map_err(|e| bad("query", e.to_string()))?;
        if self.targets.is_empty() {
            return Err(bad("targets", "is empty: give at least one target"));
        }
        for (i, t) in self.targets.iter().enumerate() {
            match t {
                Target::Slack { url } => http_url(format!("targets[{i}].slack.url"), url)?,
                Target::Webhook { url, headers, .. } => {
                    http_url(format!("targets[{i}].webhook.url"), url)?;
                    for (k, v) in headers {
                        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                            return Err(bad(
                                format!("targets[{i}].webhook.headers"),
                                format!("{} is not a header name", crate::text::bounded(k, 64)),
                            ));
                        }
                        // RFC 9110 field values: visible ASCII, spaces and tabs; never
                        // CR or LF (a request could never be sent, so it would be
                        // retried forever).
                        if !v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
                            return Err(bad(
                                format!("targets[{i}].webhook.headers.{k}"),
                                format!(
                                    "{} is not a header value (control characters or non-ASCII)",
                                    crate::text::bounded(v, 64)
                                ),
                            ));
                        }
                    }
                }
                Target::Email { server, from, to, .. } => {
                    let port_ok =
                        server.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                    if !port_ok {
                        return Err(bad(format!("targets[{i}].email.server"), format!("{server:?} is not host:port")));
                    }
                    if !from.contains('@') {
                        return Err(bad(format!("targets[{i}].email.from"), format!("{from:?} is not an address")));
                    }
                    if to.is_empty() || to.iter().any(|a| !a.contains('@')) {
                        return Err(bad(format!("targets[{i}].email.to"), "needs one or more addresses"));
                    }
                }
            }
        }
        Ok(q)
    }

    /// Should this signal change be sent? `created`: the signal is new.
    pub fn wants(&self, signal: &Signal, created: bool) -> bool {
        self.enabled
            && (created || self.notify_on_update)
            && Query::parse(&self.query).is_ok_and(|q| q.matches(&|k| signal.facet(k)))
    }

    /// The rule with secrets replaced (for listing).
    pub fn redacted(&self) -> Rule {
        let mut r = self.clone();
        for t in &mut r.targets {
            match t {
                Target::Webhook { secret, .. } => {
                    if secret.is_some() {
                        *secret = Some("********".into());
                    }
                }
                Target::Email { password, .. } => {
                    if password.is_some() {
                        *password = Some("********".into());
                    }
                }
                Target::Slack { .. } => {}
            }
        }
        r
    }
}

/// What is sent: rendered when the signal changes, delivered later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// An HTTP POST with a JSON body.
    Http {
        /// Body.
        body: String,
    },
    /// An email.
    Email {
        /// Subject.
        subject: String,
        /// Plain-text body.
        body: String,
    },
}

fn title(s: &Signal, created: bool) -> String {
    let esc = |t: &str| crate::text::escape(t).into_owned();
    format!(
        "[telltale] {} {} signal in container {} ({}:{}): {} anomal{}",
        if created { "new" } else { "updated" },
        s.severity.name(),
        esc(&s.container.name),
        esc(&s.container.image),
        esc(&s.container.tag),
        s.entries.len(),
        if s.entries.len() == 1 { "y" } else { "ies" }
    )
}

/// Render the message of `rule` for `target` about `signal`.
pub fn render(rule: &Rule, target: &Target, signal: &Signal, created: bool) -> Message {
    let o = signal.overview();
    match target {
        Target::Slack { .. } => {
            let steps: Vec<String> = o.next_steps.iter().map(|s| format!("• {s}")).collect();
            let body = serde_json::json!({
                "text": title(signal, created),
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": title(signal, created)}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": format!("*What happened*\n{}", o.what_happened)}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": format!("*Suggested next steps*\n{}", steps.join("\n"))}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": format!("*Anomaly events*\n```{}```", o.events.join("\n"))}},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("rule {} · signal {} · rule_id:{}", crate::text::escape(&rule.name), crate::text::escape(&signal.id), signal.rule_id)}]},
                ],
            });
            Message::Http { body: body.to_string() }
        }
        Target::Webhook { .. } => {
            let body = serde_json::json!({
                "event": if created { "signal.created" } else { "signal.updated" },
                "rule": {"id": rule.id, "name": rule.name},
                "signal": {
                    "id": signal.id,
                    "rule_id": signal.rule_id,
                    "severity": signal.severity.name(),
                    "status": signal.status.name(),
                    "container": signal.container,
                    "first_seen_ms": signal.first_seen_ms,
                    "last_seen_ms": signal.last_seen_ms,
                    "version": signal.version,
                    "entries": signal.entries,
                },
                "what_happened": o.what_happened,
                "next_steps": o.next_steps,
                "events": o.events,
            });
            Message::Http { body: body.to_string() }
        }
        Target::Email { .. } => {
            let steps: Vec<String> = o.next_steps.iter().map(|s| format!("  - {s}")).collect();
            let events: Vec<String> = o.events.iter().map(|e| format!("  {e}")).collect();
            Message::Email {
                subject: title(signal, created),
                body: format!(
                    "What happened\n  {}\n\nSuggested next steps\n{}\n\nAnomaly events\n{}\n\n(rule {}, signal {})\n",
                    o.what_happened,
                    steps.join("\n"),
                    events.join("\n"),
                    crate::text::escape(&rule.name),
                    crate::text::escape(&signal.id)
                ),
            }
        }
    }
}

/// Hex HMAC-SHA256 of `body` with `secret` (the webhook signature).
pub fn signature(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Retry delay after `attempts` failures: 1 s, 2 s, 4 s ... up to 5 min.
pub fn backoff_ms(attempts: u32) -> i64 {
    1000i64.saturating_mul(1i64 << attempts.min(9)).min(300_000)
}

#[cfg(test)]
mod tests;
