//! DNS over TCP: reassembly of the stream bytes the kernel reports into
//! length-prefixed messages (RFC 1035 §4.2.2), per connection and bounded.
//!
//! The kernel reports every TCP segment to port 53 as it is (see
//! `struct tt_dns_event`): a query's 2-byte length prefix may come in a
//! segment of its own, and one segment may hold several pipelined queries.
//! [`TcpStreams`] follows each connection by its socket cookie and sequence
//! numbers: retransmitted bytes are skipped, missing bytes (a segment cut in
//! the kernel, a lost record) spoil only the message they fall in, unless
//! they fall in a length prefix: then the framing is lost and the rest of
//! that connection is ignored (counted once as malformed).
//!
//! Bounds: at most [`StreamLimits::max_streams`] connections are followed
//! (the least recently active one is evicted and counted), and at most
//! [`StreamLimits::max_message`] bytes of one message are kept: a longer
//! message is skipped by its length and counted as malformed.

use std::collections::HashMap;

use telltale_ebpf::abi;

/// How much the reassembler may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Connections followed at once.
    pub max_streams: usize,
    /// Bytes of one message kept (a longer message is malformed).
    pub max_message: usize,
}

impl Default for StreamLimits {
    /// 512 connections × 4 KiB: at most 2 MiB buffered.
    fn default() -> Self {
        Self { max_streams: 512, max_message: 4096 }
    }
}

/// One record of stream bytes, as the kernel reported it.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// The socket cookie: which connection.
    pub stream: u64,
    /// Sequence number of `bytes[0]`.
    pub seq: u32,
    /// Stream bytes this record covers from `seq` on; more than
    /// `bytes.len()` when the kernel left the rest out.
    pub len: u32,
    /// The captured bytes.
    pub bytes: &'a [u8],
    /// `abi::TCP_*` flags.
    pub flags: u8,
}

/// What the reassembler counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCounts {
    /// Messages that could not be recovered: bytes missing, longer than
    /// the bound, empty, cut by the end of the connection or its eviction,
    /// or a connection whose framing was lost.
    pub malformed: u64,
    /// Connections evicted to stay within [`StreamLimits::max_streams`].
    pub evicted: u64,
}

/// Where the parser is in a connection's stream.
#[derive(Debug)]
enum Frame {
    /// Expecting a length prefix; its first byte if one came already.
    Prefix(Option<u8>),
    /// Inside a message of `len` bytes, `seen` of them consumed.
    Body {
        /// Announced length.
        len: usize,
        /// Bytes consumed so far (kept or not).
        seen: usize,
        /// The kept bytes (at most the message bound).
        buf: Vec<u8>,
        /// False once a byte was missing or beyond the bound.
        intact: bool,
    },
    /// The framing is lost: the rest of the connection is ignored.
    Lost,
}

impl Frame {
    /// Does stopping here lose (part of) a message?
    fn mid_message(&self) -> bool {
        matches!(self, Frame::Prefix(Some(_)) | Frame::Body { .. })
    }
}

#[derive(Debug)]
struct Stream {
    /// Sequence number of the next byte expected.
    next_seq: u32,
    frame: Frame,
    /// When it was last fed (a counter), for eviction.
    last_used: u64,
}

/// Gaps larger than this are not believed: the connection is lost.
const MAX_GAP: u32 = 1 << 20;

/// Per-connection reassembly of DNS-over-TCP streams.
#[derive(Debug, Default)]
pub struct TcpStreams {
    limits: StreamLimits,
    streams: HashMap<u64, Stream>,
    tick: u64,
    counts: StreamCounts,
}

impl TcpStreams {
    /// An empty reassembler with these bounds.
    pub fn new(limits: StreamLimits) -> Self {
        Self { limits, ..Self::default() }
    }

    /// What was counted so far.
    pub fn counts(&self) -> StreamCounts {
        self.counts
    }

    /// Connections followed now.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// True if no connection is followed.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Bytes held in message buffers now (their capacity).
    pub fn buffered(&self) -> usize {
        self.streams.values().map(|s| if let Frame::Body { buf, .. } = &s.frame { buf.capacity() } else { 0 }).sum()
    }

