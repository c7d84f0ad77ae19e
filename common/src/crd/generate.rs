//! The CRD manifests as installed: the derived schemas plus the few rules schemars cannot express.

use super::{OperatorConfiguration, PostgresTeam, Postgresql};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

/// The `postgresql` CRD.
///
/// Adds the standby rule Zalando's CRD has: at least one of `s3_wal_path`, `gs_wal_path` and
/// `standby_host`, and not both archives (a host may stream next to one archive).
pub fn postgresql() -> CustomResourceDefinition {
    edit(Postgresql::crd(), |schema| {
        strip_unsigned_formats(schema);
        let standby = &mut schema["properties"]["spec"]["properties"]["standby"];
        standby["anyOf"] = json!([
            {"required": ["s3_wal_path"]},
            {"required": ["gs_wal_path"]},
            {"required": ["standby_host"]},
        ]);
        standby["not"] = json!({"required": ["s3_wal_path", "gs_wal_path"]});
    })
}

/// The `OperatorConfiguration` CRD.
///
/// Schema defaults are removed: the API server would otherwise store them into every object, and
/// the operator could no longer tell an omitted option (which has Zalando's CRD-mode meaning) from
/// one set on purpose. The operator applies its defaults when it reads the object.
pub fn operator_configuration() -> CustomResourceDefinition {
    edit(OperatorConfiguration::crd(), |schema| {
        strip_defaults(schema);
        strip_unsigned_formats(schema);
    })
}

/// The `PostgresTeam` CRD.
pub fn postgres_team() -> CustomResourceDefinition {
    edit(PostgresTeam::crd(), strip_unsigned_formats)
}

/// Every CRD with the file name it is committed under in `crds/`.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("postgresql.yaml", postgresql()),
        ("operatorconfiguration.yaml", operator_configuration()),
        ("postgresteam.yaml", postgres_team()),
    ]
}

/// The YAML committed in `crds/` for a CRD.
pub fn to_yaml(crd: &CustomResourceDefinition) -> String {
    let body = serde_yaml::to_string(crd).expect("a CRD always serializes");
    format!(
        "# Generated from the Rust types in common/src/crd by `make crds`; do not edit.\n{body}"
    )
}

fn edit(crd: CustomResourceDefinition, f: impl FnOnce(&mut Value)) -> CustomResourceDefinition {
    let mut value = serde_json::to_value(crd).expect("a CRD always serializes");
    f(&mut value["spec"]["versions"][0]["schema"]["openAPIV3Schema"]);
    serde_json::from_value(value).expect("the edited CRD keeps its shape")
}

/// schemars marks unsigned integers with formats such as `uint32`, which the API server does not
/// know and warns about on every install; the `minimum: 0` it adds already says "unsigned".
fn strip_unsigned_formats(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| f.starts_with("uint"))
            {
                map.remove("format");
            }
            map.values_mut().for_each(strip_unsigned_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_unsigned_formats),
        _ => {}
    }
}

fn strip_defaults(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            map.remove("default");
            map.values_mut().for_each(strip_defaults);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_defaults),
        _ => {}
    }
}
