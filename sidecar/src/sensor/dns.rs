//! DNS query parsing (hickory-proto) of payloads captured in the kernel,
//! and reassembly of DNS-over-TCP streams ([`stream`]).

pub mod stream;

use hickory_proto::op::{Message, MessageType};

use telltale_core::event::DnsQuestion;

/// Why a captured payload is not a usable DNS query.
#[derive(Debug, thiserror::Error)]
pub enum DnsParseError {
    /// The bytes are not a DNS message.
    #[error("malformed DNS message: {0}")]
    Malformed(#[source] hickory_proto::ProtoError),
    /// A response (QR=1) sent to port 53.
    #[error("DNS message is a response, not a query")]
    NotAQuery,
    /// A query without questions.
    #[error("DNS query has no questions")]
    NoQuestions,
    /// The header announces more questions and records than the payload
    /// could hold (refused before the decoder sizes anything by them).
    #[error("DNS header announces {questions} questions and {records} records, more than {len} bytes can hold")]
    CountsExceedPayload {
        /// QDCOUNT.
        questions: usize,
        /// ANCOUNT + NSCOUNT + ARCOUNT.
        records: usize,
        /// Payload bytes.
        len: usize,
    },
}

/// Size of the DNS header.
const HEADER_LEN: usize = 12;
/// The smallest question: the root name (1 byte), QTYPE and QCLASS.
const MIN_QUESTION_LEN: usize = 5;
/// The smallest resource record: the root name, TYPE, CLASS, TTL, RDLENGTH.
const MIN_RECORD_LEN: usize = 11;

/// Parse a DNS query message into its questions.
///
/// Names are lower-cased ASCII without the trailing dot; the root is `.`.
/// Label bytes that are not plain hostname characters are escaped the way
/// hickory writes them: `\.` for a dot inside a label, `\c` for another
/// printable character, `\ooo` (three *octal* digits) for any other byte.
///
/// The header's counts are checked against the payload's size first: the
/// decoder reserves room for as many entries as the header announces, so a
/// 12-byte packet could otherwise make it allocate megabytes. A parsed query
/// has at most `(payload.len() - 12) / 5` questions.
pub fn parse_query(payload: &[u8]) -> Result<Vec<DnsQuestion>, DnsParseError> {
    counts_fit(payload)?;
    let message = Message::from_vec(payload).map_err(DnsParseError::Malformed)?;
    if message.message_type() != MessageType::Query {
        return Err(DnsParseError::NotAQuery);
    }
    if message.queries().is_empty() {
        return Err(DnsParseError::NoQuestions);
    }
    Ok(message
        .queries()
        .iter()
        .map(|q| {
            let ascii = q.name().to_lowercase().to_ascii();
            let name = match ascii.strip_suffix('.') {
                Some("") | None => ascii.clone(),
                Some(stripped) => stripped.to_owned(),
            };
            DnsQuestion { name, qtype: q.query_type().to_string() }
        })
        .collect())
}

/// Can the payload hold the entries its header announces, at their smallest?
/// A payload too short for a header is left to the decoder to refuse.
fn counts_fit(payload: &[u8]) -> Result<(), DnsParseError> {
    let Some(&[qd0, qd1, an0, an1, ns0, ns1, ar0, ar1]) = payload.get(4..HEADER_LEN) else {
        return Ok(());
    };
    let count = |hi, lo| usize::from(u16::from_be_bytes([hi, lo]));
    let questions = count(qd0, qd1);
    let records = count(an0, an1) + count(ns0, ns1) + count(ar0, ar1);
    if HEADER_LEN + questions * MIN_QUESTION_LEN + records * MIN_RECORD_LEN > payload.len() {
        return Err(DnsParseError::CountsExceedPayload { questions, records, len: payload.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};

    fn query(names: &[(&str, RecordType)]) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0x1234).set_message_type(MessageType::Query).set_recursion_desired(true);
        for (n, t) in names {
            m.add_query(Query::query(Name::from_ascii(n).expect("name"), *t));
        }
        m.to_vec().expect("encode")
    }

    #[test]
    fn parses_every_question() {
        let q = parse_query(&query(&[("Example.COM.", RecordType::A), ("exfil.evil.test", RecordType::TXT)]))
            .expect("parses");
        assert_eq!(
            q,
            vec![
                DnsQuestion { name: "example.com".into(), qtype: "A".into() },
                DnsQuestion { name: "exfil.evil.test".into(), qtype: "TXT".into() },
            ]
        );
    }

    #[test]
    fn rejects_garbage_truncation_and_responses() {
        assert!(matches!(parse_query(&[]), Err(DnsParseError::Malformed(_))));
        assert!(matches!(parse_query(&[0xff; 7]), Err(DnsParseError::Malformed(_))));
        let full = query(&[("example.com", RecordType::AAAA)]);
        assert!(matches!(parse_query(&full[..full.len() - 3]), Err(DnsParseError::Malformed(_))));
        let mut response = full.clone();
        response[2] |= 0x80;
        assert!(matches!(parse_query(&response), Err(DnsParseError::NotAQuery)));
        let mut none = full.clone();
        none[4] = 0;
        none[5] = 0;
        assert!(matches!(parse_query(&none[..12]), Err(DnsParseError::NoQuestions)));
    }

    #[test]
    fn hostile_labels_are_escaped_not_fatal() {
        // A label with a newline, a NUL and a dot inside: compression-free
        // wire format written by hand.
        let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&[5, b'a', b'\n', 0, b'.', b'b', 4, b't', b'e', b's', b't', 0, 0, 16, 0, 1]);
        let q = parse_query(&b).expect("parses");
        assert_eq!(q.len(), 1);
        assert!(!q[0].name.contains('\n'), "{:?}", q[0].name);
        assert!(!q[0].name.contains('\0'), "{:?}", q[0].name);
        assert_eq!(q[0].qtype, "TXT");
    }

