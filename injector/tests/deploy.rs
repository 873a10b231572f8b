//! deploy/*.yaml parse as the Kubernetes objects they claim to be, agree
//! with the webhook's routes and flags, and the example app gets injected;
//! [`kustomize`]: the Kustomize base and overlays render to what they claim.
#![allow(clippy::expect_used, clippy::unwrap_used)]

// A test crate's root resolves modules beside it: tests/kustomize.rs would be
// a test target of its own.
#[path = "deploy/kustomize.rs"]
mod kustomize;

use clap::Parser;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde_json::Value;
use telltale_injector::review::{self, AdmissionRequest, GroupVersionKind};
use telltale_injector::{Mode, Settings, WebhookArgs, NAMESPACE_OPT_IN_PATH, POD_OPT_IN_PATH};

/// The documents of deploy/`name` (a path under deploy/), as JSON values.
fn documents(name: &str) -> Vec<Value> {
    let path = format!("{}/../deploy/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect(&path);
    serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect(&path))
        .filter(|v| !v.is_null())
        .collect()
}

/// `doc` as `T`, checking that no field was lost on the way (a misspelt
/// field would be silently ignored by the API server's lenient decoding
/// in a client-side apply, or rejected by a strict one).
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> T {
    let t: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc}"));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(&back, doc, "fields lost in a round trip through the typed object");
    t
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap()
}

/// The pod template passes the `restricted` Pod Security Standard that
/// telltale-system enforces (the checks the API server makes).
fn assert_restricted(deployment: &Deployment) {
    let pod = deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_pod_restricted(pod, deployment.metadata.name.as_deref().unwrap());
}

fn assert_pod_restricted(pod: &k8s_openapi::api::core::v1::PodSpec, name: &str) {
    let psc = pod.security_context.as_ref().unwrap_or_else(|| panic!("{name}: no pod securityContext"));
    assert_eq!(psc.run_as_non_root, Some(true), "{name}: runAsNonRoot");
    assert!(psc.run_as_user.is_some_and(|u| u != 0), "{name}: runAsUser");
    let seccomp = psc.seccomp_profile.as_ref().unwrap_or_else(|| panic!("{name}: seccompProfile"));
    assert!(["RuntimeDefault", "Localhost"].contains(&seccomp.type_.as_str()), "{name}: seccompProfile");
    assert!(pod.host_network.is_none() && pod.host_pid.is_none(), "{name}: host namespaces");
    for v in pod.volumes.iter().flatten() {
        assert!(v.host_path.is_none(), "{name}: hostPath volume {}", v.name);
    }
    for c in pod.containers.iter().chain(pod.init_containers.iter().flatten()) {
        let sc = c.security_context.as_ref().unwrap_or_else(|| panic!("{name}/{}: no securityContext", c.name));
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{name}/{}: allowPrivilegeEscalation", c.name);
        assert_ne!(sc.privileged, Some(true), "{name}/{}: privileged", c.name);
        let caps = sc.capabilities.as_ref().unwrap_or_else(|| panic!("{name}/{}: capabilities", c.name));
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]), "{name}/{}: drop ALL", c.name);
        let added = caps.add.iter().flatten().filter(|a| a.as_str() != "NET_BIND_SERVICE").count();
        assert_eq!(added, 0, "{name}/{}: only NET_BIND_SERVICE may be added", c.name);
    }
}

