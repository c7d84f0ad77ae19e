//! Node drains (Zalando's `pkg/controller/node.go` and `MigrateMasterPod`): when a node turns
//! not ready — cordoned for a drain, without the `node_readiness_label` labels — or is not ready
//! when the controller starts, the masters on it are switched over to a replica on a ready node
//! before the drain evicts them, so the drain costs a switchover instead of a failover.
//!
//! A cache of the nodes (name, labels and `spec.unschedulable` only) feeds [`run`], which starts
//! one task per node turning not ready. The task tries every minute, up to
//! `master_pod_move_timeout`, each master pod on the node as [`decide::decide`] says, through
//! Patroni's REST API; outside the cluster's maintenance windows the switchover is scheduled for
//! the next window start instead. Nothing is deleted or evicted here: the drain does that,
//! honouring the PodDisruptionBudgets (the primary one keeps the master until it has moved).

pub mod decide;

use crate::context::Context;
use crate::events::{Event, Kind};
use crate::members::{self, MASTER};
use crate::stores::{Slim, owner_of};
use chrono::Utc;
use common::config::Config;
use common::crd::Postgresql;
use common::maintenance;
use decide::{Decision, NodeState, PodState};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, NodeSpec, Pod};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often the masters of a drained node are tried again (Zalando: every minute).
pub const RETRY: Duration = Duration::from_secs(60);
/// The reason of the Events about a move.
pub const REASON: &str = "NodeDrain";
/// The reason of the Warning Events when a move failed or timed out.
pub const FAILED: &str = "NodeDrainFailed";
/// The reason of the Warning Event when a single member must go down with its node.
pub const DOWNTIME: &str = "NodeDrainDowntime";

/// A node keeps its name, labels and `spec.unschedulable`: all that readiness depends on.
impl Slim for Node {
    fn slim(&mut self) {
        let meta = &mut self.metadata;
        meta.managed_fields = None;
        meta.annotations = None;
        meta.owner_references = None;
        self.spec = self.spec.take().map(|spec| NodeSpec {
            unschedulable: spec.unschedulable,
            ..Default::default()
        });
        self.status = None;
    }
}

/// What readiness reads of a node.
pub fn state(node: &Node) -> NodeState {
    NodeState {
        unschedulable: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        labels: node.metadata.labels.clone().unwrap_or_default(),
    }
}

/// Watches the nodes and starts moving the masters off each one that turns not ready (or is
/// not ready when first seen). `clusters` is the controller's cache of `postgresql` objects.
pub async fn run(client: Client, ctx: Arc<Context>, clusters: Store<Postgresql>) {
    let (store, writer) = reflector::store::<Node>();
    let events = watcher(
        Api::<Node>::all(client),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|node| node.slim());
    let mut events = std::pin::pin!(reflector::reflector(writer, events));
    let mut seen: HashMap<String, NodeState> = HashMap::new();
    let mut moving: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(event) = events.next().await {
        let node = match event {
            Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) => node,
            Ok(watcher::Event::Delete(node)) => {
                seen.remove(&node.name_any());
                continue;
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
            Err(error) => {
                tracing::warn!(%error, "watching the nodes failed; retrying");
                continue;
            }
        };
        let name = node.name_any();
        let now = state(&node);
        let readiness = ctx
            .config
            .load()
            .config
            .kubernetes
            .node_readiness_label
            .clone();
        let before = seen.insert(name.clone(), now.clone());
        if !decide::triggers(before.as_ref(), &now, &readiness) {
            continue;
        }
        while tasks.try_join_next().is_some() {}
        moving.retain(|_, task| !task.is_finished());
        if moving.contains_key(&name) {
            continue;
        }
        tracing::info!(node = %name, "node is not ready: moving the masters off it");
        let task = tasks.spawn(move_masters(
            ctx.clone(),
            clusters.clone(),
            store.clone(),
            name.clone(),
        ));
        moving.insert(name, task);
    }
}

/// What became of one master in one attempt.
enum Outcome {
    /// Nothing more to do for it: moved, scheduled, no longer needed, or impossible (a single
    /// member).
    Finished,
    /// Try again in a minute; why not now.
    Pending(String),
}

