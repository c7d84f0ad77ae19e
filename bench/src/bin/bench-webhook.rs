//! `make bench-webhook`: starts the release webhook as its own process on loopback and measures it
//! from this process over TLS keep-alive connections with a realistic complete manifest:
//! throughput at saturation, latency percentiles at fixed arrival rates (measured from the
//! scheduled send time, so a slow answer also delays the count), and the server's RSS.

use bytes::Bytes;
use e2e::tls_client::{Connection, tls_config};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PHASE: Duration = Duration::from_secs(5);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_kib(pid: u32) -> (u64, u64) {
    (
        bench::procstat::status_kib(pid, "VmRSS"),
        bench::procstat::status_kib(pid, "VmHWM"),
    )
}

fn body() -> Bytes {
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/complete-postgres-manifest.yaml"
    ))
    .expect("the complete manifest is in manifests/");
    let mut object: serde_json::Value = serde_yaml::from_str(&manifest).unwrap();
    let spec = object["spec"].as_object_mut().unwrap();
    spec.remove("clone"); // a clone would add an API lookup, which this benchmark does not measure
    spec.remove("standby");
    object.as_object_mut().unwrap().remove("status");
    object["metadata"]["namespace"] = "bench".into();
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-000000000001",
            "kind": {"group": "acid.zalan.do", "version": "v1", "kind": "postgresql"},
            "resource": {"group": "acid.zalan.do", "version": "v1", "resource": "postgresqls"},
            "name": "acid-test-cluster", "namespace": "bench", "operation": "UPDATE",
            "userInfo": {"username": "bench"}, "object": object, "oldObject": object, "dryRun": false
        }
    });
    Bytes::from(review.to_string())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[index] as f64 / 1000.0
}

async fn connections(addr: SocketAddr, ca: &[u8], n: usize) -> Vec<Connection> {
    let config = tls_config(ca).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            Connection::open(addr, config.clone(), "127.0.0.1")
                .await
                .unwrap(),
        );
    }
    out
}

async fn saturate(addr: SocketAddr, ca: &[u8], body: Bytes, conns: usize) -> (f64, usize) {
    let deadline = Instant::now() + PHASE;
    let mut tasks = Vec::new();
    for (i, mut conn) in connections(addr, ca, conns).await.into_iter().enumerate() {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let (mut done, mut errors) = (0usize, 0usize);
            let path = if i % 2 == 0 { "/validate" } else { "/mutate" };
            while Instant::now() < deadline {
                match conn.post(path, body.clone()).await {
                    Ok((status, _)) if status == 200 => done += 1,
                    _ => errors += 1,
                }
            }
            (done, errors)
        }));
    }
    let started = Instant::now();
    let (mut done, mut errors) = (0, 0);
    for task in tasks {
        let (d, e) = task.await.unwrap();
        done += d;
        errors += e;
    }
    (
        done as f64 / started.elapsed().as_secs_f64().max(PHASE.as_secs_f64()),
        errors,
    )
}

