//! Node drains (Zalando's `moveMasterPodsOutOfNode`) on real Patroni + PostgreSQL members:
//! cordoning the node of a two-member cluster's master makes the controller switch over to the
//! replica on another node through Patroni's REST API (role labels and the leader ConfigMap
//! follow, an Event says so); no pod is deleted — the old master stays on the cordoned node as
//! a streaming replica until a drain evicts it. Then, outside the cluster's maintenance window,
//! cordoning the new master's node schedules the switchover in Patroni for the window's start
//! instead. Each node is uncordoned afterwards, also when the test fails. A client writes a row
//! every 10 ms through the master Service during the first move (`e2e::writer::ClusterWriter`):
//! its rows go to the old master, then to the new one, and none acknowledged is lost.
//!
//! The only test of this file: a cordoned node is shared by every namespace, so no other test
//! may run beside it (cargo runs the test files one after the other).

use anyhow::{Context, Result, ensure};
use e2e::command::kubectl;
use e2e::events::notes_with_reason;
use e2e::eventually::eventually_with;
use e2e::patch::{kubectl_apply, patch_postgresql, set_operator_config};
use e2e::paths;
use e2e::patroni::{
    TIMEOUT, json, leader_annotation, manifest_with, password, pods, pods_with_role, setup,
    start_controller,
};
use e2e::steady::steady;
use e2e::writer::ClusterWriter;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(500);
const PATRONI: &str = "    ttl: 20\n    loop_wait: 5\n    retry_timeout: 5\n";

/// A cordoned node, uncordoned when dropped (synchronously: the runtime may be shutting down).
struct Cordoned(String);

impl Cordoned {
    async fn new(node: &str) -> Result<Cordoned> {
        kubectl(["cordon", node]).await?.ok()?;
        Ok(Cordoned(node.to_string()))
    }
}

impl Drop for Cordoned {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&paths::tools().kubectl)
            .arg("--kubeconfig")
            .arg(paths::kubeconfig())
            .args(["uncordon", &self.0])
            .status();
    }
}

async fn node_of(ns: &str, pod: &str) -> Result<String> {
    let p = json(&["get", "pod", pod, "-n", ns]).await?;
    p["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .with_context(|| format!("{pod} is not scheduled"))
}

#[tokio::test]
async fn cordoning_the_masters_node_switches_over_to_the_replica_and_deletes_nothing() -> Result<()>
{
    const C: &str = "acid-drain";
    let (ns, controller) = setup("drain").await?;
    let n = ns.name.as_str();
    // Required anti-affinity puts the two members on different nodes; the controller is
    // restarted so that the StatefulSet is built with it from the start.
    set_operator_config(n, &[("enable_pod_antiaffinity", "true")]).await?;
    drop(controller);
    let _controller = start_controller(n)?;
    kubectl_apply(n, &manifest_with(C, 2, PATRONI)).await?;
    let pw = eventually_with("the postgres Secret", TIMEOUT, POLL, || password(n, C)).await?;
    let before = steady(n, C, &pw, 1).await?;
    let (old_master, replica) = (before.master.clone(), before.replicas[0].0.clone());
    let (master_node, replica_node) = (node_of(n, &old_master).await?, node_of(n, &replica).await?);
    ensure!(
        master_node != replica_node,
        "both members run on {master_node} despite the anti-affinity"
    );
    let uids = pods(n, C).await?;
    let writer = ClusterWriter::start(n, C, &pw).await?;

    let cordoned_at = Instant::now();
    let cordon = Cordoned::new(&master_node).await?;
    eventually_with(
        &format!("{replica} leads after {master_node} was cordoned"),
        TIMEOUT,
        POLL,
        || async {
            let leader = leader_annotation(n, C).await?;
            let masters = pods_with_role(n, C, "master").await?;
            ensure!(
                leader == replica && masters.len() == 1 && masters[0].0 == replica,
                "leader ConfigMap names {leader:?}, pods labelled master: {masters:?}"
            );
            Ok(())
        },
    )
    .await?;
    eprintln!(
        "NODE DRAIN cordon of {master_node} -> {replica} (on {replica_node}) leads: {:?}",
        cordoned_at.elapsed()
    );
    // The old master rejoins as a streaming replica, still on the cordoned node: the controller
    // deleted and evicted nothing (the drain would).
    let after = steady(n, C, &pw, 1).await?;
    ensure!(
        after.master == replica && after.replicas[0].0 == old_master,
        "after the move: {after:?}"
    );
    ensure!(
        pods(n, C).await? == uids,
        "a pod was recreated: before {uids:?}"
    );
    ensure!(
        node_of(n, &old_master).await? == master_node,
        "{old_master} left {master_node}"
    );
    let notes = notes_with_reason(n, "NodeDrain").await?;
    ensure!(
        notes.iter().any(|m| m
            == &format!(
                "Switchover from {old_master} to {replica} done: the master left node {master_node}"
            )),
        "no Event about the switchover: {notes:?}"
    );
    let failures = notes_with_reason(n, "NodeDrainFailed").await?;
    ensure!(failures.is_empty(), "failure Events: {failures:?}");
    // The switchover moved the application's writes to the new master without losing any.
    let report = writer
        .check(&format!("cordon of the master's node {master_node}"))
        .await?;
    ensure!(
        report.servers.len() == 2,
        "want rows acknowledged by the old and the new master: {report:?}"
    );
    // The move is done once: a while later the new master still leads, no second switchover.
    tokio::time::sleep(Duration::from_secs(10)).await;
    ensure!(
        leader_annotation(n, C).await? == replica,
        "the leader moved again"
    );
    let switchovers = notes_with_reason(n, "NodeDrain")
        .await?
        .into_iter()
        .filter(|m| m.starts_with("Switching over"))
        .count();
    ensure!(switchovers == 1, "{switchovers} switchovers started");
    drop(cordon);
    let node = json(&["get", "node", &master_node]).await?;
    ensure!(
        node["spec"]["unschedulable"] != true,
        "{master_node} is still cordoned"
    );

    // Outside the maintenance window the move is a switchover Patroni schedules for the next
    // window start (an hour or more away): the leader stays, Patroni's failover key holds it.
    let hour = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        / 3600
        + 2)
        % 24;
    let window = format!("{hour:02}:00-{hour:02}:30");
    patch_postgresql(
        n,
        C,
        &serde_json::json!({"spec": {"maintenanceWindows": [window]}}),
    )
    .await?;
    let cordon = Cordoned::new(&replica_node).await?;
    let scheduled = eventually_with(
        "an Event about the scheduled switchover",
        TIMEOUT,
        POLL,
        || async {
            let notes = notes_with_reason(n, "NodeDrain").await?;
            notes
                .into_iter()
                .find(|m| m.contains(" scheduled for "))
                .with_context(|| "no scheduled switchover yet".to_string())
        },
    )
    .await?;
    ensure!(
        scheduled.starts_with(&format!(
            "Switchover from {replica} to {old_master} (on node {master_node}) scheduled for "
        )) && scheduled.contains(&format!("T{hour:02}:00+00, the next maintenance window")),
        "unexpected Event: {scheduled}"
    );
    let failover = json(&["get", "configmap", &format!("{C}-failover"), "-n", n]).await?;
    let key = &failover["metadata"]["annotations"];
    ensure!(
        key["member"] == old_master.as_str()
            && key["scheduled_at"]
                .as_str()
                .is_some_and(|t| t.contains(&format!("T{hour:02}:00"))),
        "Patroni's failover key: {key}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    ensure!(
        leader_annotation(n, C).await? == replica,
        "the leader moved before the window"
    );
    drop(cordon);
    Ok(())
}
