//! The only module that speaks etcd: connection (TLS, credentials,
//! keep-alive), paged range reads at one revision, batches of conditional
//! writes as one transaction of nested transactions, the watch, and the
//! maintenance status. Everything returned is plain data; `etcd_client`
//! types stay here.

use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType as EtcdEventType, GetOptions, Identity,
    TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};

use crate::config::EtcdConfig;
use crate::error::{Error, EtcdFailure};
use crate::keys::prefix_end;

/// Keys per page of a range read.
const PAGE: i64 = 2_000;
/// Largest message accepted from etcd (a watch catching up on many
/// revisions sends them in one message).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// A key and its value, with its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kv {
    /// Key.
    pub key: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
    /// Revision of its last change.
    pub mod_revision: i64,
}

impl Kv {
    fn of(kv: &etcd_client::KeyValue) -> Self {
        Self { key: kv.key().to_vec(), value: kv.value().to_vec(), mod_revision: kv.mod_revision() }
    }
}

/// The condition of one conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// The key does not exist (create-only: `create_revision == 0`).
    Absent,
    /// The key was last changed at this revision (compare-and-swap).
    ModRevision(i64),
}

/// One conditional write.
#[derive(Debug, Clone)]
pub(crate) struct CondPut {
    /// Key.
    pub key: String,
    /// Condition.
    pub expect: Expect,
    /// Value to write if it holds.
    pub value: Vec<u8>,
}

/// What became of one conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CondOutcome {
    /// Written at this revision.
    Written(i64),
    /// The condition failed: the key as it is now (None: absent).
    Conflict(Option<Kv>),
}

/// What a watch delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchItem {
    /// The watch is in place.
    Created,
    /// Changes, in revision order.
    Events(Vec<WatchEvent>),
    /// Nothing changed up to this revision.
    Progress(i64),
    /// The start revision was compacted away (the oldest left is this).
    Compacted(i64),
    /// etcd cancelled the watch (e.g. the member lost its leader).
    Cancelled(String),
}

/// One change of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WatchEvent {
    /// Created or changed.
    Put(Kv),
    /// Deleted (at `mod_revision`).
    Delete(Kv),
}

/// A connected client (the connection itself is made lazily by the
/// channel and kept up by it).
#[derive(Clone)]
pub(crate) struct Etcd {
    client: Client,
    timeout: Duration,
    retries: u32,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// Pause before the n-th retry (times n).
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Did the request fail because no member could serve it now (connection
/// refused or reset, no leader, election)?
fn retryable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.code() == tonic::Code::Unavailable,
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

fn failure(op: &'static str) -> impl FnOnce(etcd_client::Error) -> Error {
    move |e| Error::Etcd { op, source: EtcdFailure::new(e) }
}

fn read_pem(key: &'static str, path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::TlsFile { key, path: path.to_owned(), source })
}

impl Etcd {
    /// A client of the configured members. Without credentials this does
    /// not wait for etcd; with them it authenticates (and fails if etcd is
    /// unreachable).
    pub(crate) async fn connect(cfg: &EtcdConfig) -> Result<Self, Error> {
        let keep_alive = cfg.request_timeout.min(Duration::from_secs(10));
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(cfg.connect_timeout)
            .with_keep_alive(keep_alive, keep_alive)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            opts = opts.with_user(u.clone(), p.clone()).with_auto_token_refresh(true);
        }
        if cfg.uses_tls() {
            let mut tls = TlsOptions::new();
            tls = match &cfg.ca {
                Some(ca) => tls.ca_certificate(Certificate::from_pem(read_pem("ca", ca)?)),
                None => tls.with_native_roots(),
            };
            if let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) {
                tls = tls.identity(Identity::from_pem(read_pem("cert", cert)?, read_pem("key", key)?));
            }
            opts = opts.with_tls(tls);
        }
        let client = tokio::time::timeout(cfg.connect_timeout, Client::connect(&cfg.endpoints, Some(opts)))
            .await
            .map_err(|_| Error::Timeout { op: "connect" })?
            .map_err(failure("connect"))?;
        // Enough tries to go round every member twice.
        let retries = u32::try_from(cfg.endpoints.len() * 2).unwrap_or(u32::MAX);
        Ok(Self { client, timeout: cfg.request_timeout, retries })
    }

    /// Run a request within `request_timeout`, retrying while etcd says
    /// "unavailable" (a dead member still in the balancer, an election):
    /// the next try goes to another member. Every request here may be
    /// retried: reads are idempotent and every write is conditional, and a
    /// retry that finds its own earlier write is told apart by the callers
    /// (same writer and time; a clock already moved).
    async fn call<T, Fut>(&self, op: &'static str, mut request: impl FnMut() -> Fut) -> Result<T, Error>
    where
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut tries = 0u32;
        loop {
            let attempt = tokio::time::timeout_at(deadline, request()).await.map_err(|_| Error::Timeout { op })?;
            match attempt {
                Ok(v) => return Ok(v),
                Err(e) if retryable(&e) && tries < self.retries => {
                    tries += 1;
                    tracing::debug!(op, tries, error = %e, "etcd unavailable, retrying.");
                    tokio::time::sleep_until((tokio::time::Instant::now() + RETRY_PAUSE * tries).min(deadline)).await;
                }
                Err(e) => return Err(failure(op)(e)),
            }
        }
    }

