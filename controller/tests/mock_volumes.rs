//! Volumes and the StatefulSet's replacement against the mock API server: exactly which calls a
//! reconcile makes when the claim template changes (an orphaning delete, no apply), when the
//! API server refuses an update in place, when claims must grow (the StorageClass read first),
//! when the manifest is smaller than the claims, and when a deleted cluster's pods still run.
//! The mock tier is described in `mock_api.rs`; each test uses its own namespace.

mod support;

use common::config::Config;
use common::crd::Postgresql;
use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt as _;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use std::time::Duration;
use support::{CLUSTER, Cached, Call, Calls, run, server};

fn sized(mut pg: Postgresql, size: &str) -> Postgresql {
    pg.spec.volume.size = size.into();
    pg
}

fn sts_path(ns: &str) -> String {
    format!("/apis/apps/v1/namespaces/{ns}/statefulsets/{CLUSTER}")
}

fn claim_path(ns: &str, i: usize) -> String {
    format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/pgdata-{CLUSTER}-{i}")
}

fn claim(ns: &str, i: usize, size: &str, class: &str) -> Cached {
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": format!("pgdata-{CLUSTER}-{i}"), "namespace": ns,
            "labels": {"application": "spilo", "cluster-name": CLUSTER, "team": "acid"}},
        "spec": {"storageClassName": class, "resources": {"requests": {"storage": size}}}
    }))
    .unwrap();
    Cached::Claim(claim)
}

fn writes(calls: &Calls) -> Vec<String> {
    calls
        .lines()
        .into_iter()
        .filter(|l| !l.starts_with("GET ") && !l.contains("/postgresqls/"))
        .collect()
}

/// A size change changes the claim template, which a StatefulSet cannot take in place: the
/// cached StatefulSet (its immutable-spec digest differs) is deleted with orphan propagation,
/// guarded by its uid, nothing is applied over it, and the reconcile comes back in a second.
#[tokio::test]
async fn a_changed_claim_template_deletes_the_statefulset_orphaning_its_pods() {
    let ns = "mock-vol-replace";
    let (pg, config, cached) = support::running(ns);
    let uid = cached
        .iter()
        .find_map(|c| match c {
            Cached::StatefulSet(s) => s.metadata.uid.clone(),
            _ => None,
        })
        .unwrap();
    let grown = sized(pg.clone(), "2Gi");
    let (result, calls) = run(grown.clone(), config, cached, server(&grown)).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(1)));
    assert_eq!(writes(&calls), [format!("DELETE {}", sts_path(ns))]);
    let delete = calls
        .api
        .iter()
        .find(|c| c.method == Method::DELETE)
        .unwrap();
    assert_eq!(delete.body()["propagationPolicy"], "Orphan");
    assert_eq!(delete.body()["preconditions"]["uid"], json!(uid));
    calls.expect_event(
        "Normal",
        "Replacing",
        &format!("StatefulSet {CLUSTER} is replaced: spec.volumeClaimTemplates changed"),
    );
}

/// While the old StatefulSet terminates nothing is written over it; once it is gone the new one
/// is created by the usual apply.
#[tokio::test]
async fn a_terminating_statefulset_is_waited_for_then_created_again() {
    let ns = "mock-vol-terminating";
    let (pg, config, mut cached) = support::running(ns);
    support::edit_statefulset(&mut cached, |sts| {
        sts.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    });
    let grown = sized(pg.clone(), "2Gi");
    let (result, calls) = run(grown.clone(), config.clone(), cached, server(&grown)).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(1)));
    assert_eq!(writes(&calls), Vec::<String>::new());

    let mut gone = support::written_children(&config, &pg);
    gone.retain(|c| !matches!(c, Cached::StatefulSet(_)));
    let (result, calls) = run(grown.clone(), config, gone, server(&grown)).await;
    result.unwrap();
    assert_eq!(writes(&calls), [format!("PATCH {}", sts_path(ns))]);
    let apply = calls.api.iter().find(|c| c.path == sts_path(ns)).unwrap();
    assert!(apply.is_forced_apply());
    assert_eq!(
        apply.body()["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "2Gi"
    );
}

