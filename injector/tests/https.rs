//! The real HTTPS server: TLS from generated PEM files, reviews POSTed by
//! reqwest trusting the generated CA, malformed and oversized bodies.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use telltale_injector::review::AdmissionReview;
use telltale_injector::{InjectError, Server, WebhookArgs};
use tokio::sync::oneshot;

const SERVICE_DNS: &str = "telltale-injector.telltale-system.svc";

/// A new CA and a serving certificate for the Service's DNS name, as
/// gen-certs.sh makes them, written to `dir`/tls.{crt,key}; returns the CA PEM.
fn issue(dir: &Path) -> String {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![SERVICE_DNS.to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca).unwrap();
    // As the kubelet updates a Secret volume: new files renamed into place.
    for (name, pem) in [("tls.key", key.serialize_pem()), ("tls.crt", cert.pem())] {
        std::fs::write(dir.join(format!("{name}.new")), pem).unwrap();
        std::fs::rename(dir.join(format!("{name}.new")), dir.join(name)).unwrap();
    }
    ca.pem()
}

/// [`issue`], and webhook flags using those files.
fn pki(dir: &Path) -> (String, WebhookArgs) {
    let ca = issue(dir);
    let args = WebhookArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: dir.join("tls.crt"),
        tls_key: dir.join("tls.key"),
        tls_reload_interval: std::time::Duration::from_millis(100),
        sidecar_image: "telltale:9.9.9".into(),
        api_token_secret: None,
        sidecar_env: Vec::new(),
        native_sidecar: false,
        metrics: false,
        etcd_endpoints: None,
        etcd_cluster: None,
        etcd_prefix: None,
        etcd_client_secret: None,
    };
    (ca, args)
}

struct Running {
    client: reqwest::Client,
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(dir: &Path) -> Running {
    let (ca, args) = pki(dir);
    let server = Server::new(&args).unwrap();
    let listener = tokio::net::TcpListener::bind(args.listen).await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(listener, async move {
        let _ = stopped.await;
    }));
    Running {
        client: client(&ca, addr),
        base: format!("https://{SERVICE_DNS}:{}", addr.port()),
        stop: Some(stop),
        task,
    }
}

/// A client trusting only `ca`, reaching the Service name at `addr`.
fn client(ca: &str, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .resolve(SERVICE_DNS, addr)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

impl Running {
    async fn post(&self, path: &str, body: Vec<u8>) -> (reqwest::StatusCode, String) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap();
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[tokio::test]
async fn serves_reviews_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;

    let health = server.client.get(format!("{}/healthz", server.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // Pod opt-in path.
    let (status, body) = server.post("/mutate", fixture("opt-in")).await;
    assert_eq!(status, 200, "{body}");
    let review: AdmissionReview = serde_json::from_str(&body).unwrap();
    let response = review.response.unwrap();
    assert_eq!(response.uid, "0d6a1b8e-1c1f-4f43-9d0e-3a7c2b9e5f01");
    assert!(response.allowed);
    let patch = base64::engine::general_purpose::STANDARD.decode(response.patch.unwrap()).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let request: serde_json::Value = serde_json::from_slice(&fixture("opt-in")).unwrap();
    let mut pod = request["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).unwrap();
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod).unwrap();
    let sidecar = pod.spec.unwrap().containers.into_iter().find(|c| c.name == "telltale").unwrap();
    assert_eq!(sidecar.image.as_deref(), Some("telltale:9.9.9"), "the --sidecar-image flag applies");

    // The same bare pod: left alone on the pod path, injected on the namespace path.
    let (_, body) = server.post("/mutate", fixture("bare")).await;
    let r = serde_json::from_str::<AdmissionReview>(&body).unwrap().response.unwrap();
    assert!(r.allowed && r.patch.is_none());
    let (_, body) = server.post("/mutate-namespace", fixture("bare")).await;
    let r = serde_json::from_str::<AdmissionReview>(&body).unwrap().response.unwrap();
    assert!(r.allowed && r.patch.is_some());

    // A refusal is an answer (HTTP 200, allowed: false).
    let (status, body) = server.post("/mutate", fixture("bad-quantity")).await;
    assert_eq!(status, 200);
    let r = serde_json::from_str::<AdmissionReview>(&body).unwrap().response.unwrap();
    assert!(!r.allowed && r.status.unwrap().message.contains("telltale.dev/memory-limit"));

    server.stop().await;
}

/// SIGTERM while the API server is sending a review: that review is still
/// answered (cut off, `failurePolicy: Ignore` would admit the pod bare), then
/// the server stops.
#[tokio::test]
async fn a_review_in_flight_at_shutdown_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path()).await;
    let body = fixture("opt-in");
    let (first, rest) = body.split_at(body.len() / 2);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
    tx.send(Ok(bytes::Bytes::copy_from_slice(first))).await.unwrap();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let request = server
        .client
        .post(format!("{}/mutate", server.base))
        .header("content-type", "application/json")
        .header("content-length", body.len().to_string())
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let answer = tokio::spawn(request);
    // Half the review is on the wire: now the server is told to stop.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.stop.take().unwrap().send(()).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!server.task.is_finished(), "the server must wait for the review being sent");
    tx.send(Ok(bytes::Bytes::copy_from_slice(rest))).await.unwrap();
    drop(tx);
    let response = answer.await.unwrap().expect("answered");
    assert_eq!(response.status(), 200);
    let review: AdmissionReview = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(review.response.unwrap().patch.is_some(), "injected");
    tokio::time::timeout(std::time::Duration::from_secs(5), server.task).await.expect("stops once drained").unwrap();
}

/// A renewed certificate (cert-manager, gen-certs.sh again) is served
/// without a restart; files that do not load leave the last good one.
#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let health = |c: reqwest::Client| {
        let url = format!("{}/healthz", server.base);
        async move { c.get(url).send().await.map(|r| r.status()) }
    };
    let addr: SocketAddr = format!("127.0.0.1:{}", server.base.rsplit(':').next().unwrap()).parse().unwrap();
    assert_eq!(health(server.client.clone()).await.unwrap(), 200);

    let new_ca = issue(dir.path());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(health(client(&new_ca, addr)).await.expect("the new certificate is served"), 200);

    // A half-written renewal: the certificate in place keeps being served.
    std::fs::write(dir.path().join("tls.crt"), "-----BEGIN CERTIFICATE-----\ntrunc").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(health(client(&new_ca, addr)).await.expect("still the last good certificate"), 200);
    server.stop().await;
}

