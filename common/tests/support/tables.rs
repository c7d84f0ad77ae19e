//! Tables of YAML test cases: every `*.yaml` file of a folder holds a list of named cases; each
//! case runs, and all failures are reported together with their file and name.

use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A case that has a name unique in its file.
pub trait Named {
    fn name(&self) -> &str;
}

/// Every case of the `*.yaml` files in `dir` (`skip`: files that are not case lists), with its
/// file name, in file order.
pub fn load<C: DeserializeOwned + Named>(dir: &Path, skip: &[&str]) -> Vec<(String, C)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if name == "README.md" || skip.contains(&name.as_str()) {
            continue;
        }
        assert!(name.ends_with(".yaml"), "{name}: not a .yaml file of cases");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let list: Vec<C> = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!list.is_empty(), "{name}: the file has no cases");
        let mut seen = BTreeSet::new();
        for case in list {
            assert!(
                seen.insert(case.name().to_string()),
                "{name}: two cases {:?}",
                case.name()
            );
            cases.push((name.clone(), case));
        }
    }
    cases
}

/// Runs every case; fails with all failures when any fails, or when fewer than `at_least` exist
/// (a folder that went missing must not pass as empty).
pub fn run_all<C: Named>(
    cases: &[(String, C)],
    at_least: usize,
    run: impl Fn(&C) -> Result<(), String>,
) {
    assert!(cases.len() >= at_least, "only {} cases found", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(file, case)| {
            run(case)
                .err()
                .map(|e| format!("{file}: {}:\n{e}", case.name()))
        })
        .collect();
    println!("{} cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
