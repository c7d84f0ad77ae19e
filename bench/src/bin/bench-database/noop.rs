//! Statements per no-op sync: after every cluster converged, two snapshots `window` apart, of
//! the controller's metrics and, on every master, of `pg_stat_statements` (its
//! `track_utility` turned on first, so DDL, GRANTs and SETs count too) and of the `xmin` of the
//! role, membership, role-setting and database rows (a write to any of them changes it).
//!
//! The operator's catalog reads are recognised by their text (`controller::database::catalog`);
//! every other statement that is not a read (`select`, `show`, `with`) is counted as a write,
//! whoever sent it. The benchmark's own queries carry the comment [`MARK`] and are left out.

use anyhow::{Context, Result};
use std::collections::BTreeMap;

use crate::logins::connect;
use bench::local::metrics_text;

/// Marks the benchmark's own statements.
const MARK: &str = "/* bench-database */";
/// What only the operator's cluster read (`catalog::CLUSTER_QUERY`) contains, as
/// `pg_stat_statements` normalises it.
const CLUSTER_READ: &str = "from pg_authid a where a.rolname = any(";
/// The same for a database's read (`catalog::DATABASE_QUERY`).
const DATABASE_READ: &str = "from pg_default_acl a left join pg_namespace n";

/// One cluster at one moment.
#[derive(Default, Clone)]
pub struct Snapshot {
    /// calls by (userid, dbid, queryid, toplevel), with the query's text.
    statements: BTreeMap<String, (i64, String)>,
    /// `table key` -> xmin.
    rows: BTreeMap<String, String>,
}

/// Turns `pg_stat_statements.track_utility` on (ALTER SYSTEM and a reload), for this run.
pub async fn track_utility(ip: &str, password: &str) -> Result<()> {
    let c = connect(ip, "postgres", password, "postgres").await?;
    c.simple_query(&format!(
        "{MARK} alter system set pg_stat_statements.track_utility = on"
    ))
    .await?;
    c.simple_query(&format!("{MARK} select pg_reload_conf()"))
        .await?;
    Ok(())
}

pub async fn snapshot(ip: &str, password: &str) -> Result<Snapshot> {
    let c = connect(ip, "postgres", password, "postgres").await?;
    let rows = c
        .query(
            &format!(
                "{MARK} select concat_ws(' ', userid, dbid, queryid, toplevel), calls, query \
                 from pg_stat_statements"
            ),
            &[],
        )
        .await
        .context("reading pg_stat_statements")?;
    let mut s = Snapshot::default();
    for r in rows {
        s.statements.insert(r.get(0), (r.get(1), r.get(2)));
    }
    let rows = c
        .query(
            &format!(
                "{MARK} select 'role ' || rolname, xmin::text from pg_authid \
                 union all select 'database ' || datname, xmin::text from pg_database \
                 union all select 'member ' || roleid || ' ' || member, xmin::text \
                   from pg_auth_members \
                 union all select 'setting ' || setdatabase || ' ' || setrole, xmin::text \
                   from pg_db_role_setting"
            ),
            &[],
        )
        .await
        .context("reading catalog xmins")?;
    for r in rows {
        s.rows.insert(r.get(0), r.get(1));
    }
    Ok(s)
}

/// What happened in one cluster between two snapshots.
#[derive(Default, Debug, Clone)]
pub struct Delta {
    /// Cluster reads of the operator (one per sync).
    pub cluster_reads: i64,
    /// Database reads of the operator.
    pub database_reads: i64,
    /// Statements that are not reads, by text (first 80 characters).
    pub writes: BTreeMap<String, i64>,
    /// Other reads (Patroni's).
    pub other_reads: i64,
    /// Catalog rows added, removed or rewritten.
    pub rows_changed: usize,
}

fn is_read(query: &str) -> bool {
    let mut q = query.trim_start();
    while let Some(rest) = q.strip_prefix("/*") {
        q = rest
            .split_once("*/")
            .map_or("", |(_, after)| after)
            .trim_start();
    }
    let word: String = q
        .chars()
        .take_while(|c| c.is_alphabetic())
        .collect::<String>()
        .to_lowercase();
    matches!(
        word.as_str(),
        "select" | "show" | "with" | "values" | "table"
    )
}

pub fn delta(before: &Snapshot, after: &Snapshot) -> Delta {
    let mut d = Delta::default();
    for (key, (calls, query)) in &after.statements {
        let calls = calls - before.statements.get(key).map_or(0, |(c, _)| *c);
        if calls <= 0 || query.contains(MARK) {
            continue;
        }
        if query.contains(CLUSTER_READ) {
            d.cluster_reads += calls;
        } else if query.contains(DATABASE_READ) {
            d.database_reads += calls;
        } else if is_read(query) {
            d.other_reads += calls;
        } else {
            let text: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
            *d.writes.entry(text.chars().take(80).collect()).or_default() += calls;
        }
    }
    let keys: std::collections::BTreeSet<&String> =
        before.rows.keys().chain(after.rows.keys()).collect();
    d.rows_changed = keys
        .into_iter()
        .filter(|k| before.rows.get(*k) != after.rows.get(*k))
        .count();
    d
}

/// The controller's counters at one moment (`/metrics` on its admin port).
#[derive(Default, Debug, Clone, Copy)]
pub struct Counters {
    pub reconciles: f64,
    pub planned: f64,
    pub api_writes: f64,
    /// `database_connections_peak`, when this controller has it.
    pub connections_peak: Option<f64>,
}

pub fn counters(port: u16) -> Result<Counters> {
    let text = metrics_text(port).context("scraping the controller's /metrics")?;
    let sum = |name: &str| e2e::promtext::sum(&text, name);
    Ok(Counters {
        reconciles: sum("pg_controller_reconciles_total").unwrap_or(0.0),
        planned: sum("pg_controller_database_statements_total").unwrap_or(0.0),
        api_writes: sum("pg_controller_api_writes_total").unwrap_or(0.0),
        connections_peak: sum("pg_controller_database_connections_peak"),
    })
}
