//! Where the configuration comes from and which namespaces are watched (Zalando's precedence).

use super::Config;
use super::encoding::parse_namespaced_name;

/// The process environment that selects the configuration, as Zalando reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    /// `POSTGRES_OPERATOR_CONFIGURATION_OBJECT`: name of the OperatorConfiguration to read.
    pub configuration_object: Option<String>,
    /// `CONFIG_MAP_NAME`: `[namespace/]name` of the ConfigMap to read.
    pub config_map_name: Option<String>,
    /// `WATCHED_NAMESPACE`: overrides `watched_namespace`.
    pub watched_namespace: Option<String>,
    /// `CONTROLLER_ID`: which clusters this operator owns.
    pub controller_id: Option<String>,
    /// `OPERATOR_NAMESPACE`, else the service account's namespace.
    pub operator_namespace: String,
}

impl Environment {
    /// Reads the variables through `get` (e.g. `|k| std::env::var(k).ok()`), treating empty
    /// values as unset like Zalando does.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>, operator_namespace: String) -> Self {
        let non_empty = |key: &str| get(key).filter(|v| !v.trim().is_empty());
        Self {
            configuration_object: non_empty("POSTGRES_OPERATOR_CONFIGURATION_OBJECT"),
            config_map_name: non_empty("CONFIG_MAP_NAME"),
            watched_namespace: non_empty("WATCHED_NAMESPACE"),
            controller_id: non_empty("CONTROLLER_ID"),
            operator_namespace,
        }
    }

    /// The controller id, empty when unset (ownership compares against the empty string).
    pub fn controller_id(&self) -> &str {
        self.controller_id.as_deref().unwrap_or_default()
    }
}

/// Where a pod finds its own namespace.
pub const SERVICE_ACCOUNT_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The operator namespace: the explicit value (`OPERATOR_NAMESPACE`), else the service account's
/// namespace file, else `default` (running outside a cluster).
pub fn operator_namespace(explicit: Option<String>) -> String {
    explicit
        .filter(|ns| !ns.trim().is_empty())
        .or_else(|| std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE_FILE).ok())
        .map(|ns| ns.trim().to_string())
        .unwrap_or_else(|| "default".to_string())
}

/// The configuration object to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// An `OperatorConfiguration` in the operator namespace.
    OperatorConfiguration {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A ConfigMap.
    ConfigMap {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Nothing: Zalando's defaults.
    Defaults,
}

impl ConfigSource {
    /// Zalando's precedence: the OperatorConfiguration object wins and the ConfigMap is then
    /// ignored entirely; otherwise the ConfigMap; otherwise defaults.
    pub fn select(env: &Environment) -> Result<Self, String> {
        if let Some(name) = &env.configuration_object {
            return Ok(Self::OperatorConfiguration {
                namespace: env.operator_namespace.clone(),
                name: name.clone(),
            });
        }
        if let Some(reference) = &env.config_map_name {
            let (namespace, name) = parse_namespaced_name(reference, &env.operator_namespace)
                .map_err(|e| format!("CONFIG_MAP_NAME {reference:?} is invalid: {e}"))?;
            return Ok(Self::ConfigMap { namespace, name });
        }
        Ok(Self::Defaults)
    }
}

/// The namespaces a controller watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchScope {
    /// Every namespace (`*`).
    All,
    /// One namespace.
    Namespace(String),
}

impl WatchScope {
    /// `WATCHED_NAMESPACE` wins over `watched_namespace`, which wins over the operator namespace.
    pub fn resolve(env: &Environment, config: &Config) -> Self {
        let chosen = env
            .watched_namespace
            .clone()
            .or_else(|| Some(config.kubernetes.watched_namespace.clone()).filter(|n| !n.is_empty()))
            .unwrap_or_else(|| env.operator_namespace.clone());
        if chosen.trim() == "*" {
            Self::All
        } else {
            Self::Namespace(chosen)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Environment {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Environment::from_lookup(|k| map.get(k).cloned(), "operators".into())
    }

    #[test]
    fn source_precedence() {
        assert_eq!(ConfigSource::select(&env(&[])), Ok(ConfigSource::Defaults));
        assert_eq!(
            ConfigSource::select(&env(&[("CONFIG_MAP_NAME", "postgres-operator")])),
            Ok(ConfigSource::ConfigMap {
                namespace: "operators".into(),
                name: "postgres-operator".into()
            })
        );
        assert_eq!(
            ConfigSource::select(&env(&[("CONFIG_MAP_NAME", "other/pg-config")])),
            Ok(ConfigSource::ConfigMap {
                namespace: "other".into(),
                name: "pg-config".into()
            })
        );
        assert_eq!(
            ConfigSource::select(&env(&[
                ("CONFIG_MAP_NAME", "postgres-operator"),
                (
                    "POSTGRES_OPERATOR_CONFIGURATION_OBJECT",
                    "postgresql-operator-default-configuration"
                ),
            ])),
            Ok(ConfigSource::OperatorConfiguration {
                namespace: "operators".into(),
                name: "postgresql-operator-default-configuration".into()
            })
        );
        assert_eq!(
            ConfigSource::select(&env(&[("POSTGRES_OPERATOR_CONFIGURATION_OBJECT", "")])),
            Ok(ConfigSource::Defaults)
        );
        assert!(
            ConfigSource::select(&env(&[("CONFIG_MAP_NAME", "a/b/c")]))
                .unwrap_err()
                .contains("CONFIG_MAP_NAME")
        );
    }

    #[test]
    fn watched_namespace_precedence() {
        let mut config = Config::default();
        assert_eq!(
            WatchScope::resolve(&env(&[]), &config),
            WatchScope::Namespace("operators".into())
        );
        config.kubernetes.watched_namespace = "team-a".into();
        assert_eq!(
            WatchScope::resolve(&env(&[]), &config),
            WatchScope::Namespace("team-a".into())
        );
        assert_eq!(
            WatchScope::resolve(&env(&[("WATCHED_NAMESPACE", "team-b")]), &config),
            WatchScope::Namespace("team-b".into())
        );
        assert_eq!(
            WatchScope::resolve(&env(&[("WATCHED_NAMESPACE", "*")]), &config),
            WatchScope::All
        );
        config.kubernetes.watched_namespace = "*".into();
        assert_eq!(WatchScope::resolve(&env(&[]), &config), WatchScope::All);
    }

    #[test]
    fn controller_id() {
        assert_eq!(env(&[]).controller_id(), "");
        assert_eq!(
            env(&[("CONTROLLER_ID", "second-operator")]).controller_id(),
            "second-operator"
        );
    }
}