    #[test]
    fn labels_that_are_not_utf8_stay_apart() {
        // One question, its name given as wire labels.
        let name_of = |labels: &[&[u8]]| {
            let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            for l in labels {
                b.push(u8::try_from(l.len()).unwrap());
                b.extend_from_slice(l);
            }
            b.extend_from_slice(&[0, 0, 1, 0, 1]);
            parse_query(&b).expect("parses").remove(0).name
        };
        let names = [
            name_of(&[b"a\xff", b"test"]),
            name_of(&[b"a\xfe", b"test"]),
            name_of(&[b"a\\377", b"test"]),
            name_of(&[b"a\\xff", b"test"]),
            name_of(&[b"A\xff", b"test"]),
            name_of(&[b"a\xff.test"]),
        ];
        assert_eq!(
            names,
            ["a\\377.test", "a\\376.test", "a\\\\377.test", "a\\\\xff.test", "a\\377.test", "a\\377\\.test"]
        );
        // Display keeps them apart too.
        let shown: Vec<String> = names.iter().map(|n| telltale_core::text::escape(n).into_owned()).collect();
        assert_eq!(shown, names);
    }

    #[test]
    fn compression_loops_are_rejected() {
        // Question name is a pointer to itself.
        let b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
        assert!(parse_query(&b).is_err());
    }

