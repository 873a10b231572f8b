//! Real etcd processes for tests: Debian's `etcd` binary started on
//! loopback (each member on an address of its own in 127/8), optionally
//! with mutual TLS, killed when dropped. Used by the fleet crate's tests and
//! by the daemon's fleet tests — no mock stands in for etcd.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::missing_panics_doc)] // test support: failing loudly is the point

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The etcd binary: `$TELLTALE_ETCD_BIN`, else `etcd` on the PATH. A
/// missing binary fails the test (never a skip).
pub fn etcd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TELLTALE_ETCD_BIN") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "the fleet tests need a real etcd and none was found: install it \
             (`apt-get install etcd-server`, which scripts/setup.sh does) or set TELLTALE_ETCD_BIN"
        )
    })
}

/// A loopback address of its own for each etcd member (all of 127/8 is
/// loopback on Linux), so members listen on the fixed etcd ports and no
/// released-then-reused ephemeral port can collide ("address already in
/// use" when another test's connection took a port picked with bind(0)).
fn member_ip() -> Ipv4Addr {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = u64::from(std::process::id());
    // Bytes 2..4 of the address: this process, then a counter.
    let b = |v: u64| u8::try_from(v).unwrap_or(0);
    Ipv4Addr::new(127, b(100 + pid % 100), b(n / 250 % 250), b(n % 250 + 1))
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

static TOKENS: AtomicU64 = AtomicU64::new(0);

/// A CA, a server certificate for the members' addresses and a client certificate, as
/// PEM files.
#[derive(Debug, Clone)]
pub struct Pki {
    /// CA certificate.
    pub ca: PathBuf,
    /// Server certificate and key.
    pub server: (PathBuf, PathBuf),
    /// Client certificate and key.
    pub client: (PathBuf, PathBuf),
}

impl Pki {
    /// Generate one under `dir`.
    pub fn generate(dir: &Path, ips: &[Ipv4Addr]) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let write = |name: &str, pem: &str| {
            let p = dir.join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        let leaf = |name: &str, names: Vec<String>, eku: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(names).unwrap();
            p.extended_key_usages = vec![eku];
            let cert = p.signed_by(&key, &ca).unwrap();
            (write(&format!("{name}.pem"), &cert.pem()), write(&format!("{name}.key"), &key.serialize_pem()))
        };
        let names = ips.iter().map(ToString::to_string).chain(["127.0.0.1".into(), "localhost".into()]).collect();
        let server = leaf("server", names, ExtendedKeyUsagePurpose::ServerAuth);
        let client = leaf("client", vec!["telltale.local".into()], ExtendedKeyUsagePurpose::ClientAuth);
        Pki { ca: write("ca.pem", &ca.pem()), server, client }
    }

    /// Client options of a raw etcd client with this client certificate.
    pub fn client_options(&self) -> etcd_client::ConnectOptions {
        let read = |p: &PathBuf| std::fs::read(p).unwrap();
        etcd_client::ConnectOptions::new().with_tls(
            etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(read(&self.ca)))
                .identity(etcd_client::Identity::from_pem(read(&self.client.0), read(&self.client.1))),
        )
    }
}

/// One etcd member process; killed on drop (even when the test panics).
#[derive(Debug)]
pub struct Member {
    name: String,
    ip: Ipv4Addr,
    data_dir: PathBuf,
    log: PathBuf,
    initial_cluster: String,
    token: String,
    tls: Option<Pki>,
    child: Option<Child>,
}

impl Member {
    fn new(dir: &Path, name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ip: member_ip(),
            data_dir: dir.join(format!("{name}.etcd")),
            log: dir.join(format!("{name}.log")),
            initial_cluster: String::new(),
            token: String::new(),
            tls: None,
            child: None,
        }
    }

    fn peer_url(&self) -> String {
        format!("http://{}:2380", self.ip)
    }

    /// The client URL.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:2379", self.ip)
    }

    fn client_options(&self) -> etcd_client::ConnectOptions {
        self.tls.as_ref().map_or_else(etcd_client::ConnectOptions::new, Pki::client_options)
    }

    /// Start (or restart, on the same data dir and ports).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("etcd log file");
        let mut cmd = Command::new(etcd_bin());
        // The Debian package's defaults file may export ETCD_* settings;
        // flags and environment must not conflict.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-client-urls")
            .arg(self.endpoint())
            .arg("--advertise-client-urls")
            .arg(self.endpoint())
            .arg("--listen-peer-urls")
            .arg(self.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(self.peer_url())
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--heartbeat-interval")
            .arg("50")
            .arg("--election-timeout")
            .arg("500")
            .arg("--log-level")
            .arg("warn");
        if let Some(pki) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&pki.server.0)
                .arg("--key-file")
                .arg(&pki.server.1)
                .arg("--trusted-ca-file")
                .arg(&pki.ca)
                .arg("--client-cert-auth");
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::from(log.try_clone().expect("dup log"))).stderr(Stdio::from(log));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {:?}: {e}", etcd_bin()));
        self.child = Some(child);
    }

    /// Kill the process (SIGKILL) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The log so far (for failure messages).
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A raw etcd client of this member.
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint()], Some(self.client_options())).await.expect("etcd client")
    }

    /// Wait until the member answers a status request.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = etcd_client::Client::connect(
                [self.endpoint()],
                Some(self.client_options().with_timeout(Duration::from_secs(1))),
            )
            .await
            {
                // A write proves there is a leader and quorum.
                if c.put("/ready-probe", "1", None).await.is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "etcd {} did not start:\n{}", self.name, self.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its member id (from its own status).
    pub async fn member_id(&self) -> u64 {
        let mut c = self.client().await;
        c.status().await.expect("status").header().expect("header").member_id()
    }

    /// The leader's member id, as this member sees it.
    pub async fn leader_id(&self) -> u64 {
        let mut c = self.client().await;
        c.status().await.expect("status").leader()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Members of one etcd cluster, with their data under a temporary
/// directory (removed after the processes are killed).
#[derive(Debug)]
pub struct Cluster {
    pub members: Vec<Member>,
    // Dropped after `members` (field order): directories outlive processes.
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Start `n` members and wait until they serve.
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, false).await
    }

    /// Start `n` members serving clients over mutual TLS ([`Cluster::pki`]).
    pub async fn start_tls(n: usize) -> Cluster {
        Self::start_with(n, true).await
    }

    /// The PKI of a TLS cluster.
    pub fn pki(&self) -> Pki {
        self.members[0].tls.clone().expect("a TLS cluster")
    }

    async fn start_with(n: usize, tls: bool) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut members: Vec<Member> = (0..n).map(|i| Member::new(dir.path(), &format!("m{i}"))).collect();
        let ips: Vec<Ipv4Addr> = members.iter().map(|m| m.ip).collect();
        let pki = tls.then(|| Pki::generate(dir.path(), &ips));
        let initial: Vec<String> = members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect();
        let token = format!("tt-{}-{}", std::process::id(), TOKENS.fetch_add(1, Ordering::Relaxed));
        for m in &mut members {
            m.initial_cluster = initial.join(",");
            m.token.clone_from(&token);
            m.tls.clone_from(&pki);
            m.start();
        }
        for m in &members {
            m.wait_ready().await;
        }
        Cluster { members, _dir: dir }
    }

    /// Client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// The first member's raw client.
    pub async fn client(&self) -> etcd_client::Client {
        self.members[0].client().await
    }
}
