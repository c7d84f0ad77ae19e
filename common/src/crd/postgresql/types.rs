//! The nested sections of a `postgresql` spec, field for field as Zalando's `acid.zalan.do/v1`.

use crate::crd::schema;
use crate::patterns;
use k8s_openapi::api::core::v1::{ContainerPort, EnvVar};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// PostgreSQL server settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct PostgresqlParam {
    /// Major PostgreSQL version to run, e.g. "17". Raising it starts a major version upgrade
    /// (see major_version_upgrade_mode); lowering it is refused.
    #[schemars(schema_with = "schema::postgres_version")]
    pub version: String,
    /// PostgreSQL configuration parameters (GUCs), e.g. max_connections: "100".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BTreeMap<String, String>>,
}

/// The persistent volume holding PGDATA.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Size of the data volume as a Kubernetes quantity, e.g. "10Gi". Volumes only grow.
    #[schemars(pattern(patterns::MEMORY))]
    pub size: String,
    /// StorageClass of the persistent volume claim; empty means the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Sub-path of the volume to mount as the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// Treat subPath as an expression with environment variables ($(VAR)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_sub_path_expr: Option<bool>,
    /// Provisioned IOPS of an EBS gp3 volume (storage_resize_mode ebs or mixed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 80000))]
    pub iops: Option<i64>,
    /// Throughput in MB/s of an EBS gp3 volume (storage_resize_mode ebs or mixed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 2000))]
    pub throughput: Option<i64>,
    /// EBS volume type, e.g. gp3 (storage_resize_mode mixed).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    /// Label selector for pre-provisioned persistent volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// Patroni settings for the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Patroni {
    /// initdb options; flag-only options (data-checksums, no-locale, ...) take "true".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initdb: Option<BTreeMap<String, String>>,
    /// Custom pg_hba.conf lines replacing Spilo's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_hba: Option<Vec<String>>,
    /// Leader key TTL in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl: Option<u32>,
    /// Seconds Patroni sleeps between HA loops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub loop_wait: Option<u32>,
    /// Seconds to retry DCS and PostgreSQL operations before demoting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub retry_timeout: Option<u32>,
    /// Bytes a replica may lag and still be promoted on failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_lag_on_failover: Option<i64>,
    /// Permanent replication slots: slot name to its settings (type, plugin, database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<BTreeMap<String, BTreeMap<String, String>>>,
    /// Enable synchronous replication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous_mode: Option<bool>,
    /// Refuse writes when no synchronous standby is available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous_mode_strict: Option<bool>,
    /// Number of synchronous standbys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub synchronous_node_count: Option<u32>,
    /// Keep the primary running when the DCS is unreachable but all members agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_mode: Option<bool>,
}

/// Quantities of one container resource set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ResourceDescription {
    /// CPU quantity, e.g. "100m" or "1".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(patterns::CPU))]
    pub cpu: Option<String>,
    /// Memory quantity, e.g. "100Mi".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(patterns::MEMORY))]
    pub memory: Option<String>,
    /// 2 MiB huge pages quantity.
    #[serde(
        rename = "hugepages-2Mi",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(pattern(patterns::MEMORY))]
    pub hugepages_2mi: Option<String>,
    /// 1 GiB huge pages quantity.
    #[serde(
        rename = "hugepages-1Gi",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(pattern(patterns::MEMORY))]
    pub hugepages_1gi: Option<String>,
}

/// Requests and limits of a container; unset values fall back to the operator configuration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Resources {
    /// Resources the scheduler reserves for the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceDescription>,
    /// Upper bounds enforced at run time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceDescription>,
}

/// PgBouncer connection pooler overrides.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionPooler {
    /// Pooler pods per role (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub number_of_instances: Option<i32>,
    /// Schema holding the user_lookup function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Role PgBouncer logs in with; must differ from the superuser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Pooling mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PoolerMode>,
    /// PgBouncer image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_image: Option<String>,
    /// Database connections shared by all pooler pods.
    #[serde(
        rename = "maxDBConnections",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_db_connections: Option<i32>,
    /// Pooler container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
}

/// PgBouncer pool mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PoolerMode {
    /// A server connection is held for the whole client session.
    Session,
    /// A server connection is held for one transaction.
    Transaction,
}

