//! Hostile reviews: arbitrary JSON, arbitrary bytes, mutated real reviews.
//! Every answer must be a well-formed review; every patch must apply.

use base64::Engine as _;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

use super::*;

/// Real reviews (the integration tests' fixtures).
const FIXTURES: &[&str] = &[
    include_str!("../../tests/fixtures/opt-in.json"),
    include_str!("../../tests/fixtures/bare-opt-in.json"),
    include_str!("../../tests/fixtures/already-injected.json"),
    include_str!("../../tests/fixtures/init-containers.json"),
    include_str!("../../tests/fixtures/overrides.json"),
    include_str!("../../tests/fixtures/foreign-container.json"),
    include_str!("../../tests/fixtures/bad-quantity.json"),
    include_str!("../../tests/fixtures/host-network.json"),
];

fn config() -> ProptestConfig {
    ProptestConfig { cases: 384, ..ProptestConfig::default() }
}

fn settings(native_sidecar: bool) -> Settings {
    Settings {
        sidecar_image: "telltale:0.1.0".into(),
        api_token_secret: Some("telltale-tokens".into()),
        sidecar_env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT".into(), "http://collector:4317".into())],
        native_sidecar,
        fleet: None,
        metrics: false,
    }
}

fn envelope(uid: &str, object: Value) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "shop",
            "operation": "CREATE",
            "object": object,
        },
    })
}

/// The checks every answer must pass; `Ok` when `body` was a review.
fn answer(body: &[u8], mode: Mode, native: bool) -> Result<Option<AdmissionReview>, TestCaseError> {
    let review = match handle(body, mode, &settings(native)) {
        Ok(review) => review,
        Err(e) => {
            prop_assert!(!crate::error::chain(&e).is_empty());
            if let ReviewError::WrongType { api_version, kind } = &e {
                prop_assert!(api_version != API_VERSION || kind != KIND);
            }
            return Ok(None);
        }
    };
    let request = parse(body).map_err(|e| TestCaseError::fail(format!("handle answered, parse failed: {e}")))?;
    prop_assert_eq!(&review.api_version, API_VERSION);
    prop_assert_eq!(&review.kind, KIND);
    prop_assert!(review.request.is_none());
    let Some(response) = &review.response else { return Err(TestCaseError::fail("no response")) };
    prop_assert_eq!(&response.uid, &request.uid, "the response answers the request");
    match &response.status {
        None => prop_assert!(response.allowed),
        Some(status) => {
            prop_assert!(!response.allowed);
            prop_assert!(status.code == 400 || status.code == 500, "{:?}", status);
            prop_assert!(status.message.starts_with("telltale injector: "), "{:?}", status);
            prop_assert!(status.message.len() > "telltale injector: ".len());
        }
    }
    prop_assert_eq!(response.patch.is_some(), response.patch_type.as_deref() == Some("JSONPatch"));
    prop_assert!(response.allowed || response.patch.is_none());
    // What goes on the wire reads back the same and has the fields the
    // API server requires.
    let wire = serde_json::to_vec(&review).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: AdmissionReview = serde_json::from_slice(&wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, &review);
    let raw: Value = serde_json::from_slice(&wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(raw["response"]["uid"].is_string() && raw["response"]["allowed"].is_boolean());
    if let Some(patch) = &response.patch {
        patched_has_sidecar(request.object.as_ref(), patch)?;
    }
    if let Some(status) = response.status.as_ref().filter(|s| s.message.contains("cannot patch")) {
        // Only an object the API server would not send: one without
        // `metadata` (it always has a name or generateName).
        let object = request.object.as_ref();
        prop_assert!(object.is_some_and(|o| !o["metadata"].is_object()), "{:?}", status);
    }
    Ok(Some(review))
}

/// A patch applies to the admitted object, and the result is a Pod with
/// the sidecar.
fn patched_has_sidecar(object: Option<&Value>, patch: &str) -> Result<(), TestCaseError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .map_err(|e| TestCaseError::fail(format!("patch is not base64: {e}")))?;
    let patch: json_patch::Patch =
        serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(format!("patch is not a JSONPatch: {e}")))?;
    let Some(object) = object else { return Err(TestCaseError::fail("a patch without an object")) };
    let mut doc = object.clone();
    json_patch::patch(&mut doc, &patch).map_err(|e| TestCaseError::fail(format!("the patch does not apply: {e}")))?;
    let pod: Pod = serde_json::from_value(doc).map_err(|e| TestCaseError::fail(format!("not a Pod after: {e}")))?;
    let spec = pod.spec.unwrap_or_default();
    let names = spec.containers.iter().chain(spec.init_containers.iter().flatten()).map(|c| c.name.as_str());
    prop_assert!(names.clone().any(|n| n == inject::SIDECAR_NAME), "{:?}", names.collect::<Vec<_>>());
    Ok(())
}

/// Field names the review and the pod use, and a few others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "apiVersion",
            "kind",
            "request",
            "response",
            "uid",
            "group",
            "version",
            "operation",
            "object",
            "metadata",
            "name",
            "namespace",
            "annotations",
            "spec",
            "containers",
            "initContainers",
            "image",
            "env",
            "value",
            "telltale.dev/inject",
            "telltale.dev/injected",
            "telltale.dev/memory-limit",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z/._-]{0,8}",
    ]
}

/// Scalars that mean something to the webhook, and others.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        proptest::sample::select(vec![
            API_VERSION,
            KIND,
            "Pod",
            "CREATE",
            "UPDATE",
            "",
            "true",
            "false",
            "telltale",
            "64Mi",
            "1e400",
            "-",
        ])
        .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One change somewhere in a document: a path of choices, then replace the
