//! What a cluster should have inside PostgreSQL, from its manifest, the operator configuration and
//! the passwords of its Secrets: Zalando's user initialisation (`initUsers`) and the database,
//! schema, extension and default-privilege parts of its sync, as data.
//!
//! Sources in Zalando's order: system users, (infrastructure roles), prepared-database roles,
//! manifest users, (team users), then the additional owner roles. The infrastructure roles and
//! the team users come from objects and an API beyond the manifest: [`super::sources`] adds them
//! through [`RoleSet::add`] between [`roles`] and [`finish`], where the origin ranks decide
//! conflicts exactly as for the sources here. The pooler and stream users and password rotation
//! are not computed yet.
//!
//! Nothing here refuses a manifest: what Zalando skips with a log line is skipped with a
//! [`Warning`] (the admission webhook already refuses most of these up front).

use super::model::{
    Database, DefaultPrivileges, Extension, Flag, Origin, Password, Role, Schema, Wanted,
};
use super::quote;
use crate::config::Config;
use crate::crd::Postgresql;
use crate::crd::postgresql::{PreparedDatabase, PreparedSchema};
use crate::patterns::{DATABASE_NAME_RE, USER_NAME_RE};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The clear password of each role that has one, by role name (read from the Secrets).
pub type Secrets = BTreeMap<String, String>;

/// Something of the manifest that is not created, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The manifest field concerned, e.g. `spec.users.admin`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Schema of a prepared database that lists none.
pub const DEFAULT_SCHEMA: &str = "data";
/// The administrator of the prepared `D_owner` roles: literally `admin`, not `team_admin_role`.
pub const PREPARED_ADMIN: &str = "admin";
/// The first element of every prepared role's `search_path`.
const USER_SEARCH_PATH: &str = "\"$user\"";

/// The wanted roles by name while they are collected, with whether each owns a database.
#[derive(Clone, Debug, Default)]
pub struct RoleSet {
    roles: BTreeMap<String, (Role, bool)>,
}

impl RoleSet {
    /// Adds a role; a name wanted twice keeps the role of the higher [`Origin`] (on a tie the
    /// later one), as Zalando's `resolveNameConflict`.
    pub fn add(&mut self, role: Role, owns_database: bool) {
        match self.roles.get(&role.name) {
            Some((current, _)) if current.origin > role.origin => {}
            _ => {
                self.roles.insert(role.name.clone(), (role, owns_database));
            }
        }
    }

    /// Whether a role of that name is wanted.
    pub fn contains(&self, name: &str) -> bool {
        self.roles.contains_key(name)
    }

    /// The origin of the wanted role of that name.
    pub fn origin(&self, name: &str) -> Option<Origin> {
        self.roles.get(name).map(|(role, _)| role.origin)
    }
}

/// Everything the cluster should have, plus what was skipped.
pub fn wanted(config: &Config, pg: &Postgresql, secrets: &Secrets) -> (Wanted, Vec<Warning>) {
    let mut warnings = Vec::new();
    let set = roles(config, pg, secrets, &mut warnings);
    finish(config, pg, set, &mut warnings)
}

/// The roles of the manifest and the configuration, before the additional owner roles.
pub fn roles(
    config: &Config,
    pg: &Postgresql,
    secrets: &Secrets,
    warnings: &mut Vec<Warning>,
) -> RoleSet {
    let mut set = RoleSet::default();
    // Infrastructure roles (rank 2) are added by super::sources.
    for db in prepared_databases(pg) {
        prepared_roles(&mut set, &db, secrets);
    }
    manifest_users(config, pg, secrets, &mut set, warnings);
    // Team users (rank 3, Teams API and PostgresTeam) are added by super::sources.
    system_users(config, secrets, &mut set);
    set
}

