//! Which `postgresql` spec fields the operator acts on, and which it accepts but ignores for now.
//!
//! The CRD accepts every field of Zalando's `acid.zalan.do/v1`, so a manifest written for Zalando
//! applies unchanged. Some of those fields do nothing here yet; a user must be told so instead of
//! seeing a Running cluster and assuming, say, that it was cloned or that its connection pooler
//! exists. [`ACTED_ON`] and [`NOT_YET`] together cover every property of the generated schema
//! (the `fields` integration test walks it), and this one table drives both the webhook's
//! `kubectl` warnings ([`warnings`]) and the controller's `Ready=False` condition
//! ([`CONDITION_REASON`], [`summary`]). Implementing a field means moving its entry from
//! [`NOT_YET`] to [`ACTED_ON`].
//!
//! Paths are written the way users write the manifest (`spec.connectionPooler`,
//! `spec.postgresql.parameters`); an entry covers its whole subtree.
//!
//! "Acted on" means the value shapes what the operator writes (StatefulSet, Spilo environment and
//! `SPILO_CONFIGURATION`, Services, PodDisruptionBudgets, Secrets) the way it does in Zalando. A
//! changed pod setting reaches running pods through the rolling update (the controller's
//! `rollout` module); the changes that do not take effect on a running cluster are listed in
//! [`NOT_YET_ON_CHANGE`].

use crate::crd::Postgresql;
use crate::crd::postgresql::PostgresqlSpec;
use serde_json::Value;
use std::fmt;
use std::sync::LazyLock;

/// Reason of the `Ready=False` condition of a cluster whose manifest sets a [`NOT_YET`] field.
pub const CONDITION_REASON: &str = "UnsupportedField";

/// Spec fields whose values the operator acts on (each entry covers its subtree).
pub static ACTED_ON: &[&str] = &[
    // Labels, the cluster-name prefix rule and the external-dns names.
    "spec.teamId",
    // StatefulSet replicas (clamped by min/max_instances) and the PodDisruptionBudgets.
    "spec.numberOfInstances",
    "spec.dockerImage",
    // version: PGVERSION (or bin_dir) and the version rules; parameters: SPILO_CONFIGURATION,
    // local ones under postgresql.parameters, the rest under bootstrap.dcs.
    "spec.postgresql",
    // The pgdata claim template and its mount.
    "spec.volume.size",
    "spec.volume.storageClass",
    "spec.volume.subPath",
    "spec.volume.isSubPathExpr",
    "spec.volume.selector",
    // Every sub-field reaches SPILO_CONFIGURATION: initdb → bootstrap.initdb, pg_hba →
    // postgresql.pg_hba, the rest → bootstrap.dcs; synchronous_mode_strict and
    // synchronous_node_count also size the primary PodDisruptionBudget.
    "spec.patroni",
    "spec.resources",
    // CLONE_* and STANDBY_* variables of the postgres container, read by Spilo at bootstrap
    // (controller/src/desired/sources.rs).
    "spec.clone",
    "spec.standby",
    // Roles, databases, schemas, extensions and default privileges inside PostgreSQL
    // (common::database, controller/src/database), and the login users' Secrets (in a prepared
    // database's secretNamespace with enable_cross_namespace_secret, common::database::secrets).
    "spec.users",
    "spec.databases",
    "spec.preparedDatabases",
    // Password rotation in the users' Secrets, followed by the role sync
    // (common::database::rotation, controller/src/database/rotation.rs).
    "spec.usersWithSecretRotation",
    "spec.usersWithInPlaceSecretRotation",
    "spec.usersIgnoringSecretRotation",
    "spec.spiloRunAsUser",
    "spec.spiloRunAsGroup",
    "spec.spiloFSGroup",
    // Type, ports, source ranges and annotations of the master and replica Services.
    "spec.enableMasterLoadBalancer",
    "spec.enableReplicaLoadBalancer",
    "spec.enableMasterNodePort",
    "spec.enableReplicaNodePort",
    "spec.masterNodePort",
    "spec.replicaNodePort",
    "spec.useLoadBalancer",
    "spec.replicaLoadBalancer",
    "spec.allowedSourceRanges",
    "spec.schedulerName",
    "spec.nodeAffinity",
    // What Zalando gates with them: a changed major version in the pod template and the major
    // version upgrade (controller/src/upgrade), the switchover off a drained node
    // (controller/src/drain).
    "spec.maintenanceWindows",
    "spec.topologySpreadConstraints",
    "spec.tolerations",
    "spec.livenessProbe",
    // Added to the pod (name, image, ports, env, command, resources), if enable_sidecars.
    "spec.sidecars",
    // Added to the pod, if enable_init_containers.
    "spec.initContainers",
    "spec.init_containers",
    "spec.podPriorityClassName",
    "spec.pod_priority_class_name",
    "spec.enableShmVolume",
    "spec.podAnnotations",
    "spec.serviceAnnotations",
    "spec.masterServiceAnnotations",
    "spec.replicaServiceAnnotations",
    "spec.env",
    "spec.envFrom",
];

