//! The acted-on and not-yet tables cover the generated `postgresql` schema exactly, and a
//! manifest's ignored fields are found without counting values that would do nothing.

use common::crd::Postgresql;
use common::crd::generate;
use common::fields::{
    ACTED_ON, IgnoredField, NOT_YET, NOT_YET_ON_CHANGE, change_warnings, covers, ignored_changes,
    ignored_fields, summary, warnings,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// Every property path under `spec`: `.name` for properties, `[]` for list items, `.*` for map
/// values, in schema order.
fn schema_paths() -> Vec<String> {
    fn walk(path: &str, schema: &Value, out: &mut Vec<String>) {
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                let here = format!("{path}.{name}");
                out.push(here.clone());
                walk(&here, property, out);
            }
        }
        if schema["items"].is_object() {
            walk(&format!("{path}[]"), &schema["items"], out);
        }
        if schema["additionalProperties"].is_object() {
            walk(&format!("{path}.*"), &schema["additionalProperties"], out);
        }
    }
    let crd = serde_json::to_value(generate::postgresql()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut out = Vec::new();
    walk("spec", spec, &mut out);
    assert!(out.len() > 100, "the walk found the schema: {out:?}");
    out
}

fn not_yet_paths() -> Vec<&'static str> {
    NOT_YET.iter().map(|f| f.path).collect()
}

fn paths(fields: &[IgnoredField]) -> Vec<&'static str> {
    fields.iter().map(|f| f.path).collect()
}

