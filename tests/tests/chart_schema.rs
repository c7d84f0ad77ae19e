//! The chart's values schema (`charts/postgres-operator/values.schema.json`), through the real
//! `helm template` and `helm lint` (no cluster needed).
//!
//! A misspelt key or a value of the wrong type fails with the key's path in Helm's message, at the
//! top level, inside a `config*` group and inside the chart's own blocks. What real Zalando values
//! files carry passes: the legacy keys of its older charts (`crd.create`, options the operator no
//! longer has), and with `configTarget: ConfigMap` the ConfigMap string forms of its charts before
//! 1.7, which the operator's ConfigMap reader then reads as the options they spell. Every option
//! of the operator's configuration types is accepted with its type, so the schema and the types
//! cannot have drifted. Zalando's current default values file is rendered by `chart.rs`.

use anyhow::{Result, ensure};
use common::config::{Config, Input, load};
use e2e::chart::operator_chart;
use e2e::command::{CommandOutput, helm};
use e2e::paths;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Writes `values` as a values file named after `name`.
fn values_file(name: &str, values: &Value) -> Result<PathBuf> {
    std::fs::create_dir_all(paths::local_dir())?;
    let file = paths::local_dir().join(format!("chart-schema-{name}.yaml"));
    std::fs::write(&file, serde_yaml::to_string(values)?)?;
    Ok(file)
}

/// `helm template` of the chart with `values` and `configTarget` set to `target`.
async fn template(name: &str, values: &Value, target: &str) -> Result<CommandOutput> {
    let file = values_file(name, values)?;
    let target = format!("configTarget={target}");
    helm([
        "template",
        "postgres-operator",
        &operator_chart(),
        "-n",
        "postgres-operator",
        "-f",
        &file.to_string_lossy(),
        "--set",
        &target,
    ])
    .await
}

const TARGETS: [&str; 2] = ["ConfigMap", "OperatorConfigurationCRD"];

/// Fails unless rendering `values` is refused in `targets` with every one of `names` in Helm's
/// message.
async fn refused(name: &str, values: Value, targets: &[&str], names: &[&str]) -> Result<()> {
    for target in targets {
        let out = template(name, &values, target).await?.failed()?;
        ensure!(
            out.stderr
                .contains("values don't meet the specifications of the schema"),
            "{target}: not refused by the schema:\n{out}"
        );
        for wanted in names {
            ensure!(
                out.stderr.contains(wanted),
                "{target}: the message does not name {wanted}:\n{out}"
            );
        }
    }
    Ok(())
}

/// The configuration object rendered from `values` in `target`, read by the operator's loader.
async fn loaded(name: &str, values: &Value, target: &str) -> Result<common::config::Loaded> {
    let out = template(name, values, target).await?.ok()?;
    let mut found = None;
    for doc in serde_yaml::Deserializer::from_str(&out.stdout) {
        let object = Value::deserialize(doc)?;
        if object["metadata"]["name"] == "postgres-operator"
            && (object["kind"] == "ConfigMap" || object["kind"] == "OperatorConfiguration")
        {
            found = Some(object);
        }
    }
    let object = found.ok_or_else(|| anyhow::anyhow!("no configuration object rendered"))?;
    let got = if object["kind"] == "ConfigMap" {
        let data: BTreeMap<String, String> = serde_json::from_value(object["data"].clone())?;
        load(Input::ConfigMap(&data))
    } else {
        load(Input::OperatorConfiguration(&object))
    };
    got.map_err(|e| {
        anyhow::anyhow!("{target}: the operator refuses the rendered configuration: {e}")
    })
}

#[tokio::test]
async fn misspelt_keys_are_refused_with_their_name() -> Result<()> {
    refused(
        "top-level",
        json!({"configGenral": {"workers": 3}}),
        &TARGETS,
        &["configGenral"],
    )
    .await?;
    refused(
        "in-a-group",
        json!({"configKubernetes": {"watched_namespaces": "team-a"}}),
        &TARGETS,
        &["/configKubernetes", "watched_namespaces"],
    )
    .await?;
    refused(
        "in-a-block",
        json!({"webhook": {"replica": 3}}),
        &TARGETS,
        &["/webhook", "replica"],
    )
    .await?;
    // helm lint reports it the same way.
    let file = values_file(
        "lint",
        &json!({"configKubernetes": {"enable_sidecar": true}}),
    )?;
    let lint = helm(["lint", &operator_chart(), "-f", &file.to_string_lossy()])
        .await?
        .failed()?;
    ensure!(
        format!("{}{}", lint.stdout, lint.stderr).contains("enable_sidecar"),
        "{lint}"
    );
    Ok(())
}

#[tokio::test]
async fn values_of_the_wrong_type_are_refused_with_their_path() -> Result<()> {
    refused(
        "not-a-number",
        json!({"configGeneral": {"max_instances": "abc"}}),
        &TARGETS,
        &["/configGeneral/max_instances"],
    )
    .await?;
    refused(
        "replicas",
        json!({"webhook": {"replicas": "two"}}),
        &TARGETS,
        &["/webhook/replicas"],
    )
    .await?;
    refused(
        "not-a-choice",
        json!({"configMajorVersionUpgrade": {"major_version_upgrade_mode": "sometimes"}}),
        &TARGETS,
        &["/configMajorVersionUpgrade/major_version_upgrade_mode"],
    )
    .await?;
    refused(
        "below-minimum",
        json!({"configGeneral": {"workers": 0}}),
        &TARGETS,
        &["/configGeneral/workers"],
    )
    .await?;
    // The ConfigMap reader takes Go's boolean words, not any word.
    refused(
        "not-a-boolean",
        json!({"configGeneral": {"enable_shm_volume": "enabled"}}),
        &["ConfigMap"],
        &["/configGeneral/enable_shm_volume"],
    )
    .await?;
    // An OperatorConfiguration keeps YAML types, and the API server refuses a quoted number for
    // an integer option: the schema says so before anything is installed.
    refused(
        "quoted-number",
        json!({"configGeneral": {"max_instances": "5"}}),
        &["OperatorConfigurationCRD"],
        &["/configGeneral/max_instances"],
    )
    .await?;
    Ok(())
}

