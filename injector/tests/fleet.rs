//! Fleet profiles through the webhook: `--etcd-*` flags → settings → the
//! JSONPatch of an opted-in pod (environment, Secret volume, read-only
//! mount), the pod's opt-out and override annotations, and flag values the
//! webhook refuses to start with.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use base64::Engine as _;
use clap::Parser as _;
use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use serde_json::Value;
use telltale_core::contract::{self, env as cenv};
use telltale_injector::review::{self, AdmissionResponse};
use telltale_injector::{Mode, Settings, WebhookArgs};

const ENDPOINTS: &str = "https://etcd-0.etcd.telltale-system.svc:2379,https://etcd-1.etcd.telltale-system.svc:2379";

/// The settings of a webhook started with `flags` (and the TLS files it always needs).
fn settings(flags: &[&str]) -> Result<Settings, String> {
    let mut argv = vec!["telltale-injector", "--tls-cert=/t/tls.crt", "--tls-key=/t/tls.key"];
    argv.extend(flags);
    let args = WebhookArgs::try_parse_from(&argv).map_err(|e| e.to_string())?;
    args.settings().map_err(|e| e.to_string())
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
}

fn with_annotations(name: &str, pairs: &[(&str, &str)]) -> Value {
    let mut review = fixture(name);
    for (k, v) in pairs {
        review["request"]["object"]["metadata"]["annotations"][*k] = Value::from(*v);
    }
    review
}

fn answer(review: &Value, settings: &Settings) -> AdmissionResponse {
    let body = serde_json::to_vec(review).unwrap();
    review::handle(&body, Mode::PodOptIn, settings).unwrap().response.unwrap()
}

/// The pod after the patch, and the patch's operations.
fn inject(review: &Value, settings: &Settings) -> (Pod, Vec<Value>) {
    let response = answer(review, settings);
    assert!(response.allowed, "{:?}", response.status);
    let bytes = base64::engine::general_purpose::STANDARD.decode(response.patch.unwrap()).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let ops = serde_json::to_value(&patch).unwrap().as_array().unwrap().clone();
    let mut doc = review["request"]["object"].clone();
    json_patch::patch(&mut doc, &patch).unwrap();
    (serde_json::from_value(doc).unwrap(), ops)
}

fn sidecar(pod: &Pod) -> &Container {
    pod.spec.as_ref().unwrap().containers.iter().find(|c| c.name == "telltale").unwrap()
}

fn env(c: &Container) -> BTreeMap<&str, &str> {
    c.env.iter().flatten().map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or("<valueFrom>"))).collect()
}

fn etcd_volume(pod: &Pod) -> Option<&Volume> {
    let m = sidecar(pod).volume_mounts.iter().flatten().find(|m| m.mount_path == contract::ETCD_DIR)?;
    pod.spec.as_ref().unwrap().volumes.iter().flatten().find(|v| v.name == m.name)
}

fn fleet_vars(c: &Container) -> Vec<&str> {
    env(c).into_keys().filter(|k| k.starts_with("TELLTALE_PROFILES__")).collect()
}

