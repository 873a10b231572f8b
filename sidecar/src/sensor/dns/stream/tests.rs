use super::*;

use proptest::collection::vec;
use proptest::prelude::*;

/// Messages with their 2-byte length prefixes, back to back.
fn framed(messages: &[Vec<u8>]) -> Vec<u8> {
    messages.iter().flat_map(|m| (m.len() as u16).to_be_bytes().into_iter().chain(m.iter().copied())).collect()
}

fn seg(stream: u64, seq: u32, bytes: &[u8]) -> Segment<'_> {
    Segment { stream, seq, len: bytes.len() as u32, bytes, flags: 0 }
}

fn flag(stream: u64, seq: u32, flags: u8) -> Segment<'static> {
    Segment { stream, seq, len: 0, bytes: &[], flags }
}

#[test]
fn a_length_prefix_in_its_own_segment() {
    let mut s = TcpStreams::new(StreamLimits::default());
    let q = b"query-one".to_vec();
    let all = framed(std::slice::from_ref(&q));
    assert!(s.feed(flag(7, 1000, abi::TCP_SYN)).is_empty());
    assert!(s.feed(seg(7, 1000, &all[..2])).is_empty());
    assert_eq!(s.feed(seg(7, 1002, &all[2..])), vec![q]);
    assert!(s.feed(flag(7, 1000 + all.len() as u32, abi::TCP_FIN)).is_empty());
    assert_eq!(s.counts(), StreamCounts::default());
    assert!(s.is_empty(), "a FIN forgets the connection");
}

#[test]
fn pipelined_queries_in_one_segment() {
    let mut s = TcpStreams::new(StreamLimits::default());
    let (a, b) = (b"first".to_vec(), b"second!".to_vec());
    let all = framed(&[a.clone(), b.clone()]);
    assert_eq!(s.feed(seg(1, 5, &all)), vec![a, b]);
    assert_eq!(s.counts(), StreamCounts::default());
}

#[test]
fn retransmissions_are_not_repeated() {
    let mut s = TcpStreams::new(StreamLimits::default());
    let (a, b) = (b"aaaa".to_vec(), b"bbbbbb".to_vec());
    let all = framed(&[a.clone(), b.clone()]);
    assert_eq!(s.feed(seg(1, u32::MAX - 3, &all[..7])), vec![a]);
    // The whole stream again: only the new bytes count (across the wrap).
    assert_eq!(s.feed(seg(1, u32::MAX - 3, &all)), vec![b]);
    assert!(s.feed(seg(1, u32::MAX - 3, &all)).is_empty());
    assert_eq!(s.counts(), StreamCounts::default());
}

#[test]
fn missing_bytes_spoil_one_message_or_the_framing() {
    let mut s = TcpStreams::new(StreamLimits::default());
    let (a, b) = (vec![1u8; 40], vec![2u8; 30]);
    let all = framed(&[a, b.clone()]);
    // The kernel captured 10 of the first 42 bytes: the first message is
    // lost, the second one is whole.
    let cut = Segment { stream: 3, seq: 0, len: 42, bytes: &all[..10], flags: 0 };
    assert!(s.feed(cut).is_empty());
    assert_eq!(s.feed(seg(3, 42, &all[42..])), vec![b.clone()]);
    assert_eq!(s.counts().malformed, 1);
    // A gap over a length prefix loses the framing: nothing more from it.
    let next = framed(&[b.clone(), b.clone()]);
    assert!(s.feed(seg(3, 42 + 32 + 1, &next[1..])).is_empty());
    assert!(s.feed(seg(3, 42 + 32 + next.len() as u32, &next)).is_empty());
    assert_eq!(s.counts().malformed, 2);
    // A new connection (SYN) on the same cookie starts over.
    s.feed(flag(3, 9, abi::TCP_SYN));
    assert_eq!(s.feed(seg(3, 9, &next)), vec![b.clone(), b]);
}

#[test]
fn oversized_and_empty_messages_are_skipped_by_their_length() {
    let mut s = TcpStreams::new(StreamLimits { max_streams: 4, max_message: 16 });
    let big = vec![9u8; 17];
    let ok = vec![1u8; 16];
    let mut all = framed(&[big]);
    all.extend_from_slice(&[0, 0]);
    all.extend(framed(std::slice::from_ref(&ok)));
    assert_eq!(s.feed(seg(1, 0, &all)), vec![ok]);
    assert_eq!(s.counts().malformed, 2);
    assert_eq!(s.buffered(), 0);
}

#[test]
fn the_least_recent_connection_is_evicted_and_counted() {
    let mut s = TcpStreams::new(StreamLimits { max_streams: 2, max_message: 64 });
    let all = framed(&[b"xyz".to_vec()]);
    s.feed(seg(1, 0, &all[..3])); // mid-message
    s.feed(seg(2, 0, &all[..1]));
    s.feed(seg(1, 3, &all[3..4])); // 1 is now the more recent
    assert_eq!(s.feed(seg(3, 0, &all)), vec![b"xyz".to_vec()]);
    assert_eq!(s.len(), 2);
    assert_eq!(s.counts(), StreamCounts { malformed: 1, evicted: 1 });
    assert_eq!(s.feed(seg(1, 4, &all[4..])), vec![b"xyz".to_vec()], "1 was kept");
}

