//! What a pod gets, as a JSONPatch against the object the API server sent.
//!
//! The patch is built operation by operation against the *raw* object
//! (never a diff of a re-serialized `Pod`, which would drop fields this
//! crate's Kubernetes types do not know): every `add` whose parent may be
//! missing or `null` (annotations, `env`, `volumes`) adds the whole map or
//! array instead, and keys are escaped by `jsonptr` (`/` → `~1`).
//!
//! Paths, the port and the sidecar's environment come from
//! [`telltale_core::contract`], which the daemon reads them back with.
//!
//! Ports: the pod's containers share one network namespace. The sidecar
//! declares the ports it listens on to the network (the API with a token
//! Secret, the metrics endpoint when on). A metrics port whose number (TCP)
//! or name an app or init container already declares is refused when the
//! pod asked for the endpoint (`telltale.dev/metrics: "true"`) and left off,
//! with a warning, when it is the webhook's `--metrics` default. A port an
//! app listens on without declaring it is not seen: the sidecar then fails
//! to start with the address in its message.
//!
//! Service links: unless the pod says `enableServiceLinks` itself, the patch
//! sets it to `false`. Kubernetes otherwise gives every container
//! `<SERVICE>_SERVICE_HOST`, `<SERVICE>_PORT_…` variables for every Service of
//! the namespace, and a Service named `telltale…` yields `TELLTALE_*`
//! variables in the sidecar's configuration namespace (the daemon ignores
//! those exact shapes too). A pod that relies on the links for its app says
//! `enableServiceLinks: true` and keeps them.

use std::collections::{BTreeMap, BTreeSet};

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, DownwardAPIVolumeFile, DownwardAPIVolumeSource, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, ExecAction, HostPathVolumeSource, KeyToPath, ObjectFieldSelector, Pod, Probe,
    ResourceRequirements, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;
use telltale_core::contract::{
    self, env as cenv, API_DIR, API_PORT, API_PORT_NAME, CONTAINER_NAME_ENV, DATA_DIR, ETCD_DIR, METRICS_PORT,
    METRICS_PORT_NAME, PODINFO_DIR, SERVICE_ACCOUNT_DIR,
};

use crate::annotations as a;
use crate::overrides::{self, Metrics, Overrides};
use crate::Rejection;

pub use crate::overrides::Settings;

/// The sidecar container's name.
pub const SIDECAR_NAME: &str = "telltale";

/// How the pod reached the webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The namespace did not opt in: inject only with `telltale.dev/inject: "true"`.
    PodOptIn,
    /// The namespace is labelled `telltale.dev/inject=enabled`: inject unless
    /// the pod says `telltale.dev/inject: "false"`.
    NamespaceOptIn,
}

/// Why a pod is left as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Neither the pod nor its namespace opted in.
    NotOptedIn,
    /// The pod says `telltale.dev/inject: "false"`.
    OptedOut,
    /// The sidecar is already there (and every container is named).
    AlreadyInjected,
    /// The pod has no containers: nothing to watch, and the API server's
    /// validation rejects it with its own message.
    NoContainers,
}

/// The injector's answer for one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Admit the pod unchanged.
    Skip {
        /// Why.
        reason: SkipReason,
        /// Shown to the client (kubectl prints them).
        warnings: Vec<String>,
    },
    /// Admit the pod with this patch.
    Patch {
        /// JSONPatch against the admitted object.
        patch: Patch,
        /// Shown to the client.
        warnings: Vec<String>,
    },
}