/// A StatefulSet without the digest (another operator's) is applied; when the API server
/// refuses that as an update of an immutable field, it is replaced.
#[tokio::test]
async fn an_update_refused_in_place_replaces_the_statefulset() {
    let ns = "mock-vol-refused";
    let (pg, config, mut cached) = support::running(ns);
    support::edit_statefulset(&mut cached, |sts| {
        sts.annotations_mut().remove(controller::replace::IMMUTABLE);
        sts.annotations_mut()
            .insert(controller::apply::APPLIED_HASH.into(), "other".into());
    });
    let mut fallback = server(&pg);
    let path = sts_path(ns);
    let respond = move |call: &Call| {
        if call.method == Method::PATCH && call.path == path {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Invalid", "code": 422,
                    "message": format!("StatefulSet.apps \"{CLUSTER}\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")}),
            );
        }
        fallback(call)
    };
    let (result, calls) = run(pg.clone(), config, cached, respond).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(1)));
    assert_eq!(
        writes(&calls),
        [
            format!("PATCH {}", sts_path(ns)),
            format!("DELETE {}", sts_path(ns))
        ]
    );
    let delete = calls
        .api
        .iter()
        .find(|c| c.method == Method::DELETE)
        .unwrap();
    assert_eq!(delete.body()["propagationPolicy"], "Orphan");
    assert!(calls.sent_events().iter().any(|e| {
        e.reason == "Replacing"
            && e.note
                .contains("the API server refused to update it in place")
    }));
}

fn storage_class(allow: Option<bool>) -> Value {
    json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "standard"}, "provisioner": "kubernetes.io/host-path",
        "allowVolumeExpansion": allow})
}

/// Claims smaller than the manifest grow (a merge patch of the requested storage, canonical),
/// once their StorageClass is read and allows expansion; one Event per claim.
#[tokio::test]
async fn smaller_claims_grow_when_their_class_allows_expansion() {
    let ns = "mock-vol-grow";
    let config = Config::default();
    let pg = sized(support::running_cluster(ns), "2048Mi");
    let mut cached = support::written_children(&config, &pg);
    cached.push(claim(ns, 0, "1Gi", "standard"));
    cached.push(claim(ns, 1, "1Gi", "standard"));
    let mut fallback = server(&pg);
    let respond = move |call: &Call| {
        if call.method == Method::GET && call.path.ends_with("/storageclasses/standard") {
            return (StatusCode::OK, storage_class(Some(true)));
        }
        if call.method == Method::PATCH && call.path.contains("/persistentvolumeclaims/") {
            return (
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "x"}}),
            );
        }
        fallback(call)
    };
    let (result, calls) = run(pg.clone(), config.clone(), cached, respond).await;
    assert_eq!(result.unwrap(), Action::requeue(config.resync_period()));
    assert_eq!(
        calls.lines(),
        [
            "GET /apis/storage.k8s.io/v1/storageclasses/standard".to_string(),
            format!("PATCH {}", claim_path(ns, 0)),
            format!("PATCH {}", claim_path(ns, 1)),
        ]
    );
    for call in &calls.api[1..] {
        assert!(call.is_merge_patch());
        assert_eq!(
            call.body(),
            &json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}})
        );
    }
    let notes: Vec<_> = calls
        .sent_events()
        .into_iter()
        .filter(|e| e.reason == "VolumeResized")
        .map(|e| e.note)
        .collect();
    assert_eq!(
        notes,
        [
            format!(
                "persistent volume claim pgdata-{CLUSTER}-0 grows from 1Gi to 2Gi (spec.volume.size)"
            ),
            format!(
                "persistent volume claim pgdata-{CLUSTER}-1 grows from 1Gi to 2Gi (spec.volume.size)"
            ),
        ]
    );
}

/// A StorageClass without `allowVolumeExpansion`: no patch the API server would refuse, a
/// Warning naming the class; `storage_resize_mode: off` does not even read the class.
#[tokio::test]
async fn a_class_without_expansion_is_named_and_nothing_is_patched() {
    let ns = "mock-vol-noexpand";
    let config = Config::default();
    let pg = sized(support::running_cluster(ns), "2Gi");
    let mut cached = support::written_children(&config, &pg);
    cached.push(claim(ns, 0, "1Gi", "standard"));
    let mut fallback = server(&pg);
    let respond = move |call: &Call| {
        if call.method == Method::GET && call.path.ends_with("/storageclasses/standard") {
            return (StatusCode::OK, storage_class(None));
        }
        fallback(call)
    };
    let (result, calls) = run(pg.clone(), config.clone(), cached.clone(), respond).await;
    result.unwrap();
    assert_eq!(
        calls.lines(),
        ["GET /apis/storage.k8s.io/v1/storageclasses/standard"]
    );
    calls.expect_event(
        "Warning",
        "VolumeExpansionNotAllowed",
        "StorageClass standard does not allow volume expansion",
    );

    let mut off = config.clone();
    off.kubernetes.storage_resize_mode = "off".into();
    let ns2 = "mock-vol-off";
    let pg = sized(support::running_cluster(ns2), "2Gi");
    let mut cached = support::written_children(&off, &pg);
    cached.push(claim(ns2, 0, "1Gi", "standard"));
    let (result, calls) = run(pg.clone(), off, cached, server(&pg)).await;
    result.unwrap();
    assert_eq!(calls.lines(), Vec::<String>::new());
}

