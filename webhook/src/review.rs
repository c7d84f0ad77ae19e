//! Decoding an AdmissionReview, deciding with `common::rules::admission`, and encoding the answer.

use crate::metrics::ReviewLabels;
use crate::wire::{Gvk, OldView, ResponseOut, ReviewIn};
use base64::Engine;
use common::config::Config;
use common::crd::Postgresql;
use common::rules::admission::{self, Context, Operation, Previous};
use serde_json::value::RawValue;

/// Which endpoint was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/mutate`: defaults and limits as a JSON patch.
    Mutate,
    /// `/validate`: the rules.
    Validate,
}

/// A request that is not an AdmissionReview at all: answered with HTTP 400 and this text.
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    /// Not JSON, or not shaped like an AdmissionReview.
    #[error("request body is not a valid admission.k8s.io/v1 AdmissionReview: {0}")]
    Malformed(String),
    /// Another API version or kind.
    #[error(
        "expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got {api_version:?} {kind:?}"
    )]
    WrongType {
        /// The apiVersion sent.
        api_version: String,
        /// The kind sent.
        kind: String,
    },
    /// No `request` field.
    #[error("AdmissionReview has no request")]
    MissingRequest,
}

/// What a decision needs from the outside world.
pub struct Inputs<'a> {
    /// The current configuration.
    pub config: &'a Config,
    /// `CONTROLLER_ID` ("" when unset).
    pub controller_id: &'a str,
    /// Today in UTC, `YYYY-MM-DD`.
    pub today: &'a str,
    /// The clone source's version, looked up by the caller when the request clones a cluster.
    pub clone_source_version: Option<&'a str>,
}

/// The answer to one review plus the labels to count it under.
pub struct Answer {
    /// The serialized AdmissionReview response.
    pub body: Vec<u8>,
    /// Metric labels.
    pub labels: ReviewLabels,
}

/// A readable review. Objects that do not fit the schema keep the reason, with the field path.
pub struct Parsed {
    /// Echoed in the response.
    pub uid: String,
    /// CREATE, UPDATE, DELETE or CONNECT.
    pub operation: String,
    /// What is reviewed.
    pub kind: Gvk,
    /// Namespace of the object.
    pub namespace: String,
    /// `object`, if sent.
    pub object: Option<Result<Postgresql, String>>,
    /// What the rules need of `oldObject`, if sent.
    pub old: Option<Result<OldView, String>>,
}

/// Parses a body.
pub fn parse(body: &[u8]) -> Result<Parsed, BadRequest> {
    let review: ReviewIn<'_> =
        serde_json::from_slice(body).map_err(|e| BadRequest::Malformed(e.to_string()))?;
    if review.api_version != "admission.k8s.io/v1" || review.kind != "AdmissionReview" {
        return Err(BadRequest::WrongType {
            api_version: review.api_version,
            kind: review.kind,
        });
    }
    let request = review.request.ok_or(BadRequest::MissingRequest)?;
    Ok(Parsed {
        uid: request.uid,
        operation: request.operation,
        kind: request.kind,
        namespace: request.namespace.unwrap_or_default(),
        object: present(request.object).map(typed::<Postgresql>),
        old: present(request.old_object).map(typed::<OldView>),
    })
}

fn present(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|r| r.get() != "null")
}

/// Parses an object; only when that fails is it parsed again to find the offending field.
fn typed<T: serde::de::DeserializeOwned>(raw: &RawValue) -> Result<T, String> {
    serde_json::from_str(raw.get()).map_err(|error| {
        let mut deserializer = serde_json::Deserializer::from_str(raw.get());
        match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
            Err(e) => format!("{}: {}", e.path(), e.inner()),
            Ok(_) => error.to_string(),
        }
    })
}

/// Namespace and name of the source cluster of a CREATE that clones, to look up its version.
pub fn clone_source(parsed: &Parsed) -> Option<(String, String)> {
    if parsed.operation != "CREATE" {
        return None;
    }
    let clone = parsed.object.as_ref()?.as_ref().ok()?.spec.clone.as_ref()?;
    Some((parsed.namespace.clone(), clone.cluster.clone()))
}

fn labels(operation: &str, rule: &str, outcome: &str) -> ReviewLabels {
    ReviewLabels {
        operation: operation.to_string(),
        rule: rule.to_string(),
        outcome: outcome.to_string(),
    }
}

