//! Option groups of the operator configuration, each field with Zalando's code default.

use k8s_openapi::api::core::v1::{Container, Probe};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Declares one option group: the struct, its serde/schema derives and a `Default` impl built from
/// the `= default` of each field, so an option's type, default and description live on one line.
macro_rules! option_group {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                pub $field:ident : $ty:ty = $default:expr,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
        #[serde(default)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                pub $field: $ty,
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $($field: $default,)* }
            }
        }
    };
}

fn s(value: &str) -> String {
    value.to_string()
}

fn list(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Default Spilo image of Zalando v2.0.1.
pub const DEFAULT_SPILO_IMAGE: &str = "ghcr.io/zalando/spilo-18:4.1-p2";

option_group! {
    /// The whole operator configuration; general options sit at the top level.
    pub struct Config {
        /// Register or update the postgresql CRD at start.
        pub enable_crd_registration: bool = true,
        /// Categories set on the registered CRD (kubectl get all).
        pub crd_categories: Vec<String> = list(&["all"]),
        /// Change images in the StatefulSet only; pods pick them up when recreated for another reason.
        pub enable_lazy_spilo_upgrade: bool = false,
        /// Pass PGVERSION to Spilo (else bin_dir in SPILO_CONFIGURATION).
        pub enable_pgversion_env_var: bool = true,
        /// Set ENABLE_WAL_PATH_COMPAT=true for Spilo (undocumented upstream).
        pub enable_spilo_wal_path_compat: bool = false,
        /// Only accept clusters named <teamId>-<name>.
        pub enable_team_id_clustername_prefix: bool = false,
        /// etcd host:port for Patroni; empty uses the Kubernetes API as DCS.
        pub etcd_host: String = String::new(),
        /// Patroni keeps its state in ConfigMaps (true) or Endpoints (false).
        pub kubernetes_use_configmaps: bool = true,
        /// Spilo image for clusters that do not set spec.dockerImage.
        pub docker_image: String = s(DEFAULT_SPILO_IMAGE),
        /// Deprecated: sidecar name to image, added to every cluster.
        pub sidecar_docker_images: BTreeMap<String, String> = BTreeMap::new(),
        /// Sidecar containers added to every cluster (OperatorConfiguration form only).
        #[schemars(schema_with = "crate::crd::schema::preserve_unknown_object_list")]
        pub sidecars: Vec<Container> = Vec::new(),
        /// Mount a memory-backed /dev/shm into the database pods.
        pub enable_shm_volume: bool = true,
        /// Number of parallel workers.
        #[schemars(range(min = 1))]
        pub workers: u32 = 8,
        /// Upper bound of numberOfInstances; -1 disables.
        #[schemars(range(min = -1))]
        pub max_instances: i32 = -1,
        /// Lower bound of numberOfInstances; -1 disables.
        #[schemars(range(min = -1))]
        pub min_instances: i32 = -1,
        /// Manifest annotation whose value "true" skips min/max instance clamping.
        pub ignore_instance_limits_annotation_key: String = String::new(),
        /// Manifest annotation whose value "true" skips resource min/max enforcement.
        pub ignore_resources_limits_annotation_key: String = String::new(),
        /// Honour maintenance windows; when false every moment is inside a window.
        pub enable_maintenance_windows: bool = true,
        /// Global maintenance windows; a manifest's own windows take precedence.
        pub maintenance_windows: Vec<String> = Vec::new(),
        /// Interval of the full sync of all clusters (Go duration).
        pub resync_period: String = s("30m"),
        /// Interval of the repair sync of failed clusters (Go duration).
        pub repair_period: String = s("5m"),
        /// Raise memory requests to the memory limits of all operator-made containers.
        pub set_memory_request_to_limit: bool = false,
        /// Postgres roles the operator creates.
        pub users: Users = Users::default(),
        /// Major version upgrades.
        pub major_version_upgrade: MajorVersionUpgrade = MajorVersionUpgrade::default(),
        /// Kubernetes objects and pod settings.
        pub kubernetes: Kubernetes = Kubernetes::default(),
        /// Default resources of the postgres container.
        pub postgres_pod_resources: PostgresPodResources = PostgresPodResources::default(),
        /// Patroni defaults.
        pub patroni: PatroniOptions = PatroniOptions::default(),
        /// Operator timeouts.
        pub timeouts: Timeouts = Timeouts::default(),
        /// Services and load balancers.
        pub load_balancer: LoadBalancer = LoadBalancer::default(),
        /// Cloud storage for WAL and logs.
        pub aws_or_gcp: AwsOrGcp = AwsOrGcp::default(),
        /// Logical backup CronJobs.
        pub logical_backup: LogicalBackup = LogicalBackup::default(),
        /// Debugging.
        pub debug: Debug = Debug::default(),
        /// Teams API and human users.
        pub teams_api: TeamsApi = TeamsApi::default(),
        /// Logging and the REST API.
        pub logging_rest_api: LoggingRestApi = LoggingRestApi::default(),
        /// Deprecated Scalyr sidecar.
        pub scalyr: Scalyr = Scalyr::default(),
        /// Connection pooler defaults.
        pub connection_pooler: ConnectionPoolerOptions = ConnectionPoolerOptions::default(),
    }
}

option_group! {
    /// Postgres roles the operator creates.
    pub struct Users {
        /// Superuser created by Spilo.
        pub super_username: String = s("postgres"),
        /// Replication user.
        pub replication_username: String = s("standby"),
        /// Roles granted to every database owner.
        pub additional_owner_roles: Vec<String> = Vec::new(),
        /// Rotate passwords of eligible login roles.
        pub enable_password_rotation: bool = false,
        /// Days between password rotations.
        pub password_rotation_interval: u32 = 90,
        /// Days to keep rotation users. Zalando's CRD schema says 120; its code uses 180.
        pub password_rotation_user_retention: u32 = 180,
    }
}

option_group! {
    /// Major version upgrades.
    pub struct MajorVersionUpgrade {
        /// off, manual or full.
        #[schemars(extend("enum" = ["off", "manual", "full"]))]
        pub major_version_upgrade_mode: String = s("manual"),
        /// Teams still upgraded when the mode is off.
        pub major_version_upgrade_team_allow_list: Vec<String> = Vec::new(),
        /// In full mode, clusters below this version are upgraded.
        pub minimal_major_version: String = s("14"),
        /// Version used for automatic upgrades.
        pub target_major_version: String = s("18"),
    }
}

/// One secret describing infrastructure roles.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct InfrastructureRole {
    /// [namespace/]name of the Secret holding the roles (the operator's namespace when
    /// unqualified); a ConfigMap of the same name may describe roles by name.
    #[serde(default)]
    pub secretname: String,
    /// Secret key of the user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userkey: Option<String>,
    /// Secret key of the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passwordkey: Option<String>,
    /// Secret key of the role the user is member of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolekey: Option<String>,
    /// User name used when the secret has no user key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaultuservalue: Option<String>,
    /// Role used when the secret has no role key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaultrolevalue: Option<String>,
    /// Secret key of a YAML role description (user_flags, inrole, db_parameters, admin_role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// The keys are prefixes of numbered roles: <userkey>1, <passwordkey>1, <rolekey>1, <userkey>2, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<bool>,
}

