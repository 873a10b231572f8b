//! Profiles as code: a security profile as a versioned document
//! (`apiVersion: telltale.dev/v1`, `kind: SecurityProfile`), the format of
//! `telltalectl profile export|import|diff` (docs/profiles-as-code.md).
//!
//! The document lists process nodes by lineage, each with the file
//! patterns (and access modes), DNS questions, endpoints and endpoint ranges
//! it may use. Every listed process may run (its exec is allowed). It
//! converts to and from [`Observation`]s, the profile's own unit: reading a
//! document checks it field by field ([`ProfileDocument::observations`]),
//! writing one is canonical (sorted, merged), so export → import → export
//! gives the same text. Unknown keys are refused by serde
//! (`deny_unknown_fields`), naming the key; the header is checked first
//! ([`Header::check`]) so a document of another version is refused as
//! such, not for its keys.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::generalize::check_pattern;
use super::{access, Behaviour, EventType, Observation, Profile};
use crate::event::{Access, Mechanism, Protocol};
use crate::field::FieldError;

/// The `apiVersion` this build reads and writes.
pub const API_VERSION: &str = "telltale.dev/v1";
/// The `kind` of a security profile document.
pub const KIND: &str = "SecurityProfile";
/// Largest document accepted (bytes): far above any real profile, small
/// enough that a wrong file (a log, a disk image) is refused at once.
pub const MAX_BYTES: u64 = 4 << 20;

/// Why a document cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// `apiVersion` is missing or another version.
    #[error("apiVersion {found:?} is not supported: this telltale reads `apiVersion: {API_VERSION}`")]
    ApiVersion {
        /// What the document says (empty: missing).
        found: String,
    },
    /// `kind` is missing or not a security profile.
    #[error("kind {found:?} is not a security profile: use `kind: {KIND}`")]
    Kind {
        /// What the document says (empty: missing).
        found: String,
    },
    /// A field is not acceptable.
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// The header of any document: read before the rest, so that another
/// version or kind is refused as such (its keys may differ).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// `apiVersion`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// `kind`.
    #[serde(default)]
    pub kind: Option<String>,
}

impl Header {
    /// Is this a `telltale.dev/v1` `SecurityProfile`?
    pub fn check(&self) -> Result<(), DocumentError> {
        check_header(self.api_version.as_deref().unwrap_or_default(), self.kind.as_deref().unwrap_or_default())
    }
}

fn check_header(api_version: &str, kind: &str) -> Result<(), DocumentError> {
    if api_version != API_VERSION {
        return Err(DocumentError::ApiVersion { found: api_version.to_owned() });
    }
    if kind != KIND {
        return Err(DocumentError::Kind { found: kind.to_owned() });
    }
    Ok(())
}

/// A security profile as a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileDocument {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always [`KIND`].
    pub kind: String,
    /// Which profile.
    pub metadata: Metadata,
    /// What it allows.
    #[serde(default)]
    pub spec: Spec,
}

/// Which profile a document is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The short image name (`cws-webapp`), the profile's key.
    pub name: String,
}

/// What a profile allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// Image tags (versions) the profile was learned from; informational.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Process nodes, each allowed to run, with what they may do.
    #[serde(default)]
    pub processes: Vec<Process>,
}

/// A process node: its lineage may run, and do what is listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Process {
    /// Executable paths, outermost ancestor first, the process itself last.
    pub lineage: Vec<String>,
    /// File patterns it may open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRule>,
    /// DNS questions it may ask.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<DnsRule>,
    /// Endpoints it may connect to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect: Vec<Endpoint>,
    /// Ranges of endpoints it may connect to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_ranges: Vec<EndpointRange>,
    /// Mechanisms it may use that the sensors cannot see through (`io_uring`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mechanisms: Vec<Mechanism>,
}

/// A file pattern and the access modes allowed on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRule {
    /// A pattern as the profile stores it (`/proc/{pid}/status`).
    pub pattern: String,
    /// `read`, `write`, `create`, `truncate`.
    pub access: Vec<Access>,
}

fn query_type_a() -> String {
    "A".to_owned()
}

/// A DNS question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsRule {
    /// The name (compared in lower case, without a trailing dot).
    pub name: String,
    /// Query type (default `A`).
    #[serde(rename = "type", default = "query_type_a")]
    pub qtype: String,
}

/// Transport of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl From<Transport> for Protocol {
    fn from(t: Transport) -> Self {
        match t {
            Transport::Tcp => Protocol::Tcp,
            Transport::Udp => Protocol::Udp,
        }
    }
}

