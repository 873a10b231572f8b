//! The sidecar's Prometheus endpoint through the webhook: `--metrics` →
//! settings → the JSONPatch of an opted-in pod (two variables, one declared
//! port), the pod's `telltale.dev/metrics` override both ways, values the
//! webhook refuses, and app containers that already use the port.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use base64::Engine as _;
use clap::Parser as _;
use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod};
use serde_json::{json, Value};
use telltale_core::contract::{self, env as cenv};
use telltale_injector::review::{self, AdmissionResponse};
use telltale_injector::{Mode, Settings, WebhookArgs};

const ANNOTATION: &str = "telltale.dev/metrics";

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

/// The `opt-in` review with these annotations added.
fn with_annotations(pairs: &[(&str, &str)]) -> Value {
    let mut review = fixture("opt-in");
    for (k, v) in pairs {
        review["request"]["object"]["metadata"]["annotations"][*k] = Value::from(*v);
    }
    review
}

/// The `opt-in` review whose app container declares `ports`.
fn with_app_ports(ports: Value) -> Value {
    let mut review = fixture("opt-in");
    review["request"]["object"]["spec"]["containers"][0]["ports"] = ports;
    review
}

fn answer(review: &Value, settings: &Settings) -> AdmissionResponse {
    let body = serde_json::to_vec(review).unwrap();
    review::handle(&body, Mode::PodOptIn, settings).unwrap().response.unwrap()
}

/// The pod after the patch, the raw patched object, and the warnings.
fn inject(review: &Value, settings: &Settings) -> (Pod, Value, Vec<String>) {
    let response = answer(review, settings);
    assert!(response.allowed, "{:?}", response.status);
    let bytes = base64::engine::general_purpose::STANDARD.decode(response.patch.unwrap()).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut doc = review["request"]["object"].clone();
    json_patch::patch(&mut doc, &patch).unwrap();
    (serde_json::from_value(doc.clone()).unwrap(), doc, response.warnings)
}

/// The refusal's message.
fn refusal(review: &Value, settings: &Settings) -> String {
    let r = answer(review, settings);
    assert!(!r.allowed && r.patch.is_none(), "{r:?}");
    let status = r.status.unwrap();
    assert_eq!(status.code, 400);
    status.message
}

fn sidecar(pod: &Pod) -> &Container {
    let spec = pod.spec.as_ref().unwrap();
    let mut it = spec.containers.iter().chain(spec.init_containers.iter().flatten()).filter(|c| c.name == "telltale");
    let c = it.next().expect("a telltale container");
    assert!(it.next().is_none(), "exactly one telltale container");
    c
}

/// The sidecar's environment; a name set twice fails.
fn env(c: &Container) -> BTreeMap<&str, &str> {
    let mut map = BTreeMap::new();
    for e in c.env.iter().flatten() {
        let v = e.value.as_deref().unwrap_or("<valueFrom>");
        assert!(map.insert(e.name.as_str(), v).is_none(), "{} is set twice", e.name);
    }
    map
}

fn prometheus_vars(c: &Container) -> BTreeMap<&str, &str> {
    env(c).into_iter().filter(|(k, _)| k.starts_with("TELLTALE_TELEMETRY__PROMETHEUS__")).collect()
}

fn metrics_port(c: &Container) -> Option<&ContainerPort> {
    c.ports.iter().flatten().find(|p| p.name.as_deref() == Some(contract::METRICS_PORT_NAME))
}

/// The endpoint is on: both variables with the contract's values, the port
/// declared once, by name, over TCP.
fn assert_on(c: &Container) {
    let vars = prometheus_vars(c);
    assert_eq!(
        vars,
        BTreeMap::from([
            ("TELLTALE_TELEMETRY__PROMETHEUS__ENABLED", "true"),
            ("TELLTALE_TELEMETRY__PROMETHEUS__LISTEN", "0.0.0.0:9464"),
        ])
    );
    assert_eq!(vars, cenv::WITH_METRICS.into_iter().collect::<BTreeMap<_, _>>());
    let port = metrics_port(c).expect("the metrics port is declared");
    assert_eq!(
        (port.name.as_deref(), port.container_port, port.protocol.as_deref()),
        (Some("telltale-prom"), 9464, Some("TCP"))
    );
    assert_eq!(port.container_port, i32::from(contract::METRICS_PORT));
    assert_eq!(port.host_port, None, "the pod's network only");
    let named = c.ports.iter().flatten().filter(|p| p.name.as_deref() == Some(contract::METRICS_PORT_NAME)).count();
    assert_eq!(named, 1);
}

/// The endpoint is off: no variables, no port.
fn assert_off(c: &Container) {
    assert!(prometheus_vars(c).is_empty(), "{:?}", prometheus_vars(c));
    assert!(metrics_port(c).is_none() && c.ports.is_none(), "{:?}", c.ports);
}

