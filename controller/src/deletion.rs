//! Removing a deleted cluster's children when Kubernetes' garbage collector will not.
//!
//! With `enable_owner_references` the garbage collector removes the children. Otherwise the
//! controller deletes them itself, from the deleted object's last state (a watch delete event,
//! or the finalizer with `enable_finalizers`), after checking the delete annotations once more:
//! if the webhook was bypassed and they are missing, the children are kept and an Event says why.

use crate::apply::FIELD_MANAGER;
use crate::context::Context;
use crate::events::{Event, Kind};
use crate::stores::selector;
use common::crd::Postgresql;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Endpoints, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// The finalizer Zalando uses with `enable_finalizers`.
pub const FINALIZER: &str = "postgres-operator.acid.zalan.do";

/// Cleans up after a deleted cluster; returns whether children were deleted.
pub async fn cleanup(ctx: &Context, pg: &Postgresql) -> kube::Result<bool> {
    let loaded = ctx.config.load_full();
    let config = &loaded.config;
    if config.kubernetes.enable_owner_references {
        return Ok(false);
    }
    let name = pg.name_any();
    let namespace = pg.namespace().unwrap_or_default();
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
        return Ok(false);
    }
    let labels = selector(&common::labels::selector_labels(config, &name));
    let client = &ctx.client;
    delete_labelled::<StatefulSet>(
        ctx,
        pg,
        Api::namespaced(client.clone(), &namespace),
        &labels,
    )
    .await?;
    delete_labelled::<Service>(
        ctx,
        pg,
        Api::namespaced(client.clone(), &namespace),
        &labels,
    )
    .await?;
    delete_labelled::<Endpoints>(
        ctx,
        pg,
        Api::namespaced(client.clone(), &namespace),
        &labels,
    )
    .await?;
    delete_labelled::<PodDisruptionBudget>(
        ctx,
        pg,
        Api::namespaced(client.clone(), &namespace),
        &labels,
    )
    .await?;
    if config.kubernetes.enable_secrets_deletion {
        delete_labelled::<Secret>(
            ctx,
            pg,
            Api::namespaced(client.clone(), &namespace),
            &labels,
        )
        .await?;
    }
    if config.kubernetes.enable_persistent_volume_claim_deletion {
        delete_labelled::<PersistentVolumeClaim>(
            ctx,
            pg,
            Api::namespaced(client.clone(), &namespace),
            &labels,
        )
        .await?;
    }
    Ok(true)
}

async fn delete_labelled<K>(
    ctx: &Context,
    pg: &Postgresql,
    api: Api<K>,
    labels: &str,
) -> kube::Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    for object in api.list(&ListParams::default().labels(labels)).await? {
        let name = object.name_any();
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {
                ctx.metrics.wrote(&K::plural(&Default::default()));
                let kind = K::kind(&Default::default()).to_string();
                let related = object.object_ref(&Default::default());
                publish(
                    ctx,
                    pg,
                    Kind::Normal,
                    "Deleted",
                    format!("{kind} {name} deleted"),
                    Some(related),
                );
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
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

/// Cleans up and removes the finalizer of a cluster being deleted.
pub async fn finalize(ctx: &Context, pg: &Postgresql) -> kube::Result<()> {
    cleanup(ctx, pg).await?;
    let finalizers = pg
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(ctx, pg, finalizers).await
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
