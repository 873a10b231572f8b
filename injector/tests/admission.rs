//! AdmissionReview fixtures as the API server sends them: the response's
//! JSONPatch is applied to the object and the result checked as a `Pod`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use serde_json::Value;
use telltale_injector::review::{self, AdmissionResponse};
use telltale_injector::{Mode, Settings};

fn settings() -> Settings {
    Settings {
        sidecar_image: "telltale:0.1.0".into(),
        api_token_secret: None,
        sidecar_env: Vec::new(),
        native_sidecar: false,
        fleet: None,
        metrics: false,
    }
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
}

/// The review answered, with the checks every answer must pass.
fn answer(review: &Value, mode: Mode, settings: &Settings) -> AdmissionResponse {
    let body = serde_json::to_vec(review).unwrap();
    let out = review::handle(&body, mode, settings).unwrap();
    assert_eq!(out.api_version, "admission.k8s.io/v1");
    assert_eq!(out.kind, "AdmissionReview");
    let response = out.response.unwrap();
    assert_eq!(response.uid, review["request"]["uid"].as_str().unwrap(), "response uid is the request uid");
    assert_eq!(response.patch.is_some(), response.patch_type.as_deref() == Some("JSONPatch"));
    response
}

/// Apply the response's patch to the request's object.
fn patched(review: &Value, response: &AdmissionResponse) -> (Pod, Value) {
    let patch = response.patch.as_ref().expect("a patch");
    let bytes = base64::engine::general_purpose::STANDARD.decode(patch).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut doc = review["request"]["object"].clone();
    json_patch::patch(&mut doc, &patch).expect("the patch applies to the object");
    (serde_json::from_value(doc.clone()).expect("the result is a Pod"), doc)
}

fn inject(name: &str, mode: Mode) -> (Pod, AdmissionResponse, Value) {
    let review = fixture(name);
    let response = answer(&review, mode, &settings());
    assert!(response.allowed, "{name}: {:?}", response.status);
    let (pod, raw) = patched(&review, &response);
    (pod, response, raw)
}

fn sidecar(pod: &Pod) -> &Container {
    let spec = pod.spec.as_ref().unwrap();
    let mut it = spec.containers.iter().filter(|c| c.name == "telltale");
    let c = it.next().expect("a telltale container");
    assert!(it.next().is_none(), "exactly one telltale container");
    c
}

fn env(c: &Container) -> BTreeMap<String, Option<String>> {
    let mut map = BTreeMap::new();
    for e in c.env.iter().flatten() {
        let v = e.value.clone().or_else(|| {
            e.value_from.as_ref().and_then(|f| f.field_ref.as_ref()).map(|f| format!("fieldRef:{}", f.field_path))
        });
        assert!(map.insert(e.name.clone(), v).is_none(), "{} is set twice on {}", e.name, c.name);
    }
    map
}

fn volume<'a>(pod: &'a Pod, mount_path: &str) -> &'a Volume {
    let c = sidecar(pod);
    let m = c.volume_mounts.iter().flatten().find(|m| m.mount_path == mount_path).expect(mount_path);
    pod.spec.as_ref().unwrap().volumes.iter().flatten().find(|v| v.name == m.name).expect(&m.name)
}

