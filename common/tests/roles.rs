//! The role sources beyond the manifest, driven by the case tables under `tests/roles/` (format
//! in `tests/roles/README.md`): infrastructure roles from their Secrets and ConfigMaps in every
//! configuration form, team members from PostgresTeam objects and Teams API answers, name
//! conflicts between the sources, and the deprecation of removed team members. Each case runs
//! the controller's pure steps in its order — definitions, roles, Teams API questions, wanted,
//! deprecation, catalog lookups, plan — and compares wanted roles, statements and warnings. On
//! top, for every case: the plan against the catalog it produces is empty.

mod support;

use common::config::{self, Config, Input};
use common::crd::Postgresql;
use common::crd::postgres_team::PostgresTeamSpec;
use common::database::infrastructure::{self, Objects};
use common::database::model::{Actual, ActualRole, Flag, Origin, Password, Wanted};
use common::database::password::{self, Method};
use common::database::plan::plan;
use common::database::sources::{self, Sources};
use common::database::teams::{self, Answer, TeamMap};
use common::database::wanted::Secrets;
use common::database::{deprecation, plan::keyword};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use support::cases::{
    ExpectedStatements, check_idempotent, check_statements, check_warnings, config_map_data,
    verdict,
};
use support::tables::Named;
use support::{merge, parse_flag, read_yaml, render};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Case {
    name: String,
    /// ConfigMap options.
    #[serde(default)]
    config: BTreeMap<String, serde_yaml::Value>,
    /// An OperatorConfiguration's `configuration` instead of `config`.
    operator_configuration: Option<Value>,
    #[serde(default = "operator_namespace")]
    operator_namespace: String,
    #[serde(default)]
    manifest: Value,
    #[serde(default)]
    secrets: Secrets,
    #[serde(default)]
    objects: ObjectsSpec,
    #[serde(default)]
    postgres_teams: Vec<PostgresTeamSpec>,
    #[serde(default)]
    teams_api: BTreeMap<String, AnswerSpec>,
    #[serde(default)]
    remembered: BTreeSet<String>,
    #[serde(default)]
    actual: BTreeMap<String, RoleSpec>,
    #[serde(default)]
    roles: BTreeMap<String, Expected>,
    #[serde(default)]
    absent: Vec<String>,
    statements: Option<Vec<String>>,
    #[serde(default)]
    includes: Vec<String>,
    #[serde(default)]
    excludes: Vec<String>,
    #[serde(default)]
    warnings: Vec<String>,
    incomplete: Option<bool>,
}