#[tokio::test]
async fn garbage_and_oversized_bodies_get_400_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;

    let (status, body) = server.post("/mutate", b"{\"apiVersion\": ".to_vec()).await;
    assert_eq!(status, 400);
    assert!(body.contains("malformed AdmissionReview JSON"), "{body}");

    let (status, body) = server.post("/mutate", b"\x00\xffnot json at all".to_vec()).await;
    assert_eq!(status, 400);
    assert!(body.contains("malformed AdmissionReview JSON"), "{body}");

    let (status, body) = server.post("/mutate", br#"{"apiVersion":"v1","kind":"Pod"}"#.to_vec()).await;
    assert_eq!(status, 400);
    assert!(body.contains("expected apiVersion"), "{body}");

    // 4 MiB of valid-looking JSON: refused by size, not parsed.
    let mut big = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","pad":""#.to_vec();
    big.resize(4 << 20, b'a');
    big.extend_from_slice(b"\"}");
    let (status, body) = server.post("/mutate-namespace", big).await;
    assert_eq!(status, 400);
    assert!(body.contains("larger than 3 MiB"), "{body}");

    // The server is still fine afterwards.
    let (status, _) = server.post("/mutate", fixture("opt-in")).await;
    assert_eq!(status, 200);
    let wrong_method = server.client.get(format!("{}/mutate", server.base)).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);

    server.stop().await;
}

#[test]
fn bad_tls_files_and_flags_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (_, args) = pki(dir.path());
    let missing = WebhookArgs { tls_cert: dir.path().join("nope.crt"), ..args.clone() };
    let e = Server::new(&missing).unwrap_err();
    assert!(matches!(e, InjectError::ReadFile { flag: "--tls-cert", .. }), "{e}");
    assert!(e.to_string().contains("nope.crt"), "{e}");

    std::fs::write(dir.path().join("empty.key"), "not a key\n").unwrap();
    let e = Server::new(&WebhookArgs { tls_key: dir.path().join("empty.key"), ..args.clone() }).unwrap_err();
    assert!(e.to_string().starts_with("--tls-key"), "{e}");

    // Key of another certificate.
    let other = KeyPair::generate().unwrap();
    std::fs::write(dir.path().join("other.key"), other.serialize_pem()).unwrap();
    let e = Server::new(&WebhookArgs { tls_key: dir.path().join("other.key"), ..args.clone() }).unwrap_err();
    assert!(matches!(e, InjectError::Tls(_)), "{e}");

    let e = Server::new(&WebhookArgs { api_token_secret: Some("Not_A_Name".into()), ..args.clone() }).unwrap_err();
    assert!(e.to_string().contains("--api-token-secret"), "{e}");
    for bad in ["NO_EQUALS", "1BAD=x", "TELLTALE_KUBERNETES__POD_UID=x", "TELLTALE_DATA_DIR=/x"] {
        let e = Server::new(&WebhookArgs { sidecar_env: vec![bad.into()], ..args.clone() }).unwrap_err();
        assert!(e.to_string().contains("--sidecar-env") && e.to_string().contains(bad), "{e}");
    }
    let twice = vec!["OTEL_SERVICE_NAME=a".into(), "OTEL_SERVICE_NAME=b".into()];
    let e = Server::new(&WebhookArgs { sidecar_env: twice, ..args.clone() }).unwrap_err();
    assert!(e.to_string().contains("--sidecar-env") && e.to_string().contains("twice"), "{e}");
    let e = Server::new(&WebhookArgs { sidecar_image: String::new(), ..args }).unwrap_err();
    assert!(e.to_string().contains("--sidecar-image"), "{e}");
}