/// A manifest smaller than the claims (the webhook bypassed): nothing shrinks, the claim
/// template keeps the largest claim's size (so the StatefulSet stays as it is), and a Warning
/// names spec.volume.size and both sizes.
#[tokio::test]
async fn a_manifest_smaller_than_the_claims_shrinks_nothing() {
    let ns = "mock-vol-shrink";
    let config = Config::default();
    let pg = support::running_cluster(ns);
    let cached_pg = sized(pg.clone(), "2Gi");
    let mut cached = support::written_children(&config, &cached_pg);
    cached.push(claim(ns, 0, "2Gi", "standard"));
    let (result, calls) = run(pg.clone(), config.clone(), cached, server(&pg)).await;
    assert_eq!(result.unwrap(), Action::requeue(config.resync_period()));
    assert_eq!(calls.lines(), Vec::<String>::new());
    calls.expect_event(
        "Warning",
        "VolumeShrinkRefused",
        "spec.volume.size: cannot shrink the volume from 2Gi to 1Gi",
    );
}

/// A deleted cluster (with the finalizer) whose pods still run: its children are deleted, but
/// Patroni's objects and the finalizer stay until the pods are gone; the reconcile comes back.
#[tokio::test]
async fn a_deleted_cluster_keeps_its_finalizer_while_its_pods_run() {
    let ns = "mock-vol-pods-remain";
    let (pg, config) = support::deleted(ns);
    let cached = support::written_children(&config, &pg);
    let (result, calls) = run(pg.clone(), config, cached, server(&pg)).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(2)));
    let lines = calls.lines();
    assert!(
        !lines.iter().any(|l| l.contains("/configmaps")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("/postgresqls/")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("GET ") && l.ends_with("/statefulsets"))
    );
}

/// With owner references the garbage collector removes the owned children; the controller
/// deletes only what it never owns: the claims (with `enable_persistent_volume_claim_deletion`)
/// and, its pods gone, Patroni's ConfigMaps — no delete annotations needed, as in Zalando.
#[tokio::test]
async fn with_owner_references_only_claims_and_patroni_objects_are_deleted() {
    let ns = "mock-vol-owned";
    let (pg, mut config) = support::deleted(ns);
    config.kubernetes.enable_owner_references = true;
    let mut cached = support::written_children(&config, &pg);
    cached.retain(|c| !matches!(c, Cached::Pod(_)));
    let labels = json!({"application": "spilo", "cluster-name": CLUSTER});
    let claims = json!([{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": format!("pgdata-{CLUSTER}-0"), "namespace": ns, "labels": labels}}]);
    let maps: Vec<Value> = ["leader", "config", "sync", "failover", "other"]
        .iter()
        .map(|s| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("{CLUSTER}-{s}"), "namespace": ns, "labels": labels}})
        })
        .collect();
    let mut fallback = server(&pg);
    let respond = move |call: &Call| {
        if call.method == Method::GET && call.path.ends_with("/persistentvolumeclaims") {
            return (
                StatusCode::OK,
                support::list(claims.as_array().unwrap().clone()),
            );
        }
        if call.method == Method::GET && call.path.ends_with("/configmaps") {
            return (StatusCode::OK, support::list(maps.clone()));
        }
        fallback(call)
    };
    let (result, calls) = run(pg.clone(), config, cached, respond).await;
    assert_eq!(result.unwrap(), Action::await_change());
    let core = format!("/api/v1/namespaces/{ns}");
    let mut expected = vec![
        format!("GET {core}/persistentvolumeclaims"),
        format!("DELETE {core}/persistentvolumeclaims/pgdata-{CLUSTER}-0"),
        format!("GET {core}/configmaps"),
    ];
    for s in ["leader", "config", "sync", "failover"] {
        expected.push(format!("DELETE {core}/configmaps/{CLUSTER}-{s}"));
    }
    expected.push(format!(
        "PATCH /apis/acid.zalan.do/v1/namespaces/{ns}/postgresqls/{CLUSTER}"
    ));
    assert_eq!(calls.lines(), expected);
}
