//! The Kubernetes API, in-cluster (I/O): read this pod once at start and
//! again when a container id appears that the last read did not list, to map
//! container ids to names and images. A refusal (401/403) or an unreachable
//! API is one warning; identities then come from the injector's map and
//! `TELLTALE_CONTAINER_NAME`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telltale_core::workload::pod::ApiContainer;

/// Where Kubernetes mounts the service account's credentials.
pub const SERVICE_ACCOUNT_DIR: &str = telltale_core::contract::SERVICE_ACCOUNT_DIR;

/// A failed API read.
#[derive(Debug, thiserror::Error)]
pub enum KubeApiError {
    /// A credentials file could not be read.
    #[error("reading {path}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The CA certificate or client settings were refused.
    #[error("setting up the API client")]
    Client(#[source] reqwest::Error),
    /// A pod name or namespace that cannot be a Kubernetes name.
    #[error("{what} {value:?} is not a Kubernetes name")]
    BadName {
        /// `pod name` or `namespace`.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// The request did not complete.
    #[error("GET {url}")]
    Request {
        /// The URL.
        url: String,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// The API answered with an error status.
    #[error("GET {url}: HTTP {status}: {message}")]
    Status {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The API's message (first 300 characters).
        message: String,
    },
    /// The answer is not a pod.
    #[error("GET {url}: the answer is not a Pod")]
    Decode {
        /// The URL.
        url: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

impl KubeApiError {
    /// The API refused us (401/403): asking again soon will not help.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Status { status: 401 | 403, .. })
    }
}

/// A client of one API server.
#[derive(Debug, Clone)]
pub struct KubeApi {
    client: reqwest::Client,
    base: String,
    token_file: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>, KubeApiError> {
    std::fs::read(path).map_err(|source| KubeApiError::Credentials { path: path.to_owned(), source })
}

fn valid_name(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl KubeApi {
    /// The in-cluster API, when its credentials exist (`KUBERNETES_SERVICE_HOST`
    /// and `_PORT`, the service account token and CA). `Ok(None)` otherwise.
    pub fn in_cluster(service_account_dir: &Path) -> Result<Option<Self>, KubeApiError> {
        let (Ok(host), Ok(port)) = (std::env::var("KUBERNETES_SERVICE_HOST"), std::env::var("KUBERNETES_SERVICE_PORT"))
        else {
            return Ok(None);
        };
        let dir = service_account_dir;
        let (token, ca) = (dir.join("token"), dir.join("ca.crt"));
        if !token.exists() || !ca.exists() {
            return Ok(None);
        }
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        Self::new(&format!("https://{host}:{port}"), Some(token), Some(&read(&ca)?)).map(Some)
    }

    /// A client of `base` (`https://host:port`), authenticating with the
    /// bearer token in `token_file` (read at every request: tokens rotate),
    /// trusting only `ca_pem` when given.
    pub fn new(base: &str, token_file: Option<PathBuf>, ca_pem: Option<&[u8]>) -> Result<Self, KubeApiError> {
        let mut builder =
            reqwest::Client::builder().timeout(Duration::from_secs(5)).connect_timeout(Duration::from_secs(3));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(KubeApiError::Client)?;
            builder = builder.tls_built_in_root_certs(false);
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder.build().map_err(KubeApiError::Client)?;
        Ok(Self { client, base: base.trim_end_matches('/').to_owned(), token_file })
    }

    /// `GET /api/v1/namespaces/NS/pods/NAME`.
    pub async fn pod(&self, namespace: &str, name: &str) -> Result<k8s_openapi::api::core::v1::Pod, KubeApiError> {
        for (what, value) in [("namespace", namespace), ("pod name", name)] {
            if !valid_name(value) {
                return Err(KubeApiError::BadName { what, value: value.chars().take(80).collect() });
            }
        }
        let url = format!("{}/api/v1/namespaces/{namespace}/pods/{name}", self.base);
        let mut req = self.client.get(&url).header("Accept", "application/json");
        if let Some(f) = &self.token_file {
            let token = String::from_utf8_lossy(&read(f)?).trim().to_owned();
            req = req.bearer_auth(token);
        }
        let request = |source| KubeApiError::Request { url: url.clone(), source };
        let resp = req.send().await.map_err(request)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(request)?;
        if !status.is_success() {
            // A Status object's message, or the start of the body.
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(KubeApiError::Status {
                url,
                status: status.as_u16(),
                message: message.chars().take(300).collect(),
            });
        }
        serde_json::from_slice(&body).map_err(|source| KubeApiError::Decode { url, source })
    }
}

/// The latest containers the API listed for this pod, refreshed on demand
/// by a background task.
#[derive(Debug, Clone)]
pub struct ApiView {
    snapshot: Arc<Mutex<Option<Arc<Vec<ApiContainer>>>>>,
    wake: Arc<tokio::sync::Notify>,
}

impl ApiView {
    /// The containers of the last successful read (None: never read).
    pub fn containers(&self) -> Option<Arc<Vec<ApiContainer>>> {
        self.snapshot.lock().ok().and_then(|s| s.clone())
    }

    /// Ask for a new read (at most one a second; coalesced).
    pub fn refresh(&self) {
        self.wake.notify_one();
    }

    /// A view with fixed contents (tests, or no API).
    pub fn fixed(containers: Option<Vec<ApiContainer>>) -> Self {
        Self { snapshot: Arc::new(Mutex::new(containers.map(Arc::new))), wake: Arc::new(tokio::sync::Notify::new()) }
    }
}

/// The in-cluster Kubernetes API's view of this pod, when credentials exist
/// and the pod's name and namespace are known.
pub async fn for_pod(k: &crate::config::KubernetesConfig) -> Option<ApiView> {
    let sa_dir = k.service_account_dir.clone().unwrap_or_else(|| PathBuf::from(SERVICE_ACCOUNT_DIR));
    let api = match KubeApi::in_cluster(&sa_dir) {
        Ok(Some(api)) => api,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "Kubernetes API credentials unusable: not using the API.");
            return None;
        }
    };
    let namespace = k
        .namespace
        .clone()
        .or_else(|| std::fs::read_to_string(sa_dir.join("namespace")).ok().map(|s| s.trim().to_owned()));
    let name = k.pod_name.clone().or_else(|| std::env::var("HOSTNAME").ok());
    match (namespace, name) {
        (Some(ns), Some(name)) => Some(start(api, ns, name).await),
        _ => {
            tracing::warn!("Pod name or namespace unknown (TELLTALE_KUBERNETES__POD_NAME/NAMESPACE): not using the Kubernetes API.");
            None
        }
    }
}

/// After the API refused us (401/403), wait this long before asking again:
/// RBAC granted after the pod started (or a fixed token) takes effect then.
pub const REFUSED_RETRY: Duration = Duration::from_secs(300);

/// Read the pod once now, then on every [`ApiView::refresh`], in a task (at
/// most one read a second; after a refusal, none for [`REFUSED_RETRY`]).
/// Failures warn once until a read succeeds again.
pub async fn start(api: KubeApi, namespace: String, name: String) -> ApiView {
    start_with(api, namespace, name, REFUSED_RETRY).await
}

/// [`start`] with another wait after a refusal (tests).
pub async fn start_with(api: KubeApi, namespace: String, name: String, refused_retry: Duration) -> ApiView {
    let view = ApiView::fixed(None);
    let mut warned = false;
    let mut refused = fetch(&api, &namespace, &name, &view, &mut warned).await;
    let v = view.clone();
    tokio::spawn(async move {
        loop {
            v.wake.notified().await;
            if refused {
                tokio::time::sleep(refused_retry).await;
            }
            refused = fetch(&api, &namespace, &name, &v, &mut warned).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    view
}

/// One read; true when the API refused us.
async fn fetch(api: &KubeApi, namespace: &str, name: &str, view: &ApiView, warned: &mut bool) -> bool {
    match api.pod(namespace, name).await {
        Ok(pod) => {
            let containers = api_containers(&pod);
            tracing::debug!(containers = containers.len(), "Pod read from the Kubernetes API.");
            if *warned {
                tracing::info!("The Kubernetes API answers again: containers are identified by it.");
                *warned = false;
            }
            if let Ok(mut s) = view.snapshot.lock() {
                *s = Some(Arc::new(containers));
            }
            false
        }
        Err(e) => {
            let refused = e.is_refusal();
            if !*warned {
                tracing::warn!(
                    error = %crate::error_chain(&e),
                    retry = if refused { "in 5 minutes (refused)" } else { "when a container appears" },
                    "Cannot read this pod from the Kubernetes API: containers are identified by the injector's \
                     map and TELLTALE_CONTAINER_NAME instead."
                );
                *warned = true;
            }
            refused
        }
    }
}

/// The running (or ran) containers of a pod object, with their ids.
pub fn api_containers(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<ApiContainer> {
    // Names are unique across a pod's app, init and ephemeral containers.
    // Ephemeral ones (`kubectl debug`) are watched too: a shell attached to a
    // running pod is exactly what a security tool should see.
    let mut spec_images = std::collections::BTreeMap::new();
    if let Some(s) = &pod.spec {
        let app = s.containers.iter().chain(s.init_containers.iter().flatten()).map(|c| (&c.name, &c.image));
        let ephemeral = s.ephemeral_containers.iter().flatten().map(|c| (&c.name, &c.image));
        for (name, image) in app.chain(ephemeral) {
            if let Some(image) = image {
                spec_images.insert(name.as_str(), image.as_str());
            }
        }
    }
    let mut out = Vec::new();
    if let Some(status) = &pod.status {
        let lists = [
            (status.container_statuses.as_ref(), false),
            (status.init_container_statuses.as_ref(), true),
            (status.ephemeral_container_statuses.as_ref(), false),
        ];
        for (list, init) in lists {
            for s in list.into_iter().flatten() {
                let Some(id) = s.container_id.as_deref().and_then(telltale_core::workload::pod::parse_container_id)
                else {
                    continue;
                };
                let image = spec_images.get(s.name.as_str()).map_or_else(|| s.image.clone(), |i| (*i).to_owned());
                out.push(ApiContainer { id, name: s.name.clone(), image, init });
            }
        }
    }
    out
}

#[cfg(test)]
mod pod_json_tests {
    use super::*;

    const ID: &str = "8d0e3f4a9c1b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "5f8e7b2c-1a3d-4e6f-9b8a-7c6d5e4f3a2b";

    #[test]
    fn api_pod_json() {
        let json = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-7d4b9c", "namespace": "shop", "uid": UID},
            "spec": {
                "initContainers": [{"name": "migrate", "image": "registry.example.com/shop/migrate:v3"}],
                "containers": [
                    {"name": "web", "image": "registry.example.com/shop/cws-webapp:v2"},
                    {"name": "telltale", "image": "telltale:0.1"},
                    {"name": "waiting", "image": "redis:7"}
                ],
                "ephemeralContainers": [{"name": "debugger-x7", "image": "busybox:1.36", "targetContainerName": "web"}]
            },
            "status": {
                "phase": "Running",
                "initContainerStatuses": [{"name": "migrate", "containerID": format!("containerd://{ID2}"),
                    "image": "registry.example.com/shop/migrate:v3", "imageID": "", "ready": true, "restartCount": 0}],
                "containerStatuses": [
                    {"name": "web", "containerID": format!("containerd://{ID}"), "image": "registry.example.com/shop/cws-webapp:v2",
                     "imageID": "registry.example.com/shop/cws-webapp@sha256:00", "ready": true, "restartCount": 0},
                    {"name": "waiting", "image": "redis:7", "imageID": "", "ready": false, "restartCount": 0}
                ],
                "ephemeralContainerStatuses": [{"name": "debugger-x7", "containerID": format!("containerd://{}", "d".repeat(64)),
                    "image": "docker.io/library/busybox:1.36", "imageID": "", "ready": false, "restartCount": 0}]
            }
        });
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json).unwrap();
        let c = api_containers(&pod);
        assert_eq!(c.len(), 3, "a container not started yet has no id: {c:?}");
        assert_eq!(
            c[0],
            ApiContainer {
                id: ID.into(),
                name: "web".into(),
                image: "registry.example.com/shop/cws-webapp:v2".into(),
                init: false
            }
        );
        assert_eq!((c[1].name.as_str(), c[1].init, c[1].id.as_str()), ("migrate", true, ID2));
        // `kubectl debug`: the image as the spec names it.
        assert_eq!((c[2].name.as_str(), c[2].image.as_str(), c[2].init), ("debugger-x7", "busybox:1.36", false));
    }
}
