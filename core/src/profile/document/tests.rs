use super::*;
use crate::profile::generalize::path_pattern;
use proptest::prelude::*;

fn obs(lineage: &[&str], behaviour: Behaviour) -> Observation {
    Observation { lineage: lineage.iter().map(|s| (*s).to_owned()).collect(), behaviour }
}

fn learned() -> Profile {
    let mut p = Profile::new("cws-webapp", 0);
    let nginx = ["/usr/sbin/nginx"];
    let curl = ["/usr/sbin/nginx", "/bin/sh", "/usr/bin/curl"];
    for o in [
        obs(&nginx, Behaviour::Exec),
        obs(&nginx, Behaviour::File { pattern: path_pattern("/proc/1234/status"), access: access::READ }),
        obs(&nginx, Behaviour::File { pattern: "/var/log/nginx/access.log".into(), access: access::WRITE }),
        obs(&nginx, Behaviour::File { pattern: "/var/log/nginx/access.log".into(), access: access::READ }),
        obs(&curl, Behaviour::Dns { name: "api.example.com".into(), qtype: "AAAA".into() }),
        obs(&curl, Behaviour::Connect { protocol: Protocol::Tcp, address: "10.0.0.5".parse().unwrap(), port: 443 }),
        obs(
            &curl,
            Behaviour::ConnectRange { protocol: Protocol::Udp, network: "10.0.0.0/8".parse().unwrap(), port: 0 },
        ),
    ] {
        p.add(&o, "v1", 1);
    }
    p
}

#[test]
fn a_profile_as_a_document_and_back() {
    let p = learned();
    let doc = ProfileDocument::from_profile(&p).unwrap();
    assert_eq!(
        (doc.api_version.as_str(), doc.kind.as_str(), doc.metadata.name.as_str()),
        (API_VERSION, KIND, "cws-webapp")
    );
    assert_eq!(doc.spec.tags, ["v1"]);
    let lineages: Vec<&[String]> = doc.spec.processes.iter().map(|p| p.lineage.as_slice()).collect();
    assert_eq!(
        lineages,
        [
            &["/usr/sbin/nginx".to_owned()][..],
            &["/usr/sbin/nginx".into(), "/bin/sh".into(), "/usr/bin/curl".into()][..]
        ],
        "sorted by lineage"
    );
    let nginx = &doc.spec.processes[0];
    assert_eq!(
        nginx.files,
        [
            FileRule { pattern: "/proc/{pid}/status".into(), access: vec![Access::Read] },
            FileRule { pattern: "/var/log/nginx/access.log".into(), access: vec![Access::Read, Access::Write] },
        ],
        "sorted, access modes merged"
    );
    // Every behaviour of the profile is in the document, and nothing else.
    let back = doc.observations().unwrap();
    let mut again = Profile::new("cws-webapp", 0);
    for o in &back {
        assert!(p.contains(o), "{o:?} is not in the profile");
        again.add_manual(o, "v1", 1);
    }
    assert_eq!(again.behaviour_count(), p.behaviour_count());
    assert!(diff(&back, &ProfileDocument::from_profile(&again).unwrap().observations().unwrap()).is_identical());
}

#[test]
fn the_json_form_has_stable_keys() {
    let doc = ProfileDocument::from_profile(&learned()).unwrap();
    let v = serde_json::to_value(&doc).unwrap();
    assert_eq!(v["apiVersion"], "telltale.dev/v1");
    assert_eq!(v["kind"], "SecurityProfile");
    assert_eq!(v["metadata"]["name"], "cws-webapp");
    let curl = &v["spec"]["processes"][1];
    assert_eq!(curl["dns"][0], serde_json::json!({"name": "api.example.com", "type": "AAAA"}));
    assert_eq!(curl["connect"][0], serde_json::json!({"protocol": "tcp", "address": "10.0.0.5", "port": 443}));
    assert_eq!(curl["connectRanges"][0], serde_json::json!({"protocol": "udp", "network": "10.0.0.0/8", "port": 0}));
    assert!(curl.get("files").is_none(), "empty lists are left out");
}

