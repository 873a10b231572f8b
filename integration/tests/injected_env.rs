//! The fleet-profile environment the injector writes (names, paths and
//! value encoding from `telltale_core::contract`, as
//! `injector/tests/fleet.rs` checks the injector writes them) loads in the
//! daemon's configuration and means what the injector meant: a quoted
//! cluster like `123` stays a string, the endpoints are a list, and the TLS
//! files are the mounted Secret's. No root needed; one test in this binary
//! because it sets the process environment.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;

use telltale_core::contract::{self, env as cenv};
use telltale_sidecar::config::{Config, Overrides, ProfileStore};

#[test]
fn the_fleet_environment_the_injector_writes_loads() {
    let endpoints = ["https://etcd-0.etcd.telltale-system.svc:2379", "https://etcd-1.etcd.telltale-system.svc:2379"];
    let mut set = vec![
        (cenv::PROFILES_STORE, cenv::PROFILES_STORE_ETCD.to_owned()),
        (cenv::PROFILES_ETCD_ENDPOINTS, contract::env_string_list(endpoints)),
        // Values the environment parser would otherwise read as a number.
        (cenv::PROFILES_ETCD_CLUSTER, contract::env_string("123")),
        (cenv::PROFILES_ETCD_PREFIX, contract::env_string("/telltale/v2/")),
    ];
    set.extend(cenv::WITH_ETCD_CLIENT_SECRET.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let mut names: Vec<&str> = set.iter().map(|(k, _)| *k).collect();
    names.sort_unstable();
    let mut fleet = cenv::FLEET.to_vec();
    fleet.sort_unstable();
    assert_eq!(names, fleet, "every fleet variable the injector may set is set here");
    for (k, v) in &set {
        std::env::set_var(k, v);
    }
    std::env::set_var(cenv::KUBERNETES_POD_NAME, "web-7d9f-x2x");

    let cfg = Config::load(None, &Overrides::default()).unwrap();
    assert_eq!(cfg.profiles.store, ProfileStore::Etcd);
    let etcd = cfg.profiles.etcd.clone().unwrap();
    assert_eq!(etcd.endpoints, endpoints);
    assert_eq!((etcd.cluster.as_str(), etcd.prefix.as_str()), ("123", "/telltale/v2/"));
    assert_eq!(etcd.ca.as_deref(), Some(Path::new(contract::ETCD_CA_FILE)));
    assert_eq!(etcd.cert.as_deref(), Some(Path::new(contract::ETCD_CERT_FILE)));
    assert_eq!(etcd.key.as_deref(), Some(Path::new(contract::ETCD_KEY_FILE)));
    assert_eq!(cfg.replica_id(), "web-7d9f-x2x");
}
