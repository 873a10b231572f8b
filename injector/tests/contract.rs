//! The injector keeps its side of `telltale_core::contract`: every variable
//! it writes into the sidecar is one the contract names (and the daemon's
//! configuration tests load them all), with the contract's values, paths
//! and port; and the pod's service links are off unless the pod decided.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};
use telltale_core::contract::{self, env as cenv};
use telltale_injector::inject::{plan, SIDECAR_NAME};
use telltale_injector::{Decision, Mode, Settings};

fn settings() -> Settings {
    Settings {
        sidecar_image: "telltale:test".into(),
        api_token_secret: None,
        sidecar_env: Vec::new(),
        native_sidecar: false,
        fleet: None,
        metrics: false,
    }
}

/// A pod opting in with every annotation that reaches the sidecar's
/// environment, plus `spec` fields merged into its spec.
fn pod(spec: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-1",
            "namespace": "shop",
            "annotations": {
                "telltale.dev/inject": "true",
                "telltale.dev/api-token-secret": "shop-tokens",
                "telltale.dev/learning-min-duration": "24h",
                "telltale.dev/learning-max-duration": "3d",
                "telltale.dev/learning-stable-period": "12h",
                "telltale.dev/learning-warmup": "5m",
            },
        },
        "spec": {
            "containers": [{"name": "app", "image": "registry.example.com/shop/web:v1"}],
            "initContainers": [{"name": "migrate", "image": "registry.example.com/shop/migrate:v1"}],
        },
    });
    for (k, v) in spec.as_object().unwrap() {
        pod["spec"][k] = v.clone();
    }
    pod
}

/// `raw` after the injector's patch, and the patch's operations as JSON.
fn inject(raw: &Value) -> (Pod, Vec<Value>) {
    let typed: Pod = serde_json::from_value(raw.clone()).unwrap();
    let Decision::Patch { patch, .. } = plan(&typed, Mode::PodOptIn, &settings()).unwrap() else {
        panic!("the pod opted in")
    };
    let ops = serde_json::to_value(&patch).unwrap().as_array().unwrap().clone();
    let mut doc = raw.clone();
    json_patch::patch(&mut doc, &patch).unwrap();
    (serde_json::from_value(doc).unwrap(), ops)
}

fn sidecar(pod: &Pod) -> &Container {
    pod.spec.as_ref().unwrap().containers.iter().find(|c| c.name == SIDECAR_NAME).unwrap()
}

#[test]
fn every_variable_the_sidecar_gets_is_one_the_contract_names() {
    let (pod, _) = inject(&pod(json!({})));
    let c = sidecar(&pod);
    let contract_names: Vec<&str> = cenv::all().collect();
    let mut values = BTreeMap::new();
    for e in c.env.iter().flatten() {
        assert!(contract_names.contains(&e.name.as_str()), "{} is not in telltale_core::contract::env", e.name);
        assert!(contract::config_key(&e.name).is_some(), "{} is not a configuration variable", e.name);
        let value = match (&e.value, &e.value_from) {
            (Some(v), None) => v.clone(),
            (None, Some(from)) => format!("fieldRef:{}", from.field_ref.as_ref().unwrap().field_path),
            other => panic!("{}: {other:?}", e.name),
        };
        assert!(values.insert(e.name.as_str(), value).is_none(), "{} twice", e.name);
    }
    // With a token Secret and all four learning annotations, every one of them.
    assert_eq!(values.len(), contract_names.len(), "{values:?}");
    for (name, value) in cenv::FIXED.iter().chain(&cenv::WITH_API_TOKENS) {
        assert_eq!(values[name], *value, "{name}");
    }
    for (name, path) in cenv::POD_FIELDS {
        assert_eq!(values[name], format!("fieldRef:{path}"), "{name}");
    }
    assert_eq!(values[cenv::LEARNING_MIN_DURATION], "24h");
    assert_eq!(values[cenv::LEARNING_WARMUP], "5m");

    // The paths those variables name are where the volumes are mounted.
    let mount = |path: &str| c.volume_mounts.iter().flatten().any(|m| m.mount_path == path);
    for dir in [contract::DATA_DIR, contract::PODINFO_DIR, contract::API_DIR] {
        assert!(mount(dir), "{dir} is mounted");
    }
    let spec = pod.spec.as_ref().unwrap();
    let podinfo = c.volume_mounts.iter().flatten().find(|m| m.mount_path == contract::PODINFO_DIR).unwrap();
    let volume = spec.volumes.iter().flatten().find(|v| v.name == podinfo.name).unwrap();
    let item = &volume.downward_api.as_ref().unwrap().items.as_ref().unwrap()[0];
    assert_eq!(item.path, contract::CONTAINERS_FILE_NAME);
    assert_eq!(item.field_ref.as_ref().unwrap().field_path, "metadata.annotations['telltale.dev/containers']");
    assert_eq!(
        item.field_ref.as_ref().unwrap().field_path,
        format!("metadata.annotations['{}']", contract::CONTAINERS_ANNOTATION)
    );
    let port = &c.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some(contract::API_PORT_NAME), i32::from(contract::API_PORT))
    );

    // App and init containers get exactly one variable: their name.
    for other in spec.containers.iter().chain(spec.init_containers.iter().flatten()).filter(|c| c.name != SIDECAR_NAME)
    {
        let env: Vec<_> = other.env.iter().flatten().map(|e| (e.name.as_str(), e.value.as_deref())).collect();
        assert_eq!(env, [(contract::CONTAINER_NAME_ENV, Some(other.name.as_str()))]);
    }
}

#[test]
fn without_a_secret_or_annotations_only_the_fixed_and_pod_variables() {
    let mut raw = pod(json!({}));
    raw["metadata"]["annotations"] = json!({"telltale.dev/inject": "true"});
    let (pod, _) = inject(&raw);
    let names: Vec<&str> = sidecar(&pod).env.iter().flatten().map(|e| e.name.as_str()).collect();
    let expected: Vec<&str> = cenv::FIXED.iter().chain(&cenv::POD_FIELDS).map(|(n, _)| *n).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort_unstable();
    assert_eq!(sorted, expected_sorted);
}

/// Decision: the injector turns service links off when the pod says
/// nothing (Kubernetes' default is on) and leaves an explicit choice alone:
/// a pod whose app reads Docker-link variables says `true` and keeps them
/// (the daemon ignores the `TELLTALE_*` shapes they produce anyway).
#[test]
fn service_links_are_off_unless_the_pod_decided() {
    let touches = |ops: &[Value]| ops.iter().any(|op| op["path"] == "/spec/enableServiceLinks");

    let (p, ops) = inject(&pod(json!({})));
    assert_eq!(p.spec.as_ref().unwrap().enable_service_links, Some(false));
    assert!(touches(&ops));

    for explicit in [true, false] {
        let (p, ops) = inject(&pod(json!({"enableServiceLinks": explicit})));
        assert_eq!(p.spec.as_ref().unwrap().enable_service_links, Some(explicit));
        assert!(!touches(&ops), "an explicit {explicit} is the pod's decision");
    }

    // hostNetwork pods too (their API port warning is unrelated).
    let (p, _) = inject(&pod(json!({"hostNetwork": true})));
    assert_eq!(p.spec.as_ref().unwrap().enable_service_links, Some(false));
}
