//! Changes reaching running pods (issue 14) on real Patroni + PostgreSQL members, through the
//! API server, kubectl and psql, each under a client writing a row every 10 ms through the
//! master Service as an application would (`e2e::writer::ClusterWriter`: every acknowledged row
//! is on the master afterwards):
//!
//! - a CPU request change on 3 members: every pod recreated exactly once, replicas first, one
//!   switchover, the old master last; the controller is killed (`kill -9`) after the first
//!   pod was recreated and a new one resumes from the pods' annotations. The longest write gap
//!   is printed (BENCHMARKS.md has the measured numbers), not asserted;
//! - a `shared_buffers` change on 2 members (a local-only parameter: it is in Spilo's local
//!   configuration, so it changes the pod template): the replica recreated, a switchover, the
//!   old master recreated last, each exactly once; `SHOW shared_buffers` is the new value on
//!   both;
//! - `enable_lazy_spilo_upgrade`: an image change on one member updates the StatefulSet and
//!   recreates nothing, nor does a new pod annotation, which is patched onto the running pod (the
//!   writer sees no outage); turning the option off then rolls the pod,
//!   with an Event saying that a single member cannot be switched over (an outage, nothing lost).

use anyhow::{Result, bail, ensure};
use e2e::events::notes_with_reason;
use e2e::eventually::eventually_with;
use e2e::patch::{kubectl_apply, patch_postgresql, set_operator_config};
use e2e::patroni::{
    TIMEOUT, cluster_objects, json, manifest_with, password, pods, setup, sql, start_controller,
};
use e2e::steady::steady;
use e2e::writer::ClusterWriter;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(500);
/// Short Patroni timings keep the rolling update's waits on Patroni short.
const PATRONI: &str = "    ttl: 20\n    loop_wait: 5\n    retry_timeout: 5\n";
const ANNOTATION: &str = "zalando-postgres-operator-rolling-update-required";