    /// Feed one record; returns the complete messages it finished, in
    /// stream order (without their length prefixes).
    pub fn feed(&mut self, seg: Segment<'_>) -> Vec<Vec<u8>> {
        self.tick += 1;
        let tick = self.tick;
        let syn = seg.flags & abi::TCP_SYN != 0;
        let end = seg.flags & (abi::TCP_FIN | abi::TCP_RST) != 0;
        if syn {
            // A new connection (or the cookie reused): start over.
            if let Some(old) = self.streams.remove(&seg.stream) {
                self.count_cut(&old.frame);
            }
        }
        if !self.streams.contains_key(&seg.stream) {
            if end && seg.len == 0 {
                return Vec::new();
            }
            self.make_room();
            let stream = Stream { next_seq: seg.seq, frame: Frame::Prefix(None), last_used: tick };
            self.streams.insert(seg.stream, stream);
        }
        let limits = self.limits;
        let mut out = Vec::new();
        let mut malformed = 0;
        if let Some(s) = self.streams.get_mut(&seg.stream) {
            s.last_used = tick;
            let mut bytes = seg.bytes.get(..seg.len as usize).unwrap_or(seg.bytes);
            let mut len = seg.len;
            let ahead = seg.seq.wrapping_sub(s.next_seq);
            if ahead > u32::MAX / 2 {
                // Starts before what was consumed: a retransmission.
                let behind = ahead.wrapping_neg();
                len = len.saturating_sub(behind);
                bytes = bytes.get(behind as usize..).unwrap_or_default();
            } else if ahead > 0 {
                malformed += gap(&mut s.frame, ahead);
                s.next_seq = seg.seq;
            }
            if len > 0 {
                malformed += push(&mut s.frame, bytes, limits, &mut out);
                let missing = len - bytes.len().min(len as usize) as u32;
                malformed += gap(&mut s.frame, missing);
                s.next_seq = s.next_seq.wrapping_add(len);
            }
        }
        self.counts.malformed += malformed;
        if end {
            if let Some(old) = self.streams.remove(&seg.stream) {
                self.count_cut(&old.frame);
            }
        }
        out
    }

    /// Count a message left unfinished by the end of its connection.
    fn count_cut(&mut self, frame: &Frame) {
        if frame.mid_message() {
            self.counts.malformed += 1;
        }
    }

    /// Evict the least recently used connection if the table is full.
    fn make_room(&mut self) {
        while self.streams.len() >= self.limits.max_streams.max(1) {
            let Some(oldest) = self.streams.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| *k) else {
                return;
            };
            if let Some(old) = self.streams.remove(&oldest) {
                self.counts.evicted += 1;
                self.count_cut(&old.frame);
            }
        }
    }
}

/// `n` bytes of the stream are missing. Returns messages lost.
fn gap(frame: &mut Frame, mut n: u32) -> u64 {
    let mut malformed = 0;
    while n > 0 {
        match frame {
            Frame::Lost => return malformed,
            Frame::Prefix(_) => {
                *frame = Frame::Lost;
                return malformed + 1;
            }
            Frame::Body { .. } if n > MAX_GAP => {
                *frame = Frame::Lost;
                return malformed + 1;
            }
            Frame::Body { len, seen, intact, .. } => {
                let take = (*len - *seen).min(n as usize);
                *seen += take;
                *intact = false;
                n -= take as u32;
                if *seen == *len {
                    *frame = Frame::Prefix(None);
                    malformed += 1;
                }
            }
        }
    }
    malformed
}

/// Consume captured bytes; complete messages go to `out`. Returns
/// messages lost.
fn push(frame: &mut Frame, mut bytes: &[u8], limits: StreamLimits, out: &mut Vec<Vec<u8>>) -> u64 {
    let mut malformed = 0;
    while let Some((&first, rest)) = bytes.split_first() {
        match frame {
            Frame::Lost => return malformed,
            Frame::Prefix(None) => {
                *frame = Frame::Prefix(Some(first));
                bytes = rest;
            }
            Frame::Prefix(Some(hi)) => {
                let len = usize::from(u16::from_be_bytes([*hi, first]));
                bytes = rest;
                *frame = if len == 0 {
                    malformed += 1;
                    Frame::Prefix(None)
                } else {
                    let intact = len <= limits.max_message;
                    Frame::Body { len, seen: 0, buf: Vec::with_capacity(if intact { len } else { 0 }), intact }
                };
            }
            Frame::Body { len, seen, buf, intact } => {
                let take = (*len - *seen).min(bytes.len());
                if *intact {
                    buf.extend_from_slice(&bytes[..take]);
                }
                *seen += take;
                bytes = &bytes[take..];
                if *seen == *len {
                    if *intact {
                        out.push(std::mem::take(buf));
                    } else {
                        malformed += 1;
                    }
                    *frame = Frame::Prefix(None);
                }
            }
        }
    }
    malformed
}

#[cfg(test)]
mod tests;