fn read_only(pod: &Pod, mount_path: &str) -> bool {
    let m = sidecar(pod).volume_mounts.iter().flatten().find(|m| m.mount_path == mount_path).expect(mount_path);
    m.read_only == Some(true)
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

#[test]
fn opt_in_gets_the_full_sidecar() {
    let (pod, response, _) = inject("opt-in", Mode::PodOptIn);
    assert!(response.warnings.is_empty(), "{:?}", response.warnings);
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.share_process_namespace, Some(true));
    assert_eq!(spec.containers.len(), 2);
    assert_eq!(spec.containers[0].name, "app", "the app container stays first");

    // Annotations: existing ones kept, ours added.
    assert_eq!(annotation(&pod, "kubectl.kubernetes.io/restartedAt"), Some("2026-11-28T10:00:00Z"));
    assert_eq!(annotation(&pod, "telltale.dev/injected"), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(
        annotation(&pod, "telltale.dev/containers"),
        Some(r#"{"app":"registry.example.com:5000/shop/checkout:v2"}"#)
    );

    // The app container keeps its env and learns its name.
    let app = env(&spec.containers[0]);
    assert_eq!(app.get("PORT"), Some(&Some("8080".into())));
    assert_eq!(app.get("TELLTALE_CONTAINER_NAME"), Some(&Some("app".into())));

    let c = sidecar(&pod);
    assert_eq!(c.image.as_deref(), Some("telltale:0.1.0"));
    assert_eq!(c.command.as_deref(), Some(&["telltale".to_owned(), "run".to_owned()][..]));
    assert_eq!(c.args, None);
    let e = env(c);
    let expect = [
        ("TELLTALE_KUBERNETES__ENABLED", "true"),
        ("TELLTALE_KUBERNETES__POD_NAME", "fieldRef:metadata.name"),
        ("TELLTALE_KUBERNETES__NAMESPACE", "fieldRef:metadata.namespace"),
        ("TELLTALE_KUBERNETES__POD_UID", "fieldRef:metadata.uid"),
        ("TELLTALE_KUBERNETES__CONTAINERS_FILE", "/etc/telltale/podinfo/containers"),
        ("TELLTALE_DATA_DIR", "/var/lib/telltale"),
    ];
    for (k, v) in expect {
        assert_eq!(e.get(k), Some(&Some(v.to_owned())), "{k}");
    }
    assert_eq!(e.len(), expect.len(), "no API or learning variables without annotations: {e:?}");
    assert!(!e.contains_key("TELLTALE_CONTAINER_NAME"), "the sidecar's config would reject it");
    assert_eq!(c.ports, None, "no API port without a token secret");

    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user, Some(0));
    assert_eq!(sc.run_as_non_root, Some(false));
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.add.as_deref().unwrap(), ["BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"]);
    assert_eq!(caps.drop.as_deref().unwrap(), ["ALL"]);

    let res = c.resources.as_ref().unwrap();
    let q = |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, k: &str| {
        m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone())
    };
    assert_eq!(q(&res.requests, "cpu").as_deref(), Some("50m"));
    assert_eq!(q(&res.requests, "memory").as_deref(), Some("128Mi"));
    assert_eq!(q(&res.limits, "memory").as_deref(), Some("256Mi"));
    assert_eq!(q(&res.limits, "cpu"), None);

    // Volumes.
    assert!(volume(&pod, "/var/lib/telltale").empty_dir.is_some());
    assert!(!read_only(&pod, "/var/lib/telltale"));
    let podinfo = volume(&pod, "/etc/telltale/podinfo").downward_api.as_ref().unwrap();
    let item = &podinfo.items.as_ref().unwrap()[0];
    assert_eq!(item.path, "containers");
    assert_eq!(item.field_ref.as_ref().unwrap().field_path, "metadata.annotations['telltale.dev/containers']");
    // The node set's directory on bpffs: written (pins), nothing else of bpffs.
    let bpffs = volume(&pod, "/sys/fs/bpf/telltale").host_path.as_ref().expect("bpffs");
    assert_eq!((bpffs.path.as_str(), bpffs.type_.as_deref()), ("/sys/fs/bpf/telltale", Some("DirectoryOrCreate")));
    assert!(!read_only(&pod, "/sys/fs/bpf/telltale"), "the node set is pinned there");
    for (path, host, kind) in [
        ("/sys/kernel/tracing", "/sys/kernel/tracing", "Directory"),
        ("/sys/fs/cgroup", "/sys/fs/cgroup", "Directory"),
        ("/sys/kernel/btf/vmlinux", "/sys/kernel/btf/vmlinux", "File"),
    ] {
        let hp = volume(&pod, path).host_path.as_ref().expect(path);
        assert_eq!((hp.path.as_str(), hp.type_.as_deref()), (host, Some(kind)));
        assert!(read_only(&pod, path), "{path} is read-only");
    }
    assert!(volume(&pod, "/tmp").empty_dir.is_some());
    // The service account token the API server mounted into the app reaches the sidecar too.
    assert!(spec.volumes.iter().flatten().any(|v| v.name == "kube-api-access-7xk2p"));
    assert!(volume(&pod, "/var/run/secrets/kubernetes.io/serviceaccount").projected.is_some());
    assert!(read_only(&pod, "/var/run/secrets/kubernetes.io/serviceaccount"));
}

