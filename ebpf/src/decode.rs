//! Decoding of ring-buffer records into typed values.
//!
//! Every read is bounds-checked and unaligned-safe: the bytes come from the
//! kernel, but a wrong length or an ABI mismatch must be an error, never UB.

use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::abi::{self, ConnectEvent, DnsEvent, EventHeader, ExecEvent, ExitEvent, FileEvent, MechanismEvent};

/// Why a ring-buffer record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The record is shorter than its fixed part.
    #[error("record of kind {kind} is {len} bytes, shorter than its fixed part ({need} bytes)")]
    TooShort {
        /// Event kind from the header (0 if the header itself is short).
        kind: u16,
        /// Bytes received.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The header's `size` claims more bytes than the record has.
    #[error("record of kind {kind} claims {size} bytes in its header, but has {len}")]
    SizeBeyondRecord {
        /// Event kind from the header.
        kind: u16,
        /// The header's `size`.
        size: usize,
        /// Bytes received.
        len: usize,
    },
    /// The header names an ABI version this build does not speak.
    #[error("record has ABI version {found}, this build speaks {expected}")]
    AbiVersion {
        /// Version in the record.
        found: u16,
        /// [`abi::ABI_VERSION`].
        expected: u16,
    },
    /// The header names an unknown event kind.
    #[error("unknown event kind {0}")]
    UnknownKind(u16),
    /// A length field points outside the record.
    #[error("field `{field}` of a kind {kind} record claims {claimed} bytes, the record has {available}")]
    LengthOutOfBounds {
        /// Event kind.
        kind: u16,
        /// The length field.
        field: &'static str,
        /// The length it claims.
        claimed: usize,
        /// Bytes available for it.
        available: usize,
    },
    /// An address family other than AF_INET/AF_INET6.
    #[error("unknown address family {0}")]
    UnknownFamily(u8),
}

/// The common header, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `abi::EVENT_*`.
    pub kind: u16,
    /// Boot-time clock of the event, nanoseconds.
    pub ktime_ns: u64,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// Lineage hash of the process (0: unknown).
    pub lineage: u64,
    /// In-kernel dedup key of the behaviour (0: none).
    pub dedup_key: u64,
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// `abi::FLAG_*`.
    pub flags: u32,
    /// Task command name.
    pub comm: String,
}

/// A successful exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRecord {
    /// Common header (lineage = the new lineage).
    pub header: Header,
    /// Lineage of the process before the exec.
    pub parent_lineage: u64,
    /// Resolved absolute path of the binary (the interpreter for scripts).
    pub path: Vec<u8>,
    /// The script path as given to execve, for `#!` scripts.
    pub script: Option<Vec<u8>>,
    /// Absolute cwd, when the script path is relative.
    pub cwd: Option<Vec<u8>>,
    /// argv, as captured (bounded by [`abi::ARGS_MAX`]).
    pub argv: Vec<Vec<u8>>,
}

/// A successful open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Common header.
    pub header: Header,
    /// `abi::ACCESS_*` bits.
    pub access: u32,
    /// The returned descriptor.
    pub fd: i32,
    /// Resolved absolute path.
    pub path: Vec<u8>,
}

/// An outgoing DNS packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// Common header.
    pub header: Header,
    /// `abi::PROTO_TCP` or `abi::PROTO_UDP`.
    pub protocol: u8,
    /// Destination (the resolver).
    pub server: IpAddr,
    /// Destination port.
    pub port: u16,
    /// UDP: size of the DNS message in the packet. TCP: bytes of the
    /// segment from `tcp_seq` on (more than `payload` holds when cut).
    pub payload_len: u32,
    /// TCP: sequence number of `payload[0]`.
    pub tcp_seq: u32,
    /// TCP: the socket's cookie, which identifies the stream.
    pub sock_cookie: u64,
    /// TCP: `abi::TCP_*` flags of the segment.
    pub tcp_flags: u8,
    /// UDP: the captured DNS message. TCP: captured stream bytes (length
    /// prefixes included), to be reassembled.
    pub payload: Vec<u8>,
}

/// An outbound connect or UDP send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRecord {
    /// Common header.
    pub header: Header,
    /// `abi::PROTO_TCP` or `abi::PROTO_UDP` (0 if the kernel gave none).
    pub protocol: u8,
    /// Destination address.
    pub address: IpAddr,
    /// Destination port.
    pub port: u16,
}

