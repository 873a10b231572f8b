//! The local admin channel: a Unix socket (mode `0600`, in the data
//! directory by default) served by the same service, limits and audit as
//! TCP. Its callers are identified by their process (`SO_PEERCRED`), and a
//! process in the watched cgroup or below it is refused whatever it sends:
//! what telltale watches never administers it. Where a process is comes
//! from `/proc/<pid>/cgroup`, judged by [`peer::judge`] against the
//! daemon's [`Placement`], found once at start.

mod peer;

use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tonic::transport::server::Connected;

use super::server::Accept;
use super::ApiError;
use crate::workload::cgroup::cgroup2_mount;
pub use peer::{Placement, Verdict};
use telltale_core::workload::pod::ProcCgroup;

/// Mode of the socket file: the daemon's user only.
const SOCKET_MODE: u32 = 0o600;

/// Mode of a directory created for the socket.
const SOCKET_DIR_MODE: u32 = 0o700;

/// How long the connection of a caller that may not administer is kept.
pub const REFUSED_LIFETIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest `/proc/<pid>/cgroup` read.
const PROC_CGROUP_MAX: u64 = 64 * 1024;

/// The local admin channel to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalChannel {
    /// The socket's path.
    pub socket: PathBuf,
    /// The cgroup the daemon watches (none: replays, tests): no process in
    /// it or below it may use the socket.
    pub watched: Option<PathBuf>,
}

/// Whom the socket admits, decided once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admits {
    /// Every caller: nothing is watched.
    Everyone,
    /// Callers outside the watched cgroup (or in the daemon's own
    /// container below it).
    Outside(Placement),
    /// No one: the daemon could not find where it stands in the cgroup
    /// hierarchy, so it cannot tell a watched caller from another.
    NoOne {
        /// Why.
        why: String,
    },
}

impl Admits {
    /// Where the daemon stands, for a socket that refuses `watched`'s
    /// processes.
    pub fn resolve(watched: Option<&Path>) -> Admits {
        let Some(watched) = watched else { return Admits::Everyone };
        match placement(watched) {
            Ok(p) => Admits::Outside(p),
            Err(why) => {
                tracing::error!(%why, watched = %watched.display(), "The local admin socket cannot tell watched callers from others: it refuses every caller.");
                Admits::NoOne { why }
            }
        }
    }

    /// The verdict on process `pid` (`None`: the kernel did not say, e.g.
    /// a process of another PID namespace).
    pub fn verdict(&self, pid: Option<u32>) -> Verdict {
        match self {
            Admits::Everyone => Verdict::Outside { cgroup: PathBuf::new() },
            Admits::NoOne { why } => Verdict::Unknown { why: why.clone() },
            Admits::Outside(placement) => {
                let Some(pid) = pid.filter(|p| *p > 0) else {
                    return Verdict::Unknown { why: "the kernel gave no process id for it".into() };
                };
                match read_capped(&PathBuf::from(format!("/proc/{pid}/cgroup"))) {
                    Ok(text) => peer::judge(&text, placement),
                    Err(e) => Verdict::Unknown { why: format!("reading /proc/{pid}/cgroup: {e}") },
                }
            }
        }
    }
}

fn read_capped(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?.take(PROC_CGROUP_MAX).read_to_string(&mut text)?;
    Ok(text)
}

/// The own cgroup view path of this process (`/proc/self/cgroup`).
fn own_view() -> Result<String, String> {
    let text = read_capped(Path::new("/proc/self/cgroup")).map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
    ProcCgroup::parse(&text)
        .map_err(|e| format!("parsing /proc/self/cgroup: {e}"))?
        .unified
        .ok_or_else(|| "this process has no cgroup v2 path".to_owned())
}

/// Whether `dir`'s `cgroup.procs` lists `pid`.
fn lists(dir: &Path, pid: u32) -> bool {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .is_ok_and(|t| t.lines().any(|l| l.trim().parse::<u32>().ok() == Some(pid)))
}

/// The directory of `root`'s subtree whose `cgroup.procs` lists `pid`.
fn find_member(root: &Path, pid: u32) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        if lists(&dir, pid) {
            return Some(dir);
        }
        seen += 1;
        if seen > 10_000 {
            return None;
        }
        if let Ok(rd) = std::fs::read_dir(&dir) {
            stack.extend(rd.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
    }
    None
}

