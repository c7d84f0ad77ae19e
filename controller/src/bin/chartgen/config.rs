//! The `config*` groups of the values, from the `OperatorConfiguration` CRD's schema: the option
//! names, types and descriptions are the operator's own (its Rust configuration types), so a new
//! option is accepted by the chart the moment the operator knows it.
//!
//! Two forms are derived. With `configTarget: OperatorConfigurationCRD` the groups are copied into
//! the object with their YAML types, so an option must have the CRD's type (the API server would
//! refuse anything else at install time, far from the values file). With `configTarget: ConfigMap`
//! every value becomes text, and Zalando's older values files wrote the options that way
//! (`workers: "8"`, `enable_sidecars: "true"`, `protected_role_names: "admin"`,
//! `cluster_labels: "application:spilo"`), so the string encodings the operator's ConfigMap reader
//! takes are accepted as well.

use crate::keys::{Key, Shape};
use serde_json::{Map, Value, json};

/// Each `config*` group of the values and the section of the operator configuration it fills, as
/// the chart's `operatorconfiguration.yaml` maps them; `None` is the top level (general options).
pub const GROUPS: &[(&str, Option<&str>)] = &[
    ("configGeneral", None),
    ("configUsers", Some("users")),
    ("configMajorVersionUpgrade", Some("major_version_upgrade")),
    ("configKubernetes", Some("kubernetes")),
    ("configPostgresPodResources", Some("postgres_pod_resources")),
    ("configTimeouts", Some("timeouts")),
    ("configLoadBalancer", Some("load_balancer")),
    ("configAwsOrGcp", Some("aws_or_gcp")),
    ("configLogicalBackup", Some("logical_backup")),
    ("configDebug", Some("debug")),
    ("configTeamsApi", Some("teams_api")),
    ("configLoggingRestApi", Some("logging_rest_api")),
    ("configConnectionPooler", Some("connection_pooler")),
    ("configPatroni", Some("patroni")),
];

/// Sections of the operator configuration the chart has no group for: the deprecated Scalyr
/// sidecar, which Zalando's chart dropped in 2020 (chart 1.5.0).
#[cfg(test)]
pub const UNGROUPED: &[&str] = &["scalyr"];

/// The `configuration` schema of the OperatorConfiguration CRD, as installed.
fn configuration_schema() -> Value {
    let crd = serde_json::to_value(common::crd::generate::operator_configuration())
        .expect("a CRD always serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["configuration"].clone()
}

/// Whether a CRD property is a section (an object of named options) rather than an option.
fn is_section(schema: &Value) -> bool {
    schema["type"] == "object" && schema.get("properties").is_some()
}

/// The option schemas of a section (`None`: the general options at the top level).
pub fn section_options(section: Option<&str>) -> Result<Map<String, Value>, String> {
    let configuration = configuration_schema();
    let properties = configuration["properties"]
        .as_object()
        .ok_or("the OperatorConfiguration CRD has no configuration properties")?;
    Ok(match section {
        None => properties
            .iter()
            .filter(|(_, s)| !is_section(s))
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect(),
        Some(name) => properties
            .get(name)
            .and_then(|s| s["properties"].as_object())
            .cloned()
            .ok_or_else(|| format!("the OperatorConfiguration CRD has no section {name}"))?,
    })
}

/// Every section of the CRD by name.
#[cfg(test)]
pub fn sections() -> Vec<String> {
    let configuration = configuration_schema();
    configuration["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, s)| is_section(s))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The key of one `config*` group: its options from the CRD, each with the default `values.yaml`
/// gives it (if any), and the legacy options of the group. `from_values` is the group as
/// `values.yaml` declares it (for its description and defaults).
pub fn group(name: &str, section: Option<&str>, from_values: Option<&Key>) -> Result<Key, String> {
    let options = section_options(section)?;
    let defaults = match from_values.map(|k| &k.shape) {
        Some(Shape::Block(keys)) => keys.clone(),
        _ => Vec::new(),
    };
    if let Some(unknown) = defaults.iter().find(|k| !options.contains_key(&k.name)) {
        return Err(format!(
            "values.yaml sets {name}.{}, which the operator configuration does not have",
            unknown.name
        ));
    }
    let mut keys: Vec<Key> = options
        .iter()
        .map(|(option, openapi)| {
            // The description moves to the key, which puts it back into the schema it prints.
            let mut schema = json_schema(openapi);
            let description = schema
                .as_object_mut()
                .and_then(|m| m.remove("description"))
                .and_then(|d| d.as_str().map(str::to_string))
                .unwrap_or_default();
            let default = defaults
                .iter()
                .find(|k| &k.name == option)
                .and_then(|k| k.default.clone());
            Key::leaf(option, &description, default, schema)
        })
        .collect();
    for (group, option, kind, why) in crate::legacy::OPTIONS {
        if *group == name {
            let mut key = Key::leaf(
                option,
                &format!("Ignored. {why}"),
                None,
                json!({"type": kind}),
            );
            key.legacy = true;
            keys.push(key);
        }
    }
    let description = from_values
        .map(|k| k.description.clone())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| section_description(section));
    Ok(Key {
        name: name.to_string(),
        description,
        default: None,
        legacy: false,
        shape: Shape::Block(keys),
    })
}

fn section_description(section: Option<&str>) -> String {
    let configuration = configuration_schema();
    let schema = match section {
        None => return "General options (the top level of the operator configuration).".into(),
        Some(name) => &configuration["properties"][name],
    };
    schema["description"].as_str().unwrap_or("").to_string()
}

/// A CRD (OpenAPI v3, structural) schema as plain JSON schema: `nullable` becomes a `null` type,
/// Kubernetes extensions, formats and defaults go, objects with fixed properties refuse others (the
/// API server would silently drop them), and objects whose fields are kept unchecked stay open.
pub fn json_schema(openapi: &Value) -> Value {
    let mut out = Map::new();
    let preserve = openapi["x-kubernetes-preserve-unknown-fields"] == true;
    for (key, value) in openapi.as_object().into_iter().flatten() {
        match key.as_str() {
            "type" | "description" | "enum" | "minimum" | "maximum" | "pattern" => {
                out.insert(key.clone(), value.clone());
            }
            "items" => {
                out.insert(key.clone(), json_schema(value));
            }
            "additionalProperties" if value.is_object() => {
                out.insert(key.clone(), json_schema(value));
            }
            "properties" if !preserve => {
                let properties: Map<String, Value> = value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), json_schema(v)))
                    .collect();
                out.insert(key.clone(), Value::Object(properties));
                out.insert("additionalProperties".into(), json!(false));
            }
            _ => {}
        }
    }
    if openapi["nullable"] == true {
        if let Some(t) = out.get("type").cloned() {
            out.insert("type".into(), json!([t, "null"]));
        }
        if let Some(Value::Array(choices)) = out.get_mut("enum") {
            choices.push(Value::Null);
        }
    }
    Value::Object(out)
}

