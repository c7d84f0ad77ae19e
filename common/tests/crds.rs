//! The committed CRD YAML matches the Rust types, and every schema field is documented.

use common::crd::generate;
use serde_json::Value;
use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    for (file, crd) in generate::all() {
        let committed = std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("crds/{file} is missing ({e}); run `make crds`"));
        assert!(
            committed == generate::to_yaml(&crd),
            "crds/{file} differs from what the Rust types generate; run `make crds` and commit the result"
        );
    }
}

/// `kubectl explain` prints descriptions, so a field without one is a gap in the user's help.
#[test]
fn every_field_has_a_description() {
    fn walk(path: &str, schema: &Value, missing: &mut Vec<String>) {
        if let Some(props) = schema["properties"].as_object() {
            for (name, prop) in props {
                let here = format!("{path}.{name}");
                if prop["description"].as_str().is_none_or(str::is_empty) {
                    missing.push(here.clone());
                }
                walk(&here, prop, missing);
            }
        }
        if schema["items"].is_object() {
            walk(path, &schema["items"], missing);
        }
        if schema["additionalProperties"].is_object() {
            walk(
                &format!("{path}.*"),
                &schema["additionalProperties"],
                missing,
            );
        }
    }
    for (file, crd) in generate::all() {
        let value = serde_json::to_value(crd).unwrap();
        let root = &value["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut missing = Vec::new();
        for (name, prop) in root["properties"].as_object().unwrap() {
            if ["apiVersion", "kind", "metadata"].contains(&name.as_str()) {
                continue;
            }
            walk(name, prop, &mut missing);
        }
        assert!(
            missing.is_empty(),
            "{file}: fields without description: {missing:#?}"
        );
    }
}

#[test]
fn postgresql_crd_names_and_columns() {
    let crd = generate::postgresql();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("postgresqls.acid.zalan.do")
    );
    let names = &crd.spec.names;
    assert_eq!(names.kind, "postgresql");
    assert_eq!(
        names.list_kind.as_deref().unwrap_or("postgresqlList"),
        "postgresqlList"
    );
    assert_eq!(names.short_names.as_deref(), Some(&["pg".to_string()][..]));
    assert_eq!(names.categories.as_deref(), Some(&["all".to_string()][..]));
    let version = &crd.spec.versions[0];
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    // Zalando's columns in Zalando's order, then Ready: why the cluster is or is not ready
    // (UnsupportedField for a manifest with fields the operator ignores yet).
    assert_eq!(
        columns,
        [
            "Team",
            "Version",
            "Pods",
            "Volume",
            "CPU-Request",
            "Memory-Request",
            "Age",
            "Status",
            "Ready"
        ]
    );
    let ready = &version.additional_printer_columns.as_ref().unwrap()[8];
    assert_eq!(
        ready.json_path,
        ".status.conditions[?(@.type==\"Ready\")].reason"
    );
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let schema = serde_json::to_value(version.schema.as_ref().unwrap()).unwrap();
    let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
    let required: Vec<&str> = spec["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for field in ["numberOfInstances", "postgresql", "teamId", "volume"] {
        assert!(required.contains(&field), "{field} must be required");
    }
    let props = &spec["properties"];
    assert_eq!(props["numberOfInstances"]["minimum"].as_f64(), Some(0.0));
    assert_eq!(
        props["postgresql"]["properties"]["version"]["enum"],
        serde_json::json!(["14", "15", "16", "17", "18"])
    );
    assert_eq!(
        props["connectionPooler"]["properties"]["numberOfInstances"]["minimum"].as_f64(),
        Some(1.0)
    );
    assert_eq!(
        props["connectionPooler"]["properties"]["mode"]["enum"],
        serde_json::json!(["session", "transaction"])
    );
    assert_eq!(
        props["volume"]["properties"]["iops"]["maximum"].as_f64(),
        Some(80000.0)
    );
    assert_eq!(
        props["volume"]["properties"]["throughput"]["maximum"].as_f64(),
        Some(2000.0)
    );
    assert_eq!(props["clone"]["properties"]["uid"]["format"], "uuid");
    assert_eq!(props["clone"]["required"], serde_json::json!(["cluster"]));
    assert_eq!(props["tls"]["required"], serde_json::json!(["secretName"]));
    assert_eq!(props["standby"]["anyOf"].as_array().unwrap().len(), 3);
    assert_eq!(
        props["standby"]["not"],
        serde_json::json!({"required": ["s3_wal_path", "gs_wal_path"]})
    );
    assert!(
        props["users"]["additionalProperties"]["items"]["enum"]
            .as_array()
            .unwrap()
            .contains(&"NOLOGIN".into())
    );
    for pattern_field in [
        &props["volume"]["properties"]["size"],
        &props["resources"]["properties"]["requests"]["properties"]["cpu"],
        &props["allowedSourceRanges"]["items"],
        &props["logicalBackupSchedule"],
        &props["maintenanceWindows"]["items"],
        &props["clone"]["properties"]["timestamp"],
    ] {
        assert!(pattern_field["pattern"].is_string(), "{pattern_field}");
    }
}

#[test]
fn other_crds() {
    let opconfig = generate::operator_configuration();
    assert_eq!(
        opconfig.metadata.name.as_deref(),
        Some("operatorconfigurations.acid.zalan.do")
    );
    assert_eq!(
        opconfig.spec.names.short_names.as_deref(),
        Some(&["opconfig".to_string()][..])
    );
    let columns: Vec<&str> = opconfig.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.json_path.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            ".configuration.docker_image",
            ".configuration.kubernetes.cluster_name_label",
            ".configuration.kubernetes.pod_service_account_name",
            ".configuration.min_instances",
            ".metadata.creationTimestamp"
        ]
    );
    let yaml = generate::to_yaml(&opconfig);
    assert!(
        !yaml.contains("\n        default:") && !yaml.contains(" default: "),
        "no server-side defaults"
    );
    let team = generate::postgres_team();
    assert_eq!(
        team.metadata.name.as_deref(),
        Some("postgresteams.acid.zalan.do")
    );
    assert_eq!(
        team.spec.names.short_names.as_deref(),
        Some(&["pgteam".to_string()][..])
    );
}
