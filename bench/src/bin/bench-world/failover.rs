//! Scenarios `graceful` (deleting the master pod) and `kill` (SIGKILL of the master container's
//! PID 1, Patroni, which takes PostgreSQL down with it): a writer inserts through the master
//! Service every 100 ms on one connection (reconnecting with a 1 s timeout after a failure). The
//! write gap is the outage the event causes: the longest time between two consecutive
//! acknowledged inserts, the second after the event (the old master may take writes for a moment
//! after its deletion was requested). Every acknowledged id must then be on the master.

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams};
use serde_json::json;
use std::time::{Duration, Instant};

use crate::replicas::until_streaming;
use crate::scenario::Scenario;
use crate::{Stats, pg, procs};

const INTERVAL: Duration = Duration::from_millis(100);
/// Writes must go on this long after the gap before the event is over.
const SETTLE: Duration = Duration::from_secs(5);
const READY_BOUND: Duration = Duration::from_secs(600);

/// One event's outcome.
struct Outcome {
    gap: Option<Duration>,
    longest_gap: Duration,
    event_to_write: Option<Duration>,
    lost: usize,
    acked: usize,
    failures: u64,
    old_master: String,
    new_master: String,
    back_streaming: Option<Duration>,
}

impl Outcome {
    fn print(&self, label: &str) {
        let secs =
            |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()));
        println!(
            "  {label}: write gap {} (longest of the run {:.1}s), event -> first write after it {}, \
             {} acknowledged commits lost of {} ({} failed attempts); master {} -> {}; \
             both members streaming again after {}",
            secs(self.gap),
            self.longest_gap.as_secs_f64(),
            secs(self.event_to_write),
            self.lost,
            self.acked,
            self.failures,
            self.old_master,
            self.new_master,
            secs(self.back_streaming),
        );
    }
}

/// `t - at` in seconds, negative when `t` came first.
fn seconds_from(at: Instant, t: Instant) -> f64 {
    match t.checked_duration_since(at) {
        Some(d) => d.as_secs_f64(),
        None => -(at - t).as_secs_f64(),
    }
}

/// Runs the writer around `event` (which returns the old master's name) on cluster `name`.
async fn measure<F, Fut>(s: &Scenario, name: &str, bound: Duration, event: F) -> Result<Outcome>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<String>>,
{
    let ip = s.master_service_ip(name).await?;
    let pw = s.password(name).await?;
    pg::create_table(&ip, &pw).await?;
    let writer = pg::Writer::start(ip.clone(), pw.clone(), INTERVAL);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let at = Instant::now();
    let old_master = event().await?;
    let resumed = writer.wait_resumed(at, SETTLE, bound).await;
    let log = writer.stop().await;
    let outage = log.outage_after(at);
    if !resumed {
        println!(
            "  no failed write followed by {SETTLE:?} of writes within {bound:?} of the event"
        );
    }
    let new_master = s.master(name).await.map(|m| m.name).unwrap_or_default();
    let lost_ids = e2e::eventually("the writes read back through the master Service", || {
        pg::lost_writes(&ip, &pw, &log)
    })
    .await?;
    if let (Some(first), Some(last)) = (lost_ids.first(), lost_ids.last()) {
        let mut servers: Vec<&str> = lost_ids.iter().map(|a| a.server.as_str()).collect();
        servers.dedup();
        println!(
            "  lost acknowledged ids {}..{}, acknowledged {:+.1}s..{:+.1}s from the event by {}{}",
            first.id,
            last.id,
            seconds_from(at, first.at),
            seconds_from(at, last.at),
            servers.join(", "),
            outage.map_or(String::new(), |(b, a)| format!(
                " (outage {:+.1}s..{:+.1}s)",
                seconds_from(at, b),
                seconds_from(at, a)
            )),
        );
    }
    let lost = lost_ids.len();
    let back = until_streaming(s, name, 1, at, READY_BOUND)
        .await
        .ok()
        .map(|(_, t)| t);
    Ok(Outcome {
        gap: outage.map(|(b, a)| a - b),
        longest_gap: log.longest_gap(),
        event_to_write: outage.map(|(_, a)| a - at),
        lost,
        acked: log.acked.len(),
        failures: log.failures,
        old_master,
        new_master,
        back_streaming: back,
    })
}

pub async fn graceful(client: &Client, repeat: usize) -> Result<()> {
    println!("graceful: delete the master pod of a 2-instance cluster (target: write gap <= 5 s)");
    let s = Scenario::start(client, "graceful").await?;
    let result = graceful_runs(&s, repeat).await;
    s.finish(result).await
}

async fn graceful_runs(s: &Scenario, repeat: usize) -> Result<()> {
    let name = "gr";
    let started = Instant::now();
    s.create_cluster(name, 2, None).await?;
    until_streaming(s, name, 1, started, READY_BOUND).await?;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.ns);
    let mut gaps = Stats::default();
    for i in 0..repeat {
        let load = procs::load_averages();
        let outcome = measure(s, name, Duration::from_secs(180), || async {
            let master = s.master(name).await?;
            pods.delete(&master.name, &DeleteParams::default()).await?;
            Ok(master.name)
        })
        .await?;
        outcome.print(&format!("run {} (load {load})", i + 1));
        if let Some(g) = outcome.gap {
            gaps.push(g);
        }
        // The next run starts from a healthy cluster.
        until_streaming(s, name, 1, Instant::now(), READY_BOUND).await?;
    }
    println!("  graceful write gap: {}", gaps.summary());
    Ok(())
}

pub async fn kill(client: &Client, ttls: &[u32]) -> Result<()> {
    println!("kill: kill -9 of the master container's PID 1 (Patroni) of a 2-instance cluster");
    let s = Scenario::start(client, "kill").await?;
    let result = kill_runs(&s, ttls).await;
    s.finish(result).await
}

async fn kill_runs(s: &Scenario, ttls: &[u32]) -> Result<()> {
    let started = Instant::now();
    for ttl in ttls {
        let patroni = json!({"ttl": ttl});
        s.create_cluster(&format!("kill-ttl{ttl}"), 2, Some(patroni))
            .await?;
    }
    for ttl in ttls {
        let name = format!("kill-ttl{ttl}");
        until_streaming(s, &name, 1, started, READY_BOUND).await?;
        let dcs = s
            .dcs_timeouts(&name)
            .await
            .unwrap_or_else(|e| format!("unknown ({e:#})"));
        let load = procs::load_averages();
        let outcome = measure(s, &name, Duration::from_secs(240), || async {
            let master = s.master(&name).await?;
            let member = procs::members_of(&s.ns, Some(&name))
                .into_iter()
                .find(|m| m.pod == master.name)
                .with_context(|| format!("no processes of {} in /proc", master.name))?;
            let status = std::process::Command::new("kill")
                .args(["-KILL", &member.init_pid.to_string()])
                .status()?;
            if !status.success() {
                bail!("kill -KILL {} failed", member.init_pid);
            }
            Ok(master.name)
        })
        .await?;
        outcome.print(&format!(
            "spec.patroni.ttl {ttl} (DCS config: {dcs}; load {load})"
        ));
    }
    Ok(())
}
