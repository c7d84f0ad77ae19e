//! Reads Zalando's flat ConfigMap form into the typed [`Config`].
//!
//! Every ConfigMap key is the name of one option of the `OperatorConfiguration` form; the generated
//! CRD schema says in which group it lives and what type it has, so the option list is declared
//! once (in the Rust types) and a new option needs no change here.

use super::encoding::{parse_bool, parse_int, parse_list, parse_map};
use super::{ConfigProblem, ConfigWarning};
use crate::crd::operator_configuration::Config;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

/// How a ConfigMap string becomes the option's JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Text,
    List,
    Map,
    /// `infrastructure_roles_secrets`: one secret written as `secretname:x,userkey:y,...`.
    InfrastructureRoles,
    /// Full Kubernetes objects (`sidecars`, `liveness_probe`) the flat form cannot carry.
    OperatorConfigurationOnly,
}

#[derive(Debug)]
struct Leaf {
    group: Option<String>,
    kind: Kind,
}

/// Keys Zalando still reads from a ConfigMap although they have no effect any more.
const DEPRECATED_NO_EFFECT: &[&str] = &["enable_load_balancer"];

static LEAVES: LazyLock<HashMap<String, Leaf>> = LazyLock::new(index_options);

fn index_options() -> HashMap<String, Leaf> {
    let crd = serde_json::to_value(crate::crd::generate::operator_configuration())
        .expect("a CRD always serializes");
    let root =
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["configuration"];
    let mut leaves = HashMap::new();
    for (name, schema) in properties(root) {
        if schema["type"] == "object" && schema.get("properties").is_some() {
            for (leaf, leaf_schema) in properties(schema) {
                leaves.insert(
                    leaf.clone(),
                    Leaf {
                        group: Some(name.clone()),
                        kind: kind_of(leaf_schema),
                    },
                );
            }
        } else {
            leaves.insert(
                name.clone(),
                Leaf {
                    group: None,
                    kind: kind_of(schema),
                },
            );
        }
    }
    leaves
}

fn properties(schema: &Value) -> impl Iterator<Item = (&String, &Value)> {
    schema["properties"]
        .as_object()
        .into_iter()
        .flat_map(|props| props.iter())
}

fn kind_of(schema: &Value) -> Kind {
    let preserves = |s: &Value| s["x-kubernetes-preserve-unknown-fields"] == true;
    match schema["type"].as_str() {
        Some("boolean") => Kind::Bool,
        Some("integer") => Kind::Int,
        Some("array") if preserves(&schema["items"]) => Kind::OperatorConfigurationOnly,
        Some("array") if schema["items"]["type"] == "object" => Kind::InfrastructureRoles,
        Some("array") => Kind::List,
        Some("object") if preserves(schema) => Kind::OperatorConfigurationOnly,
        Some("object") => Kind::Map,
        _ => Kind::Text,
    }
}

/// Converts a ConfigMap's data into a [`Config`]; options missing from the map keep their defaults.
///
/// Returns every malformed value at once; unknown and deprecated keys are warnings.
pub fn from_configmap(
    data: &BTreeMap<String, String>,
) -> Result<(Config, Vec<ConfigWarning>), Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut top = Map::new();
    for (key, raw) in data {
        let Some(leaf) = LEAVES.get(key) else {
            let warning = if DEPRECATED_NO_EFFECT.contains(&key.as_str()) {
                format!("{key} is deprecated and has no effect; remove it")
            } else {
                format!("{key} is not a known option and is ignored")
            };
            warnings.push(ConfigWarning::new(key, warning));
            continue;
        };
        let converted = if leaf.kind == Kind::InfrastructureRoles {
            infrastructure_roles(raw).map(|(value, unknown)| {
                for property in unknown {
                    warnings.push(ConfigWarning::new(
                        key,
                        format!("{key}: the property {property:?} is not known and is ignored"),
                    ));
                }
                Some(value)
            })
        } else {
            convert(leaf.kind, raw)
        };
        let value = match converted {
            Ok(Some(value)) => value,
            Ok(None) => {
                warnings.push(ConfigWarning::new(
                    key,
                    format!("{key} can only be set in an OperatorConfiguration; the ConfigMap value is ignored"),
                ));
                continue;
            }
            Err(expected) => {
                problems.push(ConfigProblem::new(key, raw, expected));
                continue;
            }
        };
        let target = match &leaf.group {
            Some(group) => top
                .entry(group.clone())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("groups are objects"),
            None => &mut top,
        };
        target.insert(key.clone(), value);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    match serde_json::from_value::<Config>(Value::Object(top)) {
        Ok(config) => Ok((config, warnings)),
        // Every value was converted to its schema type above, so this is a bug, not bad input;
        // still report it instead of panicking.
        Err(err) => Err(vec![ConfigProblem::new("(configmap)", "", err.to_string())]),
    }
}