impl Transport {
    /// The transport of a protocol (`None`: not TCP or UDP).
    pub fn of(p: Protocol) -> Option<Self> {
        match p {
            Protocol::Tcp => Some(Transport::Tcp),
            Protocol::Udp => Some(Transport::Udp),
            Protocol::Other(_) => None,
        }
    }
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `tcp` or `udp`.
    pub protocol: Transport,
    /// An IP address.
    pub address: IpAddr,
    /// 1-65535.
    pub port: u16,
}

/// A range of endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointRange {
    /// `tcp` or `udp`.
    pub protocol: Transport,
    /// A CIDR range (`10.0.0.0/8`).
    pub network: ipnet::IpNet,
    /// A port, or 0 (the default): any port.
    #[serde(default)]
    pub port: u16,
}

/// Behaviours of one lineage, merged and sorted.
#[derive(Debug, Default)]
struct Node {
    files: BTreeMap<String, u8>,
    dns: BTreeSet<(String, String)>,
    connect: BTreeSet<(Transport, IpAddr, u16)>,
    ranges: BTreeSet<(Transport, ipnet::IpNet, u16)>,
    mechanisms: BTreeSet<Mechanism>,
}

/// Access modes of access bits, in a fixed order.
fn access_modes(bits: u8) -> Vec<Access> {
    [Access::Read, Access::Write, Access::Create, Access::Truncate]
        .into_iter()
        .filter(|a| bits & access::bit(*a) != 0)
        .collect()
}

impl ProfileDocument {
    /// An empty document for `name`.
    pub fn new(name: &str, tags: Vec<String>) -> Self {
        ProfileDocument {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            metadata: Metadata { name: name.to_owned() },
            spec: Spec { tags, processes: Vec::new() },
        }
    }

