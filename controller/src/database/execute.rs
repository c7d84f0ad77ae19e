//! Runs a plan: each statement on its own (so one that fails leaves the others applied), on one
//! connection per database, in plan order. Failed statements are tried again while each round
//! has fewer failures than the one before — a role granted to one created later in the same
//! plan, or a schema whose owner appeared meanwhile, succeed then — and what still fails is
//! reported by what it does, never by its SQL when that carries a password.
//!
//! Each session first turns statement logging off (`log_statement`, and
//! `log_min_error_statement`, which would log a failing statement's text) so that a password
//! hash never reaches the server's log either.

use super::connect::{ConnectError, Connector, Target};
use common::database::model::Statement;

/// Settings of every session that runs a plan: nothing of it in the server's log, and no
/// waiting for a synchronous standby (Zalando's `synchronous_commit = local`).
const SESSION: &str = "set log_statement = 'none'; set log_min_error_statement = 'panic'; \
set log_min_duration_statement = -1; set synchronous_commit = 'local'";

/// A statement that failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub database: String,
    pub what: String,
    /// The server's message (it never quotes the statement).
    pub error: String,
}

/// How a plan went.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Statements that succeeded.
    pub applied: usize,
    pub failed: Vec<Failure>,
}

/// Why a plan could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("preparing the session on {database}: {source}")]
    Session {
        database: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

fn message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_string(),
        None => error.to_string(),
    }
}

/// The databases of `plan`, in the order they first appear.
pub fn databases(plan: &[Statement]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for s in plan {
        if !seen.contains(&s.database) {
            seen.push(s.database.clone());
        }
    }
    seen
}

/// Runs `plan` against `target`.
pub async fn run(
    connector: &Connector,
    target: &Target,
    plan: &[Statement],
) -> Result<Report, ExecuteError> {
    let mut report = Report::default();
    let mut pending: Vec<&Statement> = plan.iter().collect();
    loop {
        let mut failed: Vec<(&Statement, String)> = Vec::new();
        // Per database, in order: a database created in this plan exists before its schemas.
        for database in databases(plan) {
            let here: Vec<&Statement> = pending
                .iter()
                .copied()
                .filter(|s| s.database == database)
                .collect();
            if here.is_empty() {
                continue;
            }
            let mut connection = match connector.connect(target, &database).await {
                Ok(c) => c,
                // The database may be created by a statement that failed this round.
                Err(error) if database != "postgres" => {
                    let error = error.to_string();
                    failed.extend(here.into_iter().map(|s| (s, error.clone())));
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            connection
                .client()
                .batch_execute(SESSION)
                .await
                .map_err(|source| ExecuteError::Session {
                    database: database.clone(),
                    source,
                })?;
            for statement in here {
                match connection.client().batch_execute(&statement.sql).await {
                    Ok(()) => {
                        report.applied += 1;
                        tracing::info!(database = %statement.database, "{}", statement.what);
                    }
                    Err(error) => {
                        // A statement of several may have left its transaction aborted.
                        connection.discard();
                        failed.push((statement, message(&error)));
                    }
                }
            }
        }
        if failed.is_empty() || failed.len() >= pending.len() {
            report.failed = failed
                .into_iter()
                .map(|(s, error)| Failure {
                    database: s.database.clone(),
                    what: s.what.clone(),
                    error,
                })
                .collect();
            return Ok(report);
        }
        pending = failed.into_iter().map(|(s, _)| s).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(database: &str, what: &str) -> Statement {
        Statement {
            database: database.into(),
            sql: String::new(),
            transactional: true,
            secret: false,
            what: what.into(),
        }
    }

    #[test]
    fn databases_keep_the_plans_order() {
        let plan = [
            statement("postgres", "a"),
            statement("foo", "b"),
            statement("postgres", "c"),
            statement("bar", "d"),
        ];
        assert_eq!(databases(&plan), ["postgres", "foo", "bar"]);
    }
}
