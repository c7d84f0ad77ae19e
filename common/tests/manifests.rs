//! The sample manifests and every relevant example of the administrator guide parse into the
//! types, and a manifest survives YAML → types → YAML without losing anything.

use common::config::{self, Input};
use common::crd::Postgresql;
use common::crd::generate;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn round_trip(path: &Path) {
    let original = yaml(path);
    let typed: Postgresql = serde_json::from_value(original.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = serde_yaml::to_string(&typed).unwrap();
    let back: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(
        back,
        original,
        "{} changed in a YAML → types → YAML round trip",
        path.display()
    );
}

#[test]
fn minimal_manifest_round_trips() {
    round_trip(&repo("manifests/minimal-postgres-manifest.yaml"));
}

#[test]
fn complete_manifest_round_trips() {
    round_trip(&repo("manifests/complete-postgres-manifest.yaml"));
}

/// The complete manifest really sets every field the schema knows (so the round trip covers all).
#[test]
fn complete_manifest_sets_every_spec_field() {
    fn walk(path: &str, schema: &Value, value: &Value, missing: &mut Vec<String>) {
        if schema["x-kubernetes-preserve-unknown-fields"] == true {
            return;
        }
        if let Some(props) = schema["properties"].as_object() {
            for (name, prop) in props {
                match value.get(name) {
                    Some(child) => walk(&format!("{path}.{name}"), prop, child, missing),
                    None => missing.push(format!("{path}.{name}")),
                }
            }
        }
        if schema["items"].is_object()
            && let Some(items) = value.as_array()
        {
            // Each property must appear in at least one item.
            let merged = items.iter().fold(json!({}), |mut acc, item| {
                if let (Some(acc), Some(item)) = (acc.as_object_mut(), item.as_object()) {
                    for (k, v) in item {
                        acc.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                acc
            });
            walk(&format!("{path}[]"), &schema["items"], &merged, missing);
        }
        if schema["additionalProperties"].is_object()
            && let Some((_, first)) = value.as_object().and_then(|m| m.iter().next())
        {
            walk(
                &format!("{path}.*"),
                &schema["additionalProperties"],
                first,
                missing,
            );
        }
    }
    let crd = serde_json::to_value(generate::postgresql()).unwrap();
    let spec_schema =
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let manifest = yaml(&repo("manifests/complete-postgres-manifest.yaml"));
    let mut missing = Vec::new();
    walk("spec", spec_schema, &manifest["spec"], &mut missing);
    // A standby takes exactly one source; the manifest shows standby_host.
    missing.retain(|m| m != "spec.standby.s3_wal_path" && m != "spec.standby.gs_wal_path");
    assert!(missing.is_empty(), "complete manifest lacks {missing:#?}");
}

fn seed_fixtures() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                without_ellipses(yaml(&p)),
            )
        })
        .collect()
}

/// The guide writes `...` (or `- ...`) for "the rest of your manifest"; drop those placeholders.
fn without_ellipses(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| v != "...")
                .map(|(k, v)| (k, without_ellipses(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .filter(|v| v != "...")
                .map(without_ellipses)
                .collect(),
        ),
        other => other,
    }
}

/// Fills the required fields an abbreviated example leaves out, keeping everything it sets.
fn with_required_spec(mut manifest: Value) -> Value {
    let base = json!({"teamId": "acid", "numberOfInstances": 1, "postgresql": {"version": "17"}, "volume": {"size": "1Gi"}});
    let spec = manifest
        .as_object_mut()
        .unwrap()
        .entry("spec")
        .or_insert_with(|| json!({}));
    for (key, value) in base.as_object().unwrap() {
        spec.as_object_mut()
            .unwrap()
            .entry(key.clone())
            .or_insert_with(|| value.clone());
    }
    manifest
}

#[test]
fn seed_examples_parse_into_the_types() {
    let fixtures = seed_fixtures();
    assert!(
        fixtures.len() >= 20,
        "expected the guide's examples, found {}",
        fixtures.len()
    );
    for (name, value) in fixtures {
        if name.ends_with("-postgresql.yaml") {
            let pg: Postgresql = serde_json::from_value(with_required_spec(value.clone()))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                pg.metadata.name,
                value["metadata"]["name"].as_str().map(String::from),
                "{name}"
            );
        } else if name.ends_with("-configmap.yaml") {
            let cm: k8s_openapi::api::core::v1::ConfigMap =
                serde_json::from_value(value).unwrap_or_else(|e| panic!("{name}: {e}"));
            let data = cm.data.unwrap_or_default();
            let loaded =
                config::load(Input::ConfigMap(&data)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(loaded.warnings.is_empty(), "{name}: {:?}", loaded.warnings);
        } else if name.ends_with("-configmap-data.yaml") {
            let data: BTreeMap<String, String> = serde_json::from_value(value).unwrap();
            config::load(Input::ConfigMap(&data)).unwrap_or_else(|e| panic!("{name}: {e}"));
        } else if name.ends_with("-operatorconfiguration.yaml") {
            config::load(Input::OperatorConfiguration(&value))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        } else if name.ends_with("-configuration.yaml") {
            let object = json!({"configuration": value});
            config::load(Input::OperatorConfiguration(&object))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        } else {
            panic!("{name}: unknown fixture kind");
        }
    }
}

/// The ConfigMap and OperatorConfiguration forms of the same guide example mean the same thing.
#[test]
fn seed_configmap_and_crd_forms_agree() {
    let fixtures: BTreeMap<String, Value> = seed_fixtures().into_iter().collect();
    let from_cm = |file: &str| {
        let data: BTreeMap<String, String> =
            serde_json::from_value(fixtures[file]["data"].clone()).unwrap();
        config::load(Input::ConfigMap(&data)).unwrap().config
    };
    let from_crd = |file: &str| {
        config::load(Input::OperatorConfiguration(&fixtures[file]))
            .unwrap()
            .config
    };
    let pairs = [
        (
            "line0106-configmap.yaml",
            "line0116-operatorconfiguration.yaml",
        ),
        (
            "line0235-configmap.yaml",
            "line0241-operatorconfiguration.yaml",
        ),
        (
            "line0293-configmap.yaml",
            "line0302-operatorconfiguration.yaml",
        ),
        (
            "line0331-configmap.yaml",
            "line0340-operatorconfiguration.yaml",
        ),
        (
            "line0398-configmap.yaml",
            "line0408-operatorconfiguration.yaml",
        ),
        (
            "line0435-configmap.yaml",
            "line0445-operatorconfiguration.yaml",
        ),
        (
            "line0567-configmap.yaml",
            "line0578-operatorconfiguration.yaml",
        ),
    ];
    for (cm, crd) in pairs {
        if !fixtures.contains_key(crd) {
            continue;
        }
        let (mut a, b) = (from_cm(cm), from_crd(crd));
        // CRD mode alone turns these two off when omitted (Zalando's zero values).
        a.load_balancer.enable_master_load_balancer = false;
        a.teams_api.enable_teams_api = false;
        assert_eq!(a, b, "{cm} and {crd} disagree");
    }
    let toleration = |c: &common::config::Config| {
        config::effective_toleration(&c.kubernetes.toleration).unwrap()
    };
    assert_eq!(
        toleration(&from_cm("line0211-configmap.yaml")),
        toleration(&from_crd("line0220-operatorconfiguration.yaml"))
    );
    let cm = from_cm("line0106-configmap.yaml");
    assert_eq!(cm.kubernetes.delete_annotation_date_key, "delete-date");
    assert_eq!(
        cm.kubernetes.delete_annotation_name_key,
        "delete-clustername"
    );
}
