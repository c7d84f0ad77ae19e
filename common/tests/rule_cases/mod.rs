//! The case tables of `tests/rules/` (format in `tests/rules/README.md`), read strictly; running
//! a case is in `check.rs`.

pub mod check;

use common::config::Config;
use common::crd::Postgresql;
use common::rules::admission::{Context, Operation};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `today` of a case that does not set it.
pub const DEFAULT_TODAY: &str = "2026-01-01";

/// One case as written in a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Case {
    pub name: String,
    pub operation: Operations,
    /// Operator ConfigMap options (`key: value`), read like the operator reads its ConfigMap.
    #[serde(default)]
    pub config: BTreeMap<String, serde_yaml::Value>,
    /// A repository file to start from instead of `base.yaml`.
    pub base: Option<String>,
    /// Merge patch (RFC 7386) over the base: the object under review.
    #[serde(default)]
    pub manifest: Value,
    /// Merge patch over the base: the stored object (UPDATE: the base when omitted).
    pub old: Option<Value>,
    pub today: Option<String>,
    pub controller_id: Option<String>,
    pub clone_source_version: Option<String>,
    pub allowed: bool,
    #[serde(default)]
    pub violations: Vec<ExpectedViolation>,
    #[serde(default)]
    pub warnings: Vec<Text>,
    /// The mutating webhook's JSON patch (`json_patch::diff` of input and output).
    #[serde(default)]
    pub patch: Vec<Value>,
    #[serde(default)]
    pub mutate_warnings: Vec<Text>,
    pub responsible: Option<bool>,
}

/// `operation: CREATE` or `operation: [CREATE, UPDATE]`.
#[derive(Debug, Deserialize)]
#[serde(try_from = "serde_yaml::Value")]
pub struct Operations(Vec<Op>);

impl TryFrom<serde_yaml::Value> for Operations {
    type Error = String;

    fn try_from(value: serde_yaml::Value) -> Result<Self, String> {
        let list = match value {
            serde_yaml::Value::Sequence(list) => list,
            one => vec![one],
        };
        let ops = list.into_iter().map(serde_yaml::from_value::<Op>);
        ops.collect::<Result<_, _>>().map(Operations).map_err(|e| {
            format!("operation must be CREATE, UPDATE or DELETE, or a list of them ({e})")
        })
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "UPPERCASE")]
pub enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    pub fn operation(self) -> Operation {
        match self {
            Op::Create => Operation::Create,
            Op::Update => Operation::Update,
            Op::Delete => Operation::Delete,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedViolation {
    pub rule: String,
    pub field: String,
    pub message: Option<Text>,
}

/// A message as expected: a plain string is a part of it, `{equals: ...}` the whole of it.
#[derive(Debug, Deserialize)]
#[serde(try_from = "serde_yaml::Value")]
pub enum Text {
    Contains(String),
    Equals(String),
}

impl TryFrom<serde_yaml::Value> for Text {
    type Error = String;

    fn try_from(value: serde_yaml::Value) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Whole {
            equals: String,
        }
        match value {
            serde_yaml::Value::String(part) => Ok(Text::Contains(part)),
            other => serde_yaml::from_value::<Whole>(other)
                .map(|w| Text::Equals(w.equals))
                .map_err(|e| {
                    format!(
                        "expected a part of the message, or {{equals: the whole message}} ({e})"
                    )
                }),
        }
    }
}

impl Text {
    fn matches(&self, got: &str) -> bool {
        match self {
            Text::Contains(part) => got.contains(part.as_str()),
            Text::Equals(whole) => got == whole,
        }
    }

    fn text(&self) -> &str {
        match self {
            Text::Contains(part) | Text::Equals(part) => part,
        }
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Text::Contains(part) => write!(f, "containing {part:?}"),
            Text::Equals(whole) => write!(f, "equal to {whole:?}"),
        }
    }
}

/// A case ready to run.
pub struct Loaded {
    /// The file, relative to `tests/rules/`.
    pub file: String,
    pub case: Case,
    pub operations: Vec<Op>,
    pub config: Config,
    pub manifest: Postgresql,
    /// The stored object: the explicit `old`, else (for UPDATE) the base.
    pub old: Option<Postgresql>,
}

impl Loaded {
    pub fn title(&self) -> String {
        format!("{}: case {:?}", self.file, self.case.name)
    }

    fn context(&self) -> Context<'_> {
        Context {
            config: &self.config,
            controller_id: self.case.controller_id.as_deref().unwrap_or_default(),
            today: self.case.today.as_deref().unwrap_or(DEFAULT_TODAY),
        }
    }
}

pub fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules")
}

/// Every case of every folder under `tests/rules/`; panics listing each bad file.
pub fn load_all() -> Vec<Loaded> {
    load_dir(&rules_dir()).unwrap_or_else(|problems| {
        panic!(
            "{} problem(s) in the rule tables:\n{}",
            problems.len(),
            problems.join("\n")
        )
    })
}

