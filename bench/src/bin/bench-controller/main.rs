//! `make bench-controller`: the controller against the local control plane, with the control
//! plane's own write floor measured in the same run.
//!
//! For N clusters (100, then 1000): the floors (`floors.rs`) are the times to write, with the
//! controller's concurrency, as many plain ConfigMaps as the controller writes objects; the
//! children the controller writes (created, then server-side applied); and the complete
//! converged state (each postgresql, its children, status and Event). Then N postgresqls are
//! created at once and the time until every one reports Reconciled is measured, with the API
//! server's write requests per cluster, the controller's RSS, the writes a resync of the
//! unchanged clusters makes, and the time from creating one more cluster to its StatefulSet.

use anyhow::{Context, Result, bail};
use bench::local::{client, metrics_text, repo};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod floors;
mod progress;
mod timeline;
use floors::{Scope, Verb};
use progress::Progress;

/// Objects the controller writes per cluster: StatefulSet, 2 Services, 4 Secrets (minimal
/// manifest users plus postgres and standby), 2 PDBs, 1 status write.
const WRITES_PER_CLUSTER: usize = 10;
/// Concurrent clients of the floors and of the cluster creation, and the controller's concurrency
/// (`BENCH_CONCURRENCY`, default 8, Zalando's default `workers`).
fn concurrency() -> usize {
    std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

async fn write_requests(client: &Client) -> Result<f64> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut total = 0.0;
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let is_write = [
            "verb=\"POST\"",
            "verb=\"PATCH\"",
            "verb=\"PUT\"",
            "verb=\"APPLY\"",
            "verb=\"DELETE\"",
        ]
        .iter()
        .any(|v| line.contains(v));
        let ours = [
            "resource=\"statefulsets\"",
            "resource=\"services\"",
            "resource=\"secrets\"",
            "resource=\"poddisruptionbudgets\"",
            "resource=\"postgresqls\"",
            "resource=\"serviceaccounts\"",
            "resource=\"rolebindings\"",
            "resource=\"endpoints\"",
        ]
        .iter()
        .any(|r| line.contains(r));
        if is_write && ours {
            total += line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    Ok(total)
}

fn rss_mib(pid: u32) -> f64 {
    bench::procstat::status_kib(pid, "VmRSS") as f64 / 1024.0
}

fn metric(port: u16, name: &str) -> Option<f64> {
    e2e::promtext::sum(&metrics_text(port)?, name)
}

/// The controller's writes so far, by resource.
fn writes_by_resource(port: u16) -> std::collections::BTreeMap<String, f64> {
    const PREFIX: &str = "pg_controller_api_writes_total{resource=\"";
    let text = metrics_text(port).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (resource, value) = line.strip_prefix(PREFIX)?.split_once("\"} ")?;
            Some((resource.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// One benchmark cluster. Its image is not a Spilo image, so the pod runner leaves its pod to
/// kwok: the benchmark measures the controller and the API server, not 1 000 real databases.
fn cluster(name: &str) -> serde_json::Value {
    json!({"apiVersion": "acid.zalan.do/v1", "kind": "postgresql", "metadata": {"name": name},
        "spec": {"teamId": "acid", "numberOfInstances": 1, "postgresql": {"version": "17"}, "volume": {"size": "1Gi"},
                 "dockerImage": "bench.invalid/kwok-only-postgres:1",
                 "users": {"zalando": ["superuser", "createdb"], "foo_user": []}, "databases": {"foo": "zalando"}}})
}

/// Deletes a namespace and waits (up to 10 minutes) until it and everything in it are gone.
async fn remove_namespace(client: &Client, ns: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(ns, &DeleteParams::default()).await;
    for _ in 0..1200 {
        if namespaces.get_opt(ns).await?.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// A fresh, empty namespace.
async fn namespace(client: &Client, name: &str) -> Result<()> {
    remove_namespace(client, name).await?;
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

async fn run_size(client: &Client, n: usize) -> Result<()> {
    let configmaps = floors::configmaps(client, n * WRITES_PER_CLUSTER).await?;
    let created = floors::same_objects(client, n, Verb::Create, Scope::Children).await?;
    let applied = floors::same_objects(client, n, Verb::Apply, Scope::Children).await?;
    let complete = floors::same_objects(client, n, Verb::Apply, Scope::Complete).await?;
    let ns = format!("bench-{n}");
    namespace(client, &ns).await?;
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "postgres-operator", "namespace": ns},
        "data": {"enable_crd_registration": "false", "resync_period": "20s", "repair_period": "20s"}});
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    cms.create(&PostParams::default(), &serde_json::from_value(config)?)
        .await?;
    let admin = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let exe = std::env::current_exe()?
        .parent()
        .context("target dir")?
        .join("controller");
    // BENCH_CONTROLLER_LOG=FILE: the controller's log (at info: every child it writes) goes there.
    let log = match std::env::var_os("BENCH_CONTROLLER_LOG") {
        Some(path) => Some(
            std::fs::File::create(&path)
                .with_context(|| format!("BENCH_CONTROLLER_LOG {}", path.to_string_lossy()))?,
        ),
        None => None,
    };
    let controller = bench::procstat::KillOnDrop(
        Command::new(&exe)
            .args([
                "--admin-listen",
                &format!("127.0.0.1:{admin}"),
                "--leader-election",
                "false",
                "--concurrency",
                &concurrency().to_string(),
            ])
            .env("KUBECONFIG", repo().join(".local/kubeconfig"))
            .env("CONFIG_MAP_NAME", format!("{ns}/postgres-operator"))
            .env("OPERATOR_NAMESPACE", &ns)
            .env("WATCHED_NAMESPACE", &ns)
            .env("RUST_LOG", if log.is_some() { "info" } else { "warn" })
            .stdout(log.as_ref().map_or_else(Stdio::null, |f| {
                f.try_clone().map_or_else(|_| Stdio::null(), Stdio::from)
            }))
            .stderr(log.map_or_else(Stdio::null, Stdio::from))
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?,
    );
    let pid = controller.0.id();
    for _ in 0..300 {
        if metric(admin, "pg_controller_reconciles_total").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pgs: Api<common::crd::Postgresql> = Api::namespaced(client.clone(), &ns);
    let mut progress = Progress::follow(pgs.clone()).await;
    let writes_before = write_requests(client).await?;
    let started = Instant::now();
    let timeline = timeline::spawn(&progress, started);
    stream::iter(0..n)
        .map(|i| {
            let pgs = pgs.clone();
            async move {
                let pg: common::crd::Postgresql =
                    serde_json::from_value(cluster(&format!("bench-{i}"))).expect("valid");
                pgs.create(&PostParams::default(), &pg).await.map(|_| ())
            }
        })
        .buffer_unordered(concurrency())
        .try_collect::<Vec<_>>()
        .await?;
    let limit = Duration::from_secs(1800);
    let done = progress.wait(limit, |c| c.reconciled == n).await;
    if done.reconciled < n {
        bail!(
            "only {} of {n} clusters reconciled after 30 minutes",
            done.reconciled
        );
    }
    let converged = started.elapsed();
    let cpu = bench::procstat::cpu_seconds(pid);
    let writes = write_requests(client).await? - writes_before;
    let own_writes = metric(admin, "pg_controller_api_writes_total").unwrap_or(0.0);
    let rss = rss_mib(pid);

    // Pods becoming ready change the status (Creating → Running), at the pace of
    // kube-controller-manager's statefulset controller (its default 20 requests/s): wait until
    // that has settled (every cluster Running, no change for 15 s, or 2 minutes) before
    // measuring a resync.
    let settle_by = Instant::now() + Duration::from_secs(120);
    let mut last = progress.now().running;
    while last < n && Instant::now() < settle_by {
        let now = progress
            .wait(Duration::from_secs(15), |c| c.running != last)
            .await
            .running;
        if now == last {
            break;
        }
        last = now;
    }
    drop(timeline);
    let running_after = started.elapsed();
    // A resync of unchanged clusters (resync_period 20s) must write nothing. Clusters whose pods
    // become ready in the window are not unchanged: each such Creating → Running transition is
    // one status write, counted apart.
    const WRITES: &str = "pg_controller_api_writes_total";
    const STATUS_WRITES: &str = "pg_controller_api_writes_total{resource=\"postgresqls/status\"}";
    let writes_at = || metric(admin, WRITES).unwrap_or(0.0);
    let status_writes_at = || metric(admin, STATUS_WRITES).unwrap_or(0.0);
    let (all_before, status_before) = (writes_at(), status_writes_at());
    let by_resource_before = writes_by_resource(admin);
    let reconciles_before = metric(admin, "pg_controller_reconciles_total").unwrap_or(0.0);
    let running_before = progress.now().running;
    tokio::time::sleep(Duration::from_secs(45)).await;
    let status_writes = status_writes_at() - status_before;
    let child_writes = writes_at() - all_before - status_writes;
    let noop_reconciles =
        metric(admin, "pg_controller_reconciles_total").unwrap_or(0.0) - reconciles_before;
    let became_running = progress.now().running.saturating_sub(running_before);
    let children_written: Vec<String> = writes_by_resource(admin)
        .into_iter()
        .filter(|(resource, _)| resource != "postgresqls/status")
        .filter_map(|(resource, after)| {
            let n = after - by_resource_before.get(&resource).copied().unwrap_or(0.0);
            (n > 0.0).then(|| format!("{resource} {n}"))
        })
        .collect();

    // One more cluster: from create to its StatefulSet, seen through a watch.
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let mut latencies = Vec::new();
    for i in 0..15 {
        let name = format!("extra-{i}");
        let mut events = watcher(
            sts.clone(),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        )
        .applied_objects()
        .boxed();
        let pg: common::crd::Postgresql = serde_json::from_value(cluster(&name))?;
        let t = Instant::now();
        pgs.create(&PostParams::default(), &pg).await?;
        tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .context("StatefulSet did not appear")?;
        latencies.push(t.elapsed());
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let secs = |d: Duration| d.as_secs_f64();
    let ratio = |floor: Duration| secs(converged) / secs(floor);
    println!(
        "{n} clusters: converged in {:.1}s (controller CPU {cpu:.1}s)\n  \
         floors: {:.1}s for {} ConfigMaps (ratio {:.2}); children created {:.1}s (ratio {:.2}), \
         applied {:.1}s (ratio {:.2}); complete state {:.1}s (ratio {:.2}, target <= 1.5)\n  \
         {last} of {n} Running after {:.1}s; API server writes {:.1} per cluster (controller's own {:.1})\n  \
         apply->StatefulSet p50 {:.0} ms (max {:.0} ms) with {n} managed\n  \
         resync: {noop_reconciles} reconciles in 45 s wrote {child_writes} children {children_written:?} and \
         {status_writes} statuses; {became_running} clusters became Running in that time\n  \
         controller RSS {rss:.1} MiB",
        secs(converged),
        secs(configmaps),
        n * WRITES_PER_CLUSTER,
        ratio(configmaps),
        secs(created),
        ratio(created),
        secs(applied),
        ratio(applied),
        secs(complete),
        ratio(complete),
        secs(running_after),
        writes / n as f64,
        own_writes / n as f64,
        p50.as_secs_f64() * 1000.0,
        latencies
            .last()
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or_default(),
    );
    drop(controller);
    // Leave the control plane as it was found: whatever runs next (the next size, or the tests)
    // should not share it with the deletion of a thousand clusters.
    remove_namespace(client, &ns).await
}

#[tokio::main]
async fn main() -> Result<()> {
    let sizes: Vec<usize> = std::env::args()
        .nth(1)
        .map(|s| s.split(',').filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1000]);
    let client = client().await?;
    // The benchmark's controllers do not register the CRD (each would patch it); install it once.
    controller::crd_registration::register(&client, &["all".to_string()]).await?;
    println!(
        "controller benchmark on the local control plane; {} CPUs shared by everything; concurrency {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        concurrency()
    );
    for n in sizes {
        run_size(&client, n).await?;
    }
    Ok(())
}