fn parse(json: serde_json::Value) -> Result<ProfileDocument, String> {
    serde_json::from_value(json).map_err(|e| e.to_string())
}

fn doc_with(process: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "web"},
        "spec": {"processes": [process]},
    })
}

fn refused(process: serde_json::Value) -> String {
    parse(doc_with(process)).unwrap().observations().unwrap_err().to_string()
}

#[test]
fn unknown_keys_are_refused_by_name_at_every_level() {
    let mut d = doc_with(serde_json::json!({"lineage": ["/bin/a"]}));
    d["metdata"] = serde_json::json!({});
    assert!(parse(d).unwrap_err().contains("unknown field `metdata`"));
    let e = parse(doc_with(serde_json::json!({"lineage": ["/bin/a"], "file": []}))).unwrap_err();
    assert!(e.contains("unknown field `file`"), "{e}");
    let e =
        parse(doc_with(serde_json::json!({"lineage": ["/bin/a"], "files": [{"pattern": "/x", "acess": ["read"]}]})))
            .unwrap_err();
    assert!(e.contains("unknown field `acess`"), "{e}");
    let e = parse(doc_with(
        serde_json::json!({"lineage": ["/bin/a"], "connect": [{"protocol": "sctp", "address": "10.0.0.1", "port": 1}]}),
    ))
    .unwrap_err();
    assert!(e.contains("unknown variant `sctp`"), "{e}");
    let e = parse(doc_with(serde_json::json!({"lineage": ["/bin/a"], "connect": [{"protocol": "tcp", "address": "10.0.0.1", "port": 70000}]})))
        .unwrap_err();
    assert!(e.contains("70000"), "{e}");
}

#[test]
fn another_version_or_kind_is_refused_as_such() {
    let h = |v: serde_json::Value| serde_json::from_value::<Header>(v).unwrap().check().unwrap_err().to_string();
    let e = h(serde_json::json!({"apiVersion": "telltale.dev/v2", "kind": KIND, "spec": {"new": 1}}));
    assert_eq!(e, "apiVersion \"telltale.dev/v2\" is not supported: this telltale reads `apiVersion: telltale.dev/v1`");
    let e = h(serde_json::json!({"kind": KIND}));
    assert!(e.starts_with("apiVersion \"\" is not supported"), "{e}");
    let e = h(serde_json::json!({"apiVersion": API_VERSION, "kind": "NotificationRule"}));
    assert_eq!(e, "kind \"NotificationRule\" is not a security profile: use `kind: SecurityProfile`");
    let mut d = doc_with(serde_json::json!({"lineage": ["/bin/a"]}));
    d["kind"] = "Profile".into();
    assert!(parse(d).unwrap().observations().unwrap_err().to_string().contains("kind \"Profile\""));
}

#[test]
fn a_fileless_program_is_a_lineage_entry_but_a_relative_path_is_not() {
    let d = parse(doc_with(serde_json::json!({"lineage": ["/bin/sh", "memfd:payload"]}))).unwrap();
    let obs = d.observations().unwrap();
    assert_eq!(obs[0].lineage, vec!["/bin/sh".to_owned(), "memfd:payload".to_owned()]);
    for bad in ["memfd:", "memfd:a\u{7}b", "payload"] {
        let e = parse(doc_with(serde_json::json!({"lineage": [bad]}))).unwrap().observations().unwrap_err().to_string();
        assert!(e.contains("spec.processes[0].lineage[0]"), "{bad:?}: {e}");
    }
}