#[test]
fn opt_out_and_no_annotation_are_left_alone() {
    for (name, mode) in [("opt-out", Mode::PodOptIn), ("opt-out", Mode::NamespaceOptIn), ("bare", Mode::PodOptIn)] {
        let review = fixture(name);
        let r = answer(&review, mode, &settings());
        assert!(r.allowed && r.patch.is_none() && r.warnings.is_empty(), "{name} {mode:?}: {r:?}");
    }
}

#[test]
fn namespace_opt_in_injects_a_pod_without_annotations_volumes_or_env() {
    // No annotations map, no volumes array, no env array: the patch creates them.
    let (pod, r, raw) = inject("bare", Mode::NamespaceOptIn);
    assert!(r.warnings.len() == 1 && r.warnings[0].contains("service account token"), "{:?}", r.warnings);
    assert_eq!(annotation(&pod, "telltale.dev/containers"), Some(r#"{"app":"busybox:1.36"}"#));
    let app = &pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(env(app).get("TELLTALE_CONTAINER_NAME"), Some(&Some("app".into())));
    assert_eq!(raw["metadata"]["annotations"]["telltale.dev/injected"], env!("CARGO_PKG_VERSION"));
    assert!(volume(&pod, "/var/lib/telltale").empty_dir.is_some());
    assert_eq!(pod.spec.as_ref().unwrap().automount_service_account_token, Some(false), "untouched");
}

#[test]
fn pod_opt_in_injects_a_bare_pod_too() {
    let (pod, _, _) = inject("bare-opt-in", Mode::PodOptIn);
    assert_eq!(sidecar(&pod).image.as_deref(), Some("telltale:0.1.0"));
}

#[test]
fn already_injected_is_unchanged() {
    for mode in [Mode::PodOptIn, Mode::NamespaceOptIn] {
        let r = answer(&fixture("already-injected"), mode, &settings());
        assert!(r.allowed && r.patch.is_none() && r.warnings.is_empty(), "{r:?}");
    }
}

#[test]
fn injecting_twice_changes_nothing_the_second_time() {
    for name in ["opt-in", "bare-opt-in", "init-containers", "overrides", "host-network", "clashing-volumes"] {
        let (_, _, raw) = inject(name, Mode::PodOptIn);
        let mut again = fixture(name);
        again["request"]["object"] = raw;
        let r = answer(&again, Mode::PodOptIn, &settings());
        assert!(r.allowed && r.patch.is_none(), "{name}: second pass patched: {r:?}");
    }
}

#[test]
fn reinvocation_names_a_container_added_after_injection() {
    let (_, _, mut raw) = inject("opt-in", Mode::PodOptIn);
    // Another webhook appends a container after ours.
    raw["spec"]["containers"].as_array_mut().unwrap().push(serde_json::json!({"name": "late", "image": "late:1"}));
    let mut again = fixture("opt-in");
    again["request"]["object"] = raw;
    let r = answer(&again, Mode::PodOptIn, &settings());
    let (pod, _) = patched(&again, &r);
    let late = pod.spec.as_ref().unwrap().containers.iter().find(|c| c.name == "late").unwrap();
    assert_eq!(env(late).get("TELLTALE_CONTAINER_NAME"), Some(&Some("late".into())));
    assert_eq!(
        annotation(&pod, "telltale.dev/containers"),
        Some(r#"{"app":"registry.example.com:5000/shop/checkout:v2","late":"late:1"}"#)
    );
    assert_eq!(pod.spec.as_ref().unwrap().containers.iter().filter(|c| c.name == "telltale").count(), 1);
}

#[test]
fn no_containers_is_admitted_without_injection_and_with_a_warning() {
    // Decision: never inject (the pod would otherwise pass validation with
    // only our sidecar); the API server's own validation rejects it.
    let r = answer(&fixture("no-containers"), Mode::PodOptIn, &settings());
    assert!(r.allowed && r.patch.is_none(), "{r:?}");
    assert!(r.warnings.iter().any(|w| w.contains("no containers")), "{:?}", r.warnings);
}

#[test]
fn host_network_is_injected_with_a_warning_and_the_api_port() {
    let (pod, r, _) = inject("host-network", Mode::PodOptIn);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("hostNetwork") && r.warnings[0].contains("7443"), "{:?}", r.warnings);
    let c = sidecar(&pod);
    let e = env(c);
    assert_eq!(e.get("TELLTALE_API__LISTEN"), Some(&Some("0.0.0.0:7443".into())));
    assert_eq!(e.get("TELLTALE_API__TOKENS_FILE"), Some(&Some("/etc/telltale/api/tokens.toml".into())));
    let port = &c.ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.container_port), (Some("telltale-api"), 7443));
    let secret = volume(&pod, "/etc/telltale/api").secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("telltale-tokens"));
    assert!(read_only(&pod, "/etc/telltale/api"));
    assert_eq!(pod.spec.as_ref().unwrap().host_network, Some(true));
}

