//! Running one case the way the webhook runs a review, and comparing with its expectations.
//!
//! Besides what a case expects, every run must keep these invariants: `Verdict::message()` lists
//! the violations; `mutate` is idempotent; a DELETE is refused by delete protection only; on
//! CREATE and UPDATE `manifest::check_manifest` alone finds the same manifest-rule violations,
//! the mutated object is judged like the input, and an allowed CREATE is also allowed as an
//! UPDATE that changes nothing.

use super::{Loaded, Op, Text};
use common::crd::Postgresql;
use common::rules::admission::{self, Operation};
use common::rules::{Verdict, manifest};
use serde::Serialize;
use serde_json::Value;

/// The rules `validate` runs besides `manifest::check_manifest`.
const OUTSIDE_CHECK_MANIFEST: &[&str] = &[
    "ownership",
    "source-ranges",
    "version",
    "clone-version",
    "volume-size",
];

/// What the rules said, in the case format (so a failure can be pasted as the expectation).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub allowed: bool,
    pub violations: Vec<GotViolation>,
    pub warnings: Vec<String>,
    pub patch: Vec<Value>,
    pub mutate_warnings: Vec<String>,
    pub responsible: bool,
}

#[derive(Debug, Serialize)]
pub struct GotViolation {
    pub rule: String,
    pub field: String,
    pub message: String,
}

/// Runs the validating and the mutating step of one operation.
pub fn outcome(case: &Loaded, op: Op) -> (Outcome, Verdict, Postgresql) {
    let ctx = case.context();
    let operation = op.operation();
    let old = match op {
        Op::Create => None,
        Op::Update | Op::Delete => case.old.as_ref(),
    };
    let source = case.case.clone_source_version.as_deref();
    let verdict = admission::validate(&ctx, operation, old, &case.manifest, source);
    let (mutated, mutate_warnings) = admission::mutate(&ctx, operation, &case.manifest);
    let responsible = match op {
        // The webhook gets the deleted object as oldObject only.
        Op::Delete => admission::is_responsible(&ctx, Some(&case.manifest), None),
        _ => admission::is_responsible(&ctx, old, Some(&case.manifest)),
    };
    let outcome = Outcome {
        allowed: verdict.allowed(),
        violations: verdict
            .violations
            .iter()
            .map(|v| GotViolation {
                rule: v.rule.to_string(),
                field: v.field.clone(),
                message: v.message.clone(),
            })
            .collect(),
        warnings: rule_warnings(&verdict, old, &case.manifest, op),
        patch: patch_between(&case.manifest, &mutated),
        mutate_warnings,
        responsible,
    };
    (outcome, verdict, mutated)
}

/// The validating step's warnings without those about fields that are not implemented yet:
/// `common::fields` owns them and `tests/fields.rs` tests them (including that `validate` gives
/// them), so the rule tables do not change each time a field gets implemented.
fn rule_warnings(
    verdict: &Verdict,
    old: Option<&Postgresql>,
    new: &Postgresql,
    op: Op,
) -> Vec<String> {
    let mut fields = Vec::new();
    if op != Op::Delete {
        fields.extend(common::fields::warnings(new));
        if let (Op::Update, Some(old)) = (op, old) {
            fields.extend(common::fields::change_warnings(old, new));
        }
    }
    verdict
        .warnings
        .iter()
        .filter(|w| !fields.contains(w))
        .cloned()
        .collect()
}

/// The JSON patch from one object to the other, as the mutating webhook sends it.
pub fn patch_between(before: &Postgresql, after: &Postgresql) -> Vec<Value> {
    let json = |pg| serde_json::to_value(pg).expect("a postgresql serializes");
    let patch = json_patch::diff(&json(before), &json(after));
    match serde_json::to_value(patch).expect("a patch serializes") {
        Value::Array(ops) => ops,
        other => panic!("a JSON patch is a list, not {other}"),
    }
}