    /// The canonical document of these behaviours: processes sorted by
    /// lineage, entries sorted, file access modes merged. Fails for an
    /// endpoint of a protocol other than TCP or UDP (a document cannot
    /// hold it).
    pub fn from_observations<'a>(
        name: &str,
        tags: Vec<String>,
        observations: impl IntoIterator<Item = &'a Observation>,
    ) -> Result<Self, FieldError> {
        let mut nodes: BTreeMap<Vec<String>, Node> = BTreeMap::new();
        for o in observations {
            let n = nodes.entry(o.lineage.clone()).or_default();
            let transport = |p: Protocol| {
                Transport::of(p).ok_or_else(|| {
                    FieldError::new(
                        format!("connect of {}", o.lineage.join(" -> ")),
                        format!("protocol {p} cannot be written in a profile document (tcp or udp only)"),
                    )
                })
            };
            match &o.behaviour {
                Behaviour::Exec => {}
                Behaviour::File { pattern, access } => *n.files.entry(pattern.clone()).or_default() |= access,
                Behaviour::Dns { name, qtype } => {
                    n.dns.insert((name.clone(), qtype.clone()));
                }
                Behaviour::Connect { protocol, address, port } => {
                    n.connect.insert((transport(*protocol)?, *address, *port));
                }
                Behaviour::ConnectRange { protocol, network, port } => {
                    n.ranges.insert((transport(*protocol)?, *network, *port));
                }
                Behaviour::Mechanism { mechanism } => {
                    n.mechanisms.insert(*mechanism);
                }
            }
        }
        let mut doc = Self::new(name, tags);
        doc.spec.processes = nodes
            .into_iter()
            .map(|(lineage, n)| Process {
                lineage,
                files: n
                    .files
                    .into_iter()
                    .map(|(pattern, bits)| FileRule { pattern, access: access_modes(bits) })
                    .collect(),
                dns: n.dns.into_iter().map(|(name, qtype)| DnsRule { name, qtype }).collect(),
                connect: n
                    .connect
                    .into_iter()
                    .map(|(protocol, address, port)| Endpoint { protocol, address, port })
                    .collect(),
                connect_ranges: n
                    .ranges
                    .into_iter()
                    .map(|(protocol, network, port)| EndpointRange { protocol, network, port })
                    .collect(),
                mechanisms: n.mechanisms.into_iter().collect(),
            })
            .collect();
        Ok(doc)
    }

    /// The canonical document of a profile (collapsed sibling shapes are
    /// left out: importing the siblings they came from rebuilds them).
    pub fn from_profile(p: &Profile) -> Result<Self, FieldError> {
        let mut observations = Vec::new();
        for (lineage, n) in p.nodes() {
            let o = |behaviour| Observation { lineage: lineage.clone(), behaviour };
            observations.push(o(Behaviour::Exec));
            observations
                .extend(n.files.iter().map(|(pattern, a)| o(Behaviour::File { pattern: pattern.clone(), access: *a })));
            observations.extend(
                n.dns.iter().map(|(name, qtype)| o(Behaviour::Dns { name: name.clone(), qtype: qtype.clone() })),
            );
            observations.extend(n.endpoints.iter().map(|(protocol, address, port)| {
                o(Behaviour::Connect { protocol: *protocol, address: *address, port: *port })
            }));
            observations.extend(n.endpoint_ranges.iter().map(|(protocol, network, port)| {
                o(Behaviour::ConnectRange { protocol: *protocol, network: *network, port: *port })
            }));
            observations.extend(n.mechanisms.iter().map(|m| o(Behaviour::Mechanism { mechanism: *m })));
        }
        Self::from_observations(&p.image, p.tags.iter().cloned().collect(), &observations)
    }

    /// Check the document and give its behaviours: for each process its
    /// exec first, then what it does (DNS names in lower case, query types
    /// in upper case, ranges truncated to their network). Errors name the
    /// field (`spec.processes[2].files[0].pattern`).
    pub fn observations(&self) -> Result<Vec<Observation>, DocumentError> {
        check_header(&self.api_version, &self.kind)?;
        check_image_name(&self.metadata.name)?;
        for (i, t) in self.spec.tags.iter().enumerate() {
            if t.trim().is_empty() {
                return Err(FieldError::new(format!("spec.tags[{i}]"), "is empty").into());
            }
        }
        let mut out = Vec::new();
        let mut seen: HashSet<Vec<String>> = HashSet::new();
        for (i, p) in self.spec.processes.iter().enumerate() {
            let at = |rest: &str| format!("spec.processes[{i}].{rest}");
            if p.lineage.is_empty() {
                return Err(
                    FieldError::new(at("lineage"), "is empty: give the executable paths, outermost first").into()
                );
            }
            for (j, exe) in p.lineage.iter().enumerate() {
                if !crate::event::is_program_name(exe) {
                    return Err(FieldError::new(
                        at(&format!("lineage[{j}]")),
                        format!("{exe:?} is neither an absolute path nor a fileless program (memfd:<name>)"),
                    )
                    .into());
                }
            }
            // Escaped bytes in the sensors' spelling (`\xFF` → `\xff`).
            let lineage: Vec<String> =
                p.lineage.iter().map(|exe| crate::event::canonical_program(exe).into_owned()).collect();
            if !seen.insert(lineage.clone()) {
                return Err(FieldError::new(at("lineage"), "is listed twice: merge the two processes").into());
            }
            let o = |behaviour| Observation { lineage: lineage.clone(), behaviour };
            out.push(o(Behaviour::Exec));
            for (j, f) in p.files.iter().enumerate() {
                check_pattern(&f.pattern)
                    .map_err(|e| FieldError::new(at(&format!("files[{j}].pattern")), format!("{:?} {e}", f.pattern)))?;
                if f.access.is_empty() {
                    return Err(FieldError::new(
                        at(&format!("files[{j}].access")),
                        "is empty: give read, write, create and/or truncate",
                    )
                    .into());
                }
                let pattern = crate::text::canonical_name(&f.pattern).into_owned();
                out.push(o(Behaviour::File { pattern, access: super::access_bits(&f.access) }));
            }
            for (j, d) in p.dns.iter().enumerate() {
                let name = dns_name(&d.name).map_err(|e| FieldError::new(at(&format!("dns[{j}].name")), e))?;
                let qtype = d.qtype.trim().to_ascii_uppercase();
                if qtype.is_empty() || qtype.len() > 16 || !qtype.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(FieldError::new(
                        at(&format!("dns[{j}].type")),
                        format!("{:?} is not a query type", d.qtype),
                    )
                    .into());
                }
                out.push(o(Behaviour::Dns { name, qtype }));
            }
            for (j, e) in p.connect.iter().enumerate() {
                if e.port == 0 {
                    return Err(FieldError::new(
                        at(&format!("connect[{j}].port")),
                        "0 (any port) needs a range: put it under connectRanges",
                    )
                    .into());
                }
                out.push(o(Behaviour::Connect { protocol: e.protocol.into(), address: e.address, port: e.port }));
            }
            for r in &p.connect_ranges {
                out.push(o(Behaviour::ConnectRange {
                    protocol: r.protocol.into(),
                    network: r.network.trunc(),
                    port: r.port,
                }));
            }
            for m in &p.mechanisms {
                out.push(o(Behaviour::Mechanism { mechanism: *m }));
            }
        }
        Ok(out)
    }
}

