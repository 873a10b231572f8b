//! Typed updates from the fleet, for the daemon to apply to its detector
//! and the kernel `known` map.

use std::pin::Pin;
use std::task::{Context, Poll};

use telltale_core::profile::EventType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::Stream;

use crate::clock::FleetClock;
use crate::profile::StoredBehaviour;

/// Why every profile was read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// The first read after the `Fleet` was created.
    Start,
    /// The revision to resume the watch from was compacted away.
    Compacted,
}

/// Something another replica (or an operator) changed in the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// A behaviour new to this replica's view of the fleet.
    Behaviour {
        /// Short image name.
        image: String,
        /// The behaviour.
        behaviour: StoredBehaviour,
        /// etcd revision of the change.
        revision: i64,
    },
    /// A clock changed (last new behaviour, or a transition): adopt it.
    Clock {
        /// Short image name.
        image: String,
        /// Event type.
        event_type: EventType,
        /// The clock as stored.
        clock: FleetClock,
        /// etcd revision of the change.
        revision: i64,
    },
    /// Every profile was read again at `revision`; the updates sent before
    /// this one covered what the replica had not seen (`missed` keys), so
    /// there is no gap.
    Resynced {
        /// Why.
        reason: ResyncReason,
        /// The revision read.
        revision: i64,
        /// Keys new or changed since the replica's last view.
        missed: u64,
    },
}

/// The stream of [`Update`]s of one subscriber. Nothing is dropped for a
/// slow reader (the channel is unbounded, at most one update per fleet key
/// change), so keep reading it.
#[derive(Debug)]
pub struct Updates {
    inner: UnboundedReceiverStream<Update>,
}

impl Updates {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<Update>) -> Self {
        Self { inner: UnboundedReceiverStream::new(rx) }
    }

    /// The next update; None once the fleet client is closed.
    pub async fn recv(&mut self) -> Option<Update> {
        self.inner.as_mut().recv().await
    }

    /// The next update if one is waiting now (to apply a burst as one batch).
    pub fn try_recv(&mut self) -> Option<Update> {
        self.inner.as_mut().try_recv().ok()
    }
}

impl Stream for Updates {
    type Item = Update;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}