/// A process exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitRecord {
    /// Common header.
    pub header: Header,
    /// Wait status.
    pub exit_code: u32,
}

/// A process used a mechanism the other sensors cannot see through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MechanismRecord {
    /// Common header.
    pub header: Header,
    /// `abi::MECH_*`.
    pub mechanism: u32,
    /// io_uring: the opcode of the first request seen, or
    /// [`abi::IO_URING_SETUP`] for a ring set up.
    pub detail: u32,
}

/// A decoded ring-buffer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// [`abi::EVENT_EXEC`].
    Exec(ExecRecord),
    /// [`abi::EVENT_FILE`].
    File(FileRecord),
    /// [`abi::EVENT_DNS`].
    Dns(DnsRecord),
    /// [`abi::EVENT_CONNECT`].
    Connect(ConnectRecord),
    /// [`abi::EVENT_EXIT`].
    Exit(ExitRecord),
    /// [`abi::EVENT_MECHANISM`].
    Mechanism(MechanismRecord),
}

impl Record {
    /// The common header.
    pub fn header(&self) -> &Header {
        match self {
            Record::Exec(r) => &r.header,
            Record::File(r) => &r.header,
            Record::Dns(r) => &r.header,
            Record::Connect(r) => &r.header,
            Record::Exit(r) => &r.header,
            Record::Mechanism(r) => &r.header,
        }
    }
}

/// Plain-old-data types that may be read from any bytes.
trait Pod: Copy {}
impl Pod for u8 {}
impl Pod for u16 {}
impl Pod for u32 {}
impl Pod for i32 {}
impl Pod for u64 {}
impl<const N: usize> Pod for [u8; N] {}
impl Pod for EventHeader {}

/// Read a `T` at `offset`, checking bounds; no alignment is assumed.
fn read<T: Pod>(bytes: &[u8], offset: usize) -> Option<T> {
    let end = offset.checked_add(size_of::<T>())?;
    let src = bytes.get(offset..end)?;
    // SAFETY: `src` holds exactly size_of::<T>() bytes and T is plain old
    // data (every bit pattern is valid); read_unaligned has no alignment need.
    Some(unsafe { std::ptr::read_unaligned(src.as_ptr().cast::<T>()) })
}

fn too_short(kind: u16, len: usize, need: usize) -> DecodeError {
    DecodeError::TooShort { kind, len, need }
}

/// `bytes[start .. start+len]`, or an error naming the length field.
fn slice<'a>(
    bytes: &'a [u8],
    kind: u16,
    field: &'static str,
    start: usize,
    len: usize,
) -> Result<&'a [u8], DecodeError> {
    start.checked_add(len).and_then(|end| bytes.get(start..end)).ok_or(DecodeError::LengthOutOfBounds {
        kind,
        field,
        claimed: len,
        available: bytes.len().saturating_sub(start),
    })
}

fn ip(family: u8, raw: [u8; 16]) -> Result<IpAddr, DecodeError> {
    match family {
        abi::AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        abi::AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(raw))),
        other => Err(DecodeError::UnknownFamily(other)),
    }
}

/// The header and its `size`.
fn decode_header(bytes: &[u8]) -> Result<(Header, usize), DecodeError> {
    let h: EventHeader = read(bytes, 0).ok_or_else(|| too_short(0, bytes.len(), size_of::<EventHeader>()))?;
    if h.abi_version != abi::ABI_VERSION {
        return Err(DecodeError::AbiVersion { found: h.abi_version, expected: abi::ABI_VERSION });
    }
    let comm_len = h.comm.iter().position(|&b| b == 0).unwrap_or(h.comm.len());
    let header = Header {
        kind: h.kind,
        ktime_ns: h.ktime_ns,
        cgroup_id: h.cgroup_id,
        lineage: h.lineage,
        dedup_key: h.dedup_key,
        pid: h.pid,
        tgid: h.tgid,
        ppid: h.ppid,
        uid: h.uid,
        gid: h.gid,
        flags: h.flags,
        comm: String::from_utf8_lossy(&h.comm[..comm_len]).into_owned(),
    };
    Ok((header, usize::try_from(h.size).unwrap_or(usize::MAX)))
}

/// Read field `$f` of struct `$t` from `$bytes` (length already checked).
macro_rules! get {
    ($bytes:expr, $t:ty, $f:ident) => {
        read($bytes, offset_of!($t, $f)).ok_or_else(|| too_short(0, $bytes.len(), offset_of!($t, $f)))?
    };
}

