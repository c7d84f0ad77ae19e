//! `make bench-controller`: the controller against the local control plane, with the control
//! plane's own write floor measured in the same run.
//!
//! For N clusters (100, then 1000): the floor is the time to create as many plain objects as
//! the controller writes for N clusters, with the controller's concurrency; then N postgresqls
//! are created at once and the time until every one reports Reconciled is measured, with the
//! API server's write requests per cluster, the controller's RSS, the writes a resync of the
//! unchanged clusters makes, and the time from creating one more cluster to its StatefulSet.

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn client() -> Result<Client> {
    let path = repo().join(".local/kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .with_context(|| format!("{} (run make up)", path.display()))?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    config.read_timeout = Some(Duration::from_secs(60));
    Ok(Client::try_from(config)?)
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
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn metric(port: u16, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn cluster(name: &str) -> serde_json::Value {
    json!({"apiVersion": "acid.zalan.do/v1", "kind": "postgresql", "metadata": {"name": name},
        "spec": {"teamId": "acid", "numberOfInstances": 1, "postgresql": {"version": "17"}, "volume": {"size": "1Gi"},
                 "users": {"zalando": ["superuser", "createdb"], "foo_user": []}, "databases": {"foo": "zalando"}}})
}

async fn namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
    for _ in 0..240 {
        if api.get_opt(name).await?.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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

async fn floor(client: &Client, objects: usize) -> Result<Duration> {
    let ns = "bench-floor";
    namespace(client, ns).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    stream::iter(0..objects)
        .map(|i| {
            let api = api.clone();
            async move {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("floor-{i}")),
                        ..Default::default()
                    },
                    data: Some([("k".to_string(), "v".repeat(64))].into()),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm).await.map(|_| ())
            }
        })
        .buffer_unordered(concurrency())
        .try_collect::<Vec<_>>()
        .await?;
    let elapsed = started.elapsed();
    let _ = Api::<Namespace>::all(client.clone())
        .delete(ns, &DeleteParams::default())
        .await;
    Ok(elapsed)
}

/// How the floor writes its objects.
#[derive(Clone, Copy)]
enum Verb {
    /// POST, the cheapest write the API server has.
    Create,
    /// Server-side apply, as the controller writes them (the API server computes managed fields).
    Apply,
}

async fn write<K>(api: Api<K>, object: K, verb: Verb) -> kube::Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match verb {
        Verb::Create => api
            .create(&PostParams::default(), &object)
            .await
            .map(|_| ()),
        Verb::Apply => {
            let name = object.meta().name.clone().unwrap_or_default();
            let params = kube::api::PatchParams::apply("bench-floor").force();
            api.patch(&name, &params, &kube::api::Patch::Apply(&object))
                .await
                .map(|_| ())
        }
    }
}