/// Appends the additional owner roles and computes databases, schemas, extensions and default
/// privileges.
pub fn finish(
    config: &Config,
    pg: &Postgresql,
    mut set: RoleSet,
    warnings: &mut Vec<Warning>,
) -> (Wanted, Vec<Warning>) {
    for (name, (role, owns)) in set.roles.iter_mut() {
        if !*owns || role.origin == Origin::System {
            continue;
        }
        for extra in &config.users.additional_owner_roles {
            if extra == name {
                warnings.push(Warning {
                    field: "additional_owner_roles".into(),
                    message: format!("{name:?} owns a database and cannot be a member of itself"),
                });
            } else if !extra.is_empty() {
                role.member_of.insert(extra.clone());
            }
        }
    }
    let mut wanted = Wanted::default();
    databases(pg, &set, &mut wanted, warnings);
    wanted.roles = set.roles.into_values().map(|(role, _)| role).collect();
    (wanted, std::mem::take(warnings))
}

fn role(name: String, origin: Origin, secrets: &Secrets) -> Role {
    let password = match secrets.get(&name) {
        Some(clear) if !clear.is_empty() => Password::Clear(clear.clone()),
        _ => Password::None,
    };
    Role {
        name,
        flags: BTreeSet::new(),
        no_flags: BTreeSet::new(),
        password,
        member_of: BTreeSet::new(),
        admin: None,
        settings: BTreeMap::new(),
        origin,
    }
}

/// The superuser (no flags) and the replication user (LOGIN). Spilo creates both at bootstrap;
/// the operator keeps their passwords in line with their Secrets. They replace any other role of
/// the same name, as Zalando's `syncRoles` puts them last into the wanted map.
fn system_users(config: &Config, secrets: &Secrets, set: &mut RoleSet) {
    let superuser = role(config.users.super_username.clone(), Origin::System, secrets);
    let mut replication = role(
        config.users.replication_username.clone(),
        Origin::System,
        secrets,
    );
    replication.flags.insert(Flag::Login);
    for user in [superuser, replication] {
        if !user.name.is_empty() {
            set.roles.insert(user.name.clone(), (user, false));
        }
    }
}

/// The names manifest, infrastructure and team roles may not take, and why.
pub fn reserved_name(config: &Config, name: &str) -> Option<&'static str> {
    if config
        .teams_api
        .protected_role_names
        .iter()
        .any(|p| p == name)
    {
        Some("is a protected role name (protected_role_names)")
    } else if name == config.users.super_username || name == config.users.replication_username {
        Some("is a system role the operator manages itself")
    } else {
        None
    }
}

/// Flags as written under `spec.users` (any case), split into those to set and those to unset,
/// as Zalando's `normalizeUserFlags`: NOLOGIN is dropped, LOGIN added unless either was given.
pub fn normalize_flags(written: &[String]) -> Result<(BTreeSet<Flag>, BTreeSet<Flag>), String> {
    let mut set = BTreeSet::new();
    let mut unset = BTreeSet::new();
    let mut login_given = false;
    for raw in written {
        let lower = raw.trim().to_ascii_lowercase();
        let (negated, word) = match lower.strip_prefix("no") {
            Some(rest) if parse_flag(rest).is_some() => (true, rest),
            _ => (false, lower.as_str()),
        };
        let Some(flag) = parse_flag(word) else {
            return Err(format!("unknown flag {raw:?}"));
        };
        if flag == Flag::Login {
            login_given = true;
        }
        let (mine, other) = if negated {
            (&mut unset, &set)
        } else {
            (&mut set, &unset)
        };
        if other.contains(&flag) {
            return Err(format!("{word} and no{word} contradict each other"));
        }
        mine.insert(flag);
    }
    unset.remove(&Flag::Login);
    if !login_given {
        set.insert(Flag::Login);
    }
    Ok((set, unset))
}

fn parse_flag(word: &str) -> Option<Flag> {
    Some(match word {
        "superuser" => Flag::Superuser,
        "login" => Flag::Login,
        "createdb" => Flag::CreateDb,
        "createrole" => Flag::CreateRole,
        "inherit" => Flag::Inherit,
        "replication" => Flag::Replication,
        "bypassrls" => Flag::BypassRls,
        _ => return None,
    })
}