/// Decode one ring-buffer record.
///
/// The header's `size` (what the kernel emitted) bounds the record: a size
/// past the bytes received is an error, bytes after it are ignored.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let (header, size) = decode_header(bytes)?;
    let kind = header.kind;
    let bytes = bytes.get(..size).ok_or(DecodeError::SizeBeyondRecord { kind, size, len: bytes.len() })?;
    let need = |fixed: usize| {
        if bytes.len() < fixed {
            Err(too_short(kind, bytes.len(), fixed))
        } else {
            Ok(())
        }
    };
    match kind {
        abi::EVENT_EXEC => {
            let data = offset_of!(ExecEvent, data);
            need(data)?;
            let path_len: u16 = get!(bytes, ExecEvent, path_len);
            let script_len: u16 = get!(bytes, ExecEvent, script_len);
            let cwd_len: u16 = get!(bytes, ExecEvent, cwd_len);
            let args_len: u16 = get!(bytes, ExecEvent, args_len);
            let parent_lineage: u64 = get!(bytes, ExecEvent, parent_lineage);
            let mut at = data;
            let path = slice(bytes, kind, "path_len", at, path_len.into())?.to_vec();
            at += usize::from(path_len);
            let script = if header.flags & abi::FLAG_SCRIPT != 0 && script_len > 0 {
                let s = slice(bytes, kind, "script_len", at, script_len.into())?.to_vec();
                at += usize::from(script_len);
                Some(s)
            } else {
                None
            };
            let cwd = if header.flags & abi::FLAG_PATH_RELATIVE != 0 {
                let c = slice(bytes, kind, "cwd_len", at, cwd_len.into())?.to_vec();
                at += usize::from(cwd_len);
                Some(c)
            } else {
                None
            };
            let args = slice(bytes, kind, "args_len", at, args_len.into())?;
            Ok(Record::Exec(ExecRecord { header, parent_lineage, path, script, cwd, argv: split_argv(args) }))
        }
        abi::EVENT_FILE => {
            let fixed = offset_of!(FileEvent, path);
            need(fixed)?;
            let path_len: u32 = get!(bytes, FileEvent, path_len);
            let path = slice(bytes, kind, "path_len", fixed, path_len as usize)?.to_vec();
            Ok(Record::File(FileRecord {
                header,
                access: get!(bytes, FileEvent, access),
                fd: get!(bytes, FileEvent, fd),
                path,
            }))
        }
        abi::EVENT_DNS => {
            let fixed = offset_of!(DnsEvent, payload);
            need(fixed)?;
            let captured: u32 = get!(bytes, DnsEvent, captured_len);
            let payload = slice(bytes, kind, "captured_len", fixed, captured as usize)?.to_vec();
            let family: u8 = get!(bytes, DnsEvent, family);
            Ok(Record::Dns(DnsRecord {
                header,
                protocol: get!(bytes, DnsEvent, protocol),
                server: ip(family, get!(bytes, DnsEvent, daddr))?,
                port: get!(bytes, DnsEvent, dport),
                payload_len: get!(bytes, DnsEvent, payload_len),
                tcp_seq: get!(bytes, DnsEvent, tcp_seq),
                sock_cookie: get!(bytes, DnsEvent, sock_cookie),
                tcp_flags: get!(bytes, DnsEvent, tcp_flags),
                payload,
            }))
        }
        abi::EVENT_CONNECT => {
            need(size_of::<ConnectEvent>())?;
            let family: u8 = get!(bytes, ConnectEvent, family);
            Ok(Record::Connect(ConnectRecord {
                header,
                protocol: get!(bytes, ConnectEvent, protocol),
                address: ip(family, get!(bytes, ConnectEvent, addr))?,
                port: get!(bytes, ConnectEvent, port),
            }))
        }
        abi::EVENT_EXIT => {
            need(size_of::<ExitEvent>())?;
            Ok(Record::Exit(ExitRecord { header, exit_code: get!(bytes, ExitEvent, exit_code) }))
        }
        abi::EVENT_MECHANISM => {
            need(size_of::<MechanismEvent>())?;
            Ok(Record::Mechanism(MechanismRecord {
                header,
                mechanism: get!(bytes, MechanismEvent, mechanism),
                detail: get!(bytes, MechanismEvent, detail),
            }))
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

/// Split NUL-separated argv; a trailing NUL ends the last argument.
fn split_argv(raw: &[u8]) -> Vec<Vec<u8>> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
}

#[cfg(test)]
mod tests;