#[test]
fn every_schema_path_is_acted_on_or_not_yet() {
    let not_yet = not_yet_paths();
    let entries: Vec<&str> = ACTED_ON.iter().copied().chain(not_yet.clone()).collect();
    let mut problems = Vec::new();
    for path in schema_paths() {
        let acted: Vec<&str> = ACTED_ON
            .iter()
            .copied()
            .filter(|e| covers(e, &path))
            .collect();
        let ignored: Vec<&str> = not_yet
            .iter()
            .copied()
            .filter(|e| covers(e, &path))
            .collect();
        if !acted.is_empty() && !ignored.is_empty() {
            problems.push(format!(
                "{path} is in both lists: ACTED_ON {acted:?}, NOT_YET {ignored:?}"
            ));
        } else if acted.len() + ignored.len() > 1 {
            let all: Vec<&str> = acted.iter().chain(&ignored).copied().collect();
            problems.push(format!("{path} is covered by several entries: {all:?}"));
        } else if acted.is_empty() && ignored.is_empty() {
            // An object none of whose entries names it is fine when entries name its parts; its
            // parts are checked one by one.
            let parent_of_entries = entries.iter().any(|e| covers(&path, e));
            if !parent_of_entries {
                problems.push(format!("{path} is in neither ACTED_ON nor NOT_YET"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "classify every postgresql spec field in common/src/fields.rs:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_entry_names_a_schema_path() {
    let known: BTreeSet<String> = schema_paths().into_iter().collect();
    let mut seen = BTreeSet::new();
    let all = ACTED_ON
        .iter()
        .copied()
        .chain(not_yet_paths())
        .chain(NOT_YET_ON_CHANGE.iter().map(|f| f.path));
    let mut problems = Vec::new();
    for (index, entry) in all.enumerate() {
        if !known.contains(entry) {
            problems.push(format!("{entry} is not a field of the postgresql schema"));
        }
        // NOT_YET_ON_CHANGE entries repeat ACTED_ON paths on purpose; within the two main lists
        // a path appears once.
        if index < ACTED_ON.len() + NOT_YET.len() && !seen.insert(entry) {
            problems.push(format!("{entry} is listed twice"));
        }
    }
    assert!(
        problems.is_empty(),
        "stale entries:\n{}",
        problems.join("\n")
    );
}

#[test]
fn changes_not_applied_are_acted_on_fields() {
    for field in NOT_YET_ON_CHANGE {
        assert!(
            ACTED_ON.iter().any(|e| covers(e, field.path)),
            "{} is in NOT_YET_ON_CHANGE but not acted on at all; it belongs in NOT_YET",
            field.path
        );
        assert!(!field.reason.is_empty());
    }
}

#[test]
fn reasons_are_short_sentences() {
    for field in NOT_YET {
        assert!(!field.reason.is_empty(), "{}", field.path);
        assert!(field.reason.len() < 200, "{}: reason too long", field.path);
        assert!(
            !field.reason.ends_with('.') && field.reason.starts_with(char::is_lowercase),
            "{}: a reason is a lower-case clause without a final period",
            field.path
        );
    }
}

#[test]
fn covers_respects_name_boundaries() {
    assert!(covers("spec.clone", "spec.clone"));
    assert!(covers("spec.clone", "spec.clone.uid"));
    assert!(covers("spec.sidecars", "spec.sidecars[].name"));
    assert!(covers("spec.users", "spec.users.*"));
    assert!(!covers("spec.env", "spec.envFrom"));
    assert!(!covers("spec.volume.size", "spec.volume"));
}

fn manifest(file: &str) -> Postgresql {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests")
        .join(file);
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A minimal cluster whose spec gets the keys of `extra` (YAML at spec level), replacing any.
fn pg(extra: &str) -> Postgresql {
    let mut manifest: Value = serde_yaml::from_str(
        "{apiVersion: acid.zalan.do/v1, kind: postgresql, metadata: {name: acid-x}, spec: {teamId: acid, numberOfInstances: 1, postgresql: {version: \"17\"}, volume: {size: 1Gi}}}",
    )
    .unwrap();
    let extra: Value = serde_yaml::from_str(extra).unwrap_or_else(|e| panic!("{e}\n{extra}"));
    for (key, value) in extra.as_object().cloned().unwrap_or_default() {
        manifest["spec"][key] = value;
    }
    serde_json::from_value(manifest.clone()).unwrap_or_else(|e| panic!("{e}\n{manifest}"))
}

#[test]
fn minimal_manifest() {
    assert_eq!(
        paths(&ignored_fields(&manifest("minimal-postgres-manifest.yaml"))),
        Vec::<&str>::new(),
        "the minimal manifest asks for nothing the operator does not do"
    );
}

#[test]
fn complete_manifest() {
    // Its pooler and logical backup are switched off (enableConnectionPooler,
    // enableReplicaConnectionPooler and enableLogicalBackup false), so their settings do nothing.
    assert_eq!(
        paths(&ignored_fields(&manifest(
            "complete-postgres-manifest.yaml"
        ))),
        [
            "spec.volume.iops",
            "spec.volume.throughput",
            "spec.volume.type",
            "spec.tls",
            "spec.additionalVolumes",
            "spec.streams",
        ]
    );
}

#[test]
fn a_cluster_with_only_acted_on_fields_ignores_nothing() {
    let pg = pg(
        "dockerImage: spilo:1\npostgresql: {version: \"17\", parameters: {max_connections: \"10\"}}\npatroni: {ttl: 30, pg_hba: [local all all trust]}\nsidecars: [{name: s, image: i}]\nenableMasterLoadBalancer: true",
    );
    assert_eq!(ignored_fields(&pg), []);
    assert_eq!(warnings(&pg), Vec::<String>::new());
    assert_eq!(summary(&ignored_fields(&pg)), None);
}

#[test]
fn values_that_do_nothing_are_not_reported() {
    let pg = pg(r#"volume: {size: 1Gi, iops: 0, throughput: 0, type: ""}
enableConnectionPooler: false
enableReplicaConnectionPooler: false
connectionPooler: {numberOfInstances: 2, mode: transaction}
enableMasterPoolerLoadBalancer: true
enableReplicaPoolerLoadBalancer: true
enableMasterPoolerNodePort: true
enableReplicaPoolerNodePort: true
masterPoolerNodePort: 30001
replicaPoolerNodePort: 30002
users: {}
usersWithSecretRotation: []
usersWithInPlaceSecretRotation: [""]
usersIgnoringSecretRotation: null
databases: {}
preparedDatabases: null
maintenanceWindows: []
clone: {cluster: "", uid: null}
standby: {standby_host: ""}
enableLogicalBackup: false
logicalBackupRetention: "3 days"
logicalBackupSchedule: "30 00 * * *"
tls: {secretName: ""}
additionalVolumes: []
streams: []"#);
    assert_eq!(
        ignored_fields(&pg),
        [],
        "false, 0, empty and null values, and settings of switched-off features, are no use"
    );
    let pg = pg_with_nulls();
    assert_eq!(ignored_fields(&pg), []);
}

/// Explicit nulls everywhere a NOT_YET field can be.
fn pg_with_nulls() -> Postgresql {
    let lines: Vec<String> = NOT_YET
        .iter()
        .filter_map(|f| f.path.strip_prefix("spec."))
        .filter(|p| !p.contains('.'))
        .map(|p| format!("{p}: null"))
        .collect();
    pg(&lines.join("\n"))
}

/// A manifest using each NOT_YET entry, with whatever switches the entry depends on.
const SAMPLES: &[(&str, &str)] = &[
    ("spec.volume.iops", "volume: {size: 1Gi, iops: 3000}"),
    (
        "spec.volume.throughput",
        "volume: {size: 1Gi, throughput: 125}",
    ),
    ("spec.volume.type", "volume: {size: 1Gi, type: gp3}"),
    (
        "spec.enableConnectionPooler",
        "enableConnectionPooler: true",
    ),
    (
        "spec.enableReplicaConnectionPooler",
        "enableReplicaConnectionPooler: true",
    ),
    ("spec.connectionPooler", "connectionPooler: {mode: session}"),
    (
        "spec.enableMasterPoolerLoadBalancer",
        "enableConnectionPooler: true\nenableMasterPoolerLoadBalancer: true",
    ),
    (
        "spec.enableReplicaPoolerLoadBalancer",
        "enableReplicaConnectionPooler: true\nenableReplicaPoolerLoadBalancer: true",
    ),
    (
        "spec.enableMasterPoolerNodePort",
        "enableConnectionPooler: true\nenableMasterPoolerNodePort: true",
    ),
    (
        "spec.enableReplicaPoolerNodePort",
        "enableReplicaConnectionPooler: true\nenableReplicaPoolerNodePort: true",
    ),
    (
        "spec.masterPoolerNodePort",
        "connectionPooler: {}\nmasterPoolerNodePort: 30001",
    ),
    (
        "spec.replicaPoolerNodePort",
        "enableReplicaConnectionPooler: true\nreplicaPoolerNodePort: 30002",
    ),
    ("spec.enableLogicalBackup", "enableLogicalBackup: true"),
    (
        "spec.logicalBackupRetention",
        "enableLogicalBackup: true\nlogicalBackupRetention: 3 days",
    ),
    (
        "spec.logicalBackupSchedule",
        "enableLogicalBackup: true\nlogicalBackupSchedule: \"0 1 * * *\"",
    ),
    ("spec.tls", "tls: {secretName: pg-tls}"),
    (
        "spec.additionalVolumes",
        "additionalVolumes: [{name: v, mountPath: /v, volumeSource: {emptyDir: {}}}]",
    ),
    (
        "spec.streams",
        "streams: [{applicationId: a, database: d, tables: {t: {eventType: e}}}]",
    ),
];

#[test]
fn each_not_yet_entry_is_detected_when_set() {
    let sampled: Vec<&str> = SAMPLES.iter().map(|(p, _)| *p).collect();
    assert_eq!(sampled, not_yet_paths(), "one sample per NOT_YET entry");
    for (path, yaml) in SAMPLES {
        let found = paths(&ignored_fields(&pg(yaml)));
        assert!(
            found.contains(path),
            "{path} not detected in {yaml:?}: {found:?}"
        );
    }
}

#[test]
fn connection_pooler_section_alone_enables_the_pooler() {
    // As in Zalando, the section's presence enables the primary pooler unless switched off.
    assert_eq!(
        paths(&ignored_fields(&pg("connectionPooler: {}"))),
        ["spec.connectionPooler"]
    );
    assert_eq!(
        paths(&ignored_fields(&pg(
            "enableConnectionPooler: false\nconnectionPooler: {}"
        ))),
        Vec::<&str>::new()
    );
    assert_eq!(
        paths(&ignored_fields(&pg(
            "enableConnectionPooler: true\nconnectionPooler: {}"
        ))),
        ["spec.enableConnectionPooler"]
    );
    // Settings used by the replica pooler only.
    assert_eq!(
        paths(&ignored_fields(&pg(
            "enableConnectionPooler: false\nenableReplicaConnectionPooler: true\nconnectionPooler: {user: pooler}\nenableMasterPoolerLoadBalancer: true\nenableReplicaPoolerLoadBalancer: true"
        ))),
        [
            "spec.enableReplicaConnectionPooler",
            "spec.connectionPooler",
            "spec.enableReplicaPoolerLoadBalancer"
        ]
    );
}

#[test]
fn warnings_and_summary_name_each_field_with_its_reason() {
    let pg = pg("enableLogicalBackup: true\ntls: {secretName: pg-tls}");
    let backup = NOT_YET
        .iter()
        .find(|f| f.path == "spec.enableLogicalBackup")
        .unwrap();
    let tls = NOT_YET.iter().find(|f| f.path == "spec.tls").unwrap();
    assert_eq!(
        warnings(&pg),
        [
            format!(
                "spec.enableLogicalBackup is not implemented yet and will be ignored: {}",
                backup.reason
            ),
            format!(
                "spec.tls is not implemented yet and will be ignored: {}",
                tls.reason
            ),
        ]
    );
    assert_eq!(
        summary(&ignored_fields(&pg)).unwrap(),
        format!(
            "these fields are not implemented yet and are ignored: spec.enableLogicalBackup ({}); spec.tls ({})",
            backup.reason, tls.reason
        )
    );
    assert_eq!(common::fields::CONDITION_REASON, "UnsupportedField");
}

#[test]
fn changes_that_do_not_take_effect() {
    let old = pg(
        "postgresql: {version: \"16\", parameters: {max_connections: \"100\"}}\npatroni: {ttl: 30, synchronous_mode: false, pg_hba: [a]}",
    );
    assert_eq!(ignored_changes(&old, &old), []);
    // false and absent are the same; pg_hba reaches pods when they are recreated.
    let same = pg(
        "postgresql: {version: \"16\", parameters: {max_connections: \"100\"}}\npatroni: {ttl: 30, pg_hba: [b]}",
    );
    assert_eq!(ignored_changes(&old, &same), []);
    let new = pg(
        "postgresql: {version: \"17\", parameters: {max_connections: \"200\"}}\npatroni: {ttl: 20}\nvolume: {size: 2Gi}\nnumberOfInstances: 3",
    );
    // A raised major version is upgraded in place (controller/src/upgrade).
    assert_eq!(ignored_changes(&old, &new), []);
    assert_eq!(change_warnings(&old, &new), Vec::<String>::new());
}

/// The admission rules carry the field warnings (so the webhook sends them), and the controller's
/// typed validation carries the ignored fields (so its status can report them).
#[test]
fn validation_reports_ignored_fields_and_ignored_changes() {
    use common::config::Config;
    use common::rules::admission::{self, Context, Operation};
    let config = Config::default();
    let ctx = Context {
        config: &config,
        controller_id: "",
        today: "2026-01-01",
    };
    let cloned = pg("enableLogicalBackup: true\nallowedSourceRanges: [127.0.0.1/32]");
    let verdict = admission::validate(&ctx, Operation::Create, None, &cloned, Some("17"));
    assert!(verdict.allowed(), "{verdict:?}");
    assert!(
        verdict.warnings.iter().any(|w| w
            .starts_with("spec.enableLogicalBackup is not implemented yet and will be ignored: ")),
        "{:?}",
        verdict.warnings
    );
    let valid = admission::check(&ctx, &cloned).expect("valid");
    assert_eq!(paths(&valid.ignored), ["spec.enableLogicalBackup"]);
    assert_eq!(valid.instances, 1);
    assert_eq!(valid.source_ranges, ["127.0.0.1/32"]);

    // An update that changes a field whose changes do not take effect yet warns about it, as the
    // webhook sees it (the old spec as JSON) and as the typed path sees it.
    let old = pg("clone: {cluster: acid-a}");
    let new = pg("clone: {cluster: acid-b}");
    let verdict = admission::validate(&ctx, Operation::Update, Some(&old), &new, None);
    let expected = "spec.clone was changed, but the change will not take effect: a clone source is read only when the cluster is created; the running cluster keeps its data";
    assert!(
        verdict.warnings.iter().any(|w| w == expected),
        "{:?}",
        verdict.warnings
    );
    let old_spec =
        serde_json::json!({"clone": {"cluster": "acid-a"}, "postgresql": {"version": "17"}});
    assert_eq!(
        common::fields::change_warnings_from(&old_spec, &new),
        [expected]
    );

    // A refused manifest gives every violation and no Validated.
    let bad = pg("allowedSourceRanges: [nope]");
    let refused = admission::check(&ctx, &bad).expect_err("refused");
    assert_eq!(refused.violations[0].field, "spec.allowedSourceRanges[0]");
}
