//! Changes reaching running pods (issue 14) on real Patroni + PostgreSQL members, through the
//! API server, kubectl and psql, with a client writing a row every 10 ms through the master
//! Service as an application would:
//!
//! - a CPU request change on 3 members: every pod recreated exactly once, replicas first, one
//!   switchover, the old master last; the controller is killed (`kill -9`) after the first
//!   pod was recreated and a new one resumes from the pods' annotations; every acknowledged row
//!   is on the new master afterwards. The longest write gap is printed (BENCHMARKS.md has the
//!   measured numbers), not asserted;
//! - `enable_lazy_spilo_upgrade`: an image change on one member updates the StatefulSet and
//!   recreates nothing; turning the option off then rolls the pod, with an Event saying that a
//!   single member cannot be switched over.

use anyhow::{Result, bail, ensure};
use e2e::events::notes_with_reason;
use e2e::eventually::eventually_with;
use e2e::patch::{kubectl_apply, patch_postgresql, set_operator_config};
use e2e::patroni::{
    TIMEOUT, cluster_objects, json, manifest_with, password, pods, setup, start_controller,
};
use e2e::steady::{master_service_ip, steady};
use e2e::writer::{Writer, create_table, lost_writes};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(500);
const ANNOTATION: &str = "zalando-postgres-operator-rolling-update-required";

/// Every uid each pod of the cluster had while it ran, sampled every 200 ms.
struct UidWatch {
    seen: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl UidWatch {
    fn start(ns: &str, cluster: &str) -> UidWatch {
        let seen: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Default::default();
        let (ns, cluster, shared) = (ns.to_string(), cluster.to_string(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                if let Ok(list) = pods(&ns, &cluster).await {
                    let mut seen = shared.lock().expect("uids");
                    for (pod, _, uid) in list {
                        seen.entry(pod).or_default().insert(uid);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        UidWatch { seen, task }
    }

    fn uids(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.seen.lock().expect("uids").clone()
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
    create_table(&before.master_ip, &pw).await?;
    let service = master_service_ip(n, C).await?;
    let writer = Writer::start(service.clone(), pw.clone(), Duration::from_millis(10));
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
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = writer.stop().await;
    let lost = lost_writes(&after.master_ip, &pw, &log).await?;
    let gap = log.longest_gap();
    eprintln!(
        "ROLLOUT 3 members, CPU request change: total {total:?} (controller killed at \
         {killed_at:?}), longest write gap {gap:?}, {} writes acknowledged, {} failed, {} lost, \
         master {} -> {}",
        log.acked.len(),
        log.failures,
        lost.len(),
        before.master,
        after.master
    );
    ensure!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    ensure!(log.acked.len() > 100, "the writer barely wrote: {log:?}");

    // Each pod exactly once (two uids: the old and its successor), the old master last.
    let uids = uids.uids();
    for (pod, seen) in &uids {
        ensure!(seen.len() == 2, "{pod} had {} uids: {seen:?}", seen.len());
    }
    let done = notes_with_reason(n, "Switchover").await?;
    let switchovers: Vec<&String> = done.iter().filter(|m| m.ends_with(" done")).collect();
    ensure!(
        switchovers.len() == 1,
        "want one switchover, got {switchovers:?}"
    );
    ensure!(
        switchovers[0].contains(&format!("from {} ", before.master)),
        "the switchover was not from the old master {}: {}",
        before.master,
        switchovers[0]
    );
    let recreations = notes_with_reason(n, "RollingUpdate").await?;
    let order: Vec<&String> = recreations
        .iter()
        .filter(|m| m.starts_with("Recreating pod "))
        .collect();
    ensure!(
        order.last().is_some_and(|m| m.ends_with(&before.master)),
        "the old master {} was not recreated last: {order:?}",
        before.master
    );
    ensure!(
        recreations
            .iter()
            .any(|m| m.starts_with("Rolling update done")),
        "no 'Rolling update done' Event: {recreations:?}"
    );
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
    let notes = notes_with_reason(n, "RollingUpdate").await?;
    ensure!(
        notes
            .iter()
            .any(|m| m.contains("no switchover is possible")),
        "no Event about the single member: {notes:?}"
    );
    Ok(())
}