option_group! {
    /// Kubernetes objects and pod settings.
    pub struct Kubernetes {
        /// Add a finalizer and delete children before the postgresql disappears.
        pub enable_finalizers: bool = false,
        /// Set owner references on children (cascading delete; bypasses delete protection upstream).
        pub enable_owner_references: bool = false,
        /// Annotation that must hold today's date (YYYY-MM-DD) to delete a cluster.
        pub delete_annotation_date_key: String = String::new(),
        /// Annotation that must hold the cluster name to delete a cluster.
        pub delete_annotation_name_key: String = String::new(),
        /// ServiceAccount of the database pods.
        pub pod_service_account_name: String = s("postgres-pod"),
        /// YAML or JSON of the pod ServiceAccount to create per namespace.
        pub pod_service_account_definition: String = String::new(),
        /// YAML or JSON of the RoleBinding to create per namespace.
        pub pod_service_account_role_binding_definition: String = String::new(),
        /// terminationGracePeriod of the database pods (Go duration).
        pub pod_terminate_grace_period: String = s("5m"),
        /// Liveness probe of the postgres container (OperatorConfiguration form only).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "crate::crd::schema::preserve_unknown_object")]
        pub liveness_probe: Option<Probe> = None,
        /// Annotations of every database pod.
        pub custom_pod_annotations: BTreeMap<String, String> = BTreeMap::new(),
        /// Regexes of manifest annotations copied to the StatefulSet and pooler.
        pub downscaler_annotations: Vec<String> = Vec::new(),
        /// Annotation keys ignored when comparing objects.
        pub ignored_annotations: Vec<String> = Vec::new(),
        /// Namespace to watch; empty is the operator's namespace, "*" all.
        pub watched_namespace: String = String::new(),
        /// Name of the primary PodDisruptionBudget ({cluster} is replaced).
        pub pdb_name_format: String = s("postgres-{cluster}-pdb"),
        /// Select only the primary in the primary PodDisruptionBudget.
        pub pdb_master_label_selector: bool = true,
        /// StatefulSet PVC retention: when_deleted and when_scaled, retain or delete.
        pub persistent_volume_claim_retention_policy: BTreeMap<String, String> =
            map(&[("when_deleted", "retain"), ("when_scaled", "retain")]),
        /// Delete user secrets when a cluster is deleted.
        pub enable_secrets_deletion: bool = true,
        /// Delete PVCs when a cluster is deleted.
        pub enable_persistent_volume_claim_deletion: bool = true,
        /// Create effective PodDisruptionBudgets (false keeps them relaxed).
        pub enable_pod_disruption_budget: bool = true,
        /// Allow namespace.user users with their secret in that namespace.
        pub enable_cross_namespace_secret: bool = false,
        /// Allow spec.initContainers.
        pub enable_init_containers: bool = true,
        /// Allow spec.sidecars.
        pub enable_sidecars: bool = true,
        /// Share the PostgreSQL socket directory with sidecars.
        pub share_pgsocket_with_sidecars: bool = false,
        /// Secret name template. Zalando's docs prefix {namespace}; its code does not.
        pub secret_name_template: String = s("{username}.{cluster}.credentials.{tprkind}.{tprgroup}"),
        /// Cluster DNS domain.
        pub cluster_domain: String = s("cluster.local"),
        /// [namespace/]name of the secret with the Teams API token.
        pub oauth_token_secret_name: String = s("postgresql-operator"),
        /// Deprecated: [namespace/]name of the single infrastructure roles secret.
        pub infrastructure_roles_secret_name: String = String::new(),
        /// Infrastructure role secrets.
        pub infrastructure_roles_secrets: Vec<InfrastructureRole> = Vec::new(),
        /// Manifest annotation keys copied to children.
        pub inherited_annotations: Vec<String> = Vec::new(),
        /// Label key holding the pod role.
        pub pod_role_label: String = s("spilo-role"),
        /// Labels on every child object.
        pub cluster_labels: BTreeMap<String, String> = map(&[("application", "spilo")]),
        /// Manifest label keys copied to children.
        pub inherited_labels: Vec<String> = Vec::new(),
        /// Label key holding the cluster name.
        pub cluster_name_label: String = s("cluster-name"),
        /// Node labels a database node must have.
        pub node_readiness_label: BTreeMap<String, String> = BTreeMap::new(),
        /// How node_readiness_label merges with spec.nodeAffinity: OR or AND.
        #[schemars(extend("enum" = ["OR", "AND"]))]
        pub node_readiness_label_merge: String = s("OR"),
        /// One toleration (key, operator, value, effect) for database pods.
        pub toleration: BTreeMap<String, String> = BTreeMap::new(),
        /// [namespace/]name of a ConfigMap whose keys become pod environment variables.
        pub pod_environment_configmap: String = String::new(),
        /// Secret whose keys become pod environment variables.
        pub pod_environment_secret: String = String::new(),
        /// PriorityClass of the database pods.
        pub pod_priority_class_name: String = String::new(),
        /// runAsUser of the database pods.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub spilo_runasuser: Option<i64> = None,
        /// runAsGroup of the database pods.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub spilo_runasgroup: Option<i64> = None,
        /// fsGroup of the database pods.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub spilo_fsgroup: Option<i64> = None,
        /// Run the postgres container privileged.
        pub spilo_privileged: bool = false,
        /// allowPrivilegeEscalation of the postgres container.
        pub spilo_allow_privilege_escalation: bool = true,
        /// Capabilities added to the postgres container.
        pub additional_pod_capabilities: Vec<String> = Vec::new(),
        /// Timeout for moving primaries off drained nodes (Go duration).
        pub master_pod_move_timeout: String = s("20m"),
        /// Spread database pods with pod anti-affinity.
        pub enable_pod_antiaffinity: bool = false,
        /// Topology key of the pod anti-affinity.
        pub pod_antiaffinity_topology_key: String = s("kubernetes.io/hostname"),
        /// Use preferred instead of required anti-affinity.
        pub pod_antiaffinity_preferred_during_scheduling: bool = false,
        /// StatefulSet podManagementPolicy: ordered_ready or parallel.
        #[schemars(extend("enum" = ["ordered_ready", "parallel"]))]
        pub pod_management_policy: String = s("ordered_ready"),
        /// HTTP readiness probe on Patroni's /readiness.
        pub enable_readiness_probe: bool = false,
        /// How volumes are resized: pvc (the persistent volume claims grow to spec.volume.size;
        /// the default), off, or ebs and mixed, which need the AWS API this operator does not
        /// call: ebs resizes nothing and mixed only grows the claims (a configuration warning
        /// says so).
        #[schemars(extend("enum" = ["pvc", "ebs", "mixed", "off"]))]
        pub storage_resize_mode: String = s("pvc"),
    }
}