#[test]
fn webhook_manifest_matches_the_server() {
    let docs = documents("base/webhook.yaml");
    let kinds: Vec<&str> = docs.iter().map(kind).collect();
    assert_eq!(kinds, ["Namespace", "ServiceAccount", "Deployment", "Service", "MutatingWebhookConfiguration"]);
    let ns: Namespace = typed(&docs[0]);
    let enforce = ns.metadata.labels.as_ref().unwrap().get("pod-security.kubernetes.io/enforce").cloned();
    assert_eq!(enforce.as_deref(), Some("restricted"));
    let ns = ns.metadata.name.unwrap();
    let _: ServiceAccount = typed(&docs[1]);
    let deployment: Deployment = typed(&docs[2]);
    assert_restricted(&deployment);
    let service: Service = typed(&docs[3]);
    let config: MutatingWebhookConfiguration = typed(&docs[4]);

    // The Deployment's command is a valid `telltale-injector` invocation.
    let template = deployment.spec.unwrap().template;
    let pod = template.spec.unwrap();
    let container = &pod.containers[0];
    let command = container.command.clone().unwrap();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_telltale-injector")).file_name().unwrap();
    assert_eq!(command[0], binary.to_str().unwrap(), "the command is this crate's binary");
    let args = WebhookArgs::try_parse_from(&command).unwrap();
    let mount = container.volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "tls").unwrap();
    assert!(args.tls_cert.starts_with(&mount.mount_path) && args.tls_key.starts_with(&mount.mount_path));
    let port = container.ports.as_ref().unwrap().iter().find(|p| p.name.as_deref() == Some("https")).unwrap();
    assert_eq!(i32::from(args.listen.port()), port.container_port);
    let secret = pod.volumes.as_ref().unwrap().iter().find(|v| v.name == "tls").unwrap().secret.clone().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("telltale-injector-tls"), "gen-certs.sh creates this one");
    let probe = container.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
    assert_eq!((probe.path.as_deref(), probe.scheme.as_deref()), (Some(telltale_injector::HEALTH_PATH), Some("HTTPS")));
    assert_eq!(
        template.metadata.unwrap().annotations.unwrap().get("telltale.dev/inject").map(String::as_str),
        Some("false")
    );

    // The Service reaches that port.
    let sp = &service.spec.unwrap().ports.unwrap()[0];
    assert_eq!(sp.port, 443);
    assert_eq!(sp.target_port, Some(IntOrString::String("https".into())));

    // Two webhooks, one per opt-in path, with disjoint namespace selectors.
    let hooks = config.webhooks.unwrap();
    let paths: Vec<_> = hooks.iter().map(|h| h.client_config.service.as_ref().unwrap().path.clone().unwrap()).collect();
    assert_eq!(paths, [POD_OPT_IN_PATH, NAMESPACE_OPT_IN_PATH]);
    let mut inject_ops = Vec::new();
    for h in &hooks {
        let svc = h.client_config.service.as_ref().unwrap();
        assert_eq!(
            (svc.name.as_str(), svc.namespace.as_str(), svc.port),
            ("telltale-injector", ns.as_str(), Some(443))
        );
        assert_eq!(h.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(h.side_effects, "None");
        assert_eq!(h.admission_review_versions, ["v1"]);
        assert_eq!(h.reinvocation_policy.as_deref(), Some("IfNeeded"));
        assert!(h.timeout_seconds.is_some_and(|t| (1..=30).contains(&t)));
        let rule = &h.rules.as_ref().unwrap()[0];
        assert_eq!(rule.operations.as_deref().unwrap(), ["CREATE"]);
        assert_eq!(rule.resources.as_deref().unwrap(), ["pods"]);
        let exprs = h.namespace_selector.as_ref().unwrap().match_expressions.clone().unwrap();
        let by_name = exprs.iter().find(|e| e.key == "kubernetes.io/metadata.name").unwrap();
        assert_eq!(by_name.operator, "NotIn");
        let excluded = by_name.values.clone().unwrap();
        assert!(excluded.contains(&"kube-system".to_owned()) && excluded.contains(&ns));
        let opt = exprs.iter().find(|e| e.key == "telltale.dev/inject").unwrap();
        assert_eq!(opt.values.as_deref().unwrap(), ["enabled"]);
        inject_ops.push(opt.operator.clone());
    }
    assert_eq!(inject_ops, ["NotIn", "In"], "each namespace matches exactly one webhook");
}

