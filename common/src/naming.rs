//! Names of the objects the operator creates for a cluster, exactly as Zalando names them, so a
//! cluster moved from Zalando's operator keeps its Services, Secrets and volumes.

/// `{tprkind}` in `secret_name_template`.
pub const CRD_KIND: &str = "postgresql";
/// `{tprgroup}` in `secret_name_template`.
pub const CRD_GROUP: &str = "acid.zalan.do";
/// The placeholders Zalando substitutes in `secret_name_template`.
pub const SECRET_TEMPLATE_PLACEHOLDERS: &[&str] =
    &["{username}", "{cluster}", "{tprkind}", "{tprgroup}"];

/// Secret holding a user's credentials. `_` becomes `-` because Secret names cannot contain it;
/// the dot of a cross-namespace user (`namespace.user`) is kept.
pub fn secret_name(template: &str, username: &str, cluster: &str) -> String {
    template
        .replace("{username}", &username.replace('_', "-"))
        .replace("{cluster}", cluster)
        .replace("{tprkind}", CRD_KIND)
        .replace("{tprgroup}", CRD_GROUP)
}

/// Namespace of a user's secret: a `namespace.user` name puts it into `namespace` when
/// `enable_cross_namespace_secret` is on, otherwise it lives beside the cluster.
pub fn secret_namespace<'a>(
    username: &'a str,
    cluster_namespace: &'a str,
    cross_namespace: bool,
) -> &'a str {
    match username.split_once('.') {
        Some((namespace, _)) if cross_namespace && !namespace.is_empty() => namespace,
        _ => cluster_namespace,
    }
}

/// The StatefulSet (and the headless governing name) of a cluster.
pub fn statefulset_name(cluster: &str) -> String {
    cluster.to_string()
}

/// Pod `n` of a cluster.
pub fn pod_name(cluster: &str, ordinal: i32) -> String {
    format!("{cluster}-{ordinal}")
}

/// The volume claim template; PVCs are `pgdata-<cluster>-<n>`.
pub const DATA_VOLUME_NAME: &str = "pgdata";

/// PVC of pod `n`.
pub fn pvc_name(cluster: &str, ordinal: i32) -> String {
    format!("{DATA_VOLUME_NAME}-{cluster}-{ordinal}")
}

/// Pod role, as Patroni labels the pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The primary.
    Master,
    /// A streaming replica.
    Replica,
}

impl Role {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Replica => "replica",
        }
    }
}

/// Service (and Endpoints) of a role: `<cluster>` or `<cluster>-repl`.
pub fn service_name(cluster: &str, role: Role) -> String {
    match role {
        Role::Master => cluster.to_string(),
        Role::Replica => format!("{cluster}-repl"),
    }
}

/// Patroni's headless config Service.
pub fn config_service_name(cluster: &str) -> String {
    format!("{cluster}-config")
}

/// Patroni's DCS objects (ConfigMaps or Endpoints) of a cluster.
pub fn patroni_object_names(cluster: &str) -> [String; 4] {
    ["leader", "config", "sync", "failover"].map(|suffix| format!("{cluster}-{suffix}"))
}

/// The primary PodDisruptionBudget from `pdb_name_format`.
pub fn primary_pdb_name(format: &str, cluster: &str) -> String {
    format.replace("{cluster}", cluster)
}

/// The PodDisruptionBudget that protects pods during critical operations (major upgrades).
pub fn critical_op_pdb_name(cluster: &str) -> String {
    format!("postgres-{cluster}-critical-op-pdb")
}

/// Connection pooler Deployment and Service of a role.
pub fn pooler_name(cluster: &str, role: Role) -> String {
    match role {
        Role::Master => format!("{cluster}-pooler"),
        Role::Replica => format!("{cluster}-pooler-repl"),
    }
}

/// Logical backup CronJob: prefix plus cluster, cut to the 52 characters a CronJob name may have
/// (its Jobs append 11), without a trailing dash.
pub fn logical_backup_job_name(prefix: &str, cluster: &str) -> String {
    let mut name: String = format!("{prefix}{cluster}").chars().take(52).collect();
    while name.ends_with('-') {
        name.pop();
    }
    name
}

