//! The status a cluster should show, computed from what the reconcile found and did.

use common::crd::Postgresql;
use common::crd::postgresql::{ClusterStatus, PostgresqlStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// How the reconcile ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Result {
    /// The manifest breaks a rule.
    Invalid(String),
    /// A step failed.
    Failed(String),
    /// Every child matches the spec; `pods` tells whether the database runs.
    Applied {
        /// The pods and Patroni's leader.
        pods: Pods,
        /// The inside of the database, once there is a leader.
        database: Database,
        /// The fields the manifest sets that are not acted on yet
        /// ([`common::fields::summary`]): the cluster is then never reported Ready.
        ignored: Option<String>,
    },
}

/// Whether the cluster's database runs: every pod ready and a Patroni leader running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pods {
    /// The pod Patroni's leader runs in.
    Running(String),
    /// What is missing, for the Ready condition.
    Waiting(String),
}

impl Pods {
    /// The Ready condition's message (never with "; ", which separates the ignored fields).
    fn message(&self) -> String {
        match self {
            Pods::Running(leader) => format!("all pods are ready and {leader} is Patroni's leader"),
            Pods::Waiting(why) => format!("waiting: {why}"),
        }
    }
}

/// How the database side went (roles, databases, schemas: [`crate::database`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// Not tried: no running leader yet.
    NotYet,
    /// Nothing to do by design, and why.
    Skipped(String),
    /// Everything the manifest asks for is there.
    Synced,
    /// What failed: a connection, the catalog read, or statements (by what they do).
    Failed(String),
}

fn creating(status: &ClusterStatus) -> bool {
    matches!(
        status,
        ClusterStatus::Unknown
            | ClusterStatus::Creating
            | ClusterStatus::CreateFailed
            | ClusterStatus::Invalid
    )
}

/// The summary of ignored fields the stored status already reports (its Ready condition), so
/// that the Warning Event about them is published once per change, not per reconcile.
pub fn ignored_fields_reported(pg: &Postgresql) -> Option<String> {
    let ready = pg
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.reason == common::fields::CONDITION_REASON)?;
    Some(
        ready
            .message
            .rsplit_once("; ")
            .map_or(ready.message.as_str(), |(fields, _)| fields)
            .to_string(),
    )
}