/// Every uid each pod of the cluster had while it ran, in the order they were first seen and
/// when, sampled every 200 ms.
struct UidWatch {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

/// Per pod name, its uids with the moment each was first seen.
type Seen = BTreeMap<String, Vec<(String, Instant)>>;

impl UidWatch {
    fn start(ns: &str, cluster: &str) -> UidWatch {
        let seen: Arc<Mutex<Seen>> = Default::default();
        let (ns, cluster, shared) = (ns.to_string(), cluster.to_string(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                if let Ok(list) = pods(&ns, &cluster).await {
                    let mut seen = shared.lock().expect("uids");
                    for (pod, _, uid) in list {
                        let uids = seen.entry(pod).or_default();
                        if !uids.iter().any(|(u, _)| *u == uid) {
                            uids.push((uid, Instant::now()));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        UidWatch { seen, task }
    }

    fn uids(&self) -> BTreeMap<String, BTreeSet<String>> {
        let seen = self.seen.lock().expect("uids");
        seen.iter()
            .map(|(pod, uids)| (pod.clone(), uids.iter().map(|(u, _)| u.clone()).collect()))
            .collect()
    }

    /// When the successor of `pod` (its second uid) was first seen.
    fn recreated_at(&self, pod: &str) -> Option<Instant> {
        let seen = self.seen.lock().expect("uids");
        seen.get(pod)
            .and_then(|uids| uids.get(1))
            .map(|(_, at)| *at)
    }
}

impl Drop for UidWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The cluster's pods flagged for the rolling update.
async fn flagged(ns: &str, cluster: &str) -> Result<Vec<String>> {
    Ok(cluster_objects(ns, "pods", cluster)
        .await?
        .iter()
        .filter(|p| p["metadata"]["annotations"][ANNOTATION] == "true")
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect())
}

/// A finished rolling update as Zalando does it: every pod of the cluster recreated exactly once
/// (two uids each: the old pod and its successor), one switchover, from the old master
/// `old_master`, which was recreated last, and the `Rolling update done` Event.
async fn rolled_once_master_last(ns: &str, uids: &UidWatch, old_master: &str) -> Result<()> {
    let all = uids.uids();
    for (pod, seen) in &all {
        ensure!(seen.len() == 2, "{pod} had {} uids: {seen:?}", seen.len());
    }
    let done = notes_with_reason(ns, "Switchover").await?;
    let switchovers: Vec<&String> = done.iter().filter(|m| m.ends_with(" done")).collect();
    ensure!(
        switchovers.len() == 1,
        "want one switchover, got {switchovers:?}"
    );
    ensure!(
        switchovers[0].contains(&format!("from {old_master} ")),
        "the switchover was not from the old master {old_master}: {}",
        switchovers[0]
    );
    let master_at = uids.recreated_at(old_master);
    for pod in all.keys().filter(|p| *p != old_master) {
        ensure!(
            uids.recreated_at(pod) < master_at,
            "{pod}'s successor was not seen before the old master {old_master}'s"
        );
    }
    let recreations = notes_with_reason(ns, "RollingUpdate").await?;
    let order: Vec<&String> = recreations
        .iter()
        .filter(|m| m.starts_with("Recreating pod "))
        .collect();
    ensure!(
        order.last().is_some_and(|m| m.ends_with(old_master)),
        "the old master {old_master} was not recreated last: {order:?}"
    );
    ensure!(
        recreations
            .iter()
            .any(|m| m.starts_with("Rolling update done")),
        "no 'Rolling update done' Event: {recreations:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_cpu_change_rolls_three_members_with_one_switchover_and_survives_a_controller_kill()
-> Result<()> {
    const C: &str = "acid-roll";
    let (ns, controller) = setup("rollout").await?;
    let n = ns.name.as_str();
    kubectl_apply(
        n,
        &format!(
            "{}  resources:\n    requests:\n      cpu: 100m\n      memory: 100Mi\n",
            manifest_with(C, 3, "")
        ),
    )
    .await?;
    let pw = eventually_with("the postgres Secret", TIMEOUT, POLL, || password(n, C)).await?;
    let before = steady(n, C, &pw, 2).await?;
    let writer = ClusterWriter::start(n, C, &pw).await?;
    let uids = UidWatch::start(n, C);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let started = Instant::now();
    patch_postgresql(
        n,
        C,
        &serde_json::json!({"spec": {"resources": {"requests": {"cpu": "150m"}}}}),
    )
    .await?;
    // The first replica is recreated; then the controller dies hard and another one resumes.
    eventually_with("the first pod recreated", TIMEOUT, POLL, || async {
        let recreated = uids.uids().values().filter(|u| u.len() > 1).count();
        ensure!(recreated >= 1, "no pod recreated yet");
        Ok(())
    })
    .await?;
    drop(controller);
    let killed_at = started.elapsed();
    let _controller = start_controller(n)?;

    eventually_with(
        "every pod recreated and none flagged",
        TIMEOUT * 2,
        POLL,
        || async {
            let uids = uids.uids();
            let recreated = uids.values().filter(|u| u.len() > 1).count();
            let left = flagged(n, C).await?;
            ensure!(
                recreated == 3 && left.is_empty(),
                "{recreated} of 3 pods recreated, still flagged: {left:?}"
            );
            Ok(())
        },
    )
    .await?;
    let after = steady(n, C, &pw, 2).await?;
    let total = started.elapsed();
    let report = writer.check("CPU request change, 3 members").await?;
    eprintln!(
        "ROLLOUT 3 members, CPU request change: total {total:?} (controller killed at \
         {killed_at:?}), longest write gap {:?}, {} writes acknowledged, {} failed, 0 lost, \
         master {} -> {}",
        report.longest_gap, report.acked, report.failures, before.master, after.master
    );
    ensure!(report.acked > 100, "the writer barely wrote: {report:?}");
    rolled_once_master_last(n, &uids, &before.master).await?;
    let sts = json(&["get", "statefulset", C, "-n", n]).await?;
    let cpu = &sts["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"];
    ensure!(cpu == "150m", "the StatefulSet asks for {cpu}");
    Ok(())
}

#[tokio::test]
async fn a_lazy_image_change_recreates_nothing_until_the_option_is_turned_off() -> Result<()> {
    const C: &str = "acid-lazy";
    const IMAGE: &str = "ghcr.io/zalando/spilo-17:4.0-p3-lazy-test";
    let (ns, _controller) = setup("lazy").await?;
    let n = ns.name.as_str();
    set_operator_config(n, &[("enable_lazy_spilo_upgrade", "true")]).await?;
    kubectl_apply(n, &manifest_with(C, 1, "")).await?;
    let pw = eventually_with("the postgres Secret", TIMEOUT, POLL, || password(n, C)).await?;
    steady(n, C, &pw, 0).await?;
    let [(_, _, uid)] = pods(n, C)
        .await?
        .try_into()
        .map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let writer = ClusterWriter::start(n, C, &pw).await?;

    patch_postgresql(n, C, &serde_json::json!({"spec": {"dockerImage": IMAGE}})).await?;
    eventually_with(
        "the StatefulSet on the new image",
        TIMEOUT,
        POLL,
        || async {
            let sts = json(&["get", "statefulset", C, "-n", n]).await?;
            let image = &sts["spec"]["template"]["spec"]["containers"][0]["image"];
            ensure!(image == IMAGE, "image {image}");
            Ok(())
        },
    )
    .await?;
    // Several resyncs (5 s here) later the pod is the same and not flagged.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let [(_, _, still)] = pods(n, C)
        .await?
        .try_into()
        .map_err(|p| anyhow::anyhow!("{p:?}"))?;
    ensure!(still == uid, "the pod was recreated by a lazy image change");
    ensure!(flagged(n, C).await?.is_empty(), "the pod was flagged");

    // A pod annotation reaches the running pod, which stays.
    patch_postgresql(
        n,
        C,
        &serde_json::json!({"spec": {"podAnnotations": {"e2e/annotated": "yes"}}}),
    )
    .await?;
    eventually_with("the annotation on the pod", TIMEOUT, POLL, || async {
        let pod = json(&["get", "pod", &format!("{C}-0"), "-n", n]).await?;
        ensure!(
            pod["metadata"]["uid"] == uid.as_str(),
            "the pod was recreated"
        );
        ensure!(
            pod["metadata"]["annotations"]["e2e/annotated"] == "yes",
            "annotations {}",
            pod["metadata"]["annotations"]
        );
        Ok(())
    })
    .await?;
    ensure!(flagged(n, C).await?.is_empty(), "the pod was flagged");
    // Nothing restarted, so the application saw no outage.
    writer.ensure_uninterrupted_so_far("lazy image change and a pod annotation, 1 member")?;

    set_operator_config(n, &[("enable_lazy_spilo_upgrade", "false")]).await?;
    eventually_with(
        "the pod recreated on the new image",
        TIMEOUT,
        POLL,
        || async {
            let pod = json(&["get", "pod", &format!("{C}-0"), "-n", n]).await?;
            let image = &pod["spec"]["containers"][0]["image"];
            if pod["metadata"]["uid"] == uid.as_str() {
                bail!("still the old pod");
            }
            ensure!(image == IMAGE, "the new pod runs {image}");
            Ok(())
        },
    )
    .await?;
    steady(n, C, &pw, 0).await?;
    // The single member's recreation is an outage (no switchover is possible), not a loss: every
    // acknowledged row, before and after, is on the new pod. Its gap is the pod recreation time
    // the no-restart bound is compared with.
    writer
        .check("lazy image change, then the forced roll of 1 member")
        .await?;
    let notes = notes_with_reason(n, "RollingUpdate").await?;
    ensure!(
        notes
            .iter()
            .any(|m| m.contains("no switchover is possible")),
        "no Event about the single member: {notes:?}"
    );
    Ok(())
}

/// A local-only parameter changes the pod template: a rolling update with the master last. It
/// caught a race (the step right after flagging read the pods from a watch cache that showed
/// only the leader flagged, and switched over to a replica about to be recreated); the
/// controller now counts the pods it flagged itself (`mock_rollout.rs` has the regression test).
#[tokio::test]
async fn a_shared_buffers_change_recreates_each_member_once_the_master_last() -> Result<()> {
    const C: &str = "acid-shbuf";
    const WANTED: &str = "32MB";
    let (ns, _controller) = setup("shbuf").await?;
    let n = ns.name.as_str();
    kubectl_apply(n, &manifest_with(C, 2, PATRONI)).await?;
    let pw = eventually_with("the postgres Secret", TIMEOUT, POLL, || password(n, C)).await?;
    let before = steady(n, C, &pw, 1).await?;
    let old = sql(&before.master_ip, &pw, "show shared_buffers").await?;
    ensure!(old != WANTED, "shared_buffers is {old} already");
    let writer = ClusterWriter::start(n, C, &pw).await?;
    let uids = UidWatch::start(n, C);
    eventually_with("both pods watched", TIMEOUT, POLL, || async {
        let watched = uids.uids().len();
        ensure!(watched == 2, "{watched} pods watched");
        Ok(())
    })
    .await?;

    let started = Instant::now();
    patch_postgresql(
        n,
        C,
        &serde_json::json!({"spec": {"postgresql": {"parameters": {"shared_buffers": WANTED}}}}),
    )
    .await?;
    eventually_with(
        "both pods recreated and none flagged",
        TIMEOUT * 2,
        POLL,
        || async {
            let recreated = uids.uids().values().filter(|u| u.len() > 1).count();
            let left = flagged(n, C).await?;
            ensure!(
                recreated == 2 && left.is_empty(),
                "{recreated} of 2 pods recreated, still flagged: {left:?}"
            );
            Ok(())
        },
    )
    .await?;
    let after = steady(n, C, &pw, 1).await?;
    let total = started.elapsed();
    let report = writer.check("shared_buffers change, 2 members").await?;
    eprintln!(
        "ROLLOUT 2 members, shared_buffers {old} -> {WANTED}: {total:?}, master {} -> {}",
        before.master, after.master
    );
    rolled_once_master_last(n, &uids, &before.master).await?;
    ensure!(
        after.master == before.replicas[0].0,
        "the replica {} does not lead after the switchover: {after:?}",
        before.replicas[0].0
    );
    ensure!(
        report.servers == [before.master_ip.clone(), after.master_ip.clone()],
        "want rows acknowledged by the old master, then by the new one: {report:?}, before \
         the change {before:?}, after {after:?}"
    );
    for (pod, ip) in [
        (&after.master, &after.master_ip),
        (&after.replicas[0].0, &after.replicas[0].1),
    ] {
        let shown = sql(ip, &pw, "show shared_buffers").await?;
        ensure!(shown == WANTED, "{pod}: shared_buffers {shown}");
    }
    Ok(())
}
