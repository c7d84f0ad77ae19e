//! What the table's generated code does for one kind: write a child, delete the orphans, delete
//! with the cluster. Generic over the kind, so every kind is handled by the same code.

use super::{ChildKind, Write};
use crate::apply::{self, FIELD_MANAGER, Outcome};
use crate::context::Context;
use crate::events::{Event, Kind};
use crate::reconcile::Error;
use common::crd::Postgresql;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams};
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// What every kind must be for the generic code.
pub trait ChildObject:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Serialize
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> ChildObject for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

/// Writes one desired child as its kind says, when the cache shows it differs.
pub async fn write<K: ChildObject>(
    ctx: &Context,
    changes: &Changes,
    store: &Store<K>,
    desired: &K,
    how: Write,
) -> Result<(), Error> {
    let namespace = desired.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let kind = K::kind(&());
    let outcome = match how {
        Write::Apply(compare) => apply::ensure(&api, store, desired, compare)
            .await
            .map_err(api_error(format!("applying {kind} {}", desired.name_any())))?,
        Write::CreateOnly => apply::create_if_absent(&api, store, desired)
            .await
            .map_err(api_error(format!("creating {kind} {}", desired.name_any())))?,
    };
    changes.report(ctx, desired, outcome);
    Ok(())
}

/// Deletes the cached objects of one kind that belong to `pg`, were applied by this controller
/// and are no longer desired. Objects written by others (Patroni's own Endpoints carry the
/// cluster labels too) are never touched.
pub async fn delete_orphans<K: ChildObject>(
    ctx: &Context,
    changes: &Changes,
    store: &Store<K>,
    pg: &Postgresql,
    desired: &[K],
) -> Result<(), Error> {
    let config = ctx.config.load();
    let label = &config.config.kubernetes.cluster_name_label;
    let namespace = pg.metadata.namespace.as_deref().unwrap_or_default();
    let wanted = |name: Option<&str>| desired.iter().any(|d| d.meta().name.as_deref() == name);
    // Compared in place, without copying names: this runs over the whole cache of the kind.
    let orphans: Vec<_> = store
        .state()
        .into_iter()
        .filter(|o| {
            let meta = o.meta();
            meta.namespace.as_deref() == Some(namespace)
                && meta
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(label))
                    .map(String::as_str)
                    == Some(pg.cluster_name())
                && applied_by_us(meta)
                && !wanted(meta.name.as_deref())
        })
        .collect();
    for orphan in orphans {
        let name = orphan.name_any();
        let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(Error::Api {
                    what: format!("deleting {} {name}, no longer wanted", K::kind(&())),
                    source,
                });
            }
        }
        changes.report(ctx, orphan.as_ref(), Outcome::Deleted);
    }
    Ok(())
}

/// Whether the orphans of `pg` need looking for: objects only stop being wanted when the spec
/// (its generation) or the configuration changes, so a cluster is scanned once per such change
/// (and once after a start), not on every reconcile — a scan walks every object of the kind.
pub fn orphans_may_exist(pg: &Postgresql, config: &std::sync::Arc<common::config::Loaded>) -> bool {
    let key = pg.metadata.uid.clone().unwrap_or_else(|| pg.name_any());
    let seen = (
        pg.metadata.generation.unwrap_or_default(),
        std::sync::Arc::as_ptr(config) as usize,
    );
    scanned().get(&key) != Some(&seen)
}

/// Records that the orphans of `pg` were removed for its generation and `config`.
pub fn orphans_removed(pg: &Postgresql, config: &std::sync::Arc<common::config::Loaded>) {
    let key = pg.metadata.uid.clone().unwrap_or_else(|| pg.name_any());
    let seen = (
        pg.metadata.generation.unwrap_or_default(),
        std::sync::Arc::as_ptr(config) as usize,
    );
    scanned().insert(key, seen);
}

type Scanned = std::collections::HashMap<String, (i64, usize)>;

fn scanned() -> std::sync::MutexGuard<'static, Scanned> {
    static SCANNED: std::sync::LazyLock<std::sync::Mutex<Scanned>> =
        std::sync::LazyLock::new(Default::default);
    SCANNED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether the controller's server-side apply owns fields of the object.
fn applied_by_us(meta: &kube::core::ObjectMeta) -> bool {
    meta.managed_fields.iter().flatten().any(|e| {
        e.manager.as_deref() == Some(FIELD_MANAGER) && e.operation.as_deref() == Some("Apply")
    })
}

/// Deletes every object of kind `K` in the cluster's namespace carrying its labels.
pub async fn delete_labelled<K: ChildObject>(
    ctx: &Context,
    pg: &Postgresql,
    labels: &str,
) -> kube::Result<()> {
    delete_matching::<K>(ctx, pg, labels, |_| true).await
}

