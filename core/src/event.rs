//! Typed events: what a process in a watched cgroup did.
//!
//! These are the domain values every later stage (profile, signal, API)
//! works with. Their serde form is the stable `telltale trace --json` format
//! documented in the README.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use time::OffsetDateTime;

/// One observed behaviour of one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time of the event.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// cgroup v2 id (inode number) of the process's cgroup.
    pub cgroup_id: u64,
    /// The process that did it.
    pub process: Process,
    /// What it did.
    #[serde(flatten)]
    pub kind: EventKind,
    /// The kernel's dedup key of this behaviour (0: none, e.g. exec).
    /// Telling the sensor it is known filters its repeats in the kernel.
    #[serde(skip)]
    pub dedup_key: u64,
}

/// The process behind an event, with its lineage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Process id (tgid).
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Kernel command name (`comm`).
    pub comm: String,
    /// Absolute path of the executable (the script, for `#!` scripts); for
    /// a program run from a file no mount reaches (a memfd), its name,
    /// `memfd:<name>`, escaped: never a path ([`Process::is_fileless`]).
    pub path: String,
    /// The interpreter, when `path` is a `#!` script.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// argv (at most 16 arguments / 4 KiB).
    pub args: Vec<String>,
    /// True if argv was cut to fit the bounds.
    pub args_truncated: bool,
    /// Executable paths of the ancestors, outermost first (the parent last).
    pub ancestors: Vec<String>,
}

impl Process {
    /// True if the program ran from a file no mount reaches (fexecve of a
    /// memfd): its `path` is then `memfd:<name>` rather than a path, so a
    /// fileless program is never the same behaviour as a file's, and two
    /// memfd names are two programs.
    pub fn is_fileless(&self) -> bool {
        is_fileless(&self.path)
    }
}

/// True if an executable "path" names a fileless program (`memfd:<name>`):
/// anything but an absolute path; the empty string (unknown) is not.
pub fn is_fileless(path: &str) -> bool {
    !path.is_empty() && !path.starts_with('/')
}

/// A program name a person wrote, as the sensors write it: a path's
/// escaped bytes in their spelling ([`crate::text::canonical_name`]:
/// `/bin/a\xFF` → `/bin/a\xff`); a fileless name, which has its own
/// escaping ([`is_fileless`]), as it is.
pub fn canonical_program(s: &str) -> std::borrow::Cow<'_, str> {
    if is_fileless(s) {
        std::borrow::Cow::Borrowed(s)
    } else {
        crate::text::canonical_name(s)
    }
}

/// Can `s` stand in a lineage: an absolute path, or the name the sensors
/// give a fileless program (`memfd:` and its escaped name: no control
/// characters, not empty), as a person may add it to a profile.
pub fn is_program_name(s: &str) -> bool {
    if s.contains('\0') {
        return false;
    }
    s.starts_with('/') || s.strip_prefix("memfd:").is_some_and(|n| !n.is_empty() && !n.chars().any(char::is_control))
}

/// The kind-specific part of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A successful exec; `process` is the new program.
    Exec,
    /// A successful open.
    File {
        /// What was opened.
        file: FileAccess,
    },
    /// A DNS query sent.
    Dns {
        /// The parsed query.
        dns: DnsQuery,
    },
    /// An outbound connection or datagram.
    Connect {
        /// Where to.
        connect: Endpoint,
    },
    /// The process used a mechanism whose operations the other sensors
    /// cannot resolve (io_uring): the use itself is the behaviour.
    Mechanism {
        /// Which.
        mechanism: Mechanism,
    },
}

impl EventKind {
    /// The stable name of the kind: `exec`, `file`, `dns`, `connect`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Exec => "exec",
            EventKind::File { .. } => "file",
            EventKind::Dns { .. } => "dns",
            EventKind::Connect { .. } => "connect",
            EventKind::Mechanism { .. } => "mechanism",
        }
    }
}

/// A way for a process to act that the other sensors cannot see through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// io_uring: a ring set up or a request submitted. Its requests
    /// (opens, connects, ...) run in the kernel, not as syscalls.
    IoUring,
}

impl Mechanism {
    /// Every mechanism.
    pub const ALL: [Mechanism; 1] = [Mechanism::IoUring];

    /// The stable name: `io_uring`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::IoUring => "io_uring",
        }
    }

    /// Parse a stable name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A file open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileAccess {
    /// Absolute path, resolved in the kernel (symlinks, `..`, mounts).
    pub path: String,
    /// Access modes of the open.
    pub access: Vec<Access>,
    /// True if the path was too long or deep and was cut.
    pub truncated: bool,
}

/// One access mode of an open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Opened for reading.
    Read,
    /// Opened for writing.
    Write,
    /// The open created the file.
    Create,
    /// The open truncated the file.
    Truncate,
}

impl Access {
    /// The stable name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Create => "create",
            Access::Truncate => "truncate",
        }
    }
}

/// A DNS query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsQuery {
    /// Every question of the message.
    pub questions: Vec<DnsQuestion>,
    /// Transport.
    pub protocol: Protocol,
    /// The resolver it was sent to.
    pub server: IpAddr,
}

/// One DNS question.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DnsQuestion {
    /// The name, lower-case, without the trailing dot.
    pub name: String,
    /// The query type (`A`, `AAAA`, `TXT`, ...).
    #[serde(rename = "type")]
    pub qtype: String,
}

/// A network endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// Transport.
    pub protocol: Protocol,
    /// Destination address.
    pub address: IpAddr,
    /// Destination port.
    pub port: u16,
}

/// Transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// Another protocol number.
    Other(u8),
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("tcp"),
            Protocol::Udp => f.write_str("udp"),
            Protocol::Other(n) => write!(f, "proto-{n}"),
        }
    }
}

pub mod build;