/// value there or remove it.
#[derive(Debug, Clone)]
enum Edit {
    Replace(Vec<Index>, Value),
    Remove(Vec<Index>),
}

fn edit() -> impl Strategy<Value = Edit> {
    let path = || vec(any::<Index>(), 1..9);
    prop_oneof![(path(), json_value()).prop_map(|(p, v)| Edit::Replace(p, v)), path().prop_map(Edit::Remove),]
}

fn apply(doc: &mut Value, edit: &Edit) {
    let (path, replacement) = match edit {
        Edit::Replace(path, value) => (path, Some(value)),
        Edit::Remove(path) => (path, None),
    };
    let mut node = doc;
    for (depth, choice) in path.iter().enumerate() {
        let last = depth + 1 == path.len();
        let inside = match node {
            Value::Object(map) => !map.is_empty(),
            Value::Array(items) => !items.is_empty(),
            _ => false,
        };
        if !inside {
            break;
        }
        node = match node {
            Value::Object(map) => {
                let Some(key) = map.keys().nth(choice.index(map.len())).cloned() else { return };
                if last && replacement.is_none() {
                    map.remove(&key);
                    return;
                }
                let Some(next) = map.get_mut(&key) else { return };
                next
            }
            Value::Array(items) => {
                let i = choice.index(items.len());
                if last && replacement.is_none() {
                    items.remove(i);
                    return;
                }
                &mut items[i]
            }
            _ => return,
        };
    }
    if let Some(value) = replacement {
        *node = value.clone();
    }
}

#[test]
fn fixtures_are_answered_well() {
    for (i, fixture) in FIXTURES.iter().enumerate() {
        for mode in [Mode::PodOptIn, Mode::NamespaceOptIn] {
            let answered = answer(fixture.as_bytes(), mode, i % 2 == 0).unwrap();
            assert!(answered.is_some(), "fixture {i}");
        }
    }
}

#[test]
fn malformed_reviews_are_refused_with_what_is_wrong() {
    let cases: [(&[u8], &str); 5] = [
        (b"", "malformed AdmissionReview JSON"),
        (b"{\"apiVersion\": 1}", "malformed"),
        (br#"{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}"#, "admission.k8s.io/v1beta1"),
        (br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#, "no `request`"),
        (br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 7}}"#, "malformed"),
    ];
    for (body, what) in cases {
        let e = handle(body, Mode::PodOptIn, &settings(false)).unwrap_err();
        let message = crate::error::chain(&e);
        assert!(message.contains(what), "{message}");
    }
}

#[test]
fn undecodable_pods_are_refused_with_the_uid() {
    let objects = [
        json!([]),
        json!("a pod"),
        json!({"spec": {"containers": "app"}}),
        json!({"metadata": {"annotations": {"telltale.dev/inject": 1}}}),
        json!({"spec": {"containers": [{"name": 5}]}}),
    ];
    for object in objects {
        let body = serde_json::to_vec(&envelope("u-1", object.clone())).unwrap();
        let review = answer(&body, Mode::NamespaceOptIn, false).unwrap().unwrap();
        let response = review.response.unwrap();
        assert!(!response.allowed, "{object}");
        let status = response.status.unwrap();
        assert_eq!(status.code, 400);
        assert!(status.message.contains("cannot decode the admitted object as a Pod"), "{}", status.message);
    }
    // A pod without `metadata` decodes (as an empty one) but cannot take
    // the annotations patch: refused, not answered with a broken patch.
    let pod = json!({"spec": {"containers": [{"name": "app", "image": "busybox"}]}});
    let body = serde_json::to_vec(&envelope("u-3", pod)).unwrap();
    let response = answer(&body, Mode::NamespaceOptIn, false).unwrap().unwrap().response.unwrap();
    assert!(!response.allowed);
    assert!(response.status.unwrap().message.contains("cannot patch the admitted object"));
    let body = serde_json::to_vec(&envelope("u-2", Value::Null)).unwrap();
    let response = answer(&body, Mode::NamespaceOptIn, false).unwrap().unwrap().response.unwrap();
    assert_eq!(response.uid, "u-2");
    assert!(response.status.unwrap().message.contains("no `object`"));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(body in vec(any::<u8>(), 0..300)) {
        answer(&body, Mode::PodOptIn, false)?;
    }

    #[test]
    fn arbitrary_json_never_panics(v in json_value(), namespace in any::<bool>()) {
        let mode = if namespace { Mode::NamespaceOptIn } else { Mode::PodOptIn };
        answer(&serde_json::to_vec(&v).unwrap(), mode, namespace)?;
    }

    #[test]
    fn arbitrary_objects_in_a_review_get_an_answer(uid in "[a-f0-9-]{0,36}", object in json_value()) {
        let body = serde_json::to_vec(&envelope(&uid, object)).unwrap();
        let answered = answer(&body, Mode::NamespaceOptIn, false)?;
        prop_assert!(answered.is_some(), "a well-formed envelope is always answered");
    }

    #[test]
    fn mutated_reviews_never_panic(
        fixture in proptest::sample::select(FIXTURES),
        edits in vec(edit(), 1..5),
        whole in proptest::bool::weighted(0.2),
        namespace in any::<bool>(),
        native in any::<bool>(),
    ) {
        // Mostly the pod (what users write), sometimes the whole review.
        let mut doc: Value = serde_json::from_str(fixture).unwrap();
        let target = if whole { &mut doc } else { &mut doc["request"]["object"] };
        for e in &edits {
            apply(target, e);
        }
        let mode = if namespace { Mode::NamespaceOptIn } else { Mode::PodOptIn };
        answer(&serde_json::to_vec(&doc).unwrap(), mode, native)?;
    }
}
