//! The one table of child kinds: every object kind a cluster owns is declared once, in
//! [`children!`] below, and everything per kind follows from that row — the cache and its watch,
//! whether a change triggers the cluster, how the kind is written (server-side apply or
//! create-only), the order of writes, orphan cleanup, deletion with the cluster, and the RBAC
//! verbs the controller needs for it ([`rbac_rules`], checked against `manifests/`).
//!
//! The macro also generates [`Desired`] with one field per kind, so a new row that the builders
//! in [`crate::desired`] do not fill, or that has no cache slimming ([`crate::stores::Slim`]),
//! does not compile.

pub(crate) mod ops;
pub mod rbac;

pub use ops::Changes;

use crate::apply::Compare;
use crate::context::Context;
use crate::reconcile::Error;
use crate::stores::{api, drain, owner_of, reflect, selector};
use common::config::Config;
use common::crd::Postgresql;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Client;
use kube::runtime::reflector::{ObjectRef, Store, store::WriterDropped};
use kube::runtime::watcher;

/// How the controller writes a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Server-side apply under the controller's field manager, skipped when the cache matches.
    Apply(Compare),
    /// Created when missing, never changed (Secrets: a password is never replaced; the pod
    /// ServiceAccount and RoleBinding: shared by every cluster of a namespace).
    CreateOnly,
}

/// Which objects of a kind the cache holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    /// Those carrying the configured `cluster_labels` (never all Secrets of the cluster).
    ClusterLabels,
    /// The one per namespace named `pod_service_account_name`.
    PodServiceAccount,
    /// The one per namespace named like the pod RoleBinding definition.
    PodRoleBinding,
}