option_group! {
    /// Default resources of the postgres container. Zalando's code defaults are empty; its
    /// shipped manifests set 100m/100Mi requests and 1/500Mi limits.
    pub struct PostgresPodResources {
        /// Default CPU request.
        pub default_cpu_request: String = String::new(),
        /// Default memory request.
        pub default_memory_request: String = String::new(),
        /// Default CPU limit ("", "0" or null: none).
        pub default_cpu_limit: String = String::new(),
        /// Default memory limit ("", "0" or null: none).
        pub default_memory_limit: String = String::new(),
        /// Cap on CPU requests.
        pub max_cpu_request: String = String::new(),
        /// Cap on memory requests.
        pub max_memory_request: String = String::new(),
        /// Floor of CPU limits.
        pub min_cpu_limit: String = String::new(),
        /// Floor of memory limits.
        pub min_memory_limit: String = String::new(),
    }
}

option_group! {
    /// Patroni defaults.
    pub struct PatroniOptions {
        /// Default of Patroni's failsafe_mode.
        pub enable_patroni_failsafe_mode: bool = false,
    }
}

option_group! {
    /// Operator timeouts (Go durations).
    pub struct Timeouts {
        /// Retry interval of Patroni API calls.
        pub patroni_api_check_interval: String = s("1s"),
        /// Timeout of Patroni API calls.
        pub patroni_api_check_timeout: String = s("5s"),
        /// Poll interval when waiting for objects.
        pub resource_check_interval: String = s("3s"),
        /// Timeout when waiting for objects.
        pub resource_check_timeout: String = s("10m"),
        /// Timeout waiting for a pod's role label.
        pub pod_label_wait_timeout: String = s("10m"),
        /// Timeout waiting for a pod's deletion.
        pub pod_deletion_wait_timeout: String = s("10m"),
        /// Unused upstream. Zalando's docs say 5s; its code 4s.
        pub ready_wait_interval: String = s("4s"),
        /// Unused upstream.
        pub ready_wait_timeout: String = s("30s"),
    }
}

