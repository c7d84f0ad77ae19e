//! Writes the generated parts of the Helm chart (`make chart`): the CRDs in its `crds/` folder
//! (the same YAML as `crds/`, from the Rust types), the controller's ClusterRole rules (from the
//! children table, the source `manifests/controller/rbac.yaml` is checked against), the values
//! schema (from `values.yaml` and the operator's configuration types) and the values listing of
//! its README (from the same keys as the schema). Its unit tests fail when the committed chart
//! differs from what this writes; `make chart-check` fails on the same drift.

mod config;
mod keys;
mod legacy;
mod readme;
mod rules;
mod schema;
mod values;

use std::{env, fs, path::Path, path::PathBuf, process::ExitCode};

/// The chart, relative to the repository root.
const CHART: &str = "charts/postgres-operator";

/// The generated template with the controller's ClusterRole rules, relative to the chart.
const RULES_TEMPLATE: &str = "templates/_operator-rules.tpl";

/// The chart's default values, the source of its own keys.
const VALUES: &str = "values.yaml";

/// The values schema Helm checks, relative to the chart.
const SCHEMA: &str = "values.schema.json";

/// The chart's README, whose values listing is generated.
const README: &str = "README.md";

/// Every generated file of the chart `chart`: path relative to the chart, content. The schema and
/// the README's listing depend on the chart's `values.yaml` and README as they are.
fn files(chart: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    let read = |name: &str| {
        fs::read_to_string(chart.join(name))
            .map_err(|e| format!("cannot read {}: {e}", chart.join(name).display()))
    };
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
    let keys = schema::keys(&read(VALUES)?)?;
    files.push((PathBuf::from(SCHEMA), schema::render(&keys)));
    files.push((
        PathBuf::from(README),
        readme::splice(&read(README)?, &keys)?,
    ));
    Ok(files)
}

fn main() -> ExitCode {
    let chart = PathBuf::from(env::args().nth(1).unwrap_or_else(|| CHART.to_string()));
    let files = match files(&chart) {
        Ok(files) => files,
        Err(err) => {
            eprintln!("chartgen: {err}");
            return ExitCode::FAILURE;
        }
    };
    for (path, content) in files {
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

    fn chart_keys() -> Vec<keys::Key> {
        let values = fs::read_to_string(repo().join(CHART).join(VALUES)).unwrap();
        schema::keys(&values).unwrap()
    }

    #[test]
    fn the_committed_chart_matches_what_is_generated() {
        let mut stale = Vec::new();
        for (path, content) in files(&repo().join(CHART)).unwrap() {
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

    /// The descriptions of the schema and the README come from the comments in values.yaml.
    #[test]
    fn every_top_level_key_in_values_yaml_has_a_comment() {
        let missing = schema::undescribed(&chart_keys());
        assert!(
            missing.is_empty(),
            "top-level keys of {CHART}/{VALUES} without a comment right above them (it becomes \
             their description in the schema and the README): {missing:?}"
        );
    }

    /// The tables of facts a default cannot show name keys that exist.
    #[test]
    fn the_tables_name_keys_of_values_yaml() {
        let root = keys::Key {
            name: String::new(),
            description: String::new(),
            default: None,
            legacy: false,
            shape: keys::Shape::Block(chart_keys()),
        };
        let paths = values::KUBERNETES_OBJECTS
            .iter()
            .copied()
            .chain(values::overrides().into_iter().map(|(p, _)| p));
        for path in paths {
            assert!(root.find(path).is_some(), "{path} is not a key of {VALUES}");
        }
        for (group, option, _, _) in legacy::OPTIONS {
            let options = config::section_options(
                config::GROUPS
                    .iter()
                    .find(|(g, _)| g == group)
                    .and_then(|(_, s)| *s),
            )
            .unwrap();
            assert!(
                !options.contains_key(*option),
                "{group}.{option} is an option again: it is no longer legacy"
            );
        }
    }
}
