use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use telltale_core::event::Protocol;

use super::*;

fn exec(lineage: &[&str]) -> Observation {
    Observation { lineage: lineage.iter().map(|s| (*s).to_owned()).collect(), behaviour: Behaviour::Exec }
}

fn file(pattern: &str, access: u8) -> Observation {
    Observation {
        lineage: vec!["/app/server".to_owned()],
        behaviour: Behaviour::File { pattern: pattern.to_owned(), access },
    }
}

#[test]
fn key_names() {
    let l = Layout::new("/telltale/v1/", "prod");
    assert_eq!(l.profiles(), "/telltale/v1/prod/profiles/");
    assert_eq!(l.image("cws-webapp"), "/telltale/v1/prod/profiles/cws-webapp/");
    assert_eq!(l.behaviour("cws-webapp", "ab12"), "/telltale/v1/prod/profiles/cws-webapp/b/ab12");
    assert_eq!(l.clock("cws-webapp", EventType::Dns), "/telltale/v1/prod/profiles/cws-webapp/clock/dns");
}

#[test]
fn keys_parse_back_and_strangers_are_ignored() {
    let l = Layout::new("/telltale/v1/", "prod");
    let h = behaviour_hash(&exec(&["/bin/sh"]));
    assert_eq!(
        l.parse(l.behaviour("web", &h).as_bytes()),
        Some(Key::Behaviour { image: "web".to_owned(), hash: h.clone() })
    );
    assert_eq!(
        l.parse(l.clock("web", EventType::Connect).as_bytes()),
        Some(Key::Clock { image: "web".to_owned(), event_type: EventType::Connect })
    );
    for other in [
        format!("/telltale/v1/staging/profiles/web/b/{h}"),
        format!("/telltale/v1/prod/profiles/web/b/{}", h.to_uppercase()),
        "/telltale/v1/prod/profiles/web/b/abc".to_owned(),
        "/telltale/v1/prod/profiles/web/clock/syscalls".to_owned(),
        "/telltale/v1/prod/profiles/web/tags/v2".to_owned(),
        "/telltale/v1/prod/profiles/Web/clock/dns".to_owned(),
        "/telltale/v1/prod/profiles/web".to_owned(),
    ] {
        assert_eq!(l.parse(other.as_bytes()), None, "{other}");
    }
    assert_eq!(l.parse(b"/telltale/v1/prod/profiles/web/clock/\xff"), None);
}

#[test]
fn prefix_ends() {
    assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
    assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
    assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
}

#[test]
fn image_names() {
    for ok in ["cws-webapp", "python3.11", "a", "x_y+z", &"a".repeat(255)] {
        assert_eq!(check_image(ok), Ok(()), "{ok}");
    }
    for bad in ["", "Web", "a/b", ".", "..", "a b", "ü", &"a".repeat(256)] {
        assert!(check_image(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn access_bits_split_into_one_observation_each() {
    let split = split_access(&file("/data/*", 1 | 4 | 8));
    assert_eq!(split, vec![file("/data/*", 1), file("/data/*", 4), file("/data/*", 8)]);
    assert_eq!(split_access(&file("/data/x", 2)), vec![file("/data/x", 2)]);
    assert_eq!(split_access(&file("/data/x", 0)), vec![file("/data/x", 0)]);
    assert_eq!(split_access(&exec(&["/bin/sh"])), vec![exec(&["/bin/sh"])]);
}

#[test]
fn the_hash_is_the_v1_wire_format() {
    // Pinned (computed independently from the format described on
    // `behaviour_hash`): a change re-keys every fleet profile.
    assert_eq!(
        behaviour_hash(&exec(&["/app/entrypoint", "/usr/bin/curl"])),
        "128d0665eafc6b881f56f271494c183015759e5c926622502700a650942cb659"
    );
    assert_eq!(
        behaviour_hash(&file("/etc/hosts", 1)),
        "de46dd0acd6ccce60d7d57f3bb8875606dd5a2a7f4d5847dbfea34f56bac4992"
    );
}

#[test]
fn the_hash_separates_what_a_profile_separates() {
    let distinct = [
        exec(&["/a/b"]),
        exec(&["/a", "/b"]),
        exec(&["/a/", "b"]),
        file("/etc/hosts", 1),
        file("/etc/hosts", 2),
        file("/etc/host", 1),
        Observation {
            lineage: vec!["/app/server".to_owned()],
            behaviour: Behaviour::Dns { name: "a.example".to_owned(), qtype: "A".to_owned() },
        },
        Observation {
            lineage: vec!["/app/server".to_owned()],
            behaviour: Behaviour::Dns { name: "a.example".to_owned(), qtype: "AAAA".to_owned() },
        },
        Observation {
            lineage: vec!["/app/server".to_owned()],
            behaviour: Behaviour::Connect {
                protocol: Protocol::Tcp,
                address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                port: 443,
            },
        },
        Observation {
            lineage: vec!["/app/server".to_owned()],
            behaviour: Behaviour::Connect {
                protocol: Protocol::Udp,
                address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                port: 443,
            },
        },
        Observation {
            lineage: vec!["/app/server".to_owned()],
            behaviour: Behaviour::ConnectRange {
                protocol: Protocol::Tcp,
                network: "10.0.0.1/32".parse().unwrap(),
                port: 443,
            },
        },
        exec(&["/app/server"]),
        Observation {
            lineage: vec!["/app/server".to_owned()],
            behaviour: Behaviour::Mechanism { mechanism: telltale_core::event::Mechanism::IoUring },
        },
    ];
    let hashes: std::collections::BTreeSet<String> = distinct.iter().map(behaviour_hash).collect();
    assert_eq!(hashes.len(), distinct.len());
    assert!(hashes.iter().all(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())));
}

proptest! {
    #[test]
    fn split_keys_are_distinct_and_cover_the_access(
        lineage in proptest::collection::vec("/[a-z]{1,8}", 1..4),
        pattern in "/[a-z*]{1,12}",
        access in any::<u8>(),
    ) {
        let o = Observation { lineage, behaviour: Behaviour::File { pattern, access } };
        let split = split_access(&o);
        prop_assert_eq!(split.len(), access.count_ones().max(1) as usize);
        let mut union = 0;
        let mut hashes = std::collections::BTreeSet::new();
        for s in &split {
            let Behaviour::File { access: a, .. } = s.behaviour else { unreachable!() };
            prop_assert!(a.count_ones() <= 1);
            union |= a;
            hashes.insert(behaviour_hash(s));
            prop_assert_eq!(behaviour_hash(s), behaviour_hash(&s.clone()));
        }
        prop_assert_eq!(union, access);
        prop_assert_eq!(hashes.len(), split.len());
    }

    #[test]
    fn different_lineages_hash_differently(a in proptest::collection::vec("[a-z/]{0,6}", 0..4), b in proptest::collection::vec("[a-z/]{0,6}", 0..4)) {
        let (oa, ob) = (Observation { lineage: a.clone(), behaviour: Behaviour::Exec }, Observation { lineage: b.clone(), behaviour: Behaviour::Exec });
        prop_assert_eq!(behaviour_hash(&oa) == behaviour_hash(&ob), a == b);
    }
}
