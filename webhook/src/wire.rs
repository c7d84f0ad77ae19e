//! The AdmissionReview wire format, read with as little work as possible.
//!
//! kube's `AdmissionReview<T>` parses `object` and `oldObject` into `T` in full. Every decision
//! needs only the annotations, name and version of `oldObject`, and parsing a complete manifest
//! twice was the largest cost per review; so the envelope borrows both objects as raw JSON and
//! parses `object` fully and `oldObject` into [`OldView`].

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// An incoming review; `request` borrows from the body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewIn<'a> {
    /// Must be `admission.k8s.io/v1`.
    #[serde(default)]
    pub api_version: String,
    /// Must be `AdmissionReview`.
    #[serde(default)]
    pub kind: String,
    /// The request; absent in a malformed review.
    #[serde(borrow)]
    pub request: Option<RequestIn<'a>>,
}

/// Group, version and kind of the reviewed object.
#[derive(Deserialize, Default)]
pub struct Gvk {
    /// API group.
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
}

/// The fields of an AdmissionRequest the webhook uses.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestIn<'a> {
    /// Echoed in the response.
    pub uid: String,
    /// What is reviewed.
    #[serde(default)]
    pub kind: Gvk,
    /// CREATE, UPDATE, DELETE or CONNECT.
    pub operation: String,
    /// Namespace of the object.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The new object (absent on DELETE).
    #[serde(borrow, default)]
    pub object: Option<&'a RawValue>,
    /// The existing object (UPDATE, DELETE).
    #[serde(borrow, default)]
    pub old_object: Option<&'a RawValue>,
}

/// What a decision reads from `oldObject`.
#[derive(Deserialize, Default, Clone, Debug)]
pub struct OldView {
    /// Its metadata.
    #[serde(default)]
    pub metadata: OldMetadata,
    /// Its spec.
    #[serde(default)]
    pub spec: OldSpec,
}

/// Metadata of `oldObject`.
#[derive(Deserialize, Default, Clone, Debug)]
pub struct OldMetadata {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Annotations (ownership, delete protection).
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Spec of `oldObject`.
#[derive(Deserialize, Default, Clone, Debug)]
pub struct OldSpec {
    /// `postgresql.version`.
    #[serde(default)]
    pub postgresql: OldPostgresql,
    /// `teamId`.
    #[serde(default, rename = "teamId")]
    pub team_id: String,
    /// `volume`: its size may only grow (`common::rules::volume`).
    #[serde(default)]
    pub volume: Option<serde_json::Value>,
    /// `patroni` (kept for the change warnings should one of its fields be listed again).
    #[serde(default)]
    pub patroni: Option<serde_json::Value>,
}

impl OldSpec {
    /// `volume.size`, when it is a string.
    pub fn volume_size(&self) -> Option<&str> {
        self.volume.as_ref()?.get("size")?.as_str()
    }

    /// The old spec as far as the warnings about changes that will not take effect read it
    /// (`common::fields::NOT_YET_ON_CHANGE`).
    pub fn changeable(&self) -> serde_json::Value {
        serde_json::json!({
            "postgresql": {
                "version": self.postgresql.version,
                "parameters": self.postgresql.parameters,
            },
            "volume": self.volume,
            "patroni": self.patroni,
        })
    }
}

/// `spec.postgresql` of `oldObject`.
#[derive(Deserialize, Default, Clone, Debug)]
pub struct OldPostgresql {
    /// Major version.
    #[serde(default)]
    pub version: String,
    /// `parameters` (kept for the change warnings should they be listed again).
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
}

/// The answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewOut {
    /// `admission.k8s.io/v1`.
    pub api_version: &'static str,
    /// `AdmissionReview`.
    pub kind: &'static str,
    /// The response.
    pub response: ResponseOut,
}

/// An AdmissionResponse.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResponseOut {
    /// The request's uid.
    pub uid: String,
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Why not, when denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusOut>,
    /// Base64 of a JSON patch (Go encodes `[]byte` as base64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// `JSONPatch` when a patch is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// Warnings kubectl prints.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The denial reason.
#[derive(Serialize)]
pub struct StatusOut {
    /// Shown to the user.
    pub message: String,
    /// HTTP-like code: 403 for a refused request, 400 for an unreadable one.
    pub code: u16,
    /// `Forbidden` or `BadRequest`.
    pub reason: &'static str,
    /// Always `Failure`.
    pub status: &'static str,
}

impl ResponseOut {
    /// Allows the request identified by `uid`.
    pub fn allow(uid: &str) -> Self {
        Self {
            uid: uid.to_string(),
            allowed: true,
            ..Default::default()
        }
    }

    /// Denies it with `message` (HTTP 403 semantics).
    pub fn deny(mut self, message: impl Into<String>) -> Self {
        self.allowed = false;
        self.status = Some(StatusOut {
            message: message.into(),
            code: 403,
            reason: "Forbidden",
            status: "Failure",
        });
        self
    }

    /// Serializes the response inside its AdmissionReview.
    pub fn encode(self) -> Vec<u8> {
        serde_json::to_vec(&ReviewOut {
            api_version: "admission.k8s.io/v1",
            kind: "AdmissionReview",
            response: self,
        })
        .expect("responses serialize")
    }
}
