//! `admission.k8s.io/v1` `AdmissionReview`: the request the API server sends
//! and the response the webhook returns.
//!
//! Only the fields the webhook uses are typed; the rest of a request is
//! ignored. [`handle`] is the whole webhook minus HTTP.

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use crate::inject::{self, Decision, Mode, Settings};
use crate::Rejection;

/// `apiVersion` of the reviews this webhook understands.
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// `kind` of a review.
pub const KIND: &str = "AdmissionReview";

/// An `AdmissionReview` (request in, response out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always [`KIND`].
    pub kind: String,
    /// Set by the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<AdmissionRequest>,
    /// Set by the webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<AdmissionResponse>,
}

/// The part of `request` the webhook reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// Copied into the response.
    pub uid: String,
    /// Kind of the object.
    pub kind: GroupVersionKind,
    /// Object name (empty on CREATE with `generateName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: String,
    /// The object being admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<serde_json::Value>,
    /// A dry run (the webhook has no side effects either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

/// `group`/`version`/`kind`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GroupVersionKind {
    /// API group (`""` for core).
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
}

/// The webhook's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    /// The request's uid.
    pub uid: String,
    /// Admit the object.
    pub allowed: bool,
    /// Why not (when `allowed` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ResponseStatus>,
    /// Base64 of the JSONPatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// `JSONPatch` when `patch` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    /// Shown to the client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `status` of a rejection (a `metav1.Status` subset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseStatus {
    /// HTTP status code the client sees.
    pub code: u16,
    /// Names the problem.
    pub message: String,
}

/// Why a request body is not a review the webhook can answer (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Not JSON, or not shaped like an `AdmissionReview`.
    #[error("malformed AdmissionReview JSON")]
    Json(#[source] serde_json::Error),
    /// Another `apiVersion` or `kind`.
    #[error("expected apiVersion {API_VERSION:?} and kind {KIND:?}, got {api_version:?} and {kind:?}")]
    WrongType {
        /// What was sent.
        api_version: String,
        /// What was sent.
        kind: String,
    },
    /// No `request`.
    #[error("the AdmissionReview has no `request`")]
    NoRequest,
}

/// The response review for the body of an HTTP request.
pub fn handle(body: &[u8], mode: Mode, settings: &Settings) -> Result<AdmissionReview, ReviewError> {
    Ok(respond(&parse(body)?, mode, settings))
}

/// The request of a review body.
pub fn parse(body: &[u8]) -> Result<AdmissionRequest, ReviewError> {
    let review: AdmissionReview = serde_json::from_slice(body).map_err(ReviewError::Json)?;
    if review.api_version != API_VERSION || review.kind != KIND {
        return Err(ReviewError::WrongType { api_version: review.api_version, kind: review.kind });
    }
    review.request.ok_or(ReviewError::NoRequest)
}

/// The response review for a request.
pub fn respond(request: &AdmissionRequest, mode: Mode, settings: &Settings) -> AdmissionReview {
    AdmissionReview {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        request: None,
        response: Some(admit(request, mode, settings)),
    }
}

/// `namespace/name` of the request's object for logs (`generateName*`
/// when the name is not chosen yet).
pub fn describe(request: &AdmissionRequest) -> String {
    let meta = request.object.as_ref().map(|o| &o["metadata"]);
    let field = |k: &str| meta.and_then(|m| m[k].as_str()).filter(|s| !s.is_empty());
    let name = request
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| field("name").map(str::to_owned))
        .or_else(|| field("generateName").map(|g| format!("{g}*")))
        .unwrap_or_else(|| "?".into());
    format!("{}/{name}", request.namespace.as_deref().unwrap_or(""))
}

/// The answer to one request.
pub fn admit(request: &AdmissionRequest, mode: Mode, settings: &Settings) -> AdmissionResponse {
    let allow = || AdmissionResponse { uid: request.uid.clone(), allowed: true, ..AdmissionResponse::default() };
    let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
    if !is_pod || request.operation != "CREATE" {
        return allow();
    }
    let decision = request
        .object
        .clone()
        .ok_or(Rejection::NoObject)
        .and_then(|o| serde_json::from_value::<Pod>(o).map_err(Rejection::UndecodablePod))
        .and_then(|pod| inject::plan(&pod, mode, settings));
    match decision {
        Ok(Decision::Skip { warnings, .. }) => AdmissionResponse { warnings, ..allow() },
        Ok(Decision::Patch { patch, warnings }) => {
            if let Err(e) = applies(request.object.as_ref(), &patch) {
                return deny(request, format!("cannot patch the admitted object: {e}"), 400);
            }
            match serde_json::to_vec(&patch) {
                Ok(bytes) => AdmissionResponse {
                    patch: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                    patch_type: Some("JSONPatch".into()),
                    warnings,
                    ..allow()
                },
                Err(e) => deny(request, format!("encoding the patch: {e}"), 500),
            }
        }
        Err(rejection) => deny(request, crate::error::chain(&rejection), 400),
    }
}

/// Does `patch` apply to the object as the API server sent it? [`inject::plan`]
/// builds it from the decoded Pod, where a missing `metadata` looks like an
/// empty one; a patch the API server cannot apply would fail the request
/// with a message that does not say why.
fn applies(object: Option<&serde_json::Value>, patch: &json_patch::Patch) -> Result<(), json_patch::PatchError> {
    let mut doc = object.cloned().unwrap_or_default();
    // On a scratch copy: no need for `patch`'s undo on failure.
    json_patch::patch_unsafe(&mut doc, patch)
}

fn deny(request: &AdmissionRequest, message: String, code: u16) -> AdmissionResponse {
    AdmissionResponse {
        uid: request.uid.clone(),
        allowed: false,
        status: Some(ResponseStatus { code, message: format!("telltale injector: {message}") }),
        ..AdmissionResponse::default()
    }
}

#[cfg(test)]
mod tests;
