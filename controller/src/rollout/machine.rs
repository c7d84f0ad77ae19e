//! The rolling update as a pure function of what is observed: which flagged pod to recreate
//! next, when to switch over, and when to wait. Called on every reconcile of a cluster with
//! flagged pods, so a controller restart resumes from the pods' annotations alone and no
//! step is ever remembered only in memory.
//!
//! The order is Zalando's (`recreatePods`): replicas first, one at a time, then a switchover to
//! the best replica, then the old master, which by then is a replica like the others. Stricter
//! than Zalando, nothing is deleted unless every member other than the one being recreated is
//! healthy: the leader runs and every other replica streams within the allowed lag, so a
//! rollout never takes away the last good copy of a commit.

use crate::patroni::{Cluster, Member};
use std::time::Duration;

/// One pod of the cluster, as the caches show it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pod {
    /// `<cluster>-<ordinal>`.
    pub name: String,
    /// The pod carries the rolling-update annotation.
    pub flagged: bool,
    /// Its Ready condition is true.
    pub ready: bool,
    /// It is being deleted.
    pub terminating: bool,
}

/// Everything the next step depends on.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// The StatefulSet's replicas.
    pub instances: usize,
    /// The cluster's pods.
    pub pods: &'a [Pod],
    /// Patroni's `/cluster`, or why it could not be read.
    pub patroni: Result<&'a Cluster, &'a str>,
    /// The largest lag (bytes) a replica may have to count as healthy, and to be promoted
    /// (Patroni's `maximum_lag_on_failover`).
    pub max_lag: u64,
    /// Patroni runs in synchronous mode: only a synchronous standby may be promoted.
    pub synchronous_mode: bool,
    /// How long the rollout has been waiting for the same reason (0 when it just acted).
    pub waiting_for: Duration,
    /// How long a wait may last before it is reported as stuck.
    pub timeout: Duration,
}

/// The next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// No pod is flagged.
    Idle,
    /// Something must happen first; the rollout goes on by itself once it has.
    Wait(String),
    /// The same wait has lasted longer than the timeout: report it, and keep waiting.
    Stuck(String),
    /// Delete this pod so that the StatefulSet recreates it from the current template.
    Recreate {
        /// The pod.
        pod: String,
        /// Set when the pod is the only member: writes stop until its successor runs.
        downtime: bool,
    },
    /// Make `candidate` the leader before the flagged leader is recreated.
    Switchover {
        /// The current leader.
        leader: String,
        /// The replica to promote.
        candidate: String,
    },
}

/// The next step of the rolling update.
pub fn next_action(input: &Input<'_>) -> Action {
    if !input.pods.iter().any(|p| p.flagged) {
        return Action::Idle;
    }
    match step(input) {
        Action::Wait(reason) if input.waiting_for > input.timeout => Action::Stuck(format!(
            "{reason} (waiting for {}s)",
            input.waiting_for.as_secs()
        )),
        action => action,
    }
}