#[test]
fn bad_fields_are_named() {
    let cases = [
        (serde_json::json!({"lineage": []}), "spec.processes[0].lineage"),
        (serde_json::json!({"lineage": ["bin/a"]}), "spec.processes[0].lineage[0]"),
        (
            serde_json::json!({"lineage": ["/a"], "files": [{"pattern": "etc/x", "access": ["read"]}]}),
            "files[0].pattern",
        ),
        (
            serde_json::json!({"lineage": ["/a"], "files": [{"pattern": "/x/{nums}", "access": ["read"]}]}),
            "files[0].pattern",
        ),
        (serde_json::json!({"lineage": ["/a"], "files": [{"pattern": "/x", "access": []}]}), "files[0].access"),
        (serde_json::json!({"lineage": ["/a"], "dns": [{"name": "a..b"}]}), "dns[0].name"),
        (serde_json::json!({"lineage": ["/a"], "dns": [{"name": "a.b", "type": "A A"}]}), "dns[0].type"),
        (
            serde_json::json!({"lineage": ["/a"], "connect": [{"protocol": "tcp", "address": "10.0.0.1", "port": 0}]}),
            "connect[0].port",
        ),
    ];
    for (process, field) in cases {
        let e = refused(process.clone());
        assert!(e.contains(field), "{process}: {e} should name {field}");
    }
    let mut d = doc_with(serde_json::json!({"lineage": ["/a"]}));
    d["spec"]["processes"].as_array_mut().unwrap().push(serde_json::json!({"lineage": ["/a"]}));
    assert!(parse(d).unwrap().observations().unwrap_err().to_string().contains("spec.processes[1].lineage"));
    for name in ["", "registry.example/web", "web:v1", "web@sha256:00"] {
        let mut d = doc_with(serde_json::json!({"lineage": ["/a"]}));
        d["metadata"]["name"] = name.into();
        assert!(parse(d).unwrap().observations().unwrap_err().to_string().contains("metadata.name"), "{name:?}");
    }
}

#[test]
fn documents_are_normalized_like_the_api_normalizes() {
    let d = parse(doc_with(serde_json::json!({"lineage": ["/a"],
        "dns": [{"name": "API.Example.COM."}],
        "connectRanges": [{"protocol": "tcp", "network": "10.1.2.3/8"}]})))
    .unwrap();
    let o = d.observations().unwrap();
    assert_eq!(o[0], obs(&["/a"], Behaviour::Exec), "a process may run");
    assert_eq!(o[1], obs(&["/a"], Behaviour::Dns { name: "api.example.com".into(), qtype: "A".into() }));
    assert_eq!(
        o[2],
        obs(
            &["/a"],
            Behaviour::ConnectRange { protocol: Protocol::Tcp, network: "10.0.0.0/8".parse().unwrap(), port: 0 }
        )
    );
}

#[test]
fn names_that_are_not_utf8_are_written_escaped() {
    // As a person may write them: upper-case hex, a valid byte escaped.
    let d = parse(doc_with(serde_json::json!({"lineage": ["/bin/sh", "/opt/run\\xFF"],
        "files": [{"pattern": "/tmp/a\\xFE", "access": ["read"]}, {"pattern": "/tmp/\\x41\\xff", "access": ["read"]}]})))
    .unwrap();
    let o = d.observations().unwrap();
    let lineage = ["/bin/sh", "/opt/run\\xff"];
    assert_eq!(o[0], obs(&lineage, Behaviour::Exec));
    assert_eq!(o[1], obs(&lineage, Behaviour::File { pattern: "/tmp/a\\xfe".into(), access: access::READ }));
    assert_eq!(o[2], obs(&lineage, Behaviour::File { pattern: "/tmp/\\x41\\xff".into(), access: access::READ }));
    // What the sensors would learn from those bytes is the same behaviour.
    let sensed = crate::text::name_from_bytes(b"/tmp/a\xfe");
    assert_eq!(o[1].behaviour, Behaviour::File { pattern: path_pattern(&sensed), access: access::READ });
    // Two spellings of one lineage are one lineage.
    let mut two = doc_with(serde_json::json!({"lineage": ["/opt/run\\xFF"]}));
    two["spec"]["processes"].as_array_mut().unwrap().push(serde_json::json!({"lineage": ["/opt/run\\xff"]}));
    let twice = parse(two).unwrap().observations().unwrap_err().to_string();
    assert!(twice.contains("processes[1].lineage") && twice.contains("listed twice"), "{twice}");
    // Exported and read back, the same text.
    let again = ProfileDocument::from_observations("web", vec![], &o).unwrap();
    let back = again.observations().unwrap();
    assert_eq!(ProfileDocument::from_observations("web", vec![], &back).unwrap(), again);
    assert_eq!(again.spec.processes[0].lineage, lineage);
}

