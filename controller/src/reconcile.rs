//! One reconcile of one cluster: dereference → validate → build → apply → status.

use crate::apply::{self, Compare, Outcome};
use crate::context::Context;
use crate::desired;
use crate::events::{Event, Kind};
use crate::status;
use common::crd::Postgresql;
use common::crd::postgresql::PostgresqlStatus;
use common::rules::admission::{self, Operation};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
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
    Build(#[from] desired::BuildError),
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
    // Until every child cache has listed, a missing child may only be not yet seen: writing it
    // would be a needless (and, after a restart, repeated) write.
    if !ctx.caches_ready.load(Ordering::Acquire) {
        return Ok(Action::requeue(Duration::from_millis(200)));
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
    let today = common::rules::delete_protection::today_utc();
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
            );
        }
        ctx.metrics.observe(started.elapsed(), Some("invalid"));
        return Ok(Action::await_change());
    }

    let changes = Changes::default();
    let outcome = apply_children(&ctx, &pg, &changes, config, &namespace).await;
    changes.publish(&ctx, &pg);
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
            warn(&ctx, &pg, "SyncFailed", error.to_string());
            Err(error)
        }
    }
}

/// Applies every child; returns whether the StatefulSet's pods are all ready.
async fn apply_children(
    ctx: &Context,
    pg: &Postgresql,
    changes: &Changes,
    config: &common::config::Config,
    namespace: &str,
) -> Result<bool, Error> {
    let owner = config
        .kubernetes
        .enable_owner_references
        .then(|| owner_reference(pg))
        .flatten();
    let wanted = desired::build(config, pg, owner.as_ref())?;
    let client = &ctx.client;
    let stores = &ctx.stores;

    // The pod ServiceAccount and RoleBinding come first: the StatefulSet's pods need them.
    let sa = desired::pod_service_account(config, namespace)?;
    let outcome = apply::create_if_absent(
        &Api::namespaced(client.clone(), namespace),
        &stores.service_accounts,
        &sa,
    )
    .await
    .map_err(api_error("creating the pod service account"))?;
    report(ctx, changes, &sa, outcome);
    let rb = desired::pod_role_binding(config, namespace)?;
    let outcome = apply::create_if_absent(
        &Api::namespaced(client.clone(), namespace),
        &stores.role_bindings,
        &rb,
    )
    .await
    .map_err(api_error("creating the pod role binding"))?;
    report(ctx, changes, &rb, outcome);

    // Secrets, Services, Endpoints and PDBs do not depend on each other: write them together.
    let secrets = desired::secrets(config, pg, owner.as_ref());
    let secret_writes = secrets.iter().map(|secret| async move {
        let ns = secret.namespace().unwrap_or_else(|| namespace.to_string());
        let outcome = apply::create_if_absent(
            &Api::namespaced(client.clone(), &ns),
            &stores.secrets,
            secret,
        )
        .await
        .map_err(api_error(format!("creating secret {}", secret.name_any())))?;
        report(ctx, changes, secret, outcome);
        Ok::<_, Error>(())
    });
    let service_writes = wanted
        .services
        .iter()
        .map(|s| ensure(ctx, changes, &stores.services, s, Compare::Contents));
    let endpoint_writes = wanted
        .endpoints
        .iter()
        .map(|e| ensure(ctx, changes, &stores.endpoints, e, Compare::Contents));
    let pdb_writes = wanted
        .pdbs
        .iter()
        .map(|p| ensure(ctx, changes, &stores.pdbs, p, Compare::Contents));
    futures::future::try_join4(
        futures::future::try_join_all(secret_writes),
        futures::future::try_join_all(service_writes),
        futures::future::try_join_all(endpoint_writes),
        futures::future::try_join_all(pdb_writes),
    )
    .await?;
    // Its cache keeps no pod template (the largest part of any child): compared by hash.
    ensure(
        ctx,
        changes,
        &stores.statefulsets,
        &wanted.statefulset,
        Compare::Hash,
    )
    .await?;

    let key = ObjectRef::new(&wanted.statefulset.name_any()).within(namespace);
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
    changes: &Changes,
    store: &kube::runtime::reflector::Store<K>,
    desired: &K,
    compare: Compare,
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
    let kind = K::kind(&Default::default()).to_string();
    let outcome = apply::ensure(&api, store, desired, compare)
        .await
        .map_err(api_error(format!("applying {kind} {}", desired.name_any())))?;
    report(ctx, changes, desired, outcome);
    Ok(())
}

/// Children created or updated by one reconcile, for one Event per kind of change that names
/// them all: at 1 000 clusters created at once, one Event per child would be as many API writes
/// again as the children themselves.
#[derive(Default)]
struct Changes(std::sync::Mutex<Vec<(Outcome, String)>>);

impl Changes {
    fn publish(self, ctx: &Context, pg: &Postgresql) {
        let changes = self.0.into_inner().unwrap_or_else(|p| p.into_inner());
        for (outcome, reason, action) in [
            (Outcome::Created, "Created", "Create"),
            (Outcome::Updated, "Updated", "Update"),
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

/// Counts a write and notes the child for the reconcile's Event.
fn report<K>(ctx: &Context, changes: &Changes, child: &K, outcome: Outcome)
where
    K: Resource,
    K::DynamicType: Default,
{
    if outcome == Outcome::Unchanged {
        return;
    }
    ctx.metrics.wrote(&K::plural(&Default::default()));
    let kind = K::kind(&Default::default()).to_string();
    let name = child.name_any();
    tracing::info!(%kind, %name, ?outcome, "child written");
    changes
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((outcome, format!("{kind} {name}")));
}

fn warn(ctx: &Context, pg: &Postgresql, reason: &str, note: String) {
    tracing::warn!(cluster = %pg.name_any(), reason, "{note}");
    let event = Event {
        kind: Kind::Warning,
        reason: reason.to_string(),
        note,
        action: "Reconcile".into(),
        related: None,
    };
    ctx.events.publish(pg.object_ref(&()), event);
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
    ctx.metrics.wrote("postgresqls/status");
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
