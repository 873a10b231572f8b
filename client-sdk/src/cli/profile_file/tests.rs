use proptest::prelude::*;
use telltale_client::{Behaviour as SdkBehaviour, DnsEntry, EndpointEntry, FileEntry, ProcessNode};
use time::OffsetDateTime;

use super::*;

const EXAMPLE: &str = "\
apiVersion: telltale.dev/v1
kind: SecurityProfile
metadata:
  name: cws-webapp
spec:
  tags:
  - v1
  processes:
  - lineage:
    - /usr/sbin/nginx
    files:
    - pattern: /proc/{pid}/status
      access:
      - read
    - pattern: /var/log/nginx/access.log
      access:
      - read
      - write
  - lineage:
    - /usr/sbin/nginx
    - /bin/sh
    - /usr/bin/curl
    dns:
    - name: api.example.com
      type: AAAA
    connect:
    - protocol: tcp
      address: 10.0.0.5
      port: 443
    connectRanges:
    - protocol: udp
      network: 10.0.0.0/8
      port: 0
";

fn err(text: &str, file: &str) -> String {
    format!("{:#}", parse(text, file).expect_err("refused"))
}

#[test]
fn the_documented_example_reads_and_writes_back_the_same() {
    let l = parse(EXAMPLE, "web.yaml").expect("example");
    assert_eq!(l.document.metadata.name, "cws-webapp");
    assert_eq!(l.observations.len(), 7, "two execs, two files, a DNS name, an endpoint, a range");
    assert_eq!(render(&l.document, false).unwrap(), EXAMPLE);
    let json = render(&l.document, true).unwrap();
    let again = parse(&json, "-").expect("the JSON form reads too");
    assert_eq!(again.document, l.document);
}

#[test]
fn a_misspelled_key_is_refused_naming_the_key_and_the_file() {
    let e = err(&EXAMPLE.replace("connectRanges:", "connectRange:"), "web.yaml");
    assert!(e.contains("web.yaml") && e.contains("unknown field `connectRange`"), "{e}");
    let e = err(&EXAMPLE.replace("    - pattern: /proc", "    - patern: /proc"), "web.yml");
    assert!(e.contains("unknown field `patern`"), "{e}");
    let e = err(&EXAMPLE.replace("metadata:", "metdata:"), "-");
    assert!(e.contains("stdin") && e.contains("unknown field `metdata`"), "{e}");
}

#[test]
fn another_version_or_kind_is_refused_with_a_clear_message() {
    // Before its (unknown) keys: the version is what is wrong.
    let v2 = EXAMPLE.replace("telltale.dev/v1", "telltale.dev/v2").replace("  tags:", "  enforce: true\n  tags:");
    let e = err(&v2, "web.yaml");
    assert!(e.contains("web.yaml") && e.contains("apiVersion \"telltale.dev/v2\" is not supported"), "{e}");
    let e = err(&EXAMPLE.replace("kind: SecurityProfile", "kind: NotificationRule"), "web.yaml");
    assert!(e.contains("use `kind: SecurityProfile`"), "{e}");
    let e = err("name: high\ntargets: []\n", "rule.yaml");
    assert!(e.contains("apiVersion \"\" is not supported"), "{e}");
}

#[test]
fn bad_values_name_the_field() {
    let e = err(&EXAMPLE.replace("/proc/{pid}/status", "/proc/{pids}/status"), "web.yaml");
    assert!(e.contains("spec.processes[0].files[0].pattern"), "{e}");
    let e = err(&EXAMPLE.replace("port: 443", "port: 0"), "web.yaml");
    assert!(e.contains("spec.processes[1].connect[0].port"), "{e}");
    let e = err(&EXAMPLE.replace("address: 10.0.0.5", "address: db.internal"), "web.yaml");
    assert!(e.contains("web.yaml") && e.contains("invalid IP address"), "{e}");
}

