//! Environment of the postgres container (Zalando's `generateSpiloPodEnvVars`, §4(h)).
//!
//! Groups in order, first occurrence of a name (case-insensitive) winning: 1. operator-fixed
//! variables, 2. `spec.env`, 3. and 4. clone and standby ([`super::sources`]), 7. WAL/log
//! bucket settings. `pod_environment_secret`/`pod_environment_configmap` (5, 6, which need API
//! reads) and TLS (8) are added by later issues; [`append`] is the de-duplicating helper they use.

use super::spilo;
use common::config::Config;
use common::crd::Postgresql;
use common::labels::spilo_labels_env;
use common::naming::secret_name;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, SecretKeySelector};

/// Spilo's data root.
pub const PGROOT: &str = "/home/postgres/pgdata/pgroot";

/// A plain variable.
pub fn value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// A variable from a pod field (`apiVersion: v1`, as the API server defaults it).
pub fn field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: path.into(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// The `password` key of a user's secret.
pub fn password_ref(config: &Config, name: &str, user: &str, cluster: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret_name(&config.kubernetes.secret_name_template, user, cluster),
                key: "password".into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// Appends the variables whose names (case-insensitively) are not there yet.
pub fn append(env: &mut Vec<EnvVar>, extra: impl IntoIterator<Item = EnvVar>) {
    for var in extra {
        if !env.iter().any(|e| e.name.eq_ignore_ascii_case(&var.name)) {
            env.push(var);
        }
    }
}

/// The major version Spilo should run: the manifest's, or `target_major_version` in `full`
/// upgrade mode when the manifest is below `minimal_major_version`.
pub fn desired_version(config: &Config, pg: &Postgresql) -> String {
    let upgrade = &config.major_version_upgrade;
    let version = pg.spec.postgresql.version.clone();
    let number = |v: &str| v.trim().parse::<u32>().ok();
    if upgrade.major_version_upgrade_mode == "full"
        && let (Some(current), Some(minimal)) =
            (number(&version), number(&upgrade.minimal_major_version))
        && current < minimal
    {
        return upgrade.target_major_version.clone();
    }
    version
}

fn operator_fixed(config: &Config, pg: &Postgresql) -> Vec<EnvVar> {
    let cluster = pg.cluster_name();
    let users = &config.users;
    let k8s = &config.kubernetes;
    let version = desired_version(config, pg);
    let mut env = vec![
        value("SCOPE", cluster),
        value("PGROOT", PGROOT),
        field("POD_IP", "status.podIP"),
        field("POD_NAMESPACE", "metadata.namespace"),
        value("PGUSER_SUPERUSER", &users.super_username),
        value("KUBERNETES_SCOPE_LABEL", &k8s.cluster_name_label),
        value("KUBERNETES_ROLE_LABEL", &k8s.pod_role_label),
        password_ref(
            config,
            "PGPASSWORD_SUPERUSER",
            &users.super_username,
            cluster,
        ),
        value("PGUSER_STANDBY", &users.replication_username),
        password_ref(
            config,
            "PGPASSWORD_STANDBY",
            &users.replication_username,
            cluster,
        ),
        value("PAM_OAUTH2", &config.teams_api.pam_configuration),
        value("HUMAN_ROLE", &config.teams_api.pam_role_name),
    ];
    if config.enable_spilo_wal_path_compat {
        env.push(value("ENABLE_WAL_PATH_COMPAT", "true"));
    }
    if config.enable_pgversion_env_var {
        env.push(value("PGVERSION", &version));
    }
    env.push(value("KUBERNETES_LABELS", spilo_labels_env(config)));
    env.push(value(
        "SPILO_CONFIGURATION",
        spilo::configuration(config, pg, &version),
    ));
    if config.etcd_host.is_empty() {
        env.push(value("DCS_ENABLE_KUBERNETES_API", "true"));
        if k8s.enable_pod_disruption_budget {
            env.push(value(
                "KUBERNETES_BOOTSTRAP_LABELS",
                r#"{"critical-operation":"true"}"#,
            ));
        }
    } else {
        env.push(value("ETCD_HOST", &config.etcd_host));
    }
    if super::uses_configmaps(config) {
        env.push(value("KUBERNETES_USE_CONFIGMAPS", "true"));
    }
    env
}

fn buckets(config: &Config, pg: &Postgresql) -> Vec<EnvVar> {
    let cloud = &config.aws_or_gcp;
    let suffix = match pg.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => format!("/{uid}"),
        _ => String::new(),
    };
    let mut env = Vec::new();
    for (name, bucket) in [
        ("WAL_S3_BUCKET", &cloud.wal_s3_bucket),
        ("WAL_GS_BUCKET", &cloud.wal_gs_bucket),
        ("AZURE_STORAGE_ACCOUNT", &cloud.wal_az_storage_account),
    ] {
        if !bucket.is_empty() {
            env.push(value(name, bucket));
            env.push(value("WAL_BUCKET_SCOPE_SUFFIX", &suffix));
            env.push(value("WAL_BUCKET_SCOPE_PREFIX", ""));
        }
    }
    if !cloud.gcp_credentials.is_empty() {
        env.push(value(
            "GOOGLE_APPLICATION_CREDENTIALS",
            &cloud.gcp_credentials,
        ));
    }
    if !cloud.log_s3_bucket.is_empty() {
        env.push(value("LOG_S3_BUCKET", &cloud.log_s3_bucket));
        env.push(value("LOG_BUCKET_SCOPE_SUFFIX", &suffix));
        env.push(value("LOG_BUCKET_SCOPE_PREFIX", ""));
    }
    env
}

/// The environment of the postgres container.
pub fn postgres(config: &Config, pg: &Postgresql) -> Vec<EnvVar> {
    let mut env = Vec::new();
    append(&mut env, operator_fixed(config, pg));
    append(&mut env, pg.spec.env.iter().flatten().cloned());
    if let Some(clone) = &pg.spec.clone {
        append(&mut env, super::sources::clone(config, clone));
    }
    if let Some(standby) = &pg.spec.standby {
        append(&mut env, super::sources::standby(config, standby));
    }
    append(&mut env, buckets(config, pg));
    env
}

/// Variables prepended to every sidecar's own environment.
pub fn sidecar(config: &Config, pg: &Postgresql) -> Vec<EnvVar> {
    let superuser = &config.users.super_username;
    vec![
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
        value("POSTGRES_USER", superuser),
        password_ref(config, "POSTGRES_PASSWORD", superuser, pg.cluster_name()),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn names(env: &[EnvVar]) -> Vec<&str> {
        env.iter().map(|e| e.name.as_str()).collect()
    }

    fn get<'a>(env: &'a [EnvVar], name: &str) -> &'a EnvVar {
        env.iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    #[test]
    fn operator_fixed_order_with_defaults() {
        let env = postgres(&config(), &minimal());
        assert_eq!(
            names(&env),
            [
                "SCOPE",
                "PGROOT",
                "POD_IP",
                "POD_NAMESPACE",
                "PGUSER_SUPERUSER",
                "KUBERNETES_SCOPE_LABEL",
                "KUBERNETES_ROLE_LABEL",
                "PGPASSWORD_SUPERUSER",
                "PGUSER_STANDBY",
                "PGPASSWORD_STANDBY",
                "PAM_OAUTH2",
                "HUMAN_ROLE",
                "PGVERSION",
                "KUBERNETES_LABELS",
                "SPILO_CONFIGURATION",
                "DCS_ENABLE_KUBERNETES_API",
                "KUBERNETES_BOOTSTRAP_LABELS",
                "KUBERNETES_USE_CONFIGMAPS",
            ]
        );
        assert_eq!(
            get(&env, "SCOPE").value.as_deref(),
            Some("acid-minimal-cluster")
        );
        assert_eq!(get(&env, "PGVERSION").value.as_deref(), Some("17"));
        assert_eq!(
            get(&env, "KUBERNETES_LABELS").value.as_deref(),
            Some(r#"{"application":"spilo"}"#)
        );
        let secret = get(&env, "PGPASSWORD_STANDBY")
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            secret.name,
            "standby.acid-minimal-cluster.credentials.postgresql.acid.zalan.do"
        );
        assert_eq!(secret.key, "password");
        let ip = get(&env, "POD_IP")
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap();
        assert_eq!(ip.field_path, "status.podIP");
    }

    #[test]
    fn etcd_wal_compat_and_no_pgversion() {
        let mut config = config();
        config.etcd_host = "etcd:2379".into();
        config.enable_spilo_wal_path_compat = true;
        config.enable_pgversion_env_var = false;
        let env = postgres(&config, &minimal());
        let names = names(&env);
        assert!(names.contains(&"ETCD_HOST") && names.contains(&"ENABLE_WAL_PATH_COMPAT"));
        for absent in [
            "DCS_ENABLE_KUBERNETES_API",
            "KUBERNETES_USE_CONFIGMAPS",
            "PGVERSION",
        ] {
            assert!(!names.contains(&absent), "{absent}");
        }
        config.etcd_host.clear();
        config.kubernetes.enable_pod_disruption_budget = false;
        config.kubernetes_use_configmaps = false;
        let env = postgres(&config, &minimal());
        assert!(env.iter().any(|e| e.name == "DCS_ENABLE_KUBERNETES_API"));
        assert!(!env.iter().any(|e| e.name == "KUBERNETES_BOOTSTRAP_LABELS"));
        assert!(!env.iter().any(|e| e.name == "KUBERNETES_USE_CONFIGMAPS"));
    }

    #[test]
    fn manifest_env_is_deduplicated_and_overrides_buckets() {
        let mut config = config();
        config.aws_or_gcp.wal_s3_bucket = "operator-bucket".into();
        let mut pg = complete();
        pg.spec.env.as_mut().unwrap().extend([
            value("scope", "hijack"),
            value("MINIO_SECRET_KEY", "second"),
        ]);
        let env = postgres(&config, &pg);
        assert_eq!(
            get(&env, "SCOPE").value.as_deref(),
            Some("acid-test-cluster")
        );
        assert!(!env.iter().any(|e| e.name == "scope"));
        // First occurrence wins, case-insensitively: the manifest's wal_s3_bucket beats the
        // operator's bucket, and the second MINIO_SECRET_KEY is dropped.
        assert_eq!(
            get(&env, "wal_s3_bucket").value.as_deref(),
            Some("my-custom-bucket")
        );
        assert!(!env.iter().any(|e| e.name == "WAL_S3_BUCKET"));
        assert!(!env.iter().any(|e| e.name == "MINIO_SECRET_KEY"));
        assert_eq!(
            get(&env, "WAL_BUCKET_SCOPE_SUFFIX").value.as_deref(),
            Some("/0c4b6f0e-1111-2222-3333-444455556666")
        );
        assert_eq!(
            get(&env, "WAL_BUCKET_SCOPE_PREFIX").value.as_deref(),
            Some("")
        );
    }

    #[test]
    fn full_upgrade_mode_raises_the_version() {
        let mut config = config();
        config.major_version_upgrade.major_version_upgrade_mode = "full".into();
        config.major_version_upgrade.minimal_major_version = "18".into();
        assert_eq!(desired_version(&config, &minimal()), "18");
        config.major_version_upgrade.major_version_upgrade_mode = "manual".into();
        assert_eq!(desired_version(&config, &minimal()), "17");
    }
}