    #[test]
    fn header_counts_beyond_the_payload_are_refused_before_decoding() {
        let header = [0x12, 0x34, 0x01, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            parse_query(&header),
            Err(DnsParseError::CountsExceedPayload { questions: 65535, records: 0, len: 12 })
        ));
        let mut full = query(&[("example.com", RecordType::A)]);
        full[6] = 0xff;
        full[7] = 0xff;
        let len = full.len();
        let e = parse_query(&full).unwrap_err();
        assert!(matches!(e, DnsParseError::CountsExceedPayload { questions: 1, records: 65535, len: l } if l == len));
        assert!(e.to_string().contains("65535 records"), "{e}");
        // A question for the root is the smallest (5 bytes); announce one
        // additional record and add its bytes one at a time.
        let mut full = query(&[(".", RecordType::A)]);
        assert_eq!(full.len(), HEADER_LEN + MIN_QUESTION_LEN);
        full[11] = 1;
        assert!(matches!(parse_query(&full), Err(DnsParseError::CountsExceedPayload { records: 1, .. })));
        full.extend_from_slice(&[0; MIN_RECORD_LEN - 1]);
        assert!(matches!(parse_query(&full), Err(DnsParseError::CountsExceedPayload { records: 1, .. })));
        full.push(0);
        assert!(!matches!(parse_query(&full), Err(DnsParseError::CountsExceedPayload { .. })));
    }

    mod fuzz {
        //! Property-based tests of the parser on hostile payloads.

        use proptest::collection::vec;
        use proptest::prelude::*;

        use super::*;

        fn config() -> ProptestConfig {
            ProptestConfig { cases: 512, ..ProptestConfig::default() }
        }

        /// What every outcome must satisfy, whatever the payload.
        fn check(payload: &[u8]) -> Result<(), TestCaseError> {
            let Ok(questions) = parse_query(payload) else { return Ok(()) };
            prop_assert!(!questions.is_empty());
            prop_assert!(payload.len() >= HEADER_LEN);
            prop_assert!(
                questions.len() <= (payload.len() - HEADER_LEN) / MIN_QUESTION_LEN,
                "{} questions in {} bytes",
                questions.len(),
                payload.len()
            );
            prop_assert_eq!(questions.len(), usize::from(u16::from_be_bytes([payload[4], payload[5]])));
            for q in &questions {
                prop_assert!(!q.name.is_empty());
                prop_assert!(q.name.is_ascii(), "{:?}", q.name);
                prop_assert!(!q.name.chars().any(|c| c.is_ascii_control() || c.is_ascii_uppercase()), "{:?}", q.name);
                prop_assert!(q.name == "." || !q.name.starts_with('.'), "{:?}", q.name);
            }
            Ok(())
        }

        /// A hostname label.
        fn label() -> impl Strategy<Value = String> {
            "[a-zA-Z0-9_][a-zA-Z0-9_-]{0,19}"
        }

        fn record_type() -> impl Strategy<Value = RecordType> {
            prop_oneof![
                proptest::sample::select(vec![
                    RecordType::A,
                    RecordType::AAAA,
                    RecordType::TXT,
                    RecordType::MX,
                    RecordType::CNAME,
                    RecordType::PTR,
                    RecordType::SRV,
                    RecordType::NS,
                    RecordType::SOA,
                    RecordType::ANY,
                    RecordType::HTTPS,
                ]),
                any::<u16>().prop_map(RecordType::from),
            ]
        }

        /// Questions of a valid query: (labels, type).
        fn questions() -> impl Strategy<Value = Vec<(Vec<String>, RecordType)>> {
            vec((vec(label(), 1..5), record_type()), 1..4)
        }

        fn encode(questions: &[(Name, RecordType)]) -> Vec<u8> {
            let mut m = Message::new();
            m.set_id(7).set_message_type(MessageType::Query).set_recursion_desired(true);
            for (name, t) in questions {
                m.add_query(Query::query(name.clone(), *t));
            }
            m.to_vec().unwrap()
        }

        fn encode_ascii(questions: &[(Vec<String>, RecordType)]) -> Vec<u8> {
            let named: Vec<(Name, RecordType)> =
                questions.iter().map(|(labels, t)| (Name::from_ascii(labels.join(".")).unwrap(), *t)).collect();
            encode(&named)
        }

        /// A header a decoder gets past (QR=0, small counts) and a body of
        /// name-shaped pieces: labels, ends of names, compression pointers
        /// (also to themselves and forward), type/class pairs, stray bytes.
        fn plausible() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                vec(any::<u8>(), 1..8).prop_map(|l| [vec![l.len() as u8], l].concat()),
                Just(vec![0]),
                Just(vec![0, 1, 0, 1]),
                any::<u8>().prop_map(|to| vec![0xc0, to]),
                any::<[u8; 2]>().prop_map(|b| b.to_vec()),
                any::<u8>().prop_map(|b| vec![b]),
            ];
            let records = || prop_oneof![4 => Just(0u8), 1 => 1u8..3];
            (any::<[u8; 4]>(), 0u8..4, records(), records(), records(), vec(piece, 0..16)).prop_map(
                |(mut head, qd, an, ns, ar, body)| {
                    head[2] &= 0x7f;
                    let mut b = head.to_vec();
                    b.extend_from_slice(&[0, qd, 0, an, 0, ns, 0, ar]);
                    b.extend_from_slice(&body.concat());
                    b
                },
            )
        }

        /// The labels of a name as [`parse_query`] writes it: labels split
        /// at unescaped dots, `\c` for a printable character, `\ooo` (three
        /// octal digits, hickory's escape) for any other byte.
        fn unescape(name: &str) -> Option<Vec<Vec<u8>>> {
            if name == "." {
                return Some(Vec::new());
            }
            let mut labels = vec![Vec::new()];
            let mut bytes = name.bytes();
            while let Some(b) = bytes.next() {
                match b {
                    b'.' => labels.push(Vec::new()),
                    b'\\' => {
                        let first = bytes.next()?;
                        let byte = if first.is_ascii_digit() {
                            let digits = [first, bytes.next()?, bytes.next()?];
                            u8::from_str_radix(std::str::from_utf8(&digits).ok()?, 8).ok()?
                        } else {
                            first
                        };
                        labels.last_mut()?.push(byte);
                    }
                    _ => labels.last_mut()?.push(b),
                }
            }
            Some(labels)
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn arbitrary_payloads_never_panic(payload in vec(any::<u8>(), 0..600)) {
                check(&payload)?;
            }

            #[test]
            fn plausible_headers_with_garbage_never_panic(payload in plausible()) {
                check(&payload)?;
            }

            #[test]
            fn mutated_queries_never_panic(
                questions in questions(),
                edits in vec((any::<proptest::sample::Index>(), any::<u8>()), 1..6),
            ) {
                let mut payload = encode_ascii(&questions);
                for (at, byte) in edits {
                    let i = at.index(payload.len());
                    payload[i] = byte;
                }
                check(&payload)?;
            }

            #[test]
            fn valid_queries_parse_back(questions in questions()) {
                let payload = encode_ascii(&questions);
                let parsed = parse_query(&payload).unwrap();
                let expected: Vec<DnsQuestion> = questions
                    .iter()
                    .map(|(labels, t)| DnsQuestion { name: labels.join(".").to_ascii_lowercase(), qtype: t.to_string() })
                    .collect();
                prop_assert_eq!(parsed, expected);
                check(&payload)?;
            }

            /// Any label bytes (dots, NULs, newlines, high bytes) come back
            /// escaped, and the escaped name reads back as the same labels:
            /// `a.b` as one label cannot pass for two.
            #[test]
            fn binary_labels_are_escaped_unambiguously(
                labels in vec(vec(any::<u8>(), 1..=63), 1..4),
                t in record_type(),
            ) {
                let name = Name::from_labels(labels.clone()).unwrap();
                let payload = encode(&[(name, t)]);
                let parsed = parse_query(&payload).unwrap();
                prop_assert_eq!(parsed.len(), 1);
                check(&payload)?;
                let back = unescape(&parsed[0].name);
                let lower: Vec<Vec<u8>> = labels.iter().map(|l| l.to_ascii_lowercase()).collect();
                prop_assert_eq!(back, Some(lower), "{:?}", parsed[0].name);
            }

            #[test]
            fn truncations_are_refused(questions in questions()) {
                let payload = encode_ascii(&questions);
                for cut in 0..payload.len() {
                    match parse_query(&payload[..cut]) {
                        Err(DnsParseError::Malformed(_) | DnsParseError::CountsExceedPayload { .. }) => {}
                        other => prop_assert!(false, "{} of {} bytes: {:?}", cut, payload.len(), other),
                    }
                }
            }
        }
    }
}
