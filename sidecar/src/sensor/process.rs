//! The process table: turns decoded kernel records into typed [`Event`]s
//! with their process lineage. Pure logic; /proc reads for processes that
//! started before the sensor are injected by the caller.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use telltale_ebpf::abi;
use telltale_ebpf::decode::{Header, Record};
use time::OffsetDateTime;

use crate::sensor::dns::{parse_query, DnsParseError};
use telltale_core::event::{Access, DnsQuery, Endpoint, Event, EventKind, FileAccess, Mechanism, Process, Protocol};
use telltale_core::text::name_from_bytes;

/// At most this many arguments are kept per process.
pub const MAX_ARGS: usize = 16;

/// What the caller knows of a process the sensor has not seen exec
/// (it started before the sensor was attached). Names as
/// [`telltale_core::text::name_from_bytes`] writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcSnapshot {
    /// Executable path (`/proc/<pid>/exe`).
    pub path: String,
    /// argv (`/proc/<pid>/cmdline`).
    pub args: Vec<String>,
}

/// Bytes of a path or argument as a name: not UTF-8 is escaped, never
/// replaced, so two names are one only if they are the same bytes.
fn name(bytes: &[u8]) -> String {
    name_from_bytes(bytes).into_owned()
}

/// The result of feeding one record.
#[derive(Debug)]
pub enum Outcome {
    /// A user-visible event.
    Event(Box<Event>),
    /// A bookkeeping record (process exit): nothing to show.
    Internal,
    /// A DNS payload that is not a valid query: counted, skipped.
    MalformedDns(DnsParseError),
    /// A mechanism record of a kind this build does not know: counted as
    /// undecodable.
    UnknownMechanism(u32),
}

#[derive(Debug, Clone)]
struct ProcEntry {
    lineage: u64,
    path: String,
    interpreter: Option<String>,
    args: Vec<String>,
    args_truncated: bool,
    ancestors: Arc<[String]>,
}

/// Process lineage state built from exec/exit records.
#[derive(Debug, Default)]
pub struct ProcessTable {
    /// Lineage hash -> executable chain, outermost first, own path last.
    chains: HashMap<u64, Arc<[String]>>,
    /// tgid -> what its last exec said.
    procs: HashMap<u32, ProcEntry>,
    /// Wall-clock time of boot, nanoseconds since the Unix epoch.
    boot_epoch_ns: i128,
}

impl ProcessTable {
    /// A table whose events are dated `boot_epoch_ns + ktime_ns`.
    pub fn new(boot_epoch_ns: i128) -> Self {
        Self { boot_epoch_ns, ..Self::default() }
    }

    /// Number of processes tracked.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// True if no process is tracked.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Feed one record; `lookup` describes processes never seen to exec.
    pub fn feed(&mut self, record: Record, lookup: &dyn Fn(u32) -> Option<ProcSnapshot>) -> Outcome {
        match record {
            Record::Exec(r) => {
                let flags = r.header.flags;
                let path = if flags & abi::FLAG_FILELESS != 0 { fileless_name(&r.path) } else { name(&r.path) };
                let (path, interpreter) = match &r.script {
                    Some(script) if flags & abi::FLAG_SCRIPT_FILELESS != 0 => (fileless_name(script), Some(path)),
                    Some(script) => {
                        let abs = match &r.cwd {
                            Some(cwd) => normalize_path(&name(&[cwd.as_slice(), b"/", script].concat())),
                            None => normalize_path(&name(script)),
                        };
                        (abs, Some(path))
                    }
                    None => (path, None),
                };
                let ancestors = self.ancestors_for_exec(&r.header, r.parent_lineage);
                let mut chain: Vec<String> = ancestors.to_vec();
                chain.push(path.clone());
                self.chains.insert(r.header.lineage, chain.into());
                let mut args: Vec<String> = r.argv.iter().take(MAX_ARGS).map(|a| name(a)).collect();
                args.shrink_to_fit();
                let args_truncated = r.argv.len() > MAX_ARGS || r.header.flags & abi::FLAG_ARGS_TRUNCATED != 0;
                let entry = ProcEntry { lineage: r.header.lineage, path, interpreter, args, args_truncated, ancestors };
                let process = process(&r.header, &entry);
                self.procs.insert(r.header.tgid, entry);
                self.event(&r.header, process, EventKind::Exec)
            }
            Record::Exit(r) => {
                self.procs.remove(&r.header.tgid);
                Outcome::Internal
            }
            Record::File(r) => {
                let process = self.process_of(&r.header, lookup);
                let file = FileAccess {
                    path: name(&r.path),
                    access: access_modes(r.access),
                    truncated: r.header.flags & abi::FLAG_PATH_TRUNCATED != 0,
                };
                self.event(&r.header, process, EventKind::File { file })
            }
            Record::Dns(r) => self.dns_message(&r.header, r.protocol, r.server, &r.payload, lookup),
            Record::Connect(r) => {
                let process = self.process_of(&r.header, lookup);
                let connect = Endpoint { protocol: protocol(r.protocol), address: r.address, port: r.port };
                self.event(&r.header, process, EventKind::Connect { connect })
            }
            Record::Mechanism(r) => match r.mechanism {
                abi::MECH_IO_URING => {
                    let process = self.process_of(&r.header, lookup);
                    self.event(&r.header, process, EventKind::Mechanism { mechanism: Mechanism::IoUring })
                }
                other => Outcome::UnknownMechanism(other),
            },
        }
    }