/// The image has the binaries the manifests and the docs run: `telltale`
/// (the sidecar, the injected container's command), `telltalectl` (`kubectl
/// exec -c telltale -- telltalectl …` through the local admin socket) and
/// `telltale-injector` (base/webhook.yaml).
#[test]
fn the_image_installs_the_injector_binary() {
    let path = format!("{}/../deploy/Dockerfile", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect(&path);
    let build = text.lines().find(|l| l.contains("cargo build")).expect("a cargo build line");
    for (package, bin) in [
        ("telltale-sidecar", "telltale"),
        ("telltale-client", "telltalectl"),
        ("telltale-injector", "telltale-injector"),
    ] {
        assert!(build.contains(&format!("-p {package}")) && build.contains(&format!("--bin {bin} ")), "{build}");
        let installed = format!("/usr/local/bin/{bin}");
        assert!(
            text.lines().any(|l| l.starts_with("COPY --from=build") && l.contains(&installed)),
            "{bin} is copied into the image"
        );
    }
}

#[test]
fn rbac_template_lets_the_sidecar_get_pods() {
    let docs = documents("rbac.yaml");
    let role: Role = typed(&docs[0]);
    let binding: RoleBinding = typed(&docs[1]);
    let rule = &role.rules.unwrap()[0];
    assert_eq!(rule.api_groups.as_deref().unwrap(), [""]);
    assert_eq!(rule.resources.as_deref().unwrap(), ["pods"]);
    assert_eq!(rule.verbs, ["get"]);
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
    assert_eq!(binding.metadata.namespace, role.metadata.namespace);
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.namespace.as_ref()),
        ("ServiceAccount", binding.metadata.namespace.as_ref())
    );
}

#[test]
fn example_app_gets_the_sidecar() {
    let docs = documents("example-app.yaml");
    let ns: Namespace = typed(&docs[0]);
    let labels = ns.metadata.labels.unwrap();
    assert_eq!(labels.get("pod-security.kubernetes.io/enforce").map(String::as_str), Some("privileged"));
    let deployment: Deployment = typed(&docs[1]);
    let template = deployment.spec.unwrap().template;
    // What the ReplicaSet controller would create from the template.
    let pod = Pod { metadata: template.metadata.unwrap(), spec: template.spec, status: None };
    let request = AdmissionRequest {
        uid: "e2b5".into(),
        kind: GroupVersionKind { group: String::new(), version: "v1".into(), kind: "Pod".into() },
        name: None,
        namespace: ns.metadata.name,
        operation: "CREATE".into(),
        object: Some(serde_json::to_value(&pod).unwrap()),
        dry_run: None,
    };
    let settings = Settings {
        sidecar_image: "telltale:0.1.0".into(),
        api_token_secret: None,
        sidecar_env: Vec::new(),
        native_sidecar: false,
        fleet: None,
        metrics: false,
    };
    let response = review::admit(&request, Mode::PodOptIn, &settings);
    assert!(response.allowed, "{:?}", response.status);
    use base64::Engine as _;
    let patch = base64::engine::general_purpose::STANDARD.decode(response.patch.unwrap()).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut doc = request.object.unwrap();
    json_patch::patch(&mut doc, &patch).unwrap();
    let pod: Pod = serde_json::from_value(doc).unwrap();
    let names: Vec<_> = pod.spec.as_ref().unwrap().containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["web", "telltale"]);
    let sidecar = &pod.spec.as_ref().unwrap().containers[1];
    let min = sidecar.env.iter().flatten().find(|e| e.name == "TELLTALE_LEARNING__MIN_DURATION").unwrap();
    assert_eq!(min.value.as_deref(), Some("10m"));
}

#[test]
fn gen_certs_script_is_valid_bash() {
    let path = format!("{}/../deploy/gen-certs.sh", env!("CARGO_MANIFEST_DIR"));
    let status = std::process::Command::new("bash").arg("-n").arg(&path).status().unwrap();
    assert!(status.success(), "bash -n {path}");
}