/// Bootstrap the cluster as a copy of another one.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct CloneDescription {
    /// Name of the source cluster.
    pub cluster: String,
    /// UID of the source cluster, used to find its WAL archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::uuid_string")]
    pub uid: Option<String>,
    /// Point in time to restore to (RFC 3339 with a numeric offset); without it a basebackup of
    /// the running source is taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(patterns::TIMESTAMP_WITH_OFFSET))]
    pub timestamp: Option<String>,
    /// S3 path of the source's WAL archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_wal_path: Option<String>,
    /// S3 endpoint of the source's WAL archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// S3 access key id of the source's WAL archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key of the source's WAL archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_secret_access_key: Option<String>,
    /// Use path-style S3 URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_force_path_style: Option<bool>,
}

/// Run the cluster as a standby of another one; exactly one source must be given.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct StandbyDescription {
    /// S3 WAL archive to replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_wal_path: Option<String>,
    /// GCS WAL archive to replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gs_wal_path: Option<String>,
    /// Host of a remote primary to stream from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_host: Option<String>,
    /// Port of the remote primary (default 5432).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_port: Option<String>,
    /// Replication slot to use on the remote primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_primary_slot_name: Option<String>,
}

/// Custom TLS certificate for PostgreSQL.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    /// Secret holding the certificate and key, mounted at /tls.
    pub secret_name: String,
    /// Certificate file name in the secret (default tls.crt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_file: Option<String>,
    /// Private key file name in the secret (default tls.key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<String>,
    /// CA file name, in the certificate secret or in caSecretName.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Separate secret with the CA, mounted at /tlsca.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_name: Option<String>,
}

/// An extra volume mounted into the pod's containers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdditionalVolume {
    /// Volume name.
    pub name: String,
    /// Mount path inside the containers.
    pub mount_path: String,
    /// Sub-path of the volume to mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// Treat subPath as an expression with environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_sub_path_expr: Option<bool>,
    /// Containers to mount into: names, or "all"; default the postgres container only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_containers: Option<Vec<String>>,
    /// Any Kubernetes volume source (emptyDir, secret, configMap, persistentVolumeClaim, ...).
    /// Kept as an object: k8s-openapi has no stand-alone VolumeSource type, and the pod builder
    /// turns it into a Volume named `name`.
    #[schemars(schema_with = "crate::crd::schema::preserve_unknown_object")]
    pub volume_source: serde_json::Map<String, serde_json::Value>,
}

/// A sidecar container added to every database pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Sidecar {
    /// Container name (defaults to sidecar-<index>).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Container image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Container resources; unset values fall back to the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Container ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::crd::schema::preserve_unknown_object_list")]
    pub ports: Option<Vec<ContainerPort>>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::crd::schema::preserve_unknown_object_list")]
    pub env: Option<Vec<EnvVar>>,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

/// A database whose owner, reader and writer roles the operator manages.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreparedDatabase {
    /// Schemas to create with their default roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schemas: Option<BTreeMap<String, PreparedSchema>>,
    /// Also create login users for the database roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_users: Option<bool>,
    /// Extensions to create: extension name to target schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<BTreeMap<String, String>>,
    /// Namespace for the secrets of the database users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_namespace: Option<String>,
}

/// A schema of a prepared database.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreparedSchema {
    /// Create the owner, reader and writer roles of the schema (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_roles: Option<bool>,
    /// Also create login users for the schema roles (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_users: Option<bool>,
}

/// A change-data-capture stream (FabricEventStream).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stream {
    /// Application the events are for.
    pub application_id: String,
    /// Database whose tables are streamed.
    pub database: String,
    /// Tables to stream: table name to its event settings.
    pub tables: BTreeMap<String, StreamTable>,
    /// Filter expression per table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<BTreeMap<String, Option<String>>>,
    /// Events per batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// CPU of the stream application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(patterns::CPU))]
    pub cpu: Option<String>,
    /// Memory of the stream application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(patterns::MEMORY))]
    pub memory: Option<String>,
    /// Route failing events to a recovery event type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_recovery: Option<bool>,
}

/// Event settings of a streamed table.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamTable {
    /// Event type of the table's changes.
    pub event_type: String,
    /// Event type for events that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_event_type: Option<String>,
    /// Skip recovery for this table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_recovery: Option<bool>,
    /// Column holding the event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_column: Option<String>,
    /// Column holding the event payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_column: Option<String>,
}