/// `spec.users`: valid, unreserved names with valid flags; `ADMIN team_admin_role` when
/// `enable_admin_role_for_users`; owners of a `spec.databases` entry count as database owners.
fn manifest_users(
    config: &Config,
    pg: &Postgresql,
    secrets: &Secrets,
    set: &mut RoleSet,
    warnings: &mut Vec<Warning>,
) {
    let owners: BTreeSet<&String> = pg.spec.databases.iter().flatten().map(|(_, o)| o).collect();
    for (name, flags) in pg.spec.users.iter().flatten() {
        let field = format!("spec.users.{name}");
        let skip = |message: String| Warning {
            field: field.clone(),
            message,
        };
        if !USER_NAME_RE.is_match(name) {
            warnings.push(skip(format!("{name:?} is not a valid role name; skipped")));
            continue;
        }
        if let Some(reason) = reserved_name(config, name) {
            warnings.push(skip(format!("{name:?} {reason}; skipped")));
            continue;
        }
        let (on, off) = match normalize_flags(flags.as_deref().unwrap_or_default()) {
            Ok(flags) => flags,
            Err(problem) => {
                warnings.push(skip(format!("{problem}; role {name:?} skipped")));
                continue;
            }
        };
        let mut user = role(name.clone(), Origin::Manifest, secrets);
        user.flags = on;
        user.no_flags = off;
        if config.teams_api.enable_admin_role_for_users
            && !config.teams_api.team_admin_role.is_empty()
        {
            user.admin = Some(config.teams_api.team_admin_role.clone());
        }
        set.add(user, owners.contains(name));
    }
}

/// A prepared database with its schemas (`data` when it lists none).
struct Prepared {
    name: String,
    spec: PreparedDatabase,
    schemas: BTreeMap<String, PreparedSchema>,
}

impl Prepared {
    fn default_users(&self) -> bool {
        self.spec.default_users.unwrap_or(false)
    }
}

fn schema_roles(schema: &PreparedSchema) -> bool {
    schema.default_roles.unwrap_or(true)
}

/// `spec.preparedDatabases`; `{}` means one database named after the cluster (`-` → `_`).
fn prepared_databases(pg: &Postgresql) -> Vec<Prepared> {
    let Some(map) = &pg.spec.prepared_databases else {
        return Vec::new();
    };
    let default;
    let map = if map.is_empty() {
        default = BTreeMap::from([(
            pg.cluster_name().replace('-', "_"),
            PreparedDatabase::default(),
        )]);
        &default
    } else {
        map
    };
    map.iter()
        .map(|(name, spec)| {
            let mut schemas = spec.schemas.clone().unwrap_or_default();
            if schemas.is_empty() {
                schemas.insert(
                    DEFAULT_SCHEMA.into(),
                    PreparedSchema {
                        default_roles: Some(true),
                        ..Default::default()
                    },
                );
            }
            Prepared {
                name: name.clone(),
                spec: spec.clone(),
                schemas,
            }
        })
        .collect()
}

/// The owner, reader and writer roles (and with `users` their `_user` login roles) of one
/// prefix: `D` for a database, `D_S` for a schema. Owner-type roles are administered by
/// `owner_admin`, the others by `<prefix>_owner`.
fn default_roles(
    set: &mut RoleSet,
    prefix: &str,
    owner_admin: &str,
    users: bool,
    search_path: &str,
    secrets: &Secrets,
) {
    let kinds = [
        ("_owner", None),
        ("_reader", None),
        ("_writer", Some("_reader")),
    ];
    for (suffix, member_of) in kinds {
        let group = format!("{prefix}{suffix}");
        let mut variants = vec![(group.clone(), member_of.map(|m| format!("{prefix}{m}")))];
        if users {
            variants.push((format!("{group}_user"), Some(group.clone())));
        }
        for (name, member_of) in variants {
            let login = name.ends_with("_user");
            let mut r = role(name, Origin::PreparedDatabase, secrets);
            if login {
                r.flags.insert(Flag::Login);
            } else {
                r.no_flags.insert(Flag::Login);
                // Group roles have no Secret, so no password.
                r.password = Password::None;
            }
            r.member_of.extend(member_of);
            r.admin = Some(if suffix == "_owner" {
                owner_admin.to_string()
            } else {
                format!("{prefix}_owner")
            });
            r.settings
                .insert(quote::SEARCH_PATH.into(), search_path.to_string());
            set.add(r, suffix == "_owner");
        }
    }
}

