//! Failed authentications and denied calls, counted on their way to the
//! audit trail. The first failure of a kind is recorded at once; its
//! repeats within the window it opened become one record carrying their
//! count and their first and last time, handed over when the window ends.
//! A kind is an action, a principal, a call and details such as the
//! peer's address and the reason; at most `max_kinds` are counted apart,
//! and failures of further kinds are counted together in one overflow kind
//! per action, so a flood of distinct peers cannot grow memory either.
//!
//! Nothing is dropped: a record the daemon's inbox has no room for stays
//! here, counting on, and is offered again at the next flush; one that can
//! never be written (the daemon stopped) is handed back to the caller to be
//! counted and logged. Every failure is in exactly one record, so the
//! counts of the records sum to the failures. Pure logic: the caller sends.

use std::collections::HashMap;

use telltale_core::audit::{Action, AssetType, Outcome, Verb};

/// Principal of the records of the overflow kinds.
pub const OVERFLOW_PRINCIPAL: &str = "(various)";

/// One kind of failure.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Failure {
    /// Authenticate or authorize.
    pub verb: Verb,
    /// Who (`anonymous` when the credentials were not accepted).
    pub principal: String,
    /// The call, if known.
    pub asset_id: String,
    /// What else tells failures apart (peer address, reason, roles...),
    /// written in the record.
    pub details: Vec<(&'static str, String)>,
    /// The kind that counts what exceeds `max_kinds`.
    overflow: bool,
}

impl Failure {
    /// A failure of `verb` by `principal` on `asset_id`.
    pub fn new(
        verb: Verb,
        principal: impl Into<String>,
        asset_id: impl Into<String>,
        details: Vec<(&'static str, String)>,
    ) -> Self {
        Failure { verb, principal: principal.into(), asset_id: asset_id.into(), details, overflow: false }
    }

    /// The kind counting failures of `verb` beyond the kinds counted apart.
    fn overflow(verb: Verb, max_kinds: usize) -> Self {
        let note = format!("failures of more than {max_kinds} kinds (peers, principals, reasons) counted together");
        Failure {
            verb,
            principal: OVERFLOW_PRINCIPAL.to_owned(),
            asset_id: String::new(),
            details: vec![("overflow", note)],
            overflow: true,
        }
    }

    /// The record of `count` failures of this kind, the first at
    /// `first_ms` (the record's time) and the last at `last_ms`.
    pub fn action(&self, count: u64, first_ms: i64, last_ms: i64) -> Action {
        let mut after = serde_json::Map::new();
        for (k, v) in &self.details {
            after.insert((*k).to_owned(), v.clone().into());
        }
        after.insert("count".into(), count.into());
        after.insert("first_ms".into(), first_ms.into());
        after.insert("last_ms".into(), last_ms.into());
        Action::new(first_ms, &self.principal, AssetType::Api, &self.asset_id, self.verb, Outcome::Failure)
            .after(Some(after.into()))
    }
}

/// What became of a record offered to the daemon's inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued: it will be written.
    Queued,
    /// No room now: keep it and offer it again later.
    Full,
    /// The daemon no longer reads: it can never be written.
    Closed,
}

/// What a flush did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flushed {
    /// Records that can never be written.
    pub lost: Vec<Action>,
    /// Failures whose window ended, still waiting for room in the inbox.
    pub waiting: u64,
}

/// The failures of one kind since its window opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    /// When the first failure of the window came.
    opened_ms: i64,
    /// Failures not recorded yet.
    count: u64,
    /// The first and last of them.
    first_ms: i64,
    last_ms: i64,
}

/// The open windows, at most `max_kinds` counted apart plus one overflow
/// kind per action.
#[derive(Debug, Clone)]
pub struct Tally {
    window_ms: i64,
    max_kinds: usize,
    open: HashMap<Failure, Window>,
    apart: usize,
}

impl Tally {
    /// Repeats counted into one record for `window_ms`; `max_kinds` kinds
    /// counted apart.
    pub fn new(window_ms: i64, max_kinds: usize) -> Self {
        Tally { window_ms: window_ms.max(0), max_kinds, open: HashMap::new(), apart: 0 }
    }

    /// Count a failure at `now_ms`. The first of its kind in a window is
    /// offered to `send` at once (kept, when there is no room). Returns
    /// the record that can never be written, if any.
    pub fn add(&mut self, failure: Failure, now_ms: i64, send: impl FnOnce(Action) -> Offer) -> Option<Action> {
        let kind = if self.open.contains_key(&failure) || self.apart < self.max_kinds {
            failure
        } else {
            Failure::overflow(failure.verb, self.max_kinds)
        };
        if let Some(w) = self.open.get_mut(&kind) {
            if w.count == 0 {
                w.first_ms = now_ms;
            }
            w.count += 1;
            w.last_ms = now_ms;
            return None;
        }
        let mut window = Window { opened_ms: now_ms, count: 0, first_ms: now_ms, last_ms: now_ms };
        let action = kind.action(1, now_ms, now_ms);
        let lost = match send(action.clone()) {
            Offer::Queued => None,
            Offer::Full => {
                window.count = 1;
                None
            }
            Offer::Closed => Some(action),
        };
        self.apart += usize::from(!kind.overflow);
        self.open.insert(kind, window);
        lost
    }

    /// Offer the records of the windows that ended by `now_ms` (every
    /// window, with `all`) to `send`, oldest first; windows without
    /// repeats just close. Once the inbox is full, the rest stay open and
    /// are offered at the next flush. Returns the records that can never
    /// be written and the failures still waiting.
    pub fn flush(&mut self, now_ms: i64, all: bool, mut send: impl FnMut(Action) -> Offer) -> Flushed {
        let mut due: Vec<(Failure, Window)> = self
            .open
            .iter()
            .filter(|(_, w)| all || now_ms >= w.opened_ms.saturating_add(self.window_ms))
            .map(|(k, w)| (k.clone(), *w))
            .collect();
        due.sort_by_key(|(_, w)| (w.first_ms, w.opened_ms));
        let mut done = Flushed::default();
        let mut full = false;
        for (kind, w) in due {
            if w.count > 0 {
                let action = kind.action(w.count, w.first_ms, w.last_ms);
                match if full { Offer::Full } else { send(action.clone()) } {
                    Offer::Queued => {}
                    Offer::Full => {
                        full = true;
                        done.waiting += w.count;
                        continue;
                    }
                    Offer::Closed => done.lost.push(action),
                }
            }
            self.open.remove(&kind);
            self.apart -= usize::from(!kind.overflow);
        }
        done
    }

    /// Failures counted but not recorded yet.
    #[cfg(test)]
    pub fn pending(&self) -> u64 {
        self.open.values().map(|w| w.count).sum()
    }

    /// Kinds with an open window.
    #[cfg(test)]
    pub fn kinds(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests;