#[test]
fn host_pid_does_not_get_share_process_namespace() {
    let (pod, r, raw) = inject("host-pid", Mode::PodOptIn);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(pod.spec.as_ref().unwrap().host_pid, Some(true));
    assert!(raw["spec"].get("shareProcessNamespace").is_none(), "the API server rejects both together");
    sidecar(&pod);
}

#[test]
fn clashing_volume_names_get_suffixes() {
    let (pod, _, _) = inject("clashing-volumes", Mode::PodOptIn);
    let names: Vec<&str> = pod.spec.as_ref().unwrap().volumes.iter().flatten().map(|v| v.name.as_str()).collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "volume names are unique: {names:?}");
    let mount =
        |path: &str| sidecar(&pod).volume_mounts.iter().flatten().find(|m| m.mount_path == path).unwrap().name.clone();
    assert_eq!(mount("/var/lib/telltale"), "telltale-data-3");
    assert_eq!(mount("/tmp"), "telltale-tmp-2");
    assert_eq!(mount("/etc/telltale/podinfo"), "telltale-podinfo");
    // The pod's own volumes are untouched.
    let theirs = pod.spec.as_ref().unwrap().volumes.iter().flatten().find(|v| v.name == "telltale-tmp").unwrap();
    assert!(theirs.config_map.is_some());
    assert!(volume(&pod, "/var/lib/telltale").empty_dir.is_some());
}

#[test]
fn init_containers_are_named_and_mapped() {
    let (pod, r, _) = inject("init-containers", Mode::PodOptIn);
    let spec = pod.spec.as_ref().unwrap();
    let name_of = |c: &Container| env(c).get("TELLTALE_CONTAINER_NAME").cloned().flatten();
    for c in spec.init_containers.iter().flatten().chain(&spec.containers).filter(|c| c.name != "telltale") {
        assert_eq!(name_of(c).as_deref(), Some(c.name.as_str()), "{}", c.name);
    }
    // A wrong value was replaced (with a warning), a right one left alone.
    assert!(r.warnings.iter().any(|w| w.contains("`cache`")), "{:?}", r.warnings);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    let map: BTreeMap<String, String> =
        serde_json::from_str(annotation(&pod, "telltale.dev/containers").unwrap()).unwrap();
    assert_eq!(
        map,
        BTreeMap::from([
            ("app".into(), "registry.example.com:5000/shop/checkout:v2".into()),
            ("cache".into(), "redis:7".into()),
            ("migrate".into(), "registry.example.com/shop/migrate:v2".into()),
            ("wait-db".into(), "busybox:1.36".into()),
        ])
    );
    assert_eq!(spec.init_containers.as_ref().unwrap().len(), 2, "the sidecar is not an init container");
}