/// gen-certs.sh against a stand-in `kubectl` that records what it is asked
/// (openssl is real): the certificate it makes is one the webhook serves,
/// and a second run keeps the previous CA in the caBundle (and only that
/// one), so reviews do not fail while the webhook switches certificates.
#[test]
fn gen_certs_rotation_trusts_the_previous_ca_meanwhile() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let script = format!("{}/../deploy/gen-certs.sh", env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let kubectl = bin.join("kubectl");
    std::fs::write(
        &kubectl,
        r#"#!/bin/sh
echo "$*" >>"$KUBE_LOG/calls"
for a; do last="$a"; done
case "$*" in
  *"get mutatingwebhookconfiguration"*) if [ -f "$KUBE_LOG/bundle" ]; then cat "$KUBE_LOG/bundle"; else echo "NotFound" >&2; exit 1; fi ;;
  *"create secret tls"*) printf 'kind: Secret\n' ;;
  *"apply -f -"*) cat >"$KUBE_LOG/applied" ;;
  *"patch mutatingwebhookconfiguration"*) printf '%s' "$last" >"$KUBE_LOG/patch" ;;
esac
"#,
    )
    .unwrap();
    std::fs::set_permissions(&kubectl, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let run = |n: usize| -> (String, Vec<String>) {
        let out = dir.path().join(format!("run{n}"));
        let status = std::process::Command::new("bash")
            .arg(&script)
            .arg("--out")
            .arg(&out)
            .env("PATH", &path)
            .env("KUBE_LOG", dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "gen-certs.sh run {n}");
        let patch: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("patch")).unwrap()).unwrap();
        let bundle = patch[0]["value"].as_str().unwrap().to_owned();
        assert_eq!(patch[1]["value"], patch[0]["value"], "both webhooks get the same bundle");
        let pem = String::from_utf8(b64.decode(&bundle).unwrap()).unwrap();
        let certs: Vec<String> = pem
            .split_inclusive("-----END CERTIFICATE-----")
            .filter(|c| c.contains("BEGIN CERTIFICATE"))
            .map(|c| c.trim().to_owned())
            .collect();
        // What the webhook will serve loads, and the new CA is the bundle's first.
        let provider = rustls::crypto::ring::default_provider();
        telltale_injector::certs::load(&out.join("tls.crt"), &out.join("tls.key"), &provider).expect("servable");
        assert_eq!(certs[0], std::fs::read_to_string(out.join("ca.crt")).unwrap().trim());
        std::fs::write(dir.path().join("bundle"), &bundle).unwrap();
        (bundle, certs)
    };
    let (_, first) = run(1);
    assert_eq!(first.len(), 1, "first install: the new CA alone");
    let (_, second) = run(2);
    assert_eq!(second.len(), 2);
    assert_eq!(second[1], first[0], "the previous CA is still trusted");
    let (_, third) = run(3);
    assert_eq!(third.len(), 2, "only the one before, not every CA ever made");
    assert_eq!(third[1], second[0]);
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
    assert!(!calls.contains("rollout restart"), "the webhook reloads by itself: {calls}");
    assert!(std::fs::read_to_string(dir.path().join("applied")).unwrap().contains("Secret"));
}

#[test]
fn otel_collector_receives_otlp_on_the_standard_ports() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let docs = documents("overlays/otel-collector/otel-collector.yaml");
    let kinds: Vec<&str> = docs.iter().map(kind).collect();
    assert_eq!(kinds, ["ConfigMap", "Deployment", "Service"]);
    let cm: ConfigMap = typed(&docs[0]);
    let config_text = cm.data.unwrap().remove("config.yaml").expect("config.yaml");
    let config: Value = serde_norway::from_str(&config_text).expect("the collector config is YAML");
    let protocols = &config["receivers"]["otlp"]["protocols"];
    assert_eq!(protocols["grpc"]["endpoint"], "0.0.0.0:4317");
    assert_eq!(protocols["http"]["endpoint"], "0.0.0.0:4318");
    for pipeline in ["traces", "metrics"] {
        let p = &config["service"]["pipelines"][pipeline];
        assert_eq!(p["receivers"][0], "otlp", "{pipeline}");
        for exporter in p["exporters"].as_array().unwrap() {
            assert!(config["exporters"].get(exporter.as_str().unwrap()).is_some(), "{pipeline}: {exporter} is defined");
        }
    }
    let deployment: Deployment = typed(&docs[1]);
    assert_eq!(deployment.metadata.namespace.as_deref(), Some("telltale-system"));
    assert_restricted(&deployment);
    let svc: Service = typed(&docs[2]);
    let ports: Vec<i32> = svc.spec.unwrap().ports.unwrap().iter().map(|p| p.port).collect();
    assert!(ports.contains(&4317) && ports.contains(&4318), "{ports:?}");
}