option_group! {
    /// Services and load balancers.
    pub struct LoadBalancer {
        /// Annotations of every service (manifest annotations win).
        pub custom_service_annotations: BTreeMap<String, String> = BTreeMap::new(),
        /// {hostedzone} of the DNS name formats.
        pub db_hosted_zone: String = s("db.example.com"),
        /// Primary service type LoadBalancer. Zalando's code default is true; its shipped
        /// manifests set false and an OperatorConfiguration that omits it means false.
        pub enable_master_load_balancer: bool = true,
        /// Primary pooler service type LoadBalancer.
        pub enable_master_pooler_load_balancer: bool = false,
        /// Replica service type LoadBalancer.
        pub enable_replica_load_balancer: bool = false,
        /// Replica pooler service type LoadBalancer.
        pub enable_replica_pooler_load_balancer: bool = false,
        /// externalTrafficPolicy of LoadBalancer and NodePort services: Cluster or Local.
        #[schemars(extend("enum" = ["Cluster", "Local"]))]
        pub external_traffic_policy: String = s("Cluster"),
        /// external-dns name of the primary load balancer.
        pub master_dns_name_format: String = s("{cluster}.{namespace}.{hostedzone}"),
        /// Deprecated second name of the primary load balancer.
        pub master_legacy_dns_name_format: String = s("{cluster}.{team}.{hostedzone}"),
        /// external-dns name of the replica load balancer.
        pub replica_dns_name_format: String = s("{cluster}-repl.{namespace}.{hostedzone}"),
        /// Deprecated second name of the replica load balancer.
        pub replica_legacy_dns_name_format: String = s("{cluster}-repl.{team}.{hostedzone}"),
        /// Primary service type NodePort (wins over LoadBalancer).
        pub enable_master_node_port: bool = false,
        /// Primary pooler service type NodePort.
        pub enable_master_pooler_node_port: bool = false,
        /// Replica service type NodePort.
        pub enable_replica_node_port: bool = false,
        /// Replica pooler service type NodePort.
        pub enable_replica_pooler_node_port: bool = false,
    }
}

