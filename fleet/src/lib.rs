//! Fleet-wide security profiles on etcd: one profile per short image name
//! for every replica of every pod, so a profile keeps learning across
//! rollouts and every replica judges with the same state. The daemon's
//! local SQLite store stays the cache and detection never waits on etcd.
//!
//! ```no_run
//! # async fn demo(changes: Vec<telltale_core::detect::Change>) -> Result<(), telltale_fleet::Error> {
//! use telltale_fleet::{EtcdConfig, Fleet, FleetOptions, NewBehaviour};
//! let cfg = EtcdConfig::new(["http://etcd-0.etcd:2379", "http://etcd-1.etcd:2379"]);
//! let opts = FleetOptions {
//!     replica_id: "shop-7d9f-x2x".into(),
//!     queue_path: "/var/lib/telltale/fleet-queue.db".into(),
//!     learning: Default::default(),
//! };
//! let fleet = Fleet::connect(cfg, opts).await?; // returns at once, even with etcd down
//! let mut updates = fleet.updates(); // subscribe first...
//! let profile = fleet.load("cws-webapp").await?.to_profile(0); // ...then load
//! fleet.publish(&NewBehaviour::learned_from(&changes)).await?; // batched, queued durably
//! # let _ = (profile, updates.recv().await); Ok(()) }
//! ```
//!
//! Decisions (the reasons are in `fleet/DESIGN.md`):
//!
//! - **Grow-only keys.** A behaviour is one key,
//!   `{prefix}{cluster}/profiles/{image}/b/{sha256 of lineage, type, behaviour
//!   key, access bit}` ([`behaviour_hash`]), written by a create-only
//!   transaction (`create_revision == 0`): two replicas adding the same
//!   behaviour at the same moment store it once, different behaviours never
//!   touch the same key, so nothing a replica adds is lost.
//! - **File access modes are one key per bit** ([`split_access`]), not a
//!   merged value updated by CAS: a union of grow-only keys needs no retry
//!   loop and cannot lose a bit to a concurrent writer.
//! - **Lifecycle on fleet time.** Per (image, event type) a clock key
//!   `…/{image}/clock/{type}` holds the learning start (the first
//!   behaviour anywhere; create-only), the latest first-seen time of a new
//!   behaviour anywhere (moved forward only, by CAS on the key's
//!   `mod_revision`) and the state with its time. A transition is the pure
//!   `telltale_core::profile::lifecycle` decision evaluated on the *stored*
//!   clock and written once by CAS; a replica whose proposal loses adopts the
//!   stored state ([`TransitionOutcome`]). A new replica loads `stable`.
//! - **Write cost.** Known behaviour (in the replica's mirror of the fleet,
//!   or already queued) writes nothing. New behaviour is batched: up to
//!   `batch_size` (default 100, at most 127 because of etcd's default
//!   `--max-txn-ops` 128) collected for `batch_delay` (100 ms), written as
//!   one transaction of nested create-only transactions, plus one clock
//!   transaction when something was new. [`Counters::write_txns`] and
//!   [`Counters::keys_written`] measure it.
//! - **Watch with resync.** The replica watches the profiles prefix from its
//!   last revision + 1; after an interruption it resumes there; if etcd
//!   compacted that revision it reads everything again at one revision,
//!   sends what it had not seen and an [`Update::Resynced`], counts it
//!   ([`Counters::resyncs`]) and logs it. Never a silent gap.
//! - **Offline.** [`Fleet::connect`] does not wait for etcd. Every published
//!   behaviour is first committed to a SQLite queue (`synchronous=FULL`) in a
//!   file the caller names and leaves it only once etcd holds it and its
//!   clock, so `kill -9` and outages lose nothing; the queue drains by itself
//!   when etcd returns. [`Fleet::status`] says Connected, Disconnected since
//!   T, or Resyncing.
//! - **Only core types cross the API** (`Observation`, `EventType`, `State`,
//!   `Clock`, `Profile`); etcd's types stay in the private `etcd` module.

mod clock;
mod config;
mod error;
mod etcd;
mod flush;
mod keys;
mod mirror;
mod profile;
mod queue;
mod replica;
mod shared;
mod status;
mod sync;
mod update;

pub use clock::{FleetClock, TransitionOutcome};
pub use config::{ConfigError, EtcdConfig, MAX_BATCH_SIZE};
pub use error::{Error, EtcdFailure};
pub use keys::{behaviour_hash, check_image, split_access, ImageNameError};
pub use profile::{NewBehaviour, ProfileSnapshot, StoredBehaviour};
pub use replica::{ClockTransition, Fleet, FleetOptions, Published};
pub use status::{Counters, Status};
pub use update::{ResyncReason, Update, Updates};
