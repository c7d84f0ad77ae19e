//! The operator configuration: where it comes from, how each form is read, and its validation.
//!
//! Both binaries call [`load`] with what they fetched (a ConfigMap's data or an
//! `OperatorConfiguration`) and get the same typed [`Config`] or the complete list of problems.

pub mod configmap;
pub mod encoding;
pub mod source;
mod validate;

pub use crate::crd::operator_configuration::Config;
pub use source::{ConfigSource, Environment, WatchScope};
pub use validate::validate;

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A configuration value that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Option name as written in the ConfigMap (the last segment in the CRD form).
    pub key: String,
    /// The offending value as written.
    pub value: String,
    /// What would be accepted.
    pub expected: String,
}

impl ConfigProblem {
    /// A problem with `key` holding `value`.
    pub fn new(
        key: impl Into<String>,
        value: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            expected: expected.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {:?} is invalid: {}",
            self.key, self.value, self.expected
        )
    }
}

/// Something worth telling the administrator that does not stop the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The option concerned.
    pub key: String,
    /// What to do about it.
    pub message: String,
}

impl ConfigWarning {
    /// A warning about `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// All problems of one configuration, rendered one per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid operator configuration:\n{}", render(.0))]
pub struct InvalidConfig(pub Vec<ConfigProblem>);

fn render(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A validated configuration plus the warnings found while reading it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Unknown, deprecated or ignored options.
    pub warnings: Vec<ConfigWarning>,
}

/// What was fetched for the chosen [`ConfigSource`].
#[derive(Clone, Debug)]
pub enum Input<'a> {
    /// No source configured: Zalando's defaults.
    Defaults,
    /// The `data` of the ConfigMap.
    ConfigMap(&'a BTreeMap<String, String>),
    /// The `OperatorConfiguration` object as JSON, exactly as the API server returned it: the raw
    /// form is needed to tell an omitted option from one set to its default.
    OperatorConfiguration(&'a Value),
}

/// Reads and validates the configuration.
pub fn load(input: Input<'_>) -> Result<Loaded, InvalidConfig> {
    let (config, mut warnings) = match input {
        Input::Defaults => (Config::default(), Vec::new()),
        Input::ConfigMap(data) => configmap::from_configmap(data).map_err(InvalidConfig)?,
        Input::OperatorConfiguration(object) => (
            from_operator_configuration(object).map_err(|p| InvalidConfig(vec![p]))?,
            Vec::new(),
        ),
    };
    warnings.extend(deprecation_warnings(&config));
    validate(&config).map_err(InvalidConfig)?;
    warnings.extend(validate::warnings(&config));
    Ok(Loaded { config, warnings })
}

/// Options whose omission from an `OperatorConfiguration` means `false` in Zalando (its Go zero
/// value) although the code default is `true`. Honouring this keeps a migrated cluster from
/// suddenly getting public load balancers or a Teams API dependency.
const OMITTED_IN_CRD_MEANS_FALSE: &[(&str, &str)] = &[
    ("load_balancer", "enable_master_load_balancer"),
    ("teams_api", "enable_teams_api"),
];

/// The typed configuration of an `OperatorConfiguration` object, with Zalando's CRD-mode meaning
/// of omitted options. A value of the wrong type is reported with its path.
pub fn from_operator_configuration(object: &Value) -> Result<Config, ConfigProblem> {
    let raw = object.get("configuration").cloned().unwrap_or(Value::Null);
    let raw = if raw.is_null() {
        Value::Object(Default::default())
    } else {
        raw
    };
    let mut config: Config = serde_path_to_error::deserialize(&raw).map_err(|err| {
        let path = err.path().to_string();
        let value = lookup(&raw, &path).map(render_value).unwrap_or_default();
        ConfigProblem::new(path, value, err.into_inner().to_string())
    })?;
    for (group, key) in OMITTED_IN_CRD_MEANS_FALSE {
        if raw.get(*group).and_then(|g| g.get(*key)).is_none() {
            match *key {
                "enable_master_load_balancer" => {
                    config.load_balancer.enable_master_load_balancer = false
                }
                "enable_teams_api" => config.teams_api.enable_teams_api = false,
                _ => unreachable!("every entry of OMITTED_IN_CRD_MEANS_FALSE is handled"),
            }
        }
    }
    Ok(config)
}

fn lookup<'v>(value: &'v Value, dotted: &str) -> Option<&'v Value> {
    dotted.split('.').try_fold(value, |v, segment| match v {
        Value::Array(items) => segment
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get(i)),
        _ => v.get(segment),
    })
}

fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn deprecation_warnings(config: &Config) -> Vec<ConfigWarning> {
    let mut warnings = Vec::new();
    if !config.sidecar_docker_images.is_empty() {
        warnings.push(ConfigWarning::new(
            "sidecar_docker_images",
            "sidecar_docker_images is deprecated; use sidecars in an OperatorConfiguration",
        ));
    }
    if !config
        .kubernetes
        .infrastructure_roles_secret_name
        .is_empty()
    {
        warnings.push(ConfigWarning::new(
            "infrastructure_roles_secret_name",
            "infrastructure_roles_secret_name is deprecated; use infrastructure_roles_secrets",
        ));
    }
    warnings
}