option_group! {
    /// Cloud storage for WAL and logs.
    pub struct AwsOrGcp {
        /// S3 bucket of the WAL archive.
        pub wal_s3_bucket: String = String::new(),
        /// GCS bucket of the WAL archive.
        pub wal_gs_bucket: String = String::new(),
        /// Path of the GCP credentials file.
        pub gcp_credentials: String = String::new(),
        /// Azure storage account of the WAL archive.
        pub wal_az_storage_account: String = String::new(),
        /// S3 bucket for logs.
        pub log_s3_bucket: String = String::new(),
        /// kube2iam role of the database pods.
        pub kube_iam_role: String = String::new(),
        /// IAM role ARN for IRSA on the pod ServiceAccount.
        pub irsa_role_arn: String = String::new(),
        /// AWS region.
        pub aws_region: String = s("eu-central-1"),
        /// Secret mounted into every container.
        pub additional_secret_mount: String = String::new(),
        /// Mount path of additional_secret_mount.
        pub additional_secret_mount_path: String = String::new(),
    }
}

option_group! {
    /// Logical backup CronJobs.
    pub struct LogicalBackup {
        /// CPU request of backup pods.
        pub logical_backup_cpu_request: String = String::new(),
        /// Memory request of backup pods.
        pub logical_backup_memory_request: String = String::new(),
        /// CPU limit of backup pods.
        pub logical_backup_cpu_limit: String = String::new(),
        /// Memory limit of backup pods.
        pub logical_backup_memory_limit: String = String::new(),
        /// Backup image.
        pub logical_backup_docker_image: String =
            s("ghcr.io/zalando/postgres-operator/logical-backup:v2.0.1"),
        /// GCS credentials path.
        pub logical_backup_google_application_credentials: String = String::new(),
        /// Prefix of the CronJob name.
        pub logical_backup_job_prefix: String = s("logical-backup-"),
        /// s3, gcs or az.
        #[schemars(extend("enum" = ["s3", "gcs", "az"]))]
        pub logical_backup_provider: String = s("s3"),
        /// Azure storage account.
        pub logical_backup_azure_storage_account_name: String = String::new(),
        /// Azure container.
        pub logical_backup_azure_storage_container: String = String::new(),
        /// Azure account key.
        pub logical_backup_azure_storage_account_key: String = String::new(),
        /// S3 access key id.
        pub logical_backup_s3_access_key_id: String = String::new(),
        /// S3 secret access key.
        pub logical_backup_s3_secret_access_key: String = String::new(),
        /// S3 bucket.
        pub logical_backup_s3_bucket: String = String::new(),
        /// S3 key prefix.
        pub logical_backup_s3_bucket_prefix: String = s("spilo"),
        /// S3 endpoint.
        pub logical_backup_s3_endpoint: String = String::new(),
        /// S3 region.
        pub logical_backup_s3_region: String = String::new(),
        /// S3 server-side encryption. Zalando's docs and manifests say AES256; its code is empty.
        pub logical_backup_s3_sse: String = String::new(),
        /// Retention, e.g. "3 days".
        pub logical_backup_s3_retention_time: String = String::new(),
        /// Cron schedule.
        pub logical_backup_schedule: String = s("30 00 * * *"),
        /// Secret whose keys become job environment variables.
        pub logical_backup_cronjob_environment_secret: String = String::new(),
        /// successfulJobsHistoryLimit of the CronJob.
        pub logical_backup_successful_jobs_history_limit: i32 = 3,
        /// failedJobsHistoryLimit of the CronJob.
        pub logical_backup_failed_jobs_history_limit: i32 = 3,
        /// ttlSecondsAfterFinished of the backup Jobs.
        pub logical_backup_ttl_seconds_after_finished: i32 = 86400,
    }
}

