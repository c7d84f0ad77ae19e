//! Scenario `apply`: creating a 1-instance cluster until an INSERT through its master Service's
//! ClusterIP succeeds, `repeat` times (each cluster deleted, and its processes gone, before the
//! next, so every run starts from the same machine).

use anyhow::Result;
use kube::Client;
use std::time::{Duration, Instant};

use crate::scenario::Scenario;
use crate::{Stats, pg};

const BOUND: Duration = Duration::from_secs(300);

/// Polls until the cluster's master Service takes an INSERT; the time since `started` at which
/// the master pod was labelled, and at which the INSERT succeeded.
async fn until_writable(
    s: &Scenario,
    name: &str,
    started: Instant,
) -> Result<(Option<Duration>, Duration)> {
    let mut labelled = None;
    loop {
        if started.elapsed() > BOUND {
            anyhow::bail!("{name}: no INSERT through the master Service after {BOUND:?}");
        }
        if labelled.is_none() && s.master(name).await.is_ok() {
            labelled = Some(started.elapsed());
        }
        let attempt = async {
            let ip = s.master_service_ip(name).await?;
            let pw = s.password(name).await?;
            pg::query_text(
                &ip,
                &pw,
                "create table if not exists probe(x int); insert into probe values (1)",
            )
            .await
        };
        if attempt.await.is_ok() {
            return Ok((labelled, started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn run(client: &Client, repeat: usize) -> Result<()> {
    println!(
        "apply: 1-instance cluster, create -> INSERT through the master Service (target <= 10 s)"
    );
    let s = Scenario::start(client, "apply").await?;
    let result = runs(&s, repeat).await;
    s.finish(result).await
}

async fn runs(s: &Scenario, repeat: usize) -> Result<()> {
    let mut writable = Stats::default();
    let mut labelled = Stats::default();
    for i in 0..repeat {
        let name = format!("apply-{i}");
        let load = crate::procs::load_averages();
        let started = Instant::now();
        s.create_cluster(&name, 1, None).await?;
        let (master, insert) = until_writable(s, &name, started).await?;
        println!(
            "  run {}: INSERT ok after {:.1}s (pod labelled master after {}; load {load})",
            i + 1,
            insert.as_secs_f64(),
            master.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64())),
        );
        writable.push(insert);
        if let Some(d) = master {
            labelled.push(d);
        }
        s.delete_cluster(&name).await?;
    }
    println!("  apply -> writable: {}", writable.summary());
    println!("  apply -> master label: {}", labelled.summary());
    Ok(())
}
