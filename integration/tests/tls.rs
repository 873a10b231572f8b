//! The API over TLS, with client certificates (mTLS), through the SDK.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use telltale_client::Client;
use telltale_integration::daemon::Pod;
use telltale_integration::kernel_tests_enabled;

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
    stranger: (String, String),
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>, eku: ExtendedKeyUsagePurpose, issuer: &CertifiedIssuer<'_, KeyPair>| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names).unwrap();
        p.extended_key_usages = vec![eku];
        let cert = p.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let other_ca = {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    };
    Pki {
        ca: ca.pem(),
        server: leaf(vec!["localhost".into()], ExtendedKeyUsagePurpose::ServerAuth, &ca),
        client: leaf(vec!["client.local".into()], ExtendedKeyUsagePurpose::ClientAuth, &ca),
        stranger: leaf(vec!["stranger.local".into()], ExtendedKeyUsagePurpose::ClientAuth, &other_ca),
    }
}

/// `pem` written to `dir`/`name`; its path.
fn write_pem(dir: &telltale_integration::TempDir, name: &str, pem: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, pem).unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_accepts_our_clients_and_refuses_others() {
    if !kernel_tests_enabled("mtls_accepts_our_clients_and_refuses_others") {
        return;
    }
    let pki = pki();
    let dir = telltale_integration::TempDir::new("pki");
    let write = |name: &str, pem: &str| write_pem(&dir, name, pem);
    let ca = write("ca.pem", &pki.ca);
    let (scert, skey) = (write("server.pem", &pki.server.0), write("server.key", &pki.server.1));
    let (ccert, ckey) = (write("client.pem", &pki.client.0), write("client.key", &pki.client.1));
    let (xcert, xkey) = (write("stranger.pem", &pki.stranger.0), write("stranger.key", &pki.stranger.1));
    let cfg = format!(
        "[api]\nlisten = \"127.0.0.1:0\"\n[api.tls]\ncert = \"{scert}\"\nkey = \"{skey}\"\nclient_ca = \"{ca}\"\n"
    );
    let pod = Pod::new("tls", &[("app", "web:v1")], &cfg);
    let d = pod.start();
    let addr = d.api.clone().expect("api").replace("http://", "https://");

    let ok = Client::builder(&addr).ca(&ca).identity(&ccert, &ckey).domain("localhost").connect().await.expect("mTLS");
    let st = ok.learning_status(None).await.expect("status over mTLS");
    assert_eq!(st[0].image, "web");

    // No client certificate, a certificate from another CA, plain text: refused.
    let no_cert = Client::builder(&addr).ca(&ca).domain("localhost").connect().await;
    let no_cert_call = match no_cert {
        Ok(c) => c.learning_status(None).await.err().map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    assert!(no_cert_call.is_some(), "a client without a certificate must be refused");
    let stranger = Client::builder(&addr).ca(&ca).identity(&xcert, &xkey).domain("localhost").connect().await;
    let stranger_call = match stranger {
        Ok(c) => c.learning_status(None).await.err().map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    assert!(stranger_call.is_some(), "a certificate from another CA must be refused");
    let plain = Client::builder(d.api.clone().expect("api")).connect().await;
    let plain_call = match plain {
        Ok(c) => c.learning_status(None).await.err().map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    assert!(plain_call.is_some(), "plain text must be refused");
    d.stop();
}

/// OTLP export to an https:// collector that requires a client
/// certificate, configured by the standard variables alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_export_over_mtls_from_standard_environment_variables() {
    if !kernel_tests_enabled("otlp_export_over_mtls_from_standard_environment_variables") {
        return;
    }
    use telltale_integration::otlp::{serve_with, Receiver};
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let pki = pki();
    let dir = telltale_integration::TempDir::new("otlp-pki");
    let write = |name: &str, pem: &str| write_pem(&dir, name, pem);
    let ca = write("ca.pem", &pki.ca);
    let (ccert, ckey) = (write("client.pem", &pki.client.0), write("client.key", &pki.client.1));
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&pki.server.0, &pki.server.1))
        .client_ca_root(Certificate::from_pem(&pki.ca));
    let received = Receiver::default();
    let (addr, stop, task) = serve_with("127.0.0.1:0".parse().unwrap(), received.clone(), Some(tls)).await;

    let pod = Pod::new("otlp-tls", &[("app", "web:v1")], "[telemetry.otlp]\nmetrics_interval = \"1s\"\n");
    let endpoint = format!("https://localhost:{}", addr.port());
    let d = pod.start_with_env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.as_str()),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", ccert.as_str()),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", ckey.as_str()),
    ]);
    let start = std::time::Instant::now();
    loop {
        let points = received.0.lock().unwrap().points.len();
        if points > 0 {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "no metrics arrived over mTLS");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let names: Vec<String> = received.0.lock().unwrap().points.iter().map(|p| p.0.clone()).collect();
    assert!(names.iter().any(|n| n == "telltale.events"), "{names:?}");
    d.stop();

    // The same collector without our CA in the trust store: refused, and
    // the daemon says why instead of exporting in plain text.
    let pod = Pod::new("otlp-tls-bad", &[("app", "web:v1")], "[telemetry.otlp]\nmetrics_interval = \"1s\"\n");
    let plain = format!("http://127.0.0.1:{}", addr.port());
    let out = pod.run_expect_failure_with_env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", plain.as_str()),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.as_str()),
    ]);
    assert!(out.contains("OTEL_EXPORTER_OTLP_ENDPOINT") && out.contains("https://"), "{out}");
    let _ = stop.send(());
    task.await.unwrap();
}