#[test]
fn files_are_bounded() {
    let dir = std::env::temp_dir().join(format!("telltalectl-doc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.yaml");
    let mut text = EXAMPLE.to_owned();
    text.push_str(&format!("# {}\n", "x".repeat(MAX_BYTES as usize)));
    std::fs::write(&big, text).unwrap();
    let e = format!("{:#}", read(big.to_str().unwrap()).expect_err("too large"));
    assert!(e.contains("big.yaml") && e.contains("larger than 4 MiB"), "{e}");
    let ok = dir.join("ok.yaml");
    std::fs::write(&ok, EXAMPLE).unwrap();
    assert_eq!(read(ok.to_str().unwrap()).unwrap().observations.len(), 7);
    let e = format!("{:#}", read(dir.join("missing.yaml").to_str().unwrap()).expect_err("missing"));
    assert!(e.contains("missing.yaml"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn node(lineage: &[&str]) -> ProcessNode {
    ProcessNode {
        lineage: lineage.iter().map(|s| (*s).to_owned()).collect(),
        first_seen: OffsetDateTime::UNIX_EPOCH,
        last_seen: OffsetDateTime::UNIX_EPOCH,
        tags: vec!["v1".into()],
        files: vec![],
        dns: vec![],
        endpoints: vec![],
        mechanisms: vec![],
    }
}

#[test]
fn the_live_profile_exports_as_the_document_it_was_imported_from() {
    let live = Profile {
        image: "cws-webapp".into(),
        tags: vec!["v1".into()],
        nodes: vec![
            ProcessNode {
                files: vec![
                    FileEntry { pattern: "/proc/{pid}/status".into(), access: vec![Access::Read] },
                    FileEntry {
                        pattern: "/var/log/nginx/access.log".into(),
                        access: vec![Access::Read, Access::Write],
                    },
                    // The server shows collapsed sibling shapes too: left out.
                    FileEntry { pattern: "/var/log/nginx/report-{*}.csv".into(), access: vec![Access::Read] },
                ],
                ..node(&["/usr/sbin/nginx"])
            },
            ProcessNode {
                dns: vec![DnsEntry { name: "api.example.com".into(), qtype: "AAAA".into() }],
                endpoints: vec![
                    EndpointEntry { protocol: Protocol::Tcp, address: "10.0.0.5".into(), port: 443 },
                    EndpointEntry { protocol: Protocol::Udp, address: "10.0.0.0/8".into(), port: 0 },
                ],
                ..node(&["/usr/sbin/nginx", "/bin/sh", "/usr/bin/curl"])
            },
        ],
        status: None,
    };
    assert_eq!(render(&export(&live).unwrap(), false).unwrap(), EXAMPLE);
    let l = parse(EXAMPLE, "web.yaml").unwrap();
    let d = telltale_core::profile::document::diff(&l.observations, &live_observations(&live).unwrap());
    assert!(d.is_identical(), "{d:?}");
    // What import sends: patterns as patterns, ranges as CIDR endpoints.
    let sent = to_add(&l.observations).unwrap();
    assert_eq!(sent.len(), 7);
    assert_eq!(sent[0].behaviour, SdkBehaviour::Exec);
    assert_eq!(
        sent[1].behaviour,
        SdkBehaviour::FilePattern { pattern: "/proc/{pid}/status".into(), access: vec![Access::Read] }
    );
    assert_eq!(
        sent[6].behaviour,
        SdkBehaviour::Connect { protocol: Protocol::Udp, address: "10.0.0.0/8".into(), port: 0 }
    );
}

/// Documents as people write them: any valid values, in any order.
fn arb_yaml_document() -> impl Strategy<Value = String> {
    let exe = "/(usr/)?(bin|sbin)/[a-z][a-z0-9_-]{0,8}";
    let pattern = prop_oneof![
        "/[a-z]{1,6}(/[a-z0-9._-]{1,8}){0,3}",
        Just("/proc/{pid}/status".to_owned()),
        Just("/tmp/tmp.{rand}".to_owned()),
        Just("/x/{{num}}".to_owned()),
    ];
    let access = proptest::sample::subsequence(vec!["read", "write", "create", "truncate"], 1..=4);
    let file = (pattern, access).prop_map(|(p, a)| format!("    - pattern: '{p}'\n      access: [{}]\n", a.join(", ")));
    let dns = ("[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,6}){1,2}", prop_oneof![Just("A"), Just("AAAA"), Just("TXT")])
        .prop_map(|(n, t)| format!("    - name: {n}\n      type: {t}\n"));
    let proto = prop_oneof![Just("tcp"), Just("udp")];
    let connect = (proto.clone(), any::<[u8; 4]>(), 1u16..).prop_map(|(p, a, port)| {
        format!("    - protocol: {p}\n      address: {}.{}.{}.{}\n      port: {port}\n", a[0], a[1], a[2], a[3])
    });
    let range =
        (proto, any::<[u8; 2]>(), prop_oneof![Just(8u8), Just(16)], any::<u16>()).prop_map(|(p, a, len, port)| {
            format!("    - protocol: {p}\n      network: {}.{}.0.0/{len}\n      port: {port}\n", a[0], a[1])
        });
    let list = |key: &'static str, items: Vec<String>| {
        if items.is_empty() {
            String::new()
        } else {
            format!("    {key}:\n{}", items.concat())
        }
    };
    let process = (
        proptest::collection::vec(exe, 1..4),
        proptest::collection::vec(file, 0..3),
        proptest::collection::vec(dns, 0..3),
        proptest::collection::vec(connect, 0..3),
        proptest::collection::vec(range, 0..2),
    )
        .prop_map(move |(lineage, files, dns, connect, ranges)| {
            format!(
                "  - lineage: [{}]\n{}{}{}{}",
                lineage.join(", "),
                list("files", files),
                list("dns", dns),
                list("connect", connect),
                list("connectRanges", ranges)
            )
        });
    proptest::collection::vec(process, 0..4).prop_map(|ps| {
        let processes = if ps.is_empty() { " []\n".to_owned() } else { format!("\n{}", ps.concat()) };
        format!("apiVersion: telltale.dev/v1\nkind: SecurityProfile\nmetadata:\n  name: web\nspec:\n  processes:{processes}")
    })
}

proptest! {
    #[test]
    fn yaml_to_document_to_yaml_round_trips(yaml in arb_yaml_document()) {
        let first = match parse(&yaml, "p.yaml") {
            Ok(l) => l,
            // Generated lineages may repeat: refused, rightly.
            Err(e) if format!("{e:#}").contains("is listed twice") => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(format!("{e:#}\n{yaml}"))),
        };
        let canonical = ProfileDocument::from_observations("web", vec![], &first.observations).unwrap();
        let text = render(&canonical, false).unwrap();
        let second = parse(&text, "p.yaml").unwrap();
        prop_assert_eq!(&second.document, &canonical);
        prop_assert_eq!(render(&second.document, false).unwrap(), text.clone());
        let d = telltale_core::profile::document::diff(&first.observations, &second.observations);
        prop_assert!(d.is_identical(), "{:?}", d);
        let json = render(&canonical, true).unwrap();
        prop_assert_eq!(parse(&json, "p.json").unwrap().document, canonical);
    }
}
