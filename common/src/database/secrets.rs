//! Where a user's Secret lives, the one rule every writer and reader of Secrets follows (the
//! desired Secrets, password rotation).
//!
//! As in Zalando, a Secret lives beside its cluster unless `enable_cross_namespace_secret` is on
//! and either the user is named `namespace.user` (the namespace is part of the role name), or the
//! user is a default login user of a prepared database that sets `secretNamespace` (the role
//! name stays `<db>_owner_user` etc.; only the Secret moves). The Secret's name is the same in
//! either namespace. With the option off, `secretNamespace` is ignored, as Zalando ignores it
//! with a log line; the admission webhook says so ([`ignored_secret_namespaces`]).

use crate::config::Config;
use crate::crd::Postgresql;
use crate::naming;

/// The namespace of `user`'s Secret for cluster `pg`.
pub fn secret_namespace(config: &Config, pg: &Postgresql, user: &str) -> String {
    let cluster_namespace = pg.metadata.namespace.as_deref().unwrap_or("default");
    let cross = config.kubernetes.enable_cross_namespace_secret;
    if cross
        && let Some((_, namespace)) = super::wanted::prepared_login_users(pg)
            .into_iter()
            .find(|(name, namespace)| name == user && !namespace.is_empty())
    {
        // A prepared database's role wins over a manifest user of the same name (Zalando's
        // origin order), so its namespace does too.
        return namespace;
    }
    naming::secret_namespace(user, cluster_namespace, cross).to_string()
}

/// The `spec.preparedDatabases.<db>` fields whose `secretNamespace` is set but ignored because
/// `enable_cross_namespace_secret` is off.
pub fn ignored_secret_namespaces(config: &Config, pg: &Postgresql) -> Vec<String> {
    if config.kubernetes.enable_cross_namespace_secret {
        return Vec::new();
    }
    pg.spec
        .prepared_databases
        .iter()
        .flatten()
        .filter(|(_, db)| {
            db.secret_namespace
                .as_deref()
                .is_some_and(|s| !s.is_empty())
        })
        .map(|(name, _)| format!("spec.preparedDatabases.{name}.secretNamespace"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(yaml: &str) -> Postgresql {
        serde_yaml::from_str(yaml).expect("a valid manifest")
    }

    const MANIFEST: &str = r#"
apiVersion: acid.zalan.do/v1
kind: postgresql
metadata: {name: acid-shop, namespace: prod}
spec:
  teamId: acid
  numberOfInstances: 1
  postgresql: {version: "17"}
  volume: {size: 1Gi}
  users:
    apps.robot: []
    plain: []
  preparedDatabases:
    shop:
      defaultUsers: true
      secretNamespace: apps
      schemas:
        data: {defaultUsers: true}
        noroles: {defaultRoles: false, defaultUsers: true}
    other:
      defaultUsers: true
"#;

    fn config(cross: bool) -> Config {
        let mut config = Config::default();
        config.kubernetes.enable_cross_namespace_secret = cross;
        config
    }

    #[test]
    fn prepared_login_users_follow_default_users_and_default_roles() {
        let users = crate::database::wanted::prepared_login_users(&pg(MANIFEST));
        let shop: Vec<&str> = users
            .iter()
            .filter(|(_, ns)| ns == "apps")
            .map(|(u, _)| u.as_str())
            .collect();
        assert_eq!(
            shop,
            [
                "shop_owner_user",
                "shop_reader_user",
                "shop_writer_user",
                "shop_data_owner_user",
                "shop_data_reader_user",
                "shop_data_writer_user",
            ],
            "no users for a schema without default roles"
        );
        assert!(users.contains(&("other_owner_user".into(), String::new())));
    }

    #[test]
    fn a_secret_namespace_moves_the_default_users_secrets_with_cross_namespace_secrets_only() {
        let pg = pg(MANIFEST);
        let on = config(true);
        assert_eq!(secret_namespace(&on, &pg, "shop_owner_user"), "apps");
        assert_eq!(secret_namespace(&on, &pg, "shop_data_writer_user"), "apps");
        assert_eq!(
            secret_namespace(&on, &pg, "other_owner_user"),
            "prod",
            "a database without secretNamespace"
        );
        assert_eq!(secret_namespace(&on, &pg, "plain"), "prod");
        assert_eq!(secret_namespace(&on, &pg, "apps.robot"), "apps");
        let off = config(false);
        for user in ["shop_owner_user", "apps.robot", "plain"] {
            assert_eq!(secret_namespace(&off, &pg, user), "prod", "{user}");
        }
    }

    #[test]
    fn an_ignored_secret_namespace_is_named() {
        let pg = pg(MANIFEST);
        assert_eq!(
            ignored_secret_namespaces(&config(false), &pg),
            ["spec.preparedDatabases.shop.secretNamespace"]
        );
        assert!(ignored_secret_namespaces(&config(true), &pg).is_empty());
    }
}
