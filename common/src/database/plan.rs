//! From wanted and actual to the statements that close the gap: Zalando's `ProduceSyncRequests`,
//! `syncDatabases`, `syncPreparedDatabases` and the default-privilege SQL, as a pure function.
//!
//! Only what is missing or different produces a statement, so a cluster that already matches
//! gets an empty plan. Nothing is ever dropped or revoked. Differences from Zalando, each on
//! purpose:
//! - Every attribute is compared (the catalog read returns all of `pg_authid`), so REPLICATION
//!   and BYPASSRLS are not re-asserted on every sync, and an explicit `NO` form is written only
//!   while the role still has the attribute (Zalando re-sends it every sync).
//! - A password is compared by re-deriving the stored verifier ([`password::matches`]), so an
//!   unchanged SCRAM password is not re-written every sync; a stored hash of the other
//!   `password_encryption` method is re-written once.
//! - `IN ROLE` and `ADMIN` name only roles that exist by then; other memberships become `GRANT`s
//!   after all creations, so one missing group (say `admin` on a server without Spilo) costs that
//!   grant, not the role, and membership cycles cannot block creation.
//! - `search_path` values are compared as lists, so the server's re-quoting of a stored list
//!   does not re-apply settings every sync.
//! - Default privileges are granted while (database, schema, grantor) has no entry in
//!   `pg_default_acl`, not only in the sync that created the database or schema, so enabling
//!   `defaultUsers` later back-fills them. `FOR ROLE` replaces Zalando's `SET ROLE`, which
//!   would outlive the statement on a pooled connection.
//! - The admin of an existing role is not checked (Zalando neither), nor the owner of an existing
//!   schema. A database owner that differs is changed for prepared databases too.

use super::model::{Actual, ActualRole, Flag, Password, Role, Statement, Wanted};
use super::password::{self, Method};
use super::quote::{ident, ident_list, setting_matches, setting_value};
use std::collections::{BTreeMap, BTreeSet};

/// The database every role and database statement runs on.
pub const MAINTENANCE_DATABASE: &str = "postgres";

/// The statements that take `actual` to `wanted`, in the order they must run: roles (a role
/// after the roles it joins or is administered by), their role changes, grants and settings,
/// then databases, schemas, extensions and default privileges, grouped by database.
pub fn plan(wanted: &Wanted, actual: &Actual, method: Method) -> Vec<Statement> {
    let mut out = Vec::new();
    roles(wanted, actual, method, &mut out);
    databases(wanted, actual, &mut out);
    schemas(wanted, actual, &mut out);
    extensions(wanted, actual, &mut out);
    default_privileges(wanted, actual, &mut out);
    out
}

fn statement(database: &str, sql: String, what: String) -> Statement {
    Statement {
        database: database.to_string(),
        sql,
        transactional: true,
        secret: false,
        what,
    }
}

/// The keyword of an attribute, and of its `NO` form.
pub fn keyword(flag: Flag, on: bool) -> &'static str {
    match (flag, on) {
        (Flag::Superuser, true) => "SUPERUSER",
        (Flag::Superuser, false) => "NOSUPERUSER",
        (Flag::Login, true) => "LOGIN",
        (Flag::Login, false) => "NOLOGIN",
        (Flag::CreateDb, true) => "CREATEDB",
        (Flag::CreateDb, false) => "NOCREATEDB",
        (Flag::CreateRole, true) => "CREATEROLE",
        (Flag::CreateRole, false) => "NOCREATEROLE",
        (Flag::Inherit, true) => "INHERIT",
        (Flag::Inherit, false) => "NOINHERIT",
        (Flag::Replication, true) => "REPLICATION",
        (Flag::Replication, false) => "NOREPLICATION",
        (Flag::BypassRls, true) => "BYPASSRLS",
        (Flag::BypassRls, false) => "NOBYPASSRLS",
    }
}