#[test]
fn override_annotations_are_applied() {
    let (pod, _, _) = inject("overrides", Mode::PodOptIn);
    let c = sidecar(&pod);
    assert_eq!(c.image.as_deref(), Some("registry.example.com/sec/telltale:0.2.0"));
    let e = env(c);
    for (k, v) in [
        ("TELLTALE_LEARNING__MIN_DURATION", "24h"),
        ("TELLTALE_LEARNING__MAX_DURATION", "3d"),
        ("TELLTALE_LEARNING__STABLE_PERIOD", "12h"),
        ("TELLTALE_LEARNING__WARMUP", "5m"),
        ("TELLTALE_API__TOKENS_FILE", "/etc/telltale/api/tokens.toml"),
        ("TELLTALE_API__LISTEN", "0.0.0.0:7443"),
    ] {
        assert_eq!(e.get(k), Some(&Some(v.to_owned())), "{k}");
    }
    let res = c.resources.as_ref().unwrap();
    let get = |m: &Option<BTreeMap<_, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, k: &str| {
        m.as_ref().unwrap().get(k).unwrap().0.clone()
    };
    assert_eq!(get(&res.requests, "cpu"), "100m");
    assert_eq!(get(&res.requests, "memory"), "200Mi");
    assert_eq!(get(&res.limits, "cpu"), "1");
    assert_eq!(get(&res.limits, "memory"), "1Gi");
    let data = volume(&pod, "/var/lib/telltale").host_path.as_ref().unwrap();
    assert_eq!(
        (data.path.as_str(), data.type_.as_deref()),
        ("/var/lib/telltale/shop-checkout", Some("DirectoryOrCreate"))
    );
    let secret = volume(&pod, "/etc/telltale/api").secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("checkout-telltale-tokens"));
    let caps = c.security_context.as_ref().unwrap().capabilities.as_ref().unwrap().add.clone().unwrap();
    assert!(caps.contains(&"SYS_RESOURCE".to_owned()), "{caps:?}");

    // Kernels and runtimes that allow bpf() under CAP_BPF: no SYS_ADMIN.
    let mut review = fixture("opt-in");
    review["request"]["object"]["metadata"]["annotations"]["telltale.dev/cap-sys-admin"] = "false".into();
    let (pod, _) = patched(&review, &answer(&review, Mode::PodOptIn, &settings()));
    let caps = sidecar(&pod).security_context.as_ref().unwrap().capabilities.as_ref().unwrap().add.clone().unwrap();
    assert_eq!(caps, ["BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE"]);
}

#[test]
fn webhook_default_token_secret_applies_unless_the_pod_says_empty() {
    let with_default = Settings { api_token_secret: Some("cluster-tokens".into()), ..settings() };
    let review = fixture("opt-in");
    let (pod, _) = patched(&review, &answer(&review, Mode::PodOptIn, &with_default));
    assert_eq!(
        volume(&pod, "/etc/telltale/api").secret.as_ref().unwrap().secret_name.as_deref(),
        Some("cluster-tokens")
    );

    let mut review = fixture("opt-in");
    review["request"]["object"]["metadata"]["annotations"]["telltale.dev/api-token-secret"] = "".into();
    let (pod, _) = patched(&review, &answer(&review, Mode::PodOptIn, &with_default));
    assert!(!env(sidecar(&pod)).contains_key("TELLTALE_API__LISTEN"));
}