/// Runs one operation of a case; returns a report of every difference (empty: it passed).
pub fn check(case: &Loaded, op: Op) -> String {
    let (got, verdict, mutated) = outcome(case, op);
    let want = &case.case;
    let mut diffs = Vec::new();
    if got.allowed != want.allowed {
        diffs.push(format!(
            "allowed: expected {}, got {}",
            want.allowed, got.allowed
        ));
    }
    for i in 0..want.violations.len().max(got.violations.len()) {
        match (want.violations.get(i), got.violations.get(i)) {
            (Some(w), Some(g)) => {
                let message_ok = w.message.as_ref().is_none_or(|m| m.matches(&g.message));
                if w.rule != g.rule || w.field != g.field || !message_ok {
                    let message = w.message.as_ref().map(|m| format!(", message {m}"));
                    diffs.push(format!(
                        "violations[{i}]: expected {} on {}{}\n      got {} on {}: {:?}",
                        w.rule,
                        w.field,
                        message.unwrap_or_default(),
                        g.rule,
                        g.field,
                        g.message
                    ));
                }
            }
            (Some(w), None) => diffs.push(format!(
                "violations[{i}]: expected {} on {}, got none",
                w.rule, w.field
            )),
            (None, Some(g)) => diffs.push(format!(
                "violations[{i}]: unexpected {} on {}: {:?}",
                g.rule, g.field, g.message
            )),
            (None, None) => {}
        }
    }
    compare_texts("warnings", &want.warnings, &got.warnings, &mut diffs);
    compare_texts(
        "mutateWarnings",
        &want.mutate_warnings,
        &got.mutate_warnings,
        &mut diffs,
    );
    if got.patch != want.patch {
        diffs.push(format!(
            "patch: expected {}\n      got {}",
            Value::from(want.patch.clone()),
            Value::from(got.patch.clone())
        ));
    }
    if let Some(responsible) = want.responsible
        && responsible != got.responsible
    {
        diffs.push(format!(
            "responsible: expected {responsible}, got {}",
            got.responsible
        ));
    }
    diffs.extend(invariants(case, op, &verdict, &mutated));
    if diffs.is_empty() {
        return String::new();
    }
    let got = serde_yaml::to_string(&got).expect("an outcome serializes");
    format!(
        "{} ({op:?}):\n  - {}\n  got:\n    {}",
        case.title(),
        diffs.join("\n  - "),
        got.trim_end().replace('\n', "\n    ")
    )
}

fn compare_texts(what: &str, want: &[Text], got: &[String], diffs: &mut Vec<String>) {
    for i in 0..want.len().max(got.len()) {
        match (want.get(i), got.get(i)) {
            (Some(w), Some(g)) if !w.matches(g) => {
                diffs.push(format!("{what}[{i}]: expected {w}\n      got {g:?}"))
            }
            (Some(w), None) => diffs.push(format!("{what}[{i}]: expected {w}, got none")),
            (None, Some(g)) => diffs.push(format!("{what}[{i}]: unexpected {g:?}")),
            _ => {}
        }
    }
}

/// What holds for every case whatever its expectations.
fn invariants(case: &Loaded, op: Op, verdict: &Verdict, mutated: &Postgresql) -> Vec<String> {
    let mut broken = Vec::new();
    let ctx = case.context();
    let operation = op.operation();
    let message = verdict.message();
    let expected_message = match verdict.violations.as_slice() {
        [] => String::new(),
        [one] => format!("{}: {}", one.field, one.message),
        many => {
            let lines: Vec<String> = many
                .iter()
                .map(|v| format!("- {}: {}", v.field, v.message))
                .collect();
            format!("{} problems:\n{}", many.len(), lines.join("\n"))
        }
    };
    if message != expected_message {
        broken.push(format!("Verdict::message() is {message:?}"));
    }
    let (twice, warnings) = admission::mutate(&ctx, operation, mutated);
    if &twice != mutated || !warnings.is_empty() {
        broken.push(format!(
            "mutate is not idempotent: a second pass gives {:?} and warns {warnings:?}",
            patch_between(mutated, &twice)
        ));
    }
    if op == Op::Delete {
        if verdict
            .violations
            .iter()
            .any(|v| v.rule != "delete-protection")
        {
            broken.push("a DELETE is refused by a rule other than delete-protection".into());
        }
        return broken;
    }
    let from_manifest_rules: Vec<_> = verdict
        .violations
        .iter()
        .filter(|v| !OUTSIDE_CHECK_MANIFEST.contains(&v.rule))
        .cloned()
        .collect();
    let alone = manifest::check_manifest(&case.config, &case.manifest);
    if alone.violations != from_manifest_rules {
        broken.push(format!(
            "manifest::check_manifest finds other violations: {:?}",
            alone.violations
        ));
    }
    let old = (op == Op::Update).then_some(case.old.as_ref()).flatten();
    let source = case.case.clone_source_version.as_deref();
    let after_mutation = admission::validate(&ctx, operation, old, mutated, source);
    if after_mutation.violations != verdict.violations {
        broken.push(format!(
            "the mutated object is judged differently: {:?}",
            after_mutation.violations
        ));
    }
    if op == Op::Create && verdict.allowed() {
        let unchanged = admission::validate(
            &ctx,
            Operation::Update,
            Some(&case.manifest),
            &case.manifest,
            source,
        );
        if !unchanged.allowed() {
            broken.push(format!(
                "allowed on CREATE but an UPDATE that changes nothing is refused: {}",
                unchanged.message()
            ));
        }
    }
    broken
}