fn prepared_roles(set: &mut RoleSet, db: &Prepared, secrets: &Secrets) {
    let d = &db.name;
    let mut path = vec![USER_SEARCH_PATH.to_string()];
    path.extend(db.schemas.keys().map(|s| quote::ident(s)));
    let db_path = path.join(", ");
    let db_owner = format!("{d}_owner");
    default_roles(set, d, PREPARED_ADMIN, false, &db_path, secrets);
    if db.default_users() {
        default_roles(set, d, PREPARED_ADMIN, true, &db_path, secrets);
    }
    for (s, schema) in &db.schemas {
        if !schema_roles(schema) {
            continue;
        }
        let schema_path = format!("{USER_SEARCH_PATH}, {}", quote::ident(s));
        let users = schema.default_users.unwrap_or(false);
        default_roles(
            set,
            &format!("{d}_{s}"),
            &db_owner,
            users,
            &schema_path,
            secrets,
        );
    }
}

/// The login users the prepared databases ask for (`defaultUsers` of a database, and of a
/// schema with its default roles), each with its database's `secretNamespace` ("" when unset):
/// the users whose Secrets that field places, as Zalando's `initDefaultRoles` does.
pub fn prepared_login_users(pg: &Postgresql) -> Vec<(String, String)> {
    let mut users = Vec::new();
    for db in prepared_databases(pg) {
        let namespace = db.spec.secret_namespace.clone().unwrap_or_default();
        let mut prefixes = Vec::new();
        if db.default_users() {
            prefixes.push(db.name.clone());
        }
        for (s, schema) in &db.schemas {
            if schema_roles(schema) && schema.default_users.unwrap_or(false) {
                prefixes.push(format!("{}_{s}", db.name));
            }
        }
        for prefix in prefixes {
            for kind in ["_owner", "_reader", "_writer"] {
                users.push((format!("{prefix}{kind}_user"), namespace.clone()));
            }
        }
    }
    users
}

/// `spec.databases` and the prepared databases with their schemas, extensions and default
/// privileges. A database needs a valid name and an owner among the wanted non-system roles.
fn databases(pg: &Postgresql, set: &RoleSet, wanted: &mut Wanted, warnings: &mut Vec<Warning>) {
    let mut owners: BTreeMap<String, (String, String)> = BTreeMap::new();
    let prepared = prepared_databases(pg);
    for db in &prepared {
        let field = format!("spec.preparedDatabases.{}", db.name);
        owners.insert(db.name.clone(), (format!("{}_owner", db.name), field));
    }
    // spec.databases wins over a prepared database of the same name, as in Zalando.
    for (name, owner) in pg.spec.databases.iter().flatten() {
        owners.insert(
            name.clone(),
            (owner.clone(), format!("spec.databases.{name}")),
        );
    }
    let mut valid = BTreeSet::new();
    for (name, (owner, field)) in owners {
        if !DATABASE_NAME_RE.is_match(&name) {
            warnings.push(Warning {
                field,
                message: format!("{name:?} is not a valid database name; skipped"),
            });
            continue;
        }
        if set.origin(&owner).is_none_or(|o| o == Origin::System) {
            warnings.push(Warning {
                field,
                message: format!(
                    "owner {owner:?} is not a role of the cluster; database {name:?} skipped"
                ),
            });
            continue;
        }
        valid.insert(name.clone());
        wanted.databases.push(Database { name, owner });
    }
    for db in prepared.iter().filter(|db| valid.contains(&db.name)) {
        prepared_contents(db, wanted, warnings);
    }
}