/// The missing roles in creation order: Kahn's algorithm over "joins or is administered by",
/// ties by name; the members of a cycle (only possible through configuration) come last, by name.
fn creation_order<'a>(missing: &BTreeMap<&'a str, &'a Role>) -> Vec<&'a Role> {
    let deps = |role: &Role| -> BTreeSet<&'a str> {
        role.member_of
            .iter()
            .map(String::as_str)
            .chain(role.admin.as_deref())
            .filter_map(|d| missing.get_key_value(d).map(|(k, _)| *k))
            .filter(|d| *d != role.name)
            .collect()
    };
    let mut waiting: BTreeMap<&str, BTreeSet<&str>> = missing
        .iter()
        .map(|(name, role)| (*name, deps(role)))
        .collect();
    let mut order = Vec::new();
    loop {
        let ready: Vec<&str> = waiting
            .iter()
            .filter(|(_, deps)| deps.is_empty())
            .map(|(name, _)| *name)
            .collect();
        if ready.is_empty() {
            break;
        }
        for name in ready {
            waiting.remove(name);
            for deps in waiting.values_mut() {
                deps.remove(name);
            }
            order.push(name);
        }
    }
    order.extend(waiting.keys());
    order
        .into_iter()
        .filter_map(|n| missing.get(n).copied())
        .collect()
}

fn password_statement(role: &Role, hash: String, create_sql: Option<String>) -> Statement {
    let name = &role.name;
    let (sql, what) = match create_sql {
        Some(head) => (
            format!("{head} PASSWORD {}", super::quote::literal(&hash)),
            format!("create role {name:?} with a password"),
        ),
        None => (
            format!(
                "ALTER ROLE {} PASSWORD {}",
                ident(name),
                super::quote::literal(&hash)
            ),
            format!("set the password of role {name:?} from its Secret"),
        ),
    };
    Statement {
        secret: true,
        ..statement(MAINTENANCE_DATABASE, sql, what)
    }
}

fn roles(wanted: &Wanted, actual: &Actual, method: Method, out: &mut Vec<Statement>) {
    let missing: BTreeMap<&str, &Role> = wanted
        .roles
        .iter()
        .filter(|r| !actual.roles.contains_key(&r.name))
        .map(|r| (r.name.as_str(), r))
        .collect();
    // Roles that exist when a statement runs: the catalog's, then each one created.
    let mut existing: BTreeSet<&str> = actual.roles.keys().map(String::as_str).collect();
    // Grants that could not be part of a CREATE ROLE: (group, member, with admin option).
    let mut deferred: Vec<(&str, &str, bool)> = Vec::new();
    for role in creation_order(&missing) {
        let name = role.name.as_str();
        let mut sql = format!("CREATE ROLE {}", ident(name));
        for flag in &role.flags {
            sql.push(' ');
            sql.push_str(keyword(*flag, true));
        }
        for flag in role.no_flags.difference(&role.flags) {
            sql.push(' ');
            sql.push_str(keyword(*flag, false));
        }
        let (now, later): (Vec<&str>, Vec<&str>) = role
            .member_of
            .iter()
            .map(String::as_str)
            .filter(|g| *g != name)
            .partition(|g| existing.contains(g));
        if !now.is_empty() {
            sql.push_str(&format!(" IN ROLE {}", ident_list(now)));
        }
        deferred.extend(later.into_iter().map(|g| (g, name, false)));
        match role.admin.as_deref() {
            Some(admin) if admin == name => {}
            Some(admin) if existing.contains(admin) => {
                sql.push_str(&format!(" ADMIN {}", ident(admin)));
            }
            Some(admin) => deferred.push((name, admin, true)),
            None => {}
        }
        match &role.password {
            Password::Clear(clear) => {
                out.push(password_statement(
                    role,
                    password::hash(method, name, clear),
                    Some(sql),
                ));
            }
            Password::None => {
                sql.push_str(" PASSWORD NULL");
                out.push(statement(
                    MAINTENANCE_DATABASE,
                    sql,
                    format!("create role {name:?}"),
                ));
            }
        }
        existing.insert(name);
    }

    let mut grants = Vec::new();
    for role in &wanted.roles {
        let Some(current) = actual.roles.get(&role.name) else {
            continue;
        };
        alter_role(role, current, method, out);
        let new: Vec<&str> = role
            .member_of
            .iter()
            .filter(|g| **g != role.name && !current.member_of.contains(*g))
            .map(String::as_str)
            .collect();
        if !new.is_empty() {
            grants.push(statement(
                MAINTENANCE_DATABASE,
                format!("GRANT {} TO {}", ident_list(new.clone()), ident(&role.name)),
                format!("make role {:?} a member of {}", role.name, new.join(", ")),
            ));
        }
    }
    for (group, member, admin) in deferred {
        let option = if admin { " WITH ADMIN OPTION" } else { "" };
        let what = if admin {
            format!("let role {member:?} administer role {group:?}")
        } else {
            format!("make role {member:?} a member of {group}")
        };
        grants.push(statement(
            MAINTENANCE_DATABASE,
            format!("GRANT {} TO {}{option}", ident(group), ident(member)),
            what,
        ));
    }
    out.extend(grants);
    for role in &wanted.roles {
        settings(role, actual.roles.get(&role.name), out);
    }
}

