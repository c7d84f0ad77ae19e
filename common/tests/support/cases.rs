//! What the case tables of `database.rs` and `roles.rs` (and the rule cases) share: the
//! operator configuration from a case's ConfigMap-style options, and the checks of a plan's
//! rendered statements and warnings against what the case expects, with one failure report.

use super::render;
use common::config::{self, Config, Input};
use common::database::model::Statement;
use std::collections::BTreeMap;

/// A case's `config` options as ConfigMap data: strings, booleans and numbers as text.
pub fn config_map_data(
    options: &BTreeMap<String, serde_yaml::Value>,
) -> Result<BTreeMap<String, String>, String> {
    let mut data = BTreeMap::new();
    for (key, value) in options {
        let text = match value {
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            serde_yaml::Value::Number(n) => n.to_string(),
            other => return Err(format!("config {key}: {other:?} is not a ConfigMap value")),
        };
        data.insert(key.clone(), text);
    }
    Ok(data)
}

/// The configuration from ConfigMap-style options; an unknown or invalid option is an error.
pub fn strict_config(options: &BTreeMap<String, serde_yaml::Value>) -> Result<Config, String> {
    let data = config_map_data(options)?;
    let loaded = config::load(Input::ConfigMap(&data)).map_err(|e| format!("config: {e}"))?;
    match loaded.warnings.as_slice() {
        [] => Ok(loaded.config),
        warnings => Err(format!("config: {warnings:?}")),
    }
}

/// What a case says of the rendered statements: all of them exactly (when given), some in
/// order (`includes`), and texts none may contain (`excludes`).
pub struct ExpectedStatements<'a> {
    pub statements: Option<&'a Vec<String>>,
    pub includes: &'a [String],
    pub excludes: &'a [String],
}

/// Adds to `problems` where `rendered` differs from `expected`.
pub fn check_statements(
    expected: &ExpectedStatements,
    rendered: &[String],
    problems: &mut Vec<String>,
) {
    if let Some(statements) = expected.statements
        && statements != rendered
    {
        problems.push("the statements differ".into());
    }
    let mut from = 0;
    for include in expected.includes {
        match rendered[from..].iter().position(|r| r == include) {
            Some(i) => from += i + 1,
            None => problems.push(format!("missing (or out of order): {include}")),
        }
    }
    for exclude in expected.excludes {
        if let Some(hit) = rendered.iter().find(|r| r.contains(exclude.as_str())) {
            problems.push(format!("unexpected {exclude:?} in: {hit}"));
        }
    }
}

/// Adds a problem unless there are as many warnings as `expected`, each containing its text.
pub fn check_warnings(expected: &[String], got: &[String], problems: &mut Vec<String>) {
    let matches = got.len() == expected.len()
        && got
            .iter()
            .zip(expected)
            .all(|(g, w)| g.contains(w.as_str()));
    if !matches {
        problems.push(format!("warnings: expected {expected:?}"));
    }
}

/// Adds a problem unless `after`, the plan against the catalog the first plan leaves, is empty.
pub fn check_idempotent(after: &[Statement], problems: &mut Vec<String>) {
    if !after.is_empty() {
        let left: Vec<String> = after.iter().map(render).collect();
        problems.push(format!("not idempotent, the mirror still needs: {left:#?}"));
    }
}

/// The case's result: `Ok` without problems, else the problems, the statements and warnings.
pub fn verdict(problems: &[String], rendered: &[String], got: &[String]) -> Result<(), String> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}\n  statements:\n{}\n  warnings: {got:#?}",
        problems.join("\n"),
        rendered
            .iter()
            .map(|r| format!("    - {}", serde_json::to_string(r).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n")
    ))
}
