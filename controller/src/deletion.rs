//! Removing a deleted cluster's children when Kubernetes' garbage collector will not.
//!
//! With `enable_owner_references` the garbage collector removes the children that carry the
//! owner reference; the controller deletes the rest: the volume claims (never owned, as in
//! Zalando; only with `enable_persistent_volume_claim_deletion`) and Patroni's own objects.
//! Otherwise the controller deletes everything itself, from the deleted object's last state (a
//! watch delete event, or the finalizer with `enable_finalizers`), after checking the delete
//! annotations once more: if the webhook was bypassed and they are missing, the children are
//! kept and an Event says why.
//!
//! **Patroni's objects** (Zalando's `deletePatroniResources`): Patroni, not the operator, makes
//! its DCS objects — the ConfigMaps `<cluster>-leader`, `-config`, `-sync` and `-failover`, or
//! with `kubernetes_use_configmaps: false` Endpoints of those names and the Service
//! `<cluster>-config` — so they carry no owner reference and survive the cluster. They are
//! deleted by name, and only when they carry the cluster's labels (an object of the same name
//! that is not the cluster's is left alone), and only once the cluster's pods are gone: a
//! Patroni still shutting down writes its leader object again (`patch`, then `create` on 404).
//! Zalando waits for each pod inside its delete; here the wait never holds a worker: the
//! finalizer stays and the reconcile looks again, or, after a watch delete event, a task waits
//! (at most `pod_deletion_wait_timeout`) and deletes them then. With an etcd DCS (`etcd_host`)
//! there is nothing to delete.

use crate::apply::FIELD_MANAGER;
use crate::context::Context;
use crate::events::{Event, Kind};
use common::config::Config;
use common::crd::Postgresql;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Service};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The finalizer Zalando uses with `enable_finalizers`.
pub const FINALIZER: &str = "postgres-operator.acid.zalan.do";

/// The suffixes of Patroni's DCS objects (Zalando's `patroniObjectSuffixes`).
pub const PATRONI_SUFFIXES: [&str; 4] = ["leader", "config", "sync", "failover"];

/// Patroni's objects of one cluster, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatroniObjects {
    /// ConfigMaps (`kubernetes_use_configmaps`).
    pub config_maps: Vec<String>,
    /// Endpoints (the Endpoints DCS).
    pub endpoints: Vec<String>,
    /// Services (the Endpoints DCS's `<cluster>-config`).
    pub services: Vec<String>,
}

/// What Patroni makes for `cluster` under `config`.
pub fn patroni_objects(config: &Config, cluster: &str) -> PatroniObjects {
    let names = || -> Vec<String> {
        PATRONI_SUFFIXES
            .iter()
            .map(|s| format!("{cluster}-{s}"))
            .collect()
    };
    if !config.etcd_host.is_empty() {
        PatroniObjects::default()
    } else if crate::desired::uses_configmaps(config) {
        PatroniObjects {
            config_maps: names(),
            ..PatroniObjects::default()
        }
    } else {
        PatroniObjects {
            endpoints: names(),
            services: vec![format!("{cluster}-config")],
            ..PatroniObjects::default()
        }
    }
}

/// What [`cleanup`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleaned {
    /// Everything that goes with the cluster is deleted (or being deleted).
    Done,
    /// The delete annotations are missing: every child is kept.
    Kept,
    /// The children are deleted, but pods of the cluster still run: Patroni's objects go once
    /// they are gone ([`finish_later`], or the next reconcile with the finalizer).
    PodsRemain,
}

/// Cleans up after a deleted cluster.
pub async fn cleanup(ctx: &Context, pg: &Postgresql) -> kube::Result<Cleaned> {
    let loaded = ctx.config.load_full();
    let config = &loaded.config;
    let owned = config.kubernetes.enable_owner_references;
    let name = pg.name_any();
    let namespace = pg.namespace().unwrap_or_default();
    // With owner references the garbage collector deletes the children whatever the
    // annotations say (Zalando does not check them then either).
    if !owned {
        let today = common::rules::delete_protection::today_utc();
        if let Err(denied) = common::rules::delete_protection::check_delete(
            config,
            &name,
            pg.metadata.annotations.as_ref(),
            &today,
        ) {
            let note = format!(
                "the postgresql was deleted without its delete annotations (admission webhook bypassed?); keeping all children. {denied}"
            );
            tracing::warn!(cluster = %name, namespace = %namespace, "{note}");
            publish(ctx, pg, Kind::Warning, "DeleteProtected", note, None);
            return Ok(Cleaned::Kept);
        }
    }
    crate::children::delete_all(ctx, pg, config, owned).await?;
    if pods_remain(ctx, pg, config) {
        return Ok(Cleaned::PodsRemain);
    }
    delete_patroni_objects(ctx, pg, config).await?;
    Ok(Cleaned::Done)
}

