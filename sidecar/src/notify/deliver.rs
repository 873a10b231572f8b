//! Delivery from the persisted outbox: due messages are sent, removed when
//! a target accepted them, retried with exponential backoff when not. The
//! outbox is in SQLite, so a target that is down, or a restart, loses
//! nothing. Runs on its own connection, beside the daemon loop.

use crate::telemetry::metrics::Metrics;
use std::path::PathBuf;
use std::time::Duration;

use crate::store::{Store, StoreError};
use telltale_core::notify::{backoff_ms, signature, Message, Rule, Target};

/// Why one delivery failed (retried later).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The HTTP request failed.
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// The target answered with an error status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// Building or sending the email failed.
    #[error("SMTP: {0}")]
    Smtp(String),
    /// The rule or message no longer fits (deleted rule, bad stored row).
    #[error("{0}")]
    Invalid(String),
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

async fn send(http: &reqwest::Client, target: &Target, message: &Message, delivery: i64) -> Result<(), DeliveryError> {
    match (target, message) {
        (Target::Slack { url }, Message::Http { body }) => post(http, url, body, &[], delivery).await,
        (Target::Webhook { url, secret, headers }, Message::Http { body }) => {
            let mut extra: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            if let Some(secret) = secret {
                extra.push(("X-Telltale-Signature".into(), format!("sha256={}", signature(secret, body.as_bytes()))));
            }
            post(http, url, body, &extra, delivery).await
        }
        (Target::Email { server, starttls, username, password, from, to }, Message::Email { subject, body }) => {
            email(server, *starttls, username, password, from, to, subject, body).await
        }
        _ => Err(DeliveryError::Invalid("message does not fit its target".into())),
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    headers: &[(String, String)],
    delivery: i64,
) -> Result<(), DeliveryError> {
    let mut req = http
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Telltale-Delivery", delivery.to_string())
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().await?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(DeliveryError::Status(resp.status().as_u16()))
    }
}

#[allow(clippy::too_many_arguments)]
async fn email(
    server: &str,
    starttls: bool,
    username: &Option<String>,
    password: &Option<String>,
    from: &str,
    to: &[String],
    subject: &str,
    body: &str,
) -> Result<(), DeliveryError> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let smtp = |e: &dyn std::fmt::Display| DeliveryError::Smtp(e.to_string());
    let (host, port) = server.rsplit_once(':').ok_or_else(|| DeliveryError::Invalid(format!("bad server {server}")))?;
    let port: u16 = port.parse().map_err(|_| DeliveryError::Invalid(format!("bad port in {server}")))?;
    let mut builder = if starttls {
        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(|e| smtp(&e))?.port(port)
    } else {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port)
    };
    if let (Some(u), Some(p)) = (username, password) {
        builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
    }
    let transport = builder.timeout(Some(Duration::from_secs(10))).build();
    let mut msg = lettre::Message::builder().from(from.parse().map_err(|e| smtp(&e))?).subject(subject);
    for t in to {
        msg = msg.to(t.parse().map_err(|e| smtp(&e))?);
    }
    let msg = msg.body(body.to_owned()).map_err(|e| smtp(&e))?;
    transport.send(msg).await.map_err(|e| smtp(&e))?;
    Ok(())
}

/// One pass over the due messages. Returns how many were delivered.
pub async fn pass(
    store: &mut Store,
    http: &reqwest::Client,
    rules: &[Rule],
    metrics: &Metrics,
) -> Result<usize, StoreError> {
    let mut delivered = 0;
    for (id, rule_id, target, signal_id, message, attempts) in store.due(now_ms(), 32)? {
        let found = rules.iter().find(|r| r.id == rule_id).and_then(|r| r.targets.get(target));
        let kind = found.map_or("unknown", |t| t.kind());
        let result = match (found, serde_json::from_str::<Message>(&message)) {
            (Some(t), Ok(m)) => send(http, t, &m, id).await,
            (None, _) => Err(DeliveryError::Invalid(format!("rule {rule_id} target {target} is gone"))),
            (_, Err(e)) => Err(DeliveryError::Invalid(format!("stored message: {e}"))),
        };
        match result {
            Ok(()) => {
                metrics.notification(kind, true);
                store.delivered(id, &rule_id, target, &signal_id, now_ms())?;
                delivered += 1;
                tracing::info!(rule = %rule_id, target, signal = %signal_id, "Notification delivered.");
            }
            Err(e) => {
                metrics.notification(kind, false);
                let next = now_ms() + backoff_ms(attempts);
                tracing::warn!(rule = %rule_id, target, signal = %signal_id, attempts = attempts + 1, error = %e, "Notification failed; will retry.");
                store.failed(id, &e.to_string(), next)?;
            }
        }
    }
    Ok(delivered)
}

/// Deliver until `closing` turns true, polling the outbox.
pub async fn run(
    data_dir: PathBuf,
    mut closing: tokio::sync::watch::Receiver<bool>,
    metrics: std::sync::Arc<Metrics>,
) -> Result<(), StoreError> {
    let mut store = Store::open(&data_dir)?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| StoreError::BadRow {
        path: data_dir.clone(),
        what: "http client",
        detail: e.to_string(),
    })?;
    loop {
        let rules = store.rules()?;
        if let Err(e) = pass(&mut store, &http, &rules, &metrics).await {
            tracing::warn!(error = %e, "Notification outbox pass failed.");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            r = closing.changed() => if r.is_err() || *closing.borrow() { return Ok(()) },
        }
    }
}