#[test]
fn webhook_sidecar_env_reaches_every_sidecar() {
    let otlp = ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), "http://otel-collector.telltale-system:4317".to_owned());
    let with_env = Settings { sidecar_env: vec![otlp.clone()], ..settings() };
    let review = fixture("opt-in");
    let (pod, _) = patched(&review, &answer(&review, Mode::PodOptIn, &with_env));
    assert_eq!(env(sidecar(&pod)).get(&otlp.0), Some(&Some(otlp.1)));

    // A pod's learning annotation wins over the webhook-wide variable, once.
    let warmup = ("TELLTALE_LEARNING__WARMUP".to_owned(), "10m".to_owned());
    let with_env = Settings { sidecar_env: vec![warmup.clone()], ..settings() };
    let mut review = fixture("opt-in");
    review["request"]["object"]["metadata"]["annotations"]["telltale.dev/learning-warmup"] = "1m".into();
    let (pod, _) = patched(&review, &answer(&review, Mode::PodOptIn, &with_env));
    let entries: Vec<_> = sidecar(&pod).env.iter().flatten().filter(|e| e.name == warmup.0).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].value.as_deref(), Some("1m"));
}

#[test]
fn bad_overrides_are_rejected_naming_the_annotation() {
    for (name, key, value) in [
        ("bad-duration", "telltale.dev/learning-warmup", "five minutes"),
        ("bad-quantity", "telltale.dev/memory-limit", "256MB"),
    ] {
        let r = answer(&fixture(name), Mode::PodOptIn, &settings());
        assert!(!r.allowed && r.patch.is_none(), "{name}: {r:?}");
        let status = r.status.unwrap();
        assert_eq!(status.code, 400);
        assert!(status.message.contains(key) && status.message.contains(value), "{name}: {}", status.message);
    }
}

#[test]
fn a_foreign_telltale_container_is_rejected() {
    let r = answer(&fixture("foreign-container"), Mode::PodOptIn, &settings());
    assert!(!r.allowed);
    let message = r.status.unwrap().message;
    assert!(message.contains("already has a container named `telltale`"), "{message}");
    // Unless the pod opts out, which the namespace mode respects.
    let mut review = fixture("foreign-container");
    review["request"]["object"]["metadata"]["annotations"]["telltale.dev/inject"] = "false".into();
    assert!(answer(&review, Mode::NamespaceOptIn, &settings()).allowed);
}

#[test]
fn an_unclear_opt_in_value_warns() {
    let mut review = fixture("opt-in");
    review["request"]["object"]["metadata"]["annotations"]["telltale.dev/inject"] = "yes".into();
    let r = answer(&review, Mode::PodOptIn, &settings());
    assert!(r.allowed && r.patch.is_none());
    assert!(r.warnings[0].contains("\"yes\"") && r.warnings[0].contains("not injecting"), "{:?}", r.warnings);
    let r = answer(&review, Mode::NamespaceOptIn, &settings());
    assert!(r.allowed && r.patch.is_some() && r.warnings[0].contains("namespace opted in"), "{:?}", r.warnings);
}

#[test]
fn explicit_share_process_namespace_false_is_overridden_with_a_warning() {
    let mut review = fixture("opt-in");
    review["request"]["object"]["spec"]["shareProcessNamespace"] = false.into();
    let r = answer(&review, Mode::PodOptIn, &settings());
    assert!(r.warnings.iter().any(|w| w.contains("shareProcessNamespace")), "{:?}", r.warnings);
    let (pod, _) = patched(&review, &r);
    assert_eq!(pod.spec.unwrap().share_process_namespace, Some(true));
}

#[test]
fn other_operations_and_kinds_pass_untouched() {
    let mut update = fixture("opt-in");
    update["request"]["operation"] = "UPDATE".into();
    let r = answer(&update, Mode::PodOptIn, &settings());
    assert!(r.allowed && r.patch.is_none());
    let mut other = fixture("opt-in");
    other["request"]["kind"] = serde_json::json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let r = answer(&other, Mode::PodOptIn, &settings());
    assert!(r.allowed && r.patch.is_none());
}

#[test]
fn unknown_fields_of_the_object_survive() {
    // Fields newer than the crate's Kubernetes types must not be dropped:
    // the patch only adds, it never rewrites the object.
    let mut review = fixture("opt-in");
    review["request"]["object"]["spec"]["someFutureField"] = serde_json::json!({"x": 1});
    let r = answer(&review, Mode::PodOptIn, &settings());
    let (_, raw) = patched(&review, &r);
    assert_eq!(raw["spec"]["someFutureField"]["x"], 1);
}

