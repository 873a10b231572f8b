use super::*;

fn ok() -> EtcdConfig {
    EtcdConfig::new(["http://127.0.0.1:2379", "http://10.0.0.2:2379/"])
}

fn key_of(c: &EtcdConfig) -> String {
    c.validate().expect_err("refused").key
}

#[test]
fn defaults_are_valid() {
    let c = ok();
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(c.prefix, "/telltale/v1/");
    assert_eq!(c.cluster, "default");
    assert_eq!(c.batch_delay, Duration::from_millis(100));
    assert!(!c.uses_tls());
}

#[test]
fn parses_with_defaults_and_refuses_unknown_keys() {
    let c: EtcdConfig =
        serde_json::from_str(r#"{"endpoints":["https://etcd:2379"],"cluster":"prod-eu","request_timeout":"2s"}"#)
            .expect("parses");
    assert_eq!(c.cluster, "prod-eu");
    assert_eq!(c.request_timeout, Duration::from_secs(2));
    assert_eq!(c.prefix, "/telltale/v1/");
    assert!(c.uses_tls());
    assert_eq!(c.validate(), Ok(()));
    let e = serde_json::from_str::<EtcdConfig>(r#"{"endpoints":["http://a:1"],"endpoint":"x"}"#)
        .expect_err("unknown key refused")
        .to_string();
    assert!(e.contains("endpoint"), "{e}");
    assert!(serde_json::from_str::<EtcdConfig>(r#"{"prefix":"/x/"}"#).is_err(), "endpoints are required");
}

#[test]
fn refuses_bad_endpoints_naming_the_index() {
    assert_eq!(key_of(&EtcdConfig::new(Vec::<String>::new())), "endpoints");
    assert_eq!(key_of(&EtcdConfig::new(["http://a:2379", "a:2379"])), "endpoints[1]");
    assert_eq!(key_of(&EtcdConfig::new(["http://a"])), "endpoints[0]");
    assert_eq!(key_of(&EtcdConfig::new(["http://a:2379/v3"])), "endpoints[0]");
    assert_eq!(key_of(&EtcdConfig::new(["http://a:99999"])), "endpoints[0]");
    assert_eq!(key_of(&EtcdConfig::new(["http://a:2379", "https://b:2379"])), "endpoints[1]");
    assert_eq!(EtcdConfig::new(["http://[::1]:2379"]).validate(), Ok(()));
}

#[test]
fn refuses_bad_prefix_and_cluster() {
    for p in ["telltale/", "/telltale", "", "/tell tale/"] {
        let c = EtcdConfig { prefix: p.to_owned(), ..ok() };
        assert_eq!(key_of(&c), "prefix", "{p:?}");
    }
    assert_eq!(EtcdConfig { prefix: "/".to_owned(), ..ok() }.validate(), Ok(()));
    for n in ["", "Prod", "a_b", "a/b", &"x".repeat(64)] {
        let c = EtcdConfig { cluster: n.to_owned(), ..ok() };
        assert_eq!(key_of(&c), "cluster", "{n:?}");
    }
    assert_eq!(EtcdConfig { cluster: "x".repeat(63), ..ok() }.validate(), Ok(()));
}

#[test]
fn tls_files_and_credentials_go_in_pairs() {
    let tls = EtcdConfig::new(["https://etcd-0:2379"]);
    let c = EtcdConfig { cert: Some("c.pem".into()), ..tls.clone() };
    assert_eq!(key_of(&c), "key");
    let c = EtcdConfig { key: Some("k.pem".into()), ..tls.clone() };
    assert_eq!(key_of(&c), "cert");
    let c = EtcdConfig { ca: Some("ca.pem".into()), cert: Some("c.pem".into()), key: Some("k.pem".into()), ..tls };
    assert_eq!(c.validate(), Ok(()));
    let c = EtcdConfig { ca: Some("ca.pem".into()), ..ok() };
    assert_eq!(key_of(&c), "ca", "TLS files with http:// endpoints");
    let c = EtcdConfig { username: Some("telltale".into()), ..ok() };
    assert_eq!(key_of(&c), "password");
    let c = EtcdConfig { password: Some("s3cret".into()), ..ok() };
    assert_eq!(key_of(&c), "username");
    let c = EtcdConfig { username: Some("telltale".into()), password: Some("s3cret".into()), ..ok() };
    assert_eq!(c.validate(), Ok(()));
    assert!(!format!("{c:?}").contains("s3cret"), "the password is not printed");
}

#[test]
fn refuses_bad_timeouts_and_batches() {
    assert_eq!(key_of(&EtcdConfig { request_timeout: Duration::ZERO, ..ok() }), "request_timeout");
    assert_eq!(key_of(&EtcdConfig { connect_timeout: Duration::ZERO, ..ok() }), "connect_timeout");
    assert_eq!(key_of(&EtcdConfig { batch_delay: Duration::from_secs(11), ..ok() }), "batch_delay");
    assert_eq!(key_of(&EtcdConfig { batch_size: 0, ..ok() }), "batch_size");
    assert_eq!(key_of(&EtcdConfig { batch_size: MAX_BATCH_SIZE + 1, ..ok() }), "batch_size");
    assert_eq!(EtcdConfig { batch_size: MAX_BATCH_SIZE, batch_delay: Duration::ZERO, ..ok() }.validate(), Ok(()));
}