    /// Every key under `prefix` at one revision (the current one when
    /// None), read in pages; and that revision.
    pub(crate) async fn range_prefix(&self, prefix: &str, at: Option<i64>) -> Result<(Vec<Kv>, i64), Error> {
        let end = prefix_end(prefix.as_bytes());
        let kv = self.client.kv_client().max_decoding_message_size(MAX_MESSAGE);
        let mut out = Vec::new();
        let mut from = prefix.as_bytes().to_vec();
        let mut revision = at;
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if let Some(r) = revision {
                opts = opts.with_revision(r);
            }
            let key = from.clone();
            let resp = self
                .call("range read", || {
                    let (mut kv, key, opts) = (kv.clone(), key.clone(), opts.clone());
                    async move { kv.get(key, Some(opts)).await }
                })
                .await?;
            let rev = resp.header().map_or(0, |h| h.revision());
            let rev = *revision.get_or_insert(rev);
            out.extend(resp.kvs().iter().map(Kv::of));
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok((out, rev)),
            }
        }
    }

    /// One key, if it exists.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Kv>, Error> {
        let kv = self.client.kv_client();
        let resp = self
            .call("read", || {
                let mut kv = kv.clone();
                async move { kv.get(key, None).await }
            })
            .await?;
        Ok(resp.kvs().first().map(Kv::of))
    }

    /// Conditional writes, all in one transaction: each is a nested
    /// transaction (`if condition then put else get`), so one failing
    /// condition does not stop the others and a conflict returns the key
    /// as it is. Keys must be distinct.
    pub(crate) async fn put_if(&self, puts: &[CondPut]) -> Result<Vec<CondOutcome>, Error> {
        if puts.is_empty() {
            return Ok(Vec::new());
        }
        let ops: Vec<TxnOp> = puts
            .iter()
            .map(|p| {
                let cmp = match p.expect {
                    Expect::Absent => Compare::create_revision(p.key.clone(), CompareOp::Equal, 0),
                    Expect::ModRevision(r) => Compare::mod_revision(p.key.clone(), CompareOp::Equal, r),
                };
                TxnOp::txn(
                    Txn::new()
                        .when([cmp])
                        .and_then([TxnOp::put(p.key.clone(), p.value.clone(), None)])
                        .or_else([TxnOp::get(p.key.clone(), None)]),
                )
            })
            .collect();
        let kv = self.client.kv_client().max_decoding_message_size(MAX_MESSAGE);
        let resp = self
            .call("write transaction", || {
                let (mut kv, ops) = (kv.clone(), ops.clone());
                async move { kv.txn(Txn::new().and_then(ops)).await }
            })
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let outcomes: Vec<CondOutcome> = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Txn(t) if t.succeeded() => CondOutcome::Written(revision),
                TxnOpResponse::Txn(t) => CondOutcome::Conflict(t.op_responses().into_iter().find_map(|r| match r {
                    TxnOpResponse::Get(g) => g.kvs().first().map(Kv::of),
                    _ => None,
                })),
                _ => CondOutcome::Conflict(None),
            })
            .collect();
        if outcomes.len() != puts.len() {
            return Err(Error::Protocol(format!(
                "etcd answered {} results to a transaction of {} writes",
                outcomes.len(),
                puts.len()
            )));
        }
        Ok(outcomes)
    }

    /// Watch every key under `prefix` from revision `from` (inclusive).
    pub(crate) async fn watch(&self, prefix: &str, from: i64) -> Result<Watch, Error> {
        let opts = WatchOptions::new().with_prefix().with_start_revision(from).with_progress_notify();
        let w = self.client.watch_client().max_decoding_message_size(MAX_MESSAGE);
        let stream = self
            .call("watch", || {
                let (mut w, opts) = (w.clone(), opts.clone());
                async move { w.watch(prefix, Some(opts)).await }
            })
            .await?;
        Ok(Watch { stream })
    }

    /// The backend database size of the member answering (bytes), from
    /// the maintenance status API.
    pub(crate) async fn db_size(&self) -> Result<i64, Error> {
        let m = self.client.maintenance_client();
        let status = self
            .call("status", || {
                let mut m = m.clone();
                async move { m.status().await }
            })
            .await?;
        Ok(status.db_size())
    }
}

/// A live watch.
pub(crate) struct Watch {
    stream: WatchStream,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl Watch {
    /// The next thing the watch says; None when the stream ended.
    pub(crate) async fn next(&mut self) -> Result<Option<WatchItem>, Error> {
        let Some(resp) = self.stream.message().await.map_err(failure("watch"))? else {
            return Ok(None);
        };
        if resp.compact_revision() > 0 {
            return Ok(Some(WatchItem::Compacted(resp.compact_revision())));
        }
        if resp.canceled() {
            return Ok(Some(WatchItem::Cancelled(resp.cancel_reason().to_owned())));
        }
        if resp.created() && resp.events().is_empty() {
            return Ok(Some(WatchItem::Created));
        }
        if resp.events().is_empty() {
            return Ok(Some(WatchItem::Progress(resp.header().map_or(0, |h| h.revision()))));
        }
        let events = resp
            .events()
            .iter()
            .filter_map(|e| {
                let kv = Kv::of(e.kv()?);
                Some(match e.event_type() {
                    EtcdEventType::Put => WatchEvent::Put(kv),
                    EtcdEventType::Delete => WatchEvent::Delete(kv),
                })
            })
            .collect();
        Ok(Some(WatchItem::Events(events)))
    }
}
