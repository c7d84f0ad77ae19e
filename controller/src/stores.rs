//! Caches of the children, narrowed to the operator's objects by label, feeding both the
//! reconciler (which reads them instead of the API) and the controller's triggers.

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

/// Read handles of every child cache.
#[derive(Clone)]
pub struct Stores {
    /// StatefulSets with the cluster labels.
    pub statefulsets: Store<StatefulSet>,
    /// Services with the cluster labels.
    pub services: Store<Service>,
    /// Endpoints with the cluster labels.
    pub endpoints: Store<Endpoints>,
    /// Secrets with the cluster labels (never all Secrets of the cluster).
    pub secrets: Store<Secret>,
    /// PodDisruptionBudgets with the cluster labels.
    pub pdbs: Store<PodDisruptionBudget>,
    /// Pod ServiceAccounts (by name).
    pub service_accounts: Store<ServiceAccount>,
    /// Pod RoleBindings (by name).
    pub role_bindings: Store<RoleBinding>,
}

impl Stores {
    /// Whether every cache has finished its initial list.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.statefulsets.wait_until_ready().await?;
        self.services.wait_until_ready().await?;
        self.endpoints.wait_until_ready().await?;
        self.secrets.wait_until_ready().await?;
        self.pdbs.wait_until_ready().await?;
        self.service_accounts.wait_until_ready().await?;
        self.role_bindings.wait_until_ready().await
    }
}

/// A `key=value,...` label selector.
pub fn selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A reflector over `api` with `config`: the store to read and the stream of changed objects
/// that must be polled for the store to fill.
pub fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send,
)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    // managedFields are often larger than the object itself and never read here: drop them
    // before caching, which shrinks the controller's memory at 1 000 clusters considerably.
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|object| object.managed_fields_mut().clear());
    let stream = reflector::reflector(writer, stream).touched_objects();
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