/// Deletes the objects of kind `K` in the cluster's namespace that carry its labels and have one
/// of `names` (objects others made for the cluster, such as Patroni's).
pub async fn delete_named<K: ChildObject>(
    ctx: &Context,
    pg: &Postgresql,
    labels: &str,
    names: &[String],
) -> kube::Result<()> {
    delete_matching::<K>(ctx, pg, labels, |name| names.iter().any(|n| n == name)).await
}

async fn delete_matching<K: ChildObject>(
    ctx: &Context,
    pg: &Postgresql,
    labels: &str,
    wanted: impl Fn(&str) -> bool,
) -> kube::Result<()> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &pg.namespace().unwrap_or_default());
    let kind = DeletedKind {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        plural: K::plural(&()).into_owned(),
    };
    for object in api.list(&ListParams::default().labels(labels)).await? {
        if wanted(&object.name_any()) {
            delete_one(ctx, pg, &api, &object, &kind).await?;
        }
    }
    Ok(())
}

/// [`delete_labelled`] for a kind without a Rust type in the table ([`super::EXTRA`]).
pub async fn delete_extra(
    ctx: &Context,
    pg: &Postgresql,
    kind: &ChildKind,
    labels: &str,
) -> kube::Result<()> {
    let resource = ApiResource {
        group: kind.group.into(),
        version: "v1".into(),
        api_version: if kind.group.is_empty() {
            "v1".into()
        } else {
            format!("{}/v1", kind.group)
        },
        kind: kind.kind.into(),
        plural: kind.resource.into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &pg.namespace().unwrap_or_default(),
        &resource,
    );
    let names = DeletedKind {
        api_version: resource.api_version.clone(),
        kind: kind.kind.into(),
        plural: kind.resource.into(),
    };
    for object in api.list(&ListParams::default().labels(labels)).await? {
        delete_one(ctx, pg, &api, &object, &names).await?;
    }
    Ok(())
}

/// How a deleted object is named in its Event and metrics.
struct DeletedKind {
    api_version: String,
    kind: String,
    plural: String,
}

async fn delete_one<K>(
    ctx: &Context,
    pg: &Postgresql,
    api: &Api<K>,
    object: &K,
    names: &DeletedKind,
) -> kube::Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let name = object.name_any();
    let meta = object.meta();
    let kind = &names.kind;
    let related = ObjectReference {
        api_version: Some(names.api_version.clone()),
        kind: Some(kind.clone()),
        name: Some(name.clone()),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    };
    match api.delete(&name, &DeleteParams::background()).await {
        Ok(_) => {
            ctx.metrics.wrote(&names.plural);
            let event = Event {
                kind: Kind::Normal,
                reason: "Deleted".into(),
                note: format!("{kind} {name} deleted"),
                action: "Delete".into(),
                related: Some(related),
            };
            ctx.events.publish(pg.object_ref(&()), event);
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

/// Children created, updated or deleted by one reconcile, for one Event per kind of change that
/// names them all: at 1 000 clusters created at once, one Event per child would be as many API
/// writes again as the children themselves.
#[derive(Default)]
pub struct Changes(std::sync::Mutex<Vec<(Outcome, String)>>);

impl Changes {
    /// Counts a write and notes the child for the reconcile's Event.
    pub fn report<K: Resource<DynamicType = ()>>(
        &self,
        ctx: &Context,
        child: &K,
        outcome: Outcome,
    ) {
        if outcome == Outcome::Unchanged {
            return;
        }
        ctx.metrics.wrote(&K::plural(&()));
        let kind = K::kind(&()).to_string();
        let name = child.name_any();
        tracing::info!(%kind, %name, ?outcome, "child written");
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((outcome, format!("{kind} {name}")));
    }

    /// Publishes one Event per kind of change.
    pub fn publish(self, ctx: &Context, pg: &Postgresql) {
        let changes = self.0.into_inner().unwrap_or_else(|p| p.into_inner());
        for (outcome, reason, action) in [
            (Outcome::Created, "Created", "Create"),
            (Outcome::Updated, "Updated", "Update"),
            (Outcome::Deleted, "Deleted", "Delete"),
        ] {
            let children: Vec<String> = changes
                .iter()
                .filter(|(o, _)| *o == outcome)
                .map(|(_, child)| child.clone())
                .collect();
            if children.is_empty() {
                continue;
            }
            let event = Event {
                kind: Kind::Normal,
                reason: reason.into(),
                note: crate::events::summary(reason, &children),
                action: action.into(),
                related: None,
            };
            ctx.events.publish(pg.object_ref(&()), event);
        }
    }
}