/// What happens to a kind's objects when their cluster is deleted and the garbage collector
/// will not remove them (no owner references).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Deleted with the cluster.
    WithCluster,
    /// Deleted with the cluster when `enable_secrets_deletion` is on.
    IfSecretsDeletion,
    /// Deleted with the cluster when `enable_persistent_volume_claim_deletion` is on.
    IfVolumeDeletion,
    /// Kept: shared by other clusters of the namespace.
    Never,
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildKind {
    /// The field of [`Stores`] and [`Desired`].
    pub field: &'static str,
    /// API group ("" for the core group).
    pub group: &'static str,
    /// Resource (plural), as in RBAC rules and metrics.
    pub resource: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Write order: every kind of a stage is written together, stages one after another (the
    /// pods of the StatefulSet need the ServiceAccount and the Secrets before they start).
    pub stage: u8,
    /// How it is written; `None` for kinds the controller only deletes (PVCs, made by the
    /// StatefulSet controller).
    pub write: Option<Write>,
    /// What the cache holds; `None` for kinds that are not cached.
    pub select: Option<Select>,
    /// Whether a change of a cached object reconciles its cluster (a foreign edit is repaired).
    pub triggers: bool,
    /// Whether objects of this kind the controller applied for a cluster and no longer wants
    /// are deleted (a load balancer switched off, Endpoints once Patroni uses ConfigMaps).
    pub orphans: bool,
    /// Deletion with the cluster.
    pub removal: Removal,
}

/// Declares the child kinds: one row each, `field: Type = { stage, write, select, triggers,
/// orphans, removal }`.
macro_rules! children {
    ($($field:ident: $kind:ty = {
        stage: $stage:expr,
        write: $write:expr,
        select: $select:expr,
        triggers: $triggers:expr,
        orphans: $orphans:expr,
        removal: $removal:expr $(,)?
    }),* $(,)?) => {
        /// Read handles of every child cache.
        #[derive(Clone)]
        pub struct Stores {
            $(#[doc = concat!("The cache of ", stringify!($kind), "s.")]
            pub $field: Store<$kind>,)*
        }

        /// Every object a cluster should have, by kind.
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct Desired {
            $(#[doc = concat!("The ", stringify!($kind), "s of the cluster.")]
            pub $field: Vec<$kind>,)*
        }

        /// The cached child kinds, in declaration order.
        pub const KINDS: &[ChildKind] = &[$(ChildKind {
            field: stringify!($field),
            group: <$kind as k8s_openapi::Resource>::GROUP,
            resource: <$kind as k8s_openapi::Resource>::URL_PATH_SEGMENT,
            kind: <$kind as k8s_openapi::Resource>::KIND,
            stage: $stage,
            write: Some($write),
            select: Some($select),
            triggers: $triggers,
            orphans: $orphans,
            removal: $removal,
        }),*];

        impl Stores {
            /// Whether every cache has finished its initial list.
            pub async fn wait_until_ready(&self) -> Result<(), WriterDropped> {
                $(self.$field.wait_until_ready().await?;)*
                Ok(())
            }

            /// Starts one cache per kind: the stores, the clusters to reconcile when a child
            /// changes, and the tasks that keep the non-triggering caches filled.
            pub fn start(client: &Client, namespace: Option<&str>, config: &Config) -> Started {
                let label = config.kubernetes.cluster_name_label.clone();
                let mut triggers: Vec<BoxStream<'static, ObjectRef<Postgresql>>> = Vec::new();
                let mut background: Vec<BoxFuture<'static, ()>> = Vec::new();
                $(
                    let kind = row(stringify!($field));
                    let (store, changes) = reflect::<$kind>(
                        api(client, cache_namespace(kind, namespace, config)),
                        watcher_config(kind.select.unwrap_or(Select::ClusterLabels), config),
                    );
                    let $field = store;
                    if kind.triggers {
                        let label = label.clone();
                        triggers.push(
                            changes
                                .filter_map(move |change| {
                                    let cluster = match change {
                                        Ok(child) => owner_of(&child, &label),
                                        Err(error) => {
                                            tracing::debug!(kind = kind.kind, %error, "child watch error");
                                            None
                                        }
                                    };
                                    futures::future::ready(cluster)
                                })
                                .boxed(),
                        );
                    } else {
                        background.push(drain(changes).boxed());
                    }
                )*
                Started {
                    stores: Stores { $($field,)* },
                    triggers: futures::stream::select_all(triggers).boxed(),
                    background,
                }
            }
        }

        impl Desired {
            /// How many objects of all kinds.
            pub fn len(&self) -> usize {
                0 $(+ self.$field.len())*
            }

            /// Whether there are none.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }
        }

        /// Writes every desired child, stage by stage, then removes the orphans of the kinds
        /// that have them. Returns at the first failed stage.
        pub async fn apply_all(
            ctx: &Context,
            changes: &Changes,
            pg: &Postgresql,
            desired: &Desired,
        ) -> Result<(), Error> {
            let last = KINDS.iter().map(|k| k.stage).max().unwrap_or(0);
            let config = ctx.config.load_full();
            let scan = ops::orphans_may_exist(pg, &config);
            for stage in 0..=last {
                let mut writes: Vec<BoxFuture<'_, Result<(), Error>>> = Vec::new();
                $(
                    let kind = row(stringify!($field));
                    if kind.stage == stage {
                        let write = kind.write.unwrap_or(Write::CreateOnly);
                        for object in &desired.$field {
                            writes.push(ops::write(ctx, changes, &ctx.stores.$field, object, write).boxed());
                        }
                        if kind.orphans && scan {
                            writes.push(ops::delete_orphans(ctx, changes, &ctx.stores.$field, pg, &desired.$field).boxed());
                        }
                    }
                )*
                futures::future::try_join_all(writes).await?;
            }
            if scan {
                ops::orphans_removed(pg, &config);
            }
            Ok(())
        }

        /// Deletes a deleted cluster's children that the configuration says go with it, in the
        /// reverse order of writing: the StatefulSet (and so the pods) first. With
        /// `garbage_collected` (owner references) only the kinds the garbage collector does not
        /// remove: those never given an owner reference ([`EXTRA`], the claims).
        pub async fn delete_all(
            ctx: &Context,
            pg: &Postgresql,
            config: &Config,
            garbage_collected: bool,
        ) -> kube::Result<()> {
            let labels = selector(&common::labels::selector_labels(config, pg.cluster_name()));
            let last = KINDS.iter().map(|k| k.stage).max().unwrap_or(0);
            for stage in (0..=last).rev() {
                $(
                    let kind = row(stringify!($field));
                    if !garbage_collected && kind.stage == stage && removed(kind.removal, config) {
                        ops::delete_labelled::<$kind>(ctx, pg, &labels).await?;
                    }
                )*
            }
            for extra in EXTRA {
                if removed(extra.removal, config) {
                    ops::delete_extra(ctx, pg, extra, &labels).await?;
                }
            }
            Ok(())
        }
    };
}

children! {
    service_accounts: ServiceAccount = {
        stage: 0, write: Write::CreateOnly, select: Select::PodServiceAccount,
        triggers: false, orphans: false, removal: Removal::Never,
    },
    role_bindings: RoleBinding = {
        stage: 0, write: Write::CreateOnly, select: Select::PodRoleBinding,
        triggers: false, orphans: false, removal: Removal::Never,
    },
    services: Service = {
        stage: 1, write: Write::Apply(Compare::Contents), select: Select::ClusterLabels,
        triggers: true, orphans: true, removal: Removal::WithCluster,
    },
    endpoints: Endpoints = {
        stage: 1, write: Write::Apply(Compare::Contents), select: Select::ClusterLabels,
        triggers: true, orphans: true, removal: Removal::WithCluster,
    },
    pdbs: PodDisruptionBudget = {
        stage: 1, write: Write::Apply(Compare::Contents), select: Select::ClusterLabels,
        triggers: true, orphans: true, removal: Removal::WithCluster,
    },
    secrets: Secret = {
        stage: 1, write: Write::CreateOnly, select: Select::ClusterLabels,
        triggers: true, orphans: false, removal: Removal::IfSecretsDeletion,
    },
    // Its cache keeps no pod template (the largest part of any child): compared by hash.
    statefulsets: StatefulSet = {
        stage: 2, write: Write::Apply(Compare::Hash), select: Select::ClusterLabels,
        triggers: true, orphans: false, removal: Removal::WithCluster,
    },
}

/// Kinds the controller neither writes nor caches but deletes with a cluster.
pub const EXTRA: &[ChildKind] = &[ChildKind {
    field: "persistent_volume_claims",
    group: "",
    resource: "persistentvolumeclaims",
    kind: "PersistentVolumeClaim",
    stage: 0,
    write: None,
    select: None,
    triggers: false,
    orphans: false,
    removal: Removal::IfVolumeDeletion,
}];

/// What [`Stores::start`] gives the controller.
pub struct Started {
    /// The caches.
    pub stores: Stores,
    /// The cluster of every changed child of a triggering kind.
    pub triggers: BoxStream<'static, ObjectRef<Postgresql>>,
    /// Tasks to run for the non-triggering caches to fill.
    pub background: Vec<BoxFuture<'static, ()>>,
}

/// The row of `field`; the table is static, so a missing row is a bug in the macro.
/// The namespace a kind's cache covers: the watched one, except Secrets with
/// `enable_cross_namespace_secret`, which the operator writes into any namespace (`namespace.user`
/// users, a prepared database's `secretNamespace`) and must read back from there — their cache
/// then spans the cluster, still narrowed to the clusters' labels.
fn cache_namespace<'a>(
    kind: ChildKind,
    watched: Option<&'a str>,
    config: &Config,
) -> Option<&'a str> {
    if kind.field == "secrets" && config.kubernetes.enable_cross_namespace_secret {
        None
    } else {
        watched
    }
}