/// When a [`NOT_YET`] field counts as used, beyond holding a value.
///
/// A few fields only matter when another one switches their feature on (in Zalando too); they are
/// not reported while it is off, because the switch itself is reported whenever it is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Whenever it holds a value that would do something (not null, false, 0 or empty).
    Set,
    /// Set, and the primary's connection pooler would run.
    MasterPooler,
    /// Set, and the replicas' connection pooler would run.
    ReplicaPooler,
    /// Set, and `enableLogicalBackup` is true.
    LogicalBackup,
    /// The `connectionPooler` section: present at all while `enableConnectionPooler` is unset
    /// (its presence alone enables the primary pooler, as in Zalando), or set while a pooler runs.
    PoolerSection,
}

/// A field the CRD accepts but the operator does not act on yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotYet {
    /// Field path as users write it, e.g. `spec.clone`; covers the subtree.
    pub path: &'static str,
    /// What does not happen, for the user.
    pub reason: &'static str,
    /// When the field counts as used.
    pub when: When,
}

const fn not_yet(path: &'static str, reason: &'static str) -> NotYet {
    NotYet {
        path,
        reason,
        when: When::Set,
    }
}

const fn gated(path: &'static str, reason: &'static str, when: When) -> NotYet {
    NotYet { path, reason, when }
}

const NO_EBS: &str = "the operator does not modify EBS volumes (storage_resize_mode ebs and mixed are not implemented)";
const NO_POOLER_SERVICE: &str =
    "there is no connection pooler, so there is no pooler Service to expose";
const NO_LOGICAL_BACKUP: &str = "no logical backup CronJob is created";

/// Spec fields the operator accepts but does not act on yet, in the order they are reported.
pub static NOT_YET: &[NotYet] = &[
    not_yet("spec.volume.iops", NO_EBS),
    not_yet("spec.volume.throughput", NO_EBS),
    not_yet("spec.volume.type", NO_EBS),
    not_yet(
        "spec.enableConnectionPooler",
        "no PgBouncer Deployment, Service or pooler role is created for the primary",
    ),
    not_yet(
        "spec.enableReplicaConnectionPooler",
        "no PgBouncer Deployment, Service or pooler role is created for the replicas",
    ),
    gated(
        "spec.connectionPooler",
        "no PgBouncer Deployment, Service or pooler role is created",
        When::PoolerSection,
    ),
    gated(
        "spec.enableMasterPoolerLoadBalancer",
        NO_POOLER_SERVICE,
        When::MasterPooler,
    ),
    gated(
        "spec.enableReplicaPoolerLoadBalancer",
        NO_POOLER_SERVICE,
        When::ReplicaPooler,
    ),
    gated(
        "spec.enableMasterPoolerNodePort",
        NO_POOLER_SERVICE,
        When::MasterPooler,
    ),
    gated(
        "spec.enableReplicaPoolerNodePort",
        NO_POOLER_SERVICE,
        When::ReplicaPooler,
    ),
    gated(
        "spec.masterPoolerNodePort",
        NO_POOLER_SERVICE,
        When::MasterPooler,
    ),
    gated(
        "spec.replicaPoolerNodePort",
        NO_POOLER_SERVICE,
        When::ReplicaPooler,
    ),
    not_yet("spec.enableLogicalBackup", NO_LOGICAL_BACKUP),
    gated(
        "spec.logicalBackupRetention",
        NO_LOGICAL_BACKUP,
        When::LogicalBackup,
    ),
    gated(
        "spec.logicalBackupSchedule",
        NO_LOGICAL_BACKUP,
        When::LogicalBackup,
    ),
    not_yet(
        "spec.tls",
        "the certificate Secret is not mounted; PostgreSQL keeps Spilo's self-signed certificate",
    ),
    not_yet(
        "spec.additionalVolumes",
        "the volumes are not added to the pods",
    ),
    not_yet(
        "spec.streams",
        "no FabricEventStream, publication or replication slot is created",
    ),
];

