//! Spilo's own defaults (its `configure_spilo.py` template), adapted to this world.
//!
//! Everything here is what Spilo puts in Patroni's configuration *before* the manifest's
//! `SPILO_CONFIGURATION` is merged over it. The adaptations, each for a reason:
//! - `127.0.0.1/32` in pg_hba becomes `127.0.0.0/8`: every connection between members comes from
//!   a 127.x address (the recipe's pitfall 4), where Spilo sees only its own localhost.
//! - no `pam` lines: the wheel majors are built without PAM and this machine has no
//!   `pam_oauth2`; a `pam` line would keep PostgreSQL from starting. The human role still exists.
//! - `shared_preload_libraries` is only `pg_stat_statements`: bg_mon, pgextwlist, pg_auth_mon,
//!   set_user, pg_cron and timescaledb are not installed here (so no `bg_mon.*`/`extwlist.*`).
//! - `shared_buffers` 16MB and `max_connections` 100 instead of fractions of the container's
//!   memory: dozens of members share one small machine (Spilo's floor for max_connections is 100).
//! - `archive_command` is `/bin/true`: there is no WAL storage in this world.

use serde_json::{Value, json};

/// `bootstrap.dcs` as Spilo writes it (its `standby_cluster` is added by the bootstrap module).
pub fn dcs() -> Value {
    json!({
        "ttl": 30,
        "loop_wait": 10,
        "retry_timeout": 10,
        "maximum_lag_on_failover": 33554432,
        "postgresql": {
            "use_pg_rewind": true,
            "use_slots": true,
            "parameters": {
                "archive_mode": "on",
                "archive_timeout": "1800s",
                "wal_level": "hot_standby",
                "wal_log_hints": "on",
                "max_wal_senders": 10,
                "max_connections": 100,
                "max_replication_slots": 10,
                "hot_standby": "on",
                "tcp_keepalives_idle": 900,
                "tcp_keepalives_interval": 100,
                "log_line_prefix": "%t [%p]: [%l-1] %c %x %d %u %a %h ",
                "log_checkpoints": "on",
                "log_lock_waits": "on",
                "log_min_duration_statement": 500,
                "log_autovacuum_min_duration": 0,
                "log_connections": "on",
                "log_disconnections": "on",
                "log_statement": "ddl",
                "log_temp_files": 0,
                "track_functions": "all",
                "checkpoint_completion_target": 0.9,
                "autovacuum_max_workers": 5,
                "autovacuum_vacuum_scale_factor": 0.05,
                "autovacuum_analyze_scale_factor": 0.02
            }
        }
    })
}

/// Spilo's `bootstrap.initdb` (the operator always sends its own list, which replaces this one).
pub fn initdb() -> Value {
    json!([{"encoding": "UTF8"}, {"locale": "en_US.UTF-8"}, "data-checksums"])
}

/// `postgresql.parameters` Spilo sets locally (not through the DCS). The TLS file parameters are
/// added by the caller, which knows where the runner put the files.
pub fn local_parameters() -> Value {
    json!({
        "archive_command": "/bin/true",
        "shared_buffers": "16MB",
        "logging_collector": "on",
        "log_destination": "csvlog",
        "log_directory": "../pg_log",
        "log_filename": "postgresql-%u.log",
        "log_file_mode": "0644",
        "log_rotation_age": "1d",
        "log_truncate_on_rotation": "on",
        "ssl": "on",
        "shared_preload_libraries": "pg_stat_statements",
        "pg_stat_statements.track_utility": "off"
    })
}

/// Spilo's default pg_hba for the replication user `standby` (a manifest `pg_hba` replaces the
/// whole list). `allow_nossl` is Spilo's `ALLOW_NOSSL`.
pub fn pg_hba(standby: &str, allow_nossl: bool) -> Vec<String> {
    let mut hba = vec![
        "local   all             all                                   trust".to_string(),
        "host    all             all                127.0.0.0/8        md5".to_string(),
        "host    all             all                ::1/128            md5".to_string(),
        format!("hostssl replication     {standby} all                md5"),
    ];
    if allow_nossl {
        hba.push("host    all             all                all                md5".into());
    } else {
        hba.push("hostnossl all           all                all                reject".into());
        hba.push("hostssl all             all                all                md5".into());
    }
    hba
}

