//! The daemon's bus: the inbox of commands the API sends to the daemon loop
//! (which alone owns the detector, signals and store writes), and the live
//! feeds of sequenced anomalies and signal changes that streams follow.

use std::sync::Arc;

use tokio::sync::{broadcast, oneshot};

use telltale_core::detect::Anomaly;
use telltale_core::profile::{Observation, Profile};
use telltale_core::signal::SignalChange;
use telltale_core::status::ProfileStatus;

/// How many commands may wait in the daemon's inbox.
pub const INBOX: usize = 64;

/// A live anomaly with its sequence number.
pub type Sequenced = Arc<(u64, Anomaly)>;

/// A live signal change with its sequence number.
pub type SequencedChange = Arc<(u64, SignalChange)>;

/// Requests from the API to the daemon loop (which owns the detector).
#[derive(Debug)]
pub enum Command {
    /// Learning status of every profile (or one).
    Status {
        /// Only this image.
        image: Option<String>,
        /// Answer.
        reply: oneshot::Sender<Vec<ProfileStatus>>,
    },
    /// Where profiles live (local or the fleet's etcd, and its link).
    ProfileStore {
        /// Answer.
        reply: oneshot::Sender<telltale_core::status::StoreStatus>,
    },
    /// A copy of one profile with its status.
    Profile {
        /// Short image name.
        image: String,
        /// Answer (None: no such profile).
        reply: oneshot::Sender<Option<(Profile, ProfileStatus)>>,
    },
    /// Append to the audit trail.
    Audit(telltale_core::audit::Action),
    /// Create (empty id) or replace a notification rule.
    SaveRule {
        /// The rule.
        rule: telltale_core::notify::Rule,
        /// Who asked.
        principal: String,
        /// Answer: the saved rule, or None when replacing an unknown id.
        reply: oneshot::Sender<Option<telltale_core::notify::Rule>>,
    },
    /// Delete a rule.
    DeleteRule {
        /// Its id.
        id: String,
        /// Who asked.
        principal: String,
        /// Answer: whether it existed.
        reply: oneshot::Sender<bool>,
    },
    /// Create a suppression rule.
    SaveSuppression {
        /// The rule (its id is given here).
        rule: telltale_core::suppress::Suppression,
        /// Who asked.
        principal: String,
        /// Answer: the saved rule.
        reply: oneshot::Sender<telltale_core::suppress::Suppression>,
    },
    /// Delete a suppression rule.
    DeleteSuppression {
        /// Its id.
        id: String,
        /// Who asked.
        principal: String,
        /// Answer: whether it existed.
        reply: oneshot::Sender<bool>,
    },
    /// Every suppression rule.
    Suppressions {
        /// Answer.
        reply: oneshot::Sender<Vec<telltale_core::suppress::Suppression>>,
    },
    /// Every rule.
    Rules {
        /// Answer.
        reply: oneshot::Sender<Vec<telltale_core::notify::Rule>>,
    },
    /// Signals matching a query, newest first.
    Signals {
        /// The parsed query.
        query: telltale_core::query::Query,
        /// Answer.
        reply: oneshot::Sender<Vec<telltale_core::signal::Signal>>,
    },
    /// One signal.
    Signal {
        /// Its id.
        id: String,
        /// Answer.
        reply: oneshot::Sender<Option<telltale_core::signal::Signal>>,
    },
    /// Triage a signal.
    UpdateSignal {
        /// Its id.
        id: String,
        /// New status.
        status: Option<telltale_core::signal::Status>,
        /// New assignee.
        assignee: Option<String>,
        /// Mark benign: (anomaly ids, empty = all).
        benign: Option<Vec<String>>,
        /// Who asked.
        principal: String,
        /// Answer: the signal after, behaviours added.
        reply: oneshot::Sender<Result<(telltale_core::signal::Signal, u32), telltale_core::signal::UpdateError>>,
    },
    /// Add behaviours to a profile.
    Add {
        /// Short image name.
        image: String,
        /// What to add.
        observations: Vec<Observation>,
        /// Who asked.
        principal: String,
        /// Answer: (added, already known), or None for an unknown profile.
        reply: oneshot::Sender<Option<(u32, u32)>>,
    },
}

/// The live feeds: what the daemon publishes after each committed batch.
/// Their capacity is how far a stream client may fall behind before it is
/// told it lagged.
#[derive(Debug, Clone)]
pub struct Feeds {
    /// Anomalies, in sequence order.
    pub anomalies: broadcast::Sender<Sequenced>,
    /// Signal changes, in sequence order.
    pub signals: broadcast::Sender<SequencedChange>,
}

impl Feeds {
    /// Feeds holding up to `capacity` items for a slow client (at least 1).
    pub fn new(capacity: usize) -> Self {
        let (anomalies, _) = broadcast::channel(capacity.max(1));
        let (signals, _) = broadcast::channel(capacity.max(1));
        Self { anomalies, signals }
    }
}
