//! The admission rules (`common::rules`) as the webhook calls them, driven by the case tables
//! under `tests/rules/` (one folder per rule; format in `tests/rules/README.md`). Each case runs
//! `admission::validate` and `admission::mutate` for each of its operations and is compared with
//! its expectations; on top, every case must satisfy the invariants of `rule_cases::check`.

mod rule_cases;
mod support;

use common::config::Config;
use common::crd::Postgresql;
use common::rules::admission::{self, Context, Operation};
use common::rules::manifest::MAX_CLUSTER_NAME_LENGTH;
use common::rules::{Verdict, source_ranges};
use rule_cases::{Loaded, Op, check};
use serde_json::Value;
use std::collections::BTreeMap;

#[test]
fn every_case_of_the_tables() {
    let cases = rule_cases::load_all();
    let mut failures = Vec::new();
    let mut runs: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for case in &cases {
        let folder = case.file.split('/').next().unwrap_or_default().to_string();
        let count = runs.entry(folder).or_default();
        count.0 += 1;
        for &op in &case.operations {
            count.1 += 1;
            let report = check::check(case, op);
            if !report.is_empty() {
                failures.push(report);
            }
        }
    }
    for (folder, (cases, runs)) in &runs {
        println!("{folder}: {cases} cases, {runs} runs");
    }
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n\n{}",
        failures.len(),
        runs.values().map(|r| r.1).sum::<usize>(),
        failures.join("\n\n")
    );
}

#[test]
fn every_rule_has_a_refused_case() {
    let cases = rule_cases::load_all();
    let rules = rule_cases::expected_rules(&cases);
    for rule in [
        "cluster-name",
        "team-prefix",
        "user-name",
        "user-flags",
        "pooler-user",
        "database-name",
        "database-owner",
        "schema-name",
        "maintenance-window",
        "logical-backup-schedule",
        "clone",
        "standby",
        "sidecars",
        "init-containers",
        "quantity",
        "requests-limits",
        "source-ranges",
        "version",
        "clone-version",
        "volume-size",
        "ownership",
        "delete-protection",
    ] {
        assert!(rules.contains(rule), "no refused case for {rule}");
    }
    for op in [Op::Create, Op::Update, Op::Delete] {
        assert!(
            cases.iter().any(|c| c.operations.contains(&op)),
            "no {op:?} case"
        );
    }
}

/// mutate(mutate(x)) == mutate(x) without a second warning, for every manifest of the tables
/// under every configuration of the tables (and one with min_instances above max_instances,
/// which the configuration loader refuses but the rule must survive).
#[test]
fn mutate_is_idempotent_for_every_manifest_and_configuration() {
    let cases = rule_cases::load_all();
    let mut configs: Vec<&Config> = Vec::new();
    let mut manifests: Vec<&Postgresql> = Vec::new();
    for case in &cases {
        if !configs.contains(&&case.config) {
            configs.push(&case.config);
        }
        for pg in std::iter::once(&case.manifest).chain(&case.old) {
            if !manifests.contains(&pg) {
                manifests.push(pg);
            }
        }
    }
    let inverted = Config {
        min_instances: 5,
        max_instances: 2,
        ignore_instance_limits_annotation_key: "skip-limits".into(),
        ..Config::default()
    };
    configs.push(&inverted);
    for (i, config) in configs.iter().enumerate() {
        let ctx = Context {
            config,
            controller_id: "",
            today: rule_cases::DEFAULT_TODAY,
        };
        for pg in &manifests {
            for op in [Operation::Create, Operation::Update, Operation::Delete] {
                let (once, _) = admission::mutate(&ctx, op, pg);
                let (twice, warnings) = admission::mutate(&ctx, op, &once);
                let name = pg.cluster_name();
                assert_eq!(
                    check::patch_between(&once, &twice),
                    Vec::<Value>::new(),
                    "configuration {i}, {name} {op:?}: the second mutation changed the object"
                );
                assert!(
                    warnings.is_empty(),
                    "configuration {i}, {name} {op:?}: the second mutation warned: {warnings:?}"
                );
            }
        }
    }
    println!(
        "{} configurations x {} manifests",
        configs.len(),
        manifests.len()
    );
}

