//! The caches' machinery: what a cache keeps of an object ([`Slim`]), a reflector that drops the
//! controller's own echoes, and the helpers the children table ([`crate::children`]) builds its
//! caches and triggers from.

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

/// A `key=value,...` label selector.
pub fn selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The annotation `kubectl apply` keeps a copy of the whole object in; never read here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What a cache keeps of an object: only what the controller reads. At 1 000 clusters the
/// caches hold about 11 000 objects, so this decides most of the controller's memory.
pub trait Slim {
    /// Drops what the controller never reads.
    fn slim(&mut self);
}

/// Keeps who wrote the object when (without the field sets, which are larger than most objects;
/// status writers are never drift), and drops kubectl's copy of the object.
fn slim_meta(meta: &mut ObjectMeta) {
    if let Some(entries) = &mut meta.managed_fields {
        entries.retain(|e| e.subresource.as_deref() != Some("status"));
        for entry in entries.iter_mut() {
            entry.fields_v1 = None;
        }
    }
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
    }
}

/// The StatefulSet is compared by the hash annotation it was applied with
/// ([`crate::apply::Compare::Hash`]), so its pod template, by far the largest part of any child,
/// is not kept; replicas and status are (they tell whether the pods are ready).
impl Slim for StatefulSet {
    fn slim(&mut self) {
        slim_meta(&mut self.metadata);
        if let Some(spec) = &mut self.spec {
            spec.template = Default::default();
            spec.volume_claim_templates = None;
        }
    }
}

/// Of a Secret's data only the credentials and the next rotation date are kept, which the
/// database sync reads (a Secret is the source of truth of its role's password) and password
/// rotation decides on.
impl Slim for Secret {
    fn slim(&mut self) {
        slim_meta(&mut self.metadata);
        if let Some(data) = &mut self.data {
            data.retain(|k, _| {
                k == "username" || k == "password" || k == common::database::rotation::NEXT_ROTATION
            });
        }
        self.string_data = None;
    }
}

/// Patroni keeps the addresses; the controller owns only the metadata.
impl Slim for Endpoints {
    fn slim(&mut self) {
        slim_meta(&mut self.metadata);
        self.subsets = None;
    }
}

macro_rules! slim_metadata_only {
    ($($kind:ty),*) => {$(
        impl Slim for $kind {
            fn slim(&mut self) {
                slim_meta(&mut self.metadata);
            }
        }
    )*};
}
slim_metadata_only!(
    Service,
    PodDisruptionBudget,
    ServiceAccount,
    RoleBinding,
    common::crd::Postgresql
);

/// A reflector over `api` with `config`: the store to read and the stream of objects that should
/// trigger a reconcile, which must be polled for the store to fill. The controller's own writes
/// coming back through the watch are not in that stream ([`crate::apply::is_echo`]): the
/// reconcile that made them has already accounted for them.
pub fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send,
)
where
    K: Resource + Slim + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|object| object.slim());
    let stream = reflector::reflector(writer, stream).filter_map(|event| async move {
        match event {
            Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                (!crate::apply::is_echo(&object)).then_some(Ok(object))
            }
            Ok(watcher::Event::Delete(object)) => Some(Ok(object)),
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            Err(error) => Some(Err(error)),
        }
    });
    (reader, stream)
}

/// Api over all namespaces or one.
pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The cluster a child belongs to, from its cluster-name label.
pub fn owner_of<K: Resource>(
    child: &K,
    cluster_name_label: &str,
) -> Option<ObjectRef<common::crd::Postgresql>> {
    let meta = child.meta();
    let name = meta.labels.as_ref()?.get(cluster_name_label)?;
    Some(ObjectRef::new(name).within(meta.namespace.as_deref()?))
}

/// Drives a stream for its side effect (filling a store) until it ends.
pub async fn drain<S: Stream + Send>(stream: S) {
    stream.for_each(|_| async {}).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    #[test]
    fn a_slim_statefulset_keeps_what_the_reconciler_reads() {
        let mut sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "acid-a", "labels": {"cluster-name": "acid-a"},
                "annotations": {LAST_APPLIED: "{...}", "postgres-operator.acid.zalan.do/applied-hash": "h"},
                "managedFields": [
                    {"manager": "postgres-operator", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}},
                    {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {}}}]},
            "spec": {"replicas": 2, "selector": {}, "serviceName": "acid-a",
                "template": {"spec": {"containers": [{"name": "postgres", "image": "spilo"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "pgdata"}}]},
            "status": {"replicas": 2, "readyReplicas": 1}
        }))
        .unwrap();
        sts.slim();
        let StatefulSet {
            metadata,
            spec:
                Some(StatefulSetSpec {
                    replicas,
                    template,
                    volume_claim_templates,
                    ..
                }),
            status: Some(StatefulSetStatus { ready_replicas, .. }),
        } = sts
        else {
            panic!("spec and status are kept")
        };
        assert_eq!((replicas, ready_replicas), (Some(2), Some(1)));
        assert_eq!(template, Default::default());
        assert_eq!(volume_claim_templates, None);
        let annotations = metadata.annotations.unwrap();
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert!(annotations.contains_key("postgres-operator.acid.zalan.do/applied-hash"));
        assert_eq!(
            metadata.managed_fields,
            Some(vec![ManagedFieldsEntry {
                manager: Some("postgres-operator".into()),
                operation: Some("Apply".into()),
                fields_type: Some("FieldsV1".into()),
                fields_v1: None::<FieldsV1>,
                ..Default::default()
            }])
        );
    }

    #[test]
    fn slim_secrets_keep_credentials_and_endpoints_metadata_only() {
        let mut secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "labels": {"a": "b"}}, "data": {"password": "eA==", "other": "eA=="}}))
        .unwrap();
        secret.slim();
        assert_eq!(secret.data.as_ref().map(|d| d.len()), Some(1));
        let mut rotated: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s"}, "data": {"username": "eA==", "password": "eA==", "nextRotation": "eA=="}}))
        .unwrap();
        rotated.slim();
        assert_eq!(rotated.data.as_ref().map(|d| d.len()), Some(3));
        assert_eq!(secret.metadata.labels.unwrap()["a"], "b");
        let mut endpoints: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "127.10.0.1"}]}]}))
        .unwrap();
        endpoints.slim();
        assert_eq!(endpoints.subsets, None);
    }
}
