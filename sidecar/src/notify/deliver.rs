//! Delivery from the persisted outbox: due messages are sent, removed when
//! a target accepted them, retried with exponential backoff when not. The
//! outbox is in SQLite, so a target that is down, or a restart, loses
//! nothing. Runs on its own connection, beside the daemon loop.
//!
//! Targets are served concurrently, a bounded number at once: each rule
//! target is a *lane* sending its due messages in order, so a target that
//! hangs holds up its own lane only, never the others. Delivery is
//! at-least-once (a `kill -9` between sending and recording sends again),
//! so every message carries a stable delivery id — the outbox row and its
//! version — in `X-Telltale-Delivery` (HTTP) or its `Message-ID` (email),
//! the same on every retry: receivers drop the duplicates.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use crate::store::{Delivered, Due, Store, StoreError};
use crate::telemetry::metrics::Metrics;
use telltale_core::notify::{backoff_ms, signature, Message, Target};

/// How often the outbox is polled for due messages.
pub const POLL: Duration = Duration::from_millis(250);
/// How many targets are sent to at once.
pub const CONCURRENT_TARGETS: usize = 16;
/// How long one HTTP request may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many due messages are read per poll.
const DUE_PER_POLL: usize = 256;

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

/// Why delivery could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The outbox could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP client could not be built.
    #[error("building the HTTP client for notifications")]
    Http(#[source] reqwest::Error),
}

async fn send(http: &reqwest::Client, target: &Target, message: &Message, delivery: &str) -> Result<(), DeliveryError> {
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
            let mail = Mail { server, starttls: *starttls, username, password, from, to, subject, body, delivery };
            email(&mail).await
        }
        _ => Err(DeliveryError::Invalid("message does not fit its target".into())),
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    headers: &[(String, String)],
    delivery: &str,
) -> Result<(), DeliveryError> {
    let mut req = http
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Telltale-Delivery", delivery)
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

/// One email to send.
struct Mail<'a> {
    server: &'a str,
    starttls: bool,
    username: &'a Option<String>,
    password: &'a Option<String>,
    from: &'a str,
    to: &'a [String],
    subject: &'a str,
    body: &'a str,
    delivery: &'a str,
}

/// The `Message-ID` of a delivery: stable, so a duplicate is recognisable.
fn message_id(delivery: &str, from: &str) -> String {
    let domain = from.rsplit_once('@').map(|(_, d)| d.trim_end_matches('>')).filter(|d| !d.is_empty());
    format!("<telltale.{delivery}@{}>", domain.unwrap_or("telltale.invalid"))
}

async fn email(m: &Mail<'_>) -> Result<(), DeliveryError> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let smtp = |e: &dyn std::fmt::Display| DeliveryError::Smtp(e.to_string());
    let server = m.server;
    let (host, port) = server.rsplit_once(':').ok_or_else(|| DeliveryError::Invalid(format!("bad server {server}")))?;
    let port: u16 = port.parse().map_err(|_| DeliveryError::Invalid(format!("bad port in {server}")))?;
    let mut builder = if m.starttls {
        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(|e| smtp(&e))?.port(port)
    } else {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port)
    };
    if let (Some(u), Some(p)) = (m.username, m.password) {
        builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
    }
    let transport = builder.timeout(Some(HTTP_TIMEOUT)).build();
    let mut msg = lettre::Message::builder()
        .from(m.from.parse().map_err(|e| smtp(&e))?)
        .subject(m.subject)
        .message_id(Some(message_id(m.delivery, m.from)));
    for t in m.to {
        msg = msg.to(t.parse().map_err(|e| smtp(&e))?);
    }
    let msg = msg.body(m.body.to_owned()).map_err(|e| smtp(&e))?;
    transport.send(msg).await.map_err(|e| smtp(&e))?;
    Ok(())
}

/// A rule target: the unit messages are sent in order to.
type Lane = (String, usize);

/// What a lane tells the deliverer.
#[derive(Debug)]
enum Report {
    /// One message was tried.
    Tried {
        /// The message.
        due: Due,
        /// The target kind (metrics).
        kind: &'static str,
        /// How it went.
        result: Result<(), DeliveryError>,
    },
    /// The lane is done (sent last, also when the lane panicked or was aborted).
    Done(Lane),
}

/// Sends [`Report::Done`] when the lane ends, however it ends.
struct DoneGuard {
    lane: Option<Lane>,
    reports: mpsc::UnboundedSender<Report>,
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        if let Some(lane) = self.lane.take() {
            let _ = self.reports.send(Report::Done(lane));
        }
    }
}

/// Send one lane's messages in order.
async fn lane(
    http: reqwest::Client,
    target: Option<Target>,
    messages: Vec<Due>,
    permits: Arc<Semaphore>,
    guard: DoneGuard,
) {
    let Ok(_permit) = permits.acquire_owned().await else {
        return;
    };
    let kind = target.as_ref().map_or("unknown", Target::kind);
    for due in messages {
        let result = match (&target, &due.message) {
            (Some(t), Ok(m)) => send(&http, t, m, &due.delivery_id()).await,
            (None, _) => Err(DeliveryError::Invalid(format!("rule {} target {} is gone", due.rule_id, due.target))),
            (_, Err(e)) => Err(DeliveryError::Invalid(e.clone())),
        };
        if guard.reports.send(Report::Tried { due, kind, result }).is_err() {
            return;
        }
    }
}

