//! deploy/base and deploy/overlays/* as `kubectl kustomize` renders them
//! (Kustomize v5, offline), parsed as the same typed objects as the files:
//! the base is exactly base/webhook.yaml, and each overlay changes only
//! what it is for, in a way the injector reads.
//!
//! `kubectl` must be installed (scripts/setup.sh installs it): without it
//! these tests fail, they never skip.

use std::collections::BTreeMap;

use clap::Parser;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};
use telltale_injector::review::{self, AdmissionRequest, GroupVersionKind};
use telltale_injector::{annotations, Mode, Settings, WebhookArgs, NAMESPACE_OPT_IN_PATH};

use super::{assert_restricted, documents, kind, typed};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

/// An object's identity in a rendering: kind, namespace (none for
/// cluster-scoped objects), name.
type Id = (String, Option<String>, String);

fn id(doc: &Value) -> Id {
    let meta = &doc["metadata"];
    (
        kind(doc).to_owned(),
        meta["namespace"].as_str().map(str::to_owned),
        meta["name"].as_str().unwrap_or_else(|| panic!("no metadata.name: {doc}")).to_owned(),
    )
}

/// `docs` by identity, each identity once.
fn by_id(docs: Vec<Value>, what: &str) -> BTreeMap<Id, Value> {
    let mut map = BTreeMap::new();
    for doc in docs {
        let key = id(&doc);
        assert!(map.insert(key.clone(), doc).is_none(), "{what}: {key:?} twice");
    }
    map
}

/// `kubectl kustomize deploy/<dir>`: its documents by identity, every one
/// checked to be the Kubernetes type it claims to be.
fn render(dir: &str) -> BTreeMap<Id, Value> {
    let path = format!("{DEPLOY}/{dir}");
    let out = match std::process::Command::new("kubectl").arg("kustomize").arg(&path).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "kubectl is not installed (not on PATH): the deploy/ tests render the Kustomize base and \
             overlays with `kubectl kustomize` (kubectl 1.27+, Kustomize v5). Run scripts/setup.sh as \
             root (it installs kubectl when missing) or install kubectl yourself."
        ),
        Err(e) => panic!("running `kubectl kustomize {path}`: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "`kubectl kustomize {path}` failed ({}): {stderr}", out.status);
    // Deprecated fields (patchesJson6902, bases, …) are reported here.
    assert!(stderr.trim().is_empty(), "`kubectl kustomize {path}` warned: {stderr}");
    let text = String::from_utf8(out.stdout).expect("kustomize prints UTF-8");
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .filter(|v: &Value| !v.is_null())
        .collect();
    let rendered = by_id(docs, &path);
    for doc in rendered.values() {
        assert_typed(doc);
    }
    rendered
}

/// `doc` parses as its kind's type with no field lost.
fn assert_typed(doc: &Value) {
    match kind(doc) {
        "Namespace" => drop(typed::<Namespace>(doc)),
        "ServiceAccount" => drop(typed::<ServiceAccount>(doc)),
        "Deployment" => drop(typed::<Deployment>(doc)),
        "Service" => drop(typed::<Service>(doc)),
        "ConfigMap" => drop(typed::<ConfigMap>(doc)),
        "MutatingWebhookConfiguration" => drop(typed::<MutatingWebhookConfiguration>(doc)),
        other => panic!("{other}: a kind the deploy tests do not know; add its type here"),
    }
}

fn key(kind: &str, namespace: Option<&str>, name: &str) -> Id {
    (kind.to_owned(), namespace.map(str::to_owned), name.to_owned())
}

const NS: &str = "telltale-system";

fn injector_id() -> Id {
    key("Deployment", Some(NS), "telltale-injector")
}

/// The injector container's command in a rendering.
fn injector_command(rendered: &BTreeMap<Id, Value>) -> Vec<String> {
    let deployment: Deployment = typed(&rendered[&injector_id()]);
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let container = pod.containers.iter().find(|c| c.name == "injector").expect("the injector container");
    container.command.clone().expect("a command")
}