fn convert(kind: Kind, raw: &str) -> Result<Option<Value>, String> {
    Ok(Some(match kind {
        Kind::Bool => Value::Bool(parse_bool(raw)?),
        Kind::Int => Value::from(parse_int(raw)?),
        Kind::Text => Value::String(raw.trim().to_string()),
        Kind::List => Value::from(parse_list(raw)),
        Kind::Map => serde_json::to_value(parse_map(raw)?).expect("maps serialize"),
        Kind::InfrastructureRoles => return infrastructure_roles(raw).map(|(v, _)| Some(v)),
        Kind::OperatorConfigurationOnly => return Ok(None),
    }))
}

/// The text properties of an `infrastructure_roles_secrets` entry.
const INFRASTRUCTURE_ROLE_KEYS: &[&str] = &[
    "userkey",
    "passwordkey",
    "rolekey",
    "defaultuservalue",
    "defaultrolevalue",
    "details",
];

/// The ConfigMap form of `infrastructure_roles_secrets`: one entry written
/// `secretname:[ns/]name,userkey:…`, plus the unknown properties (warnings, as in Zalando). An
/// unqualified secret name is in the namespace `default`, as Zalando's ConfigMap reader decodes
/// it (the OperatorConfiguration form means the operator's namespace).
fn infrastructure_roles(raw: &str) -> Result<(Value, Vec<String>), String> {
    let fields = parse_map(raw)?;
    let Some(secret) = fields.get("secretname").filter(|s| !s.trim().is_empty()) else {
        return Err(
            "expected secretname:<name> followed by userkey, passwordkey and rolekey pairs".into(),
        );
    };
    let secret = secret.trim();
    let mut entry = Map::new();
    let qualified = if secret.contains('/') {
        secret.to_string()
    } else {
        format!("default/{secret}")
    };
    entry.insert("secretname".into(), Value::String(qualified));
    let mut unknown = Vec::new();
    for (property, value) in &fields {
        if property == "template" {
            let template = parse_bool(value).map_err(|e| format!("template: {e}"))?;
            entry.insert(property.clone(), Value::Bool(template));
        } else if INFRASTRUCTURE_ROLE_KEYS.contains(&property.as_str()) {
            entry.insert(property.clone(), Value::String(value.trim().to_string()));
        } else if property != "secretname" {
            unknown.push(property.clone());
        }
    }
    Ok((Value::Array(vec![Value::Object(entry)]), unknown))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn load(pairs: &[(&str, &str)]) -> Result<(Config, Vec<ConfigWarning>), Vec<ConfigProblem>> {
        from_configmap(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn empty_map_is_all_defaults() {
        let (config, warnings) = load(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert!(warnings.is_empty());
    }

    #[test]
    fn every_encoding() {
        let (c, warnings) = load(&[
            ("workers", "4"),
            ("min_instances", "-1"),
            ("max_instances", "5"),
            ("enable_pod_antiaffinity", "true"),
            ("inherited_labels", "application,environment"),
            ("node_readiness_label", "status1:ready,status2:ready"),
            (
                "toleration",
                "key:postgres,operator:Exists,effect:NoSchedule",
            ),
            ("resync_period", "1m30s"),
            ("pod_environment_configmap", "default/postgres-pod-config"),
            ("delete_annotation_date_key", "delete-date"),
            ("super_username", "root"),
            (
                "team_api_role_configuration",
                r#"log_statement:all,search_path:"a,b""#,
            ),
            (
                "infrastructure_roles_secrets",
                "secretname:infra,userkey:user,passwordkey:pw,rolekey:role",
            ),
            ("spilo_runasuser", "101"),
        ])
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.workers, 4);
        assert_eq!(c.max_instances, 5);
        assert!(c.kubernetes.enable_pod_antiaffinity);
        assert_eq!(
            c.kubernetes.inherited_labels,
            vec!["application", "environment"]
        );
        assert_eq!(c.kubernetes.node_readiness_label.len(), 2);
        assert_eq!(c.kubernetes.toleration["effect"], "NoSchedule");
        assert_eq!(
            super::super::encoding::parse_duration(&c.resync_period),
            Ok(Duration::from_secs(90))
        );
        assert_eq!(
            c.kubernetes.pod_environment_configmap,
            "default/postgres-pod-config"
        );
        assert_eq!(c.kubernetes.delete_annotation_date_key, "delete-date");
        assert_eq!(c.users.super_username, "root");
        assert_eq!(
            c.teams_api.team_api_role_configuration["search_path"],
            "a,b"
        );
        assert_eq!(
            c.kubernetes.infrastructure_roles_secrets[0].secretname,
            "default/infra"
        );
        assert_eq!(
            c.kubernetes.infrastructure_roles_secrets[0]
                .rolekey
                .as_deref(),
            Some("role")
        );
        assert_eq!(c.kubernetes.spilo_runasuser, Some(101));
        // Untouched options keep Zalando's defaults.
        assert_eq!(
            c.docker_image,
            crate::crd::operator_configuration::DEFAULT_SPILO_IMAGE
        );
        assert!(c.load_balancer.enable_master_load_balancer);
    }

    #[test]
    fn malformed_values_are_all_reported_with_key_value_and_expectation() {
        let problems = load(&[
            ("workers", "eight"),
            ("enable_sidecars", "yes"),
            ("node_readiness_label", "status1"),
            ("custom_pod_annotations", "a:\"b"),
            ("infrastructure_roles_secrets", "userkey:u"),
        ])
        .unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 5, "{text:#?}");
        assert!(
            text.contains(&r#"workers: "eight" is invalid: expected a whole number"#.to_string()),
            "{text:#?}"
        );
        assert!(
            text.contains(
                &r#"enable_sidecars: "yes" is invalid: expected a boolean (true or false)"#
                    .to_string()
            ),
            "{text:#?}"
        );
        assert!(
            text.iter().any(|t| t.starts_with(
                r#"node_readiness_label: "status1" is invalid: expected key:value pairs"#
            )),
            "{text:#?}"
        );
        assert!(text.iter().any(|t| t.starts_with("custom_pod_annotations:") && t.contains("unbalanced quote")), "{text:#?}");
        assert!(text.iter().any(|t| t.starts_with("infrastructure_roles_secrets:") && t.contains("secretname")), "{text:#?}");
    }

    #[test]
    fn unknown_deprecated_and_crd_only_keys_warn() {
        let (config, warnings) = load(&[
            ("no_such_option", "1"),
            ("enable_load_balancer", "true"),
            ("sidecars", "x"),
            ("liveness_probe", "x"),
        ])
        .unwrap();
        assert_eq!(config, Config::default());
        let keys: Vec<&str> = warnings.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "enable_load_balancer",
                "liveness_probe",
                "no_such_option",
                "sidecars"
            ]
        );
        assert!(warnings[0].message.contains("deprecated"));
        assert!(
            warnings[1]
                .message
                .contains("only be set in an OperatorConfiguration")
        );
        assert!(warnings[2].message.contains("not a known option"));
    }

    #[test]
    fn infrastructure_roles_string_form() {
        let (c, warnings) = load(&[(
            "infrastructure_roles_secrets",
            "secretname:ops/infra-new,userkey:user,passwordkey:password,defaultrolevalue:robot_zmon,template:false,colour:blue",
        )])
        .unwrap();
        let entry = &c.kubernetes.infrastructure_roles_secrets[0];
        assert_eq!(entry.secretname, "ops/infra-new");
        assert_eq!(entry.defaultrolevalue.as_deref(), Some("robot_zmon"));
        assert_eq!(entry.template, Some(false));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].message.contains("\"colour\""), "{warnings:?}");
        let problems = load(&[(
            "infrastructure_roles_secrets",
            "secretname:x,template:maybe",
        )])
        .unwrap_err();
        assert!(problems[0].to_string().contains("template"), "{problems:?}");
    }

    #[test]
    fn option_names_are_unique_across_groups() {
        let crd = serde_json::to_value(crate::crd::generate::operator_configuration()).unwrap();
        let root =
            &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["configuration"];
        let mut seen = std::collections::HashSet::new();
        let mut count = 0;
        for (name, schema) in properties(root) {
            let leaves: Vec<&String> =
                if schema.get("properties").is_some() && schema["type"] == "object" {
                    properties(schema).map(|(k, _)| k).collect()
                } else {
                    vec![name]
                };
            for leaf in leaves {
                count += 1;
                assert!(
                    seen.insert(leaf.clone()),
                    "option {leaf} appears in two groups"
                );
            }
        }
        assert_eq!(LEAVES.len(), count);
    }
}