/// Where this process stands: the root of its cgroup namespace in the
/// mounted hierarchy and its own cgroup. In the host's namespace its
/// `/proc/self/cgroup` path is found under the mount; in a namespace of
/// its own (a pod's sidecar), its cgroup is found among the watched
/// cgroup's by its process id.
fn placement(watched: &Path) -> Result<Placement, String> {
    let mount = cgroup2_mount().map_err(|e| e.to_string())?;
    let watched = watched.canonicalize().map_err(|e| format!("resolving {}: {e}", watched.display()))?;
    let view = own_view()?;
    let me = std::process::id();
    let own_dir = match peer::resolve(&view, &mount, &mount).filter(|d| lists(d, me)) {
        Some(dir) => dir,
        None => find_member(&watched, me).ok_or_else(|| {
            format!("its own cgroup {view:?} is neither under {} nor among the watched cgroup's", mount.display())
        })?,
    };
    let ns_root = peer::ns_root_of(&own_dir, &view, &mount)
        .ok_or_else(|| format!("its own cgroup {view:?} does not end its directory {}", own_dir.display()))?;
    let own = (own_dir != watched && peer::within(&own_dir, &watched)).then_some(own_dir);
    Ok(Placement { mount, ns_root, watched, own })
}

/// Who is on the other end of a local connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPeer {
    /// Its process id, if the kernel gave one.
    pub pid: Option<u32>,
    /// Its user id.
    pub uid: u32,
    /// Whether it may use the API.
    pub verdict: Verdict,
}

impl LocalPeer {
    /// Its name in the audit trail: `uid:<uid> pid:<pid>`.
    pub fn principal(&self) -> String {
        match self.pid {
            Some(pid) => format!("uid:{} pid:{pid}", self.uid),
            None => format!("uid:{}", self.uid),
        }
    }
}

/// The socket, listening; its file is removed when it is dropped.
#[derive(Debug)]
pub(crate) struct LocalListener {
    unix: UnixListener,
    path: PathBuf,
    admits: Arc<Admits>,
}

impl LocalListener {
    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LocalListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listen on `channel.socket`: its directory is created `0700` if missing,
/// a stale socket file is replaced (one a live server answers on is not),
/// the socket file is `0600`.
pub(crate) async fn bind(channel: &LocalChannel) -> Result<LocalListener, ApiError> {
    let path = &channel.socket;
    let err = |source: io::Error| ApiError::Socket { path: path.clone(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(SOCKET_DIR_MODE).create(dir).map_err(err)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another server answers on this socket (a daemon with the same data directory?)",
                )));
            }
            std::fs::remove_file(path).map_err(err)?;
        }
        Ok(_) => {
            return Err(err(io::Error::new(io::ErrorKind::AlreadyExists, "a file that is not a socket is in the way")))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let unix = UnixListener::bind(path).map_err(err)?;
    // From here on, a failure removes the file again (`Drop`).
    let mut listener = LocalListener { unix, path: path.clone(), admits: Arc::new(Admits::Everyone) };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(err)?;
    let watched = channel.watched.clone();
    let admits = tokio::task::spawn_blocking(move || Admits::resolve(watched.as_deref()))
        .await
        .unwrap_or_else(|e| Admits::NoOne { why: format!("finding the daemon's cgroup failed: {e}") });
    listener.admits = Arc::new(admits);
    Ok(listener)
}

impl Accept for LocalListener {
    type Io = LocalStream;

    async fn accept_one(&self) -> io::Result<LocalStream> {
        let (io, _addr) = self.unix.accept().await?;
        let cred = io.peer_cred()?;
        let pid = cred.pid().and_then(|p| u32::try_from(p).ok());
        let admits = self.admits.clone();
        // A few small procfs reads, off the runtime's threads.
        let verdict = tokio::task::spawn_blocking(move || admits.verdict(pid))
            .await
            .unwrap_or_else(|e| Verdict::Unknown { why: format!("judging the caller failed: {e}") });
        let peer = LocalPeer { pid, uid: cred.uid(), verdict };
        // Its calls are refused and audited (counted, bounded): a log line
        // per connection would let it flood the log.
        let cut = (!peer.verdict.admits()).then(|| {
            tracing::debug!(principal = %peer.principal(), verdict = ?peer.verdict, "Local admin socket: a caller that may not administer connected.");
            Box::pin(tokio::time::sleep(REFUSED_LIFETIME))
        });
        Ok(LocalStream { io, peer, cut })
    }
}

/// An accepted local connection and who is on its other end. The
/// connection of a caller that may not administer is cut after
/// [`REFUSED_LIFETIME`]: long enough to be told why, too short to hold
/// the socket's connection places.
#[derive(Debug)]
pub(crate) struct LocalStream {
    io: UnixStream,
    peer: LocalPeer,
    cut: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for LocalStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(cut) = self.cut.as_mut() {
            if cut.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "a caller that may not administer is not kept",
                )));
            }
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for LocalStream {
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

impl Connected for LocalStream {
    type ConnectInfo = LocalPeer;

    fn connect_info(&self) -> LocalPeer {
        self.peer.clone()
    }
}

#[cfg(test)]
mod tests;