#[test]
fn metrics_are_off_by_default() {
    let s = settings(&[]).unwrap();
    assert!(!s.metrics);
    let (pod, _, warnings) = inject(&fixture("opt-in"), &s);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_off(sidecar(&pod));

    // `--sidecar-env` without --metrics still reaches the sidecar as it is
    // (no port is declared for it: the injector does not know its listen address).
    let s = settings(&["--sidecar-env=TELLTALE_TELEMETRY__PROMETHEUS__ENABLED=true"]).unwrap();
    let (pod, _, _) = inject(&fixture("opt-in"), &s);
    let c = sidecar(&pod);
    assert_eq!(prometheus_vars(c), BTreeMap::from([("TELLTALE_TELEMETRY__PROMETHEUS__ENABLED", "true")]));
    assert!(metrics_port(c).is_none());
}

#[test]
fn the_metrics_flag_turns_the_endpoint_on_for_every_sidecar() {
    let s = settings(&["--metrics"]).unwrap();
    assert!(s.metrics);
    for name in ["opt-in", "bare-opt-in", "init-containers"] {
        let (pod, raw, _) = inject(&fixture(name), &s);
        assert_on(sidecar(&pod));
        // Injecting the result again changes nothing.
        let mut again = fixture(name);
        again["request"]["object"] = raw;
        let r = answer(&again, &s);
        assert!(r.allowed && r.patch.is_none(), "{name}: second pass patched: {r:?}");
    }
    // The variables are the daemon's `[telemetry.prometheus]` keys.
    for (name, _) in cenv::WITH_METRICS {
        assert!(contract::config_key(name).unwrap().starts_with("telemetry.prometheus."), "{name}");
    }

    // Next to the API port (a token Secret) and as a native sidecar alike.
    let s = settings(&["--metrics", "--native-sidecar", "--api-token-secret=telltale-tokens"]).unwrap();
    let (pod, _, _) = inject(&fixture("opt-in"), &s);
    let c = sidecar(&pod);
    assert_eq!(c.restart_policy.as_deref(), Some("Always"));
    assert_on(c);
    let ports: Vec<(Option<&str>, i32)> =
        c.ports.iter().flatten().map(|p| (p.name.as_deref(), p.container_port)).collect();
    assert_eq!(ports, [(Some("telltale-api"), 7443), (Some("telltale-prom"), 9464)]);
}