/// A short image name: what `metadata.name` must be.
fn check_image_name(name: &str) -> Result<(), FieldError> {
    let bad = |why: &str| Err(FieldError::new("metadata.name", format!("{name:?} {why}")));
    if name.is_empty() {
        return bad("is empty: give the short image name (`cws-webapp` for registry.example/team/cws-webapp:v1)");
    }
    if name.len() > 255 {
        return bad("is longer than 255 bytes");
    }
    if name.contains(['/', ':', '@']) || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("is not a short image name (no registry, path, tag or digest: `cws-webapp`)");
    }
    Ok(())
}

/// A DNS name as profiles store it: lower case, no trailing dot.
fn dns_name(name: &str) -> Result<String, String> {
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if n.is_empty() {
        return Err("is empty".into());
    }
    if n.len() > 253 || n.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err(format!("{name:?} is not a valid DNS name"));
    }
    Ok(n)
}

/// What differs between a document and a live profile, one behaviour per
/// line (a file's access modes one by one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// In the document, not in the live profile (what an import adds).
    pub added: Vec<Observation>,
    /// In the live profile, not in the document.
    pub missing: Vec<Observation>,
}

impl Diff {
    /// The document and the profile hold the same behaviours.
    pub fn is_identical(&self) -> bool {
        self.added.is_empty() && self.missing.is_empty()
    }
}

/// A behaviour split to what a diff compares: file access modes one by one.
fn atoms(observations: &[Observation]) -> Vec<Observation> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for o in observations {
        let parts = match &o.behaviour {
            Behaviour::File { pattern, access } => access_modes(*access)
                .into_iter()
                .map(|a| Observation {
                    lineage: o.lineage.clone(),
                    behaviour: Behaviour::File { pattern: pattern.clone(), access: access::bit(a) },
                })
                .collect(),
            _ => vec![o.clone()],
        };
        for p in parts {
            if seen.insert(p.clone()) {
                out.push(p);
            }
        }
    }
    out
}

/// Sort key of a behaviour: lineage, type, then its text.
fn order(o: &Observation) -> (Vec<String>, EventType, String) {
    (o.lineage.clone(), o.event_type(), Line(o).to_string())
}

/// Compare a document's behaviours with a live profile's (both as
/// [`ProfileDocument::observations`] gives them).
pub fn diff(document: &[Observation], live: &[Observation]) -> Diff {
    let (doc, live) = (atoms(document), atoms(live));
    let (in_doc, in_live): (HashSet<&Observation>, HashSet<&Observation>) =
        (doc.iter().collect(), live.iter().collect());
    let mut added: Vec<Observation> = doc.iter().filter(|o| !in_live.contains(o)).cloned().collect();
    let mut missing: Vec<Observation> = live.iter().filter(|o| !in_doc.contains(o)).cloned().collect();
    added.sort_by_key(order);
    missing.sort_by_key(order);
    Diff { added, missing }
}

/// A behaviour in one line: `/bin/sh -> /usr/bin/curl: file read /etc/hosts`.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a>(pub &'a Observation);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.0.lineage.join(" -> "))?;
        match &self.0.behaviour {
            Behaviour::Exec => f.write_str("exec"),
            Behaviour::File { pattern, access } => {
                let modes: Vec<&str> = access_modes(*access).into_iter().map(Access::name).collect();
                write!(f, "file {} {pattern}", modes.join(","))
            }
            Behaviour::Dns { name, qtype } => write!(f, "dns {name} {qtype}"),
            Behaviour::Connect { protocol, address: IpAddr::V6(a), port } => {
                write!(f, "connect [{a}]:{port}/{protocol}")
            }
            Behaviour::Connect { protocol, address, port } => write!(f, "connect {address}:{port}/{protocol}"),
            Behaviour::ConnectRange { protocol, network, port: 0 } => {
                write!(f, "connect {network} any port/{protocol}")
            }
            Behaviour::ConnectRange { protocol, network, port } => {
                write!(f, "connect {network} port {port}/{protocol}")
            }
            Behaviour::Mechanism { mechanism } => write!(f, "mechanism {mechanism}"),
        }
    }
}

#[cfg(test)]
mod tests;