impl Config {
    /// `resync_period` (validated by [`load`]).
    pub fn resync_period(&self) -> Duration {
        encoding::parse_duration(&self.resync_period).unwrap_or(Duration::from_secs(30 * 60))
    }

    /// `pod_label_wait_timeout`: how long a rolling update waits for one step (validated by
    /// [`load`]).
    pub fn pod_label_wait_timeout(&self) -> Duration {
        encoding::parse_duration(&self.timeouts.pod_label_wait_timeout)
            .unwrap_or(Duration::from_secs(10 * 60))
    }

    /// `master_pod_move_timeout`: how long the masters on a drained node are tried to be moved
    /// (validated by [`load`]).
    pub fn master_pod_move_timeout(&self) -> Duration {
        encoding::parse_duration(&self.kubernetes.master_pod_move_timeout)
            .unwrap_or(Duration::from_secs(20 * 60))
    }

    /// `repair_period` (validated by [`load`]).
    pub fn repair_period(&self) -> Duration {
        encoding::parse_duration(&self.repair_period).unwrap_or(Duration::from_secs(5 * 60))
    }
}

/// The fields a `toleration` map may have.
const TOLERATION_FIELDS: &[&str] = &["key", "operator", "value", "effect"];

/// The single toleration of the configuration as a field map.
///
/// Besides the plain map, this accepts the form the administrator guide shows for the
/// OperatorConfiguration, where the ConfigMap encoding sits under an arbitrary key
/// (`toleration: {postgres: "key:postgres,operator:Exists,effect:NoSchedule"}`).
pub fn effective_toleration(
    toleration: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let known =
        |m: &BTreeMap<String, String>| m.keys().all(|k| TOLERATION_FIELDS.contains(&k.as_str()));
    if known(toleration) {
        return Ok(toleration.clone());
    }
    if let [(_, encoded)] = toleration.iter().collect::<Vec<_>>().as_slice()
        && let Ok(inner) = encoding::parse_map(encoded)
        && !inner.is_empty()
        && known(&inner)
    {
        return Ok(inner);
    }
    Err("expected only the fields key, operator, value and effect".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn toleration_forms() {
        let plain = map(&[
            ("key", "postgres"),
            ("operator", "Exists"),
            ("effect", "NoSchedule"),
        ]);
        assert_eq!(effective_toleration(&plain), Ok(plain.clone()));
        let nested = map(&[("postgres", "key:postgres,operator:Exists,effect:NoSchedule")]);
        assert_eq!(effective_toleration(&nested), Ok(plain));
        assert!(effective_toleration(&map(&[("postgres", "x"), ("other", "y")])).is_err());
        assert!(effective_toleration(&map(&[("postgres", "tolerationSeconds:5")])).is_err());
    }

    #[test]
    fn crd_mode_omitted_options_follow_zalando() {
        let object = json!({"apiVersion": "acid.zalan.do/v1", "kind": "OperatorConfiguration", "configuration": {"workers": 2}});
        let loaded = load(Input::OperatorConfiguration(&object)).unwrap();
        assert_eq!(loaded.config.workers, 2);
        assert!(!loaded.config.load_balancer.enable_master_load_balancer);
        assert!(!loaded.config.teams_api.enable_teams_api);
        assert_eq!(loaded.config.docker_image, Config::default().docker_image);

        let explicit = json!({"configuration": {"load_balancer": {"enable_master_load_balancer": true}, "teams_api": {"enable_teams_api": true}}});
        let loaded = load(Input::OperatorConfiguration(&explicit)).unwrap();
        assert!(loaded.config.load_balancer.enable_master_load_balancer);
        assert!(loaded.config.teams_api.enable_teams_api);

        // ConfigMap mode keeps the code defaults.
        let loaded = load(Input::ConfigMap(&BTreeMap::new())).unwrap();
        assert!(loaded.config.load_balancer.enable_master_load_balancer);
        assert_eq!(load(Input::Defaults).unwrap().config, Config::default());
    }

    #[test]
    fn crd_type_errors_name_the_path() {
        let object = json!({"configuration": {"kubernetes": {"enable_sidecars": "yes"}}});
        let err = load(Input::OperatorConfiguration(&object)).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].key, "kubernetes.enable_sidecars");
        assert_eq!(err.0[0].value, "yes");
        assert!(
            err.0[0].expected.contains("expected a boolean"),
            "{}",
            err.0[0].expected
        );
        assert!(err.to_string().starts_with(
            "invalid operator configuration:\n  - kubernetes.enable_sidecars: \"yes\" is invalid"
        ));
    }

    #[test]
    fn validation_runs_after_either_form() {
        let object = json!({"configuration": {"min_instances": 4, "max_instances": 2}});
        let err = load(Input::OperatorConfiguration(&object)).unwrap_err();
        assert_eq!(err.0[0].key, "min_instances");
        let data = map(&[
            ("min_instances", "4"),
            ("max_instances", "2"),
            ("sidecar_docker_images", "a:b"),
        ]);
        assert_eq!(
            load(Input::ConfigMap(&data)).unwrap_err().0[0].key,
            "min_instances"
        );
        let data = map(&[("sidecar_docker_images", "a:b")]);
        let loaded = load(Input::ConfigMap(&data)).unwrap();
        assert_eq!(loaded.warnings[0].key, "sidecar_docker_images");
    }
}
