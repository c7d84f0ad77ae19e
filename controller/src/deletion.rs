//! Removing a deleted cluster's children when Kubernetes' garbage collector will not.
//!
//! With `enable_owner_references` the garbage collector removes the children. Otherwise the
//! controller deletes them itself, from the deleted object's last state (a watch delete event,
//! or the finalizer with `enable_finalizers`), after checking the delete annotations once more:
//! if the webhook was bypassed and they are missing, the children are kept and an Event says why.

use crate::apply::FIELD_MANAGER;
use crate::context::Context;
use crate::events::{Event, Kind};
use common::crd::Postgresql;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};

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
    crate::children::delete_all(ctx, pg, config).await?;
    Ok(true)
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
