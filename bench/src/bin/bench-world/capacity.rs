//! Scenario `capacity`: 2-instance clusters created one batch at a time until `max` run at
//! once, each batch awaited until every cluster is Running with a streaming replica. After each
//! batch: its time, the load average, MemAvailable and the members' total RSS and PSS. A batch
//! that does not converge within the bound ends the scenario, saying which clusters lag.

use anyhow::Result;
use kube::Client;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::pg;
use crate::procs::{self, mib};
use crate::scenario::Scenario;

/// Whether `name` is Running (the controller's status) with a streaming replica; else why not.
async fn converged(s: &Scenario, name: &str) -> Result<(), String> {
    let status = s.cluster_status(name).await.map_err(|e| e.to_string())?;
    if status != "Running" {
        return Err(format!("status {status:?}"));
    }
    let master = s.master(name).await.map_err(|e| e.to_string())?;
    let pw = s.password(name).await.map_err(|e| e.to_string())?;
    match pg::streaming_replicas(&master.ip, &pw).await {
        Ok(n) if n >= 1 => Ok(()),
        Ok(_) => Err("no streaming replica".into()),
        Err(e) => Err(format!("{e:#}")),
    }
}

pub async fn run(client: &Client, max: usize, batch: usize, bound: Duration) -> Result<()> {
    println!(
        "capacity: 2-instance clusters in batches of {batch} up to {max}, each batch bounded by {}s \
         (target >= 20 at once)",
        bound.as_secs()
    );
    let s = Scenario::start(client, "capacity").await?;
    let result = batches(&s, max, batch, bound).await;
    s.finish(result).await
}

async fn batches(s: &Scenario, max: usize, batch: usize, bound: Duration) -> Result<()> {
    let mut created = 0;
    let mut all_converged = 0;
    while created < max {
        let load = procs::load_averages();
        let started = Instant::now();
        let names: Vec<String> = (created..(created + batch).min(max))
            .map(|i| format!("cap-{i}"))
            .collect();
        for name in &names {
            s.create_cluster(name, 2, None).await?;
        }
        created += names.len();
        let mut pending: BTreeSet<String> = names.iter().cloned().collect();
        let mut reasons = Vec::new();
        while !pending.is_empty() && started.elapsed() < bound {
            tokio::time::sleep(Duration::from_secs(3)).await;
            reasons.clear();
            for name in pending.clone() {
                match converged(s, &name).await {
                    Ok(()) => {
                        pending.remove(&name);
                    }
                    Err(why) => reasons.push(format!("{name}: {why}")),
                }
            }
        }
        let took = started.elapsed();
        let members = procs::members_of(&s.ns, None);
        let usage = members
            .iter()
            .map(procs::usage)
            .fold(procs::Usage::default(), |a, b| a + b);
        all_converged += names.len() - pending.len();
        println!(
            "  batch {}..{}: {} of {} converged in {:.1}s; now {all_converged} clusters, {} members \
             ({} processes), members' RSS {:.0} MiB / PSS {:.0} MiB, MemAvailable {:.0} MiB, \
             load {} (before the batch {load})",
            created - names.len(),
            created - 1,
            names.len() - pending.len(),
            names.len(),
            took.as_secs_f64(),
            members.len(),
            usage.processes,
            mib(usage.rss_kib),
            mib(usage.pss_kib),
            procs::mem_available_mib(),
            procs::load_averages(),
        );
        if !pending.is_empty() {
            println!(
                "  stopped: {} clusters of the batch did not converge within {}s: {}",
                pending.len(),
                bound.as_secs(),
                reasons.join("; ")
            );
            break;
        }
    }
    println!(
        "  capacity: {all_converged} 2-instance clusters Running with a streaming replica at once"
    );
    Ok(())
}
