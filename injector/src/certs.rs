//! The serving certificate, re-read when its files change.
//!
//! cert-manager renews certificates and `gen-certs.sh` can be run again;
//! the kubelet then swaps the Secret's files in place. A webhook that kept
//! serving the old certificate after it expired would fail every review,
//! and with `failurePolicy: Ignore` pods would start without the sidecar.
//! So at most every `interval` a TLS handshake looks at the files' change
//! stamps and loads them again when they differ; files that do not load
//! (half-written, mismatched) leave the current certificate in place and
//! are logged.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

use crate::InjectError;

/// Identity of the files' current contents: (device, inode, size, mtime ns) of each.
type Stamp = [(u64, u64, u64, i64); 2];

fn stamp(cert: &Path, key: &Path) -> Option<Stamp> {
    let one = |p: &Path| {
        std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino(), m.size(), m.mtime() * 1_000_000_000 + m.mtime_nsec()))
    };
    Some([one(cert)?, one(key)?])
}

/// Load and check a certificate chain and its key.
pub fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, InjectError> {
    let read = |flag, path: &Path| {
        std::fs::read(path).map_err(|source| InjectError::ReadFile { flag, path: path.to_owned(), source })
    };
    let pem = |flag, path: PathBuf| move |source| InjectError::Pem { flag, path, source };
    let cert_pem = read("--tls-cert", cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem("--tls-cert", cert.to_owned()))?;
    if chain.is_empty() {
        return Err(pem("--tls-cert", cert.to_owned())(rustls_pki_types::pem::Error::NoItemsFound));
    }
    let key_pem = read("--tls-key", key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(pem("--tls-key", key.to_owned()))?;
    CertifiedKey::from_der(chain, key, provider).map_err(InjectError::Tls)
}

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    stamp: Option<Stamp>,
    checked: Instant,
}

/// A certificate resolver that follows its files.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    interval: Duration,
    provider: Arc<CryptoProvider>,
    current: Mutex<Current>,
}

impl ReloadingCert {
    /// Load the files now (an error here stops start-up).
    pub fn new(
        cert: &Path,
        key: &Path,
        interval: Duration,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, InjectError> {
        let stamp = stamp(cert, key);
        let loaded = load(cert, key, &provider)?;
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            interval,
            provider,
            current: Mutex::new(Current { key: Arc::new(loaded), stamp, checked: Instant::now() }),
        })
    }

    /// The certificate to serve, re-read first if the files changed.
    pub fn get(&self) -> Arc<CertifiedKey> {
        let mut c = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if c.checked.elapsed() >= self.interval {
            c.checked = Instant::now();
            let now = stamp(&self.cert, &self.key);
            if now.is_some() && now != c.stamp {
                match load(&self.cert, &self.key, &self.provider) {
                    Ok(k) => {
                        info!(cert = %self.cert.display(), "Serving certificate changed on disk: loaded.");
                        c.key = Arc::new(k);
                        c.stamp = now;
                    }
                    // Half-written or mismatched: keep serving the old one, try again next time.
                    Err(e) => warn!(
                        error = %crate::error::chain(&e),
                        "Serving certificate changed on disk but does not load; still serving the previous one."
                    ),
                }
            }
        }
        c.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}
