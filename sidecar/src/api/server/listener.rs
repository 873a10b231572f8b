//! Accepting connections without letting idle ones pile up: at most
//! [`Limits::max_connections`] are held at once (more wait in the kernel's
//! accept queue, costing the daemon nothing), a new connection must send
//! its first bytes within [`Limits::handshake_timeout`], and one whose
//! peer has sent nothing for [`Limits::idle_timeout`] is closed. Live
//! clients are never idle that long: they answer the server's HTTP/2
//! keepalive pings.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tonic::transport::server::Connected;

use super::Limits;

/// Bytes a new connection must send before its handshake allowance
/// ends: the HTTP/2 client preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`);
/// a TLS ClientHello is longer.
pub(super) const HANDSHAKE_BYTES: usize = 24;

/// Pause after a failed `accept` (e.g. out of file descriptors) before
/// trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// An accepted connection: counts against the connection cap until
/// dropped, and fails its reads (so the server closes it) when the peer
/// is silent past its deadline.
pub(super) struct Conn<IO> {
    io: IO,
    _permit: OwnedSemaphorePermit,
    deadline: Pin<Box<Sleep>>,
    received: usize,
    idle: Duration,
}

impl<IO> Conn<IO> {
    /// `io`, held under `permit`, with the deadlines of `limits`.
    pub(super) fn new(io: IO, permit: OwnedSemaphorePermit, limits: &Limits) -> Self {
        Self {
            io,
            _permit: permit,
            deadline: Box::pin(tokio::time::sleep(limits.handshake_timeout)),
            received: 0,
            idle: limits.idle_timeout,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Conn<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    this.received = this.received.saturating_add(n);
                    // Until the handshake bytes are in, the first deadline
                    // stands (a byte at a time buys nothing).
                    if this.received >= HANDSHAKE_BYTES {
                        this.deadline.as_mut().reset(Instant::now() + this.idle);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                ready!(this.deadline.as_mut().poll(cx));
                let what = if this.received < HANDSHAKE_BYTES { "handshake" } else { "idle connection" };
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))))
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Conn<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: Connected> Connected for Conn<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// A warning said at most once per [`WARN_EVERY`].
#[derive(Debug, Default)]
struct Warning(Mutex<Option<Instant>>);

/// How often the "connection limit reached" warning may repeat.
const WARN_EVERY: Duration = Duration::from_secs(60);

impl Warning {
    fn should_say(&self) -> bool {
        let mut last = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// A listening socket: TCP, or the local admin socket.
pub(crate) trait Accept: Send + Sync + 'static {
    /// An accepted connection.
    type Io: Send + 'static;

    /// The next connection.
    fn accept_one(&self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Accept for TcpListener {
    type Io = TcpStream;

    async fn accept_one(&self) -> io::Result<TcpStream> {
        let (tcp, _peer) = self.accept().await?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }
}

type Accepting<IO> = Pin<Box<dyn Future<Output = Conn<IO>> + Send>>;

/// The connections the server gets: accepted while under the cap, never
/// an error (a failed `accept` is logged and retried).
pub(super) struct Incoming<L: Accept> {
    listener: Arc<L>,
    permits: Arc<Semaphore>,
    limits: Limits,
    full: Arc<Warning>,
    next: Option<Accepting<L::Io>>,
}

impl<L: Accept> Incoming<L> {
    /// Connections of `listener` under `limits`.
    pub(super) fn new(listener: L, limits: Limits) -> Self {
        let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        Self { listener: Arc::new(listener), permits, limits, full: Arc::new(Warning::default()), next: None }
    }
}

impl<L: Accept> Stream for Incoming<L> {
    type Item = io::Result<Conn<L::Io>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let next = this.next.get_or_insert_with(|| {
            Box::pin(accept(this.listener.clone(), this.permits.clone(), this.limits, this.full.clone()))
        });
        let conn = ready!(next.as_mut().poll(cx));
        this.next = None;
        Poll::Ready(Some(Ok(conn)))
    }
}

/// The next connection, once one of the cap's places is free.
async fn accept<L: Accept>(
    listener: Arc<L>,
    permits: Arc<Semaphore>,
    limits: Limits,
    full: Arc<Warning>,
) -> Conn<L::Io> {
    let permit = match permits.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            if full.should_say() {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "API connection limit reached: new connections wait until one closes."
                );
            }
            match permits.acquire_owned().await {
                Ok(p) => p,
                // The semaphore is never closed.
                Err(_) => return std::future::pending().await,
            }
        }
    };
    loop {
        match listener.accept_one().await {
            Ok(io) => return Conn::new(io, permit, &limits),
            // The peer gave up before we accepted: nothing to wait for.
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset) => {
                tracing::debug!(error = %e, "API connection gone before it was accepted.");
            }
            Err(e) => {
                tracing::warn!(error = %e, "Accepting an API connection failed.");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