#[test]
fn fleet_flags_give_every_sidecar_the_etcd_environment_and_the_client_secret() {
    let s = settings(&[
        &format!("--etcd-endpoints={ENDPOINTS}"),
        "--etcd-cluster=prod",
        "--etcd-prefix=/telltale/v1/",
        "--etcd-client-secret=telltale-etcd-client",
    ])
    .unwrap();
    let (pod, ops) = inject(&fixture("opt-in"), &s);
    let c = sidecar(&pod);
    let e = env(c);
    assert_eq!(e[cenv::PROFILES_STORE], "etcd");
    assert_eq!(
        e[cenv::PROFILES_ETCD_ENDPOINTS],
        r#"["https://etcd-0.etcd.telltale-system.svc:2379","https://etcd-1.etcd.telltale-system.svc:2379"]"#
    );
    assert_eq!(e[cenv::PROFILES_ETCD_CLUSTER], r#""prod""#, "quoted: a bare 123 would be a number");
    assert_eq!(e[cenv::PROFILES_ETCD_PREFIX], r#""/telltale/v1/""#);
    for (name, file) in cenv::WITH_ETCD_CLIENT_SECRET {
        assert_eq!(e[name], file, "{name}");
    }
    let mut vars = fleet_vars(c);
    vars.sort_unstable();
    let mut expected = cenv::FLEET.to_vec();
    expected.sort_unstable();
    assert_eq!(vars, expected, "every fleet variable, once");

    // The Secret, its three keys only, mounted read-only where the variables point.
    let v = etcd_volume(&pod).expect("the etcd client Secret is mounted at /etc/telltale/etcd");
    assert_eq!(v.name, "telltale-etcd");
    let secret = v.secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("telltale-etcd-client"));
    assert_eq!(secret.default_mode, Some(0o400));
    assert_eq!(secret.optional, None, "a missing Secret holds the pod with an event naming it");
    let items: Vec<(&str, &str)> = secret.items.iter().flatten().map(|i| (i.key.as_str(), i.path.as_str())).collect();
    assert_eq!(items, [("ca.crt", "ca.crt"), ("tls.crt", "tls.crt"), ("tls.key", "tls.key")]);
    let mount = c.volume_mounts.iter().flatten().find(|m| m.mount_path == contract::ETCD_DIR).unwrap();
    assert_eq!(mount.read_only, Some(true));
    for (_, file) in cenv::WITH_ETCD_CLIENT_SECRET {
        let name = file.strip_prefix(&format!("{}/", contract::ETCD_DIR)).unwrap();
        assert!(items.iter().any(|(_, p)| *p == name), "{file} is a file of the volume");
    }

    // In the raw JSONPatch: the volume is appended to the pod's volumes (the
    // fixture has some) and the sidecar is added whole, with the mount.
    let volume_op = ops
        .iter()
        .find(|op| op["path"] == "/spec/volumes/-" && op["value"]["name"] == "telltale-etcd")
        .expect("an add of the etcd volume");
    assert_eq!(volume_op["op"], "add");
    assert_eq!(volume_op["value"]["secret"]["defaultMode"], 256);
    let container_op = ops.iter().find(|op| op["path"] == "/spec/containers/-").unwrap();
    let raw_mount = container_op["value"]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == contract::ETCD_DIR)
        .unwrap();
    assert_eq!(raw_mount["readOnly"], true);
}

