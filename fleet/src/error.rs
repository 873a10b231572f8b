//! Errors of the fleet store.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::keys::ImageNameError;

/// Why a fleet operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A short image name cannot name a profile.
    #[error(transparent)]
    Image(#[from] ImageNameError),
    /// The replica id is empty or too long.
    #[error("replica id {0:?} must be 1 to 253 printable characters")]
    ReplicaId(String),
    /// A TLS file named in the configuration cannot be read.
    #[error("cannot read etcd `{key}` file {path:?}")]
    TlsFile {
        /// Configuration key (`ca`, `cert`, `key`).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The durable queue (SQLite) failed.
    #[error("fleet queue {path:?}: {what}")]
    Queue {
        /// The queue file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// etcd refused or failed a request.
    #[error("etcd {op} failed")]
    Etcd {
        /// The request.
        op: &'static str,
        /// Why.
        #[source]
        source: EtcdFailure,
    },
    /// etcd did not answer in time (`request_timeout`).
    #[error("etcd {op} timed out")]
    Timeout {
        /// The request.
        op: &'static str,
    },
    /// etcd is not reachable now; what needs it cannot be done (behaviours
    /// are queued instead).
    #[error("etcd is unreachable since {since_ms} (ms since the epoch): {reason}")]
    Unavailable {
        /// Since when.
        since_ms: i64,
        /// The last failure.
        reason: String,
    },
    /// A value stored in etcd does not decode.
    #[error("etcd key {key:?} holds a value that does not decode")]
    Decode {
        /// The key.
        key: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A transition was proposed for a type with no fleet clock (nothing
    /// of that profile reached etcd yet).
    #[error("no fleet clock for {image}/{}: nothing of that profile reached etcd yet", event_type.name())]
    NoClock {
        /// Short image name.
        image: String,
        /// Event type.
        event_type: telltale_core::profile::EventType,
    },
    /// A compare-and-swap kept losing to other replicas.
    #[error("etcd key {key:?} changed under {tries} compare-and-swap attempts in a row")]
    Contended {
        /// The key.
        key: String,
        /// Attempts made.
        tries: u32,
    },
    /// etcd answered something the protocol does not allow.
    #[error("unexpected etcd answer: {0}")]
    Protocol(String),
    /// The fleet's background tasks have stopped (the `Fleet` is closing).
    #[error("the fleet client is closed")]
    Closed,
}

/// An etcd client error (its type stays inside this crate).
#[derive(Debug)]
pub struct EtcdFailure(etcd_client::Error);

impl EtcdFailure {
    pub(crate) fn new(e: etcd_client::Error) -> Self {
        Self(e)
    }
}

impl std::fmt::Display for EtcdFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for EtcdFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