option_group! {
    /// Debugging.
    pub struct Debug {
        /// Debug log level.
        pub debug_logging: bool = true,
        /// Connect to PostgreSQL to manage roles and databases.
        pub enable_database_access: bool = true,
    }
}

option_group! {
    /// Teams API and human users.
    pub struct TeamsApi {
        /// Fetch team members from the Teams API. Zalando's code default is true; its shipped
        /// manifests set false and an OperatorConfiguration that omits it means false.
        pub enable_teams_api: bool = true,
        /// Teams API URL.
        pub teams_api_url: String = s("https://teams.example.com/api/"),
        /// Role parameters of human roles.
        pub team_api_role_configuration: BTreeMap<String, String> = map(&[("log_statement", "all")]),
        /// Owning team members become superusers.
        pub enable_team_superuser: bool = false,
        /// Role granted to team members.
        pub team_admin_role: String = s("admin"),
        /// Create manifest roles WITH ADMIN team_admin_role.
        pub enable_admin_role_for_users: bool = true,
        /// Group role of human users.
        pub pam_role_name: String = s("zalandos"),
        /// PAM OAuth2 configuration.
        pub pam_configuration: String =
            s("https://info.example.com/oauth2/tokeninfo?access_token= uid realm=/employees"),
        /// Role names manifests may not use.
        pub protected_role_names: Vec<String> = list(&["admin", "cron_admin"]),
        /// Teams whose members are superusers everywhere.
        pub postgres_superuser_teams: Vec<String> = Vec::new(),
        /// Suffix of renamed removed members.
        pub role_deletion_suffix: String = s("_deleted"),
        /// Rename and NOLOGIN removed members.
        pub enable_team_member_deprecation: bool = false,
        /// Watch PostgresTeam objects. Zalando's CRD schema defaults to true; its code to false.
        pub enable_postgres_team_crd: bool = false,
        /// Honour additionalSuperuserTeams of PostgresTeam objects.
        pub enable_postgres_team_crd_superusers: bool = false,
    }
}

option_group! {
    /// Logging and the REST API.
    pub struct LoggingRestApi {
        /// Port of the REST API.
        pub api_port: i32 = 8080,
        /// Log lines kept per cluster and worker.
        pub ring_log_lines: i32 = 100,
        /// Spec changes kept per cluster.
        pub cluster_history_entries: i32 = 1000,
    }
}

option_group! {
    /// Deprecated Scalyr sidecar (created only with both key and image).
    pub struct Scalyr {
        /// Scalyr API key.
        pub scalyr_api_key: String = String::new(),
        /// Scalyr image.
        pub scalyr_image: String = String::new(),
        /// Scalyr server URL.
        pub scalyr_server_url: String = s("https://upload.eu.scalyr.com"),
        /// CPU request of the Scalyr sidecar.
        pub scalyr_cpu_request: String = s("100m"),
        /// Memory request of the Scalyr sidecar.
        pub scalyr_memory_request: String = s("50Mi"),
        /// CPU limit of the Scalyr sidecar.
        pub scalyr_cpu_limit: String = s("1"),
        /// Memory limit of the Scalyr sidecar.
        pub scalyr_memory_limit: String = s("500Mi"),
    }
}

option_group! {
    /// Connection pooler defaults.
    pub struct ConnectionPoolerOptions {
        /// Pooler pods per role. Zalando's docs say at least 2; its code allows 1.
        #[schemars(range(min = 1))]
        pub connection_pooler_number_of_instances: i32 = 2,
        /// Schema of the user_lookup function.
        pub connection_pooler_schema: String = s("pooler"),
        /// Pooler login role (must differ from the superuser).
        pub connection_pooler_user: String = s("pooler"),
        /// PgBouncer image.
        pub connection_pooler_image: String = s("ghcr.io/zalando/postgres-operator/pgbouncer:v2.0.1"),
        /// Database connections shared by all pooler pods.
        pub connection_pooler_max_db_connections: i32 = 60,
        /// session or transaction.
        #[schemars(extend("enum" = ["session", "transaction"]))]
        pub connection_pooler_mode: String = s("transaction"),
        /// CPU request of pooler pods.
        pub connection_pooler_default_cpu_request: String = String::new(),
        /// Memory request of pooler pods.
        pub connection_pooler_default_memory_request: String = String::new(),
        /// CPU limit of pooler pods.
        pub connection_pooler_default_cpu_limit: String = String::new(),
        /// Memory limit of pooler pods.
        pub connection_pooler_default_memory_limit: String = String::new(),
    }
}