/// A typo must fail loudly, naming the file, instead of silently skipping an assertion.
#[test]
fn malformed_case_files_are_refused() {
    let base: Value = serde_yaml::from_str(
        &std::fs::read_to_string(rule_cases::rules_dir().join("base.yaml")).unwrap(),
    )
    .unwrap();
    let refused = |text: &str, needle: &str| {
        let err = match rule_cases::parse_file("x/bad.yaml", text, &base) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(err) => err,
        };
        assert!(err.starts_with("x/bad.yaml"), "{err}");
        assert!(err.contains(needle), "{err:?} should contain {needle:?}");
    };
    let ok = "- name: a\n  operation: CREATE\n  allowed: true\n";
    assert_eq!(
        rule_cases::parse_file("x/ok.yaml", ok, &base)
            .unwrap()
            .len(),
        1
    );
    refused(&format!("{ok}  alowed: true\n"), "unknown field `alowed`");
    refused(
        "- name: a\n  operation: CREATE\n  allowed: false\n  violations: [{rule: r, field: f, mesage: m}]\n",
        "unknown field `mesage`",
    );
    refused(
        "- name: a\n  operation: CREATE\n  allowed: true\n  warnings: [{equal: x}]\n",
        "expected a part of the message, or {equals: the whole message} (unknown field `equal`",
    );
    refused(
        "- name: a\n  operation: [CREATE, DELET]\n  allowed: true\n",
        "operation must be CREATE, UPDATE or DELETE, or a list of them (unknown variant `DELET`",
    );
    refused(
        "- name: a\n  operation: CREATE\n",
        "missing field `allowed`",
    );
    refused(
        "- name: a\n  operation: CREATE\n  allowed: false\n",
        "allowed: false needs the expected violations",
    );
    refused(
        "- name: a\n  operation: CREATE\n  allowed: true\n  violations: [{rule: r, field: f}]\n",
        "allowed: true, yet violations are expected",
    );
    refused(
        "- name: a\n  operation: CREATE\n  old: {}\n  allowed: true\n",
        "old is only read by UPDATE and DELETE",
    );
    refused(
        "- name: a\n  operation: [CREATE, CREATE]\n  allowed: true\n",
        "each at most once",
    );
    refused(&format!("{ok}{ok}"), "two cases are named \"a\"");
    refused("[]", "the file has no cases");
    refused(
        "- name: a\n  operation: CREATE\n  config: {max_instance: 3}\n  allowed: true\n",
        "max_instance is not a known option",
    );
    refused(
        "- name: a\n  operation: CREATE\n  manifest: {spec: {numberOfInstance: 3}}\n  allowed: true\n",
        ".spec.numberOfInstance is not a field",
    );
    refused(
        "- name: a\n  operation: CREATE\n  manifest: {spec: {postgresql: {version: 17}}}\n  allowed: true\n",
        "manifest: invalid type",
    );
    refused(
        "- name: a\n  operation: CREATE\n  allowed: true\n  warnings: ['']\n",
        "would match anything",
    );

    // A folder without cases and a stray file fail the whole table.
    let root = std::env::temp_dir().join(format!("rule-tables-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::create_dir_all(root.join("full")).unwrap();
    std::fs::copy(
        rule_cases::rules_dir().join("base.yaml"),
        root.join("base.yaml"),
    )
    .unwrap();
    std::fs::write(root.join("full/cases.yaml"), ok).unwrap();
    std::fs::write(root.join("full/more.yml"), ok).unwrap();
    let problems = match rule_cases::load_dir(&root) {
        Ok(_) => panic!("a folder without cases was accepted"),
        Err(problems) => problems,
    };
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(
        problems,
        [
            "empty/: the folder has no cases",
            "full/more.yml: not a .yaml file of cases"
        ]
    );
}

#[test]
fn verdict_message_formats() {
    let mut verdict = Verdict::default();
    assert_eq!(verdict.message(), "");
    assert!(verdict.allowed());
    verdict.warn("just so you know");
    assert!(verdict.allowed(), "warnings do not refuse");
    verdict.deny("a", "spec.a", "is wrong");
    assert_eq!(verdict.message(), "spec.a: is wrong");
    verdict.deny("b", "spec.b", "is wrong too");
    assert_eq!(
        verdict.message(),
        "2 problems:\n- spec.a: is wrong\n- spec.b: is wrong too"
    );
    let mut other = Verdict::default();
    other.deny("c", "spec.c", "third");
    other.warn("second warning");
    verdict.merge(other);
    assert_eq!(verdict.violations.len(), 3);
    assert_eq!(verdict.warnings, ["just so you know", "second warning"]);
    assert!(verdict.message().starts_with("3 problems:\n"));
    assert_eq!(verdict.violations[2].to_string(), "spec.c: third");
}

/// What the tables cannot say: constants, a review without any object, an explicit YAML null.
#[test]
fn outside_the_tables() {
    // The cluster-name cases test the boundary at 58 characters.
    assert_eq!(MAX_CLUSTER_NAME_LENGTH, 58);

    let config = Config::default();
    let ctx = Context {
        config: &config,
        controller_id: "",
        today: rule_cases::DEFAULT_TODAY,
    };
    assert!(!admission::is_responsible(&ctx, None, None));

    // A merge patch removes a key set to null, so the tables cannot write an explicit null:
    // it reads like a missing field and gets the default too.
    let cases = rule_cases::load_all();
    let Some(base) = cases
        .iter()
        .find(|c: &&Loaded| c.case.name == "set, create")
    else {
        panic!("source-ranges/defaulting.yaml has no case \"set, create\"");
    };
    let mut value = serde_json::to_value(&base.manifest).unwrap();
    value["spec"]["allowedSourceRanges"] = Value::Null;
    let explicit_null: Postgresql = serde_json::from_value(value).unwrap();
    assert_eq!(explicit_null.spec.allowed_source_ranges, None);
    let (out, warnings) = admission::mutate(&ctx, Operation::Create, &explicit_null);
    assert_eq!(
        out.spec.allowed_source_ranges,
        Some(vec![source_ranges::DEFAULT_SOURCE_RANGE.to_string()])
    );
    assert_eq!(warnings.len(), 1);
}
