//! One step of bringing a running cluster's Patroni configuration in line: read `GET /config`,
//! `PATCH /config` what differs ([`super::plan`]), wait `loop_wait` + 2 s for Patroni to apply it,
//! then restart the members that report `pending_restart`, one per step, in
//! [`super::restart`]'s order, waiting `loop_wait` after each — Zalando's `syncPatroniConfig` and
//! `restartInstances`, cut into steps so a worker never sleeps: every wait is a requeue.
//!
//! What the cluster's steps have reached is remembered per cluster ([`Memo`]) under a key of
//! everything they depend on (the desired DCS state, the leader, the members and their IPs). While
//! the key is unchanged, a cluster that was found in line costs no Patroni call until
//! `repair_period` has passed (then it is read again, which also repairs a hand-made change and
//! restarts a member left pending), and a cluster in the middle of its restarts is only looked at
//! when its wait is over. A failed call is a Warning (once per distinct failure) and a retry with
//! the database sync's back-off, never an error of the reconcile.

use super::plan::{self, Desired, Slots};
use super::restart::{self, Member};
use crate::database::retry::{Streak, backoff};
use crate::patroni::Patroni;
use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many rounds of restarts one change gets: a replica restarted before its primary may stay
/// pending (Patroni keeps the primary's higher values) and needs a second one. A member still
/// pending after that is left until the next repair.
pub const MAX_ROUNDS: u8 = 2;

/// A member's pod and its IP.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub name: String,
    pub ip: String,
}

/// What one step works on.
pub struct Input<'a> {
    /// The cluster's identity in the memo (its uid).
    pub cluster: &'a str,
    /// The manifest's generation (a new one starts a new streak of failures).
    pub generation: Option<i64>,
    pub desired: &'a Desired,
    /// The leader's pod name.
    pub leader: &'a str,
    /// The members with an IP, the leader among them.
    pub members: &'a [Target],
    /// The manifest slots the previous plan remembered.
    pub remembered: &'a Slots,
    pub repair_period: Duration,
}

/// Something to tell in an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub text: String,
}

/// What the step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// When to look again; `None`: nothing to do until something changes.
    pub requeue: Option<Duration>,
    /// The manifest slots to remember, after a plan that was carried out.
    pub remember: Option<Slots>,
    /// The members seen waiting for a restart.
    pub pending: Vec<String>,
}

#[derive(Clone, Debug)]
enum Phase {
    /// Read and plan, not before `at`.
    Plan { at: Instant },
    /// In line, and no member was pending, at `since`.
    Settled { since: Instant },
    /// Look at the members' pending restarts at `at`.
    Restarts {
        at: Instant,
        primary_first: bool,
        done: BTreeSet<String>,
        round: u8,
        wait: Duration,
    },
}

struct Entry {
    key: u64,
    phase: Phase,
    streak: Streak,
}

/// The steps' progress, by cluster.
#[derive(Default)]
pub struct Memo(Mutex<HashMap<String, Entry>>);

impl Memo {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The phase of `cluster` under `key`.
    fn phase(&self, cluster: &str, key: u64) -> Option<Phase> {
        self.lock()
            .get(cluster)
            .filter(|e| e.key == key)
            .map(|e| e.phase.clone())
    }

    /// Moves `cluster` to `phase` after a success (which ends a streak of failures).
    fn set(&self, cluster: &str, key: u64, phase: Phase) {
        self.lock().insert(
            cluster.to_string(),
            Entry {
                key,
                phase,
                streak: Streak::default(),
            },
        );
    }

    /// Counts a failure; returns its count and whether to warn.
    fn fail(
        &self,
        cluster: &str,
        key: u64,
        generation: Option<i64>,
        what: &str,
        phase: impl FnOnce(Duration) -> Phase,
        cap: Duration,
    ) -> (Duration, bool) {
        let mut entries = self.lock();
        let entry = entries.entry(cluster.to_string()).or_insert_with(|| Entry {
            key,
            phase: Phase::Plan { at: Instant::now() },
            streak: Streak::default(),
        });
        let verdict = entry.streak.fail(generation, what, Instant::now());
        let wait = backoff(verdict.failures, cap);
        entry.key = key;
        entry.phase = phase(wait);
        (wait, verdict.warn)
    }