fn row(field: &str) -> ChildKind {
    *KINDS
        .iter()
        .find(|k| k.field == field)
        .expect("every generated field has its row")
}

/// Whether `removal` deletes the kind's objects with their cluster under `config`.
fn removed(removal: Removal, config: &Config) -> bool {
    let k8s = &config.kubernetes;
    match removal {
        Removal::WithCluster => true,
        Removal::IfSecretsDeletion => k8s.enable_secrets_deletion,
        Removal::IfVolumeDeletion => k8s.enable_persistent_volume_claim_deletion,
        Removal::Never => false,
    }
}

/// The watch of one kind: narrowed by the cluster labels, or to one name per namespace.
fn watcher_config(select: Select, config: &Config) -> watcher::Config {
    match select {
        Select::ClusterLabels => watcher::Config::default()
            .labels(&selector(&config.kubernetes.cluster_labels))
            .any_semantic(),
        Select::PodServiceAccount => watcher::Config::default().fields(&format!(
            "metadata.name={}",
            config.kubernetes.pod_service_account_name
        )),
        Select::PodRoleBinding => watcher::Config::default()
            .fields(&format!("metadata.name={}", pod_role_binding_name(config))),
    }
}

/// The name of the pod RoleBinding the configuration defines (the ServiceAccount's name when
/// the definition cannot be read: the reconcile reports that error).
pub fn pod_role_binding_name(config: &Config) -> String {
    crate::desired::pod_role_binding(config, "x")
        .ok()
        .and_then(|rb| rb.metadata.name)
        .unwrap_or_else(|| config.kubernetes.pod_service_account_name.clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_secret_cache_spans_the_cluster_and_only_with_cross_namespace_secrets() {
        let mut config = Config::default();
        for kind in KINDS {
            assert_eq!(cache_namespace(*kind, Some("ns"), &config), Some("ns"));
        }
        config.kubernetes.enable_cross_namespace_secret = true;
        for kind in KINDS {
            let expected = if kind.field == "secrets" {
                None
            } else {
                Some("ns")
            };
            assert_eq!(
                cache_namespace(*kind, Some("ns"), &config),
                expected,
                "{}",
                kind.field
            );
        }
    }

    use super::*;

    #[test]
    fn every_row_is_distinct_and_every_writer_is_cached() {
        let mut fields: Vec<_> = KINDS.iter().chain(EXTRA).map(|k| k.field).collect();
        fields.sort_unstable();
        fields.dedup();
        assert_eq!(fields.len(), KINDS.len() + EXTRA.len());
        for kind in KINDS {
            assert!(kind.write.is_some() && kind.select.is_some(), "{kind:?}");
            assert!(
                !(kind.orphans && kind.write == Some(Write::CreateOnly)),
                "{}: orphan cleanup needs to know which objects the controller applied",
                kind.field
            );
        }
        for kind in EXTRA {
            assert!(kind.write.is_none() && kind.select.is_none(), "{kind:?}");
        }
    }

    #[test]
    fn secrets_and_shared_objects_are_never_orphaned() {
        for field in [
            "secrets",
            "service_accounts",
            "role_bindings",
            "statefulsets",
        ] {
            assert!(!row(field).orphans, "{field}");
        }
        assert_eq!(row("service_accounts").removal, Removal::Never);
        assert_eq!(row("role_bindings").removal, Removal::Never);
    }

    #[test]
    fn writes_are_ordered_for_the_pods() {
        assert!(row("service_accounts").stage < row("statefulsets").stage);
        assert!(row("secrets").stage < row("statefulsets").stage);
    }
}