#[test]
fn without_a_client_secret_or_cluster_only_store_and_endpoints() {
    let s = settings(&["--etcd-endpoints=http://etcd.telltale-system.svc:2379"]).unwrap();
    let (pod, _) = inject(&fixture("opt-in"), &s);
    let c = sidecar(&pod);
    assert_eq!(fleet_vars(c), [cenv::PROFILES_ETCD_ENDPOINTS, cenv::PROFILES_STORE]);
    assert_eq!(env(c)[cenv::PROFILES_ETCD_ENDPOINTS], r#"["http://etcd.telltale-system.svc:2379"]"#);
    assert!(etcd_volume(&pod).is_none());
    assert!(!pod.spec.as_ref().unwrap().volumes.iter().flatten().any(|v| v.name.starts_with("telltale-etcd")));
}

#[test]
fn a_pod_may_keep_its_profiles_local_or_name_its_own_secret() {
    let s = settings(&[
        &format!("--etcd-endpoints={ENDPOINTS}"),
        "--etcd-client-secret=telltale-etcd-client",
        "--sidecar-env=TELLTALE_PROFILES__ETCD__BATCH_DELAY=50ms",
        "--sidecar-env=TELLTALE_PROFILES__STARTUP_TIMEOUT=10s",
    ])
    .unwrap();
    // Local: no etcd variable (not even the webhook's --sidecar-env ones:
    // the sidecar refuses [profiles.etcd] with a local store), no volume.
    let (pod, _) = inject(&with_annotations("opt-in", &[("telltale.dev/profiles-store", "local")]), &s);
    assert_eq!(fleet_vars(sidecar(&pod)), ["TELLTALE_PROFILES__STARTUP_TIMEOUT"]);
    assert!(etcd_volume(&pod).is_none());

    let (pod, _) = inject(&with_annotations("opt-in", &[("telltale.dev/etcd-client-secret", "shop-etcd")]), &s);
    let v = etcd_volume(&pod).unwrap();
    assert_eq!(v.secret.as_ref().unwrap().secret_name.as_deref(), Some("shop-etcd"));
    assert_eq!(env(sidecar(&pod))["TELLTALE_PROFILES__ETCD__BATCH_DELAY"], "50ms");

    // "": fleet profiles without a client certificate (etcd's own roots).
    let (pod, _) = inject(&with_annotations("opt-in", &[("telltale.dev/etcd-client-secret", "")]), &s);
    assert!(etcd_volume(&pod).is_none());
    assert!(!env(sidecar(&pod)).contains_key(cenv::PROFILES_ETCD_CA));
    assert_eq!(env(sidecar(&pod))[cenv::PROFILES_STORE], "etcd");

    // A pod volume already named telltale-etcd: ours gets a suffix.
    let mut review = fixture("opt-in");
    let volumes = review["request"]["object"]["spec"]["volumes"].as_array_mut().unwrap();
    volumes.push(serde_json::json!({"name": "telltale-etcd", "emptyDir": {}}));
    let (pod, _) = inject(&review, &s);
    assert_eq!(etcd_volume(&pod).unwrap().name, "telltale-etcd-2");
}

#[test]
fn without_fleet_flags_the_sidecar_env_form_still_works() {
    // What the README told people before the flags existed.
    let s = settings(&[
        "--sidecar-env=TELLTALE_PROFILES__STORE=etcd",
        "--sidecar-env=TELLTALE_PROFILES__ETCD__ENDPOINTS=[\"http://etcd:2379\"]",
    ])
    .unwrap();
    let (pod, _) = inject(&fixture("opt-in"), &s);
    assert_eq!(env(sidecar(&pod))[cenv::PROFILES_STORE], "etcd");
    // ...and a pod's opt-out removes it.
    let (pod, _) = inject(&with_annotations("opt-in", &[("telltale.dev/profiles-store", "local")]), &s);
    assert!(fleet_vars(sidecar(&pod)).is_empty());
}

#[test]
fn bad_pod_annotations_are_refused_by_name() {
    let fleet = settings(&[&format!("--etcd-endpoints={ENDPOINTS}")]).unwrap();
    let none = settings(&[]).unwrap();
    for (pairs, s, key, why) in [
        (
            &[("telltale.dev/profiles-store", "shared")][..],
            &fleet,
            "telltale.dev/profiles-store",
            "\"local\" or \"etcd\"",
        ),
        (&[("telltale.dev/profiles-store", "etcd")][..], &none, "telltale.dev/profiles-store", "--etcd-endpoints"),
        (
            &[("telltale.dev/etcd-client-secret", "Shop_Etcd")][..],
            &fleet,
            "telltale.dev/etcd-client-secret",
            "Secret name",
        ),
    ] {
        let r = answer(&with_annotations("opt-in", pairs), s);
        assert!(!r.allowed && r.patch.is_none(), "{pairs:?}");
        let m = r.status.unwrap().message;
        assert!(m.contains(key) && m.contains(why), "{pairs:?}: {m}");
    }
}

#[test]
fn bad_flag_values_stop_the_webhook_with_the_flag_and_reason() {
    for (flags, needle) in [
        (
            &["--etcd-endpoints=etcd-0:2379"][..],
            "--etcd-endpoints \"etcd-0:2379\": \"etcd-0:2379\" must start with http:// or https://",
        ),
        (&["--etcd-endpoints=https://etcd-0:2379,http://etcd-1:2379"][..], "one scheme"),
        (&["--etcd-endpoints=https://etcd-0"][..], "has no port"),
        (&["--etcd-endpoints=https://etcd-0:2379/"][..], "without a path"),
        (&["--etcd-endpoints="][..], "empty"),
        (&["--etcd-endpoints=https://e:2379", "--etcd-cluster=Prod"][..], "--etcd-cluster \"Prod\""),
        (&["--etcd-endpoints=https://e:2379", "--etcd-prefix=telltale"][..], "--etcd-prefix \"telltale\""),
        (&["--etcd-endpoints=http://e:2379", "--etcd-client-secret=c"][..], "needs https:// endpoints"),
        (&["--etcd-cluster=prod"][..], "--etcd-cluster \"prod\": needs --etcd-endpoints"),
        (&["--etcd-client-secret=c"][..], "needs --etcd-endpoints"),
        (
            &["--etcd-endpoints=https://e:2379", "--sidecar-env=TELLTALE_PROFILES__ETCD__CLUSTER=x"][..],
            "--sidecar-env \"TELLTALE_PROFILES__ETCD__CLUSTER\": set by the injector from the --etcd-* flags",
        ),
    ] {
        let e = settings(flags).unwrap_err();
        assert!(e.contains(needle), "{flags:?}: {e}");
    }
}