/// Schemas, extensions and default privileges of one prepared database (Zalando's
/// `syncPreparedDatabases`, `execCreateDatabaseSchema` and the default-privilege SQL).
fn prepared_contents(db: &Prepared, wanted: &mut Wanted, warnings: &mut Vec<Warning>) {
    let d = &db.name;
    let privileges = |schema: Option<&str>, grantor: String, prefix: &str| DefaultPrivileges {
        database: d.clone(),
        schema: schema.map(str::to_string),
        grantor,
        reader: format!("{prefix}_reader"),
        writer: format!("{prefix}_writer"),
    };
    let db_owner = format!("{d}_owner");
    let db_owner_user = format!("{d}_owner_user");
    let dp = &mut wanted.default_privileges;
    dp.push(privileges(None, db_owner.clone(), d));
    if db.default_users() {
        dp.push(privileges(None, db_owner_user.clone(), d));
    }
    for (s, schema) in &db.schemas {
        if !DATABASE_NAME_RE.is_match(s) {
            warnings.push(Warning {
                field: format!("spec.preparedDatabases.{d}.schemas.{s}"),
                message: format!("{s:?} is not a valid schema name; skipped"),
            });
            continue;
        }
        let own_roles = schema_roles(schema);
        let schema_owner = if own_roles {
            format!("{d}_{s}_owner")
        } else {
            db_owner.clone()
        };
        wanted.schemas.push(Schema {
            database: d.clone(),
            name: s.clone(),
            owner: schema_owner.clone(),
        });
        let here = Some(s.as_str());
        dp.push(privileges(here, schema_owner.clone(), d));
        if own_roles {
            let schema_users = schema.default_users.unwrap_or(false);
            let prefix = format!("{d}_{s}");
            if schema_users {
                dp.push(privileges(here, format!("{schema_owner}_user"), d));
            }
            let mut grantors = vec![db_owner.clone()];
            if db.default_users() {
                grantors.push(db_owner_user.clone());
            }
            grantors.push(schema_owner.clone());
            if schema_users {
                grantors.push(format!("{schema_owner}_user"));
            }
            for grantor in grantors {
                dp.push(privileges(here, grantor, &prefix));
            }
        } else if db.default_users() {
            dp.push(privileges(here, db_owner_user.clone(), d));
        }
    }
    for (name, schema) in db.spec.extensions.iter().flatten() {
        wanted.extensions.push(Extension {
            database: d.clone(),
            name: name.clone(),
            schema: schema.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(list: &[&str]) -> Result<(Vec<Flag>, Vec<Flag>), String> {
        let written: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        normalize_flags(&written).map(|(a, b)| (a.into_iter().collect(), b.into_iter().collect()))
    }

    #[test]
    fn flag_normalisation() {
        use Flag::*;
        assert_eq!(flags(&[]), Ok((vec![Login], vec![])));
        assert_eq!(flags(&["nologin"]), Ok((vec![], vec![])));
        assert_eq!(
            flags(&["LOGIN", "NOCREATEDB"]),
            Ok((vec![Login], vec![CreateDb]))
        );
        assert_eq!(
            flags(&["superuser", "CreateDB"]),
            Ok((vec![Superuser, Login, CreateDb], vec![]))
        );
        assert_eq!(flags(&["noinherit"]), Ok((vec![Login], vec![Inherit])));
        assert!(flags(&["createdb", "nocreatedb"]).is_err());
        assert!(flags(&["NOLOGIN", "login"]).is_err());
        assert!(flags(&["superpower"]).is_err());
        assert!(flags(&["no"]).is_err());
        assert!(flags(&[""]).is_err());
    }
}
