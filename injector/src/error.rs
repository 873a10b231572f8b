//! Error types: [`InjectError`] for the server, [`Rejection`] for a pod the
//! webhook refuses to admit.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why `telltale-injector` could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// A TLS file could not be read.
    #[error("reading {flag} {}", path.display())]
    ReadFile {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file is not valid PEM or holds no item of the expected kind.
    #[error("{flag} {}", path.display())]
    Pem {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate and key do not make a TLS server configuration.
    #[error("--tls-cert and --tls-key do not form a usable TLS configuration")]
    Tls(#[source] rustls::Error),
    /// A flag has a value the webhook cannot use.
    #[error("{flag} {value:?}: {reason}")]
    InvalidFlag {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The listen address could not be bound.
    #[error("listening on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Installing the signal handlers failed.
    #[error("installing the SIGTERM handler")]
    Signal(#[source] std::io::Error),
}

/// Why a pod that opted in cannot be injected (the API server rejects it
/// with this message).
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// An annotation has a value the injector cannot use.
    #[error("annotation `{key}` = {value:?}: {reason}")]
    InvalidAnnotation {
        /// The annotation key.
        key: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two annotations contradict each other.
    #[error("annotation `{key}` ({value}) is larger than `{other_key}` ({other_value})")]
    Contradiction {
        /// The annotation (or default) that should be the smaller one.
        key: &'static str,
        /// Its value.
        value: String,
        /// The annotation (or default) it exceeds.
        other_key: &'static str,
        /// That one's value.
        other_value: String,
    },
    /// A container the injector did not add is named like the sidecar.
    #[error(
        "the pod already has a container named `telltale` and no `telltale.dev/injected` annotation: \
         rename that container or set the annotation `telltale.dev/inject: \"false\"`"
    )]
    ForeignContainer,
    /// The pod's init containers already use the sidecar's name.
    #[error("the pod has an init container named `telltale`: rename it or set `telltale.dev/inject: \"false\"`")]
    ForeignInitContainer,
    /// The admitted object does not decode as a Pod.
    #[error("cannot decode the admitted object as a Pod")]
    UndecodablePod(#[source] serde_json::Error),
    /// A CREATE request for a Pod came without the object.
    #[error("the AdmissionReview request for a Pod has no `object`")]
    NoObject,
}

/// `e` and its sources, joined by `: ` (for messages that leave the process).
pub(crate) use telltale_core::error_chain as chain;
