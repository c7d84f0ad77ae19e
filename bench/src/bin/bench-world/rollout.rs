//! Scenario `rollout` (issue 14): a 3-member cluster under a writer inserting through the master
//! Service every 10 ms on one connection.
//! - a configuration-only change (`spec.patroni.ttl`): the time until Patroni's DCS holds it,
//!   and the members restarted or recreated (target 0);
//! - `--repeat` CPU request changes, each a rolling update: its total time, the longest write
//!   gap, acknowledged commits lost (target 0), pods recreated (target 3) and switchovers
//!   (target 1), from the operator's Events.

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::replicas::until_streaming;
use crate::scenario::Scenario;
use crate::{Stats, pg};

const INTERVAL: Duration = Duration::from_millis(10);
const BOUND: Duration = Duration::from_secs(600);
const FLAG: &str = "zalando-postgres-operator-rolling-update-required";

pub async fn run(client: &kube::Client, repeat: usize) -> Result<()> {
    println!(
        "rollout: 3 members, a writer every 10 ms through the master Service (targets: gap <= 5 s, \
         0 lost, 1 switchover per rollout, 0 restarts for a configuration change)"
    );
    let s = Scenario::start(client, "rollout").await?;
    let result = runs(&s, repeat).await;
    s.finish(result).await
}

/// Pod name → (uid, postmaster start time).
async fn members(s: &Scenario, name: &str, pw: &str) -> Result<BTreeMap<String, (String, String)>> {
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("cluster-name={name}")))
        .await?;
    let mut out = BTreeMap::new();
    for pod in list {
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        let started = pg::query_text(&ip, pw, "select pg_postmaster_start_time()")
            .await
            .unwrap_or_else(|e| format!("unreachable: {e}"));
        out.insert(
            pod.metadata.name.unwrap_or_default(),
            (pod.metadata.uid.unwrap_or_default(), started),
        );
    }
    Ok(out)
}

async fn patch_spec(s: &Scenario, name: &str, spec: Value) -> Result<()> {
    let api: Api<common::crd::Postgresql> = Api::namespaced(s.client.clone(), &s.ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "spec": spec })),
    )
    .await
    .with_context(|| format!("patching postgresql {name}"))?;
    Ok(())
}

/// `ttl` in Patroni's configuration ConfigMap `<name>-config`.
async fn dcs_ttl(s: &Scenario, name: &str) -> Result<Option<u64>> {
    let cms: Api<ConfigMap> = Api::namespaced(s.client.clone(), &s.ns);
    let cm = cms.get(&format!("{name}-config")).await?;
    let config = cm
        .metadata
        .annotations
        .and_then(|a| a.get("config").cloned())
        .unwrap_or_default();
    Ok(serde_json::from_str::<Value>(&config)
        .ok()
        .and_then(|c| c["ttl"].as_u64()))
}

/// Notes of the Events with `reason` about the cluster.
async fn event_notes(s: &Scenario, reason: &str) -> Result<Vec<String>> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(s.client.clone(), &s.ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect())
}

async fn runs(s: &Scenario, repeat: usize) -> Result<()> {
    let name = "ro";
    let started = Instant::now();
    s.create_cluster(name, 3, Some(json!({"ttl": 30, "loop_wait": 10})))
        .await?;
    until_streaming(s, name, 2, started, BOUND).await?;
    let pw = s.password(name).await?;
    let ip = s.master_service_ip(name).await?;
    pg::create_table(&ip, &pw).await?;

    // A configuration-only change.
    let before = members(s, name, &pw).await?;
    let writer = pg::Writer::start(ip.clone(), pw.clone(), INTERVAL);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at = Instant::now();
    patch_spec(s, name, json!({"patroni": {"ttl": 25}})).await?;
    let mut applied = None;
    while at.elapsed() < Duration::from_secs(120) {
        if dcs_ttl(s, name).await.ok().flatten() == Some(25) {
            applied = Some(at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    let log = writer.stop().await;
    let after = members(s, name, &pw).await?;
    let recreated = before
        .iter()
        .filter(|(p, (uid, _))| after.get(*p).map(|a| &a.0) != Some(uid))
        .count();
    let restarted = before
        .iter()
        .filter(|(p, (_, t))| after.get(*p).map(|a| &a.1) != Some(t))
        .count();
    let lost = pg::lost_writes(&ip, &pw, &log).await?.len();
    println!(
        "  ttl 30 -> 25: in the DCS after {}, members restarted {restarted}, pods recreated \
         {recreated}, longest write gap {:.2}s, {lost} lost of {} acknowledged",
        applied.map_or("- (not within 120 s)".into(), |d| format!(
            "{:.1}s",
            d.as_secs_f64()
        )),
        log.longest_gap().as_secs_f64(),
        log.acked.len()
    );

    // Rolling updates.
    let (mut totals, mut gaps) = (Stats::default(), Stats::default());
    let mut lost_total = 0;
    for run in 0..repeat {
        let cpu = if run % 2 == 0 { "150m" } else { "100m" };
        let switchovers_before = event_notes(s, "Switchover")
            .await?
            .iter()
            .filter(|n| n.ends_with(" done"))
            .count();
        let before = members(s, name, &pw).await?;
        // Each writer counts from id 1.
        pg::create_table(&ip, &pw).await?;
        let writer = pg::Writer::start(ip.clone(), pw.clone(), INTERVAL);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let at = Instant::now();
        patch_spec(s, name, json!({"resources": {"requests": {"cpu": cpu}}})).await?;
        let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.ns);
        loop {
            if at.elapsed() > BOUND {
                bail!("rollout {run}: not done after {BOUND:?}");
            }
            let list = pods
                .list(&ListParams::default().labels(&format!("cluster-name={name}")))
                .await?;
            let renewed = list
                .iter()
                .filter(|p| {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    before.get(&name).map(|b| &b.0) != p.metadata.uid.as_ref()
                })
                .count();
            let flagged = list.iter().any(|p| {
                p.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(FLAG))
            });
            if renewed == 3 && !flagged {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        until_streaming(s, name, 2, at, BOUND).await?;
        let total = at.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let log = writer.stop().await;
        let lost = pg::lost_writes(&ip, &pw, &log).await?.len();
        let switchovers = event_notes(s, "Switchover")
            .await?
            .iter()
            .filter(|n| n.ends_with(" done"))
            .count()
            - switchovers_before;
        println!(
            "  rolling update {} (cpu {cpu}): total {:.1}s, longest write gap {:.2}s, {lost} lost \
             of {} acknowledged ({} failed attempts), {switchovers} switchover(s), 3 pods recreated",
            run + 1,
            total.as_secs_f64(),
            log.longest_gap().as_secs_f64(),
            log.acked.len(),
            log.failures
        );
        totals.push(total);
        gaps.push(log.longest_gap());
        lost_total += lost;
    }
    println!("  rolling update total: {}", totals.summary());
    println!("  rolling update longest write gap: {}", gaps.summary());
    println!("  acknowledged commits lost over all rollouts: {lost_total}");
    Ok(())
}