/// Tries every minute, up to `master_pod_move_timeout`, to move every master off `node`.
async fn move_masters(
    ctx: Arc<Context>,
    clusters: Store<Postgresql>,
    nodes: Store<Node>,
    node: String,
) {
    if ctx.observed.wait_until_ready().await.is_err() || clusters.wait_until_ready().await.is_err()
    {
        return;
    }
    let timeout = ctx.config.load().config.master_pod_move_timeout();
    let started = Instant::now();
    // Pods (by uid) already dealt with: a scheduled switchover leaves the master in place, and
    // must not be scheduled again each minute.
    let mut handled: HashSet<String> = HashSet::new();
    let mut waiting: BTreeMap<String, (Arc<Postgresql>, String, String)> = BTreeMap::new();
    loop {
        waiting.clear();
        if ctx.leading.load(Ordering::Acquire) {
            let loaded = ctx.config.load_full();
            let config = &loaded.config;
            for (pod, pg) in masters_on(&ctx, config, &clusters, &node) {
                let key = pod.metadata.uid.clone().unwrap_or_else(|| pod.name_any());
                if handled.contains(&key) {
                    continue;
                }
                let name = pod.name_any();
                match attempt(&ctx, config, &nodes, &pg, &name, &node).await {
                    Outcome::Finished => {
                        handled.insert(key);
                    }
                    Outcome::Pending(why) => {
                        tracing::info!(cluster = %pg.name_any(), pod = %name, %node, "master not moved yet: {why}");
                        waiting.insert(key, (pg, name, why));
                    }
                }
            }
            if waiting.is_empty() {
                tracing::info!(%node, "no master left to move off the node");
                return;
            }
        }
        if started.elapsed() + RETRY > timeout {
            break;
        }
        tokio::time::sleep(RETRY).await;
    }
    for (pg, pod, why) in waiting.values() {
        publish(
            &ctx,
            pg,
            Kind::Warning,
            FAILED,
            format!(
                "Could not move master {pod} off node {node} within master_pod_move_timeout ({}s): {why}",
                timeout.as_secs()
            ),
        );
    }
}

/// The pods labelled master on `node`, with their clusters (only those this controller owns and
/// that are not being deleted).
fn masters_on(
    ctx: &Context,
    config: &Config,
    clusters: &Store<Postgresql>,
    node: &str,
) -> Vec<(Arc<Pod>, Arc<Postgresql>)> {
    let k8s = &config.kubernetes;
    ctx.observed
        .pods
        .state()
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .filter(|p| p.labels().get(&k8s.pod_role_label).map(String::as_str) == Some(MASTER))
        .filter_map(|p| {
            let pg = clusters.get(&owner_of(p.as_ref(), &k8s.cluster_name_label)?)?;
            let owned = common::rules::ownership::is_owned_by(
                pg.metadata.annotations.as_ref(),
                &ctx.controller_id,
            );
            (owned && pg.metadata.deletion_timestamp.is_none()).then_some((p, pg))
        })
        .collect()
}

