//! What to do when a node is drained, as pure functions of what the caches and Patroni show
//! (Zalando's `nodeIsReady`, `podIsEndOfLife` and `MigrateMasterPod`).
//!
//! Two notions of a bad node, both Zalando's:
//! - a node is *ready* if it is schedulable, or carries every `node_readiness_label` (when
//!   some are configured), or is labelled `master=true`; a node turning not ready (cordoned and
//!   without the readiness labels) starts the move of the masters on it ([`triggers`]);
//! - a node is *end of life* if it is unschedulable or lacks a readiness label; a master on such
//!   a node is moved, and a replica on one is no candidate ([`decide`]).
//!
//! Unlike Zalando, nothing is recreated here: a candidate on an end-of-life node is passed over
//! for another healthy replica, or the move waits until the drain has evicted it and it runs
//! elsewhere. Pods are evicted by the drain alone, which honours the PodDisruptionBudgets.

use crate::patroni::{Cluster, Member};
use crate::rollout::machine;
use chrono::{DateTime, Utc};
use common::maintenance::Gate;
use std::collections::BTreeMap;

/// The label that keeps a cordoned node ready (Zalando's exception for control-plane nodes).
pub const MASTER_NODE_LABEL: (&str, &str) = ("master", "true");

/// What the node cache keeps of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    /// `spec.unschedulable`: cordoned.
    pub unschedulable: bool,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

fn has_all(labels: &BTreeMap<String, String>, wanted: &BTreeMap<String, String>) -> bool {
    wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Zalando's `nodeIsReady`: schedulable, or every readiness label (when configured), or
/// `master=true`.
pub fn is_ready(node: &NodeState, readiness: &BTreeMap<String, String>) -> bool {
    let (key, value) = MASTER_NODE_LABEL;
    !node.unschedulable
        || (!readiness.is_empty() && has_all(&node.labels, readiness))
        || node.labels.get(key).is_some_and(|v| v == value)
}

/// Zalando's `podIsEndOfLife` for the pod's node: unschedulable, or a readiness label missing.
pub fn is_end_of_life(node: &NodeState, readiness: &BTreeMap<String, String>) -> bool {
    node.unschedulable || !has_all(&node.labels, readiness)
}

/// Whether the change of a node from `before` (`None`: not seen before, as when it is added or
/// listed at the controller's start) to `after` starts moving the masters off it: it is not
/// ready and was ready (or unknown).
pub fn triggers(
    before: Option<&NodeState>,
    after: &NodeState,
    readiness: &BTreeMap<String, String>,
) -> bool {
    !is_ready(after, readiness) && before.is_none_or(|b| is_ready(b, readiness))
}

/// One pod of the cluster, as the pod cache shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodState {
    /// `<cluster>-<ordinal>`.
    pub name: String,
    /// `spec.nodeName` (`None` while unscheduled).
    pub node: Option<String>,
    /// It carries the master role label.
    pub master: bool,
    /// Its Ready condition is true.
    pub ready: bool,
}

/// Everything the decision for one master depends on.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// The master pod to move.
    pub master: &'a str,
    /// The StatefulSet's replicas.
    pub instances: usize,
    /// The cluster's pods.
    pub pods: &'a [PodState],
    /// The nodes of those pods, by name (a node not listed is treated as gone).
    pub nodes: &'a BTreeMap<String, NodeState>,
    /// `node_readiness_label`.
    pub readiness: &'a BTreeMap<String, String>,
    /// Patroni's `/cluster`, or why it could not be read.
    pub patroni: Result<&'a Cluster, &'a str>,
    /// The largest lag (bytes) a replica may have to be promoted.
    pub max_lag: u64,
    /// Only a synchronous standby may be promoted.
    pub synchronous_mode: bool,
    /// The maintenance windows at this moment.
    pub gate: Gate,
}

/// What to do about one master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing (any more), and why: the node is live again, the pod is no longer the master…
    Done(String),
    /// The master is the only member: no switchover is possible, the database is down from the
    /// drain's eviction until the pod runs on another node.
    Downtime,
    /// Not now, and why; the move is tried again later.
    Wait(String),
    /// Switch over to `candidate`.
    Switchover {
        /// The current leader (the pod to move).
        leader: String,
        /// The replica to promote.
        candidate: String,
        /// The candidate's node.
        candidate_node: String,
        /// `None`: now; else when (the next maintenance window's start).
        at: Option<DateTime<Utc>>,
        /// Set when the best replica was passed over because its node is being drained too.
        passed_over: Option<String>,
    },
}