/// A field the operator acts on when a cluster is created but whose later changes never take
/// effect yet (pod recreation does not help either). Only an UPDATE can tell, so only the webhook
/// can report these ([`ignored_changes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotOnChange {
    /// Field path as users write it; covers the subtree.
    pub path: &'static str,
    /// What does not happen when it changes, for the user.
    pub reason: &'static str,
}

const fn on_change(path: &'static str, reason: &'static str) -> NotOnChange {
    NotOnChange { path, reason }
}

/// [`ACTED_ON`] fields whose changes to an existing cluster do not take effect yet.
///
/// Not listed: `spec.postgresql.parameters` and Patroni's dynamic settings (`spec.patroni.ttl`,
/// `loop_wait`, `retry_timeout`, `maximum_lag_on_failover`, `slots`, the synchronous settings,
/// `failsafe_mode`), which the controller patches through Patroni's REST API with the restarts
/// they need (`controller/src/dcs`), the local-only parameters (such as `shared_buffers`),
/// which change with the pods' rolling update, `spec.patroni.initdb` (bootstrap-only in Zalando
/// too) and `spec.patroni.pg_hba` (Patroni's local configuration, applied when a pod is
/// recreated).
pub static NOT_YET_ON_CHANGE: &[NotOnChange] = &[
    on_change(
        "spec.clone",
        "a clone source is read only when the cluster is created; the running cluster keeps its data",
    ),
    on_change(
        "spec.standby",
        "Patroni's standby_cluster configuration is not updated yet: a removed section does not promote the cluster and a changed source is not followed",
    ),
];

/// A field of one manifest that the operator ignores, with the reason users read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IgnoredField {
    /// Field path, e.g. `spec.clone`.
    pub path: &'static str,
    /// What does not happen.
    pub reason: &'static str,
}

impl fmt::Display for IgnoredField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.path, self.reason)
    }
}

/// Whether `entry` covers `path`: the same path or one of its descendants (through `.`, or `[`
/// for list items).
pub fn covers(entry: &str, path: &str) -> bool {
    path.strip_prefix(entry)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// The schema of `spec` as installed: whether an object is a struct (fixed properties) or a map
/// decides what "set" means for it.
static SPEC_SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let crd =
        serde_json::to_value(crate::crd::generate::postgresql()).expect("a CRD always serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
});

/// The value and schema at `path` (`spec.a.b`, properties only), if the value is there.
fn lookup<'a>(spec: &'a Value, path: &str) -> Option<(&'a Value, &'static Value)> {
    let mut value = spec;
    let mut schema: &'static Value = &SPEC_SCHEMA;
    for name in path.strip_prefix("spec.")?.split('.') {
        value = value.get(name)?;
        schema = &schema["properties"][name];
    }
    Some((value, schema))
}

/// Whether a value would do something: `null`, `false`, `0`, `""`, empty lists and maps do not,
/// nor a struct or list none of whose members would (`clone: {cluster: ""}`). A map with any key
/// is set, whatever its values: `users: {app: null}` declares a role.
fn is_set(value: &Value, schema: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(|item| is_set(item, &schema["items"])),
        Value::Object(members) => match schema["properties"].as_object() {
            Some(properties) => members
                .iter()
                .any(|(name, member)| is_set(member, properties.get(name).unwrap_or(&Value::Null))),
            None => !members.is_empty(),
        },
    }
}