/// Missing attributes added, explicit `NO` forms applied while the role has the attribute, and
/// the password when it differs from the Secret's (or was hashed with the other method).
fn alter_role(role: &Role, current: &ActualRole, method: Method, out: &mut Vec<Statement>) {
    let name = &role.name;
    let add: Vec<&str> = role
        .flags
        .difference(&current.flags)
        .map(|f| keyword(*f, true))
        .collect();
    let remove: Vec<&str> = role
        .no_flags
        .iter()
        .filter(|f| current.flags.contains(f) && !role.flags.contains(f))
        .map(|f| keyword(*f, false))
        .collect();
    let changes: Vec<&str> = add.into_iter().chain(remove).collect();
    if !changes.is_empty() {
        out.push(statement(
            MAINTENANCE_DATABASE,
            format!("ALTER ROLE {} {}", ident(name), changes.join(" ")),
            format!("set {} on role {name:?}", changes.join(" ")),
        ));
    }
    if let Password::Clear(clear) = &role.password {
        let prehashed = Method::of_stored(clear).is_some();
        let current_ok = current.password.as_deref().is_some_and(|stored| {
            password::matches(stored, name, clear)
                && (prehashed || Method::of_stored(stored) == Some(method))
        });
        if !current_ok {
            out.push(password_statement(
                role,
                password::hash(method, name, clear),
                None,
            ));
        }
    }
}

/// A setting name as SQL: each dotted part quoted (`"app"."x"` for a custom option).
fn setting_name(name: &str) -> String {
    name.split('.').map(ident).collect::<Vec<_>>().join(".")
}

/// The role's settings replaced as a whole (RESET ALL, then one SET each) when they differ; a
/// role that wants none keeps whatever it has, as in Zalando.
fn settings(role: &Role, current: Option<&ActualRole>, out: &mut Vec<Statement>) {
    if role.settings.is_empty() {
        return;
    }
    let name = &role.name;
    if let Some(current) = current {
        let stored: BTreeMap<String, &String> = current
            .settings
            .iter()
            .map(|(k, v)| (k.to_lowercase(), v))
            .collect();
        let same = stored.len() == role.settings.len()
            && role.settings.iter().all(|(k, v)| {
                stored
                    .get(&k.to_lowercase())
                    .is_some_and(|s| setting_matches(k, v, s))
            });
        if same {
            return;
        }
        out.push(statement(
            MAINTENANCE_DATABASE,
            format!("ALTER ROLE {} RESET ALL", ident(name)),
            format!("reset the settings of role {name:?}"),
        ));
    }
    for (key, value) in &role.settings {
        out.push(statement(
            MAINTENANCE_DATABASE,
            format!(
                "ALTER ROLE {} SET {} TO {}",
                ident(name),
                setting_name(key),
                setting_value(key, value)
            ),
            format!("set {key} of role {name:?}"),
        ));
    }
}

fn databases(wanted: &Wanted, actual: &Actual, out: &mut Vec<Statement>) {
    for db in &wanted.databases {
        let (name, owner) = (&db.name, &db.owner);
        match actual.databases.get(name) {
            None => out.push(Statement {
                transactional: false,
                ..statement(
                    MAINTENANCE_DATABASE,
                    format!("CREATE DATABASE {} OWNER {}", ident(name), ident(owner)),
                    format!("create database {name:?} owned by {owner:?}"),
                )
            }),
            Some(current) if current != owner => out.push(statement(
                MAINTENANCE_DATABASE,
                format!("ALTER DATABASE {} OWNER TO {}", ident(name), ident(owner)),
                format!("change the owner of database {name:?} from {current:?} to {owner:?}"),
            )),
            Some(_) => {}
        }
    }
}