/// Decide what `pod` gets. Pure: the same pod always gives the same answer.
pub fn plan(pod: &Pod, mode: Mode, settings: &Settings) -> Result<Decision, Rejection> {
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let mut warnings = Vec::new();

    let opt = annotations.get(a::INJECT).map(|v| (v, overrides::parse_bool(v)));
    let inject = match (mode, opt) {
        (_, Some((_, Some(false)))) => false,
        (Mode::PodOptIn, Some((_, Some(true)))) | (Mode::NamespaceOptIn, None | Some((_, Some(true)))) => true,
        (Mode::PodOptIn, None) => false,
        (mode, Some((v, None))) => {
            let opted_in = mode == Mode::NamespaceOptIn;
            warnings.push(format!(
                "telltale: annotation `{}` = {v:?} is neither \"true\" nor \"false\"; {}",
                a::INJECT,
                if opted_in { "injecting because the namespace opted in" } else { "not injecting" }
            ));
            opted_in
        }
    };
    if !inject {
        let reason = if matches!(opt, Some((_, Some(false)))) { SkipReason::OptedOut } else { SkipReason::NotOptedIn };
        return Ok(Decision::Skip { reason, warnings });
    }

    let Some(spec) = pod.spec.as_ref().filter(|s| !s.containers.is_empty()) else {
        warnings.push("telltale: the pod has no containers; the sidecar was not injected".into());
        return Ok(Decision::Skip { reason: SkipReason::NoContainers, warnings });
    };
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    let injected = annotations.contains_key(a::INJECTED);
    // Ours as a native sidecar: the first init container, restartPolicy Always.
    let native_ours = |c: &Container| c.name == SIDECAR_NAME && c.restart_policy.as_deref() == Some("Always");
    if init_containers.iter().any(|c| c.name == SIDECAR_NAME && !(injected && native_ours(c))) {
        return Err(Rejection::ForeignInitContainer);
    }

    let mut patch = PatchBuilder::default();
    let already = spec.containers.iter().chain(init_containers).any(|c| c.name == SIDECAR_NAME);
    if already && !injected {
        return Err(Rejection::ForeignContainer);
    }

    // Every app and init container learns its name (on reinvocation too,
    // for containers another webhook added after us).
    for (list, containers) in [("containers", spec.containers.as_slice()), ("initContainers", init_containers)] {
        for (i, c) in containers.iter().enumerate().filter(|(_, c)| c.name != SIDECAR_NAME) {
            name_container(&mut patch, list, i, c, &mut warnings);
        }
    }
    let map = container_map(&spec.containers, init_containers);
    if already {
        if annotations.get(a::CONTAINERS) != Some(&map) {
            patch.add(&["metadata", "annotations", a::CONTAINERS], Value::String(map));
        }
        return Ok(if patch.is_empty() {
            Decision::Skip { reason: SkipReason::AlreadyInjected, warnings }
        } else {
            Decision::Patch { patch: patch.finish(), warnings }
        });
    }

    let mut o = overrides::parse(annotations, settings)?;
    if o.metrics != Metrics::Off {
        if let Some(user) = metrics_port_user(&spec.containers, init_containers) {
            if o.metrics == Metrics::Pod {
                return Err(Rejection::InvalidAnnotation {
                    key: a::METRICS,
                    value: annotations.get(a::METRICS).cloned().unwrap_or_default(),
                    reason: format!("{user}; move that port or set the annotation to \"false\""),
                });
            }
            warnings.push(format!(
                "telltale: {user}; the webhook's default metrics endpoint is left off for this pod (move that \
                 port, or set `{}: \"false\"` to say so)",
                a::METRICS
            ));
            o.metrics = Metrics::Off;
        }
    }

    // Annotations: the container map the sidecar reads and the marker.
    let ours = [(a::CONTAINERS, map), (a::INJECTED, crate::VERSION.to_owned())];
    if pod.metadata.annotations.is_none() {
        let all: serde_json::Map<String, Value> =
            ours.into_iter().map(|(k, v)| (k.to_owned(), Value::String(v))).collect();
        patch.add(&["metadata", "annotations"], Value::Object(all));
    } else {
        for (k, v) in ours {
            patch.add(&["metadata", "annotations", k], Value::String(v));
        }
    }

    // Volumes, renamed when the pod already uses our names.
    let mut taken: BTreeSet<String> = spec.volumes.iter().flatten().map(|v| v.name.clone()).collect::<BTreeSet<_>>();
    let names = VolumeNames {
        data: unique("telltale-data", &mut taken),
        podinfo: unique("telltale-podinfo", &mut taken),
        tmp: unique("telltale-tmp", &mut taken),
        bpffs: unique("telltale-bpffs", &mut taken),
        tracefs: unique("telltale-tracefs", &mut taken),
        cgroup: unique("telltale-cgroup", &mut taken),
        btf: unique("telltale-btf", &mut taken),
        api: o.api_token_secret.as_ref().map(|_| unique("telltale-api", &mut taken)),
        etcd: o.fleet.as_ref().and_then(|f| f.client_secret.as_ref()).map(|_| unique("telltale-etcd", &mut taken)),
    };
    let volumes = volumes(&names, &o);
    if spec.volumes.is_none() {
        patch.add(&["spec", "volumes"], to_value(&volumes));
    } else {
        for v in &volumes {
            patch.add(&["spec", "volumes", "-"], to_value(v));
        }
    }

    // Process namespace: the sidecar reads the other containers' environ.
    if spec.host_pid == Some(true) {
        // Already sees every process of the node; the API server rejects
        // hostPID together with shareProcessNamespace.
    } else {
        if spec.share_process_namespace == Some(false) {
            warnings.push(
                "telltale: shareProcessNamespace was false; set to true so the sidecar can see the \
                 containers' processes (PID 1 of each container is now the pod's pause process)"
                    .into(),
            );
        }
        if spec.share_process_namespace != Some(true) {
            patch.add(&["spec", "shareProcessNamespace"], Value::Bool(true));
        }
    }
    // Service links (see the module docs): off unless the pod decided.
    if spec.enable_service_links.is_none() {
        patch.add(&["spec", "enableServiceLinks"], Value::Bool(false));
    }
    if spec.host_network == Some(true) {
        warnings.push(format!(
            "telltale: the pod uses hostNetwork, so the sidecar API port {API_PORT} is on the node's network: \
             two such pods on one node conflict, and {}",
            if o.api_token_secret.is_some() {
                "the API is reachable at the node's addresses (token-protected)"
            } else {
                "any process on the node can reach the API on 127.0.0.1"
            }
        ));
    }

    // The ServiceAccount admission plugin mounted the token into the
    // containers that existed before this webhook ran: give the sidecar the same.
    let token = spec
        .containers
        .iter()
        .chain(init_containers)
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .find(|m| m.mount_path == SERVICE_ACCOUNT_DIR)
        .map(|m| VolumeMount {
            name: m.name.clone(),
            mount_path: SERVICE_ACCOUNT_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    if token.is_none() {
        warnings.push(
            "telltale: no service account token is mounted (automountServiceAccountToken: false?); \
             the sidecar cannot read its pod from the API and relies on the injected container map"
                .into(),
        );
    }

    if spec.host_network == Some(true) && o.metrics != Metrics::Off {
        warnings.push(format!(
            "telltale: the pod uses hostNetwork, so the sidecar metrics port {METRICS_PORT} is on the node's \
             network: two such pods on one node conflict, and the metrics are served at the node's addresses"
        ));
    }

    let container = sidecar(&names, &o, token);
    if !o.native {
        patch.add(&["spec", "containers", "-"], to_value(&container));
    } else if spec.init_containers.is_none() {
        patch.add(&["spec", "initContainers"], Value::Array(vec![to_value(&container)]));
    } else {
        // First, so it watches the other init containers too (added last:
        // the env patches above use the original indices).
        patch.add(&["spec", "initContainers", "0"], to_value(&container));
    }
    Ok(Decision::Patch { patch: patch.finish(), warnings })
}

/// Add (or correct) `TELLTALE_CONTAINER_NAME` on container `i` of `list`.
fn name_container(patch: &mut PatchBuilder, list: &str, i: usize, c: &Container, warnings: &mut Vec<String>) {
    let var = to_value(&EnvVar { name: CONTAINER_NAME_ENV.into(), value: Some(c.name.clone()), value_from: None });
    let index = i.to_string();
    match &c.env {
        None => patch.add(&["spec", list, &index, "env"], Value::Array(vec![var])),
        Some(env) => match env.iter().position(|e| e.name == CONTAINER_NAME_ENV) {
            None => patch.add(&["spec", list, &index, "env", "-"], var),
            Some(j) if env[j].value.as_deref() == Some(c.name.as_str()) && env[j].value_from.is_none() => {}
            Some(j) => {
                warnings.push(format!(
                    "telltale: container `{}` set {CONTAINER_NAME_ENV} to something other than its name; replaced",
                    c.name
                ));
                patch.replace(&["spec", list, &index, "env", &j.to_string()], var);
            }
        },
    }
}

/// What of the app and init containers takes the sidecar's metrics port:
/// the first port declared with its number over TCP (Kubernetes' default
/// protocol) or with its name, described for a message.
fn metrics_port_user(containers: &[Container], init_containers: &[Container]) -> Option<String> {
    let shared = "the sidecar's metrics port (the pod's containers share one network namespace)";
    containers.iter().chain(init_containers).filter(|c| c.name != SIDECAR_NAME).find_map(|c| {
        c.ports.iter().flatten().find_map(|p| {
            let tcp = p.protocol.as_deref().unwrap_or("TCP") == "TCP";
            if tcp && p.container_port == i32::from(METRICS_PORT) {
                Some(format!("container `{}` declares port {METRICS_PORT}/TCP, {shared}", c.name))
            } else if p.name.as_deref() == Some(METRICS_PORT_NAME) {
                Some(format!(
                    "container `{}` declares a port named `{METRICS_PORT_NAME}` ({}), the name of {shared}",
                    c.name, p.container_port
                ))
            } else {
                None
            }
        })
    })
}

/// Compact JSON `{"name": "image"}` of the app and init containers.
fn container_map(containers: &[Container], init_containers: &[Container]) -> String {
    let map: BTreeMap<&str, &str> = containers
        .iter()
        .chain(init_containers)
        .filter(|c| c.name != SIDECAR_NAME)
        .filter_map(|c| Some((c.name.as_str(), c.image.as_deref()?)))
        .collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
}

/// `base`, or `base-2`, `base-3`, … when taken; the result is taken from then on.
fn unique(base: &str, taken: &mut BTreeSet<String>) -> String {
    let name = std::iter::once(base.to_owned())
        .chain((2..).map(|n| format!("{base}-{n}")))
        .find(|n| !taken.contains(n))
        .unwrap_or_else(|| base.to_owned());
    taken.insert(name.clone());
    name
}

#[derive(Debug)]
struct VolumeNames {
    data: String,
    podinfo: String,
    tmp: String,
    bpffs: String,
    tracefs: String,
    cgroup: String,
    btf: String,
    api: Option<String>,
    /// The etcd client Secret's volume (fleet profiles over mutual TLS).
    etcd: Option<String>,
}

fn volumes(n: &VolumeNames, o: &Overrides) -> Vec<Volume> {
    let host = |name: &str, path: &str, kind: &str| Volume {
        name: name.to_owned(),
        host_path: Some(HostPathVolumeSource { path: path.to_owned(), type_: Some(kind.to_owned()) }),
        ..Volume::default()
    };
    let mut v = vec![match &o.data_host_path {
        Some(path) => host(&n.data, path, "DirectoryOrCreate"),
        None => Volume { name: n.data.clone(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() },
    }];
    v.push(Volume {
        name: n.podinfo.clone(),
        downward_api: Some(DownwardAPIVolumeSource {
            items: Some(vec![DownwardAPIVolumeFile {
                path: contract::CONTAINERS_FILE_NAME.into(),
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{}']", a::CONTAINERS),
                }),
                ..DownwardAPIVolumeFile::default()
            }]),
            ..DownwardAPIVolumeSource::default()
        }),
        ..Volume::default()
    });
    v.push(Volume {
        name: n.tmp.clone(),
        empty_dir: Some(EmptyDirVolumeSource { size_limit: Some(Quantity("64Mi".into())), ..Default::default() }),
        ..Volume::default()
    });
    // Only telltale's own directory of the node's bpffs, where the node set
    // of kernel programs is pinned and shared by every sidecar on the node
    // (written: the first sidecar pins, the last unpins).
    v.push(host(&n.bpffs, telltale_core::contract::NODE_BPFFS_DIR, "DirectoryOrCreate"));
    v.push(host(&n.tracefs, "/sys/kernel/tracing", "Directory"));
    v.push(host(&n.cgroup, "/sys/fs/cgroup", "Directory"));
    v.push(host(&n.btf, "/sys/kernel/btf/vmlinux", "File"));
    if let (Some(name), Some(secret)) = (&n.api, &o.api_token_secret) {
        v.push(Volume {
            name: name.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    if let (Some(name), Some(secret)) = (&n.etcd, o.fleet.as_ref().and_then(|f| f.client_secret.as_ref())) {
        // Only the three keys, so a Secret that lacks one fails the mount
        // with a kubelet event naming the key, not the sidecar at start.
        let item = |key: &str| KeyToPath { key: key.into(), path: key.into(), mode: None };
        v.push(Volume {
            name: name.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                default_mode: Some(0o400),
                items: Some(
                    [contract::ETCD_CA_FILE_NAME, contract::ETCD_CERT_FILE_NAME, contract::ETCD_KEY_FILE_NAME]
                        .map(item)
                        .into(),
                ),
                optional: None,
            }),
            ..Volume::default()
        });
    }
    v
}

fn sidecar(n: &VolumeNames, o: &Overrides, token: Option<VolumeMount>) -> Container {
    let value = |name: &str, value: &str| EnvVar { name: name.into(), value: Some(value.into()), value_from: None };
    let field = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { api_version: None, field_path: path.into() }),
            ..EnvVarSource::default()
        }),
    };
    let mut env: Vec<EnvVar> = cenv::FIXED.iter().map(|(k, v)| value(k, v)).collect();
    env.extend(cenv::POD_FIELDS.iter().map(|(k, path)| field(k, path)));
    env.extend(o.learning.iter().map(|(k, v)| value(k, v)));
    if let Some(f) = &o.fleet {
        env.push(value(cenv::PROFILES_STORE, cenv::PROFILES_STORE_ETCD));
        env.push(value(
            cenv::PROFILES_ETCD_ENDPOINTS,
            &contract::env_string_list(f.endpoints.iter().map(String::as_str)),
        ));
        if let Some(c) = &f.cluster {
            env.push(value(cenv::PROFILES_ETCD_CLUSTER, &contract::env_string(c)));
        }
        if let Some(p) = &f.prefix {
            env.push(value(cenv::PROFILES_ETCD_PREFIX, &contract::env_string(p)));
        }
        if n.etcd.is_some() {
            env.extend(cenv::WITH_ETCD_CLIENT_SECRET.iter().map(|(k, v)| value(k, v)));
        }
    }
    let metrics = o.metrics != Metrics::Off;
    if metrics {
        env.extend(cenv::WITH_METRICS.iter().map(|(k, v)| value(k, v)));
    }
    // A pod's learning annotation, and the metrics endpoint when on, win
    // over the webhook's `--sidecar-env` for the same variable (one entry
    // each: a duplicate name in a container's env is ambiguous to readers
    // of the spec).
    let ours = |k: &str| o.learning.iter().any(|(l, _)| *l == k) || (metrics && cenv::is_metrics(k));
    env.extend(o.env.iter().filter(|(k, _)| !ours(k)).map(|(k, v)| value(k, v)));
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    };
    let mut mounts = vec![
        mount(&n.data, DATA_DIR, false),
        mount(&n.podinfo, PODINFO_DIR, true),
        mount(&n.tmp, "/tmp", false),
        mount(&n.bpffs, telltale_core::contract::NODE_BPFFS_DIR, false),
        mount(&n.tracefs, "/sys/kernel/tracing", true),
        mount(&n.cgroup, "/sys/fs/cgroup", true),
        mount(&n.btf, "/sys/kernel/btf/vmlinux", true),
    ];
    if let Some(etcd) = &n.etcd {
        mounts.push(mount(etcd, ETCD_DIR, true));
    }
    mounts.extend(token);
    let port = |name: &str, number: u16| ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(number),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    let mut ports = Vec::new();
    if let Some(api) = &n.api {
        env.extend(cenv::WITH_API_TOKENS.iter().map(|(k, v)| value(k, v)));
        mounts.push(mount(api, API_DIR, true));
        ports.push(port(API_PORT_NAME, API_PORT));
    }
    if metrics {
        ports.push(port(METRICS_PORT_NAME, METRICS_PORT));
    }
    let mut caps: Vec<String> = ["BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"]
        .into_iter()
        .filter(|c| o.sys_admin || *c != "SYS_ADMIN")
        .map(String::from)
        .collect();
    if o.sys_resource {
        caps.push("SYS_RESOURCE".into());
    }
    let r = &o.resources;
    let mut limits = BTreeMap::from([("memory".to_owned(), Quantity(r.memory_limit.clone()))]);
    if let Some(cpu) = &r.cpu_limit {
        limits.insert("cpu".into(), Quantity(cpu.clone()));
    }
    // A daemon that stops saving its counters is gone or stuck (`status --ready`).
    let probe = |period: i32, failures: i32| Probe {
        exec: Some(ExecAction {
            command: Some(["telltale", "status", "--ready", "--data-dir", DATA_DIR].map(String::from).into()),
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(5),
        ..Probe::default()
    };
    Container {
        name: SIDECAR_NAME.into(),
        image: Some(o.image.clone()),
        command: Some(vec!["telltale".into(), "run".into()]),
        restart_policy: o.native.then(|| "Always".to_owned()),
        // Native: the other containers start once the sidecar watches.
        startup_probe: Some(probe(1, 120)),
        liveness_probe: Some(probe(10, 3)),
        env: Some(env),
        ports: (!ports.is_empty()).then_some(ports),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity(r.cpu_request.clone())),
                ("memory".to_owned(), Quantity(r.memory_request.clone())),
            ])),
            limits: Some(limits),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities { add: Some(caps), drop: Some(vec!["ALL".into()]) }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    // Serializing k8s-openapi types into a `Value` cannot fail (string keys, no floats).
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Collects operations with paths built from unescaped tokens.
#[derive(Debug, Default)]
struct PatchBuilder {
    ops: Vec<PatchOperation>,
}

impl PatchBuilder {
    fn add(&mut self, tokens: &[&str], value: Value) {
        self.ops
            .push(PatchOperation::Add(AddOperation { path: PointerBuf::from_tokens(tokens.iter().copied()), value }));
    }

    fn replace(&mut self, tokens: &[&str], value: Value) {
        self.ops.push(PatchOperation::Replace(ReplaceOperation {
            path: PointerBuf::from_tokens(tokens.iter().copied()),
            value,
        }));
    }

    fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn finish(self) -> Patch {
        Patch(self.ops)
    }
}
