//! The `postgresql` custom resource (`acid.zalan.do/v1`), wire-compatible with Zalando's.

mod status;
mod types;

pub use status::{ClusterStatus, PostgresqlStatus};
pub use types::*;

use crate::crd::schema;
use crate::patterns;
use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, EnvVar, NodeAffinity, Probe, Toleration, TopologySpreadConstraint,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Desired state of a PostgreSQL cluster run by Spilo and Patroni.
// Each printcolumn(...) repeats `type_ = "string"`, which clippy mistakes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "acid.zalan.do",
    version = "v1",
    kind = "postgresql",
    root = "Postgresql",
    plural = "postgresqls",
    singular = "postgresql",
    shortname = "pg",
    category = "all",
    namespaced,
    status = "PostgresqlStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "A PostgreSQL cluster managed by the operator (Zalando-compatible).",
    label("app.kubernetes.io/name", "postgres-operator"),
    printcolumn(
        name = "Team",
        type_ = "string",
        json_path = ".spec.teamId",
        description = "Team responsible for the cluster"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".spec.postgresql.version",
        description = "PostgreSQL major version"
    ),
    printcolumn(
        name = "Pods",
        type_ = "integer",
        json_path = ".spec.numberOfInstances",
        description = "Number of pods requested"
    ),
    printcolumn(
        name = "Volume",
        type_ = "string",
        json_path = ".spec.volume.size",
        description = "Size of each data volume"
    ),
    printcolumn(
        name = "CPU-Request",
        type_ = "string",
        json_path = ".spec.resources.requests.cpu",
        description = "CPU request of the postgres container"
    ),
    printcolumn(
        name = "Memory-Request",
        type_ = "string",
        json_path = ".spec.resources.requests.memory",
        description = "Memory request of the postgres container"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.PostgresClusterStatus",
        description = "Current sync status of the cluster"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the cluster is or is not ready: PodsReady, PodsNotReady, UnsupportedField (a field the operator ignores yet), Invalid, ReconcileFailed"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PostgresqlSpec {
    /// Team that owns the cluster; becomes the `team` label and, with
    /// enable_team_id_clustername_prefix, the required prefix of the cluster name.
    pub team_id: String,
    /// Number of database pods (primary plus replicas), clamped by min_instances/max_instances.
    #[schemars(range(min = 0))]
    pub number_of_instances: i32,
    /// Spilo image overriding the operator's docker_image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_image: Option<String>,
    /// PostgreSQL version and parameters.
    pub postgresql: PostgresqlParam,
    /// Persistent volume for the data directory.
    pub volume: Volume,
    /// Patroni settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patroni: Option<Patroni>,
    /// Resources of the postgres container; unset values come from the operator configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,

    /// Run a connection pooler in front of the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_connection_pooler: Option<bool>,
    /// Run a connection pooler in front of the replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_replica_connection_pooler: Option<bool>,
    /// Connection pooler settings; its presence alone enables the primary pooler unless
    /// enableConnectionPooler says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pooler: Option<ConnectionPooler>,

    /// User id the Spilo container runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spilo_run_as_user: Option<i64>,
    /// Group id the Spilo container runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spilo_run_as_group: Option<i64>,
    /// fsGroup of the database pods.
    #[serde(
        rename = "spiloFSGroup",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub spilo_fs_group: Option<i64>,

    /// Expose the primary through a LoadBalancer service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_master_load_balancer: Option<bool>,
    /// Expose the replicas through a LoadBalancer service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_replica_load_balancer: Option<bool>,
    /// Expose the primary pooler through a LoadBalancer service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_master_pooler_load_balancer: Option<bool>,
    /// Expose the replica pooler through a LoadBalancer service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_replica_pooler_load_balancer: Option<bool>,
    /// Expose the primary through a NodePort service (wins over a load balancer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_master_node_port: Option<bool>,
    /// Expose the replicas through a NodePort service (wins over a load balancer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_replica_node_port: Option<bool>,
    /// Expose the primary pooler through a NodePort service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_master_pooler_node_port: Option<bool>,
    /// Expose the replica pooler through a NodePort service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_replica_pooler_node_port: Option<bool>,
    /// Node port of the primary service (0 lets Kubernetes choose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_node_port: Option<i32>,
    /// Node port of the replica service (0 lets Kubernetes choose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_node_port: Option<i32>,
    /// Node port of the primary pooler service (0 lets Kubernetes choose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_pooler_node_port: Option<i32>,
    /// Node port of the replica pooler service (0 lets Kubernetes choose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_pooler_node_port: Option<i32>,
    /// Deprecated: use enableMasterLoadBalancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_load_balancer: Option<bool>,
    /// Deprecated: use enableReplicaLoadBalancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_load_balancer: Option<bool>,
    /// CIDRs allowed to reach load-balanced services; empty or missing means 127.0.0.1/32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::cidr_list")]
    pub allowed_source_ranges: Option<Vec<String>>,

    /// Roles to create: role name to its flags (LOGIN is added unless NOLOGIN is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::user_flags_map")]
    pub users: Option<BTreeMap<String, Option<Vec<String>>>>,
    /// Users whose password is rotated by creating new dated users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_with_secret_rotation: Option<Vec<String>>,
    /// Users whose password is rotated in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_with_in_place_secret_rotation: Option<Vec<String>>,
    /// Users excluded from password rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_ignoring_secret_rotation: Option<Vec<String>>,
    /// Databases to create: database name to owner (a role from users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databases: Option<BTreeMap<String, String>>,
    /// Databases with operator-managed owner, reader and writer roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared_databases: Option<BTreeMap<String, PreparedDatabase>>,
    /// Windows for disruptive operations: "HH:MM-HH:MM" or "Ddd:HH:MM-HH:MM" (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::maintenance_window_list")]
    pub maintenance_windows: Option<Vec<String>>,

    /// Bootstrap from another cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone: Option<CloneDescription>,
    /// Run as a standby of another cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<StandbyDescription>,

    /// Scheduler for the database pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    /// Node affinity of the database pods, merged with node_readiness_label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::preserve_unknown_object")]
    pub node_affinity: Option<NodeAffinity>,
    /// Topology spread constraints of the database pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::preserve_unknown_object_list")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Tolerations of the database pods (replace the configured toleration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::preserve_unknown_object_list")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Liveness probe of the postgres container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::preserve_unknown_object")]
    pub liveness_probe: Option<Probe>,
    /// Extra containers in every database pod (requires enable_sidecars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecars: Option<Vec<Sidecar>>,
    /// Init containers of the database pods (requires enable_init_containers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::preserve_unknown_object_list")]
    pub init_containers: Option<Vec<Container>>,
    /// Deprecated: use initContainers.
    #[serde(
        rename = "init_containers",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "schema::preserve_unknown_object_list")]
    pub init_containers_old: Option<Vec<Container>>,
    /// PriorityClass of the database pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_priority_class_name: Option<String>,
    /// Deprecated: use podPriorityClassName.
    #[serde(
        rename = "pod_priority_class_name",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pod_priority_class_name_old: Option<String>,
    /// Mount a memory-backed /dev/shm (only true overrides the configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_shm_volume: Option<bool>,

    /// Run logical backups (pg_dumpall) as a CronJob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_logical_backup: Option<bool>,
    /// Retention of logical backups, e.g. "3 days" (S3 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_backup_retention: Option<String>,
    /// Cron schedule of logical backups, e.g. "30 00 * * *".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(patterns::CRON))]
    pub logical_backup_schedule: Option<String>,

    /// Annotations for the database pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_annotations: Option<BTreeMap<String, String>>,
    /// Annotations for all services of the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_annotations: Option<BTreeMap<String, String>>,
    /// Annotations for the primary service (win over serviceAnnotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_service_annotations: Option<BTreeMap<String, String>>,
    /// Annotations for the replica service (win over serviceAnnotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_service_annotations: Option<BTreeMap<String, String>>,

    /// Custom TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Extra volumes for the pod's containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_volumes: Option<Vec<AdditionalVolume>>,
    /// Change-data-capture streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<Vec<Stream>>,
    /// Extra environment variables of the postgres container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::preserve_unknown_object_list")]
    pub env: Option<Vec<EnvVar>>,
    /// Environment sources of the postgres container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::preserve_unknown_object_list")]
    pub env_from: Option<Vec<EnvFromSource>>,
}

impl Postgresql {
    /// The cluster name (metadata.name), which names the StatefulSet and services.
    pub fn cluster_name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// The value of one annotation, if set.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }
}