fn schemas(wanted: &Wanted, actual: &Actual, out: &mut Vec<Statement>) {
    let mut sorted: Vec<_> = wanted.schemas.iter().collect();
    sorted.sort();
    for s in sorted {
        if actual
            .schemas
            .contains_key(&(s.database.clone(), s.name.clone()))
        {
            continue;
        }
        out.push(statement(
            &s.database,
            format!(
                "CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}",
                ident(&s.name),
                ident(&s.owner)
            ),
            format!(
                "create schema {:?} owned by {:?} in database {:?}",
                s.name, s.owner, s.database
            ),
        ));
    }
}

fn extensions(wanted: &Wanted, actual: &Actual, out: &mut Vec<Statement>) {
    let mut sorted: Vec<_> = wanted.extensions.iter().collect();
    sorted.sort();
    for e in sorted {
        let key = (e.database.clone(), e.name.clone());
        let (sql, what) = match actual.extensions.get(&key) {
            Some(schema) if *schema == e.schema => continue,
            Some(schema) => (
                format!(
                    "ALTER EXTENSION {} SET SCHEMA {}",
                    ident(&e.name),
                    ident(&e.schema)
                ),
                format!(
                    "move extension {:?} of database {:?} from schema {schema:?} to {:?}",
                    e.name, e.database, e.schema
                ),
            ),
            None => (
                format!(
                    "CREATE EXTENSION IF NOT EXISTS {} SCHEMA {}",
                    ident(&e.name),
                    ident(&e.schema)
                ),
                format!(
                    "create extension {:?} in schema {:?} of database {:?}",
                    e.name, e.schema, e.database
                ),
            ),
        };
        out.push(statement(&e.database, sql, what));
    }
}

/// Zalando's privilege set for a reader and a writer role, database-wide or in one schema.
fn default_privileges(wanted: &Wanted, actual: &Actual, out: &mut Vec<Statement>) {
    let mut sorted: Vec<_> = wanted.default_privileges.iter().collect();
    sorted.sort();
    // Schema usage is one grant per schema and role pair, however many grantors.
    let mut usage_granted = BTreeSet::new();
    for p in sorted {
        let schema = p.schema.as_deref().unwrap_or_default();
        let key = (p.database.clone(), schema.to_string(), p.grantor.clone());
        if actual.default_privileges.contains(&key) {
            continue;
        }
        let (reader, writer) = (ident(&p.reader), ident(&p.writer));
        let both = format!("{reader}, {writer}");
        let mut grants: Vec<(String, &str, &str)> = Vec::new();
        let scope = match &p.schema {
            Some(s) => {
                let pair = (&p.database, s, &p.reader, &p.writer);
                if usage_granted.insert(pair) {
                    out.push(statement(
                        &p.database,
                        format!("GRANT USAGE ON SCHEMA {} TO {both}", ident(s)),
                        format!("let {:?} and {:?} use schema {s:?}", p.reader, p.writer),
                    ));
                }
                format!(" IN SCHEMA {}", ident(s))
            }
            None => {
                grants.push((format!("{writer}, {reader}"), "USAGE", "SCHEMAS"));
                String::new()
            }
        };
        grants.extend([
            (reader.clone(), "SELECT", "TABLES"),
            (reader.clone(), "SELECT", "SEQUENCES"),
            (writer.clone(), "INSERT, UPDATE, DELETE", "TABLES"),
            (writer.clone(), "USAGE, UPDATE", "SEQUENCES"),
            (both.clone(), "EXECUTE", "FUNCTIONS"),
            (both.clone(), "USAGE", "TYPES"),
        ]);
        let place = match &p.schema {
            Some(s) => format!("in schema {s:?} of database {:?}", p.database),
            None => format!("in database {:?}", p.database),
        };
        for (to, privileges, objects) in grants {
            out.push(statement(
                &p.database,
                format!(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {}{scope} GRANT {privileges} ON {objects} TO {to}",
                    ident(&p.grantor)
                ),
                format!(
                    "default privileges of {:?} {place}: {privileges} on {} for {}",
                    p.grantor,
                    objects.to_lowercase(),
                    to.replace('"', "")
                ),
            ));
        }
    }
}