/// What to do about the master `input.master`, which runs (or ran) on a drained node.
pub fn decide(input: &Input<'_>) -> Decision {
    let pod = |name: &str| input.pods.iter().find(|p| p.name == name);
    let Some(master) = pod(input.master) else {
        return Decision::Done(format!("pod {} is gone", input.master));
    };
    if !master.master {
        return Decision::Done(format!("{} is no longer the master", master.name));
    }
    let Some(node_name) = master.node.as_deref() else {
        return Decision::Done(format!("{} is not on any node", master.name));
    };
    match input.nodes.get(node_name) {
        None => return Decision::Done(format!("node {node_name} is gone")),
        Some(node) if !is_end_of_life(node, input.readiness) => {
            return Decision::Done(format!("node {node_name} is schedulable and ready again"));
        }
        Some(_) => {}
    }
    if input.instances <= 1 {
        return Decision::Downtime;
    }
    let cluster = match input.patroni {
        Ok(cluster) => cluster,
        Err(why) => {
            return Decision::Wait(format!("Patroni's view of the cluster is unknown: {why}"));
        }
    };
    if cluster.pause {
        return Decision::Wait("Patroni is paused (maintenance mode)".into());
    }
    let Some(leader) = cluster.leader() else {
        return Decision::Wait("no member holds Patroni's leader lock".into());
    };
    if leader.name != master.name {
        return Decision::Wait(format!(
            "Patroni's leader is {}, not {} (the role labels have not followed yet)",
            leader.name, master.name
        ));
    }
    // A node of a replica that can run a master: known, not end of life.
    let live_node = |p: &PodState| -> Result<String, String> {
        let Some(n) = p.node.as_deref() else {
            return Err(format!("{} is not scheduled", p.name));
        };
        match input.nodes.get(n) {
            Some(node) if !is_end_of_life(node, input.readiness) => Ok(n.to_string()),
            Some(_) => Err(format!(
                "{} is on node {n}, which is being drained too",
                p.name
            )),
            None => Err(format!("{} is on node {n}, which is gone", p.name)),
        }
    };
    let replicas: Vec<&Member> = cluster
        .members
        .iter()
        .filter(|m| !m.is_leader() && pod(&m.name).is_some_and(|p| p.ready))
        .collect();
    let on_live: Vec<&Member> = replicas
        .iter()
        .copied()
        .filter(|m| pod(&m.name).is_some_and(|p| live_node(p).is_ok()))
        .collect();
    let best = machine::candidate(&replicas, input.synchronous_mode, input.max_lag);
    let chosen = machine::candidate(&on_live, input.synchronous_mode, input.max_lag);
    let node_of = |m: &Member| pod(&m.name).map(live_node);
    match (chosen, best) {
        (Some(c), best) => {
            let passed_over = best
                .filter(|b| b.name != c.name)
                .and_then(|b| node_of(b)?.err());
            let candidate_node = node_of(c).and_then(Result::ok).unwrap_or_default();
            Decision::Switchover {
                leader: master.name.clone(),
                candidate: c.name.clone(),
                candidate_node,
                at: match input.gate {
                    Gate::Open => None,
                    Gate::Closed { next } => Some(next),
                },
                passed_over,
            }
        }
        (None, Some(b)) => Decision::Wait(format!(
            "the only replica that can take over, {}; waiting until it runs elsewhere",
            node_of(b)
                .and_then(Result::err)
                .unwrap_or_else(|| b.name.clone())
        )),
        (None, None) if input.synchronous_mode => {
            Decision::Wait("synchronous mode is on and no synchronous standby can take over".into())
        }
        (None, None) => Decision::Wait(format!(
            "no replica can take over{}",
            why_not(input, cluster)
        )),
    }
}

/// Why no replica qualifies, for the message: `: acid-1 is starting, acid-2 is not ready`.
fn why_not(input: &Input<'_>, cluster: &Cluster) -> String {
    let reasons: Vec<String> = input
        .pods
        .iter()
        .filter(|p| p.name != input.master)
        .map(
            |p| match cluster.members.iter().find(|m| m.name == p.name) {
                None => format!("{} is not a Patroni member", p.name),
                Some(_) if !p.ready => format!("{} is not ready", p.name),
                Some(m) if !m.is_replicating() => format!(
                    "{} is {}",
                    p.name,
                    if m.state.is_empty() {
                        "in an unknown state"
                    } else {
                        &m.state
                    }
                ),
                Some(m) => match m.lag {
                    Some(lag) => format!("{} lags {lag} bytes (allowed {})", p.name, input.max_lag),
                    None => format!("{}'s lag is unknown", p.name),
                },
            },
        )
        .collect();
    if reasons.is_empty() {
        String::new()
    } else {
        format!(": {}", reasons.join(", "))
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
