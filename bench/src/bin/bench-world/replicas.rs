//! Scenarios `streaming` (a 3-instance cluster: create -> both replicas streaming) and `idle`
//! (that cluster's members' RSS, PSS and CPU once it has been idle for a while).

use anyhow::{Result, bail};
use kube::Client;
use std::time::{Duration, Instant};

use crate::procs::{self, mib};
use crate::scenario::Scenario;
use crate::{Stats, pg};

const NAME: &str = "repl";
const BOUND: Duration = Duration::from_secs(600);

/// Waits until the master of `name` reports `replicas` streaming replicas; the times since
/// `started` of the first writable master and of the streaming replicas.
pub async fn until_streaming(
    s: &Scenario,
    name: &str,
    replicas: usize,
    started: Instant,
    bound: Duration,
) -> Result<(Duration, Duration)> {
    let mut writable = None;
    loop {
        if started.elapsed() > bound {
            bail!("{name}: not {replicas} streaming replicas after {bound:?}");
        }
        let attempt = async {
            let master = s.master(name).await?;
            let pw = s.password(name).await?;
            pg::streaming_replicas(&master.ip, &pw).await
        };
        if let Ok(n) = attempt.await {
            let w = *writable.get_or_insert(started.elapsed());
            if n >= replicas {
                return Ok((w, started.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn streaming(s: &Scenario, repeat: usize) -> Result<()> {
    println!("streaming: 3-instance cluster, create -> 2 replicas streaming");
    let mut times = Stats::default();
    for i in 0..repeat {
        // The last run's cluster stays for `idle`.
        let name = if i + 1 == repeat {
            NAME.to_string()
        } else {
            format!("{NAME}-{i}")
        };
        let load = procs::load_averages();
        let started = Instant::now();
        s.create_cluster(&name, 3, None).await?;
        let (writable, streaming) = until_streaming(s, &name, 2, started, BOUND).await?;
        println!(
            "  run {}: writable master after {:.1}s, 2 streaming after {:.1}s (load {load})",
            i + 1,
            writable.as_secs_f64(),
            streaming.as_secs_f64()
        );
        times.push(streaming);
        if name != NAME {
            s.delete_cluster(&name).await?;
        }
    }
    println!("  apply -> 2 streaming: {}", times.summary());
    Ok(())
}

async fn idle(s: &Scenario, settle: Duration, window: Duration) -> Result<()> {
    println!(
        "idle: members of a 3-instance cluster idle for {}s, CPU over {}s",
        settle.as_secs(),
        window.as_secs()
    );
    tokio::time::sleep(settle).await;
    let mut members = procs::members_of(&s.ns, Some(NAME));
    members.sort_by(|a, b| a.pod.cmp(&b.pod));
    if members.is_empty() {
        bail!("no member processes of {NAME} found in /proc");
    }
    let roles = s.pods(NAME).await?;
    let before: Vec<procs::Usage> = members.iter().map(procs::usage).collect();
    let load = procs::load_averages();
    tokio::time::sleep(window).await;
    let mut total = procs::Usage::default();
    for (m, b) in members.iter().zip(&before) {
        let after = procs::usage(m);
        let role = roles
            .iter()
            .find(|p| p.name == m.pod)
            .and_then(|p| p.role.clone())
            .unwrap_or_default();
        let cpu = after.cpu_seconds - b.cpu_seconds;
        println!(
            "  {} ({role}): {} processes, RSS {:.0} MiB, PSS {:.0} MiB, CPU {:.2}s in {}s ({:.1} % of a core)",
            m.pod,
            after.processes,
            mib(after.rss_kib),
            mib(after.pss_kib),
            cpu,
            window.as_secs(),
            100.0 * cpu / window.as_secs_f64()
        );
        total = total
            + procs::Usage {
                cpu_seconds: cpu,
                ..after
            };
    }
    let n = members.len() as f64;
    println!(
        "  per member (mean of {}): RSS {:.0} MiB, PSS {:.0} MiB, CPU {:.2}s per {}s; load before the window {load}, after {}",
        members.len(),
        mib(total.rss_kib) / n,
        mib(total.pss_kib) / n,
        total.cpu_seconds / n,
        window.as_secs(),
        procs::load_averages()
    );
    Ok(())
}

pub async fn run(
    client: &Client,
    do_streaming: bool,
    do_idle: bool,
    repeat: usize,
    settle: Duration,
    window: Duration,
) -> Result<()> {
    let s = Scenario::start(client, "replicas").await?;
    let result: Result<()> = async {
        if do_streaming {
            streaming(&s, repeat).await?;
        } else {
            let started = Instant::now();
            s.create_cluster(NAME, 3, None).await?;
            until_streaming(&s, NAME, 2, started, BOUND).await?;
        }
        if do_idle {
            idle(&s, settle, window).await?;
        }
        Ok(())
    }
    .await;
    s.finish(result).await
}