/// What Zalando's charts up to 1.7 and 1.15 carried, and the operator no longer reads.
#[tokio::test]
async fn legacy_keys_of_zalandos_older_charts_are_accepted_and_ignored() -> Result<()> {
    let legacy = json!({
        "crd": {"create": false},
        "enableStreams": true,
        "configGeneral": {"enable_crd_validation": true},
        "configAwsOrGcp": {
            "enable_ebs_gp3_migration": false,
            "enable_ebs_gp3_migration_max_size": 1000,
        },
        "configPatroni": {"failsafe_mode": false},
    });
    for target in TARGETS {
        let with = loaded("legacy", &legacy, target).await?;
        let without = loaded("no-legacy", &json!({}), target).await?;
        ensure!(
            with.config == without.config,
            "{target}: the legacy keys changed the configuration"
        );
    }
    Ok(())
}

/// Zalando's values files before chart 1.7 wrote every option as ConfigMap text.
#[tokio::test]
async fn configmap_strings_of_older_zalando_files_are_read_as_the_options() -> Result<()> {
    let old = json!({
        "configGeneral": {"workers": "4", "enable_shm_volume": "false", "min_instances": "-1"},
        "configKubernetes": {
            "cluster_labels": "application:spilo,team:a",
            "inherited_labels": "application,environment",
            "enable_pod_antiaffinity": "true",
        },
        "configTeamsApi": {
            "protected_role_names": "admin",
            "team_api_role_configuration": "log_statement:all",
        },
        "configMajorVersionUpgrade": {"minimal_major_version": 14},
    });
    let got = loaded("configmap-strings", &old, "ConfigMap").await?;
    let c: &Config = &got.config;
    ensure!(c.workers == 4 && !c.enable_shm_volume && c.min_instances == -1);
    ensure!(
        c.kubernetes.cluster_labels.get("team").map(String::as_str) == Some("a"),
        "{:?}",
        c.kubernetes.cluster_labels
    );
    ensure!(c.kubernetes.inherited_labels == ["application", "environment"]);
    ensure!(c.kubernetes.enable_pod_antiaffinity);
    ensure!(c.teams_api.protected_role_names == ["admin"]);
    ensure!(c.major_version_upgrade.minimal_major_version == "14");
    // The same strings in an OperatorConfiguration would be refused by the API server.
    refused(
        "configmap-strings",
        old,
        &["OperatorConfigurationCRD"],
        &[
            "/configGeneral/workers",
            "/configKubernetes/enable_pod_antiaffinity",
        ],
    )
    .await?;
    Ok(())
}

/// Every option of the operator's configuration, set to its default through the chart's groups,
/// passes the schema in both targets and reads back as the operator's defaults.
#[tokio::test]
async fn every_option_of_the_operator_configuration_is_accepted() -> Result<()> {
    let defaults = serde_json::to_value(Config::default())?;
    // The sections are the CRD's objects with properties; the rest are general options.
    let crd = serde_json::to_value(common::crd::generate::operator_configuration())?;
    let schema =
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["configuration"];
    let is_section = |name: &str| schema["properties"][name]["properties"].is_object();
    let mut groups = Map::new();
    let mut general = Map::new();
    for (name, value) in defaults.as_object().into_iter().flatten() {
        if !is_section(name) {
            general.insert(name.clone(), value.clone());
        } else if name != "scalyr" {
            // The chart has no group for the deprecated Scalyr sidecar (nor had Zalando's since 1.5).
            groups.insert(group_of(name), value.clone());
        }
    }
    groups.insert("configGeneral".into(), Value::Object(general));
    // The chart sets these itself (from podServiceAccount and podPriorityClassName); in the
    // ConfigMap they would be written twice.
    let mut values = Value::Object(groups);
    if let Some(kubernetes) = values["configKubernetes"].as_object_mut() {
        kubernetes.remove("pod_service_account_name");
        kubernetes.remove("pod_priority_class_name");
        // An empty list becomes "" in the ConfigMap, which the operator's ConfigMap reader
        // refuses for this option (it wants at least a secretname).
        kubernetes.remove("infrastructure_roles_secrets");
    }
    for target in TARGETS {
        let got = loaded("every-option", &values, target).await?;
        ensure!(
            got.config.workers == Config::default().workers
                && got.config.kubernetes.secret_name_template
                    == Config::default().kubernetes.secret_name_template,
            "{target}: the defaults did not come back"
        );
    }
    Ok(())
}

/// The chart's group of a section of the operator configuration: `major_version_upgrade` →
/// `configMajorVersionUpgrade`, as Zalando named them.
fn group_of(section: &str) -> String {
    let mut out = String::from("config");
    for word in section.split('_') {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}