    /// One DNS message sent by the process of `h` (a UDP record's payload,
    /// or a message reassembled from TCP records by
    /// [`crate::sensor::dns::stream::TcpStreams`]: a TCP record's own bytes
    /// are stream bytes, not a message).
    pub fn dns_message(
        &mut self,
        h: &Header,
        protocol_number: u8,
        server: IpAddr,
        message: &[u8],
        lookup: &dyn Fn(u32) -> Option<ProcSnapshot>,
    ) -> Outcome {
        let questions = match parse_query(message) {
            Ok(q) => q,
            Err(e) => return Outcome::MalformedDns(e),
        };
        let process = self.process_of(h, lookup);
        let dns = DnsQuery { questions, protocol: protocol(protocol_number), server };
        self.event(h, process, EventKind::Dns { dns })
    }

    fn event(&self, h: &Header, process: Process, kind: EventKind) -> Outcome {
        let nanos = self.boot_epoch_ns + i128::from(h.ktime_ns);
        let time = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Outcome::Event(Box::new(Event { time, cgroup_id: h.cgroup_id, process, kind, dedup_key: h.dedup_key }))
    }

    /// Ancestors of a new program: the chain of the lineage it came from.
    fn ancestors_for_exec(&self, h: &Header, parent_lineage: u64) -> Arc<[String]> {
        if let Some(chain) = self.chains.get(&parent_lineage) {
            return chain.clone();
        }
        // The process (or its parent) predates the sensor: what it ran
        // before, if it was seen in scope. Processes outside the watched
        // cgroup (a container runtime, telltale itself) are never ancestors.
        self.procs.get(&h.tgid).or_else(|| self.procs.get(&h.ppid)).map(chain_of).unwrap_or_else(|| Vec::new().into())
    }

    /// The process of a non-exec event.
    fn process_of(&mut self, h: &Header, lookup: &dyn Fn(u32) -> Option<ProcSnapshot>) -> Process {
        if let Some(p) = self.procs.get(&h.tgid).filter(|p| p.lineage == h.lineage) {
            return process(h, p);
        }
        // A forked child that has not exec'd: its parent's program.
        if let Some(p) = self.procs.get(&h.ppid).filter(|p| p.lineage == h.lineage) {
            let entry = p.clone();
            let process = process(h, &entry);
            self.procs.insert(h.tgid, entry);
            return process;
        }
        if let Some(chain) = self.chains.get(&h.lineage).filter(|c| !c.is_empty()) {
            let (path, ancestors) = chain.split_last().map(|(p, a)| (p.clone(), a.to_vec())).unwrap_or_default();
            let entry = ProcEntry {
                lineage: h.lineage,
                path,
                interpreter: None,
                args: Vec::new(),
                args_truncated: false,
                ancestors: ancestors.into(),
            };
            return process(h, &entry);
        }
        // Started before the sensor: ask /proc once, remember the answer.
        let snap = lookup(h.tgid).unwrap_or_default();
        let entry = ProcEntry {
            lineage: h.lineage,
            path: snap.path,
            interpreter: None,
            args: snap.args.into_iter().take(MAX_ARGS).collect(),
            args_truncated: false,
            ancestors: Vec::new().into(),
        };
        let process = process(h, &entry);
        if h.lineage != 0 {
            self.chains.insert(h.lineage, chain_of(&entry));
        }
        self.procs.insert(h.tgid, entry);
        process
    }
}

fn chain_of(p: &ProcEntry) -> Arc<[String]> {
    let mut chain = p.ancestors.to_vec();
    chain.push(p.path.clone());
    chain.into()
}

fn process(h: &Header, p: &ProcEntry) -> Process {
    Process {
        pid: h.tgid,
        ppid: h.ppid,
        uid: h.uid,
        gid: h.gid,
        comm: h.comm.clone(),
        path: p.path.clone(),
        interpreter: p.interpreter.clone(),
        args: p.args.clone(),
        args_truncated: p.args_truncated,
        ancestors: p.ancestors.to_vec(),
    }
}

fn protocol(p: u8) -> Protocol {
    match p {
        abi::PROTO_TCP => Protocol::Tcp,
        abi::PROTO_UDP => Protocol::Udp,
        other => Protocol::Other(other),
    }
}

/// The access modes in `abi::ACCESS_*` bits, in a fixed order.
pub fn access_modes(bits: u32) -> Vec<Access> {
    [
        (abi::ACCESS_READ, Access::Read),
        (abi::ACCESS_WRITE, Access::Write),
        (abi::ACCESS_CREATE, Access::Create),
        (abi::ACCESS_TRUNCATE, Access::Truncate),
    ]
    .into_iter()
    .filter(|(bit, _)| bits & bit != 0)
    .map(|(_, a)| a)
    .collect()
}

/// The name of a program run from a file no mount reaches (a memfd), as
/// the kernel gives it (`memfd:<name>`): printable ASCII is kept, a
/// backslash is doubled, every other byte (`/`, controls, non-ASCII) is
/// written `\xNN`. Two names are the same string only if they are the
/// same bytes, and the result never starts with `/`, so it can never be
/// taken for a path (see [`telltale_core::event::Process::is_fileless`]).
pub fn fileless_name(raw: &[u8]) -> String {
    use std::fmt::Write as _;
    if raw.is_empty() {
        return "memfd:\\?".to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    for &b in raw {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'/' => out.push_str("\\x2f"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// Lexically normalize an absolute path: drop `.` and empty segments,
/// resolve `..` (never above `/`). Relative input is made absolute. A
/// name's escapes never hold a `/`, so segments are the bytes' segments.
pub fn normalize_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests;
