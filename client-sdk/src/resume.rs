//! Resumable streams: reconnect with backoff and continue after the last
//! sequence number, including after a "lagged" notice, so nothing is missed
//! or repeated. Shared by the anomaly and the signal feeds.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use crate::types::{AnomalyStreamItem, Lagged, SequencedAnomaly, SignalChange, SignalStreamItem};
use crate::ClientError;

/// One item of a raw stream, as the resuming loop sees it.
pub(crate) enum Step<T> {
    /// A sequenced item.
    Item(u64, T),
    /// The server dropped us; resume after `resume_after`.
    Lagged(Lagged),
}

/// A raw stream item that is either a sequenced item or a lag notice.
pub(crate) trait Resumable: Send + 'static {
    /// What the resumed stream yields.
    type Item: Send + 'static;
    /// Split into the loop's view.
    fn step(self) -> Step<Self::Item>;
}

impl Resumable for AnomalyStreamItem {
    type Item = SequencedAnomaly;

    fn step(self) -> Step<SequencedAnomaly> {
        match self {
            AnomalyStreamItem::Anomaly(a) => Step::Item(a.sequence, a),
            AnomalyStreamItem::Lagged(l) => Step::Lagged(l),
        }
    }
}

impl Resumable for SignalStreamItem {
    type Item = SignalChange;

    fn step(self) -> Step<SignalChange> {
        match self {
            SignalStreamItem::Change(c) => Step::Item(c.sequence, c),
            SignalStreamItem::Lagged(l) => Step::Lagged(l),
        }
    }
}

/// A boxed stream of raw items.
pub(crate) type Raw<I> = Pin<Box<dyn Stream<Item = Result<I, ClientError>> + Send>>;

/// A future opening one raw stream.
pub(crate) type Opening<I> = Pin<Box<dyn Future<Output = Result<Raw<I>, ClientError>> + Send>>;

/// Whether retrying could fix a failed call.
pub(crate) fn retryable(code: tonic::Code) -> bool {
    !matches!(
        code,
        tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
            | tonic::Code::InvalidArgument
            | tonic::Code::NotFound
            | tonic::Code::Unimplemented
    )
}

/// Every item after `after_sequence`, then live ones, forever: `open(after)`
/// starts one raw stream; broken streams are reopened (with backoff) after
/// the last item delivered. Errors retrying cannot fix end the stream; an
/// item the server sent but this client cannot read is passed on as an
/// error and the stream goes on.
pub(crate) fn resume<I: Resumable>(
    after_sequence: u64,
    mut open: impl FnMut(u64) -> Opening<I> + Send + 'static,
) -> ReceiverStream<Result<I::Item, ClientError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(async move {
        let mut last = after_sequence;
        let mut backoff = Duration::from_millis(100);
        loop {
            match open(last).await {
                Ok(mut stream) => {
                    backoff = Duration::from_millis(100);
                    while let Some(item) = stream.next().await {
                        match item.map(Resumable::step) {
                            Ok(Step::Item(sequence, item)) => {
                                if sequence <= last {
                                    continue;
                                }
                                last = sequence;
                                if tx.send(Ok(item)).await.is_err() {
                                    return;
                                }
                            }
                            Ok(Step::Lagged(l)) => {
                                tracing::debug!(
                                    skipped = l.skipped,
                                    resume_after = l.resume_after,
                                    "Lagged; resuming."
                                );
                                last = last.min(l.resume_after);
                                break;
                            }
                            Err(ClientError::Status(status)) => {
                                tracing::debug!(%status, "Stream broke; reconnecting.");
                                break;
                            }
                            Err(other) => {
                                if tx.send(Err(other)).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
                Err(ClientError::Status(s)) if !retryable(s.code()) => {
                    let _ = tx.send(Err(ClientError::Status(s))).await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "Stream unavailable; retrying.");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}
