//! Writes the generated parts of the Helm chart (`make chart`): the CRDs in its `crds/` folder
//! (the same YAML as `crds/`, from the Rust types) and the controller's ClusterRole rules (from
//! the children table, the source `manifests/controller/rbac.yaml` is checked against). Its unit
//! tests fail when the committed chart differs from what this writes.

mod rules;

use std::{env, fs, path::Path, path::PathBuf, process::ExitCode};

/// The chart, relative to the repository root.
const CHART: &str = "charts/postgres-operator";

/// The generated template with the controller's ClusterRole rules, relative to the chart.
const RULES_TEMPLATE: &str = "templates/_operator-rules.tpl";

/// Every generated file of the chart: path relative to the chart, content.
fn files() -> Vec<(PathBuf, String)> {
    let mut files: Vec<(PathBuf, String)> = common::crd::generate::all()
        .into_iter()
        .map(|(file, crd)| {
            (
                Path::new("crds").join(file),
                common::crd::generate::to_yaml(&crd),
            )
        })
        .collect();
    files.push((PathBuf::from(RULES_TEMPLATE), rules::rules_template()));
    files
}

fn main() -> ExitCode {
    let chart = PathBuf::from(env::args().nth(1).unwrap_or_else(|| CHART.to_string()));
    for (path, content) in files() {
        let path = chart.join(path);
        if let Some(dir) = path.parent()
            && let Err(err) = fs::create_dir_all(dir)
        {
            eprintln!("chartgen: cannot create {}: {err}", dir.display());
            return ExitCode::FAILURE;
        }
        if let Err(err) = fs::write(&path, content) {
            eprintln!("chartgen: cannot write {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn the_committed_chart_matches_what_is_generated() {
        let mut stale = Vec::new();
        for (path, content) in files() {
            let committed = fs::read_to_string(repo().join(CHART).join(&path)).unwrap_or_default();
            if committed != content {
                stale.push(path.display().to_string());
            }
        }
        assert!(
            stale.is_empty(),
            "{CHART} differs from the generated files {stale:?}: run `make chart` and commit"
        );
    }

    #[test]
    fn the_chart_crds_are_the_crds_folder() {
        for (file, _) in common::crd::generate::all() {
            let chart = fs::read_to_string(repo().join(CHART).join("crds").join(file));
            let crds = fs::read_to_string(repo().join("crds").join(file));
            assert!(
                chart.is_ok() && chart.ok() == crds.ok(),
                "{CHART}/crds/{file} differs from crds/{file}: run `make crds chart`"
            );
        }
    }
}