/// Milliseconds since the epoch, as the deliverer reads them (tests drive
/// their own clock).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The outbox sender: polls for due messages, runs a lane per target
/// (at most [`CONCURRENT_TARGETS`] sending at once), records what happened.
pub struct Deliverer {
    store: Store,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    clock: Clock,
    permits: Arc<Semaphore>,
    busy: HashSet<Lane>,
    reports: mpsc::UnboundedSender<Report>,
    inbox: mpsc::UnboundedReceiver<Report>,
    tasks: tokio::task::JoinSet<()>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer").field("store", &self.store.path()).field("busy", &self.busy).finish_non_exhaustive()
    }
}

impl Deliverer {
    /// A deliverer over `store`'s outbox, sending with `http`, at most
    /// `concurrent_targets` targets at once, reading time from `clock`.
    pub fn new(
        store: Store,
        http: reqwest::Client,
        metrics: Arc<Metrics>,
        concurrent_targets: usize,
        clock: Clock,
    ) -> Self {
        let (reports, inbox) = mpsc::unbounded_channel();
        Self {
            store,
            http,
            metrics,
            clock,
            permits: Arc::new(Semaphore::new(concurrent_targets.max(1))),
            busy: HashSet::new(),
            reports,
            inbox,
            tasks: tokio::task::JoinSet::new(),
        }
    }

    /// Start a lane for every target with due messages that has none
    /// running. Returns how many lanes started.
    fn start_due(&mut self) -> Result<usize, StoreError> {
        let rules = self.store.rules()?;
        let mut lanes: BTreeMap<Lane, Vec<Due>> = BTreeMap::new();
        for due in self.store.due((self.clock)(), DUE_PER_POLL)? {
            let key = (due.rule_id.clone(), due.target);
            if !self.busy.contains(&key) {
                lanes.entry(key).or_default().push(due);
            }
        }
        let started = lanes.len();
        for (key, messages) in lanes {
            let target = rules.iter().find(|r| r.id == key.0).and_then(|r| r.targets.get(key.1)).cloned();
            self.busy.insert(key.clone());
            let guard = DoneGuard { lane: Some(key), reports: self.reports.clone() };
            self.tasks.spawn(lane(self.http.clone(), target, messages, self.permits.clone(), guard));
        }
        Ok(started)
    }

    /// Record one report. Returns whether a message was delivered.
    fn record(&mut self, report: Report) -> Result<bool, StoreError> {
        let (due, kind, result) = match report {
            Report::Done(lane) => {
                self.busy.remove(&lane);
                return Ok(false);
            }
            Report::Tried { due, kind, result } => (due, kind, result),
        };
        let now = (self.clock)();
        let (rule, target, signal, delivery) = (&due.rule_id, due.target, &due.signal_id, due.delivery_id());
        match result {
            Ok(()) => {
                self.metrics.notification(kind, true);
                match self.store.delivered(&due, now)? {
                    Delivered::Removed => {
                        tracing::info!(%rule, target, %signal, %delivery, "Notification delivered.");
                    }
                    Delivered::Superseded => {
                        tracing::info!(%rule, target, %signal, %delivery, "Notification delivered; an update that arrived meanwhile stays queued.");
                    }
                    Delivered::Gone => {
                        tracing::info!(%rule, target, %signal, %delivery, "Notification delivered; its rule was deleted meanwhile.");
                    }
                }
                Ok(true)
            }
            Err(e) => {
                self.metrics.notification(kind, false);
                let attempts = due.attempts.saturating_add(1);
                tracing::warn!(%rule, target, %signal, %delivery, attempts, error = %e, "Notification failed; will retry.");
                self.store.failed(&due, &e.to_string(), now.saturating_add(backoff_ms(due.attempts)))?;
                Ok(false)
            }
        }
    }

    /// One round: start the due lanes and wait until every lane running
    /// has finished. Returns how many messages were delivered.
    pub async fn round(&mut self) -> Result<usize, StoreError> {
        self.start_due()?;
        let mut delivered = 0;
        while !self.busy.is_empty() {
            let Some(report) = self.inbox.recv().await else { break };
            delivered += usize::from(self.record(report)?);
        }
        while self.tasks.try_join_next().is_some() {}
        Ok(delivered)
    }

    /// Deliver until `closing` turns true: poll every [`POLL`], record
    /// each result as it comes. Lanes still sending at the end are
    /// abandoned (their messages go again after a restart, same ids).
    pub async fn run(mut self, mut closing: tokio::sync::watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.start_due() {
                tracing::warn!(error = %e, "Notification outbox could not be read.");
            }
            let tick = tokio::time::sleep(POLL);
            tokio::pin!(tick);
            loop {
                tokio::select! {
                    () = &mut tick => break,
                    Some(report) = self.inbox.recv() => {
                        if let Err(e) = self.record(report) {
                            tracing::warn!(error = %e, "Notification outbox could not be updated.");
                        }
                    }
                    Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                    r = closing.changed() => if r.is_err() || *closing.borrow() {
                        self.tasks.abort_all();
                        while let Ok(report) = self.inbox.try_recv() {
                            if let Err(e) = self.record(report) {
                                tracing::warn!(error = %e, "Notification outbox could not be updated.");
                            }
                        }
                        return;
                    },
                }
            }
        }
    }
}

/// Deliver until `closing` turns true, on a connection of its own to the
/// store in `data_dir`.
pub async fn run(
    data_dir: PathBuf,
    closing: tokio::sync::watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) -> Result<(), StartError> {
    let store = Store::open(&data_dir)?;
    let http = reqwest::Client::builder().timeout(HTTP_TIMEOUT).build().map_err(StartError::Http)?;
    let clock: Clock = Arc::new(telltale_core::clock::now_ms);
    Deliverer::new(store, http, metrics, CONCURRENT_TARGETS, clock).run(closing).await;
    Ok(())
}

#[cfg(test)]
mod tests;
