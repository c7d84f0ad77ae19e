//! In which order members with a pending restart are restarted (Zalando's `restartInstances`).
//!
//! A hot standby refuses to run with `max_connections`, `max_prepared_transactions`,
//! `max_locks_per_transaction`, `max_worker_processes` or `max_wal_senders` below its primary's,
//! and Patroni starts a replica with the primary's (higher) values from `pg_controldata` and
//! leaves it pending. So when the only changes are decreases of those, the primary restarts
//! first; otherwise (increases, anything else) the replicas restart first and the primary last.
//! A replica restarted before its primary can stay pending; it is restarted again afterwards.

use super::plan::ParameterChange;
use std::collections::BTreeSet;

/// The parameters whose decrease restarts the primary first.
pub const PRIMARY_FIRST_WHEN_DECREASED: &[&str] = &[
    "max_connections",
    "max_prepared_transactions",
    "max_locks_per_transaction",
    "max_worker_processes",
    "max_wal_senders",
];

/// Whether the primary restarts first after `parameters` changed together with `settings`
/// Patroni settings: only when every parameter change is a decrease of one of
/// [`PRIMARY_FIRST_WHEN_DECREASED`] and no Patroni setting changed. As in Zalando, a change of
/// one of those whose old or new value is not an integer counts neither way.
pub fn primary_first(parameters: &[ParameterChange], settings_changed: bool) -> bool {
    let mut votes = Vec::new();
    for change in parameters {
        if PRIMARY_FIRST_WHEN_DECREASED.contains(&change.name.as_str()) {
            let (Ok(from), Ok(to)) = (
                change.from.trim().parse::<i64>(),
                change.to.trim().parse::<i64>(),
            ) else {
                continue;
            };
            if from > to {
                votes.push(true);
                continue;
            }
        }
        votes.push(false);
    }
    !votes.is_empty() && votes.iter().all(|v| *v) && !settings_changed
}

/// A member as `GET /patroni` showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The pod's name.
    pub name: String,
    /// Whether it is the primary (holds the leader lock).
    pub primary: bool,
    /// Whether a changed parameter waits for a restart.
    pub pending_restart: bool,
}

/// The members to restart, in order: those with a pending restart and not in `done` (already
/// restarted in this round); replicas by name, the primary first or last.
pub fn order(members: &[Member], primary_first: bool, done: &BTreeSet<String>) -> Vec<String> {
    let mut due: Vec<&Member> = members
        .iter()
        .filter(|m| m.pending_restart && !done.contains(&m.name))
        .collect();
    due.sort_by(|a, b| {
        let rank = |m: &Member| m.primary != primary_first;
        (rank(a), &a.name).cmp(&(rank(b), &b.name))
    });
    due.into_iter().map(|m| m.name.clone()).collect()
}

/// [`order`] for the changes of one patch (see [`primary_first`]).
pub fn restart_order(
    members: &[Member],
    parameters: &[ParameterChange],
    settings_changed: bool,
) -> Vec<String> {
    order(
        members,
        primary_first(parameters, settings_changed),
        &BTreeSet::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(name: &str, from: &str, to: &str) -> ParameterChange {
        ParameterChange {
            name: name.into(),
            from: from.into(),
            to: to.into(),
        }
    }

    fn members(pending: &[&str]) -> Vec<Member> {
        ["acid-0", "acid-1", "acid-2"]
            .iter()
            .map(|n| Member {
                name: n.to_string(),
                primary: *n == "acid-1",
                pending_restart: pending.contains(n),
            })
            .collect()
    }

    const ALL: &[&str] = &["acid-0", "acid-1", "acid-2"];

    /// Changes, whether a Patroni setting changed too, pending members, the expected order.
    type Case = (
        Vec<ParameterChange>,
        bool,
        &'static [&'static str],
        &'static [&'static str],
    );

    #[test]
    fn restart_order_table() {
        // (changes, settings changed, pending members, expected order)
        let cases: Vec<Case> = vec![
            // An increase: replicas first, primary last.
            (
                vec![change("max_connections", "100", "200")],
                false,
                ALL,
                &["acid-0", "acid-2", "acid-1"],
            ),
            // A decrease of a hot-standby parameter: primary first.
            (
                vec![change("max_connections", "200", "100")],
                false,
                ALL,
                &["acid-1", "acid-0", "acid-2"],
            ),
            // Several decreases, all of the list: primary first.
            (
                vec![
                    change("max_wal_senders", "10", "5"),
                    change("max_locks_per_transaction", "128", "64"),
                    change("max_prepared_transactions", "10", "0"),
                    change("max_worker_processes", "8", "4"),
                ],
                false,
                ALL,
                &["acid-1", "acid-0", "acid-2"],
            ),
            // A decrease together with another parameter: replicas first.
            (
                vec![
                    change("max_connections", "200", "100"),
                    change("work_mem", "4MB", "8MB"),
                ],
                false,
                ALL,
                &["acid-0", "acid-2", "acid-1"],
            ),
            // A decrease together with a Patroni setting (ttl): replicas first.
            (
                vec![change("max_connections", "200", "100")],
                true,
                ALL,
                &["acid-0", "acid-2", "acid-1"],
            ),
            // A decrease mixed with an increase: replicas first.
            (
                vec![
                    change("max_connections", "200", "100"),
                    change("max_wal_senders", "5", "10"),
                ],
                false,
                ALL,
                &["acid-0", "acid-2", "acid-1"],
            ),
            // A decrease of a parameter not in the list: replicas first.
            (
                vec![change("shared_buffers", "256MB", "128MB")],
                false,
                ALL,
                &["acid-0", "acid-2", "acid-1"],
            ),
            // No parameter change (a restart pending since earlier): replicas first.
            (vec![], false, ALL, &["acid-0", "acid-2", "acid-1"]),
            // A non-integer value does not vote (Zalando): only the decrease counts.
            (
                vec![
                    change("max_connections", "200", "100"),
                    change("max_wal_senders", "", "5"),
                ],
                false,
                ALL,
                &["acid-1", "acid-0", "acid-2"],
            ),
            // ... and alone it leaves no vote at all: replicas first.
            (
                vec![change("max_connections", "lots", "100")],
                false,
                ALL,
                &["acid-0", "acid-2", "acid-1"],
            ),
            // Only members with a pending restart are restarted.
            (
                vec![change("max_connections", "100", "200")],
                false,
                &["acid-1", "acid-2"],
                &["acid-2", "acid-1"],
            ),
            (
                vec![change("max_connections", "100", "200")],
                false,
                &[],
                &[],
            ),
        ];
        for (i, (changes, settings, pending, want)) in cases.into_iter().enumerate() {
            let got = restart_order(&members(pending), &changes, settings);
            assert_eq!(got, want, "case {i}: {changes:?} settings {settings}");
        }
    }

    #[test]
    fn members_restarted_in_this_round_are_skipped() {
        let done = BTreeSet::from(["acid-1".to_string()]);
        assert_eq!(order(&members(ALL), true, &done), ["acid-0", "acid-2"]);
        let done = BTreeSet::from(["acid-0".to_string(), "acid-2".to_string()]);
        assert_eq!(order(&members(ALL), false, &done), ["acid-1"]);
    }
}