/// The same objects the controller writes for `n` clusters (built by its own builders), written
/// directly with the same concurrency: the floor that includes what those objects set off in
/// the control plane (pods, volumes, kwok), unlike plain ConfigMaps.
async fn floor_same_objects(client: &Client, n: usize, verb: Verb) -> Result<Duration> {
    use k8s_openapi::api::core::v1::{Secret, Service};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let ns = "bench-direct";
    namespace(client, ns).await?;
    let config = common::config::Config::default();
    let mut writes: Vec<futures::future::BoxFuture<'static, kube::Result<()>>> = Vec::new();
    for i in 0..n {
        let mut pg: common::crd::Postgresql =
            serde_json::from_value(cluster(&format!("direct-{i}")))?;
        pg.metadata.namespace = Some(ns.into());
        let desired = controller::build::build(&config, &pg, None)?;
        let sts: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
        writes.push(Box::pin(write(sts, desired.statefulset, verb)));
        for service in desired.services {
            let api: Api<Service> = Api::namespaced(client.clone(), ns);
            writes.push(Box::pin(write(api, service, verb)));
        }
        for pdb in desired.pdbs {
            let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
            writes.push(Box::pin(write(api, pdb, verb)));
        }
        for secret in controller::build::secrets(&config, &pg, None) {
            let api: Api<Secret> = Api::namespaced(client.clone(), ns);
            // The controller creates Secrets (never applies them): so does the floor.
            writes.push(Box::pin(write(api, secret, Verb::Create)));
        }
    }
    let started = Instant::now();
    stream::iter(writes)
        .buffer_unordered(concurrency())
        .try_collect::<Vec<_>>()
        .await?;
    let elapsed = started.elapsed();
    // Remove it all (and its pods) before the controller is measured.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete(ns, &DeleteParams::default()).await?;
    for _ in 0..1200 {
        if namespaces.get_opt(ns).await?.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(elapsed)
}

async fn run_size(client: &Client, n: usize) -> Result<()> {
    let floor_time = floor(client, n * WRITES_PER_CLUSTER).await?;
    let same_objects = floor_same_objects(client, n, Verb::Create).await?;
    let same_applied = floor_same_objects(client, n, Verb::Apply).await?;
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
    let controller = Proc(
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
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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
    let writes_before = write_requests(client).await?;
    let started = Instant::now();
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
    let reconciled = |pg: &common::crd::Postgresql| {
        pg.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "Reconciled" && c.status == "True")
            })
    };
    loop {
        let done = pgs
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter(|pg| reconciled(pg))
            .count();
        if done == n {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("only {done} of {n} clusters reconciled after 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let converged = started.elapsed();
    let cpu = common::procstat::cpu_seconds(pid);
    let writes = write_requests(client).await? - writes_before;
    let own_writes = metric(admin, "pg_controller_api_writes_total").unwrap_or(0.0);
    let rss = rss_mib(pid);

    // Pods becoming ready change the status (Creating → Running): wait until that has settled
    // (every cluster Running, or no change for 15 s) before measuring a resync.
    let (mut last, mut since) = (usize::MAX, Instant::now());
    loop {
        let running = pgs
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter(|pg| {
                pg.status.as_ref().is_some_and(|s| {
                    s.postgres_cluster_status == common::crd::postgresql::ClusterStatus::Running
                })
            })
            .count();
        if running != last {
            (last, since) = (running, Instant::now());
        }
        if running == n
            || since.elapsed() > Duration::from_secs(15)
            || started.elapsed() > Duration::from_secs(1800)
        {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let running_after = started.elapsed();
    // A resync of unchanged clusters (resync_period 20s) must write nothing.
    let ours_before = metric(admin, "pg_controller_api_writes_total").unwrap_or(0.0);
    let reconciles_before = metric(admin, "pg_controller_reconciles_total").unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(45)).await;
    let noop_writes = metric(admin, "pg_controller_api_writes_total").unwrap_or(0.0) - ours_before;
    let noop_reconciles =
        metric(admin, "pg_controller_reconciles_total").unwrap_or(0.0) - reconciles_before;

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
    println!(
        "{n} clusters: converged in {:.1}s (controller CPU {cpu:.1}s); floors: {:.1}s for {} ConfigMaps (ratio {:.2}), \
         the same objects written directly {:.1}s created (ratio {:.2}) / {:.1}s server-side applied (ratio {:.2}); \
         {last} of {n} Running after {:.1}s; API server writes {:.1} per cluster (controller's own {:.1}); \
         apply→StatefulSet p50 {:.0} ms (max {:.0} ms) with {n} managed; no-op resync: {noop_writes} writes in {noop_reconciles} reconciles; controller RSS {rss:.1} MiB",
        converged.as_secs_f64(),
        floor_time.as_secs_f64(),
        n * WRITES_PER_CLUSTER,
        converged.as_secs_f64() / floor_time.as_secs_f64(),
        same_objects.as_secs_f64(),
        converged.as_secs_f64() / same_objects.as_secs_f64(),
        same_applied.as_secs_f64(),
        converged.as_secs_f64() / same_applied.as_secs_f64(),
        running_after.as_secs_f64(),
        writes / n as f64,
        own_writes / n as f64,
        p50.as_secs_f64() * 1000.0,
        latencies
            .last()
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or_default(),
    );
    drop(controller);
    let _ = Api::<Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::default())
        .await;
    Ok(())
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