#[test]
fn the_annotation_overrides_the_flag_both_ways() {
    let (off, on) = (settings(&[]).unwrap(), settings(&["--metrics"]).unwrap());
    for v in ["true", "True", " TRUE "] {
        let (pod, _, warnings) = inject(&with_annotations(&[(ANNOTATION, v)]), &off);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_on(sidecar(&pod));
    }
    let (pod, _, _) = inject(&with_annotations(&[(ANNOTATION, "false")]), &on);
    assert_off(sidecar(&pod));
    let (pod, _, _) = inject(&with_annotations(&[(ANNOTATION, "true")]), &on);
    assert_on(sidecar(&pod));

    // The pod's choice replaces what `--sidecar-env` says of the endpoint:
    // "false" leaves it off, "true" sets the injector's values, once each.
    let s = settings(&[
        "--sidecar-env=TELLTALE_TELEMETRY__PROMETHEUS__ENABLED=true",
        "--sidecar-env=TELLTALE_TELEMETRY__PROMETHEUS__LISTEN=127.0.0.1:9999",
        "--sidecar-env=OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317",
    ])
    .unwrap();
    let (pod, _, _) = inject(&with_annotations(&[(ANNOTATION, "false")]), &s);
    assert_off(sidecar(&pod));
    assert_eq!(env(sidecar(&pod))["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://collector:4317");
    let (pod, _, _) = inject(&with_annotations(&[(ANNOTATION, "true")]), &s);
    assert_on(sidecar(&pod));
    assert_eq!(env(sidecar(&pod))["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://collector:4317");
}

#[test]
fn a_bad_annotation_value_is_refused_naming_the_annotation() {
    for s in [settings(&[]).unwrap(), settings(&["--metrics"]).unwrap()] {
        for bad in ["yes", "1", "", "on", "9464"] {
            let m = refusal(&with_annotations(&[(ANNOTATION, bad)]), &s);
            assert!(
                m.contains("telltale.dev/metrics") && m.contains(&format!("{bad:?}")) && m.contains("\"true\""),
                "{bad:?}: {m}"
            );
        }
    }
}

#[test]
fn the_flag_and_sidecar_env_may_not_both_set_the_endpoint() {
    for var in ["TELLTALE_TELEMETRY__PROMETHEUS__ENABLED=false", "TELLTALE_TELEMETRY__PROMETHEUS__LISTEN=0.0.0.0:9000"]
    {
        let e = settings(&["--metrics", &format!("--sidecar-env={var}")]).unwrap_err();
        let name = var.split_once('=').unwrap().0;
        assert!(e.contains("--sidecar-env") && e.contains(name) && e.contains("--metrics"), "{e}");
        assert!(settings(&[&format!("--sidecar-env={var}")]).is_ok(), "{var} without --metrics");
    }
}

/// Decision: the pod's containers share one network namespace, so the
/// sidecar cannot listen on a port number an app or init container
/// declares (one of the two would fail to start), and a second port named
/// `telltale-prom` would have Prometheus scrape the app. A pod that asked
/// for the endpoint is refused with what clashes; the webhook's default
/// yields to such a pod with a warning (a cluster-wide flag must not refuse
/// pods that happen to use 9464, the OpenTelemetry Prometheus exporter's
/// default port), as the API port's hostNetwork clash is a warning.
#[test]
fn a_port_the_app_already_declares_is_not_taken() {
    let on = settings(&["--metrics"]).unwrap();
    let clashes = [
        (json!([{"containerPort": 9464}]), "port 9464/TCP"),
        (json!([{"name": "http", "containerPort": 8080}, {"containerPort": 9464, "protocol": "TCP"}]), "9464/TCP"),
        (json!([{"name": "telltale-prom", "containerPort": 9090}]), "a port named `telltale-prom` (9090)"),
    ];
    for (ports, what) in &clashes {
        // The flag's default: injected without the endpoint, with a warning.
        let review = with_app_ports(ports.clone());
        let (pod, _, warnings) = inject(&review, &on);
        assert_off(sidecar(&pod));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let w = &warnings[0];
        assert!(w.contains("container `app`") && w.contains(what) && w.contains(ANNOTATION), "{w}");
        // The app's ports are untouched.
        let app = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(serde_json::to_value(app.ports.as_ref().unwrap()).unwrap(), *ports);

        // The pod's own "true": refused, naming the annotation and the container.
        let mut review = with_app_ports(ports.clone());
        review["request"]["object"]["metadata"]["annotations"][ANNOTATION] = "true".into();
        for s in [&on, &settings(&[]).unwrap()] {
            let m = refusal(&review, s);
            assert!(m.contains("telltale.dev/metrics") && m.contains("container `app`") && m.contains(what), "{m}");
        }
        // The pod's "false": no endpoint, nothing to warn about.
        review["request"]["object"]["metadata"]["annotations"][ANNOTATION] = "false".into();
        let (pod, _, warnings) = inject(&review, &on);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_off(sidecar(&pod));
    }

    // An init container's port counts too (a native sidecar runs beside it).
    let mut review = fixture("init-containers");
    review["request"]["object"]["spec"]["initContainers"][0]["ports"] = json!([{"containerPort": 9464}]);
    let init = review["request"]["object"]["spec"]["initContainers"][0]["name"].as_str().unwrap().to_owned();
    let (pod, _, warnings) = inject(&review, &on);
    assert_off(sidecar(&pod));
    assert!(warnings.iter().any(|w| w.contains(&format!("container `{init}`")) && w.contains("9464")), "{warnings:?}");

    // The same number over UDP or SCTP, or other TCP ports, leave it free.
    for ports in [
        json!([{"containerPort": 9464, "protocol": "UDP"}]),
        json!([{"containerPort": 9464, "protocol": "SCTP"}]),
        json!([{"name": "metrics", "containerPort": 9090}, {"containerPort": 7443}]),
    ] {
        let (pod, _, warnings) = inject(&with_app_ports(ports.clone()), &on);
        assert!(warnings.is_empty(), "{ports}: {warnings:?}");
        assert_on(sidecar(&pod));
    }
}

#[test]
fn host_network_with_metrics_warns_about_the_node_port() {
    // The fixture has a token Secret: the API port's warning, and the metrics port's.
    let (pod, _, warnings) = inject(&fixture("host-network"), &settings(&["--metrics"]).unwrap());
    assert_on(sidecar(&pod));
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("hostNetwork") && warnings[0].contains("7443"), "{warnings:?}");
    assert!(warnings[1].contains("hostNetwork") && warnings[1].contains("9464"), "{warnings:?}");
    let (_, _, warnings) = inject(&fixture("host-network"), &settings(&[]).unwrap());
    assert!(warnings.len() == 1 && !warnings[0].contains("9464"), "{warnings:?}");
}

/// deploy/observability/podmonitor.yaml scrapes the port the injector
/// declares, by its contract name.
#[test]
fn the_pod_monitor_scrapes_the_declared_port() {
    let path = format!("{}/../deploy/observability/podmonitor.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect(&path);
    let doc: Value = serde_norway::from_str(&text).expect(&path);
    assert_eq!(doc["kind"], "PodMonitor");
    let endpoints = doc["spec"]["podMetricsEndpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"], contract::METRICS_PORT_NAME);
    assert_eq!(endpoints[0]["path"], "/metrics");
    assert!(!text.contains("telltale-metrics"), "the old name (longer than a port name may be)");
}