/// `--flag=value` arguments of a command, by flag (each flag once).
fn flags(command: &[String]) -> std::collections::BTreeMap<&str, &str> {
    let mut map = std::collections::BTreeMap::new();
    for arg in command.iter().skip(1) {
        let (k, v) = arg.split_once('=').unwrap_or_else(|| panic!("{arg}: expected --flag=value"));
        assert!(map.insert(k, v).is_none(), "{k} twice");
    }
    map
}

/// The port of a URL like `https://host:2379`.
fn url_port(url: &str) -> i32 {
    url.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or_else(|| panic!("{url}: no port"))
}

/// The `--etcd-*` flags of base/webhook.yaml, commented out there (an install
/// without etcd must keep working), as the webhook would parse them.
fn webhook_etcd_args() -> WebhookArgs {
    let path = format!("{}/../deploy/base/webhook.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect(&path);
    let mut argv = vec!["telltale-injector".to_owned(), "--tls-cert=/t/c".into(), "--tls-key=/t/k".into()];
    argv.extend(
        text.lines().filter_map(|l| l.trim().strip_prefix("# - --etcd-")).map(|rest| format!("--etcd-{}", rest.trim())),
    );
    assert!(argv.len() > 3, "webhook.yaml shows the --etcd-* flags");
    WebhookArgs::try_parse_from(&argv).unwrap()
}

/// etcd.yaml: every object parses as its Kubernetes type; the StatefulSet's
/// etcd flags agree with its ports, Services, Secrets and member names; TLS
/// is on for clients and peers; the pod passes `restricted`; and the
/// endpoints and client Secret the base/webhook.yaml example passes are this
/// cluster's.
#[test]
fn etcd_manifest_is_a_consistent_tls_cluster_the_webhook_points_at() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;

    let docs = documents("etcd.yaml");
    let kinds: Vec<&str> = docs.iter().map(kind).collect();
    assert_eq!(kinds, ["Service", "Service", "StatefulSet", "PodDisruptionBudget"]);
    let headless: Service = typed(&docs[0]);
    let client: Service = typed(&docs[1]);
    let sts: StatefulSet = typed(&docs[2]);
    let pdb: PodDisruptionBudget = typed(&docs[3]);
    for m in [&headless.metadata, &client.metadata, &sts.metadata, &pdb.metadata] {
        assert_eq!(m.namespace.as_deref(), Some("telltale-system"), "{:?}", m.name);
    }
    let ns = "telltale-system";
    let name = sts.metadata.name.clone().unwrap();
    let spec = sts.spec.clone().unwrap();
    let replicas = spec.replicas.unwrap();
    assert_eq!(replicas, 3);
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"), "members bootstrap together");
    let template_labels = spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
    let selects =
        |sel: &std::collections::BTreeMap<String, String>| sel.iter().all(|(k, v)| template_labels.get(k) == Some(v));
    assert!(selects(spec.selector.match_labels.as_ref().unwrap()));
    assert_eq!(
        spec.template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()
            .get("telltale.dev/inject")
            .map(String::as_str),
        Some("false")
    );

    // The headless Service is the StatefulSet's: DNS for every member, even not ready.
    let hs = headless.spec.clone().unwrap();
    assert_eq!(spec.service_name.as_deref(), headless.metadata.name.as_deref());
    assert_eq!(hs.cluster_ip.as_deref(), Some("None"));
    assert_eq!(hs.publish_not_ready_addresses, Some(true));
    assert!(selects(hs.selector.as_ref().unwrap()));
    let cs = client.spec.clone().unwrap();
    assert!(selects(cs.selector.as_ref().unwrap()));
    assert_ne!(cs.cluster_ip.as_deref(), Some("None"));

    let pod = spec.template.spec.clone().unwrap();
    assert_pod_restricted(&pod, &name);
    let c = &pod.containers[0];
    let command = c.command.clone().unwrap();
    assert_eq!(command[0], "etcd");
    let f = flags(&command);
    let port = |port_name: &str| {
        c.ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(port_name))
            .unwrap_or_else(|| panic!("port {port_name}"))
            .container_port
    };
    // Listening where the container and the Services say.
    assert_eq!(url_port(f["--listen-client-urls"]), port("client"));
    assert_eq!(url_port(f["--listen-peer-urls"]), port("peer"));
    assert_eq!(url_port(f["--listen-metrics-urls"]), port("metrics"));
    for svc in [&hs, &cs] {
        for p in svc.ports.iter().flatten() {
            let target = match &p.target_port {
                Some(IntOrString::String(n)) => port(n),
                other => panic!("{other:?}: target ports by name"),
            };
            assert_eq!(p.port, target, "{:?}", p.name);
        }
    }
    // TLS for clients and peers, mutual, files from the mounted Secrets
    // that gen-etcd-certs.sh creates.
    for url in
        ["--listen-client-urls", "--advertise-client-urls", "--listen-peer-urls", "--initial-advertise-peer-urls"]
    {
        assert!(f[url].starts_with("https://"), "{url}");
    }
    assert_eq!((f["--client-cert-auth"], f["--peer-client-cert-auth"]), ("true", "true"));
    let mounts = c.volume_mounts.clone().unwrap();
    let volumes = pod.volumes.clone().unwrap();
    let script =
        std::fs::read_to_string(format!("{}/../deploy/gen-etcd-certs.sh", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for flag in [
        "--trusted-ca-file",
        "--cert-file",
        "--key-file",
        "--peer-trusted-ca-file",
        "--peer-cert-file",
        "--peer-key-file",
    ] {
        let file = std::path::Path::new(f[flag]);
        let m = mounts
            .iter()
            .find(|m| file.parent() == Some(std::path::Path::new(&m.mount_path)))
            .unwrap_or_else(|| panic!("{flag}: not in a mount"));
        assert_eq!(m.read_only, Some(true), "{flag}");
        let secret = volumes
            .iter()
            .find(|v| v.name == m.name)
            .unwrap()
            .secret
            .clone()
            .unwrap_or_else(|| panic!("{flag}: a Secret"));
        let secret_name = secret.secret_name.unwrap();
        assert!(script.contains(&format!("\"$namespace\" {secret_name} ")), "gen-etcd-certs.sh creates {secret_name}");
        let key = file.file_name().unwrap().to_str().unwrap();
        assert!(["ca.crt", "tls.crt", "tls.key"].contains(&key), "{flag}: {key}");
        assert_eq!(secret.default_mode, Some(0o440), "readable by the fsGroup only");
    }
    assert!(
        pod.security_context.as_ref().unwrap().fs_group.is_some(),
        "the non-root member reads the Secrets and writes the PVC"
    );

    // Members: etcd-0..2 at {name}-{i}.{service}.{ns}.svc, the same in
    // --initial-cluster and the advertised URLs ($(POD_NAME) is the pod's name).
    let service = spec.service_name.clone().unwrap();
    let member = |i: i32, p: &str| format!("https://{name}-{i}.{service}.{ns}.svc:{}", port(p));
    let expected: Vec<String> = (0..replicas).map(|i| format!("{name}-{i}={}", member(i, "peer"))).collect();
    assert_eq!(f["--initial-cluster"], expected.join(","));
    assert_eq!(f["--name"], "$(POD_NAME)");
    let pod_name = c.env.iter().flatten().find(|e| e.name == "POD_NAME").unwrap();
    assert_eq!(pod_name.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path, "metadata.name");
    assert_eq!(f["--initial-advertise-peer-urls"], format!("https://$(POD_NAME).{service}.{ns}.svc:{}", port("peer")));
    assert_eq!(f["--advertise-client-urls"], format!("https://$(POD_NAME).{service}.{ns}.svc:{}", port("client")));

    // Data on a PVC, requests set, spread over nodes, probes on the metrics port.
    let data_dir = std::path::Path::new(f["--data-dir"]);
    let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
    let claim_name = claim.metadata.name.clone().unwrap();
    let data_mount = mounts.iter().find(|m| m.name == claim_name).unwrap();
    assert!(data_dir.starts_with(&data_mount.mount_path) && data_dir != std::path::Path::new(&data_mount.mount_path));
    assert!(claim
        .spec
        .as_ref()
        .unwrap()
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap()
        .contains_key("storage"));
    let requests = c.resources.as_ref().unwrap().requests.clone().unwrap();
    assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
    assert!(c.resources.as_ref().unwrap().limits.as_ref().unwrap().contains_key("memory"));
    let anti = pod.affinity.as_ref().unwrap().pod_anti_affinity.as_ref().unwrap();
    let preferred = anti.preferred_during_scheduling_ignored_during_execution.as_ref().unwrap();
    assert_eq!(preferred[0].pod_affinity_term.topology_key, "kubernetes.io/hostname");
    assert!(selects(preferred[0].pod_affinity_term.label_selector.as_ref().unwrap().match_labels.as_ref().unwrap()));
    assert!(
        anti.required_during_scheduling_ignored_during_execution.is_none(),
        "preferred: small clusters still get 3 members"
    );
    for probe in [&c.startup_probe, &c.readiness_probe, &c.liveness_probe] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.port, IntOrString::String("metrics".into()));
        assert!(get.path.as_deref().unwrap().starts_with("/health"));
    }

    // A drain takes at most one member: two of three keep the quorum.
    let pdb_spec = pdb.spec.unwrap();
    assert_eq!(pdb_spec.min_available, Some(IntOrString::Int(replicas / 2 + 1)));
    assert!(selects(pdb_spec.selector.as_ref().unwrap().match_labels.as_ref().unwrap()));

    // The base/webhook.yaml example: these members' client URLs, a client
    // Secret gen-etcd-certs.sh makes, and a valid configuration.
    let args = webhook_etcd_args();
    let settings = args.settings().unwrap();
    let fleet = settings.fleet.unwrap();
    let members: Vec<String> = (0..replicas).map(|i| member(i, "client")).collect();
    assert_eq!(fleet.endpoints, members);
    let secret = fleet.client_secret.unwrap();
    assert!(
        script.contains(&format!("client_secret={secret}\n")),
        "gen-etcd-certs.sh names the client Secret {secret}"
    );
}