#[test]
fn malformed_reviews_are_errors_not_answers() {
    let s = settings();
    let e = review::handle(b"{not json", Mode::PodOptIn, &s).unwrap_err();
    assert!(e.to_string().contains("malformed AdmissionReview JSON"), "{e}");
    assert!(std::error::Error::source(&e).is_some());
    let e =
        review::handle(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#, Mode::PodOptIn, &s)
            .unwrap_err();
    assert!(e.to_string().contains("v1beta1"), "{e}");
    let e = review::handle(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#, Mode::PodOptIn, &s)
        .unwrap_err();
    assert!(e.to_string().contains("no `request`"), "{e}");
    // A Pod object that is not a Pod is refused in the answer, not a panic.
    let mut review = fixture("opt-in");
    review["request"]["object"]["spec"]["containers"] = "nope".into();
    let r = answer(&review, Mode::PodOptIn, &s);
    assert!(!r.allowed && r.status.unwrap().message.contains("cannot decode"));
}

#[test]
fn requests_are_described_for_logs() {
    let request = review::parse(&serde_json::to_vec(&fixture("opt-in")).unwrap()).unwrap();
    assert_eq!(review::describe(&request), "shop/checkout-7d9f8b6c5-*", "generateName while the name is empty");
}

#[test]
fn native_sidecar_is_the_first_init_container_and_injection_stays_idempotent() {
    let native = Settings { native_sidecar: true, ..settings() };
    for name in ["init-containers", "opt-in", "bare-opt-in"] {
        let review = fixture(name);
        let r = answer(&review, Mode::PodOptIn, &native);
        let (pod, raw) = patched(&review, &r);
        let spec = pod.spec.as_ref().unwrap();
        let inits = spec.init_containers.as_deref().unwrap();
        assert_eq!(inits[0].name, "telltale", "{name}: the sidecar starts first");
        assert_eq!(inits[0].restart_policy.as_deref(), Some("Always"), "{name}");
        let startup = inits[0].startup_probe.as_ref().and_then(|p| p.exec.as_ref()).unwrap();
        assert_eq!(
            startup.command.as_deref().unwrap(),
            ["telltale", "status", "--ready", "--data-dir", "/var/lib/telltale"],
            "{name}: the others start once it watches"
        );
        assert!(spec.containers.iter().all(|c| c.name != "telltale"), "{name}");
        // The app's init containers keep their names (and their order after the sidecar).
        let before = review["request"]["object"]["spec"]["initContainers"].as_array().cloned().unwrap_or_default();
        let after: Vec<&str> = inits[1..].iter().map(|c| c.name.as_str()).collect();
        let expected: Vec<&str> = before.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(after, expected, "{name}");
        for c in &inits[1..] {
            assert_eq!(env(c).get("TELLTALE_CONTAINER_NAME").cloned().flatten().as_deref(), Some(c.name.as_str()));
        }
        // Again: nothing to do.
        let mut again = fixture(name);
        again["request"]["object"] = raw;
        let r = answer(&again, Mode::PodOptIn, &native);
        assert!(r.allowed && r.patch.is_none(), "{name}: second pass patched: {r:?}");
    }
    // The annotation wins over the flag, both ways.
    let mut review = fixture("opt-in");
    review["request"]["object"]["metadata"]["annotations"]["telltale.dev/native-sidecar"] = "false".into();
    let (pod, _) = patched(&review, &answer(&review, Mode::PodOptIn, &native));
    assert!(sidecar(&pod).restart_policy.is_none());
    review["request"]["object"]["metadata"]["annotations"]["telltale.dev/native-sidecar"] = "yes".into();
    let r = answer(&review, Mode::PodOptIn, &native);
    assert!(!r.allowed && r.status.unwrap().message.contains("telltale.dev/native-sidecar"));
}
