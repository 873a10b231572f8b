//! DNS query parsing (hickory-proto) of payloads captured in the kernel.

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
}

/// Parse a DNS query message into its questions.
///
/// Names are lower-cased ASCII (non-printable bytes escaped as `\DDD`)
/// without the trailing dot; the root is `.`.
pub fn parse_query(payload: &[u8]) -> Result<Vec<DnsQuestion>, DnsParseError> {
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
    fn compression_loops_are_rejected() {
        // Question name is a pointer to itself.
        let b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
        assert!(parse_query(&b).is_err());
    }
}
