//! Where a new cluster's data comes from: the clone (`spec.clone`) and standby
//! (`spec.standby`) variables of the postgres container, groups 3 and 4 of Zalando's
//! environment. Spilo reads them once, at bootstrap, so they only matter to a new cluster's
//! first member; the names and values are Zalando's so a Spilo image behaves the same under
//! either operator.
//!
//! A clone without a timestamp is a basebackup of the running source through its master Service
//! (same namespace, the replication user's password from the source's Secret); with a timestamp
//! it is a point-in-time restore from the source's WAL archive. A standby streams from
//! `standby_host` and/or replays a WAL archive.

use super::env::{password_ref, value};
use common::config::Config;
use common::crd::postgresql::{CloneDescription, StandbyDescription};
use k8s_openapi::api::core::v1::EnvVar;

/// The port Zalando connects to a source cluster's master Service on.
const SOURCE_PORT: &str = "5432";
/// Where EKS mounts the web identity token for IRSA.
const IRSA_TOKEN_FILE: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";

fn irsa(config: &Config, prefix: &str) -> Vec<EnvVar> {
    let role = &config.aws_or_gcp.irsa_role_arn;
    if role.is_empty() {
        return Vec::new();
    }
    vec![
        value(&format!("{prefix}AWS_ROLE_ARN"), role),
        value(
            &format!("{prefix}AWS_WEB_IDENTITY_TOKEN_FILE"),
            IRSA_TOKEN_FILE,
        ),
    ]
}

fn set(option: &Option<String>) -> Option<&str> {
    option.as_deref().filter(|v| !v.is_empty())
}

/// The `CLONE_*` variables; none without a source cluster name.
pub fn clone(config: &Config, clone: &CloneDescription) -> Vec<EnvVar> {
    let source = clone.cluster.as_str();
    if source.is_empty() {
        return Vec::new();
    }
    let mut env = vec![value("CLONE_SCOPE", source)];
    match set(&clone.timestamp) {
        None => {
            let user = &config.users.replication_username;
            env.extend([
                value("CLONE_METHOD", "CLONE_WITH_BASEBACKUP"),
                // The source's master Service, in this cluster's namespace.
                value("CLONE_HOST", source),
                value("CLONE_PORT", SOURCE_PORT),
                value("CLONE_USER", user),
                password_ref(config, "CLONE_PASSWORD", user, source),
            ]);
        }
        Some(timestamp) => {
            let cloud = &config.aws_or_gcp;
            match set(&clone.s3_wal_path) {
                Some(path) => env.push(value("CLONE_WALE_S3_PREFIX", path)),
                None => {
                    // The source's archive under the operator's bucket, found by its uid.
                    if !cloud.wal_s3_bucket.is_empty() {
                        env.push(value("CLONE_WAL_S3_BUCKET", &cloud.wal_s3_bucket));
                    } else if !cloud.wal_gs_bucket.is_empty() {
                        env.push(value("CLONE_WAL_GS_BUCKET", &cloud.wal_gs_bucket));
                        if !cloud.gcp_credentials.is_empty() {
                            env.push(value(
                                "CLONE_GOOGLE_APPLICATION_CREDENTIALS",
                                &cloud.gcp_credentials,
                            ));
                        }
                    } else if !cloud.wal_az_storage_account.is_empty() {
                        env.push(value(
                            "CLONE_AZURE_STORAGE_ACCOUNT",
                            &cloud.wal_az_storage_account,
                        ));
                    }
                    let suffix = set(&clone.uid).map(|uid| format!("/{uid}"));
                    env.push(value(
                        "CLONE_WAL_BUCKET_SCOPE_SUFFIX",
                        suffix.unwrap_or_default(),
                    ));
                }
            }
            env.extend([
                value("CLONE_METHOD", "CLONE_WITH_WALE"),
                value("CLONE_TARGET_TIME", timestamp),
                value("CLONE_WAL_BUCKET_SCOPE_PREFIX", ""),
            ]);
            if let Some(endpoint) = set(&clone.s3_endpoint) {
                env.push(value("CLONE_AWS_ENDPOINT", endpoint));
                env.push(value("CLONE_WALE_S3_ENDPOINT", endpoint));
            }
            if let Some(key) = set(&clone.s3_access_key_id) {
                env.push(value("CLONE_AWS_ACCESS_KEY_ID", key));
            }
            if let Some(secret) = set(&clone.s3_secret_access_key) {
                env.push(value("CLONE_AWS_SECRET_ACCESS_KEY", secret));
            }
            if let Some(force) = clone.s3_force_path_style {
                env.push(value(
                    "CLONE_AWS_S3_FORCE_PATH_STYLE",
                    if force { "1" } else { "0" },
                ));
            }
        }
    }
    env.extend(irsa(config, "CLONE_"));
    env
}