/// Reads `root/base.yaml` and every `root/<folder>/*.yaml`; a folder without cases, a file that
/// is not `.yaml` or a malformed case is a problem naming its file.
pub fn load_dir(root: &Path) -> Result<Vec<Loaded>, Vec<String>> {
    let mut problems = Vec::new();
    let base = match read_yaml(&root.join("base.yaml")) {
        Ok(base) => base,
        Err(problem) => return Err(vec![problem]),
    };
    let mut folders = Vec::new();
    for path in sorted_entries(root).map_err(|p| vec![p])? {
        let name = file_name(&path);
        if path.is_dir() {
            folders.push(path);
        } else if name != "README.md" && name != "base.yaml" {
            problems.push(format!(
                "{name}: unexpected file; cases go into a folder per rule"
            ));
        }
    }
    if folders.is_empty() {
        problems.push(format!("{}: no rule folders", root.display()));
    }
    let mut cases = Vec::new();
    for folder in folders {
        let before = (cases.len(), problems.len());
        let entries = match sorted_entries(&folder) {
            Ok(entries) => entries,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        for path in entries {
            let label = format!("{}/{}", file_name(&folder), file_name(&path));
            if path.is_dir() || !label.ends_with(".yaml") {
                problems.push(format!("{label}: not a .yaml file of cases"));
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| vec![format!("{label}: {e}")])?;
            match parse_file(&label, &text, &base) {
                Ok(found) => cases.extend(found),
                Err(problem) => problems.push(problem),
            }
        }
        if (cases.len(), problems.len()) == before {
            problems.push(format!("{}/: the folder has no cases", file_name(&folder)));
        }
    }
    if problems.is_empty() {
        Ok(cases)
    } else {
        Err(problems)
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    Ok(paths)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_yaml(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The cases of one file (a YAML list); `label` names the file in every problem.
pub fn parse_file(label: &str, text: &str, base: &Value) -> Result<Vec<Loaded>, String> {
    let cases: Vec<Case> = serde_yaml::from_str(text).map_err(|e| format!("{label}: {e}"))?;
    if cases.is_empty() {
        return Err(format!("{label}: the file has no cases"));
    }
    let mut names = BTreeSet::new();
    let mut loaded = Vec::new();
    for case in cases {
        if !names.insert(case.name.clone()) {
            return Err(format!("{label}: two cases are named {:?}", case.name));
        }
        let title = format!("{label}: case {:?}", case.name);
        loaded.push(prepare(label, case, base).map_err(|e| format!("{title}: {e}"))?);
    }
    Ok(loaded)
}

fn prepare(label: &str, case: Case, base: &Value) -> Result<Loaded, String> {
    if case.name.trim().is_empty() {
        return Err("the name is empty".into());
    }
    let operations = case.operation.0.clone();
    if operations.is_empty() || operations.iter().collect::<BTreeSet<_>>().len() != operations.len()
    {
        return Err("operation must name CREATE, UPDATE or DELETE, each at most once".into());
    }
    match (case.allowed, case.violations.is_empty()) {
        (true, false) => return Err("allowed: true, yet violations are expected".into()),
        (false, true) => return Err("allowed: false needs the expected violations".into()),
        _ => {}
    }
    if case.old.is_some() && operations == [Op::Create] {
        return Err("old is only read by UPDATE and DELETE".into());
    }
    let texts = case.violations.iter().filter_map(|v| v.message.as_ref());
    let texts = texts.chain(&case.warnings).chain(&case.mutate_warnings);
    if texts.into_iter().any(|t| t.text().is_empty()) {
        return Err("an expected message is empty (it would match anything)".into());
    }
    for op in &case.patch {
        if !(op["op"].is_string() && op["path"].is_string()) {
            return Err(format!("patch entry {op} needs op and path"));
        }
    }
    let config = crate::support::cases::strict_config(&case.config)?;
    let base = match &case.base {
        None => base.clone(),
        Some(path) => read_yaml(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path))?,
    };
    let manifest = typed(&base, &case.manifest).map_err(|e| format!("manifest: {e}"))?;
    let old = match &case.old {
        Some(patch) => Some(typed(&base, patch).map_err(|e| format!("old: {e}"))?),
        None if operations.contains(&Op::Update) => Some(typed(&base, &Value::Null)?),
        None => None,
    };
    Ok(Loaded {
        file: label.to_string(),
        case,
        operations,
        config,
        manifest,
        old,
    })
}

/// The base with a merge patch applied, as a `postgresql`; a key the type does not know fails.
fn typed(base: &Value, patch: &Value) -> Result<Postgresql, String> {
    let mut value = base.clone();
    if !patch.is_null() {
        merge(&mut value, patch);
    }
    let pg: Postgresql = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&pg).map_err(|e| e.to_string())?;
    if let Some(path) = first_lost(&value, &back, String::new()) {
        return Err(format!(
            "{path} is not a field of a postgresql (or not kept)"
        ));
    }
    Ok(pg)
}

/// RFC 7386 JSON merge patch: objects merge, `null` removes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The first path present in `written` but missing from `kept` (what deserializing dropped).
fn first_lost(written: &Value, kept: &Value, path: String) -> Option<String> {
    match (written, kept) {
        (Value::Object(w), Value::Object(k)) => w.iter().find_map(|(key, value)| {
            let at = format!("{path}.{key}");
            match k.get(key) {
                Some(kept) => first_lost(value, kept, at),
                None if value.is_null() => None,
                None => Some(at),
            }
        }),
        (Value::Array(w), Value::Array(k)) => w
            .iter()
            .zip(k)
            .enumerate()
            .find_map(|(i, (w, k))| first_lost(w, k, format!("{path}[{i}]"))),
        _ => None,
    }
}

/// The rules named by the expected violations of all cases.
pub fn expected_rules(cases: &[Loaded]) -> BTreeSet<&str> {
    cases
        .iter()
        .flat_map(|c| &c.case.violations)
        .map(|v| v.rule.as_str())
        .collect()
}