#[test]
fn an_end_mid_message_is_counted() {
    let mut s = TcpStreams::new(StreamLimits::default());
    let all = framed(&[b"abc".to_vec()]);
    s.feed(seg(1, 0, &all[..4]));
    s.feed(Segment { stream: 1, seq: 4, len: 0, bytes: &[], flags: abi::TCP_RST });
    assert_eq!(s.counts().malformed, 1);
    assert!(s.is_empty());
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, ..ProptestConfig::default() }
}

/// Cut `bytes` at the given fractions into consecutive (offset, bytes).
fn split(bytes: &[u8], cuts: &[prop::sample::Index]) -> Vec<(usize, Vec<u8>)> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| (w[0], bytes[w[0]..w[1]].to_vec())).collect()
}

proptest! {
    #![proptest_config(config())]

    /// Any split of a stream of length-prefixed messages into segments,
    /// from any initial sequence number, with any earlier segments sent
    /// again, yields exactly those messages, in order.
    #[test]
    fn any_split_yields_every_message(
        messages in vec(vec(any::<u8>(), 1..600), 1..8),
        cuts in vec(any::<prop::sample::Index>(), 0..24),
        isn in any::<u32>(),
        syn in any::<bool>(),
        again in vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let stream = framed(&messages);
        let parts = split(&stream, &cuts);
        let mut s = TcpStreams::new(StreamLimits::default());
        let mut got = Vec::new();
        if syn {
            prop_assert!(s.feed(flag(9, isn, abi::TCP_SYN)).is_empty());
        }
        for (i, (off, bytes)) in parts.iter().enumerate() {
            got.extend(s.feed(seg(9, isn.wrapping_add(*off as u32), bytes)));
            for a in &again {
                let (off, bytes) = &parts[a.index(i + 1)];
                got.extend(s.feed(seg(9, isn.wrapping_add(*off as u32), bytes)));
            }
        }
        s.feed(flag(9, isn.wrapping_add(stream.len() as u32), abi::TCP_FIN));
        prop_assert_eq!(got, messages);
        prop_assert_eq!(s.counts(), StreamCounts::default());
        prop_assert!(s.is_empty());
    }

    /// Two connections interleaved segment by segment keep apart.
    #[test]
    fn interleaved_connections_keep_apart(
        a in vec(vec(any::<u8>(), 1..100), 1..5),
        b in vec(vec(any::<u8>(), 1..100), 1..5),
        cuts_a in vec(any::<prop::sample::Index>(), 0..10),
        cuts_b in vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let (sa, sb) = (framed(&a), framed(&b));
        let (pa, pb) = (split(&sa, &cuts_a), split(&sb, &cuts_b));
        let mut s = TcpStreams::new(StreamLimits::default());
        let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
        for i in 0..pa.len().max(pb.len()) {
            if let Some((off, bytes)) = pa.get(i) {
                got_a.extend(s.feed(seg(1, 100 + *off as u32, bytes)));
            }
            if let Some((off, bytes)) = pb.get(i) {
                got_b.extend(s.feed(seg(2, 7 + *off as u32, bytes)));
            }
        }
        prop_assert_eq!(got_a, a);
        prop_assert_eq!(got_b, b);
    }

    /// Arbitrary records never panic, and what is held stays within the
    /// bounds: connections, bytes per connection, and every message given
    /// out is one the bounds allow.
    #[test]
    fn arbitrary_records_stay_bounded(
        records in vec(
            (0u64..12, any::<u32>(), 0u32..3000, vec(any::<u8>(), 0..700), any::<u8>(), any::<bool>()),
            0..200,
        ),
    ) {
        let limits = StreamLimits { max_streams: 8, max_message: 256 };
        let mut s = TcpStreams::new(limits);
        let mut last_seq: HashMap<u64, u32> = HashMap::new();
        for (stream, seq, len, bytes, flags, follow) in records {
            // Half the time continue where the connection was: realistic
            // streams, not only noise.
            let seq = if follow { last_seq.get(&stream).copied().unwrap_or(seq) } else { seq };
            let len = len.max(bytes.len() as u32);
            let out = s.feed(Segment { stream, seq, len, bytes: &bytes, flags });
            last_seq.insert(stream, seq.wrapping_add(len));
            prop_assert!(out.iter().all(|m| !m.is_empty() && m.len() <= limits.max_message));
            prop_assert!(s.len() <= limits.max_streams);
            prop_assert!(s.buffered() <= limits.max_streams * limits.max_message);
        }
    }
}
