//! The database side as data: what a cluster should have inside PostgreSQL ([`Wanted`]), what a
//! catalog read found there ([`Actual`]), and the statements that take one to the other
//! ([`Statement`]). Pure: the controller computes [`Wanted`] from the manifest, the configuration
//! and the Secrets, reads [`Actual`] in one round-trip per database, and runs what
//! [`super::plan`] returns.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A role attribute as `CREATE ROLE` spells it (Zalando's flag list; the `NO` forms are the
/// attribute set to false).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flag {
    Superuser,
    Login,
    CreateDb,
    CreateRole,
    Inherit,
    Replication,
    BypassRls,
}

impl Flag {
    /// Every attribute, in `CREATE ROLE`'s order (a role with all of them is Spilo's superuser).
    pub const ALL: [Flag; 7] = [
        Flag::Superuser,
        Flag::Login,
        Flag::CreateDb,
        Flag::CreateRole,
        Flag::Inherit,
        Flag::Replication,
        Flag::BypassRls,
    ];
}

/// A password as the operator holds it. Never printed: `Debug` shows only whether one is set.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Password {
    /// No password: group roles, and human roles that log in through PAM.
    #[default]
    None,
    /// The clear text from the role's Secret (the source of truth, as in Zalando).
    Clear(String),
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Password::None => f.write_str("None"),
            Password::Clear(_) => f.write_str("Clear(<redacted>)"),
        }
    }
}

/// Where a wanted role comes from (Zalando's origins; a name wanted twice keeps the higher).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    Manifest,
    Infrastructure,
    Team,
    System,
    PreparedDatabase,
}

/// A role the cluster should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub flags: BTreeSet<Flag>,
    /// Attributes asked for in their `NO` form (`NOINHERIT`, `NOCREATEDB`, and `NOLOGIN` for the
    /// prepared-database group roles): written on creation, and the one case where an existing
    /// role loses an attribute, as Zalando alters a role with the flags the catalog lacks.
    pub no_flags: BTreeSet<Flag>,
    pub password: Password,
    /// Roles it is a member of (`IN ROLE`, later `GRANT`); never revoked.
    pub member_of: BTreeSet<String>,
    /// A role that administers it (`ADMIN`): Zalando's `team_admin_role` for manifest users.
    pub admin: Option<String>,
    /// Role-level settings (`ALTER ROLE … SET`), e.g. `search_path`.
    pub settings: BTreeMap<String, String>,
    pub origin: Origin,
}

/// A database and its owner.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Database {
    pub name: String,
    pub owner: String,
}

/// A schema of a database and its owner.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Schema {
    pub database: String,
    pub name: String,
    pub owner: String,
}

/// An extension of a database, installed into a schema.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Extension {
    pub database: String,
    pub name: String,
    pub schema: String,
}

/// Default privileges `grantor` gives `reader` and `writer` in `database` (in `schema`, or in
/// every schema), as Zalando sets them for prepared databases.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DefaultPrivileges {
    pub database: String,
    pub schema: Option<String>,
    pub grantor: String,
    pub reader: String,
    pub writer: String,
}

/// Everything a cluster should have inside PostgreSQL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub roles: Vec<Role>,
    pub databases: Vec<Database>,
    pub schemas: Vec<Schema>,
    pub extensions: Vec<Extension>,
    pub default_privileges: Vec<DefaultPrivileges>,
}

/// A role as the catalog shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActualRole {
    pub flags: BTreeSet<Flag>,
    /// `pg_authid.rolpassword`: an md5 hash or a SCRAM verifier; `None` for no password.
    pub password: Option<String>,
    pub member_of: BTreeSet<String>,
    /// Database-independent settings (`pg_db_role_setting` with `setdatabase = 0`).
    pub settings: BTreeMap<String, String>,
}

/// What the catalog reads found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actual {
    pub roles: BTreeMap<String, ActualRole>,
    /// Database name → owner.
    pub databases: BTreeMap<String, String>,
    /// (database, schema) → owner, for the databases read (those with wanted schemas).
    pub schemas: BTreeMap<(String, String), String>,
    /// (database, extension) → schema, for the databases read.
    pub extensions: BTreeMap<(String, String), String>,
    /// Default privileges already set, as (database, schema or "", grantor).
    pub default_privileges: BTreeSet<(String, String, String)>,
}

/// One statement to run, on a connection to `database`.
#[derive(Clone, PartialEq, Eq)]
pub struct Statement {
    pub database: String,
    pub sql: String,
    /// Whether it may run inside a transaction (`CREATE DATABASE` may not).
    pub transactional: bool,
    /// Whether `sql` carries a password hash: never logged, never in an Event or status.
    pub secret: bool,
    /// What it does, for logs and Events (never the SQL of a secret statement).
    pub what: String,
}

impl fmt::Debug for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sql = if self.secret { "<redacted>" } else { &self.sql };
        f.debug_struct("Statement")
            .field("database", &self.database)
            .field("what", &self.what)
            .field("sql", &sql)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show_in_debug_output() {
        let role = format!("{:?}", Password::Clear("hunter2".into()));
        assert!(!role.contains("hunter2"));
        let statement = Statement {
            database: "postgres".into(),
            sql: "ALTER ROLE a PASSWORD 'SCRAM-SHA-256$4096:x'".into(),
            transactional: true,
            secret: true,
            what: "set the password of role a".into(),
        };
        assert!(!format!("{statement:?}").contains("SCRAM"));
    }
}