/// Inputs of the external-dns name formats.
#[derive(Clone, Copy, Debug)]
pub struct DnsNameParts<'a> {
    /// Cluster name.
    pub cluster: &'a str,
    /// Cluster namespace.
    pub namespace: &'a str,
    /// Team id (lower-cased when substituted).
    pub team: &'a str,
    /// `db_hosted_zone`.
    pub hosted_zone: &'a str,
}

/// Expands `master_dns_name_format` / `replica_dns_name_format` (and the legacy formats, for
/// which the caller passes the cluster name without its team prefix).
pub fn dns_name(format: &str, parts: DnsNameParts<'_>) -> String {
    format
        .replace("{cluster}", parts.cluster)
        .replace("{namespace}", parts.namespace)
        .replace("{team}", &parts.team.to_lowercase())
        .replace("{hostedzone}", parts.hosted_zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "{username}.{cluster}.credentials.{tprkind}.{tprgroup}";

    #[test]
    fn secret_names() {
        assert_eq!(
            secret_name(TEMPLATE, "foo_user", "acid-minimal-cluster"),
            "foo-user.acid-minimal-cluster.credentials.postgresql.acid.zalan.do"
        );
        assert_eq!(
            secret_name(TEMPLATE, "postgres", "acid-test"),
            "postgres.acid-test.credentials.postgresql.acid.zalan.do"
        );
        assert_eq!(
            secret_name(TEMPLATE, "test.db_user", "acid-test"),
            "test.db-user.acid-test.credentials.postgresql.acid.zalan.do"
        );
        assert_eq!(secret_name("{cluster}-{username}", "a_b", "c"), "c-a-b");
        assert_eq!(secret_namespace("test.db_user", "default", true), "test");
        assert_eq!(
            secret_namespace("test.db_user", "default", false),
            "default"
        );
        assert_eq!(secret_namespace("db_user", "default", true), "default");
    }

    #[test]
    fn object_names() {
        assert_eq!(statefulset_name("acid-x"), "acid-x");
        assert_eq!(pod_name("acid-x", 1), "acid-x-1");
        assert_eq!(pvc_name("acid-x", 0), "pgdata-acid-x-0");
        assert_eq!(service_name("acid-x", Role::Master), "acid-x");
        assert_eq!(service_name("acid-x", Role::Replica), "acid-x-repl");
        assert_eq!(config_service_name("acid-x"), "acid-x-config");
        assert_eq!(patroni_object_names("acid-x")[0], "acid-x-leader");
        assert_eq!(
            primary_pdb_name("postgres-{cluster}-pdb", "acid-x"),
            "postgres-acid-x-pdb"
        );
        assert_eq!(
            critical_op_pdb_name("acid-x"),
            "postgres-acid-x-critical-op-pdb"
        );
        assert_eq!(pooler_name("acid-x", Role::Master), "acid-x-pooler");
        assert_eq!(pooler_name("acid-x", Role::Replica), "acid-x-pooler-repl");
    }

    #[test]
    fn logical_backup_names_fit_a_cronjob() {
        assert_eq!(
            logical_backup_job_name("logical-backup-", "acid-minimal-cluster"),
            "logical-backup-acid-minimal-cluster"
        );
        let long = "a".repeat(36) + "-bcdef";
        let name = logical_backup_job_name("logical-backup-", &long);
        assert!(name.len() <= 52 && !name.ends_with('-'), "{name}");
        assert_eq!(name, format!("logical-backup-{}", "a".repeat(36)));
    }

    #[test]
    fn dns_names() {
        let parts = DnsNameParts {
            cluster: "acid-x",
            namespace: "prod",
            team: "ACID",
            hosted_zone: "db.example.com",
        };
        assert_eq!(
            dns_name("{cluster}.{namespace}.{hostedzone}", parts),
            "acid-x.prod.db.example.com"
        );
        assert_eq!(
            dns_name("{cluster}-repl.{namespace}.{hostedzone}", parts),
            "acid-x-repl.prod.db.example.com"
        );
        assert_eq!(
            dns_name(
                "{cluster}.{team}.{hostedzone}",
                DnsNameParts {
                    cluster: "x",
                    ..parts
                }
            ),
            "x.acid.db.example.com"
        );
    }
}