fn step(input: &Input<'_>) -> Action {
    let wait = |why: String| Action::Wait(why);
    if let Some(p) = input.pods.iter().find(|p| p.terminating) {
        return wait(format!("pod {} is being deleted", p.name));
    }
    if input.pods.len() < input.instances {
        return wait(format!(
            "{} of {} pods exist",
            input.pods.len(),
            input.instances
        ));
    }
    let cluster = match input.patroni {
        Ok(cluster) => cluster,
        Err(why) => return wait(format!("Patroni's view of the cluster is unknown: {why}")),
    };
    if cluster.pause {
        return wait("Patroni is paused (maintenance mode)".into());
    }
    let Some(leader) = cluster.leader() else {
        return wait("no member holds Patroni's leader lock".into());
    };
    let pod = |name: &str| input.pods.iter().find(|p| p.name == name);
    let Some(leader_pod) = pod(&leader.name) else {
        return wait(format!("the leader {} has no pod", leader.name));
    };
    if leader.state != "running" || !leader_pod.ready {
        return wait(format!(
            "the leader {} is not running and ready",
            leader.name
        ));
    }
    let replicas: Vec<&Member> = cluster
        .members
        .iter()
        .filter(|m| !m.is_leader() && pod(&m.name).is_some())
        .collect();
    let unhealthy = |m: &Member| -> Option<String> {
        let ready = pod(&m.name).is_some_and(|p| p.ready);
        if !m.is_replicating() {
            Some(format!("replica {} is {}", m.name, or_unknown(&m.state)))
        } else if !ready {
            Some(format!("replica {} is not ready", m.name))
        } else {
            match m.lag {
                Some(lag) if lag <= input.max_lag => None,
                Some(lag) => Some(format!(
                    "replica {} lags {lag} bytes (allowed {})",
                    m.name, input.max_lag
                )),
                None => Some(format!("replica {}'s lag is unknown", m.name)),
            }
        }
    };
    for p in input.pods {
        if p.name != leader.name && !replicas.iter().any(|m| m.name == p.name) {
            // A pod Patroni does not list yet: it may be the one just recreated.
            if !p.flagged {
                return wait(format!("pod {} is not a Patroni member yet", p.name));
            }
        }
    }

    // Replicas first: a flagged pod that is not the leader, once every other one is healthy.
    // A broken flagged replica goes first (it serves nothing and recreating it may mend it).
    let mut flagged: Vec<&Pod> = input
        .pods
        .iter()
        .filter(|p| p.flagged && p.name != leader.name)
        .collect();
    flagged.sort_by_key(|p| {
        let healthy = replicas
            .iter()
            .find(|m| m.name == p.name)
            .is_some_and(|m| unhealthy(m).is_none());
        (healthy, p.name.clone())
    });
    if let Some(next) = flagged.first() {
        if let Some(why) = replicas
            .iter()
            .filter(|m| m.name != next.name)
            .find_map(|m| unhealthy(m))
        {
            return wait(why);
        }
        return Action::Recreate {
            pod: next.name.clone(),
            downtime: false,
        };
    }

    // Only the leader is left flagged.
    if !leader_pod.flagged {
        return Action::Idle;
    }
    if let Some(why) = replicas.iter().find_map(|m| unhealthy(m)) {
        return wait(why);
    }
    if input.instances <= 1 && replicas.is_empty() {
        return Action::Recreate {
            pod: leader.name.clone(),
            downtime: true,
        };
    }
    match candidate(&replicas, input.synchronous_mode, input.max_lag) {
        Some(candidate) => Action::Switchover {
            leader: leader.name.clone(),
            candidate: candidate.name.clone(),
        },
        None if input.synchronous_mode => {
            wait("synchronous mode is on and no replica is a synchronous standby".into())
        }
        None => wait("no replica can take over".into()),
    }
}

/// The replica to promote: a synchronous standby when there is one (the only choice in
/// synchronous mode), else the healthy replica with the least lag; ties go to the lowest name.
pub fn candidate<'a>(
    replicas: &[&'a Member],
    synchronous_mode: bool,
    max_lag: u64,
) -> Option<&'a Member> {
    let eligible = |m: &&&'a Member| m.is_replicating() && m.lag.is_some_and(|l| l <= max_lag);
    let best = |pool: Vec<&'a Member>| {
        pool.into_iter()
            .min_by(|a, b| (a.lag, &a.name).cmp(&(b.lag, &b.name)))
    };
    let sync: Vec<&'a Member> = replicas
        .iter()
        .filter(eligible)
        .filter(|m| m.is_sync_standby())
        .copied()
        .collect();
    if !sync.is_empty() || synchronous_mode {
        return best(sync);
    }
    best(replicas.iter().filter(eligible).copied().collect())
}

fn or_unknown(state: &str) -> &str {
    if state.is_empty() {
        "in an unknown state"
    } else {
        state
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
