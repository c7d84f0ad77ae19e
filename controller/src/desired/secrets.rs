//! User Secrets (Zalando's `generateUserSecrets`).
//!
//! One Secret per login role: `users.super_username`, `users.replication_username`, then every
//! `spec.users` entry (sorted) whose flags lack NOLOGIN (case-insensitive). Manifest entries that
//! name a system user (the two above) or a `protected_role_names` role are skipped, as Zalando
//! skips them with a warning. Credentials are in `data` (base64 on the wire), the form the API
//! server returns, so a read-back Secret compares equal; the caller only creates missing Secrets
//! and never replaces an existing password.

use super::non_empty;
use common::config::Config;
use common::crd::Postgresql;
use common::database::secrets::secret_namespace;
use common::labels::{inherited_annotations, object_labels};
use common::naming::secret_name;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use rand::Rng;
use rand::distr::Alphanumeric;

/// Length of generated passwords.
pub const PASSWORD_LENGTH: usize = 64;

/// A 64-character alphanumeric password from the thread-local CSPRNG (ChaCha, seeded and
/// periodically reseeded from the operating system).
pub fn password() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(PASSWORD_LENGTH)
        .map(char::from)
        .collect()
}

/// The login users that get a Secret, in order: the system users, the manifest's login users,
/// then the prepared databases' default users (`defaultUsers`).
pub fn secret_users(config: &Config, pg: &Postgresql) -> Vec<String> {
    let users = &config.users;
    let system = [&users.super_username, &users.replication_username];
    let mut names: Vec<String> = system.iter().map(|u| u.to_string()).collect();
    for (name, flags) in pg.spec.users.iter().flatten() {
        let nologin = flags
            .iter()
            .flatten()
            .any(|f| f.eq_ignore_ascii_case("nologin"));
        let reserved = system.contains(&name)
            || config.teams_api.protected_role_names.contains(name)
            || names.contains(name);
        if !nologin && !reserved {
            names.push(name.clone());
        }
    }
    let (wanted, _) = common::database::wanted::wanted(config, pg, &Default::default());
    for role in wanted.roles {
        let prepared = role.origin == common::database::model::Origin::PreparedDatabase;
        if prepared
            && role.flags.contains(&common::database::model::Flag::Login)
            && !names.contains(&role.name)
        {
            names.push(role.name);
        }
    }
    names
}

/// The Secret of one user with a fresh password, in the namespace
/// [`common::database::secrets::secret_namespace`] names. Owner references only go on Secrets in
/// the cluster's namespace (a cross-namespace owner reference is invalid).
pub fn user_secret(
    config: &Config,
    pg: &Postgresql,
    user: &str,
    owner: Option<&OwnerReference>,
) -> Secret {
    let cluster_namespace = super::namespace(pg);
    let namespace = secret_namespace(config, pg, user);
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(
                &config.kubernetes.secret_name_template,
                user,
                pg.cluster_name(),
            )),
            namespace: Some(namespace.clone()),
            labels: Some(object_labels(config, pg)),
            annotations: non_empty(inherited_annotations(config, pg)),
            owner_references: owner
                .filter(|_| namespace == cluster_namespace)
                .map(|o| vec![o.clone()]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            [
                ("username".to_string(), ByteString(user.as_bytes().to_vec())),
                ("password".to_string(), ByteString(password().into_bytes())),
            ]
            .into(),
        ),
        ..Secret::default()
    }
}

