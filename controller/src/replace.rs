//! Replacing the StatefulSet when a change cannot be made in place.
//!
//! The API server refuses updates to a StatefulSet's `selector`, `serviceName`,
//! `podManagementPolicy` and `volumeClaimTemplates` (a volume size change included) with a 422
//! "updates to statefulset spec for fields other than ... are forbidden". Zalando then deletes
//! the StatefulSet with orphan propagation and creates it again; the new one adopts the running
//! pods (same labels, same names), so no pod restarts. This does the same, without blocking a
//! worker: the delete is sent, the reconcile comes back while the StatefulSet is terminating
//! (the garbage collector first takes its owner reference off the pods and claims) and creates
//! the new one once it is gone. Only ever `Orphan`: the pods, and with them the database, must
//! survive the replacement; the delete carries the uid seen, so it never hits a replacement.
//!
//! **How a replacement is detected** without keeping the claim templates in the cache (the
//! StatefulSet cache keeps no pod or claim template, [`crate::stores`]): the StatefulSet carries
//! [`IMMUTABLE`], one short digest per immutable part of the spec as built. A desired
//! StatefulSet whose digests differ from the cached one's is replaced, and the Event names the
//! parts that changed. A StatefulSet without the annotation (written by Zalando's operator or an
//! older version of this one) is applied as usual; if the API server refuses it as above
//! ([`refused_in_place`]), it is replaced then — so taking a cluster over replaces nothing
//! unless something immutable really differs. Digests of what we build, not of the live object:
//! the server adds defaults to the live one (a claim template's `status`), and a digest changes
//! only with our own desired state.

use crate::context::Context;
use crate::events::{Event, Kind};
use common::crd::Postgresql;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The StatefulSet annotation with a digest of each immutable part of its spec.
pub const IMMUTABLE: &str = "postgres-operator.acid.zalan.do/immutable-spec";

/// The parts of a StatefulSet spec the API server does not let change, by their JSON names.
pub const PARTS: [&str; 4] = [
    "selector",
    "serviceName",
    "podManagementPolicy",
    "volumeClaimTemplates",
];

/// How soon a reconcile looks again while the old StatefulSet is terminating (the garbage
/// collector orphans the pods within a second or two).
pub const WAIT: Duration = Duration::from_secs(1);

fn part_digest(value: Option<&Value>) -> String {
    let digest = crate::apply::digest(value.unwrap_or(&Value::Null));
    digest[..12].to_string()
}

/// The [`IMMUTABLE`] value of `spec`: `part=digest` pairs in [`PARTS`] order.
pub fn fingerprint(spec: &StatefulSetSpec) -> String {
    let value = serde_json::to_value(spec).unwrap_or(Value::Null);
    PARTS
        .iter()
        .map(|part| format!("{part}={}", part_digest(value.get(*part))))
        .collect::<Vec<_>>()
        .join(",")
}

/// Puts the [`IMMUTABLE`] annotation of its spec on `sts` (after any change of the spec).
pub fn stamp(sts: &mut StatefulSet) {
    let Some(spec) = &sts.spec else {
        return;
    };
    let value = fingerprint(spec);
    sts.annotations_mut().insert(IMMUTABLE.into(), value);
}

fn parse(annotation: &str) -> BTreeMap<&str, &str> {
    annotation
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .collect()
}

/// The parts whose digests differ between two [`IMMUTABLE`] values, as `spec.<part>` paths; a
/// part missing on either side counts as changed.
pub fn changed_parts(cached: &str, desired: &str) -> Vec<String> {
    let (cached, desired) = (parse(cached), parse(desired));
    PARTS
        .iter()
        .filter(|part| cached.get(*part) != desired.get(*part) || !desired.contains_key(*part))
        .map(|part| format!("spec.{part}"))
        .collect()
}

/// What to do with the desired StatefulSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write it (create, or apply over the cached one).
    Apply,
    /// The cached one is being deleted: write nothing until it is gone.
    Wait,
    /// Delete the cached one, orphaning its pods, because these parts changed.
    Replace(Vec<String>),
}

/// Decides from the cached StatefulSet (which keeps its annotations) and the desired one.
pub fn decide(cached: Option<&StatefulSet>, desired: &StatefulSet) -> Decision {
    let Some(cached) = cached else {
        return Decision::Apply;
    };
    if cached.metadata.deletion_timestamp.is_some() {
        return Decision::Wait;
    }
    let (Some(old), Some(new)) = (
        cached.annotations().get(IMMUTABLE),
        desired.annotations().get(IMMUTABLE),
    ) else {
        // Not written by this operator (or by an older version): the API server tells.
        return Decision::Apply;
    };
    let changed = changed_parts(old, new);
    if changed.is_empty() {
        Decision::Apply
    } else {
        Decision::Replace(changed)
    }
}

/// Whether an apply failed because the StatefulSet cannot take the change in place.
pub fn refused_in_place(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status)
        if status.code == 422
            && status.message.contains("updates to statefulset spec for fields other than"))
}

/// The Event's note for a replacement.
pub fn note(name: &str, why: &str) -> String {
    format!(
        "StatefulSet {name} is replaced: {why}, which a StatefulSet cannot take in place; it is deleted with orphan propagation and created again, and the new one adopts the running pods (none restarts)"
    )
}

/// Why replacing failed.
#[derive(Debug, thiserror::Error)]
#[error("replacing StatefulSet {name}: {source}")]
pub struct Error {
    /// The StatefulSet.
    pub name: String,
    /// The API error.
    #[source]
    pub source: kube::Error,
}