    /// Ends the current wait of `cluster` (tests: time passing).
    #[cfg(test)]
    pub(crate) fn expire(&self, cluster: &str) {
        if let Some(entry) = self.lock().get_mut(cluster) {
            match &mut entry.phase {
                Phase::Plan { at } | Phase::Restarts { at, .. } => *at = Instant::now(),
                Phase::Settled { .. } => {}
            }
        }
    }

    /// Forgets `cluster` (deleted): its next step reads again.
    pub fn forget(&self, cluster: &str) {
        self.lock().remove(cluster);
    }
}

/// Everything a remembered phase depends on.
fn key(input: &Input<'_>) -> u64 {
    let mut hasher = DefaultHasher::new();
    (input.desired, input.leader, input.members).hash(&mut hasher);
    hasher.finish()
}

/// Takes the next step; `notify` publishes the Events as they happen.
pub async fn step(
    patroni: &dyn Patroni,
    memo: &Memo,
    input: &Input<'_>,
    notify: &(dyn Fn(Note) + Send + Sync),
) -> Outcome {
    let key = key(input);
    let now = Instant::now();
    match memo.phase(input.cluster, key) {
        Some(Phase::Settled { since }) if now.duration_since(since) < input.repair_period => {
            Outcome::default()
        }
        Some(Phase::Plan { at } | Phase::Restarts { at, .. }) if now < at => Outcome {
            requeue: Some(at - now),
            ..Outcome::default()
        },
        Some(Phase::Restarts {
            primary_first,
            done,
            round,
            wait,
            ..
        }) => {
            let state = Restarts {
                primary_first,
                done,
                round,
                wait,
            };
            restarts(patroni, memo, input, key, state, notify).await
        }
        _ => read_and_patch(patroni, memo, input, key, notify).await,
    }
}

fn failed(
    memo: &Memo,
    input: &Input<'_>,
    key: u64,
    what: String,
    phase: impl FnOnce(Duration) -> Phase,
    notify: &(dyn Fn(Note) + Send + Sync),
) -> Outcome {
    let (wait, warn) = memo.fail(
        input.cluster,
        key,
        input.generation,
        &what,
        phase,
        input.repair_period,
    );
    if warn {
        notify(Note {
            warning: true,
            reason: "PatroniConfigFailed",
            text: what.clone(),
        });
    }
    tracing::info!(cluster = input.cluster, retry_in = ?wait, "Patroni configuration: {what}");
    Outcome {
        requeue: Some(wait),
        ..Outcome::default()
    }
}