/// The injection defaults the webhook takes from a rendering's command.
fn settings(rendered: &BTreeMap<Id, Value>) -> Settings {
    let command = injector_command(rendered);
    let args = WebhookArgs::try_parse_from(&command).unwrap_or_else(|e| panic!("{command:?}: {e}"));
    args.settings().unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

/// The overlay's objects other than `changed` are the base's, unchanged,
/// and it has every object of the base.
fn assert_rest_unchanged(base: &BTreeMap<Id, Value>, overlay: &BTreeMap<Id, Value>, changed: &[Id], dir: &str) {
    for (id, doc) in base {
        let other = overlay.get(id).unwrap_or_else(|| panic!("{dir} drops {id:?}"));
        if !changed.contains(id) {
            assert_eq!(other, doc, "{dir} changes {id:?}");
        }
    }
}

/// The injector Deployment of `overlay` is the base's with `extra`
/// appended to the injector's command, and nothing else changed.
fn assert_command_appended(base: &BTreeMap<Id, Value>, overlay: &BTreeMap<Id, Value>, extra: &[&str], dir: &str) {
    let base_command = injector_command(base);
    let command = injector_command(overlay);
    let mut expected = base_command.clone();
    expected.extend(extra.iter().map(|a| (*a).to_owned()));
    assert_eq!(command, expected, "{dir}: the base's flags and then {extra:?}");
    let mut restored = overlay[&injector_id()].clone();
    restored["spec"]["template"]["spec"]["containers"][0]["command"] = json!(base_command);
    assert_eq!(restored, base[&injector_id()], "{dir} changes the injector Deployment beyond its command");
}

/// A pod of an opted-in namespace, as the webhook would patch it with
/// `settings`.
fn inject(settings: &Settings) -> Pod {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "web-", "namespace": "shop"},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
    });
    let request = AdmissionRequest {
        uid: "5c1d".into(),
        kind: GroupVersionKind { group: String::new(), version: "v1".into(), kind: "Pod".into() },
        name: None,
        namespace: Some("shop".into()),
        operation: "CREATE".into(),
        object: Some(pod),
        dry_run: None,
    };
    let response = review::admit(&request, Mode::NamespaceOptIn, settings);
    assert!(response.allowed, "{:?}", response.status);
    use base64::Engine as _;
    let patch = base64::engine::general_purpose::STANDARD.decode(response.patch.expect("a patch")).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut doc = request.object.unwrap();
    json_patch::patch(&mut doc, &patch).unwrap();
    serde_json::from_value(doc).unwrap()
}

