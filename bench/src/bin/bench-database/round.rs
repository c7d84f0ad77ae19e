//! One round: a namespace with its controller, N clusters applied, the time until every role
//! logs in, a no-op window, then the namespace deleted (also when the round fails or Ctrl-C
//! interrupts it).

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::manifest::{Template, secret_name};
use crate::noop::{Counters, Delta, Snapshot};
use crate::scenario::Scenario;
use crate::{Args, conns, logins, noop, procs};

/// Catalog snapshots in flight at once.
const PARALLEL: usize = 8;

/// What one round measured.
pub struct Round {
    pub clusters: usize,
    pub load_before: String,
    pub load_after: String,
    /// Creating the N objects (sequentially through the API).
    pub apply: Duration,
    /// Per cluster: creation → its last role logged in (`None`: not within the bound).
    pub logins: Vec<Option<Duration>>,
    /// First creation → last cluster's last login.
    pub all_logged_in: Duration,
    pub peak_converging: usize,
    pub peak_noop: usize,
    pub peak_metric: Option<f64>,
    pub before: Counters,
    pub after: Counters,
    /// Summed over the clusters.
    pub noop: Delta,
    /// Clusters whose snapshots were taken.
    pub measured: usize,
}

pub async fn run(
    client: &Client,
    template: &Template,
    roles: &[String],
    n: usize,
    args: &Args,
) -> Result<Round> {
    let period = format!("{}s", args.resync);
    let settings = json!({"resync_period": period, "repair_period": period});
    let s = Scenario::start_in(client, &format!("bench-database-{n}"), settings).await?;
    let result = tokio::select! {
        r = measure(&s, template, roles, n, args) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted (Ctrl-C); cleaning up")),
    };
    if let Err(e) = &result {
        println!("  {e:#}");
    }
    // Cleans up (or keeps the namespace with BENCH_WORLD_KEEP=1); the round's error first.
    let cleaned = s.finish(Ok(())).await;
    let round = result?;
    cleaned?;
    Ok(round)
}

async fn measure(
    s: &Scenario,
    template: &Template,
    roles: &[String],
    n: usize,
    args: &Args,
) -> Result<Round> {
    let load_before = procs::load_averages();
    let sampler = conns::Sampler::start(s.controller_pid());
    let api: Api<common::crd::Postgresql> = Api::namespaced(s.client.clone(), &s.ns);
    let mut created = BTreeMap::new();
    let first = Instant::now();
    for i in 0..n {
        let name = format!("acid-db-{i:03}");
        let pg: common::crd::Postgresql = serde_json::from_value(template.object(&s.ns, &name))?;
        api.create(&PostParams::default(), &pg)
            .await
            .with_context(|| format!("creating postgresql {name}"))?;
        created.insert(name, Instant::now());
    }
    let apply = first.elapsed();
    println!("  {n} manifests applied in {:.2}s", apply.as_secs_f64());
    let bound = Duration::from_secs(args.bound);
    let done = logins::until_all_log_in(&s.client, &s.ns, &created, roles, bound).await?;
    let all_logged_in = first.elapsed();
    let peak_converging = sampler.take_peak();
    let logins: Vec<Option<Duration>> = done.values().copied().collect();
    println!(
        "  every role logged in after {:.1}s ({} of {n} clusters; load {})",
        all_logged_in.as_secs_f64(),
        logins.iter().flatten().count(),
        procs::load_averages()
    );

    // The no-op window: utility statements tracked, a settle of two resync periods, then two
    // snapshots `window` apart.
    let targets = targets(s).await?;
    futures::stream::iter(targets.iter())
        .map(|(cluster, (ip, pw))| async move {
            if let Err(e) = noop::track_utility(ip, pw).await {
                println!("  {cluster}: turning track_utility on: {e:#}");
            }
        })
        .buffer_unordered(PARALLEL)
        .collect::<Vec<()>>()
        .await;
    tokio::time::sleep(Duration::from_secs(2 * args.resync)).await;
    let before_snaps = snapshots(&targets).await;
    let before = noop::counters(s.admin)?;
    sampler.take_peak();
    tokio::time::sleep(Duration::from_secs(args.window)).await;
    let after = noop::counters(s.admin)?;
    let after_snaps = snapshots(&targets).await;
    let peak_noop = sampler.take_peak();
    sampler.stop();
    let mut sum = Delta::default();
    let mut measured = 0;
    for (cluster, b) in &before_snaps {
        let Some(a) = after_snaps.get(cluster) else {
            continue;
        };
        measured += 1;
        let d = noop::delta(b, a);
        sum.cluster_reads += d.cluster_reads;
        sum.database_reads += d.database_reads;
        sum.other_reads += d.other_reads;
        sum.rows_changed += d.rows_changed;
        for (text, calls) in d.writes {
            *sum.writes.entry(text).or_default() += calls;
        }
    }
    Ok(Round {
        clusters: n,
        load_before,
        load_after: procs::load_averages(),
        apply,
        logins,
        all_logged_in,
        peak_converging,
        peak_noop,
        peak_metric: after.connections_peak,
        before,
        after,
        noop: sum,
        measured,
    })
}

/// Each cluster's master IP and the postgres password.
async fn targets(s: &Scenario) -> Result<BTreeMap<String, (String, String)>> {
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.ns);
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), &s.ns);
    let ips = logins::masters(&pods).await?;
    let creds = logins::credentials(&secrets).await?;
    Ok(ips
        .into_iter()
        .filter_map(|(cluster, ip)| {
            let (_, pw) = creds.get(&secret_name("postgres", &cluster))?;
            Some((cluster, (ip, pw.clone())))
        })
        .collect())
}

async fn snapshots(targets: &BTreeMap<String, (String, String)>) -> BTreeMap<String, Snapshot> {
    futures::stream::iter(targets.iter())
        .map(|(cluster, (ip, pw))| async move {
            match noop::snapshot(ip, pw).await {
                Ok(snap) => Some((cluster.clone(), snap)),
                Err(e) => {
                    println!("  {cluster}: snapshot failed: {e:#}");
                    None
                }
            }
        })
        .buffer_unordered(PARALLEL)
        .filter_map(|x| async move { x })
        .collect()
        .await
}
