//! A cluster at rest, as the high-availability and rollout tests wait for it: one pod labelled
//! master that holds Patroni's leader lock and writes, every replica streaming from it.

use crate::eventually::eventually_with;
use crate::patroni::{TIMEOUT, json, leader_annotation, pods_with_role, replication, sql};
use anyhow::{Result, bail, ensure};
use std::collections::BTreeSet;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(500);

/// The cluster at rest: one pod labelled master that holds the leader ConfigMap and writes, and
/// `replicas` pods labelled replica, each streaming from it.
#[derive(Debug, Clone)]
pub struct Steady {
    /// The master pod.
    pub master: String,
    /// Its IP.
    pub master_ip: String,
    /// (pod, IP), sorted.
    pub replicas: Vec<(String, String)>,
}

/// The cluster at rest now, or why not.
pub async fn steady_once(ns: &str, cluster: &str, pw: &str, replicas: usize) -> Result<Steady> {
    let masters = pods_with_role(ns, cluster, "master").await?;
    let [(master, master_ip)] = masters.as_slice() else {
        bail!("{} pods labelled master: {masters:?}", masters.len());
    };
    let leader = leader_annotation(ns, cluster).await?;
    ensure!(
        &leader == master,
        "the leader ConfigMap names {leader:?}, the master label is on {master}"
    );
    let recovery = sql(master_ip, pw, "select pg_is_in_recovery()").await?;
    ensure!(recovery == "f", "master {master} is in recovery");
    let mut labelled = pods_with_role(ns, cluster, "replica").await?;
    labelled.sort();
    let streaming = replication(master_ip, pw).await?;
    let names: BTreeSet<&str> = labelled.iter().map(|(p, _)| p.as_str()).collect();
    let streamed: BTreeSet<&str> = streaming
        .iter()
        .filter(|(_, state)| state == "streaming")
        .map(|(p, _)| p.as_str())
        .collect();
    ensure!(
        labelled.len() == replicas && names == streamed && streaming.len() == replicas,
        "want {replicas} replicas streaming from {master}: labelled replica {labelled:?}, \
         pg_stat_replication {streaming:?}"
    );
    Ok(Steady {
        master: master.clone(),
        master_ip: master_ip.clone(),
        replicas: labelled,
    })
}

/// Waits for the cluster at rest with `replicas` streaming replicas.
pub async fn steady(ns: &str, cluster: &str, pw: &str, replicas: usize) -> Result<Steady> {
    let what = format!("{cluster}: one writable master, {replicas} streaming replicas");
    eventually_with(&what, TIMEOUT, POLL, || {
        steady_once(ns, cluster, pw, replicas)
    })
    .await
}

/// The ClusterIP of the master Service `<cluster>` (always in 127.0.0.0/8 here).
pub async fn master_service_ip(ns: &str, cluster: &str) -> Result<String> {
    let service = json(&["get", "service", cluster, "-n", ns]).await?;
    let ip = service["spec"]["clusterIP"].as_str().unwrap_or_default();
    ensure!(
        ip.starts_with("127."),
        "ClusterIP {ip:?} of {cluster} outside loopback"
    );
    Ok(ip.to_string())
}