#[test]
fn diff_lists_added_and_missing_behaviours_access_by_access() {
    let doc = [
        obs(&["/a"], Behaviour::Exec),
        obs(&["/a"], Behaviour::File { pattern: "/etc/x".into(), access: access::READ | access::WRITE }),
        obs(&["/a"], Behaviour::Dns { name: "n.example".into(), qtype: "A".into() }),
    ];
    let live = [
        obs(&["/a"], Behaviour::Exec),
        obs(&["/a"], Behaviour::File { pattern: "/etc/x".into(), access: access::READ }),
        obs(&["/b"], Behaviour::Exec),
    ];
    let d = diff(&doc, &live);
    let lines = |v: &[Observation]| v.iter().map(|o| Line(o).to_string()).collect::<Vec<_>>();
    assert_eq!(lines(&d.added), ["/a: file write /etc/x", "/a: dns n.example A"]);
    assert_eq!(lines(&d.missing), ["/b: exec"]);
    assert!(!d.is_identical());
    assert!(diff(&doc, &doc).is_identical());
    assert!(diff(&[], &[]).is_identical());
}

#[test]
fn lines_for_people() {
    let l = |b| Line(&obs(&["/bin/sh", "/usr/bin/curl"], b)).to_string();
    assert_eq!(l(Behaviour::Exec), "/bin/sh -> /usr/bin/curl: exec");
    assert_eq!(
        l(Behaviour::Connect { protocol: Protocol::Tcp, address: "2001:db8::1".parse().unwrap(), port: 443 }),
        "/bin/sh -> /usr/bin/curl: connect [2001:db8::1]:443/tcp"
    );
    assert_eq!(
        l(Behaviour::ConnectRange { protocol: Protocol::Udp, network: "10.0.0.0/8".parse().unwrap(), port: 0 }),
        "/bin/sh -> /usr/bin/curl: connect 10.0.0.0/8 any port/udp"
    );
}

#[test]
fn other_protocols_cannot_be_written() {
    let o = obs(
        &["/a"],
        Behaviour::Connect { protocol: Protocol::Other(132), address: "10.0.0.1".parse().unwrap(), port: 1 },
    );
    let e = ProfileDocument::from_observations("web", vec![], [&o]).unwrap_err();
    assert!(e.to_string().contains("proto-132"), "{e}");
}