/// The next status. Running only when the pods are ready and Patroni has a running leader;
/// Creating/Updating until then; the
/// failure state names the phase it failed in, as Zalando's does.
pub fn next(pg: &Postgresql, result: &Result, now: Time) -> PostgresqlStatus {
    let previous = pg.status.clone().unwrap_or_default();
    let generation = pg.metadata.generation;
    let changed = previous.observed_generation != generation;
    let before = &previous.postgres_cluster_status;
    let phase = match result {
        Result::Invalid(_) => ClusterStatus::Invalid,
        Result::Failed(_) if creating(before) => ClusterStatus::CreateFailed,
        Result::Failed(_) if changed || *before == ClusterStatus::UpdateFailed => {
            ClusterStatus::UpdateFailed
        }
        Result::Failed(_) => ClusterStatus::SyncFailed,
        Result::Applied {
            pods: Pods::Running(_),
            ..
        } => ClusterStatus::Running,
        Result::Applied { .. } if creating(before) => ClusterStatus::Creating,
        Result::Applied { .. } => ClusterStatus::Updating,
    };
    let (ready, ready_reason, ready_message) = match result {
        // What failed inside the database matters most: it says what to fix.
        Result::Applied {
            pods: Pods::Running(_),
            database: Database::Failed(why),
            ..
        } => ("False", "DatabaseSyncFailed", why.clone()),
        // The phase stays Zalando's (Running once the pods are), but Ready says the manifest
        // asked for something that did not happen.
        Result::Applied {
            pods,
            ignored: Some(ignored),
            ..
        } => (
            "False",
            common::fields::CONDITION_REASON,
            format!("{ignored}; {}", pods.message()),
        ),
        Result::Applied {
            pods: pods @ Pods::Running(_),
            ..
        } => ("True", "PodsReady", pods.message()),
        Result::Applied { pods, .. } => ("False", "PodsNotReady", pods.message()),
        Result::Invalid(message) => ("False", "Invalid", message.clone()),
        Result::Failed(message) => ("False", "ReconcileFailed", message.clone()),
    };
    let (reconciled, reconciled_reason, reconciled_message) = match result {
        Result::Applied { .. } => (
            "True",
            "Applied",
            "every child object matches the spec".to_string(),
        ),
        Result::Invalid(message) => ("False", "Invalid", message.clone()),
        Result::Failed(message) => ("False", "Failed", message.clone()),
    };
    let old = previous.conditions.clone().unwrap_or_default();
    let condition = |type_: &str, status: &str, reason: &str, message: String| {
        let kept = old.iter().find(|c| c.type_ == type_ && c.status == status);
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: kept
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone()),
        }
    };
    PostgresqlStatus {
        postgres_cluster_status: phase,
        observed_generation: generation,
        conditions: Some(vec![
            condition("Ready", ready, ready_reason, ready_message),
            condition(
                "Reconciled",
                reconciled,
                reconciled_reason,
                reconciled_message,
            ),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(status: Option<PostgresqlStatus>, generation: i64) -> Postgresql {
        let mut pg: Postgresql = serde_yaml::from_str(
            "apiVersion: acid.zalan.do/v1\nkind: postgresql\nmetadata: {name: a}\nspec: {teamId: acid, numberOfInstances: 1, postgresql: {version: \"17\"}, volume: {size: 1Gi}}\n",
        )
        .unwrap();
        pg.metadata.generation = Some(generation);
        pg.status = status;
        pg
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap())
    }

    #[test]
    fn lifecycle() {
        let fresh = pg(None, 1);
        let creating = next(
            &fresh,
            &Result::Applied {
                pods: Pods::Waiting("no pod is labelled spilo-role=master yet".into()),
                database: Database::NotYet,
                ignored: None,
            },
            now(),
        );
        assert_eq!(creating.postgres_cluster_status, ClusterStatus::Creating);
        let running = next(
            &pg(Some(creating.clone()), 1),
            &Result::Applied {
                pods: Pods::Running("a-0".into()),
                database: Database::NotYet,
                ignored: None,
            },
            now(),
        );
        assert_eq!(running.postgres_cluster_status, ClusterStatus::Running);
        let updating = next(
            &pg(Some(running.clone()), 2),
            &Result::Applied {
                pods: Pods::Waiting("no pod is labelled spilo-role=master yet".into()),
                database: Database::NotYet,
                ignored: None,
            },
            now(),
        );
        assert_eq!(updating.postgres_cluster_status, ClusterStatus::Updating);
        assert_eq!(
            next(
                &pg(Some(running.clone()), 2),
                &Result::Failed("x".into()),
                now()
            )
            .postgres_cluster_status,
            ClusterStatus::UpdateFailed
        );
        assert_eq!(
            next(
                &pg(Some(running.clone()), 1),
                &Result::Failed("x".into()),
                now()
            )
            .postgres_cluster_status,
            ClusterStatus::SyncFailed
        );
        assert_eq!(
            next(&fresh, &Result::Failed("x".into()), now()).postgres_cluster_status,
            ClusterStatus::CreateFailed
        );
        let invalid = next(&fresh, &Result::Invalid("spec.users.x: bad".into()), now());
        assert_eq!(invalid.postgres_cluster_status, ClusterStatus::Invalid);
        assert_eq!(
            invalid.conditions.as_ref().unwrap()[1].message,
            "spec.users.x: bad"
        );
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let first = next(
            &pg(None, 1),
            &Result::Applied {
                pods: Pods::Running("a-0".into()),
                database: Database::NotYet,
                ignored: None,
            },
            now(),
        );
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap());
        let again = next(
            &pg(Some(first.clone()), 1),
            &Result::Applied {
                pods: Pods::Running("a-0".into()),
                database: Database::NotYet,
                ignored: None,
            },
            later,
        );
        assert_eq!(
            first, again,
            "a repeated status must be identical, so no write is needed"
        );
    }
}