/// A PostgreSQL identifier, always double-quoted (`"` doubled).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A PostgreSQL string literal (`'` doubled; standard_conforming_strings is on).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Creates `role` (NOLOGIN) or resets it to Spilo's flags, as Spilo's `post_init.sh` does.
fn ensure_role(role: &str, create_flags: &str, alter_flags: &str) -> String {
    format!(
        "DO $$\nBEGIN\n    PERFORM * FROM pg_catalog.pg_authid WHERE rolname = {literal};\n    \
         IF FOUND THEN\n        ALTER ROLE {ident} WITH {alter_flags};\n    \
         ELSE\n        CREATE ROLE {ident}{create_flags};\n    END IF;\nEND;$$;\n",
        literal = quote_literal(role),
        ident = quote_ident(role),
    )
}

/// The SQL of Spilo's `post_init.sh` that this world can run: the roles the operator relies on
/// and `pg_stat_statements`. Patroni runs it once, on the new primary right after bootstrap
/// (initdb or clone), through psql (`bootstrap.post_init`), so it is written for psql: it may
/// `\connect`.
///
/// - `admin` (CREATEDB NOLOGIN): the operator's `team_admin_role`, and the literal admin of
///   prepared-database owner roles — role creation fails without it.
/// - `cron_admin` (NOLOGIN), granted to `admin`: in the operator's `protected_role_names`.
/// - the human role (`HUMAN_ROLE`, default `zalandos`): team members are created `IN ROLE` it.
/// - `robot_zmon` (NOLOGIN): monitoring grants refer to it.
/// - `pg_stat_statements` in `postgres` and `template1` (so every new database has it).
///
/// Left out because the extensions are not installed here: pg_auth_mon, pg_cron (and its
/// policies), set_user, file_fdw log tables, the zmon schema and metric helpers.
pub fn post_init_sql(human_role: &str) -> String {
    const ALTER: &str = "NOLOGIN NOCREATEROLE NOSUPERUSER NOREPLICATION INHERIT";
    let mut sql = String::from("\\set ON_ERROR_STOP on\nSET synchronous_commit = 'local';\n\n");
    sql += &ensure_role("admin", " CREATEDB", &format!("CREATEDB {ALTER}"));
    sql += &ensure_role("cron_admin", "", &format!("NOCREATEDB {ALTER}"));
    sql += "GRANT cron_admin TO admin;\n";
    sql += &ensure_role(human_role, "", &format!("NOCREATEDB {ALTER}"));
    sql += &ensure_role("robot_zmon", "", &format!("NOCREATEDB {ALTER}"));
    for database in ["postgres", "template1"] {
        sql += &format!(
            "\\connect {database}\nCREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA public;\n"
        );
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_init_creates_the_roles_the_operator_relies_on() {
        let sql = post_init_sql("zalandos");
        for role in ["admin", "cron_admin", "zalandos", "robot_zmon"] {
            assert!(
                sql.contains(&format!("CREATE ROLE \"{role}\"")),
                "{role}: {sql}"
            );
            assert!(sql.contains(&format!("rolname = '{role}'")), "{role}");
        }
        assert!(sql.contains("CREATE ROLE \"admin\" CREATEDB;"));
        assert!(sql.contains("ALTER ROLE \"admin\" WITH CREATEDB NOLOGIN"));
        assert!(sql.contains("GRANT cron_admin TO admin;"));
        assert!(sql.starts_with("\\set ON_ERROR_STOP on\n"));
        assert!(
            sql.contains("\\connect template1\nCREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        );
    }

    #[test]
    fn post_init_quotes_the_human_role() {
        let sql = post_init_sql("we'ird\"role");
        assert!(sql.contains("rolname = 'we''ird\"role'"));
        assert!(sql.contains("CREATE ROLE \"we'ird\"\"role\";"));
    }

    #[test]
    fn hba_allows_loopback_and_replication_over_ssl() {
        let hba = pg_hba("standby", false);
        assert!(hba[0].starts_with("local") && hba[0].ends_with("trust"));
        assert!(hba.iter().any(|l| l.contains("127.0.0.0/8")));
        assert!(
            hba.iter()
                .any(|l| l.starts_with("hostssl replication     standby"))
        );
        assert!(hba.iter().any(|l| l.ends_with("reject")));
        assert!(!hba.iter().any(|l| l.contains("pam")));
        let nossl = pg_hba("repl", true);
        assert!(!nossl.iter().any(|l| l.ends_with("reject")));
        assert!(nossl.last().unwrap().starts_with("host    all"));
    }
}