/// Whether the pod cache still holds pods of the cluster (terminating ones included).
fn pods_remain(ctx: &Context, pg: &Postgresql, config: &Config) -> bool {
    let namespace = pg.namespace();
    let label = &config.kubernetes.cluster_name_label;
    ctx.observed.pods.state().iter().any(|pod| {
        pod.metadata.namespace == namespace
            && pod.labels().get(label).map(String::as_str) == Some(pg.cluster_name())
    })
}

/// Deletes Patroni's objects of the cluster (only those carrying its labels).
pub async fn delete_patroni_objects(
    ctx: &Context,
    pg: &Postgresql,
    config: &Config,
) -> kube::Result<()> {
    use crate::children::ops::delete_named;
    let labels =
        crate::stores::selector(&common::labels::selector_labels(config, pg.cluster_name()));
    let objects = patroni_objects(config, pg.cluster_name());
    if !objects.config_maps.is_empty() {
        delete_named::<ConfigMap>(ctx, pg, &labels, &objects.config_maps).await?;
    }
    if !objects.endpoints.is_empty() {
        delete_named::<Endpoints>(ctx, pg, &labels, &objects.endpoints).await?;
    }
    if !objects.services.is_empty() {
        delete_named::<Service>(ctx, pg, &labels, &objects.services).await?;
    }
    Ok(())
}

/// After a watch delete event: waits until the cluster's pods are gone (at most
/// `pod_deletion_wait_timeout`, then regardless) and deletes Patroni's objects.
pub async fn finish_later(ctx: Arc<Context>, pg: Postgresql) {
    let config = ctx.config.load_full();
    let timeout =
        common::config::encoding::parse_duration(&config.config.timeouts.pod_deletion_wait_timeout)
            .unwrap_or(Duration::from_secs(600));
    let deadline = Instant::now() + timeout;
    while pods_remain(&ctx, &pg, &config.config) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if let Err(error) = delete_patroni_objects(&ctx, &pg, &config.config).await {
        tracing::error!(cluster = %pg.name_any(), %error, "deleting Patroni's objects of the deleted cluster failed");
    }
}

/// Adds the finalizer when `enable_finalizers` is on and it is missing.
pub async fn ensure_finalizer(ctx: &Context, pg: &Postgresql) -> kube::Result<()> {
    if pg.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let mut finalizers = pg.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    patch_finalizers(ctx, pg, finalizers).await
}

/// Cleans up and removes the finalizer of a cluster being deleted; returns `false` while the
/// finalizer must stay (the cluster's pods still run, so Patroni's objects cannot go yet).
pub async fn finalize(ctx: &Context, pg: &Postgresql) -> kube::Result<bool> {
    if cleanup(ctx, pg).await? == Cleaned::PodsRemain {
        return Ok(false);
    }
    let finalizers = pg
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(ctx, pg, finalizers).await?;
    Ok(true)
}

async fn patch_finalizers(
    ctx: &Context,
    pg: &Postgresql,
    finalizers: Vec<String>,
) -> kube::Result<()> {
    let api: Api<Postgresql> =
        Api::namespaced(ctx.client.clone(), &pg.namespace().unwrap_or_default());
    // resourceVersion makes this a compare-and-swap: a concurrent change is retried, not lost.
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": pg.resource_version()}});
    api.patch(
        &pg.name_any(),
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        },
        &Patch::Merge(&patch),
    )
    .await?;
    ctx.metrics.wrote("postgresqls");
    Ok(())
}

fn publish(
    ctx: &Context,
    pg: &Postgresql,
    kind: Kind,
    reason: &str,
    note: String,
    related: Option<k8s_openapi::api::core::v1::ObjectReference>,
) {
    let event = Event {
        kind,
        reason: reason.to_string(),
        note,
        action: "Delete".into(),
        related,
    };
    ctx.events.publish(pg.object_ref(&()), event);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patroni_objects_follow_the_dcs() {
        let mut config = Config::default();
        let names = || -> Vec<String> {
            ["leader", "config", "sync", "failover"]
                .iter()
                .map(|s| format!("acid-a-{s}"))
                .collect()
        };
        assert_eq!(
            patroni_objects(&config, "acid-a"),
            PatroniObjects {
                config_maps: names(),
                ..PatroniObjects::default()
            }
        );
        config.kubernetes_use_configmaps = false;
        assert_eq!(
            patroni_objects(&config, "acid-a"),
            PatroniObjects {
                endpoints: names(),
                services: vec!["acid-a-config".into()],
                ..PatroniObjects::default()
            }
        );
        config.etcd_host = "etcd:2379".into();
        assert_eq!(
            patroni_objects(&config, "acid-a"),
            PatroniObjects::default()
        );
    }
}
