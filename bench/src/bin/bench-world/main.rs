//! `make bench-world`: the operator against the test world, real Patroni + PostgreSQL behind
//! every Spilo pod (the pod runner of `scripts/up.sh`). It prints numbers and asserts nothing.
//!
//! Scenarios, each in its own namespace `bench-world-<scenario>` with its own namespace-scoped
//! controller, deleted at the end (and its members' processes awaited):
//! - `apply`: a 1-instance cluster, create -> INSERT through the master Service (`--repeat`);
//! - `streaming`: a 3-instance cluster, create -> both replicas streaming (`--repeat`);
//! - `idle`: that cluster's members' RSS, PSS and CPU when idle;
//! - `graceful`: the write gap and lost commits when the master pod is deleted (`--repeat`);
//! - `kill`: the same when the master container's Patroni is SIGKILLed, per `--ttl`;
//! - `capacity`: 2-instance clusters batch by batch up to `--max`.
//!
//! Only loopback addresses are dialled: pod and Service IPs of the world are in 127.0.0.0/8.

use anyhow::{Result, bail};
use clap::Parser;
use std::time::Duration;

mod apply;
mod capacity;
mod failover;
use e2e::writer as pg;
mod procs;
mod replicas;
mod rollout;
mod scenario;

const SCENARIOS: [&str; 7] = [
    "apply",
    "streaming",
    "idle",
    "graceful",
    "kill",
    "capacity",
    "rollout",
];

#[derive(Parser, Debug)]
#[command(about = "Timings and resources of real Patroni + PostgreSQL clusters in the test world")]
struct Args {
    /// Scenarios to run, comma-separated (default: all): apply, streaming, idle, graceful,
    /// kill, capacity, rollout.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Runs of apply, streaming, graceful and rollout.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Clusters the capacity scenario goes up to.
    #[arg(long, default_value_t = 20)]
    max: usize,
    /// Clusters per capacity batch.
    #[arg(long, default_value_t = 5)]
    batch: usize,
    /// Seconds a capacity batch may take to converge.
    #[arg(long, default_value_t = 600)]
    batch_bound: u64,
    /// spec.patroni.ttl values of the kill scenario (one cluster each).
    #[arg(long, value_delimiter = ',', default_value = "30,20")]
    ttl: Vec<u32>,
    /// Seconds the idle cluster is left alone before its usage is measured.
    #[arg(long, default_value_t = 30)]
    idle_settle: u64,
    /// Seconds over which the idle members' CPU is measured.
    #[arg(long, default_value_t = 30)]
    idle_window: u64,
}

/// Durations of repeated runs.
#[derive(Default)]
pub struct Stats(Vec<Duration>);

impl Stats {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// `median M s (min A, max B, n runs)`.
    pub fn summary(&self) -> String {
        let mut v = self.0.clone();
        v.sort();
        match (v.first(), v.last()) {
            (Some(min), Some(max)) => format!(
                "median {:.1}s (min {:.1}s, max {:.1}s, {} runs)",
                v[v.len() / 2].as_secs_f64(),
                min.as_secs_f64(),
                max.as_secs_f64(),
                v.len()
            ),
            _ => "no runs".into(),
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    for s in &args.only {
        if !SCENARIOS.contains(&s.as_str()) {
            bail!("unknown scenario {s:?}; known: {}", SCENARIOS.join(", "));
        }
    }
    let wants = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    scenario::runner_is_up()?;
    let client = scenario::client().await?;
    // The scenarios' controllers do not register the CRD (each would patch it); install it once.
    controller::crd_registration::register(&client, &["all".to_string()]).await?;
    println!(
        "test-world benchmark: PostgreSQL {}, {} CPUs, MemAvailable {:.0} MiB, load {}",
        scenario::MAJOR,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        procs::mem_available_mib(),
        procs::load_averages()
    );
    let mut failed = Vec::new();
    let mut report = |name: &str, result: Result<()>| {
        if let Err(e) = result {
            println!("  {name} FAILED: {e:#}");
            failed.push(name.to_string());
        }
    };
    if wants("apply") {
        report("apply", apply::run(&client, args.repeat).await);
    }
    if wants("streaming") || wants("idle") {
        let settle = Duration::from_secs(args.idle_settle);
        let window = Duration::from_secs(args.idle_window);
        let (streaming, idle) = (wants("streaming"), wants("idle"));
        let result = replicas::run(&client, streaming, idle, args.repeat, settle, window).await;
        report("streaming/idle", result);
    }
    if wants("graceful") {
        report("graceful", failover::graceful(&client, args.repeat).await);
    }
    if wants("kill") {
        report("kill", failover::kill(&client, &args.ttl).await);
    }
    if wants("rollout") {
        report("rollout", rollout::run(&client, args.repeat).await);
    }
    if wants("capacity") {
        let bound = Duration::from_secs(args.batch_bound);
        let result = capacity::run(&client, args.max, args.batch.max(1), bound).await;
        report("capacity", result);
    }
    println!(
        "done; load {}, MemAvailable {:.0} MiB",
        procs::load_averages(),
        procs::mem_available_mib()
    );
    if !failed.is_empty() {
        bail!("scenarios that failed: {}", failed.join(", "));
    }
    Ok(())
}