/// Decides a parsed review.
pub fn decide(
    endpoint: Endpoint,
    parsed: &Parsed,
    inputs: &Inputs<'_>,
) -> (ResponseOut, ReviewLabels) {
    let response = ResponseOut::allow(&parsed.uid);
    let op = parsed.operation.as_str();
    let operation = match op {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        "CONNECT" => return (response, labels(op, "none", "allowed")),
        other => {
            return (
                response.deny(format!("unknown operation {other:?}")),
                labels("invalid", "none", "error"),
            );
        }
    };
    if parsed.kind.group != "acid.zalan.do" || parsed.kind.kind != "postgresql" {
        let message = format!(
            "this webhook only reviews postgresqls.acid.zalan.do, not {}/{} {}; fix the rules of the webhook configuration",
            parsed.kind.group, parsed.kind.version, parsed.kind.kind
        );
        return (response.deny(message), labels(op, "kind", "denied"));
    }
    let schema_error = |which: &str, reason: &str| {
        format!("the {which} does not fit the acid.zalan.do/v1 postgresql schema: {reason}")
    };
    let new = match &parsed.object {
        Some(Ok(pg)) => Some(pg),
        Some(Err(reason)) => {
            return (
                response.deny(schema_error("object", reason)),
                labels(op, "schema", "denied"),
            );
        }
        None => None,
    };
    let old_view = match &parsed.old {
        Some(Ok(view)) => Some(view),
        // An unreadable stored object must not block its own repair or deletion.
        Some(Err(_)) | None => None,
    };
    let old_spec = old_view.map(|o| o.spec.changeable());
    let old = old_view.map(|o| Previous {
        name: o.metadata.name.as_deref().unwrap_or_default(),
        annotations: o.metadata.annotations.as_ref(),
        version: &o.spec.postgresql.version,
        volume_size: o.spec.volume_size(),
        spec: old_spec.as_ref(),
    });
    if operation != Operation::Delete && new.is_none() {
        return (
            response.deny("the request carries no object"),
            labels(op, "none", "error"),
        );
    }
    let ctx = Context {
        config: inputs.config,
        controller_id: inputs.controller_id,
        today: inputs.today,
    };
    if !admission::is_responsible_for(&ctx, old, new) {
        return (response, labels(op, "ownership", "skipped"));
    }
    match (endpoint, new) {
        (Endpoint::Mutate, Some(new)) => mutate(&ctx, operation, new, response, op),
        (Endpoint::Mutate, None) => (response, labels(op, "none", "allowed")),
        (Endpoint::Validate, _) => {
            let verdict =
                admission::validate_change(&ctx, operation, old, new, inputs.clone_source_version);
            let mut response = response;
            response.warnings = verdict.warnings.clone();
            match verdict.violations.first() {
                None => (response, labels(op, "none", "allowed")),
                Some(first) => (
                    response.deny(verdict.message()),
                    labels(op, first.rule, "denied"),
                ),
            }
        }
    }
}

/// The mutation as a JSON patch: `json_patch::diff` of the typed spec before and after, computed
/// only when something changed (mutation only ever touches the spec).
fn mutate(
    ctx: &Context<'_>,
    operation: Operation,
    new: &Postgresql,
    mut response: ResponseOut,
    op: &str,
) -> (ResponseOut, ReviewLabels) {
    let (mutated, warnings) = admission::mutate(ctx, operation, new);
    response.warnings = warnings;
    if mutated.spec == new.spec {
        return (response, labels(op, "none", "allowed"));
    }
    let wrap = |spec| serde_json::json!({ "spec": spec });
    let before = wrap(serde_json::to_value(&new.spec).expect("specs serialize"));
    let after = wrap(serde_json::to_value(&mutated.spec).expect("specs serialize"));
    let patch = json_patch::diff(&before, &after);
    let encoded = serde_json::to_vec(&patch).expect("patches serialize");
    response.patch = Some(base64::engine::general_purpose::STANDARD.encode(encoded));
    response.patch_type = Some("JSONPatch");
    (response, labels(op, "none", "patched"))
}

/// Full pipeline for callers that already did any lookups: parse, decide, encode.
pub fn handle(endpoint: Endpoint, body: &[u8], inputs: &Inputs<'_>) -> Result<Answer, BadRequest> {
    let parsed = parse(body)?;
    let (response, labels) = decide(endpoint, &parsed, inputs);
    Ok(Answer {
        body: response.encode(),
        labels,
    })
}
