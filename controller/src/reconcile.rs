//! One reconcile of one cluster: dereference → validate → build → apply → status.

use crate::apply::{self, Outcome};
use crate::build;
use crate::context::Context;
use crate::status;
use common::crd::Postgresql;
use common::crd::postgresql::PostgresqlStatus;
use common::rules::admission::{self, Operation};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The desired objects could not be built (bad configuration or manifest value).
    #[error("cannot build the cluster's objects: {0}")]
    Build(#[from] build::BuildError),
    /// An API call failed; retried with backoff.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// Stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Build(_) => "build",
            Error::Api { .. } => "api",
        }
    }
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

/// Reconciles one cluster; errors become a failure status and a retry.
pub async fn reconcile(pg: Arc<Postgresql>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let loaded = ctx.config.load_full();
    let config = &loaded.config;
    if !ctx.leading.load(Ordering::Acquire) {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    if !common::rules::ownership::is_owned_by(pg.metadata.annotations.as_ref(), &ctx.controller_id)
    {
        return Ok(Action::await_change());
    }
    if pg.metadata.deletion_timestamp.is_some() {
        if pg
            .finalizers()
            .iter()
            .any(|f| f == crate::deletion::FINALIZER)
        {
            crate::deletion::finalize(&ctx, &pg)
                .await
                .map_err(api_error("cleaning up the deleted cluster"))?;
        }
        return Ok(Action::await_change());
    }
    if config.kubernetes.enable_finalizers {
        crate::deletion::ensure_finalizer(&ctx, &pg)
            .await
            .map_err(api_error("adding the finalizer"))?;
    }
    let namespace = pg.namespace().unwrap_or_default();
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let rules = admission::Context {
        config,
        controller_id: &ctx.controller_id,
        today: &today,
    };
    let verdict = admission::validate(&rules, Operation::Create, None, &pg, None);
    if !verdict.allowed() {
        let message = verdict.message();
        let result = status::Result::Invalid(message.clone());
        if write_status(&ctx, &pg, &result).await? {
            warn(
                &ctx,
                &pg,
                "Invalid",
                format!("not creating or changing children: {message}"),
            )
            .await;
        }
        ctx.metrics.observe(started.elapsed(), Some("invalid"));
        return Ok(Action::await_change());
    }

    let outcome = apply_children(&ctx, &pg, config, &namespace).await;
    let result = match &outcome {
        Ok(ready) => status::Result::Applied { ready: *ready },
        Err(error) => status::Result::Failed(error.to_string()),
    };
    write_status(&ctx, &pg, &result).await?;
    ctx.metrics
        .observe(started.elapsed(), outcome.as_ref().err().map(Error::reason));
    match outcome {
        Ok(_) => Ok(Action::requeue(config.resync_period())),
        Err(error) => {
            warn(&ctx, &pg, "SyncFailed", error.to_string()).await;
            Err(error)
        }
    }
}

/// Applies every child; returns whether the StatefulSet's pods are all ready.
async fn apply_children(
    ctx: &Context,
    pg: &Postgresql,
    config: &common::config::Config,
    namespace: &str,
) -> Result<bool, Error> {
    let owner = config
        .kubernetes
        .enable_owner_references
        .then(|| owner_reference(pg))
        .flatten();
    let desired = build::build(config, pg, owner.as_ref())?;
    let client = &ctx.client;
    let stores = &ctx.stores;

    // The pod ServiceAccount and RoleBinding come first: the StatefulSet's pods need them.
    let sa = build::pod_service_account(config, namespace)?;
    let outcome = apply::create_if_absent(
        &Api::namespaced(client.clone(), namespace),
        &stores.service_accounts,
        &sa,
    )
    .await
    .map_err(api_error("creating the pod service account"))?;
    report(ctx, pg, &sa, outcome).await;
    let rb = build::pod_role_binding(config, namespace)?;
    let outcome = apply::create_if_absent(
        &Api::namespaced(client.clone(), namespace),
        &stores.role_bindings,
        &rb,
    )
    .await
    .map_err(api_error("creating the pod role binding"))?;
    report(ctx, pg, &rb, outcome).await;

    // Secrets, Services, Endpoints and PDBs do not depend on each other: write them together.
    let secrets = build::secrets(config, pg, owner.as_ref());
    let secret_writes = secrets.iter().map(|secret| async move {
        let ns = secret.namespace().unwrap_or_else(|| namespace.to_string());
        let outcome = apply::create_if_absent(
            &Api::namespaced(client.clone(), &ns),
            &stores.secrets,
            secret,
        )
        .await
        .map_err(api_error(format!("creating secret {}", secret.name_any())))?;
        report(ctx, pg, secret, outcome).await;
        Ok::<_, Error>(())
    });
    let service_writes = desired
        .services
        .iter()
        .map(|s| ensure(ctx, pg, "Service", &stores.services, s));
    let endpoint_writes = desired
        .endpoints
        .iter()
        .map(|e| ensure(ctx, pg, "Endpoints", &stores.endpoints, e));
    let pdb_writes = desired
        .pdbs
        .iter()
        .map(|p| ensure(ctx, pg, "PodDisruptionBudget", &stores.pdbs, p));
    futures::future::try_join4(
        futures::future::try_join_all(secret_writes),
        futures::future::try_join_all(service_writes),
        futures::future::try_join_all(endpoint_writes),
        futures::future::try_join_all(pdb_writes),
    )
    .await?;
    ensure(
        ctx,
        pg,
        "StatefulSet",
        &stores.statefulsets,
        &desired.statefulset,
    )
    .await?;

    let key = ObjectRef::new(&desired.statefulset.name_any()).within(namespace);
    let ready = stores.statefulsets.get(&key).is_some_and(|sts| {
        let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = sts.status.as_ref();
        let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
        let current = status.map(|s| s.replicas).unwrap_or(0);
        let observed = status.and_then(|s| s.observed_generation) >= sts.metadata.generation;
        observed && ready == want && current == want
    });
    Ok(ready)
}

async fn ensure<K>(
    ctx: &Context,
    pg: &Postgresql,
    kind: &str,
    store: &kube::runtime::reflector::Store<K>,
    desired: &K,
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let namespace = desired.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let outcome = apply::ensure(&api, store, desired)
        .await
        .map_err(api_error(format!("applying {kind} {}", desired.name_any())))?;
    report(ctx, pg, desired, outcome).await;
    Ok(())
}

/// Counts a write and records an Event naming the child (as the event's related object, which
/// also keeps the recorder from folding events about different children into one).
async fn report<K>(ctx: &Context, pg: &Postgresql, child: &K, outcome: Outcome)
where
    K: Resource,
    K::DynamicType: Default,
{
    let (reason, action, verb) = match outcome {
        Outcome::Unchanged => return,
        Outcome::Created => ("Created", "Create", "created"),
        Outcome::Updated => ("Updated", "Update", "updated"),
    };
    ctx.metrics.writes.inc();
    let kind = K::kind(&Default::default()).to_string();
    let name = child.name_any();
    tracing::info!(cluster = %pg.name_any(), %kind, %name, "{verb}");
    let event = Event {
        type_: EventType::Normal,
        reason: reason.into(),
        note: Some(format!("{kind} {name} {verb}")),
        action: action.into(),
        secondary: Some(child.object_ref(&Default::default())),
    };
    // Events are informational: publishing them must not slow the reconcile down.
    let (recorder, reference) = (ctx.recorder.clone(), pg.object_ref(&()));
    tokio::spawn(async move {
        if let Err(error) = recorder.publish(&event, &reference).await {
            tracing::debug!(%error, "cannot publish an event");
        }
    });
}

async fn warn(ctx: &Context, pg: &Postgresql, reason: &str, note: String) {
    tracing::warn!(cluster = %pg.name_any(), reason, "{note}");
    publish(ctx, pg, EventType::Warning, reason, note).await;
}

async fn publish(ctx: &Context, pg: &Postgresql, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &pg.object_ref(&())).await {
        tracing::debug!(%error, "cannot publish an event");
    }
}

/// Writes the status when it differs from the stored one; returns whether it wrote.
async fn write_status(
    ctx: &Context,
    pg: &Postgresql,
    result: &status::Result,
) -> Result<bool, Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let next: PostgresqlStatus = status::next(pg, result, now);
    if pg.status.as_ref() == Some(&next) {
        return Ok(false);
    }
    let api: Api<Postgresql> =
        Api::namespaced(ctx.client.clone(), &pg.namespace().unwrap_or_default());
    let patch = serde_json::json!({ "status": next });
    api.patch_status(
        &pg.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(api_error("writing the status"))?;
    ctx.metrics.writes.inc();
    Ok(true)
}

fn owner_reference(pg: &Postgresql) -> Option<OwnerReference> {
    pg.controller_owner_ref(&())
}

/// A failed cluster is repaired every `repair_period`; a transient API error is retried sooner
/// (at most every few seconds). Invalid manifests never get here: they wait for a change.
pub fn error_policy(_pg: Arc<Postgresql>, error: &Error, ctx: Arc<Context>) -> Action {
    let repair = ctx.config.load().config.repair_period();
    match error {
        Error::Build(_) => Action::requeue(repair),
        Error::Api { .. } => Action::requeue(repair.min(Duration::from_secs(5))),
    }
}
