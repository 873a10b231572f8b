//! etcd over mutual TLS with role-based access: the configuration's TLS
//! files and credentials reach a real server.

use std::time::Duration;

use telltale_fleet::{EtcdConfig, Fleet, Status};

use crate::support::{config, dns, learned, options, replica, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_and_credentials() {
    let etcd = Cluster::start_tls(1).await;
    let pki = etcd.pki();
    // Enable authentication: a root user with a password.
    let mut admin = etcd.client().await;
    admin.user_add("root", "s3cret", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let secure = EtcdConfig {
        ca: Some(pki.ca.clone()),
        cert: Some(pki.client.0.clone()),
        key: Some(pki.client.1.clone()),
        username: Some("root".to_owned()),
        password: Some("s3cret".to_owned()),
        ..config(etcd.endpoints(), "secure")
    };
    secure.validate().unwrap();
    let a = replica(&secure, dir.path(), "a").await;
    a.publish(&learned("shop", 1_000, &[dns("tls.example")])).await.unwrap();
    a.flush().await.unwrap();
    assert_eq!(a.load("shop").await.unwrap().behaviours.len(), 1);

    // A wrong password, or no client certificate: never connected, and the
    // status says why.
    let refused = async |cfg: EtcdConfig, name: &str| {
        let f = Fleet::connect(cfg, options(dir.path(), name)).await.unwrap();
        let mut st = f.status_changes();
        let s =
            tokio::time::timeout(Duration::from_secs(20), st.wait_for(|s| matches!(s, Status::Disconnected { .. })))
                .await
                .expect("disconnected")
                .unwrap()
                .clone();
        assert!(!f.wait_connected(Duration::from_millis(500)).await);
        match s {
            Status::Disconnected { reason, .. } => reason,
            other => panic!("{other:?}"),
        }
    };
    let reason = refused(EtcdConfig { password: Some("wrong".to_owned()), ..secure.clone() }, "b").await;
    assert!(reason.contains("authentication failed"), "{reason}");
    let reason = refused(EtcdConfig { cert: None, key: None, ..secure.clone() }, "c").await;
    // The server ends the TLS handshake of a client without a certificate
    // (hyper reports it as closed, cancelled or a broken pipe).
    assert!(reason.starts_with("etcd connect failed"), "{reason}");
}
