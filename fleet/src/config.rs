//! The etcd backend's configuration (`fleet.etcd.*` in the daemon's
//! configuration), checked before anything connects.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Most behaviours written in one etcd transaction. Each behaviour is one
/// nested create-only transaction; etcd's default `--max-txn-ops` (128)
/// bounds the outer operations plus each nested one's, so 127 is the most a
/// default server accepts.
pub const MAX_BATCH_SIZE: usize = 127;

/// How to reach etcd and where the fleet's keys live.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the etcd members (`http://host:port` or
    /// `https://host:port`, one scheme for all). Not empty.
    pub endpoints: Vec<String>,
    /// Key prefix shared by every telltale key; starts and ends with `/`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The fleet's name under the prefix (`[a-z0-9-]{1,63}`): clusters
    /// sharing one etcd keep separate profiles.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// PEM file of the CA that signed the etcd servers' certificates
    /// (`https://` endpoints; the system roots when absent).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate (mutual TLS); needs `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// etcd user (role-based access); needs `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// Password of `username`.
    #[serde(default)]
    pub password: Option<String>,
    /// Longest wait for a connection to a member.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for one request (read, transaction, status).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// New behaviours are collected this long before one transaction
    /// writes them (unless `batch_size` are waiting).
    #[serde(default = "default_batch_delay", with = "humantime_serde")]
    pub batch_delay: Duration,
    /// Most behaviours in one transaction (1..=127, see [`MAX_BATCH_SIZE`]).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

fn default_prefix() -> String {
    "/telltale/v1/".to_owned()
}
fn default_cluster() -> String {
    "default".to_owned()
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_batch_delay() -> Duration {
    Duration::from_millis(100)
}
fn default_batch_size() -> usize {
    100
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("cluster", &self.cluster)
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("batch_delay", &self.batch_delay)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid etcd setting `{key}`: {reason}")]
pub struct ConfigError {
    /// The key, relative to the etcd section (`endpoints[1]`, `cluster`...).
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

fn bad(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), reason: reason.into() }
}

/// The scheme of a client URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

fn endpoint_scheme(url: &str) -> Result<Scheme, String> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else {
        return Err(format!("{url:?} must start with http:// or https://"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains('/') {
        return Err(format!("{url:?} must be scheme://host:port with no path"));
    }
    let port = authority.rsplit_once(':').map(|(_, p)| p);
    match port {
        Some(p) if p.parse::<u16>().is_ok() => Ok(scheme),
        _ => Err(format!("{url:?} has no port (etcd clients listen on e.g. :2379)")),
    }
}

impl EtcdConfig {
    /// A configuration with the defaults and these endpoints.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: default_prefix(),
            cluster: default_cluster(),
            ca: None,
            cert: None,
            key: None,
            username: None,
            password: None,
            connect_timeout: default_connect_timeout(),
            request_timeout: default_request_timeout(),
            batch_delay: default_batch_delay(),
            batch_size: default_batch_size(),
        }
    }

    /// Refuse values that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(bad("endpoints", "at least one etcd client URL is needed"));
        }
        let mut first = None;
        for (i, e) in self.endpoints.iter().enumerate() {
            let scheme = endpoint_scheme(e).map_err(|r| bad(format!("endpoints[{i}]"), r))?;
            match first {
                None => first = Some(scheme),
                Some(s) if s != scheme => {
                    return Err(bad(format!("endpoints[{i}]"), "all endpoints must use the same scheme"));
                }
                Some(_) => {}
            }
        }
        let tls = first == Some(Scheme::Https);
        if !self.prefix.starts_with('/') || !self.prefix.ends_with('/') {
            return Err(bad("prefix", format!("{:?} must start and end with '/'", self.prefix)));
        }
        if self.prefix.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("prefix", format!("{:?} has a control or space character", self.prefix)));
        }
        if self.cluster.is_empty()
            || self.cluster.len() > 63
            || !self.cluster.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad("cluster", format!("{:?} must match [a-z0-9-]{{1,63}}", self.cluster)));
        }
        match (&self.cert, &self.key) {
            (Some(_), None) => return Err(bad("key", "`cert` is set: its private key is needed too")),
            (None, Some(_)) => return Err(bad("cert", "`key` is set: its certificate is needed too")),
            _ => {}
        }
        for (name, path) in [("ca", &self.ca), ("cert", &self.cert), ("key", &self.key)] {
            if let Some(p) = path {
                if p.as_os_str().is_empty() {
                    return Err(bad(name, "empty path"));
                }
                if !tls {
                    return Err(bad(name, "TLS files are set but the endpoints use http://"));
                }
            }
        }
        match (&self.username, &self.password) {
            (Some(u), Some(_)) if u.is_empty() => return Err(bad("username", "empty user name")),
            (Some(_), None) => return Err(bad("password", "`username` is set: its password is needed too")),
            (None, Some(_)) => return Err(bad("username", "`password` is set without a user name")),
            _ => {}
        }
        for (name, d) in [("connect_timeout", self.connect_timeout), ("request_timeout", self.request_timeout)] {
            if d.is_zero() {
                return Err(bad(name, "must be more than 0"));
            }
        }
        if self.batch_delay > Duration::from_secs(10) {
            return Err(bad("batch_delay", "at most 10s (behaviours would reach other replicas too late)"));
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            return Err(bad("batch_size", format!("must be 1..={MAX_BATCH_SIZE} (etcd's --max-txn-ops is 128)")));
        }
        Ok(())
    }

    /// Do the endpoints use TLS (`https://`)?
    pub fn uses_tls(&self) -> bool {
        self.endpoints.first().is_some_and(|e| e.starts_with("https://"))
    }
}

#[cfg(test)]
mod tests;