/// Looks at the cached StatefulSet before `desired` is written and deletes it when it must be
/// replaced. Returns `Some(wait)` when `desired` must not be written now.
pub async fn prepare(
    ctx: &Context,
    pg: &Postgresql,
    desired: &StatefulSet,
) -> Result<Option<Duration>, Error> {
    let namespace = pg.namespace().unwrap_or_default();
    let key = ObjectRef::new(&desired.name_any()).within(&namespace);
    let cached = ctx.stores.statefulsets.get(&key);
    match decide(cached.as_deref(), desired) {
        Decision::Apply => Ok(None),
        Decision::Wait => Ok(Some(WAIT)),
        Decision::Replace(parts) => {
            let why = format!("{} changed", parts.join(", "));
            if let Some(cached) = cached {
                delete(ctx, pg, &cached, &why).await?;
            }
            Ok(Some(WAIT))
        }
    }
}

/// Deletes `cached` with orphan propagation (only that object: the uid is a precondition) and
/// says why in an Event.
pub async fn delete(
    ctx: &Context,
    pg: &Postgresql,
    cached: &StatefulSet,
    why: &str,
) -> Result<(), Error> {
    let name = cached.name_any();
    let api: Api<StatefulSet> =
        Api::namespaced(ctx.client.clone(), &pg.namespace().unwrap_or_default());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: cached.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::orphan()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {}
        // Gone already, or a newer one (its uid differs): the next reconcile decides again.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => return Ok(()),
        Err(source) => return Err(Error { name, source }),
    }
    ctx.metrics.wrote("statefulsets");
    let note = note(&name, why);
    tracing::info!(cluster = %pg.name_any(), "{note}");
    let event = Event {
        kind: Kind::Normal,
        reason: "Replacing".into(),
        note,
        action: "Replace".into(),
        related: Some(cached.object_ref(&())),
    };
    ctx.events.publish(pg.object_ref(&()), event);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sts(size: &str, class: Option<&str>) -> StatefulSet {
        let mut sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "acid-a", "namespace": "ns"},
            "spec": {
                "selector": {"matchLabels": {"cluster-name": "acid-a"}},
                "serviceName": "acid-a",
                "podManagementPolicy": "OrderedReady",
                "replicas": 2,
                "template": {"spec": {"containers": [{"name": "postgres"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "pgdata"},
                    "spec": {"resources": {"requests": {"storage": size}}, "storageClassName": class}}]
            }
        }))
        .unwrap();
        stamp(&mut sts);
        sts
    }

    #[test]
    fn the_fingerprint_covers_only_the_immutable_parts() {
        let base = sts("1Gi", None);
        let value = base.annotations()[IMMUTABLE].clone();
        assert_eq!(value.split(',').count(), 4);
        assert!(value.starts_with("selector="));
        let mut scaled = base.clone();
        scaled.spec.as_mut().unwrap().replicas = Some(3);
        scaled.spec.as_mut().unwrap().template = Default::default();
        stamp(&mut scaled);
        assert_eq!(scaled.annotations()[IMMUTABLE], value);
        assert_eq!(decide(Some(&base), &scaled), Decision::Apply);
    }

    #[test]
    fn a_size_or_class_change_replaces_and_names_the_part() {
        let base = sts("1Gi", None);
        assert_eq!(
            decide(Some(&base), &sts("2Gi", None)),
            Decision::Replace(vec!["spec.volumeClaimTemplates".into()])
        );
        assert_eq!(
            decide(Some(&base), &sts("1Gi", Some("slow"))),
            Decision::Replace(vec!["spec.volumeClaimTemplates".into()])
        );
        let mut other = sts("1Gi", None);
        other.spec.as_mut().unwrap().pod_management_policy = Some("Parallel".into());
        other.spec.as_mut().unwrap().service_name = Some("other".into());
        stamp(&mut other);
        assert_eq!(
            decide(Some(&base), &other),
            Decision::Replace(vec![
                "spec.serviceName".into(),
                "spec.podManagementPolicy".into()
            ])
        );
    }

    #[test]
    fn create_wait_and_takeover() {
        let desired = sts("2Gi", None);
        assert_eq!(decide(None, &desired), Decision::Apply);
        let mut terminating = sts("1Gi", None);
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(decide(Some(&terminating), &desired), Decision::Wait);
        // Written by Zalando's operator: applied, and replaced only if the server refuses.
        let mut foreign = sts("1Gi", None);
        foreign.annotations_mut().remove(IMMUTABLE);
        assert_eq!(decide(Some(&foreign), &desired), Decision::Apply);
        // A damaged annotation is a change of every part it lacks.
        let mut damaged = sts("2Gi", None);
        damaged
            .annotations_mut()
            .insert(IMMUTABLE.into(), "garbage".into());
        assert_eq!(
            decide(Some(&damaged), &desired),
            Decision::Replace(PARTS.iter().map(|p| format!("spec.{p}")).collect())
        );
    }

    #[test]
    fn only_the_immutable_field_refusal_counts() {
        let error = |code: u16, message: &str| {
            kube::Error::Api(
                kube::core::Status::failure(message, "Invalid")
                    .with_code(code)
                    .boxed(),
            )
        };
        assert!(refused_in_place(&error(
            422,
            "StatefulSet.apps \"acid-a\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
        )));
        assert!(!refused_in_place(&error(
            422,
            "spec.replicas: Invalid value: -1"
        )));
        assert!(!refused_in_place(&error(
            409,
            "updates to statefulset spec for fields other than"
        )));
    }

    #[test]
    fn the_note_says_why_and_that_pods_stay() {
        let note = note("acid-a", "spec.volumeClaimTemplates changed");
        assert!(
            note.starts_with("StatefulSet acid-a is replaced: spec.volumeClaimTemplates changed,")
        );
        assert!(note.contains("orphan propagation") && note.contains("none restarts"));
    }
}
