//! The database side (`common::database`) driven by the case tables under `tests/database/`
//! (format in `tests/database/README.md`): each case computes `wanted` from a manifest, a
//! configuration and Secrets, plans against an actual catalog, and compares statements and
//! warnings. On top, for every case: a secret statement's hash verifies against the role's
//! Secret and its description shows no hash, no other statement carries a hash, and planning
//! against the catalog that the plan would produce gives an empty plan.

mod support;

use common::config::Config;
use common::crd::Postgresql;
use common::database::model::{Actual, ActualRole, Flag, Password, Statement, Wanted};
use common::database::password::{self, Method};
use common::database::plan::plan;
use common::database::quote::search_path_elements;
use common::database::wanted::{Secrets, wanted};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use support::cases::{
    ExpectedStatements, check_idempotent, check_statements, check_warnings, strict_config, verdict,
};
use support::tables::Named;
use support::{merge, parse_flag, read_yaml, render};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Case {
    name: String,
    #[serde(default)]
    config: BTreeMap<String, serde_yaml::Value>,
    base: Option<String>,
    #[serde(default)]
    manifest: Value,
    #[serde(default)]
    secrets: Secrets,
    #[serde(default = "spilo_only")]
    actual: ActualSpec,
    statements: Option<Vec<String>>,
    #[serde(default)]
    includes: Vec<String>,
    #[serde(default)]
    excludes: Vec<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ActualSpec {
    /// Start from the roles Spilo creates (`postgres`, `standby`, `admin`, `cron_admin`).
    #[serde(default = "yes")]
    spilo: bool,
    #[serde(default)]
    mirror: bool,
    #[serde(default)]
    roles: BTreeMap<String, RoleSpec>,
    #[serde(default)]
    databases: BTreeMap<String, String>,
    #[serde(default)]
    schemas: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    extensions: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    default_privileges: Vec<(String, String, String)>,
    /// (database, schema) pairs taken out of the mirror, with the default privileges in them.
    #[serde(default)]
    forget_schemas: Vec<(String, String)>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RoleSpec {
    #[serde(default)]
    flags: Vec<String>,
    password: Option<StoredPassword>,
    #[serde(default)]
    member_of: BTreeSet<String>,
    #[serde(default)]
    settings: BTreeMap<String, String>,
}

/// `rolpassword`: as written, or `{scramOf: clear}` / `{md5Of: clear}` for a hash made here.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StoredPassword {
    Stored(String),
    Hashed(HashOf),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
enum HashOf {
    ScramOf(String),
    Md5Of(String),
}

/// The catalog of a fresh Spilo cluster.
fn spilo_only() -> ActualSpec {
    ActualSpec {
        spilo: true,
        mirror: false,
        roles: BTreeMap::new(),
        databases: BTreeMap::new(),
        schemas: BTreeMap::new(),
        extensions: BTreeMap::new(),
        default_privileges: Vec::new(),
        forget_schemas: Vec::new(),
    }
}

/// The roles Spilo creates at bootstrap, as the catalog shows them.
fn spilo_roles(actual: &mut Actual) {
    actual.roles.extend(support::spilo_roles(false));
    actual
        .databases
        .insert("postgres".into(), "postgres".into());
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/database")
}

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn manifest(case: &Case) -> Result<Postgresql, String> {
    let mut value = match &case.base {
        Some(file) => read_yaml(&repo_file(file)),
        None => read_yaml(&cases_dir().join("base.yaml")),
    };
    if !case.manifest.is_null() {
        merge(&mut value, &case.manifest);
    }
    serde_json::from_value(value).map_err(|e| format!("manifest: {e}"))
}

fn method_of(pg: &Postgresql) -> Method {
    let parameters = pg.spec.postgresql.parameters.as_ref();
    Method::from_setting(
        parameters
            .and_then(|p| p.get("password_encryption"))
            .map(String::as_str),
    )
}

/// A setting as `pg_db_role_setting` keeps it: a `search_path` re-quoted the server's way (quotes
/// only where an identifier needs them), any other value without its quotes.
fn as_stored(name: &str, value: &str) -> String {
    if name != "search_path" {
        return value.trim_matches('\'').to_string();
    }
    let plain = |e: &str| {
        e.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && e.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    search_path_elements(value)
        .iter()
        .map(|e| {
            if plain(e) {
                e.clone()
            } else {
                format!("\"{}\"", e.replace('"', "\"\""))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The catalog as it is once the plan for `wanted` has run: what a migrated, unchanged cluster
/// looks like. Admins show up as memberships of the admin role, as in `pg_auth_members`.
fn mirror(wanted: &Wanted, method: Method) -> Actual {
    let mut actual = Actual::default();
    for role in &wanted.roles {
        let mut flags: BTreeSet<Flag> = role.flags.clone();
        if !role.no_flags.contains(&Flag::Inherit) {
            flags.insert(Flag::Inherit);
        }
        let password = match &role.password {
            Password::Clear(clear) => Some(password::hash(method, &role.name, clear)),
            Password::None => None,
        };
        let settings = role
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), as_stored(k, v)))
            .collect();
        actual.roles.insert(
            role.name.clone(),
            ActualRole {
                flags,
                password,
                member_of: role.member_of.clone(),
                settings,
            },
        );
    }
    for role in &wanted.roles {
        if let Some(admin) = &role.admin
            && let Some(a) = actual.roles.get_mut(admin)
        {
            a.member_of.insert(role.name.clone());
        }
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

fn actual(spec: &ActualSpec, wanted: &Wanted, method: Method) -> Result<Actual, String> {
    let mut actual = Actual::default();
    if spec.spilo {
        spilo_roles(&mut actual);
    }
    if spec.mirror {
        let mirrored = mirror(wanted, method);
        actual.roles.extend(mirrored.roles);
        actual.databases.extend(mirrored.databases);
        actual.schemas.extend(mirrored.schemas);
        actual.extensions.extend(mirrored.extensions);
        actual
            .default_privileges
            .extend(mirrored.default_privileges);
    }
    for (name, role) in &spec.roles {
        let flags = role
            .flags
            .iter()
            .map(|f| parse_flag(f))
            .collect::<Result<_, _>>()?;
        let password = role.password.as_ref().map(|p| match p {
            StoredPassword::Stored(s) => s.clone(),
            StoredPassword::Hashed(HashOf::ScramOf(clear)) => {
                password::hash(Method::ScramSha256, name, clear)
            }
            StoredPassword::Hashed(HashOf::Md5Of(clear)) => {
                password::hash(Method::Md5, name, clear)
            }
        });
        let role = ActualRole {
            flags,
            password,
            member_of: role.member_of.clone(),
            settings: role.settings.clone(),
        };
        actual.roles.insert(name.clone(), role);
    }
    actual.databases.extend(spec.databases.clone());
    for (db, schemas) in &spec.schemas {
        for (schema, owner) in schemas {
            let key = (db.clone(), schema.clone());
            actual.schemas.insert(key, owner.clone());
        }
    }
    for (db, extensions) in &spec.extensions {
        for (extension, schema) in extensions {
            let key = (db.clone(), extension.clone());
            actual.extensions.insert(key, schema.clone());
        }
    }
    actual
        .default_privileges
        .extend(spec.default_privileges.iter().cloned());
    for (db, schema) in &spec.forget_schemas {
        actual.schemas.remove(&(db.clone(), schema.clone()));
        actual
            .default_privileges
            .retain(|(d, s, _)| d != db || s != schema);
    }
    Ok(actual)
}

/// The role a `CREATE ROLE "x" …` or `ALTER ROLE "x" …` is about.
fn role_of(sql: &str) -> Option<String> {
    let rest = sql.split_once("ROLE \"")?.1;
    let mut name = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
            } else {
                return Some(name);
            }
        }
        name.push(c);
    }
    None
}

/// The hash a secret statement carries.
fn hash_in(sql: &str) -> Option<String> {
    let start = sql.find(" PASSWORD '")? + " PASSWORD '".len();
    let rest = &sql[start..];
    Some(rest[..rest.find('\'')?].to_string())
}

/// Invariants every plan keeps, whatever the case expects.
fn invariants(statements: &[Statement], secrets: &Secrets, problems: &mut Vec<String>) {
    for s in statements {
        let hash = hash_in(&s.sql);
        if s.secret {
            let role = role_of(&s.sql).unwrap_or_default();
            let ok = match (&hash, secrets.get(&role)) {
                (Some(hash), Some(clear)) => password::matches(hash, &role, clear),
                _ => false,
            };
            if !ok {
                problems.push(format!("{role:?}: the hash does not verify its Secret"));
            }
            if hash.as_ref().is_some_and(|h| s.what.contains(h.as_str())) {
                problems.push(format!("{:?} shows the hash", s.what));
            }
        } else if hash.is_some() || s.sql.contains("SCRAM-SHA-256$") {
            problems.push(format!("{} carries a hash but is not secret", s.sql));
        }
    }
}

fn run(case: &Case) -> Result<(), String> {
    let config = strict_config(&case.config)?;
    let pg = manifest(case)?;
    let method = method_of(&pg);
    let (wanted, warnings) = wanted(&config, &pg, &case.secrets);
    let actual = actual(&case.actual, &wanted, method)?;
    let statements = plan(&wanted, &actual, method);
    let rendered: Vec<String> = statements.iter().map(render).collect();
    let mut problems = Vec::new();
    invariants(&statements, &case.secrets, &mut problems);
    let expected = ExpectedStatements {
        statements: case.statements.as_ref(),
        includes: &case.includes,
        excludes: &case.excludes,
    };
    check_statements(&expected, &rendered, &mut problems);
    let got: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    check_warnings(&case.warnings, &got, &mut problems);
    // Whatever the case's catalog, once the plan has run there is nothing left to do.
    check_idempotent(
        &plan(&wanted, &mirror(&wanted, method), method),
        &mut problems,
    );
    verdict(&problems, &rendered, &got)
}

fn load_all() -> Vec<(String, Case)> {
    support::tables::load(&cases_dir(), &["base.yaml"])
}

#[test]
fn every_case_of_the_tables() {
    support::tables::run_all(&load_all(), 20, run);
}

/// The complete manifest, with a Secret for every login role: an unchanged cluster, its catalog
/// quoting search paths the server's way, gets an empty plan under both hash methods.
#[test]
fn an_unchanged_complete_cluster_needs_nothing() {
    let pg: Postgresql = serde_json::from_value(read_yaml(&repo_file(
        "manifests/complete-postgres-manifest.yaml",
    )))
    .unwrap_or_else(|e| panic!("complete manifest: {e}"));
    let config = Config::default();
    let (first, _) = wanted(&config, &pg, &Secrets::new());
    let secrets: Secrets = first
        .roles
        .iter()
        .filter(|r| r.flags.contains(&Flag::Login) || r.name == "postgres")
        .map(|r| (r.name.clone(), format!("secret of {}", r.name)))
        .collect();
    let (wanted, warnings) = wanted(&config, &pg, &secrets);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(wanted.roles.len() >= 17, "{} roles", wanted.roles.len());
    for method in [Method::ScramSha256, Method::Md5] {
        let actual = mirror(&wanted, method);
        let statements = plan(&wanted, &actual, method);
        assert!(statements.is_empty(), "{method:?}: {statements:#?}");
        // From nothing, everything is created.
        let all = plan(&wanted, &Actual::default(), method);
        let creates = all
            .iter()
            .filter(|s| s.sql.starts_with("CREATE ROLE"))
            .count();
        assert_eq!(creates, wanted.roles.len());
    }
}

impl Named for Case {
    fn name(&self) -> &str {
        &self.name
    }
}