/// One try at moving `master` (on `node`) of `pg`.
async fn attempt(
    ctx: &Context,
    config: &Config,
    nodes: &Store<Node>,
    pg: &Postgresql,
    master: &str,
    node: &str,
) -> Outcome {
    let namespace = pg.namespace().unwrap_or_default();
    let cluster = pg.cluster_name();
    let instances = ctx
        .stores
        .statefulsets
        .get(&ObjectRef::new(cluster).within(&namespace))
        .and_then(|s| s.spec.as_ref()?.replicas)
        .unwrap_or(pg.spec.number_of_instances)
        .max(0) as usize;
    let pods = crate::rollout::pods(ctx, &namespace, cluster, instances);
    let role_label = &config.kubernetes.pod_role_label;
    let view: Vec<PodState> = pods
        .iter()
        .map(|p| PodState {
            name: p.name_any(),
            node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            master: p.labels().get(role_label).map(String::as_str) == Some(MASTER),
            ready: members::is_ready(p),
        })
        .collect();
    let node_states: BTreeMap<String, NodeState> = view
        .iter()
        .filter_map(|p| p.node.clone())
        .filter_map(|n| Some((n.clone(), state(nodes.get(&ObjectRef::new(&n))?.as_ref()))))
        .collect();
    let (cluster_view, address) = crate::rollout::patroni_view(ctx, config, &pods).await;
    let (windows, invalid) = maintenance::effective(
        pg.spec.maintenance_windows.as_deref(),
        &config.maintenance_windows,
    );
    for error in invalid {
        tracing::warn!(cluster = %pg.name_any(), "{error}; ignored");
    }
    let readiness = &config.kubernetes.node_readiness_label;
    let decision = decide::decide(&decide::Input {
        master,
        instances,
        pods: &view,
        nodes: &node_states,
        readiness,
        patroni: cluster_view.as_ref().map_err(String::as_str),
        max_lag: crate::rollout::max_lag(pg),
        synchronous_mode: crate::rollout::synchronous_mode(pg),
        gate: maintenance::gate(&windows, config.enable_maintenance_windows, Utc::now()),
    });
    tracing::debug!(cluster = %pg.name_any(), %master, %node, ?decision, "node drain");
    match decision {
        Decision::Done(why) => {
            tracing::info!(cluster = %pg.name_any(), %master, %node, "nothing to move: {why}");
            Outcome::Finished
        }
        Decision::Wait(why) => Outcome::Pending(why),
        Decision::Downtime => {
            publish(
                ctx,
                pg,
                Kind::Warning,
                DOWNTIME,
                format!(
                    "{master} is the only member and its node {node} is being drained: no switchover is possible; the database is down from the pod's eviction until it runs on another node"
                ),
            );
            Outcome::Finished
        }
        Decision::Switchover {
            leader,
            candidate,
            candidate_node,
            at,
            passed_over,
        } => {
            let address = address.unwrap_or_default();
            let passed = passed_over
                .map(|p| format!(" ({p}, so it is passed over)"))
                .unwrap_or_default();
            let (result, done) = match at {
                None => {
                    publish(
                        ctx,
                        pg,
                        Kind::Normal,
                        REASON,
                        format!(
                            "Switching over from {leader} to {candidate} (on node {candidate_node}){passed}: node {node} is being drained"
                        ),
                    );
                    (
                        ctx.patroni.switchover(&address, &leader, &candidate).await,
                        format!(
                            "Switchover from {leader} to {candidate} done: the master left node {node}"
                        ),
                    )
                }
                Some(at) => {
                    let at = maintenance::patroni_time(at);
                    (
                        ctx.patroni
                            .scheduled_switchover(&address, &leader, &candidate, &at)
                            .await,
                        format!(
                            "Switchover from {leader} to {candidate} (on node {candidate_node}){passed} scheduled for {at}, the next maintenance window: node {node} is being drained"
                        ),
                    )
                }
            };
            match result {
                Ok(()) => {
                    publish(ctx, pg, Kind::Normal, REASON, done);
                    Outcome::Finished
                }
                Err(e) => {
                    let why = format!(
                        "switchover from {leader} to {candidate} to leave node {node} failed: {e}"
                    );
                    publish(ctx, pg, Kind::Warning, FAILED, format!("{why}; retrying"));
                    Outcome::Pending(why)
                }
            }
        }
    }
}

fn publish(ctx: &Context, pg: &Postgresql, kind: Kind, reason: &str, note: String) {
    tracing::info!(cluster = %pg.name_any(), reason, "{note}");
    ctx.events.publish(
        pg.object_ref(&()),
        Event {
            kind,
            reason: reason.into(),
            note,
            action: REASON.into(),
            related: None,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slim_nodes_keep_what_readiness_reads() {
        let mut node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kwok-node-0", "labels": {"type": "kwok"},
                "annotations": {"a": "b"}, "managedFields": [{"manager": "kubelet"}]},
            "spec": {"unschedulable": true, "podCIDR": "10.0.0.0/24",
                "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        node.slim();
        assert_eq!(node.metadata.annotations, None);
        assert_eq!(node.metadata.managed_fields, None);
        assert_eq!(node.status, None);
        assert_eq!(
            node.spec,
            Some(NodeSpec {
                unschedulable: Some(true),
                ..Default::default()
            })
        );
        let s = state(&node);
        assert!(s.unschedulable && s.labels["type"] == "kwok");
        let bare: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "n"}})).unwrap();
        assert_eq!(state(&bare), NodeState::default());
    }
}
