//! Resumable streams. A client names the last sequence number it has; it
//! gets the stored items after it (read from the store in pages), then the
//! live ones the daemon publishes, each once and in sequence order (live
//! items already sent from the store are skipped), until the daemon closes
//! or the client leaves. The live feed is subscribed before the store is
//! read, so nothing committed in between is missed. A client that falls
//! further behind than the feed holds gets a `Lagged` item saying where to
//! resume, and the stream ends: the daemon never waits for a client.

use std::path::PathBuf;
use std::sync::Arc;

use telltale_proto::v1 as pb;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::error::CallError;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics::Metrics;

/// Items queued between a stream's forwarding task and the transport.
/// Falling behind is measured on the live feed (`api.stream_buffer`
/// items), never here.
pub(super) const CLIENT_QUEUE: usize = 32;

/// Stored items read at a time.
pub(super) const PAGE: usize = 500;

/// Reads up to `limit` stored items with a sequence number above `after`,
/// in order (e.g. [`Store::anomalies_after`]).
pub(super) type ReadAfter<T> = fn(&Store, u64, usize) -> Result<Vec<(u64, T)>, StoreError>;

/// The stored part of a stream: pages read from the store in a data
/// directory, opened read-only on the first page and closed with the
/// backlog.
pub(super) struct Backlog<T> {
    dir: PathBuf,
    read: ReadAfter<T>,
    page: usize,
    store: Option<Store>,
}

impl<T> Backlog<T> {
    /// Items of the store in `dir`, read with `read`.
    pub(super) fn new(dir: PathBuf, read: ReadAfter<T>) -> Self {
        Self { dir, read, page: PAGE, store: None }
    }

    /// Read `n` items at a time (at least 1).
    #[cfg(test)]
    pub(super) fn page_size(mut self, n: usize) -> Self {
        self.page = n.max(1);
        self
    }

    /// The next page after `after` (blocking).
    fn next(&mut self, after: u64) -> Result<Vec<(u64, T)>, StoreError> {
        let store = match self.store.take() {
            Some(s) => s,
            None => Store::open_read_only(&self.dir)?,
        };
        let page = (self.read)(&store, after, self.page);
        self.store = Some(store);
        page
    }
}

/// One stream: where its items come from, which ones the client asked
/// for, and how they look on the wire.
pub(super) struct Feed<T, P> {
    /// Live items, in sequence order (subscribed before the store is read).
    pub(super) live: broadcast::Receiver<Arc<(u64, T)>>,
    /// Stored items.
    pub(super) backlog: Backlog<T>,
    /// Whether the client wants an item (its sequence number is consumed either way).
    pub(super) accept: Box<dyn Fn(&T) -> bool + Send>,
    /// An item on the wire.
    pub(super) item: fn(u64, &T) -> P,
    /// The notice that the client fell behind, on the wire.
    pub(super) lagged: fn(pb::Lagged) -> P,
}

/// What every stream shares: the daemon's closing flag and the metrics.
#[derive(Debug, Clone)]
pub(super) struct Streams {
    closing: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

impl Streams {
    /// Streams that end when `closing` turns true (or its sender is gone).
    pub(super) fn new(closing: watch::Receiver<bool>, metrics: Arc<Metrics>) -> Self {
        Self { closing, metrics }
    }

    /// Follow `feed` from the item after sequence number `after`.
    pub(super) fn follow<T, P>(&self, feed: Feed<T, P>, after: u64) -> ReceiverStream<Result<P, Status>>
    where
        T: Send + Sync + 'static,
        P: Send + 'static,
    {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let out = Out { tx, closing: self.closing.clone() };
        tokio::spawn(forward(feed, after, out, self.metrics.clone()));
        ReceiverStream::new(rx)
    }
}

/// Resolves once the daemon says it is closing (or is gone).
async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

/// Where a stream's items go: to the transport, unless the daemon closes
/// or the client leaves first.
struct Out<P> {
    tx: mpsc::Sender<Result<P, Status>>,
    closing: watch::Receiver<bool>,
}

impl<P> Out<P> {
    /// Send one item; false when the stream is over (the client left, or
    /// the daemon is closing: then the client is told, if it has room).
    async fn send(&mut self, item: Result<P, Status>) -> bool {
        tokio::select! {
            biased;
            () = closed(&mut self.closing) => {
                self.closing_notice();
                false
            }
            sent = self.tx.send(item) => sent.is_ok(),
        }
    }

    /// End the stream with `e`.
    async fn fail(&mut self, e: CallError) {
        let _ = self.send(Err(e.into())).await;
    }

    fn closing_notice(&self) {
        let _ = self.tx.try_send(Err(CallError::ShuttingDown.into()));
    }
}

/// The forwarding task of one stream.
async fn forward<T, P>(feed: Feed<T, P>, after: u64, mut out: Out<P>, metrics: Arc<Metrics>)
where
    T: Send + Sync + 'static,
    P: Send + 'static,
{
    let _client = metrics.stream_client();
    let Feed { mut live, mut backlog, accept, item, lagged } = feed;
    let mut last = after;
    loop {
        let read = tokio::task::spawn_blocking(move || {
            let page = backlog.next(last);
            (backlog, page)
        })
        .await;
        let page = match read {
            Ok((b, Ok(page))) => {
                backlog = b;
                page
            }
            Ok((_, Err(e))) => return out.fail(e.into()).await,
            Err(e) => return out.fail(e.into()).await,
        };
        let full = page.len() >= backlog.page;
        for (seq, x) in page {
            last = seq;
            if accept(&x) && !out.send(Ok(item(seq, &x))).await {
                return;
            }
        }
        if !full {
            break;
        }
    }
    drop(backlog);
    loop {
        let received = tokio::select! {
            biased;
            () = closed(&mut out.closing) => return out.closing_notice(),
            () = out.tx.closed() => return,
            r = live.recv() => r,
        };
        match received {
            Ok(entry) => {
                let (seq, x) = &*entry;
                if *seq <= last {
                    continue;
                }
                last = *seq;
                if accept(x) && !out.send(Ok(item(*seq, x))).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                metrics.stream_lagged(skipped);
                let message =
                    format!("lagged: {skipped} items skipped; reconnect with after_sequence={last} to get them");
                let _ = out.send(Ok(lagged(pb::Lagged { skipped, resume_after: last, message }))).await;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return out.fail(CallError::ShuttingDown).await,
        }
    }
}

#[cfg(test)]
mod tests;
