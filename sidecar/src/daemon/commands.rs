//! The daemon's answers to the API: learning status and profiles, signal
//! triage (mark benign adds to the profile), notification and suppression
//! rules, adding behaviours by hand. Every change and its audit record are
//! committed together, in one transaction with what they caused.

use telltale_core::audit::{Action, AssetType, Outcome, Verb};
use telltale_core::notify::Rule;
use telltale_core::profile::Observation;
use telltale_core::signal::{Signal, Status, UpdateError};

use super::pipeline::Pending;
use super::{Daemon, DaemonError, Discovery, EventSource};
use crate::bus::Command;
use crate::store::RuleChange;

fn json<T: serde::Serialize>(v: &T) -> Option<serde_json::Value> {
    serde_json::to_value(v).ok()
}

impl<S: EventSource, D: Discovery> Daemon<S, D> {
    /// Answer one request. A reply nobody waits for any more is dropped.
    pub(super) fn command(&mut self, cmd: Command) -> Result<(), DaemonError> {
        let now = self.now();
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
            Command::ProfileStore { reply } => {
                let status = self.fleet.as_ref().map_or_else(
                    || telltale_core::status::StoreStatus { kind: "local".into(), ..Default::default() },
                    |f| f.view().store_status(),
                );
                let _ = reply.send(status);
            }
            Command::Profile { image, reply } => {
                let answer = self.detector.profile(&image).and_then(|p| {
                    let st = telltale_core::status::status(std::slice::from_ref(p), self.detector.config(), now);
                    st.into_iter().next().map(|st| (p.clone(), st))
                });
                let _ = reply.send(answer);
            }
            Command::Audit(action) => {
                let mut p = Pending::default();
                p.batch.audit.push(action);
                self.commit(p, now)?;
            }
            Command::SaveRule { rule, principal, reply } => {
                let saved = self.save_rule(rule, &principal, now)?;
                let _ = reply.send(saved);
            }
            Command::DeleteRule { id, principal, reply } => {
                let before = self.rules.iter().find(|r| r.id == id).map(Rule::redacted);
                let mut p = Pending::default();
                let existed = before.is_some();
                if existed {
                    p.batch.rules.push(RuleChange::DeleteRule(id.clone()));
                }
                p.batch.audit.push(
                    Action::new(now, principal, AssetType::NotificationRule, &id, Verb::Delete, Outcome::of(existed))
                        .before(before.as_ref().and_then(json)),
                );
                self.commit(p, now)?;
                self.rules.retain(|r| r.id != id);
                let _ = reply.send(existed);
            }
            Command::Rules { reply } => {
                let _ = reply.send(self.rules.clone());
            }
            Command::SaveSuppression { mut rule, principal, reply } => {
                rule.id = format!("sup-{now:x}-{}", self.suppressions.len());
                let mut p = Pending::default();
                p.batch.rules.push(RuleChange::SaveSuppression(rule.clone()));
                p.batch.audit.push(
                    Action::new(now, principal, AssetType::Suppression, &rule.id, Verb::Create, Outcome::Success)
                        .after(json(&rule)),
                );
                self.commit(p, now)?;
                self.suppressions.push(rule.clone());
                self.detector.set_suppressions(self.suppressions.clone());
                let _ = reply.send(rule);
            }
            Command::DeleteSuppression { id, principal, reply } => {
                let before = self.suppressions.iter().find(|r| r.id == id).cloned();
                let existed = before.is_some();
                let mut p = Pending::default();
                if existed {
                    p.batch.rules.push(RuleChange::DeleteSuppression(id.clone()));
                }
                p.batch.audit.push(
                    Action::new(now, principal, AssetType::Suppression, &id, Verb::Delete, Outcome::of(existed))
                        .before(before.as_ref().and_then(json)),
                );
                self.commit(p, now)?;
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
                let answer = self.add(&image, &observations, &principal, now)?;
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }

    /// Create (empty id) or replace a rule; None when replacing an unknown id.
    fn save_rule(&mut self, mut rule: Rule, principal: &str, now: i64) -> Result<Option<Rule>, DaemonError> {
        let before = if rule.id.is_empty() {
            rule.id = format!("rule-{now:x}-{}", self.rules.len());
            None
        } else {
            match self.rules.iter().find(|r| r.id == rule.id) {
                Some(r) => Some(r.redacted()),
                None => return Ok(None),
            }
        };
        let verb = if before.is_some() { Verb::Update } else { Verb::Create };
        let mut p = Pending::default();
        p.batch.rules.push(RuleChange::SaveRule(rule.clone()));
        p.batch.audit.push(
            Action::new(now, principal, AssetType::NotificationRule, &rule.id, verb, Outcome::Success)
                .before(before.as_ref().and_then(json))
                .after(json(&rule.redacted())),
        );
        self.commit(p, now)?;
        self.rules.retain(|r| r.id != rule.id);
        self.rules.push(rule.clone());
        Ok(Some(rule))
    }

    /// Add behaviours to a profile by hand: (added, already known), or None
    /// for an unknown profile. Audited in the same transaction.
    fn add(
        &mut self,
        image: &str,
        observations: &[Observation],
        principal: &str,
        now: i64,
    ) -> Result<Option<(u32, u32)>, DaemonError> {
        let audit =
            |outcome| Action::new(now, principal, AssetType::SecurityProfile, image, Verb::AddToProfile, outcome);
        let mut p = Pending::default();
        p.manual = true;
        let Some((added, known, changes)) = self.detector.add_to_profile(image, observations, now) else {
            p.batch
                .audit
                .push(audit(Outcome::Failure).after(Some(serde_json::json!({"behaviours": observations.len()}))));
            self.commit(p, now)?;
            return Ok(None);
        };
        tracing::info!(%principal, %image, added, known, "Behaviours added to profile.");
        self.absorb(&mut p, changes);
        p.batch
            .audit
            .push(audit(Outcome::Success).after(Some(serde_json::json!({"added": added, "already_known": known}))));
        self.commit(p, now)?;
        Ok(Some((added, known)))
    }

    /// Triage a signal; "mark benign" adds its behaviours to the profile
    /// and archives it. Audited either way, in the same transaction.
    fn update_signal(
        &mut self,
        id: &str,
        status: Option<Status>,
        assignee: Option<String>,
        benign: Option<Vec<String>>,
        principal: &str,
        now: i64,
    ) -> Result<Result<(Signal, u32), UpdateError>, DaemonError> {
        let verb = if benign.is_some() { Verb::MarkBenign } else { Verb::Update };
        let audit = |outcome| Action::new(now, principal, AssetType::SecuritySignal, id, verb, outcome);
        let failed = |e: &UpdateError| audit(Outcome::Failure).after(Some(serde_json::json!({"error": e.to_string()})));
        let mut p = Pending::default();
        p.manual = true;
        let mut added = 0;
        let mut status = status;
        if let Some(ids) = &benign {
            let observations = match self.signals.benign_observations(id, ids) {
                Ok(o) => o,
                Err(e) => {
                    p.batch.audit.push(failed(&e));
                    self.commit(p, now)?;
                    return Ok(Err(e));
                }
            };
            let image = self.signals.get(id).map(|s| s.container.image.clone()).unwrap_or_default();
            if let Some((n, _, changes)) = self.detector.add_to_profile(&image, &observations, now) {
                self.absorb(&mut p, changes);
                added = n;
            }
            status = Some(Status::Archived);
        }
        match self.signals.update(id, status, assignee) {
            Ok((before, after)) => {
                let summary = |s: &Signal| serde_json::json!({"status": s.status.name(), "assignee": s.assignee, "version": s.version});
                let mut after_json = summary(&after);
                if benign.is_some() {
                    after_json["behaviours_added"] = added.into();
                }
                p.changed.add(after.id.clone(), false);
                p.batch.audit.push(audit(Outcome::Success).before(Some(summary(&before))).after(Some(after_json)));
                self.commit(p, now)?;
                self.telemetry.signal_updated(&after, principal);
                tracing::info!(signal = %id, %principal, status = after.status.name(), added, "Signal updated.");
                Ok(Ok((after, added)))
            }
            Err(e) => {
                p.batch.audit.push(failed(&e));
                self.commit(p, now)?;
                Ok(Err(e))
            }
        }
    }
}