fn operator_namespace() -> String {
    "postgres-operator".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ObjectsSpec {
    #[serde(default)]
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    config_maps: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum AnswerSpec {
    Members(Vec<String>),
    Word(String),
    Failed(FailedSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FailedSpec {
    failed: String,
    last_good: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RoleSpec {
    #[serde(default)]
    flags: Vec<String>,
    /// The clear text of the stored SCRAM verifier.
    password: Option<String>,
    #[serde(default)]
    member_of: BTreeSet<String>,
    #[serde(default)]
    settings: BTreeMap<String, String>,
}

/// A wanted role as the case expects it; omitted fields are not compared.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Expected {
    origin: Option<String>,
    flags: Option<Vec<String>>,
    no_flags: Option<Vec<String>>,
    member_of: Option<Vec<String>>,
    admin: Option<String>,
    settings: Option<BTreeMap<String, String>>,
    /// The clear password, or "" for none.
    password: Option<String>,
}

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn load_config(case: &Case) -> Result<Config, String> {
    let loaded = match &case.operator_configuration {
        Some(configuration) => {
            let object = serde_json::json!({ "configuration": configuration });
            config::load(Input::OperatorConfiguration(&object))
        }
        None => {
            let data = config_map_data(&case.config)?;
            config::load(Input::ConfigMap(&data))
        }
    };
    loaded.map(|l| l.config).map_err(|e| format!("config: {e}"))
}

fn manifest(case: &Case) -> Result<Postgresql, String> {
    let mut value = read_yaml(&here().join("database/base.yaml"));
    if !case.manifest.is_null() {
        merge(&mut value, &case.manifest);
    }
    serde_json::from_value(value).map_err(|e| format!("manifest: {e}"))
}

fn key(qualified: &str) -> Result<(String, String), String> {
    qualified
        .split_once('/')
        .map(|(ns, name)| (ns.to_string(), name.to_string()))
        .ok_or_else(|| format!("objects: {qualified:?} is not namespace/name"))
}

fn objects(spec: &ObjectsSpec) -> Result<Objects, String> {
    let mut objects = Objects::default();
    for (name, data) in &spec.secrets {
        objects.secrets.insert(key(name)?, data.clone());
    }
    for (name, data) in &spec.config_maps {
        objects.config_maps.insert(key(name)?, data.clone());
    }
    Ok(objects)
}

fn flag_words(flags: &BTreeSet<Flag>) -> Vec<String> {
    flags
        .iter()
        .map(|f| keyword(*f, true).to_string())
        .collect()
}

/// The roles Spilo's post-init script creates (`zalandos` is the PAM role, `robot_zmon` the
/// monitoring group): the catalog of a fresh cluster.
fn spilo_roles() -> BTreeMap<String, ActualRole> {
    support::spilo_roles(true).into_iter().collect()
}

/// What the controller's catalog read returns: only the roles it looks up (the wanted ones and
/// the deprecation names), so a group role no source wants (`robot_zmon`, `zalandos`) is joined
/// by a GRANT after the creations rather than by `IN ROLE`, exactly as on a real server.
fn actual(case: &Case, wanted: &Wanted, lookups: &[String]) -> Result<Actual, String> {
    let mut catalog = spilo_roles();
    for (name, spec) in &case.actual {
        let role = ActualRole {
            flags: spec
                .flags
                .iter()
                .map(|f| parse_flag(f))
                .collect::<Result<_, _>>()?,
            password: spec
                .password
                .as_ref()
                .map(|p| password::hash(Method::ScramSha256, name, p)),
            member_of: spec.member_of.clone(),
            settings: spec.settings.clone(),
        };
        catalog.insert(name.clone(), role);
    }
    let names: BTreeSet<&str> = wanted
        .roles
        .iter()
        .map(|r| r.name.as_str())
        .chain(lookups.iter().map(String::as_str))
        .collect();
    let mut actual = Actual {
        roles: catalog
            .into_iter()
            .filter(|(name, _)| names.contains(name.as_str()))
            .collect(),
        ..Actual::default()
    };
    actual
        .databases
        .insert("postgres".into(), "postgres".into());
    Ok(actual)
}

/// The catalog once the plan for `wanted` has run (search paths are not re-quoted: the cases
/// here use none).
fn mirror(wanted: &Wanted) -> Actual {
    let mut actual = Actual::default();
    for role in &wanted.roles {
        let mut flags = role.flags.clone();
        if !role.no_flags.contains(&Flag::Inherit) {
            flags.insert(Flag::Inherit);
        }
        let password = match &role.password {
            Password::Clear(clear) => Some(password::hash(Method::ScramSha256, &role.name, clear)),
            Password::None => None,
        };
        let settings = role
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.trim_matches('\'').to_string()))
            .collect();
        let mirrored = ActualRole {
            flags,
            password,
            member_of: role.member_of.clone(),
            settings,
        };
        actual.roles.insert(role.name.clone(), mirrored);
    }
    for db in &wanted.databases {
        actual.databases.insert(db.name.clone(), db.owner.clone());
    }
    for s in &wanted.schemas {
        let key = (s.database.clone(), s.name.clone());
        actual.schemas.insert(key, s.owner.clone());
    }
    for e in &wanted.extensions {
        let key = (e.database.clone(), e.name.clone());
        actual.extensions.insert(key, e.schema.clone());
    }
    for p in &wanted.default_privileges {
        let schema = p.schema.clone().unwrap_or_default();
        let key = (p.database.clone(), schema, p.grantor.clone());
        actual.default_privileges.insert(key);
    }
    actual
}

fn origin_word(origin: Origin) -> &'static str {
    match origin {
        Origin::Manifest => "manifest",
        Origin::Infrastructure => "infrastructure",
        Origin::Team => "team",
        Origin::System => "system",
        Origin::PreparedDatabase => "prepared",
    }
}

fn compare_roles(case: &Case, wanted: &Wanted, problems: &mut Vec<String>) {
    let by_name: BTreeMap<&str, _> = wanted.roles.iter().map(|r| (r.name.as_str(), r)).collect();
    for (name, want) in &case.roles {
        let Some(role) = by_name.get(name.as_str()) else {
            problems.push(format!("role {name:?} is not wanted"));
            continue;
        };
        let mut differs = |what: &str, got: String, want: String| {
            if got != want {
                problems.push(format!("role {name:?} {what}: got {got}, expected {want}"));
            }
        };
        if let Some(origin) = &want.origin {
            differs("origin", origin_word(role.origin).into(), origin.clone());
        }
        let sorted = |v: &Vec<String>| {
            let mut v: Vec<String> = v.iter().map(|f| f.to_ascii_uppercase()).collect();
            v.sort();
            format!("{v:?}")
        };
        if let Some(flags) = &want.flags {
            differs("flags", sorted(&flag_words(&role.flags)), sorted(flags));
        }
        if let Some(flags) = &want.no_flags {
            differs(
                "noFlags",
                sorted(&flag_words(&role.no_flags)),
                sorted(flags),
            );
        }
        if let Some(member_of) = &want.member_of {
            let got: Vec<String> = role.member_of.iter().cloned().collect();
            let mut want = member_of.clone();
            want.sort();
            differs("memberOf", format!("{got:?}"), format!("{want:?}"));
        }
        if let Some(admin) = &want.admin {
            differs(
                "admin",
                format!("{:?}", role.admin),
                format!("{:?}", Some(admin)),
            );
        }
        if let Some(settings) = &want.settings {
            differs(
                "settings",
                format!("{:?}", role.settings),
                format!("{settings:?}"),
            );
        }
        if let Some(clear) = &want.password {
            let got = match &role.password {
                Password::Clear(c) => c.clone(),
                Password::None => String::new(),
            };
            if &got != clear {
                problems.push(format!("role {name:?}: not the expected password"));
            }
        }
    }
    for name in &case.absent {
        if by_name.contains_key(name.as_str()) {
            problems.push(format!("role {name:?} is wanted but should not be"));
        }
    }
}

fn run(case: &Case) -> Result<(), String> {
    let config = load_config(case)?;
    let pg = manifest(case)?;
    let (definitions, mut warnings) =
        infrastructure::definitions(&config, &case.operator_namespace);
    let (infra, infra_warnings) = infrastructure::roles(&definitions, &objects(&case.objects)?);
    warnings.extend(infra_warnings);
    let team_map = if config.teams_api.enable_postgres_team_crd {
        TeamMap::load(&case.postgres_teams)
    } else {
        TeamMap::default()
    };
    let mut answers = BTreeMap::new();
    for team in teams::to_ask(&config, &pg.spec.team_id, &team_map) {
        let answer = match case.teams_api.get(&team) {
            Some(AnswerSpec::Members(list)) => Answer::Members(list.clone()),
            Some(AnswerSpec::Word(w)) if w == "notFound" => Answer::NotFound,
            Some(AnswerSpec::Word(w)) => return Err(format!("teamsApi {team}: unknown {w:?}")),
            Some(AnswerSpec::Failed(f)) => Answer::Failed {
                error: f.failed.clone(),
                last_good: f.last_good.clone(),
            },
            None => continue,
        };
        answers.insert(team, answer);
    }
    let computed = sources::wanted(
        &config,
        &pg,
        Sources {
            secrets: &case.secrets,
            infrastructure: &infra,
            team_map: &team_map,
            answers: &answers,
        },
    );
    warnings.extend(computed.warnings);
    let wanted = computed.wanted;
    let removed = deprecation::removed(&config, &case.remembered, &wanted, computed.teams_complete);
    let lookups = deprecation::lookups(&config, &wanted, &removed);
    let mut actual = actual(case, &wanted, &lookups)?;
    let mut statements = deprecation::plan(&config, &wanted, &mut actual, &removed, &mut warnings);
    statements.extend(plan(&wanted, &actual, Method::ScramSha256));
    let rendered: Vec<String> = statements.iter().map(render).collect();
    let mut problems = Vec::new();
    compare_roles(case, &wanted, &mut problems);
    if let Some(incomplete) = case.incomplete
        && incomplete == computed.teams_complete
    {
        problems.push(format!("teams complete: {}", computed.teams_complete));
    }
    let expected = ExpectedStatements {
        statements: case.statements.as_ref(),
        includes: &case.includes,
        excludes: &case.excludes,
    };
    check_statements(&expected, &rendered, &mut problems);
    for s in &statements {
        if s.secret && s.what.contains("SCRAM") {
            problems.push(format!("{:?} shows a hash", s.what));
        }
    }
    let got: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    check_warnings(&case.warnings, &got, &mut problems);
    check_idempotent(
        &plan(&wanted, &mirror(&wanted), Method::ScramSha256),
        &mut problems,
    );
    verdict(&problems, &rendered, &got)
}

fn load_all() -> Vec<(String, Case)> {
    support::tables::load(&here().join("roles"), &[])
}

#[test]
fn every_case_of_the_role_tables() {
    support::tables::run_all(&load_all(), 40, run);
}

impl Named for Case {
    fn name(&self) -> &str {
        &self.name
    }
}