/// Zalando's `needMasterConnectionPoolerWorker`.
fn master_pooler(spec: &PostgresqlSpec) -> bool {
    match spec.enable_connection_pooler {
        Some(enabled) => enabled,
        None => spec.connection_pooler.is_some(),
    }
}

/// Zalando's `needReplicaConnectionPoolerWorker`.
fn replica_pooler(spec: &PostgresqlSpec) -> bool {
    spec.enable_replica_connection_pooler == Some(true)
}

impl NotYet {
    fn used(&self, typed: &PostgresqlSpec, spec: &Value) -> bool {
        let Some((value, schema)) = lookup(spec, self.path) else {
            return false;
        };
        let set = is_set(value, schema);
        match self.when {
            When::Set => set,
            When::MasterPooler => set && master_pooler(typed),
            When::ReplicaPooler => set && replica_pooler(typed),
            When::LogicalBackup => set && typed.enable_logical_backup == Some(true),
            When::PoolerSection => {
                typed.enable_connection_pooler.is_none()
                    || (set && (master_pooler(typed) || replica_pooler(typed)))
            }
        }
    }
}

fn spec_value(pg: &Postgresql) -> Value {
    serde_json::to_value(&pg.spec).expect("a spec always serializes")
}

/// The [`NOT_YET`] fields this manifest uses, in table order.
pub fn ignored_fields(pg: &Postgresql) -> Vec<IgnoredField> {
    let spec = spec_value(pg);
    NOT_YET
        .iter()
        .filter(|field| field.used(&pg.spec, &spec))
        .map(|field| IgnoredField {
            path: field.path,
            reason: field.reason,
        })
        .collect()
}

/// One admission warning per ignored field of the manifest.
pub fn warnings(pg: &Postgresql) -> Vec<String> {
    ignored_fields(pg)
        .iter()
        .map(|field| {
            format!(
                "{} is not implemented yet and will be ignored: {}",
                field.path, field.reason
            )
        })
        .collect()
}

/// The message of the `Ready=False` condition ([`CONDITION_REASON`]) listing the ignored fields
/// with their reasons; `None` when there are none.
pub fn summary(fields: &[IgnoredField]) -> Option<String> {
    if fields.is_empty() {
        return None;
    }
    let details: Vec<String> = fields.iter().map(ToString::to_string).collect();
    Some(format!(
        "these fields are not implemented yet and are ignored: {}",
        details.join("; ")
    ))
}

/// The [`NOT_YET_ON_CHANGE`] fields an update changes (unset values compare equal to absent ones).
pub fn ignored_changes(old: &Postgresql, new: &Postgresql) -> Vec<IgnoredField> {
    ignored_changes_from(&spec_value(old), new)
}

/// [`ignored_changes`] given the old spec as JSON; it needs no more of it than the subtrees of
/// [`NOT_YET_ON_CHANGE`] (the webhook reads only those from `oldObject`).
pub fn ignored_changes_from(old: &Value, new: &Postgresql) -> Vec<IgnoredField> {
    let new = spec_value(new);
    let effective = |spec: &Value, path: &str| -> Option<Value> {
        lookup(spec, path)
            .filter(|(value, schema)| is_set(value, schema))
            .map(|(value, _)| value.clone())
    };
    NOT_YET_ON_CHANGE
        .iter()
        .filter(|field| effective(old, field.path) != effective(&new, field.path))
        .map(|field| IgnoredField {
            path: field.path,
            reason: field.reason,
        })
        .collect()
}

/// One admission warning per [`ignored_changes`] entry of an update.
pub fn change_warnings(old: &Postgresql, new: &Postgresql) -> Vec<String> {
    change_warnings_from(&spec_value(old), new)
}

/// [`change_warnings`] given the old spec as JSON ([`ignored_changes_from`]).
pub fn change_warnings_from(old: &Value, new: &Postgresql) -> Vec<String> {
    ignored_changes_from(old, new)
        .iter()
        .map(|field| {
            format!(
                "{} was changed, but the change will not take effect: {}",
                field.path, field.reason
            )
        })
        .collect()
}