/// The `STANDBY_*` variables: a remote primary to stream from and/or a WAL archive to replay.
pub fn standby(config: &Config, standby: &StandbyDescription) -> Vec<EnvVar> {
    let mut env = Vec::new();
    if let Some(host) = set(&standby.standby_host) {
        env.push(value("STANDBY_HOST", host));
        if let Some(port) = set(&standby.standby_port) {
            env.push(value("STANDBY_PORT", port));
        }
        if let Some(slot) = set(&standby.standby_primary_slot_name) {
            env.push(value("STANDBY_PRIMARY_SLOT_NAME", slot));
        }
    }
    let archive = set(&standby.s3_wal_path)
        .map(|p| ("STANDBY_WALE_S3_PREFIX", p))
        .or_else(|| set(&standby.gs_wal_path).map(|p| ("STANDBY_WALE_GS_PREFIX", p)));
    if let Some((name, path)) = archive {
        env.extend([
            value(name, path),
            value("STANDBY_METHOD", "STANDBY_WITH_WALE"),
            value("STANDBY_WAL_BUCKET_SCOPE_PREFIX", ""),
        ]);
    }
    env.extend(irsa(config, "STANDBY_"));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(env: &[EnvVar]) -> Vec<(String, String)> {
        env.iter()
            .map(|e| {
                let shown = match (&e.value, &e.value_from) {
                    (Some(v), _) => v.clone(),
                    (None, Some(from)) => {
                        let secret = from.secret_key_ref.as_ref().unwrap();
                        format!("secret {}/{}", secret.name, secret.key)
                    }
                    (None, None) => String::new(),
                };
                (e.name.clone(), shown)
            })
            .collect()
    }

    fn of(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn clone_of(yaml: &str) -> CloneDescription {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_clone_without_timestamp_is_a_basebackup_of_the_source_service() {
        let env = clone(&Config::default(), &clone_of("cluster: acid-source"));
        assert_eq!(
            pairs(&env),
            of(&[
                ("CLONE_SCOPE", "acid-source"),
                ("CLONE_METHOD", "CLONE_WITH_BASEBACKUP"),
                ("CLONE_HOST", "acid-source"),
                ("CLONE_PORT", "5432"),
                ("CLONE_USER", "standby"),
                (
                    "CLONE_PASSWORD",
                    "secret standby.acid-source.credentials.postgresql.acid.zalan.do/password"
                ),
            ])
        );
        assert!(clone(&Config::default(), &clone_of("cluster: ''")).is_empty());
    }

    #[test]
    fn a_clone_with_timestamp_restores_from_the_archive() {
        let mut config = Config::default();
        config.aws_or_gcp.wal_gs_bucket = "wal".into();
        config.aws_or_gcp.gcp_credentials = "/creds.json".into();
        config.aws_or_gcp.irsa_role_arn = "arn:aws:iam::1:role/r".into();
        let description = clone_of(
            "{cluster: acid-source, uid: 0c4b6f0e-0000-4000-8000-000000000001, timestamp: '2026-01-02T03:04:05+00:00', s3_endpoint: 'https://s3.example', s3_force_path_style: true}",
        );
        assert_eq!(
            pairs(&clone(&config, &description)),
            of(&[
                ("CLONE_SCOPE", "acid-source"),
                ("CLONE_WAL_GS_BUCKET", "wal"),
                ("CLONE_GOOGLE_APPLICATION_CREDENTIALS", "/creds.json"),
                (
                    "CLONE_WAL_BUCKET_SCOPE_SUFFIX",
                    "/0c4b6f0e-0000-4000-8000-000000000001"
                ),
                ("CLONE_METHOD", "CLONE_WITH_WALE"),
                ("CLONE_TARGET_TIME", "2026-01-02T03:04:05+00:00"),
                ("CLONE_WAL_BUCKET_SCOPE_PREFIX", ""),
                ("CLONE_AWS_ENDPOINT", "https://s3.example"),
                ("CLONE_WALE_S3_ENDPOINT", "https://s3.example"),
                ("CLONE_AWS_S3_FORCE_PATH_STYLE", "1"),
                ("CLONE_AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
                ("CLONE_AWS_WEB_IDENTITY_TOKEN_FILE", IRSA_TOKEN_FILE),
            ])
        );
        let own_path = clone_of(
            "{cluster: acid-source, timestamp: '2026-01-02T03:04:05+00:00', s3_wal_path: 's3://b/p'}",
        );
        let env = pairs(&clone(&Config::default(), &own_path));
        assert_eq!(env[1], ("CLONE_WALE_S3_PREFIX".into(), "s3://b/p".into()));
        assert!(
            !env.iter()
                .any(|(k, _)| k == "CLONE_WAL_BUCKET_SCOPE_SUFFIX")
        );
    }

    #[test]
    fn a_standby_streams_from_its_host_and_or_replays_an_archive() {
        let description: StandbyDescription = serde_yaml::from_str(
            "{standby_host: acid-source.other, standby_port: '5433', standby_primary_slot_name: s1, gs_wal_path: 'gs://b/p'}",
        )
        .unwrap();
        assert_eq!(
            pairs(&standby(&Config::default(), &description)),
            of(&[
                ("STANDBY_HOST", "acid-source.other"),
                ("STANDBY_PORT", "5433"),
                ("STANDBY_PRIMARY_SLOT_NAME", "s1"),
                ("STANDBY_WALE_GS_PREFIX", "gs://b/p"),
                ("STANDBY_METHOD", "STANDBY_WITH_WALE"),
                ("STANDBY_WAL_BUCKET_SCOPE_PREFIX", ""),
            ])
        );
        let host_only: StandbyDescription =
            serde_yaml::from_str("{standby_host: acid-source}").unwrap();
        assert_eq!(
            pairs(&standby(&Config::default(), &host_only)),
            of(&[("STANDBY_HOST", "acid-source")])
        );
    }
}