/// Canonical documents: what `from_observations` writes.
pub(crate) fn arb_document() -> impl Strategy<Value = ProfileDocument> {
    let exe = "/(usr/)?(bin|sbin)/[a-z][a-z0-9_-]{0,8}";
    let lineage = proptest::collection::vec(exe, 1..4);
    let pattern = prop_oneof![
        "/[a-z]{1,6}(/[a-z0-9._-]{1,8}){0,3}",
        Just("/proc/{pid}/status".to_owned()),
        Just("/tmp/tmp.{rand}".to_owned()),
        Just("/var/log/app-{date}.log".to_owned()),
        Just("/x/{{num}}".to_owned()),
    ];
    let file = (pattern, 1u8..16);
    let dns = ("[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,6}){1,2}", prop_oneof![Just("A"), Just("AAAA"), Just("TXT")]);
    let transport = prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)];
    let ip = prop_oneof![any::<[u8; 4]>().prop_map(IpAddr::from), any::<[u8; 16]>().prop_map(IpAddr::from)];
    let endpoint = (transport.clone(), ip.clone(), 1u16..);
    let range = (transport, ip, 0u8..=128, any::<u16>()).prop_map(|(t, ip, len, port)| {
        let net = match ip {
            IpAddr::V4(a) => ipnet::IpNet::V4(ipnet::Ipv4Net::new(a, len % 33).unwrap()),
            IpAddr::V6(a) => ipnet::IpNet::V6(ipnet::Ipv6Net::new(a, len).unwrap()),
        };
        (t, net.trunc(), port)
    });
    let process = (
        lineage,
        proptest::collection::vec(file, 0..4),
        proptest::collection::vec(dns, 0..3),
        proptest::collection::vec(endpoint, 0..3),
        proptest::collection::vec(range, 0..2),
    );
    let tags = proptest::collection::vec("[a-z0-9][a-z0-9.-]{0,6}", 0..3);
    (tags, proptest::collection::vec(process, 0..5)).prop_map(|(tags, processes)| {
        let mut observations = Vec::new();
        for (lineage, files, dns, endpoints, ranges) in processes {
            let o = |behaviour| Observation { lineage: lineage.clone(), behaviour };
            observations.push(o(Behaviour::Exec));
            observations.extend(files.into_iter().map(|(pattern, access)| o(Behaviour::File { pattern, access })));
            observations.extend(dns.into_iter().map(|(name, t)| o(Behaviour::Dns { name, qtype: t.to_owned() })));
            observations.extend(
                endpoints
                    .into_iter()
                    .map(|(protocol, address, port)| o(Behaviour::Connect { protocol, address, port })),
            );
            observations.extend(
                ranges
                    .into_iter()
                    .map(|(protocol, network, port)| o(Behaviour::ConnectRange { protocol, network, port })),
            );
        }
        let mut tags = tags;
        tags.sort();
        tags.dedup();
        ProfileDocument::from_observations("web", tags, &observations).unwrap()
    })
}

proptest! {
    #[test]
    fn canonical_documents_round_trip_through_observations(doc in arb_document()) {
        let o = doc.observations().unwrap();
        let again = ProfileDocument::from_observations(&doc.metadata.name, doc.spec.tags.clone(), &o).unwrap();
        prop_assert_eq!(&again, &doc);
        let json = serde_json::to_string(&doc).unwrap();
        prop_assert_eq!(serde_json::from_str::<ProfileDocument>(&json).unwrap(), doc);
        prop_assert!(diff(&o, &again.observations().unwrap()).is_identical());
    }
}

#[test]
fn a_mechanism_is_listed_under_its_process_and_read_back() {
    let mut p = learned();
    let curl = ["/usr/sbin/nginx", "/bin/sh", "/usr/bin/curl"];
    p.add(&obs(&curl, Behaviour::Mechanism { mechanism: Mechanism::IoUring }), "v1", 1);
    let doc = ProfileDocument::from_profile(&p).unwrap();
    assert_eq!(doc.spec.processes[1].mechanisms, [Mechanism::IoUring]);
    assert!(doc.spec.processes[0].mechanisms.is_empty());
    let json = serde_json::to_value(&doc).unwrap();
    assert_eq!(json["spec"]["processes"][1]["mechanisms"], serde_json::json!(["io_uring"]));
    assert!(json["spec"]["processes"][0].get("mechanisms").is_none(), "left out when empty");
    let back = doc.observations().unwrap();
    assert!(back.contains(&obs(&curl, Behaviour::Mechanism { mechanism: Mechanism::IoUring })));
    let mut again = Profile::new("cws-webapp", 0);
    for o in &back {
        again.add_manual(o, "v1", 1);
    }
    assert_eq!(again.behaviour_count(), p.behaviour_count());
    let bad = serde_json::from_value::<Process>(serde_json::json!({"lineage": ["/bin/a"], "mechanisms": ["ptrace"]}));
    assert!(bad.is_err(), "an unknown mechanism is refused");
}