/// `GET /config` from the leader (or, failing that, any member), then the patch.
async fn read_and_patch(
    patroni: &dyn Patroni,
    memo: &Memo,
    input: &Input<'_>,
    key: u64,
    notify: &(dyn Fn(Note) + Send + Sync),
) -> Outcome {
    let retry_plan = |wait| Phase::Plan {
        at: Instant::now() + wait,
    };
    let mut order: Vec<&Target> = input.members.iter().collect();
    order.sort_by_key(|t| t.name != input.leader);
    let mut errors = Vec::new();
    let mut read = None;
    for target in order {
        match patroni.config(&target.ip).await {
            Ok(config) => {
                read = Some((target, config));
                break;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let Some((target, current)) = read else {
        let what = if errors.is_empty() {
            "no member has an IP to read Patroni's configuration from".to_string()
        } else {
            format!(
                "could not read Patroni's configuration: {}",
                errors.join("; ")
            )
        };
        return failed(memo, input, key, what, retry_plan, notify);
    };
    let plan = match plan::plan(input.desired, &current, input.remembered) {
        Ok(plan) => plan,
        Err(e) => return failed(memo, input, key, e.to_string(), retry_plan, notify),
    };
    let wait = Duration::from_secs(
        input
            .desired
            .loop_wait
            .filter(|w| *w > 0)
            .map_or(plan.loop_wait, u64::from),
    );
    let Some(patch) = &plan.patch else {
        let state = Restarts {
            primary_first: false,
            done: BTreeSet::new(),
            round: 1,
            wait,
        };
        let mut outcome = restarts(patroni, memo, input, key, state, notify).await;
        outcome.remember = Some(plan.remember);
        return outcome;
    };
    if let Err(e) = patroni.patch_config(&target.ip, patch).await {
        let what = format!("could not patch Patroni's configuration: {e}");
        return failed(memo, input, key, what, retry_plan, notify);
    }
    notify(Note {
        warning: false,
        reason: "PatroniConfigPatched",
        text: format!(
            "Patroni's dynamic configuration patched through {}: {}",
            target.name,
            plan.summary()
        ),
    });
    // Patroni applies a changed configuration within its loop_wait (the one in force).
    let applied = Duration::from_secs(plan.loop_wait + 2);
    memo.set(
        input.cluster,
        key,
        Phase::Restarts {
            at: Instant::now() + applied,
            primary_first: restart::primary_first(&plan.parameters, !plan.settings.is_empty()),
            done: BTreeSet::new(),
            round: 1,
            wait,
        },
    );
    Outcome {
        requeue: Some(applied),
        remember: Some(plan.remember),
        pending: Vec::new(),
    }
}

struct Restarts {
    primary_first: bool,
    done: BTreeSet<String>,
    round: u8,
    wait: Duration,
}

impl Restarts {
    /// The phase that takes these restarts up again `after` from now.
    fn again(&self, after: Duration) -> Phase {
        Phase::Restarts {
            at: Instant::now() + after,
            primary_first: self.primary_first,
            done: self.done.clone(),
            round: self.round,
            wait: self.wait,
        }
    }
}

/// `GET /patroni` of every member, then `POST /restart` of the first one due.
async fn restarts(
    patroni: &dyn Patroni,
    memo: &Memo,
    input: &Input<'_>,
    key: u64,
    mut state: Restarts,
    notify: &(dyn Fn(Note) + Send + Sync),
) -> Outcome {
    let mut members = Vec::new();
    for target in input.members {
        match patroni.status(&target.ip).await {
            Ok(status) => members.push(Member {
                name: target.name.clone(),
                primary: target.name == input.leader,
                pending_restart: status.pending_restart,
            }),
            Err(e) => {
                let what = format!(
                    "could not read whether {} waits for a restart: {e}",
                    target.name
                );
                return failed(memo, input, key, what, |wait| state.again(wait), notify);
            }
        }
    }
    let pending: Vec<String> = members
        .iter()
        .filter(|m| m.pending_restart)
        .map(|m| m.name.clone())
        .collect();
    let mut order = restart::order(&members, state.primary_first, &state.done);
    if order.is_empty() && !pending.is_empty() {
        if state.round < MAX_ROUNDS {
            state.round += 1;
            state.done.clear();
            order = restart::order(&members, state.primary_first, &state.done);
        } else {
            notify(Note {
                warning: true,
                reason: "PendingRestart",
                text: format!(
                    "{} still wait(s) for a restart after {MAX_ROUNDS} restarts; tried again in {:?}",
                    pending.join(", "),
                    input.repair_period
                ),
            });
        }
    }
    let Some(name) = order.first() else {
        memo.set(
            input.cluster,
            key,
            Phase::Settled {
                since: Instant::now(),
            },
        );
        return Outcome {
            pending,
            ..Outcome::default()
        };
    };
    let role = if *name == input.leader {
        "master"
    } else {
        "replica"
    };
    let ip = input
        .members
        .iter()
        .find(|t| t.name == *name)
        .map(|t| t.ip.as_str())
        .unwrap_or_default();
    // Zalando's Events (reason Update).
    notify(Note {
        warning: false,
        reason: "Update",
        text: format!("restarting Postgres server within {role} pod {name}"),
    });
    if let Err(e) = patroni.restart(ip).await {
        let what = format!("could not restart Postgres in {role} pod {name}: {e}");
        return failed(memo, input, key, what, |wait| state.again(wait), notify);
    }
    notify(Note {
        warning: false,
        reason: "Update",
        text: format!("Postgres server restart done for {role} pod {name}"),
    });
    state.done.insert(name.clone());
    memo.set(input.cluster, key, state.again(state.wait));
    Outcome {
        requeue: Some(state.wait),
        remember: None,
        pending,
    }
}
