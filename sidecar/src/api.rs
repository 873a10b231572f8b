//! The gRPC API (tonic): `telltale.v1.Telltale`, standard health and server
//! reflection (`grpc.reflection.v1` and `v1alpha`). Calls are authenticated
//! by bearer token and authorized by role; profile reads and writes go to
//! the daemon loop over its inbox ([`crate::bus::Command`]), so the detector
//! has one owner; streams read the store's backlog, then follow the live
//! [`crate::bus::Feeds`].
//!
//! - `auth`: principals, tokens, the interceptor and the role each call needs;
//! - `error`: why a call failed, the one place failures become gRPC statuses,
//!   and the bound on input echoed back in messages;
//! - `stream`: the resumable stream engine (backlog, then live, each item once);
//! - `service`: the `Telltale` service itself;
//! - `server`: listening, connection limits, TLS, health and reflection;
//! - `local`: the local admin socket and the check of its callers' cgroups;
//! - `convert`: domain ↔ proto, private to the API.

mod auth;
mod convert;
mod error;
mod local;
mod server;
mod service;
mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use auth::{
    token_sha256, Auth, AuthError, Call, FailureAudit, Principal, FAILURE_KINDS, FAILURE_WINDOW, MTLS_PRINCIPAL,
};
pub use error::{echo, CallError, ECHO_MAX, MESSAGE_MAX};
pub use local::{Admits, LocalChannel, LocalPeer, Placement, Verdict};
pub use server::{
    bind, serve, Limits, Listener, HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT,
    MAX_CONNECTIONS,
};
pub use service::Api;

/// Why the API server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// TLS files could not be read.
    #[error("reading TLS file {path}")]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The server failed (bind, TLS configuration...).
    #[error("gRPC server on {addr}")]
    Serve {
        /// Listen address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// Reflection could not be built.
    #[error("building server reflection")]
    Reflection(#[source] tonic_reflection::server::Error),
    /// The local admin socket could not be set up.
    #[error("local admin socket {path}")]
    Socket {
        /// The socket's path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The server of the local admin socket failed.
    #[error("gRPC server on {path}")]
    ServeSocket {
        /// The socket's path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// Binding the listener failed.
    #[error("listening on {addr}")]
    Bind {
        /// Listen address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}
