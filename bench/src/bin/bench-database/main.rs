//! `make bench-database`: N clusters of the complete manifest (its users and prepared database)
//! on the test world's real Patroni + PostgreSQL, run by one namespace-scoped release controller.
//! It prints numbers and asserts nothing:
//! - apply → every role able to log in (the manifest's users and the prepared databases'
//!   default LOGIN users, with the passwords of their Secrets): p50, p95, max per cluster and
//!   the time until the last one;
//! - a no-op sync once converged: the operator's catalog reads per sync, its planned statements
//!   (`database_statements`), the statements that are not reads on the servers
//!   (`pg_stat_statements`) and the catalog rows rewritten — the target is 0 writes;
//! - the peak of database connections the controller holds (sampled from `/proc`, and the
//!   controller's `database_connections_peak` metric when it has one).
//!
//! A small round (`--baseline`, 5 clusters) runs first in the same run, for ratios. Each round
//! has its own namespace `bench-database-<n>`, deleted at the end (also on Ctrl-C), its members'
//! processes awaited. Only 127.0.0.0/8 is dialled.

use anyhow::{Result, bail};
use clap::Parser;
use std::time::Duration;

mod conns;
mod logins;
mod manifest;
mod noop;
#[allow(dead_code)]
#[path = "../bench-world/procs.rs"]
mod procs;
mod report;
mod round;
#[allow(dead_code)]
#[path = "../bench-world/scenario.rs"]
mod scenario;

#[derive(Parser, Debug, Clone)]
#[command(about = "Roles and databases of the complete manifest on N real clusters")]
pub struct Args {
    /// Clusters of the main round.
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// Clusters of the small round run first for ratios (0: none).
    #[arg(long, default_value_t = 5)]
    baseline: usize,
    /// Members per cluster.
    #[arg(long, default_value_t = 1)]
    instances: i32,
    /// The controller's resync_period in seconds.
    #[arg(long, default_value_t = 10)]
    resync: u64,
    /// Seconds of the no-op window (a few resync periods).
    #[arg(long, default_value_t = 30)]
    window: u64,
    /// Patroni's ttl in the manifests (the complete manifest has 30).
    #[arg(long, default_value_t = 30)]
    ttl: u32,
    /// Patroni's loop_wait in the manifests (the complete manifest has 10): a longer loop lets
    /// more members share the machine's cores.
    #[arg(long, default_value_t = 10)]
    loop_wait: u32,
    /// Seconds every role of every cluster may take to log in.
    #[arg(long, default_value_t = 1200)]
    bound: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.clusters == 0 {
        bail!("--clusters must be at least 1");
    }
    scenario::runner_is_up()?;
    let client = scenario::client().await?;
    controller::crd_registration::register(&client, &["all".to_string()]).await?;
    let timing = (args.ttl != 30 || args.loop_wait != 10).then_some((args.ttl, args.loop_wait));
    let template = manifest::template(args.instances, timing)?;
    println!(
        "database benchmark: complete manifest, {} instance(s) per cluster, PostgreSQL {}, \
         resync_period {}s; {} CPUs, MemTotal {:.0} MiB, MemAvailable {:.0} MiB, load {}",
        args.instances,
        template.spec["postgresql"]["version"]
            .as_str()
            .unwrap_or("?"),
        args.resync,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        report::mem_total_mib(),
        procs::mem_available_mib(),
        procs::load_averages()
    );
    println!("adjusted for the test world:");
    for a in &template.adjusted {
        println!("  - {a}");
    }
    let roles = template.login_roles();
    println!(
        "roles that must log in ({}): {}",
        roles.len(),
        roles.join(", ")
    );
    let mut sizes = Vec::new();
    if args.baseline > 0 && args.baseline < args.clusters {
        sizes.push(args.baseline);
    }
    sizes.push(args.clusters);
    let mut rounds = Vec::new();
    for n in sizes {
        println!("round of {n} clusters (load {})", procs::load_averages());
        match round::run(&client, &template, &roles, n, &args).await {
            Ok(r) => rounds.push(r),
            Err(e) => {
                println!("round of {n} FAILED: {e:#}");
                report::print(&rounds, conns::every(), Duration::from_secs(args.window));
                return Err(e);
            }
        }
    }
    report::print(&rounds, conns::every(), Duration::from_secs(args.window));
    println!(
        "done; load {}, MemAvailable {:.0} MiB",
        procs::load_averages(),
        procs::mem_available_mib()
    );
    Ok(())
}