/// `kubectl apply -k deploy/base` applies exactly what `kubectl apply -f
/// deploy/base/webhook.yaml` did: the five objects of the injector, every
/// file in base/ listed, nothing transformed.
#[test]
fn base_renders_exactly_the_webhook_manifest() {
    let rendered = render("base");
    let ids: Vec<&Id> = rendered.keys().collect();
    let expected = [
        key("Deployment", Some(NS), "telltale-injector"),
        key("MutatingWebhookConfiguration", None, "telltale-injector"),
        key("Namespace", None, NS),
        key("Service", Some(NS), "telltale-injector"),
        key("ServiceAccount", Some(NS), "telltale-injector"),
    ];
    assert_eq!(ids, expected.iter().collect::<Vec<_>>());

    let mut files: Vec<String> = std::fs::read_dir(format!("{DEPLOY}/base"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    files.sort();
    assert_eq!(files, ["webhook.yaml"]);
    let docs = files.iter().flat_map(|f| documents(&format!("base/{f}"))).collect();
    assert_eq!(rendered, by_id(docs, "deploy/base/*.yaml"), "the rendering is the files' objects, unchanged");
    assert!(!settings(&rendered).native_sidecar, "the base injects regular sidecars");
}

/// namespace-opt-in: the API server sends the webhook only pods of
/// namespaces labelled `telltale.dev/inject=enabled`, to the path that
/// injects unless the pod opts out. Nothing else changes.
#[test]
fn namespace_opt_in_overlay_only_matches_labelled_namespaces() {
    let dir = "overlays/namespace-opt-in";
    let base = render("base");
    let overlay = render(dir);
    let mwc_id = key("MutatingWebhookConfiguration", None, "telltale-injector");
    assert_eq!(overlay.keys().collect::<Vec<_>>(), base.keys().collect::<Vec<_>>());
    assert_rest_unchanged(&base, &overlay, std::slice::from_ref(&mwc_id), dir);

    let config: MutatingWebhookConfiguration = typed(&overlay[&mwc_id]);
    let hooks = config.webhooks.unwrap();
    assert_eq!(hooks.len(), 1, "only the namespace webhook is left");
    let hook = &hooks[0];
    let service = hook.client_config.service.as_ref().unwrap();
    assert_eq!(service.path.as_deref(), Some(NAMESPACE_OPT_IN_PATH));
    let exprs = hook.namespace_selector.as_ref().unwrap().match_expressions.clone().unwrap();
    let label = exprs.iter().find(|e| e.key == annotations::INJECT).expect("a telltale.dev/inject requirement");
    assert_eq!((label.operator.as_str(), label.values.as_deref().unwrap()), ("In", &["enabled".to_owned()][..]));
    let by_name = exprs.iter().find(|e| e.key == "kubernetes.io/metadata.name").unwrap();
    assert_eq!(by_name.operator, "NotIn");
    assert!(by_name.values.as_ref().unwrap().iter().any(|v| v == NS), "telltale-system is never injected");

    // The entry left is the base's namespace entry, unchanged.
    let base_hooks = base[&mwc_id]["webhooks"].as_array().unwrap();
    let base_ns_hook = base_hooks.iter().find(|h| h["name"] == overlay[&mwc_id]["webhooks"][0]["name"]).unwrap();
    assert_eq!(&overlay[&mwc_id]["webhooks"][0], base_ns_hook);
    let mut rest = overlay[&mwc_id].clone();
    rest["webhooks"] = base[&mwc_id]["webhooks"].clone();
    assert_eq!(rest, base[&mwc_id], "{dir} changes the configuration beyond its webhooks");
}

/// native-sidecar: the injector runs with `--native-sidecar`, and a pod it
/// injects gets telltale as its first init container with `restartPolicy:
/// Always` (the base's: a regular container).
#[test]
fn native_sidecar_overlay_turns_on_the_injectors_flag() {
    let dir = "overlays/native-sidecar";
    let base = render("base");
    let overlay = render(dir);
    assert_eq!(overlay.keys().collect::<Vec<_>>(), base.keys().collect::<Vec<_>>());
    assert_rest_unchanged(&base, &overlay, &[injector_id()], dir);
    assert_command_appended(&base, &overlay, &["--native-sidecar"], dir);

    let native = settings(&overlay);
    assert!(native.native_sidecar);
    let spec = inject(&native).spec.unwrap();
    let first = &spec.init_containers.as_ref().expect("init containers")[0];
    assert_eq!((first.name.as_str(), first.restart_policy.as_deref()), ("telltale", Some("Always")));
    assert!(spec.containers.iter().all(|c| c.name != "telltale"));

    let regular = inject(&settings(&base)).spec.unwrap();
    assert!(regular.init_containers.is_none());
    assert_eq!(regular.containers.last().unwrap().name, "telltale");
}

/// otel-collector: the collector's objects are otel-collector.yaml's, the
/// injector gives every sidecar `OTEL_EXPORTER_OTLP_ENDPOINT` = that
/// collector's Service, on the port that reaches its OTLP/gRPC receiver
/// (the sidecar's protocol when none is set). The base's objects are unchanged
/// but for that flag.
#[test]
fn otel_collector_overlay_points_the_sidecars_at_its_collector() {
    let dir = "overlays/otel-collector";
    let base = render("base");
    let overlay = render(dir);
    let collector = by_id(documents("overlays/otel-collector/otel-collector.yaml"), "otel-collector.yaml");
    let mut expected: Vec<&Id> = base.keys().chain(collector.keys()).collect();
    expected.sort();
    assert_eq!(overlay.keys().collect::<Vec<_>>(), expected);
    for (id, doc) in &collector {
        assert_eq!(&overlay[id], doc, "{id:?} is otel-collector.yaml's");
    }
    assert_rest_unchanged(&base, &overlay, &[injector_id()], dir);

    // The flag, as the webhook reads it.
    let sidecar_env = settings(&overlay).sidecar_env;
    let [(name, endpoint)] = &sidecar_env[..] else { panic!("one --sidecar-env: {sidecar_env:?}") };
    assert_eq!(name, "OTEL_EXPORTER_OTLP_ENDPOINT");
    assert_command_appended(&base, &overlay, &[&format!("--sidecar-env={name}={endpoint}")], dir);
    let uri: http::Uri = endpoint.parse().unwrap();
    assert_eq!(uri.scheme_str(), Some("http"), "the collector has no TLS");
    let host = uri.host().unwrap();
    let port = i32::from(uri.port_u16().expect("an explicit port"));

    // The Service that host names, in the overlay.
    let (svc_name, svc_ns) = host.split_once('.').unwrap_or_else(|| panic!("{host}: not <service>.<namespace>"));
    let svc_ns = svc_ns.trim_end_matches(".cluster.local").trim_end_matches(".svc");
    let service: Service = typed(
        overlay
            .get(&key("Service", Some(svc_ns), svc_name))
            .unwrap_or_else(|| panic!("{endpoint}: no Service {svc_ns}/{svc_name} in {dir}")),
    );
    assert!(collector.contains_key(&key("Service", Some(svc_ns), svc_name)), "the collector's Service");
    let svc_spec = service.spec.unwrap();
    let svc_port = svc_spec.ports.iter().flatten().find(|p| p.port == port).expect("the Service has the port");

    // … selecting the collector's pods, whose container listens there with
    // the OTLP/gRPC receiver.
    let deployment: Deployment = typed(&overlay[&key("Deployment", Some(svc_ns), svc_name)]);
    assert_restricted(&deployment);
    let template = deployment.spec.unwrap().template;
    let labels = template.metadata.unwrap().labels.unwrap();
    let selector = svc_spec.selector.unwrap();
    assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)), "the Service selects the collector's pods");
    let pod = template.spec.unwrap();
    let container = &pod.containers[0];
    let container_port = match svc_port.target_port.clone().unwrap_or(IntOrString::Int(port)) {
        IntOrString::Int(p) => p,
        IntOrString::String(n) => {
            container.ports.iter().flatten().find(|p| p.name.as_deref() == Some(&n)).unwrap().container_port
        }
    };
    assert!(container.ports.iter().flatten().any(|p| p.container_port == container_port));
    let mount = container.volume_mounts.iter().flatten().find(|m| m.name == "config").unwrap();
    let config_arg = container.args.iter().flatten().find_map(|a| a.strip_prefix("--config=")).unwrap();
    let file = config_arg.strip_prefix(&format!("{}/", mount.mount_path)).expect("the config is the mounted one");
    let volume = pod.volumes.iter().flatten().find(|v| v.name == mount.name).unwrap();
    let cm_name = volume.config_map.as_ref().unwrap().name.clone();
    let cm: ConfigMap = typed(&overlay[&key("ConfigMap", Some(svc_ns), &cm_name)]);
    let config: Value = serde_norway::from_str(&cm.data.unwrap()[file]).unwrap();
    let grpc = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].as_str().unwrap();
    assert_eq!(grpc, format!("0.0.0.0:{container_port}"), "{endpoint} reaches the gRPC receiver");
    assert!(
        !sidecar_env.iter().any(|(k, _)| k.starts_with("OTEL_EXPORTER_OTLP_PROTOCOL")),
        "the sidecar's default protocol (gRPC)"
    );

    // Every injected sidecar gets it.
    let spec = inject(&settings(&overlay)).spec.unwrap();
    let sidecar = spec.containers.iter().find(|c| c.name == "telltale").unwrap();
    let env = sidecar.env.iter().flatten().find(|e| e.name == *name).expect("the endpoint variable");
    assert_eq!(env.value.as_deref(), Some(endpoint.as_str()));
}
