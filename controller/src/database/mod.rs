//! The database side of a reconcile: once Patroni has a running leader, the roles, databases,
//! schemas, extensions and default privileges the manifest asks for are made inside PostgreSQL.
//!
//! dereference (leader pod, passwords from the Secrets) → wanted (pure, `common::database`) →
//! password rotation in the Secrets (only when one is due, [`rotation`]) → catalog read (one
//! round-trip per database) → plan (pure) → execute (only when the plan is not empty) → drop of
//! expired rotation users (only after a rotation). A sync of an unchanged cluster is the catalog
//! read and nothing else.

pub mod catalog;
pub mod connect;
pub mod execute;
pub mod infra_secrets;
pub mod inside;
pub mod pool;
pub mod retry;
pub mod rotation;

use crate::context::Context;
use common::config::Config;
use common::crd::Postgresql;
use common::database::deprecation;
use common::database::model::{Actual, Wanted};
use connect::{ConnectError, Target};
use execute::{ExecuteError, Report};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use std::collections::BTreeMap;

/// Why the database side could not be synced this time (a retry follows).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the leader pod {0} has no IP in the cache yet")]
    NoLeaderIp(String),
    #[error("the superuser's Secret {0} has no password yet")]
    NoSuperuserPassword(String),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("reading the catalog of {database}: {message}")]
    Catalog { database: String, message: String },
    #[error(transparent)]
    Execute(#[from] ExecuteError),
}

/// What the sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// Nothing to do by design: database access is off, a standby cluster, no instances.
    Skipped(&'static str),
    /// The plan ran (possibly empty: nothing changed).
    Ran(Report),
}

/// Why a cluster gets no database writes, if it gets none.
pub fn skipped(config: &Config, pg: &Postgresql) -> Option<&'static str> {
    if !config.debug.enable_database_access {
        Some("enable_database_access is off")
    } else if pg.spec.standby.is_some() {
        Some("a standby cluster replays its source and takes no writes")
    } else if pg.spec.number_of_instances <= 0 {
        Some("the cluster has no instances")
    } else {
        None
    }
}

