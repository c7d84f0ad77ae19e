//! Changes of Patroni's dynamic configuration and of PostgreSQL parameters reaching a running
//! cluster, as Zalando makes them (`syncPatroniConfig`): [`plan`] decides the `PATCH /config`,
//! [`restart`] the order of the restarts PostgreSQL then needs, [`step`] carries them out one
//! step per reconcile; [`sync`] is the reconcile's one call, once the cluster runs.
//!
//! The manifest slots of the last plan are remembered in the annotation [`SLOTS_ANNOTATION`] of
//! the `postgresql` (Zalando keeps them in the operator's memory and forgets them on a restart,
//! after which a slot removed from the manifest is never removed from the DCS). The annotation
//! is read from the object the reconcile already holds and written only when the manifest's
//! slots change, so it costs nothing otherwise and survives a restart or a move to another
//! controller replica.
//!
//! Out of scope: `standby_cluster` (a standby's source changed or removed, i.e. promotion) is not
//! patched; the standby's other settings and parameters are, as in Zalando.

pub mod plan;
pub mod restart;
pub mod step;

#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod step_tests;

use crate::context::Context;
use crate::events::{Event, Kind};
use common::config::Config;
use common::crd::Postgresql;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use plan::{Desired, Slots};
use std::time::Duration;
use step::{Input, Note, Target};

/// The `postgresql`'s annotation with the manifest slots the last plan saw (JSON).
pub const SLOTS_ANNOTATION: &str = "postgres-operator.acid.zalan.do/patroni-slots";

/// The remembered slots (none when the annotation is absent or unreadable).
pub fn remembered_slots(pg: &Postgresql) -> Slots {
    pg.annotations()
        .get(SLOTS_ANNOTATION)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// The cluster's pods with an IP, from the cache.
fn targets(ctx: &Context, namespace: &str, cluster: &str) -> Vec<Target> {
    let key = ObjectRef::new(cluster).within(namespace);
    let instances = ctx
        .stores
        .statefulsets
        .get(&key)
        .and_then(|s| s.spec.as_ref()?.replicas)
        .unwrap_or(1)
        .max(0);
    (0..instances)
        .filter_map(|i| {
            let pod: std::sync::Arc<Pod> = ctx
                .observed
                .pods
                .get(&ObjectRef::new(&format!("{cluster}-{i}")).within(namespace))?;
            let ip = pod.status.as_ref()?.pod_ip.clone()?;
            Some(Target {
                name: pod.name_any(),
                ip,
            })
        })
        .collect()
}

/// Brings the running cluster's Patroni configuration in line, one step; returns when to look
/// again. Never fails: what went wrong is a Warning Event and a retry.
pub async fn sync(
    ctx: &Context,
    config: &Config,
    pg: &Postgresql,
    leader: &str,
) -> Option<Duration> {
    let namespace = pg.namespace().unwrap_or_default();
    let members = targets(ctx, &namespace, pg.cluster_name());
    let desired = Desired::of(config, pg);
    let remembered = remembered_slots(pg);
    let cluster = pg.metadata.uid.clone().unwrap_or_else(|| pg.name_any());
    let input = Input {
        cluster: &cluster,
        generation: pg.metadata.generation,
        desired: &desired,
        leader,
        members: &members,
        remembered: &remembered,
        repair_period: config.repair_period(),
    };
    let reference = pg.object_ref(&());
    let name = pg.name_any();
    let notify = move |note: Note| {
        if note.warning {
            tracing::warn!(cluster = %name, reason = note.reason, "{}", note.text);
        } else {
            tracing::info!(cluster = %name, reason = note.reason, "{}", note.text);
        }
        let event = Event {
            kind: if note.warning {
                Kind::Warning
            } else {
                Kind::Normal
            },
            reason: note.reason.into(),
            note: note.text,
            action: "PatroniConfig".into(),
            related: None,
        };
        ctx.events.publish(reference.clone(), event);
    };
    let outcome = step::step(ctx.patroni.as_ref(), &ctx.patroni_config, &input, &notify).await;
    if !outcome.pending.is_empty() {
        tracing::info!(cluster = %pg.name_any(), pending = ?outcome.pending, "members wait for a restart");
    }
    if let Some(remember) = outcome.remember.filter(|r| *r != remembered)
        && let Err(e) = write_slots(ctx, pg, &namespace, &remember).await
    {
        notify(Note {
            warning: true,
            reason: "PatroniConfigFailed",
            text: format!("could not remember the manifest's slots in {SLOTS_ANNOTATION}: {e}"),
        });
    }
    outcome.requeue
}

async fn write_slots(
    ctx: &Context,
    pg: &Postgresql,
    namespace: &str,
    slots: &Slots,
) -> Result<(), kube::Error> {
    let value = if slots.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::String(serde_json::to_string(slots).unwrap_or_default())
    };
    let patch = serde_json::json!({"metadata": {"annotations": {SLOTS_ANNOTATION: value}}});
    let api: Api<Postgresql> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(
        &pg.name_any(),
        &PatchParams {
            field_manager: Some(crate::apply::FIELD_MANAGER.into()),
            ..Default::default()
        },
        &Patch::Merge(&patch),
    )
    .await?;
    ctx.metrics.wrote("postgresqls");
    Ok(())
}