/// gen-etcd-certs.sh --no-apply: a server certificate valid for every
/// member name the manifests use, a peer certificate for both directions,
/// a client certificate for clients only, all from one CA.
#[test]
fn gen_etcd_certs_covers_every_member_name() {
    let script = format!("{}/../deploy/gen-etcd-certs.sh", env!("CARGO_MANIFEST_DIR"));
    let status = std::process::Command::new("bash").arg("-n").arg(&script).status().unwrap();
    assert!(status.success(), "bash -n {script}");
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg("--no-apply")
        .arg("--out")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir.path()).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let fleet = webhook_etcd_args().settings().unwrap().fleet.unwrap();
    let mut hosts: Vec<String> = fleet
        .endpoints
        .iter()
        .map(|e| e.trim_start_matches("https://").rsplit_once(':').unwrap().0.to_owned())
        .collect();
    hosts.extend(["etcd-client.telltale-system.svc".to_owned(), "localhost".to_owned()]);
    for cert in ["server.crt", "peer.crt"] {
        for host in &hosts {
            let (_, out) = openssl(&["x509", "-in", cert, "-noout", "-checkhost", host]);
            assert!(out.contains("does match"), "{cert} for {host}: {out}");
        }
        assert!(openssl(&["verify", "-purpose", "sslserver", "-CAfile", "ca.crt", cert]).0, "{cert} serves");
    }
    assert!(openssl(&["verify", "-purpose", "sslclient", "-CAfile", "ca.crt", "peer.crt"]).0, "peers are clients too");
    assert!(openssl(&["verify", "-purpose", "sslclient", "-CAfile", "ca.crt", "client.crt"]).0);
    assert!(!openssl(&["verify", "-purpose", "sslserver", "-CAfile", "ca.crt", "client.crt"]).0, "client only");
}