/// The clear passwords of the cluster's Secrets by role name, from the Secret cache.
pub fn passwords(ctx: &Context, config: &Config, pg: &Postgresql) -> BTreeMap<String, String> {
    let namespace = pg.namespace().unwrap_or_default();
    let label = &config.kubernetes.cluster_name_label;
    let decode = |secret: &Secret, key: &str| {
        secret
            .data
            .as_ref()?
            .get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    ctx.stores
        .secrets
        .state()
        .iter()
        .filter(|s| {
            s.labels().get(label).map(String::as_str) == Some(pg.cluster_name())
                && (s.namespace().as_deref() == Some(namespace.as_str())
                    || config.kubernetes.enable_cross_namespace_secret)
        })
        .filter_map(|s| Some((decode(s, "username")?, decode(s, "password")?)))
        .collect()
}

fn leader_ip(ctx: &Context, namespace: &str, leader: &str) -> Result<String, SyncError> {
    ctx.observed
        .pods
        .get(&ObjectRef::<Pod>::new(leader).within(namespace))
        .and_then(|p| p.status.as_ref()?.pod_ip.clone())
        .ok_or_else(|| SyncError::NoLeaderIp(leader.to_string()))
}

async fn read_json(
    client: &tokio_postgres::Client,
    database: &str,
    query: &str,
    params: &[(
        &(dyn tokio_postgres::types::ToSql + Sync),
        tokio_postgres::types::Type,
    )],
) -> Result<String, SyncError> {
    let row = client
        .query_typed(query, params)
        .await
        .map_err(|e| SyncError::Catalog {
            database: database.to_string(),
            message: e.to_string(),
        })?;
    row.first()
        .and_then(|r| r.try_get::<_, String>(0).ok())
        .ok_or_else(|| SyncError::Catalog {
            database: database.to_string(),
            message: "no document returned".into(),
        })
}

/// What [`read_actual`] found, and whether its per-database part was read now (rather than
/// remembered, see [`inside`]) under which key.
struct Read {
    actual: Actual,
    inside_key: u64,
    inside_read: bool,
}

/// Reads what the plan compares: the wanted roles (and `more` role names) and all databases
/// from `postgres`, and the schemas, extensions and default privileges of each existing database
/// that should have some — those from `cluster`'s last read that found nothing to do, when it is
/// younger than `max_age` and nothing it depends on changed.
async fn read_actual(
    ctx: &Context,
    target: &Target,
    wanted: &Wanted,
    more: &[String],
    cluster: &str,
    max_age: std::time::Duration,
) -> Result<Read, SyncError> {
    let mut actual = Actual::default();
    let connection = ctx.connector.connect(target, "postgres").await?;
    let names: Vec<String> = wanted
        .roles
        .iter()
        .map(|r| r.name.clone())
        .chain(more.iter().cloned())
        .collect();
    let doc = read_json(
        connection.client(),
        "postgres",
        catalog::CLUSTER_QUERY,
        &[(&names, tokio_postgres::types::Type::TEXT_ARRAY)],
    )
    .await?;
    drop(connection);
    catalog::parse_cluster(&doc, &mut actual).map_err(|e| SyncError::Catalog {
        database: "postgres".into(),
        message: e.to_string(),
    })?;
    let inside: BTreeMap<String, String> = wanted
        .schemas
        .iter()
        .map(|s| &s.database)
        .chain(wanted.extensions.iter().map(|e| &e.database))
        .chain(wanted.default_privileges.iter().map(|p| &p.database))
        .filter_map(|d| Some((d.clone(), actual.databases.get(d)?.clone())))
        .collect();
    let inside_key = inside::key(wanted, &inside, &target.host);
    if let Some(parts) = ctx.inside_reads.get(cluster, inside_key, max_age) {
        parts.into_actual(&mut actual);
        return Ok(Read {
            actual,
            inside_key,
            inside_read: false,
        });
    }
    for database in inside.keys() {
        let connection = ctx.connector.connect(target, database).await?;
        let doc = read_json(connection.client(), database, catalog::DATABASE_QUERY, &[]).await?;
        catalog::parse_database(database, &doc, &mut actual).map_err(|e| SyncError::Catalog {
            database: database.clone(),
            message: e.to_string(),
        })?;
    }
    Ok(Read {
        actual,
        inside_key,
        inside_read: true,
    })
}

/// Syncs the inside of `pg`, whose Patroni leader runs in pod `leader`.
pub async fn sync(
    ctx: &Context,
    config: &Config,
    pg: &Postgresql,
    leader: &str,
) -> Result<Synced, SyncError> {
    if let Some(why) = skipped(config, pg) {
        return Ok(Synced::Skipped(why));
    }
    let namespace = pg.namespace().unwrap_or_default();
    let mut passwords = passwords(ctx, config, pg);
    let superuser = &config.users.super_username;
    let password = passwords.get(superuser).cloned().ok_or_else(|| {
        SyncError::NoSuperuserPassword(common::naming::secret_name(
            &config.kubernetes.secret_name_template,
            superuser,
            pg.cluster_name(),
        ))
    })?;
    let target = Target {
        cluster: pg.metadata.uid.clone().unwrap_or_else(|| pg.name_any()),
        host: leader_ip(ctx, &namespace, leader)?,
        port: 5432,
        user: superuser.clone(),
        password,
    };
    let roles = crate::roles::gather(ctx, config, pg).await;
    let mut warnings = roles.warnings.clone();
    let mut computed = common::database::sources::wanted(config, pg, roles.sources(&passwords));
    let now = chrono::Utc::now();
    let rotation = rotation::rotate(ctx, config, pg, &computed.wanted, now).await;
    if rotation.update(&mut passwords) {
        computed = common::database::sources::wanted(config, pg, roles.sources(&passwords));
    }
    warnings.extend(computed.warnings);
    let mut wanted = computed.wanted;
    let teams_complete = computed.teams_complete && roles.teams.complete;
    let pairs = common::database::rotation::add_rotation_roles(&mut wanted, &rotation.secrets);
    let key = pg.metadata.uid.clone().unwrap_or_else(|| pg.name_any());
    let remembered = ctx.roles.remembered(&key);
    let removed = deprecation::removed(config, &remembered, &wanted, teams_complete);
    let lookups = deprecation::lookups(config, &wanted, &removed);
    let read = read_actual(ctx, &target, &wanted, &lookups, &key, inside::MAX_AGE).await?;
    let parts = inside::Parts::of(&read.actual);
    let mut actual = read.actual;
    common::database::rotation::copy_settings(&mut wanted, &actual, &pairs);
    let method = common::database::password::Method::from_setting(
        pg.spec
            .postgresql
            .parameters
            .as_ref()
            .and_then(|p| p.get("password_encryption"))
            .map(String::as_str),
    );
    let mut plan = deprecation::plan(config, &wanted, &mut actual, &removed, &mut warnings);
    plan.extend(common::database::plan::plan(&wanted, &actual, method));
    for warning in warnings {
        tracing::warn!(cluster = %pg.name_any(), "{warning}");
    }
    ctx.metrics.database_statements(plan.len());
    let mut report = if plan.is_empty() {
        if read.inside_read {
            ctx.inside_reads.put(&key, read.inside_key, parts);
        }
        Report::default()
    } else {
        // Something changes: the next sync reads every database again.
        ctx.inside_reads.forget(&key);
        execute::run(&ctx.connector, &target, &plan).await?
    };
    report.applied += rotation::cleanup(ctx, config, pg, &target, &rotation, &wanted, now).await;
    let keep_previous = !teams_complete || !report.failed.is_empty();
    ctx.roles
        .remember(&key, deprecation::team_roles(&wanted), keep_previous);
    Ok(Synced::Ran(report))
}