/// The user Secrets the cluster needs, each in its namespace, with fresh passwords.
pub fn secrets(config: &Config, pg: &Postgresql, owner: Option<&OwnerReference>) -> Vec<Secret> {
    secret_users(config, pg)
        .iter()
        .map(|user| user_secret(config, pg, user, owner))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn data(secret: &Secret, key: &str) -> String {
        String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
    }

    #[test]
    fn passwords_are_long_alphanumeric_and_distinct() {
        let (a, b) = (password(), password());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn minimal_cluster_secrets() {
        let pg = minimal();
        let secrets = secrets(&config(), &pg, None);
        let names: Vec<_> = secrets
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "postgres.acid-minimal-cluster.credentials.postgresql.acid.zalan.do",
                "standby.acid-minimal-cluster.credentials.postgresql.acid.zalan.do",
                "foo-user.acid-minimal-cluster.credentials.postgresql.acid.zalan.do",
                "zalando.acid-minimal-cluster.credentials.postgresql.acid.zalan.do",
            ]
        );
        let foo = &secrets[2];
        assert_eq!(data(foo, "username"), "foo_user");
        assert_eq!(data(foo, "password").len(), 64);
        assert_eq!(foo.type_.as_deref(), Some("Opaque"));
        assert_eq!(foo.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(
            foo.metadata.labels.as_ref().unwrap()["cluster-name"],
            "acid-minimal-cluster"
        );
        assert!(foo.metadata.owner_references.is_none());
    }

    #[test]
    fn nologin_protected_system_and_cross_namespace_users() {
        let yaml = r#"
apiVersion: acid.zalan.do/v1
kind: postgresql
metadata: {name: acid-users, namespace: prod}
spec:
  teamId: acid
  numberOfInstances: 1
  postgresql: {version: "17"}
  volume: {size: 1Gi}
  users:
    app_role: [NoLogin]
    admin: []
    postgres: [superuser]
    other.app_user: []
    reader: [login]
"#;
        let pg = pg(yaml);
        let mut config = config();
        assert_eq!(
            secret_users(&config, &pg),
            ["postgres", "standby", "other.app_user", "reader"]
        );
        config.kubernetes.enable_cross_namespace_secret = true;
        let reference = owner(&pg);
        let secrets = secrets(&config, &pg, Some(&reference));
        let cross = &secrets[2];
        assert_eq!(
            cross.metadata.name.as_deref(),
            Some("other.app-user.acid-users.credentials.postgresql.acid.zalan.do")
        );
        assert_eq!(cross.metadata.namespace.as_deref(), Some("other"));
        assert!(cross.metadata.owner_references.is_none());
        assert_eq!(secrets[3].metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(secrets[3].metadata.owner_references, Some(vec![reference]));
    }

    #[test]
    fn a_prepared_databases_secret_namespace_holds_its_default_users_secrets() {
        let yaml = r#"
apiVersion: acid.zalan.do/v1
kind: postgresql
metadata: {name: acid-shop, namespace: prod}
spec:
  teamId: acid
  numberOfInstances: 1
  postgresql: {version: "17"}
  volume: {size: 1Gi}
  users: {app: []}
  preparedDatabases:
    shop: {defaultUsers: true, secretNamespace: apps}
"#;
        let pg = pg(yaml);
        let reference = owner(&pg);
        let placed = |config: &Config| -> Vec<(String, String, bool)> {
            secrets(config, &pg, Some(&reference))
                .iter()
                .map(|s| {
                    (
                        s.metadata.name.clone().unwrap(),
                        s.metadata.namespace.clone().unwrap(),
                        s.metadata.owner_references.is_some(),
                    )
                })
                .collect()
        };
        let mut config = config();
        let secret = |user: &str| format!("{user}.acid-shop.credentials.postgresql.acid.zalan.do");
        assert!(
            placed(&config)
                .iter()
                .all(|(_, ns, owned)| ns == "prod" && *owned),
            "ignored without enable_cross_namespace_secret"
        );
        config.kubernetes.enable_cross_namespace_secret = true;
        let on = placed(&config);
        for user in ["shop-owner-user", "shop-reader-user", "shop-writer-user"] {
            assert!(
                on.contains(&(secret(user), "apps".into(), false)),
                "{user} in apps, with its plain name, without owner reference: {on:?}"
            );
        }
        assert!(on.contains(&(secret("app"), "prod".into(), true)));
        assert!(on.contains(&(secret("postgres"), "prod".into(), true)));
        let owner_user = secrets(&config, &pg, None)
            .into_iter()
            .find(|s| s.metadata.namespace.as_deref() == Some("apps"))
            .unwrap();
        assert_eq!(data(&owner_user, "username"), "shop_owner_user");
    }
}