/// Go's `strconv.ParseBool` words, which the ConfigMap reader takes for a boolean.
const GO_BOOL: &str = "^\\s*(1|t|T|TRUE|true|True|0|f|F|FALSE|false|False)\\s*$";
/// A whole number as the ConfigMap reader takes it.
const WHOLE_NUMBER: &str = "^\\s*[-+]?[0-9]+\\s*$";

/// The ConfigMap form of an option's schema: its own type, or the text the ConfigMap reader turns
/// into that type. A string option may also be written as a number (it is printed as one).
/// Options only an OperatorConfiguration can carry keep their schema: the chart writes them as
/// JSON and the operator warns that it ignores them.
pub fn configmap_form(schema: &Value) -> Value {
    let first_type = match &schema["type"] {
        Value::Array(ts) => ts.first().and_then(Value::as_str),
        t => t.as_str(),
    };
    let text = match first_type {
        // An empty value is not a boolean or a number to the reader, so null is not allowed here.
        Some("boolean") => {
            return json!({"anyOf": [without_null(schema), {"type": "string", "pattern": GO_BOOL}]});
        }
        Some("integer") => {
            return json!({"anyOf": [without_null(schema), {"type": "string", "pattern": WHOLE_NUMBER}]});
        }
        Some("array") if schema["items"]["properties"].is_object() => json!({"type": "string"}),
        Some("array") if schema["items"]["type"] == "string" => json!({"type": "string"}),
        Some("object") if schema["additionalProperties"].is_object() => json!({"type": "string"}),
        Some("string") if schema.get("enum").is_none() => json!({"type": "number"}),
        _ => return schema.clone(),
    };
    json!({"anyOf": [schema, text]})
}

/// A schema with `null` taken out of its types.
fn without_null(schema: &Value) -> Value {
    let mut out = schema.clone();
    if let Value::Array(types) = &schema["type"] {
        let kept: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
        out["type"] = match kept.as_slice() {
            [one] => (*one).clone(),
            _ => json!(kept),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_of_the_configuration_has_a_group() {
        for section in sections() {
            assert!(
                GROUPS.iter().any(|(_, s)| *s == Some(section.as_str()))
                    || UNGROUPED.contains(&section.as_str()),
                "the operator configuration has a section {section} no config* group maps to"
            );
        }
        for (name, section) in GROUPS {
            assert!(section_options(*section).is_ok(), "{name}");
        }
    }

    #[test]
    fn crd_schemas_become_json_schemas() {
        let nullable = json!({"type": "integer", "format": "int64", "nullable": true});
        assert_eq!(json_schema(&nullable), json!({"type": ["integer", "null"]}));
        let object = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        assert_eq!(json_schema(&object)["additionalProperties"], false);
        let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "nullable": true});
        assert_eq!(json_schema(&open), json!({"type": ["object", "null"]}));
    }

    #[test]
    fn the_configmap_form_adds_the_string_encodings() {
        let int = json!({"type": "integer", "minimum": 1});
        assert_eq!(configmap_form(&int)["anyOf"][0], int);
        assert_eq!(configmap_form(&int)["anyOf"][1]["pattern"], WHOLE_NUMBER);
        let choice = json!({"type": "string", "enum": ["a"]});
        assert_eq!(configmap_form(&choice), choice);
        let probe = json!({"type": ["object", "null"]});
        assert_eq!(configmap_form(&probe), probe);
        let labels = json!({"type": "object", "additionalProperties": {"type": "string"}});
        assert_eq!(
            configmap_form(&labels)["anyOf"][1],
            json!({"type": "string"})
        );
        let uid = json!({"type": ["integer", "null"]});
        assert_eq!(configmap_form(&uid)["anyOf"][0], json!({"type": "integer"}));
    }

    #[test]
    fn the_general_group_holds_only_options() {
        let general = group("configGeneral", None, None).unwrap();
        assert!(general.find("workers").is_some());
        assert!(
            general
                .find("enable_crd_validation")
                .is_some_and(|k| k.legacy)
        );
        assert!(
            general.find("kubernetes").is_none(),
            "a section is not a general option"
        );
    }
}
