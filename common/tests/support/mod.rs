//! Helpers shared by the integration tests of `common` (each test crate uses some of them).
#![allow(dead_code)]

pub mod cases;
pub mod tables;

use common::database::model::{ActualRole, Flag, Statement};
use serde_json::Value;
use std::path::Path;

/// A YAML file as JSON; panics with the path when it cannot be read or parsed.
pub fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// RFC 7386 JSON merge patch: objects merge, `null` removes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// A role flag by its SQL keyword, any case.
pub fn parse_flag(word: &str) -> Result<Flag, String> {
    Ok(match word.to_ascii_uppercase().as_str() {
        "SUPERUSER" => Flag::Superuser,
        "LOGIN" => Flag::Login,
        "CREATEDB" => Flag::CreateDb,
        "CREATEROLE" => Flag::CreateRole,
        "INHERIT" => Flag::Inherit,
        "REPLICATION" => Flag::Replication,
        "BYPASSRLS" => Flag::BypassRls,
        _ => return Err(format!("unknown flag {word:?}")),
    })
}

/// A statement as the case tables write it: a password hash as `<hash>`, the database in
/// parentheses unless `postgres`, and a note when it runs outside a transaction.
pub fn render(statement: &Statement) -> String {
    let mut sql = statement.sql.clone();
    if statement.secret
        && let Some(start) = sql.find(" PASSWORD '")
    {
        sql.replace_range(start + " PASSWORD ".len().., "<hash>");
    }
    if statement.database != "postgres" {
        sql = format!("({}) {sql}", statement.database);
    }
    if !statement.transactional {
        sql.push_str(" (outside a transaction)");
    }
    sql
}

/// The roles Spilo creates at bootstrap with their flags, as the catalog shows them; with
/// `post_init`, also those of its post-init script (`zalandos`, the PAM role, and `robot_zmon`,
/// the monitoring group).
pub fn spilo_roles(post_init: bool) -> Vec<(String, ActualRole)> {
    use Flag::*;
    let all = Flag::ALL;
    let mut roles: Vec<(&str, &[Flag])> = vec![
        ("postgres", &all),
        ("standby", &[Login, Replication, Inherit]),
        ("admin", &[CreateDb, Inherit]),
        ("cron_admin", &[Inherit]),
    ];
    if post_init {
        roles.extend([("zalandos", &[Inherit][..]), ("robot_zmon", &[Inherit][..])]);
    }
    roles
        .into_iter()
        .map(|(name, flags)| {
            let role = ActualRole {
                flags: flags.iter().copied().collect(),
                ..ActualRole::default()
            };
            (name.to_string(), role)
        })
        .collect()
}
