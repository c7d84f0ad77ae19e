//! Decoding an AdmissionReview, deciding with `common::rules::admission`, and encoding the answer.

use crate::metrics::ReviewLabels;
use common::config::Config;
use common::crd::Postgresql;
use common::rules::admission::{self, Context, Operation};
use kube::core::DynamicObject;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation as KubeOperation,
};

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

/// Reads the body far enough to know whether a clone source must be looked up: returns the
/// namespace and name of the source cluster of a CREATE that clones.
pub fn clone_source(review: &AdmissionReview<Postgresql>) -> Option<(String, String)> {
    let request = review.request.as_ref()?;
    if request.operation != KubeOperation::Create {
        return None;
    }
    let clone = request.object.as_ref()?.spec.clone.as_ref()?;
    Some((
        request.namespace.clone().unwrap_or_default(),
        clone.cluster.clone(),
    ))
}

/// Parses a body; a malformed `object` still yields a review (answered with a denial that names
/// the field) as long as the envelope is readable.
pub fn parse(
    body: &[u8],
) -> Result<Result<AdmissionReview<Postgresql>, AdmissionResponse>, BadRequest> {
    match serde_json::from_slice::<AdmissionReview<Postgresql>>(body) {
        Ok(review) => {
            check_envelope(&review.types)?;
            if review.request.is_none() {
                return Err(BadRequest::MissingRequest);
            }
            Ok(Ok(review))
        }
        Err(typed_error) => {
            // Slow path: find out whether only the object is broken, to name the field.
            let review: AdmissionReview<DynamicObject> =
                serde_json::from_slice(body).map_err(|e| BadRequest::Malformed(e.to_string()))?;
            check_envelope(&review.types)?;
            let request: AdmissionRequest<DynamicObject> =
                review.try_into().map_err(|_| BadRequest::MissingRequest)?;
            let message = request
                .object
                .as_ref()
                .or(request.old_object.as_ref())
                .and_then(|object| {
                    let value = serde_json::to_value(object).ok()?;
                    serde_path_to_error::deserialize::<_, Postgresql>(value)
                        .err()
                        .map(|e| format!("{}: {}", e.path(), e.inner()))
                })
                .unwrap_or_else(|| typed_error.to_string());
            Ok(Err(AdmissionResponse::from(&request).deny(format!(
                "the postgresql object does not fit the acid.zalan.do/v1 schema: {message}"
            ))))
        }
    }
}

fn check_envelope(types: &kube::core::TypeMeta) -> Result<(), BadRequest> {
    if types.api_version != "admission.k8s.io/v1" || types.kind != "AdmissionReview" {
        return Err(BadRequest::WrongType {
            api_version: types.api_version.clone(),
            kind: types.kind.clone(),
        });
    }
    Ok(())
}

/// Decides a parsed review.
pub fn decide(
    endpoint: Endpoint,
    review: AdmissionReview<Postgresql>,
    inputs: &Inputs<'_>,
) -> (AdmissionResponse, ReviewLabels) {
    let request: AdmissionRequest<Postgresql> = match review.try_into() {
        Ok(request) => request,
        Err(_) => {
            return (
                AdmissionResponse::invalid("AdmissionReview has no request"),
                labels("invalid", "none", "error"),
            );
        }
    };
    let response = AdmissionResponse::from(&request);
    let operation = match request.operation {
        KubeOperation::Create => Operation::Create,
        KubeOperation::Update => Operation::Update,
        KubeOperation::Delete => Operation::Delete,
        KubeOperation::Connect => return (response, labels("CONNECT", "none", "allowed")),
    };
    let op_label = format!("{:?}", request.operation).to_uppercase();
    let is_postgresql = request.kind.group == "acid.zalan.do" && request.kind.kind == "postgresql";
    if !is_postgresql {
        let message = format!(
            "this webhook only reviews postgresqls.acid.zalan.do, not {}/{} {}; fix the rules of the webhook configuration",
            request.kind.group, request.kind.version, request.kind.kind
        );
        return (response.deny(message), labels(&op_label, "kind", "denied"));
    }
    let ctx = Context {
        config: inputs.config,
        controller_id: inputs.controller_id,
        today: inputs.today,
    };
    let old = request.old_object.as_ref();
    let new = if operation == Operation::Delete {
        old
    } else {
        request.object.as_ref()
    };
    let Some(new) = new else {
        return (
            response.deny("the request carries no object"),
            labels(&op_label, "none", "error"),
        );
    };
    if !admission::is_responsible(&ctx, old, Some(new)) {
        return (response, labels(&op_label, "ownership", "skipped"));
    }
    match endpoint {
        Endpoint::Mutate => {
            let (mutated, warnings) = admission::mutate(&ctx, operation, new);
            let response = with_warnings(response, warnings);
            let before = serde_json::to_value(new).expect("objects serialize");
            let after = serde_json::to_value(&mutated).expect("objects serialize");
            let patch = json_patch::diff(&before, &after);
            if patch.0.is_empty() {
                return (response, labels(&op_label, "none", "allowed"));
            }
            match response.clone().with_patch(patch) {
                Ok(response) => (response, labels(&op_label, "none", "patched")),
                Err(e) => (
                    response.deny(format!("cannot encode the patch: {e}")),
                    labels(&op_label, "none", "error"),
                ),
            }
        }
        Endpoint::Validate => {
            let verdict =
                admission::validate(&ctx, operation, old, new, inputs.clone_source_version);
            let response = with_warnings(response, verdict.warnings.clone());
            match verdict.violations.first() {
                None => (response, labels(&op_label, "none", "allowed")),
                Some(first) => (
                    response.deny(verdict.message()),
                    labels(&op_label, first.rule, "denied"),
                ),
            }
        }
    }
}

fn with_warnings(mut response: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

fn labels(operation: &str, rule: &str, outcome: &str) -> ReviewLabels {
    ReviewLabels {
        operation: operation.to_string(),
        rule: rule.to_string(),
        outcome: outcome.to_string(),
    }
}

/// Serializes a response as the AdmissionReview the API server expects.
pub fn encode(response: AdmissionResponse) -> Vec<u8> {
    serde_json::to_vec(&response.into_review()).expect("admission reviews serialize")
}

/// Full pipeline for callers that already did any lookups: parse, decide, encode.
pub fn handle(endpoint: Endpoint, body: &[u8], inputs: &Inputs<'_>) -> Result<Answer, BadRequest> {
    let (response, labels) = match parse(body)? {
        Ok(review) => decide(endpoint, review, inputs),
        Err(denied) => (denied, labels("invalid", "schema", "denied")),
    };
    Ok(Answer {
        body: encode(response),
        labels,
    })
}
