//! One reconcile of one cluster: dereference → validate → build → apply → status.

use crate::children::{self, Changes};
use crate::context::Context;
use crate::desired;
use crate::events::{Event, Kind};
use crate::status;
use common::crd::Postgresql;
use common::crd::postgresql::PostgresqlStatus;
use common::rules::admission;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
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
    /// A step of the rolling update failed; retried with backoff.
    #[error("rolling update: {0}")]
    Rollout(#[from] crate::rollout::Error),
    /// Growing the volumes failed; retried with backoff.
    #[error("volumes: {0}")]
    Volumes(#[from] crate::volumes::Error),
    /// Deleting a StatefulSet to replace it failed; retried with backoff.
    #[error("{0}")]
    Replace(#[from] crate::replace::Error),
}

impl Error {
    /// Stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Build(_) => "build",
            Error::Api { .. } => "api",
            Error::Rollout(_) => "rollout",
            Error::Volumes(_) => "volumes",
            Error::Replace(_) => "replace",
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
        let key = pg.metadata.uid.clone().unwrap_or_else(|| pg.name_any());
        ctx.database_failures.succeeded(&key);
        if pg
            .finalizers()
            .iter()
            .any(|f| f == crate::deletion::FINALIZER)
        {
            let done = crate::deletion::finalize(&ctx, &pg)
                .await
                .map_err(api_error("cleaning up the deleted cluster"))?;
            if !done {
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
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
    let valid = match admission::check(&rules, &pg) {
        Ok(valid) => valid,
        Err(verdict) => {
            return invalid(&ctx, &pg, &verdict, started).await;
        }
    };

    let changes = Changes::default();
    let (mut outcome, replacing) =
        match apply_children(&ctx, &valid, &changes, config, &namespace).await {
            Ok((pods, replacing)) => (Ok(pods), replacing),
            Err(error) => (Err(error), None),
        };
    let mut rolling = None;
    // No pod is recreated while the StatefulSet that would recreate it is being replaced.
    if outcome.is_ok() && replacing.is_none() {
        match rollout_step(&ctx, config, &pg, &namespace).await {
            Ok(poll) => rolling = poll,
            Err(error) => outcome = Err(error),
        }
    }
    changes.publish(&ctx, &pg);
    if outcome.is_ok() {
        let owner = config
            .kubernetes
            .enable_owner_references
            .then(|| owner_reference(&pg))
            .flatten();
        crate::database::infra_secrets::sync(&ctx, config, &pg, owner.as_ref()).await;
    }
    let ignored = common::fields::summary(&valid.ignored);
    let (database, retry) = match &outcome {
        Ok(status::Pods::Running(leader)) => {
            let patroni = crate::dcs::sync(&ctx, config, &pg, leader).await;
            let (database, retry) = sync_database(&ctx, config, &pg, leader).await;
            // Last, as in Zalando: the upgrade needs the rolling update done.
            let upgrade = match rolling {
                None => crate::upgrade::sync(&ctx, config, &pg, instances(&ctx, &pg)).await,
                Some(_) => None,
            };
            (
                database,
                retry.into_iter().chain(patroni).chain(upgrade).min(),
            )
        }
        _ => (status::Database::NotYet, None),
    };
    let result = match &outcome {
        Ok(pods) => status::Result::Applied {
            pods: pods.clone(),
            database: database.clone(),
            ignored: ignored.clone(),
        },
        Err(error) => status::Result::Failed(error.to_string()),
    };
    let told = status::ignored_fields_reported(&pg);
    write_status(&ctx, &pg, &result).await?;
    if let Some(summary) = ignored.filter(|s| told.as_deref() != Some(s.as_str()))
        && first_warning(&pg, digest_of(&summary))
    {
        warn(&ctx, &pg, common::fields::CONDITION_REASON, summary);
    }
    ctx.metrics
        .observe(started.elapsed(), outcome.as_ref().err().map(Error::reason));
    match outcome {
        // A database that failed is tried again with a back-off, not only at the next resync.
        Ok(_) => Ok(Action::requeue(
            [retry, rolling, replacing]
                .into_iter()
                .flatten()
                .fold(config.resync_period(), Duration::min),
        )),
        Err(error) => {
            warn(&ctx, &pg, "SyncFailed", error.to_string());
            Err(error)
        }
    }
}

/// Syncs the roles and databases inside the cluster and tells how it went: a failure is a
/// Warning Event (once per distinct failure, [`crate::database::retry`]) and the Ready
/// condition, never an error that stops the reconcile; it comes with the wait before the retry.
async fn sync_database(
    ctx: &Context,
    config: &common::config::Config,
    pg: &Postgresql,
    leader: &str,
) -> (status::Database, Option<Duration>) {
    let key = pg.metadata.uid.clone().unwrap_or_else(|| pg.name_any());
    // The note, and what identifies the failure across retries (no counts that vary).
    let (note, what) = match crate::database::sync(ctx, config, pg, leader).await {
        Ok(crate::database::Synced::Skipped(why)) => {
            ctx.database_failures.succeeded(&key);
            return (status::Database::Skipped(why.into()), None);
        }
        Ok(crate::database::Synced::Ran(report)) => {
            if report.applied > 0 {
                let event = Event {
                    kind: Kind::Normal,
                    reason: "DatabaseSynced".into(),
                    note: format!(
                        "{} statement(s) applied to roles, databases and schemas",
                        report.applied
                    ),
                    action: "Sync".into(),
                    related: None,
                };
                ctx.events.publish(pg.object_ref(&()), event);
            }
            if report.failed.is_empty() {
                ctx.database_failures.succeeded(&key);
                return (status::Database::Synced, None);
            }
            let failures: Vec<String> = report
                .failed
                .iter()
                .map(|f| format!("{} (database {}): {}", f.what, f.database, f.error))
                .collect();
            let what = failures.join("; ");
            let note = format!(
                "{} of {} statement(s) failed: {what}",
                report.failed.len(),
                report.failed.len() + report.applied,
            );
            (note, what)
        }
        Err(error) => {
            let what = error.to_string();
            (
                format!("the database side could not be synced: {what}"),
                what,
            )
        }
    };
    let verdict = ctx
        .database_failures
        .failed(&key, pg.metadata.generation, &what);
    let wait = crate::database::retry::backoff(verdict.failures, config.repair_period());
    if verdict.warn {
        warn(ctx, pg, "DatabaseSyncFailed", note.clone());
    } else {
        tracing::debug!(cluster = %pg.name_any(), failures = verdict.failures, "{note}");
    }
    tracing::info!(cluster = %pg.name_any(), failures = verdict.failures, retry_in = ?wait, "database sync failed");
    (status::Database::Failed(note), Some(wait))
}

fn digest_of(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    s.hash(&mut hasher);
    hasher.finish()
}

/// Whether this process has not yet warned about these ignored fields of this cluster: the
/// cached status that would tell may lag behind the status write of the previous reconcile, and
/// one Warning per change is enough.
fn first_warning(pg: &Postgresql, digest: u64) -> bool {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static WARNED: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Default::default);
    let key = pg.metadata.uid.clone().unwrap_or_else(|| pg.name_any());
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    warned.insert(key, digest) != Some(digest)
}

/// Reports a manifest the rules refuse (it reached the API while the webhook was down or
/// bypassed) and waits for it to change: nothing is created or changed for it.
async fn invalid(
    ctx: &Context,
    pg: &Postgresql,
    verdict: &common::rules::Verdict,
    started: Instant,
) -> Result<Action, Error> {
    {
        let message = verdict.message();
        let result = status::Result::Invalid(message.clone());
        if write_status(ctx, pg, &result).await? {
            warn(
                ctx,
                pg,
                "Invalid",
                format!("not creating or changing children: {message}"),
            );
        }
        ctx.metrics.observe(started.elapsed(), Some("invalid"));
        Ok(Action::await_change())
    }
}

/// Applies every child; returns whether the database runs: the StatefulSet's pods all ready and
/// a Patroni leader among them, and when to look again while the StatefulSet is being replaced.
async fn apply_children(
    ctx: &Context,
    valid: &admission::Validated<'_>,
    changes: &Changes,
    config: &common::config::Config,
    namespace: &str,
) -> Result<(status::Pods, Option<Duration>), Error> {
    let pg = valid.pg;
    let owner = config
        .kubernetes
        .enable_owner_references
        .then(|| owner_reference(pg))
        .flatten();
    let mut wanted = desired::build(config, valid, owner.as_ref())?;
    hold_version(ctx, config, pg, namespace, &mut wanted.statefulsets);
    // The claims grow before the StatefulSet is replaced with the new claim template; claims
    // larger than the manifest are kept, and so is their size in the template.
    let volumes = crate::volumes::sync(ctx, config, pg, &ctx.observed.claims).await?;
    if let Some(largest) = volumes.largest() {
        for sts in &mut wanted.statefulsets {
            crate::volumes::keep_size(sts, largest);
        }
    }
    for sts in &wanted.statefulsets {
        crate::rollout::flag(ctx, config, pg, sts)
            .await
            .map_err(Error::Rollout)?;
    }
    let mut replacing = None;
    for sts in &wanted.statefulsets {
        replacing = replacing.or(crate::replace::prepare(ctx, pg, sts).await?);
    }
    if replacing.is_some() {
        // Everything else is written; the StatefulSet once the old one is gone.
        wanted.statefulsets.clear();
    }
    match children::apply_all(ctx, changes, pg, &wanted).await {
        Ok(()) => {}
        Err(Error::Api { source, .. }) if crate::replace::refused_in_place(&source) => {
            let key = ObjectRef::new(pg.cluster_name()).within(namespace);
            if let Some(cached) = ctx.stores.statefulsets.get(&key) {
                let why = format!("the API server refused to update it in place ({source})");
                crate::replace::delete(ctx, pg, &cached, &why).await?;
            }
            replacing = Some(crate::replace::WAIT);
        }
        Err(error) => return Err(error),
    }
    if replacing.is_none() {
        for sts in &wanted.statefulsets {
            crate::rollout::annotations::sync(ctx, pg, sts)
                .await
                .map_err(Error::Rollout)?;
        }
    }
    if replacing.is_some() {
        return Ok((
            status::Pods::Waiting(
                "the StatefulSet is being replaced; its pods keep running".into(),
            ),
            replacing,
        ));
    }

    let key = ObjectRef::new(pg.cluster_name()).within(namespace);
    let Some(sts) = ctx.stores.statefulsets.get(&key) else {
        return Ok((
            status::Pods::Waiting("the StatefulSet is not seen yet".into()),
            None,
        ));
    };
    let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let observed = sts.status.as_ref();
    let ready = observed.and_then(|s| s.ready_replicas).unwrap_or(0);
    let current = observed.map(|s| s.replicas).unwrap_or(0);
    if observed.and_then(|s| s.observed_generation) < sts.metadata.generation
        || ready != want
        || current != want
    {
        return Ok((
            status::Pods::Waiting(format!(
                "{ready} of {want} pods of the StatefulSet are ready"
            )),
            None,
        ));
    }
    Ok((
        ctx.observed.leader(
            config,
            &ctx.stores.endpoints,
            namespace,
            pg.cluster_name(),
            want,
        ),
        None,
    ))
}

/// Keeps the major version the pods run in their template while no maintenance window is open
/// and the change has not begun ([`crate::upgrade::version`]).
fn hold_version(
    ctx: &Context,
    config: &common::config::Config,
    pg: &Postgresql,
    namespace: &str,
    statefulsets: &mut [k8s_openapi::api::apps::v1::StatefulSet],
) {
    let gate = crate::upgrade::gate(config, pg);
    if gate == common::maintenance::Gate::Open {
        return;
    }
    let desired = desired::env::desired_version(config, pg);
    let pods = crate::rollout::pods(ctx, namespace, pg.cluster_name(), instances(ctx, pg));
    let majors: Vec<Option<String>> = pods
        .iter()
        .map(|p| crate::upgrade::version::pod_major(p))
        .collect();
    if let Some(kept) = crate::upgrade::version::held(&desired, &majors, gate) {
        tracing::info!(cluster = %pg.name_any(), %kept, %desired, "major version change held until a maintenance window");
        for sts in statefulsets {
            crate::upgrade::version::hold(sts, &kept, config.enable_lazy_spilo_upgrade);
        }
    }
}

/// The StatefulSet's replicas, from the cache (1 when it is not seen).
fn instances(ctx: &Context, pg: &Postgresql) -> usize {
    let key = ObjectRef::new(pg.cluster_name()).within(&pg.namespace().unwrap_or_default());
    ctx.stores
        .statefulsets
        .get(&key)
        .and_then(|s| s.spec.as_ref()?.replicas)
        .unwrap_or(1)
        .max(0) as usize
}

/// The rolling update's next step, when the StatefulSet is seen; returns when to look again.
async fn rollout_step(
    ctx: &Context,
    config: &common::config::Config,
    pg: &Postgresql,
    namespace: &str,
) -> Result<Option<Duration>, Error> {
    let key = ObjectRef::new(pg.cluster_name()).within(namespace);
    let Some(sts) = ctx.stores.statefulsets.get(&key) else {
        return Ok(None);
    };
    let instances = sts
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize;
    Ok(crate::rollout::step(ctx, config, pg, instances).await?)
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
        &PatchParams {
            field_manager: Some(crate::apply::FIELD_MANAGER.into()),
            ..Default::default()
        },
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
        Error::Api { .. } | Error::Rollout(_) | Error::Volumes(_) | Error::Replace(_) => {
            Action::requeue(repair.min(Duration::from_secs(5)))
        }
    }
}
