//! `telltale run`: the daemon. Watches a pod cgroup (or a command it starts),
//! learns a profile per image and reports what stable profiles never saw.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use crate::config::Config;
use crate::sensor::{Sensor, SensorError, SensorOptions};
use crate::store::{Store, StoreError};
use crate::trace::{spawn_in, TraceError};
use crate::workload::cgroup::{Cgroup, CgroupError, OwnedCgroup};
use crate::workload::discover::{DiscoverError, Workload};
use telltale_core::detect::{Change, Container, Detector};
use telltale_core::event::Event;

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The sensors failed.
    #[error(transparent)]
    Sensor(#[from] SensorError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A cgroup could not be used.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The pod could not be found.
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    /// The command could not be started.
    #[error(transparent)]
    Command(#[from] TraceError),
    /// Nothing to watch.
    #[error("nothing to watch: give --cgroup PATH (the pod cgroup), --pod, or a command after `--`")]
    NoTarget,
    /// The anomalies output could not be opened or written.
    #[error("anomalies output {path}")]
    Output {
        /// The path (`-` for stdout).
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Installing signal handlers failed.
    #[error("installing signal handlers")]
    Signals(#[source] std::io::Error),
    /// The API server failed.
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
    /// Telemetry could not start.
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
}

/// Signals changed by a batch: each id once, created if any change created it.
#[derive(Default)]
struct Touched(Vec<(String, bool)>);

impl Touched {
    fn add(&mut self, id: String, created: bool) {
        match self.0.iter_mut().find(|(i, _)| *i == id) {
            Some((_, c)) => *c |= created,
            None => self.0.push((id, created)),
        }
    }

    /// One copy of each changed signal, after the whole batch.
    fn signals(&self, all: &telltale_core::signal::Signals) -> Vec<(telltale_core::signal::Signal, bool)> {
        self.0.iter().filter_map(|(id, c)| all.get(id).map(|s| (s.clone(), *c))).collect()
    }
}

/// Meta key under which the daemon saves the sensors' counters every second.
pub const SENSOR_COUNTERS: &str = "sensor_counters";

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

struct Daemon {
    cfg: Config,
    store: Store,
    detector: Detector,
    sensor: Sensor,
    workload: Workload,
    aliases: HashMap<u64, u64>,
    out: Option<Box<dyn Write + Send>>,
    lost_seen: u64,
    known_map_full: bool,
    feeds: crate::bus::Feeds,
    ticks: u64,
    signals: telltale_core::signal::Signals,
    rules: Vec<telltale_core::notify::Rule>,
    suppressions: Vec<telltale_core::suppress::Suppression>,
    telemetry: crate::telemetry::Telemetry,
}

impl Daemon {
    fn persist(&mut self, changes: &[Change]) -> Result<(), RunError> {
        for c in changes {
            if let Change::Anomaly(a) = c {
                tracing::warn!(
                    container = %a.container.id,
                    image = %a.container.image,
                    kind = a.event_type.name(),
                    "Anomaly detected."
                );
                if let Some(out) = &mut self.out {
                    let line = serde_json::to_string(a).unwrap_or_default();
                    let path = self.cfg.anomalies_json.clone().unwrap_or_default();
                    writeln!(out, "{line}")
                        .and_then(|()| out.flush())
                        .map_err(|source| RunError::Output { path, source })?;
                }
            }
        }
        let sequences = self.store.apply(changes)?;
        let anomalies = changes.iter().filter_map(|c| if let Change::Anomaly(a) = c { Some(a) } else { None });
        let mut touched = Touched::default();
        for (seq, a) in sequences.into_iter().zip(anomalies) {
            let (id, created) = self.signals.record(seq, a);
            if created {
                tracing::warn!(signal = %id, container = %a.container.id, "Signal opened.");
                if let Some(s) = self.signals.get(&id) {
                    self.telemetry.signal_opened(s);
                }
            }
            let shared = std::sync::Arc::new((seq, (**a).clone()));
            self.telemetry.anomaly(&shared, &id);
            touched.add(id, created);
            // No receiver (no stream client) is fine.
            let _ = self.feeds.anomalies.send(shared);
        }
        let changed = touched.signals(&self.signals);
        self.publish(&changed)
    }

    /// Save changed signals, log them for streaming, tell stream clients,
    /// queue notifications.
    fn publish(&mut self, changed: &[(telltale_core::signal::Signal, bool)]) -> Result<(), RunError> {
        if changed.is_empty() {
            return Ok(());
        }
        let signals: Vec<_> = changed.iter().map(|(s, _)| s.clone()).collect();
        self.store.save_signals(&signals)?;
        let log: Vec<telltale_core::signal::SignalChange> = changed
            .iter()
            .map(|(s, c)| telltale_core::signal::SignalChange { created: *c, signal: s.summary_copy() })
            .collect();
        let seqs = self.store.log_signal_changes(&log, now_ms())?;
        for (seq, c) in seqs.into_iter().zip(log) {
            let _ = self.feeds.signals.send(std::sync::Arc::new((seq, c)));
        }
        self.notify(changed)
    }

    /// Queue the notifications of rules that want these signal changes.
    fn notify(&mut self, changed: &[(telltale_core::signal::Signal, bool)]) -> Result<(), RunError> {
        let now = now_ms();
        let window = i64::try_from(self.cfg.notifications.rate_limit.as_millis()).unwrap_or(i64::MAX);
        for (signal, created) in changed {
            for rule in self.rules.iter().filter(|r| r.wants(signal, *created)) {
                for (i, target) in rule.targets.iter().enumerate() {
                    // The first message about a signal says "created", even
                    // when updates were coalesced into it.
                    let first = !self.store.was_notified(&rule.id, i, &signal.id)?;
                    let message = telltale_core::notify::render(rule, target, signal, first);
                    self.store.enqueue(&rule.id, i, &signal.id, &message, now, window)?;
                }
            }
        }
        Ok(())
    }

    /// Signals miss anomalies stored after their last save (a crash between
    /// the two transactions): replay those.
    fn catch_up_signals(&mut self) -> Result<(), RunError> {
        let last = self.signals.all().iter().flat_map(|s| s.entries.iter().map(|e| e.sequence)).max().unwrap_or(0);
        let missed = self.store.anomalies_after(last, usize::MAX)?;
        let mut touched = Touched::default();
        for (seq, a) in &missed {
            let (id, created) = self.signals.record(*seq, a);
            touched.add(id, created);
        }
        let changed = touched.signals(&self.signals);
        self.publish(&changed)
    }

    fn command(&mut self, cmd: crate::bus::Command) -> Result<(), RunError> {
        use crate::bus::Command;
        let now = now_ms();
        match cmd {
            Command::Status { image, reply } => {
                let profiles: Vec<_> = self
                    .detector
                    .profiles()
                    .filter(|p| image.as_deref().is_none_or(|i| i == p.image))
                    .cloned()
                    .collect();
                let mut st = telltale_core::status::status(&profiles, self.detector.config(), now);
                st.sort_by(|a, b| a.image.cmp(&b.image));
                let _ = reply.send(st);
            }
            Command::Profile { image, reply } => {
                let answer = self.detector.profile(&image).and_then(|p| {
                    let st = telltale_core::status::status(std::slice::from_ref(p), self.detector.config(), now);
                    st.into_iter().next().map(|st| (p.clone(), st))
                });
                let _ = reply.send(answer);
            }
            Command::Audit(action) => {
                self.store.append_audit(vec![action])?;
            }
            Command::SaveRule { mut rule, principal, reply } => {
                use telltale_core::audit::{Action, AssetType};
                let before = if rule.id.is_empty() {
                    rule.id = format!("rule-{now:x}-{}", self.rules.len());
                    None
                } else {
                    match self.rules.iter().find(|r| r.id == rule.id) {
                        Some(r) => Some(r.redacted()),
                        None => {
                            let _ = reply.send(None);
                            return Ok(());
                        }
                    }
                };
                self.store.save_rule(&rule)?;
                let action = if before.is_some() { "update" } else { "create" };
                self.store.append_audit(vec![Action {
                    time_ms: now,
                    principal,
                    asset_type: AssetType::NotificationRule,
                    asset_id: rule.id.clone(),
                    action: action.into(),
                    outcome: "success".into(),
                    before: before.map(|b| serde_json::to_value(b).unwrap_or_default()),
                    after: Some(serde_json::to_value(rule.redacted()).unwrap_or_default()),
                }])?;
                self.rules.retain(|r| r.id != rule.id);
                self.rules.push(rule.clone());
                let _ = reply.send(Some(rule));
            }
            Command::DeleteRule { id, principal, reply } => {
                let existed = self.store.delete_rule(&id)?;
                let before = self
                    .rules
                    .iter()
                    .find(|r| r.id == id)
                    .map(|r| serde_json::to_value(r.redacted()).unwrap_or_default());
                self.rules.retain(|r| r.id != id);
                self.store.append_audit(vec![telltale_core::audit::Action {
                    time_ms: now,
                    principal,
                    asset_type: telltale_core::audit::AssetType::NotificationRule,
                    asset_id: id,
                    action: "delete".into(),
                    outcome: if existed { "success" } else { "failure" }.into(),
                    before,
                    after: None,
                }])?;
                let _ = reply.send(existed);
            }
            Command::Rules { reply } => {
                let _ = reply.send(self.rules.clone());
            }
            Command::SaveSuppression { mut rule, principal, reply } => {
                rule.id = format!("sup-{now:x}-{}", self.suppressions.len());
                self.store.save_suppression(&rule)?;
                self.audit_suppression(&principal, &rule.id, "create", None, Some(&rule), now)?;
                self.suppressions.push(rule.clone());
                self.detector.set_suppressions(self.suppressions.clone());
                let _ = reply.send(rule);
            }
            Command::DeleteSuppression { id, principal, reply } => {
                let existed = self.store.delete_suppression(&id)?;
                let before = self.suppressions.iter().find(|r| r.id == id).cloned();
                self.audit_suppression(&principal, &id, "delete", before.as_ref(), None, now)?;
                self.suppressions.retain(|r| r.id != id);
                self.detector.set_suppressions(self.suppressions.clone());
                let _ = reply.send(existed);
            }
            Command::Suppressions { reply } => {
                let _ = reply.send(self.suppressions.clone());
            }
            Command::Signals { query, reply } => {
                let _ = reply
                    .send(self.signals.all().into_iter().filter(|s| query.matches(&|k| s.facet(k))).cloned().collect());
            }
            Command::Signal { id, reply } => {
                let _ = reply.send(self.signals.get(&id).cloned());
            }
            Command::UpdateSignal { id, status, assignee, benign, principal, reply } => {
                let answer = self.update_signal(&id, status, assignee, benign, &principal, now)?;
                let _ = reply.send(answer);
            }
            Command::Add { image, observations, principal, reply } => {
                let answer = self.detector.add_to_profile(&image, &observations, now);
                let result = match answer {
                    Some((added, known, changes)) => {
                        tracing::info!(%principal, %image, added, known, "Behaviours added to profile.");
                        self.persist(&changes)?;
                        Some((added, known))
                    }
                    None => None,
                };
                let _ = reply.send(result);
            }
        }
        Ok(())
    }

    fn rescan(&mut self, now: i64) -> Result<(), RunError> {
        let detector = &self.detector;
        let (found, aliases) = self.workload.scan(&self.cfg, &|id| detector.container(id).is_some());
        let mut changes = Vec::new();
        for f in found {
            let (id, image) = (&f.id, &f.image);
            tracing::info!(container = %id, name = %f.name, image = %image.short_name, tag = %image.tag, "Watching container.");
            let c = Container::new(id, &f.name, image, f.cgroup.id, now)
                .in_pod(&self.workload.pod_name, &self.workload.namespace);
            changes.extend(self.detector.add_container(c, now));
        }
        let gone: Vec<u64> =
            self.detector.containers().map(|c| c.cgroup_id).filter(|id| !aliases.contains_key(id)).collect();
        for id in gone {
            self.detector.remove_container(id);
        }
        self.aliases = aliases;
        self.persist(&changes)
    }

    fn on_events(&mut self, batch: &mut Vec<Event>) -> Result<(), RunError> {
        let now = now_ms();
        let mut changes = Vec::new();
        let mut known = Vec::new();
        let mut folded = Vec::new();
        let mut rescanned = false;
        for mut event in batch.drain(..) {
            if !self.aliases.contains_key(&event.cgroup_id) && !rescanned {
                // A container (or a nested cgroup) appeared since the last scan.
                self.rescan(now)?;
                rescanned = true;
            }
            if let Some(&container) = self.aliases.get(&event.cgroup_id) {
                event.cgroup_id = container;
            }
            let outcome = self.detector.on_event(&event, now);
            if outcome.unattributed {
                tracing::debug!(cgroup_id = event.cgroup_id, "Event from no known container.");
            }
            if outcome.known && event.dedup_key != 0 {
                known.push(event.dedup_key);
            }
            changes.extend(outcome.changes);
            folded.extend(outcome.folded);
        }
        self.persist(&changes)?;
        // Each signal a folded behaviour touched, once, as it is now.
        let mut touched = Touched::default();
        for id in folded.iter().filter_map(|(c, o)| self.signals.fold(c, o)) {
            touched.add(id, false);
        }
        let latest: Vec<telltale_core::signal::Signal> =
            touched.signals(&self.signals).into_iter().map(|(s, _)| s).collect();
        self.store.save_signals(&latest)?;
        if !known.is_empty() && !self.known_map_full {
            if let Err(e) = self.sensor.mark_known(&known) {
                tracing::warn!(error = %e, "Kernel map of known behaviour is full: repeats reach user space.");
                self.known_map_full = true;
            }
        }
        Ok(())
    }

    fn audit_suppression(
        &mut self,
        principal: &str,
        id: &str,
        action: &str,
        before: Option<&telltale_core::suppress::Suppression>,
        after: Option<&telltale_core::suppress::Suppression>,
        now: i64,
    ) -> Result<(), RunError> {
        let json =
            |r: Option<&telltale_core::suppress::Suppression>| r.map(|r| serde_json::to_value(r).unwrap_or_default());
        self.store.append_audit(vec![telltale_core::audit::Action {
            time_ms: now,
            principal: principal.to_owned(),
            asset_type: telltale_core::audit::AssetType::Suppression,
            asset_id: id.to_owned(),
            action: action.to_owned(),
            outcome: if before.is_some() || after.is_some() { "success" } else { "failure" }.to_owned(),
            before: json(before),
            after: json(after),
        }])?;
        Ok(())
    }

    /// Triage a signal; "mark benign" adds its behaviours to the profile
    /// and archives it. Audited either way.
    fn update_signal(
        &mut self,
        id: &str,
        status: Option<telltale_core::signal::Status>,
        assignee: Option<String>,
        benign: Option<Vec<String>>,
        principal: &str,
        now: i64,
    ) -> Result<Result<(telltale_core::signal::Signal, u32), telltale_core::signal::UpdateError>, RunError> {
        use telltale_core::audit::{Action, AssetType};
        let audit = |outcome: &str, action: &str, before, after| Action {
            time_ms: now,
            principal: principal.to_owned(),
            asset_type: AssetType::SecuritySignal,
            asset_id: id.to_owned(),
            action: action.to_owned(),
            outcome: outcome.to_owned(),
            before,
            after,
        };
        let action = if benign.is_some() { "mark_benign" } else { "update" };
        let failed = |e: &telltale_core::signal::UpdateError| {
            audit("failure", action, None, Some(serde_json::json!({"error": e.to_string()})))
        };
        let mut added = 0;
        let mut status = status;
        if let Some(ids) = &benign {
            let observations = match self.signals.benign_observations(id, ids) {
                Ok(o) => o,
                Err(e) => {
                    self.store.append_audit(vec![failed(&e)])?;
                    return Ok(Err(e));
                }
            };
            let image = self.signals.get(id).map(|s| s.container.image.clone()).unwrap_or_default();
            if let Some((n, _, changes)) = self.detector.add_to_profile(&image, &observations, now) {
                self.persist(&changes)?;
                added = n;
            }
            status = Some(telltale_core::signal::Status::Archived);
        }
        match self.signals.update(id, status, assignee) {
            Ok((before, after)) => {
                self.publish(&[(after.clone(), false)])?;
                self.telemetry.signal_updated(&after, principal);
                let summary = |s: &telltale_core::signal::Signal| serde_json::json!({"status": s.status.name(), "assignee": s.assignee, "version": s.version});
                let mut after_json = summary(&after);
                if benign.is_some() {
                    after_json["behaviours_added"] = added.into();
                }
                self.store.append_audit(vec![audit("success", action, Some(summary(&before)), Some(after_json))])?;
                tracing::info!(signal = %id, %principal, status = after.status.name(), added, "Signal updated.");
                Ok(Ok((after, added)))
            }
            Err(e) => {
                self.store.append_audit(vec![failed(&e)])?;
                Ok(Err(e))
            }
        }
    }

    /// What the metrics report about the kernel, signals and profiles.
    fn publish_metrics(&self, counters: crate::sensor::Counters) {
        let mut view = crate::telemetry::metrics::DaemonView { counters, ..Default::default() };
        // Every status and state is reported, 0 when none: a series that
        // disappears reads as "no data" in a dashboard, not as zero.
        for status in telltale_core::signal::Status::ALL {
            view.signals.insert(status.name(), 0);
        }
        for s in self.signals.all() {
            *view.signals.entry(s.status.name()).or_default() += 1;
        }
        for p in self.detector.profiles() {
            view.profiles.insert(p.image.clone(), u64::try_from(p.behaviour_count()).unwrap_or(u64::MAX));
            for t in telltale_core::profile::EventType::ALL {
                view.learning.push((p.image.clone(), t.name(), p.clock(t).state.name()));
            }
        }
        self.telemetry.metrics.set_daemon(view);
    }

    fn tick(&mut self) -> Result<(), RunError> {
        let now = now_ms();
        self.rescan(now)?;
        self.ticks += 1;
        if self.ticks % 60 == 1 {
            let retention = i64::try_from(self.cfg.api.anomaly_retention.as_millis()).unwrap_or(i64::MAX);
            let pruned = self.store.prune_anomalies(now.saturating_sub(retention))?;
            if pruned > 0 {
                tracing::info!(pruned, "Anomalies past their retention removed.");
            }
        }
        let c = self.sensor.counters()?;
        let lost = c.events().lost + c.exit.lost;
        let delta = lost.saturating_sub(self.lost_seen);
        self.lost_seen = lost;
        if delta > 0 {
            tracing::warn!(lost = delta, "Ring buffer records lost.");
        }
        self.publish_metrics(c);
        let mut counters = serde_json::to_value(c).unwrap_or_default();
        counters["updated_ms"] = now.into();
        self.store.save_meta_json(SENSOR_COUNTERS, &counters)?;
        let changes = self.detector.tick(now, delta);
        for ch in &changes {
            if let Change::Clock { image, event_type, clock } = ch {
                tracing::info!(image = %image, kind = event_type.name(), state = clock.state.name(), "Learning state.");
            }
        }
        self.persist(&changes)
    }
}

fn open_output(spec: &Option<String>) -> Result<Option<Box<dyn Write + Send>>, RunError> {
    match spec.as_deref() {
        None => Ok(None),
        Some("-") => Ok(Some(Box::new(std::io::stdout()))),
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(Path::new(path))
                .map_err(|source| RunError::Output { path: path.to_owned(), source })?;
            Ok(Some(Box::new(f)))
        }
    }
}

/// Wait for the local-mode command, if any (pending forever otherwise).
async fn wait_child(child: &mut Option<tokio::process::Child>) -> Option<std::io::Result<std::process::ExitStatus>> {
    match child {
        Some(c) => Some(c.wait().await),
        None => std::future::pending().await,
    }
}

/// Run the daemon until SIGINT/SIGTERM.
pub async fn run(cfg: Config, command: Vec<OsString>) -> Result<(), RunError> {
    let store = Store::open(&cfg.data_dir)?;
    store.save_learning_config(&cfg.learning)?;
    let detector = Detector::new(cfg.learning, store.load_profiles()?, store.reported()?);
    let signals = telltale_core::signal::Signals::new(store.signals()?);
    let rules = store.rules()?;
    let suppressions = store.suppressions()?;
    let mut detector = detector;
    detector.set_suppressions(suppressions.clone());
    let out = open_output(&cfg.anomalies_json)?;
    let mut sensor = Sensor::load(&SensorOptions::default())?;

    let mut owned = None;
    let mut child = None;
    let pod = if let Some((program, args)) = command.split_first() {
        let cg = OwnedCgroup::create("telltale-run")?;
        sensor.watch(cg.cgroup())?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args);
        child = Some(spawn_in(cg.cgroup(), cmd)?);
        let pod = cg.cgroup().clone();
        owned = Some(cg);
        Workload::local(pod)
    } else if let Some(path) = cfg.cgroup.clone() {
        let pod = Cgroup::open(&path)?;
        sensor.watch(&pod)?;
        Workload::local(pod)
    } else if cfg.kubernetes.enabled {
        let (pod, member_prefix) = crate::workload::discover::locate_pod(&cfg.kubernetes)?;
        sensor.watch(&pod)?;
        let api = crate::workload::kubeapi::for_pod(&cfg.kubernetes).await;
        Workload::pod(pod, member_prefix, &cfg.kubernetes, api)
    } else {
        return Err(RunError::NoTarget);
    };
    let telemetry = crate::telemetry::Telemetry::start(&cfg).await?;
    let feeds = crate::bus::Feeds::new(cfg.api.stream_buffer);
    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::channel(crate::bus::INBOX);
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let mut api_task = None;
    let mut api_note = String::new();
    if cfg.api.enabled {
        let listener = crate::api::bind(&cfg.api).await?;
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        api_note = format!("; API on {addr}");
        let api = crate::api::Api::new(
            cmd_tx.clone(),
            feeds.clone(),
            cfg.data_dir.clone(),
            closing.clone(),
            telemetry.metrics.clone(),
        );
        let mut stop = closing.clone();
        let tracer = telemetry.tracer();
        api_task = Some(tokio::spawn(crate::api::serve(cfg.api.clone(), listener, api, tracer, async move {
            let _ = stop.wait_for(|c| *c).await;
        })));
    }
    drop(cmd_tx);
    if let Some(addr) = telemetry.prometheus_addr() {
        api_note.push_str(&format!("; metrics on http://{addr}/metrics"));
    }
    eprintln!(
        "telltale: watching {} (cgroup id {}); data in {}{api_note}",
        pod.root.path.display(),
        pod.root.id,
        cfg.data_dir.display()
    );
    let mut d = Daemon {
        cfg,
        store,
        detector,
        sensor,
        workload: pod,
        aliases: HashMap::new(),
        out,
        lost_seen: 0,
        known_map_full: false,
        feeds,
        ticks: 0,
        signals,
        rules,
        suppressions,
        telemetry,
    };
    let notifier =
        tokio::spawn(crate::notify::deliver::run(d.cfg.data_dir.clone(), closing.clone(), d.telemetry.metrics.clone()));
    d.catch_up_signals()?;
    d.rescan(now_ms())?;
    d.tick()?;

    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = ticker.tick() => d.tick()?,
            Some(cmd) = cmd_rx.recv() => d.command(cmd)?,
            status = wait_child(&mut child), if child.is_some() => {
                if let Some(Ok(status)) = status {
                    tracing::info!(%status, "Command exited; still watching until SIGTERM/SIGINT.");
                }
                child = None;
            }
            r = d.sensor.next_events(&mut batch) => {
                r?;
                d.on_events(&mut batch)?;
            }
        }
    }
    d.sensor.drain(&mut batch);
    d.on_events(&mut batch)?;
    d.tick()?;
    // Streams end, then the server drains; give it a few seconds.
    let _ = closing_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(15), notifier).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "Notification delivery stopped with an error."),
        Ok(Err(e)) => tracing::warn!(error = %e, "Notification task ended abnormally."),
        Err(_) => tracing::warn!("Notification delivery did not stop in 15 s."),
        Ok(Ok(Ok(()))) => {}
    }
    if let Some(mut task) = api_task {
        match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
            Ok(Ok(r)) => r?,
            Ok(Err(e)) => tracing::warn!(error = %e, "API task ended abnormally."),
            Err(_) => {
                // Aborted, not left running: it holds the tracer, whose
                // span queue the trace export below waits to see closed.
                task.abort();
                tracing::warn!("API clients did not disconnect in 5 s; stopping anyway.");
            }
        }
    }
    d.publish_metrics(d.sensor.counters()?);
    d.telemetry.shutdown(Duration::from_secs(5)).await;
    if let Some(cg) = owned {
        cg.remove()?;
    }
    Ok(())
}
