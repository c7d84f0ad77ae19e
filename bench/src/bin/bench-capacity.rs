//! Capacity floor of the local control plane: how many small objects (ConfigMaps of ~100
//! bytes) per second kube-apiserver accepts with 1, 8 and 32 concurrent clients.
//!
//! Each level runs `--runs` times for `--seconds` each; the median rate is reported. Every
//! client has its own `kube::Client` (own connections). Objects are removed between runs so
//! each run starts from the same state. All traffic goes to 127.0.0.1.
//!
//! Usage: bench-capacity [--runs N] [--seconds S] [--clients 1,8,32]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use e2e::cluster::client_from;
use e2e::{TestNamespace, cluster, eventually_with};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};

struct Args {
    runs: usize,
    seconds: u64,
    clients: Vec<usize>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        runs: 5,
        seconds: 5,
        clients: vec![1, 8, 32],
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--runs" => args.runs = value("--runs")?.parse().context("--runs: not a number")?,
            "--seconds" => {
                args.seconds = value("--seconds")?
                    .parse()
                    .context("--seconds: not a number")?
            }
            "--clients" => {
                args.clients = value("--clients")?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--clients: expected a comma-separated list of numbers")?
            }
            "-h" | "--help" => {
                println!("usage: bench-capacity [--runs N] [--seconds S] [--clients 1,8,32]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if args.runs == 0 || args.seconds == 0 || args.clients.is_empty() || args.clients.contains(&0) {
        bail!("--runs, --seconds and every --clients value must be positive");
    }
    if args.runs > 50 || args.seconds > 120 || args.clients.iter().any(|&c| c > 256) {
        bail!("refusing an unbounded run: at most 50 runs, 120 s each, 256 clients");
    }
    Ok(args)
}

async fn one_run(
    kubeconfig: &std::path::Path,
    ns: &str,
    clients: usize,
    seconds: u64,
    run: usize,
) -> Result<(f64, u64)> {
    let created = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let client = client_from(kubeconfig, None).await?;
        let api: Api<ConfigMap> = Api::namespaced(client, ns);
        let created = created.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("c{clients}-r{run}-w{w}-{i}")),
                        labels: Some([("bench".to_string(), "capacity".to_string())].into()),
                        ..Default::default()
                    },
                    data: Some([("payload".to_string(), "x".repeat(100))].into()),
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &cm).await {
                    Ok(_) => created.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok((
        created.load(Ordering::Relaxed) as f64 / elapsed,
        errors.load(Ordering::Relaxed),
    ))
}

async fn clean(api: &Api<ConfigMap>) -> Result<()> {
    let lp = ListParams::default().labels("bench=capacity");
    api.delete_collection(&DeleteParams::default(), &lp).await?;
    eventually_with(
        "benchmark ConfigMaps to be deleted",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async {
            let left = api.list(&lp.clone().limit(1)).await?;
            if left.items.is_empty() {
                Ok(())
            } else {
                bail!("ConfigMaps remain")
            }
        },
    )
    .await
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let c = cluster().await?;
    let ns = TestNamespace::new(&c, "bench-capacity").await?;
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns.name);
    let version = c.client.apiserver_version().await?;
    println!(
        "bench-capacity: ConfigMap creates/s against kube-apiserver {} on 127.0.0.1; {} runs x {} s per level, median reported",
        version.git_version, args.runs, args.seconds
    );
    println!("| clients | median creates/s | min | max | runs | errors |");
    println!("|--------:|-----------------:|----:|----:|-----:|-------:|");
    for &clients in &args.clients {
        let mut rates = Vec::new();
        let mut errs = 0;
        for run in 0..args.runs {
            let (rate, e) = one_run(&c.kubeconfig, &ns.name, clients, args.seconds, run).await?;
            eprintln!(
                "  clients={clients} run={} rate={rate:.1}/s errors={e}",
                run + 1
            );
            rates.push(rate);
            errs += e;
            clean(&api).await?;
        }
        let min = rates.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = rates.iter().cloned().fold(0.0, f64::max);
        println!(
            "| {clients} | {:.0} | {min:.0} | {max:.0} | {} | {errs} |",
            median(rates.clone()),
            rates.len()
        );
    }
    Ok(())
}