/// Sends at a fixed arrival rate. A plain thread paces the arrivals (its sleeps are precise to
/// microseconds, where tokio's timer has millisecond granularity) and hands each scheduled instant
/// to an idle connection; latency is measured from that instant, so a slow answer that delays the
/// next send is still counted (no coordinated omission).
async fn fixed_rate(
    addr: SocketAddr,
    ca: &[u8],
    body: Bytes,
    rate: u64,
    conns: usize,
) -> (Vec<u64>, usize) {
    let total = (rate as f64 * PHASE.as_secs_f64()) as u64;
    let (tx, rx) = async_channel(total as usize);
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let pacer = std::thread::spawn(move || {
        let start = Instant::now() + Duration::from_millis(20);
        for n in 0..total {
            let scheduled = start + interval * n as u32;
            if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if tx.send_blocking(scheduled).is_err() {
                break;
            }
        }
    });
    let mut tasks = Vec::new();
    for mut conn in connections(addr, ca, conns).await {
        let (rx, body) = (rx.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0);
            while let Ok(scheduled) = rx.recv().await {
                match conn.post("/validate", body.clone()).await {
                    Ok((status, _)) if status == 200 => {
                        latencies.push(scheduled.elapsed().as_micros() as u64)
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    drop(rx);
    let (mut all, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (l, e) = task.await.unwrap();
        all.extend(l);
        errors += e;
    }
    pacer.join().unwrap();
    all.sort_unstable();
    (all, errors)
}

fn async_channel(capacity: usize) -> (Pacer, Arrivals) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
    (Pacer(tx), Arrivals(Arc::new(tokio::sync::Mutex::new(rx))))
}

/// Sending side of the arrivals, used from the pacing thread.
struct Pacer(tokio::sync::mpsc::Sender<Instant>);

impl Pacer {
    fn send_blocking(&self, at: Instant) -> Result<(), ()> {
        self.0.blocking_send(at).map_err(|_| ())
    }
}

/// Receiving side shared by the connections: whichever is idle takes the next arrival.
#[derive(Clone)]
struct Arrivals(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Instant>>>);

impl Arrivals {
    async fn recv(&self) -> Result<Instant, ()> {
        self.0.lock().await.recv().await.ok_or(())
    }
}

fn main() -> anyhow::Result<()> {
    let exe = std::env::var_os("WEBHOOK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .unwrap()
                .parent()
                .unwrap()
                .join("webhook")
        });
    let dir = std::env::temp_dir().join(format!("pg-webhook-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let issued = certs::issue(&certs::Request {
        service: "bench".into(),
        namespace: "bench".into(),
        dns_names: vec![],
        ip_addresses: vec!["127.0.0.1".parse()?],
        days: 1,
    })?;
    std::fs::write(dir.join("tls.crt"), &issued.tls_cert)?;
    std::fs::write(dir.join("tls.key"), &issued.tls_key)?;
    let (port, admin) = (free_port(), free_port());
    let server = bench::procstat::KillOnDrop(
        Command::new(&exe)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin-listen",
                &format!("127.0.0.1:{admin}"),
            ])
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .env_remove("CONFIG_MAP_NAME")
            .env_remove("POSTGRES_OPERATOR_CONFIGURATION_OBJECT")
            .env("KUBECONFIG", dir.join("no-kubeconfig"))
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot start {}: {e} (build it with cargo build --release -p webhook)",
                    exe.display()
                )
            })?,
    );
    let pid = server.0.id();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let ca = Arc::new(issued.ca_cert.into_bytes());
    let body = body();
    runtime.block_on(async {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        println!("webhook benchmark: {} ({} bytes per review), {cpus} CPUs shared by client and server", exe.display(), body.len());
        let (idle_rss, _) = rss_kib(pid);
        println!("RSS idle: {:.1} MiB", idle_rss as f64 / 1024.0);
        // Warm-up.
        let _ = saturate(addr, &ca, body.clone(), 4).await;
        for conns in [8, 32] {
            let cpu_before = bench::procstat::cpu_seconds(pid);
            let (rps, errors) = saturate(addr, &ca, body.clone(), conns).await;
            let server_cpu = bench::procstat::cpu_seconds(pid) - cpu_before;
            let (rss, peak) = rss_kib(pid);
            println!(
                "saturation, {conns} connections: {rps:.0} reviews/s, {errors} errors, server CPU {:.0} us/review, RSS {:.1} MiB (peak {:.1} MiB)",
                server_cpu * 1e6 / (rps * PHASE.as_secs_f64()),
                rss as f64 / 1024.0,
                peak as f64 / 1024.0
            );
        }
        for rate in [1000, 5000] {
            let (latencies, errors) = fixed_rate(addr, &ca, body.clone(), rate, 16).await;
            let (rss, peak) = rss_kib(pid);
            println!(
                "{rate} reviews/s for {}s: {} answered, {errors} errors, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms, RSS {:.1} MiB (peak {:.1} MiB)",
                PHASE.as_secs(),
                latencies.len(),
                percentile(&latencies, 50.0),
                percentile(&latencies, 99.0),
                percentile(&latencies, 99.9),
                percentile(&latencies, 100.0),
                rss as f64 / 1024.0,
                peak as f64 / 1024.0
            );
        }
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
