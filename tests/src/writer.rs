//! PostgreSQL clients of the tests and benchmarks: one-off queries, the writer loop that measures a
//! failover's write gap, and [`ClusterWriter`], the application every end-to-end change scenario
//! runs under (start it before the change, check it after: nothing acknowledged may be lost).
//! Only loopback addresses are ever dialled (pod and Service IPs of the test world are in
//! 127.0.0.0/8); anything else is refused before connecting.

use anyhow::{Context, Result, bail, ensure};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_postgres::{Client, NoTls};

/// How long a connection attempt and one statement of the writer may take.
const WRITER_TIMEOUT: Duration = Duration::from_millis(1000);

/// Connects as postgres to `ip`:5432 within `timeout`.
pub async fn connect(ip: &str, password: &str, timeout: Duration) -> Result<Client> {
    connect_as(ip, "postgres", password, "postgres", None, timeout).await
}

/// Connects as `user` to `database` on `ip`:5432 (a loopback address only) within `timeout`;
/// the session shows `application` as its `application_name` when given.
pub async fn connect_as(
    ip: &str,
    user: &str,
    password: &str,
    database: &str,
    application: Option<&str>,
    timeout: Duration,
) -> Result<Client> {
    let addr: Ipv4Addr = ip.parse().with_context(|| format!("address {ip:?}"))?;
    if !addr.is_loopback() {
        bail!("refusing to connect to {addr}: outside 127.0.0.0/8");
    }
    let mut config = tokio_postgres::Config::new();
    config
        .hostaddr(addr.into())
        .port(5432)
        .user(user)
        .password(password)
        .dbname(database)
        .connect_timeout(timeout);
    if let Some(name) = application {
        config.application_name(name);
    }
    let (client, connection) = tokio::time::timeout(timeout, config.connect(NoTls))
        .await
        .with_context(|| format!("connecting to {ip} took over {timeout:?}"))??;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// One statement on a fresh connection; the first column of the first row as text.
pub async fn query_text(ip: &str, password: &str, sql: &str) -> Result<String> {
    let client = connect(ip, password, Duration::from_secs(3)).await?;
    let rows = tokio::time::timeout(Duration::from_secs(10), client.simple_query(sql))
        .await
        .context("query took over 10 s")??;
    Ok(rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_default())
}

/// Streaming replicas of the primary at `ip` (an error when it is not a primary). A replica's
/// `pg_basebackup -X stream` also shows as `streaming` while the replica is still being created
/// (and so cannot take over yet): it does not count.
pub async fn streaming_replicas(ip: &str, password: &str) -> Result<usize> {
    let text = query_text(
        ip,
        password,
        "select case when pg_is_in_recovery() then -1 else \
         (select count(*) from pg_stat_replication where state = 'streaming' \
          and application_name <> 'pg_basebackup') end",
    )
    .await?;
    match text.parse::<i64>()? {
        -1 => bail!("{ip} is in recovery"),
        n => Ok(n as usize),
    }
}

/// An acknowledged insert: its id, when its commit returned, the server that took it.
#[derive(Debug, Clone)]
pub struct Ack {
    pub id: i64,
    pub at: Instant,
    pub server: String,
}

/// What the writer saw.
#[derive(Debug, Default)]
pub struct WriteLog {
    pub acked: Vec<Ack>,
    pub attempts: u64,
    pub failures: u64,
    pub last_failure: Option<Instant>,
}

impl WriteLog {
    /// The outage after `at`: the longest time between two consecutive acknowledged writes
    /// the second of which came after `at`, as (last write before it, first write after it).
    pub fn outage_after(&self, at: Instant) -> Option<(Instant, Instant)> {
        self.acked
            .windows(2)
            .filter(|w| w[1].at > at)
            .map(|w| (w[0].at, w[1].at))
            .max_by_key(|(before, after)| *after - *before)
    }

    /// The longest time between two consecutive acknowledged writes.
    pub fn longest_gap(&self) -> Duration {
        self.acked
            .windows(2)
            .map(|w| w[1].at - w[0].at)
            .max()
            .unwrap_or_default()
    }
}

/// A loop inserting a new id every `interval` through `ip` (the master Service) on one
/// connection, reconnecting after any failure with a short timeout.
pub struct Writer {
    pub log: Arc<Mutex<WriteLog>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    pub fn start(ip: String, password: String, interval: Duration) -> Writer {
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let (stop, mut stopped) = watch::channel(false);
        let shared = log.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut client: Option<Client> = None;
            let mut next_id: i64 = 1;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => return,
                }
                let id = next_id;
                next_id += 1;
                shared.lock().expect("log").attempts += 1;
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    client = connect(&ip, &password, WRITER_TIMEOUT).await.ok();
                }
                let server = match &client {
                    Some(c) => {
                        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
                        let insert = c.query_one(
                            "insert into bench_writes(id) values ($1) \
                             returning host(inet_server_addr())",
                            &params,
                        );
                        match tokio::time::timeout(WRITER_TIMEOUT, insert).await {
                            Ok(Ok(row)) => row.try_get::<_, Option<String>>(0).ok(),
                            _ => None,
                        }
                    }
                    None => None,
                };
                let mut log = shared.lock().expect("log");
                if let Some(server) = server {
                    let server = server.unwrap_or_default();
                    log.acked.push(Ack {
                        id,
                        at: Instant::now(),
                        server,
                    });
                } else {
                    log.failures += 1;
                    log.last_failure = Some(Instant::now());
                    client = None;
                }
            }
        });
        Writer { log, stop, task }
    }

    /// Waits until a write failed after `at` and writes then went on without failing for
    /// `settle`, or `bound` passed since `at`; whether that happened within the bound.
    pub async fn wait_resumed(&self, at: Instant, settle: Duration, bound: Duration) -> bool {
        loop {
            let (failed, acked) = {
                let log = self.log.lock().expect("log");
                (log.last_failure, log.acked.last().map(|w| w.at))
            };
            let resumed = failed
                .is_some_and(|f| f > at && f.elapsed() >= settle && acked.is_some_and(|a| a > f));
            if resumed {
                return true;
            }
            if at.elapsed() > bound {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a row is acknowledged after `at`, for at most `bound`; whether one was.
    pub async fn acked_after(&self, at: Instant, bound: Duration) -> bool {
        loop {
            let last = self.log.lock().expect("log").acked.last().map(|a| a.at);
            if last.is_some_and(|a| a > at) {
                return true;
            }
            if at.elapsed() > bound {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) -> WriteLog {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        Arc::try_unwrap(self.log)
            .map(|m| m.into_inner().expect("log"))
            .unwrap_or_default()
    }
}

/// Creates the writer's table, empty, on the primary at `ip` (each writer counts from id 1).
pub async fn create_table(ip: &str, password: &str) -> Result<()> {
    query_text(
        ip,
        password,
        "drop table if exists bench_writes; \
         create table bench_writes(id bigint primary key, at timestamptz default now())",
    )
    .await
    .map(|_| ())
}

/// The acknowledged ids missing from the primary at `ip`.
pub async fn lost_writes(ip: &str, password: &str, log: &WriteLog) -> Result<Vec<Ack>> {
    let client = connect(ip, password, Duration::from_secs(3)).await?;
    let primary: bool = !client
        .query_one("select pg_is_in_recovery()", &[])
        .await?
        .get::<_, bool>(0);
    if !primary {
        bail!("{ip} is not a primary");
    }
    let rows = client.query("select id from bench_writes", &[]).await?;
    let present: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    Ok(log
        .acked
        .iter()
        .filter(|a| !present.contains(&a.id))
        .cloned()
        .collect())
}

/// The interval of the application-like writer every change scenario of issue 14 runs under.
pub const INTERVAL: Duration = Duration::from_millis(10);

/// How long the writer may take to get its first row through a freshly started Service, and to
/// get one through again when checked after a change (a restarted single member included).
const RESUME_TIMEOUT: Duration = Duration::from_secs(90);

/// The longest write gap a change that restarts nothing may cause: 1 s, the writer's statement
/// timeout. Measured on this 2-core machine under a load average of 2.5: 0.05–0.35 s while nothing
/// restarts (ttl, slots, a StatefulSet replacement, a lazy image change); a switchover 1.4–1.7 s, a
/// single member's pod recreation 2.9–3.7 s, but a PostgreSQL restart of the primary 0.6–1.6 s. So
/// the bound is three times the longest healthy gap and below every recreation, and a restart,
/// which may be shorter, is caught by its failed attempts instead: it breaks the writer's
/// connection, while a healthy writer never failed once (see
/// [`WriteReport::ensure_uninterrupted`]).
pub const NO_RESTART_GAP: Duration = Duration::from_secs(1);

/// An application writing one row every 10 ms through the master Service of one cluster while
/// a test changes it: [`ClusterWriter::start`] before the change, [`ClusterWriter::check`]
/// after it. Each cluster gets a fresh `bench_writes` table (ids count from 1).
pub struct ClusterWriter {
    writer: Writer,
    ns: String,
    cluster: String,
    password: String,
    started: Instant,
}

/// What the writer of a scenario saw, once every acknowledged row was found on the master.
#[derive(Debug, Clone)]
pub struct WriteReport {
    /// Rows whose commit was acknowledged (all of them are on the master).
    pub acked: usize,
    /// Attempts that failed (connection refused or broken, or over the 1 s timeout).
    pub failures: u64,
    /// The longest time between two acknowledged rows.
    pub longest_gap: Duration,
    /// The servers (pod IPs) that acknowledged rows, in the order they first did.
    pub servers: Vec<String>,
    /// The master pod the rows were checked on.
    pub master: String,
}

impl WriteReport {
    /// Fails unless the writer saw no outage: no failed attempt (a restart of the master or a
    /// broken Service breaks the connection, however short) and no gap of [`NO_RESTART_GAP`]
    /// or more. For the changes that restart nothing.
    pub fn ensure_uninterrupted(&self, scenario: &str) -> Result<()> {
        uninterrupted(scenario, self.longest_gap, self.failures)
    }
}

fn uninterrupted(scenario: &str, gap: Duration, failures: u64) -> Result<()> {
    ensure!(
        failures == 0 && gap < NO_RESTART_GAP,
        "{scenario}: the application saw an outage while nothing should restart: {failures} \
         failed attempts, longest gap {gap:?} (bound {NO_RESTART_GAP:?})"
    );
    Ok(())
}

impl ClusterWriter {
    /// Creates the table on the cluster's writable master, starts the writer on the master
    /// Service's ClusterIP and waits for its first acknowledged row (a writer that never gets
    /// through fails here rather than passing a scenario with nothing written).
    pub async fn start(ns: &str, cluster: &str, password: &str) -> Result<ClusterWriter> {
        let (_, master_ip, _) = crate::patroni::writable_master(ns, cluster).await?;
        create_table(&master_ip, password).await?;
        let service = crate::steady::master_service_ip(ns, cluster).await?;
        let writer = Writer::start(service.clone(), password.to_string(), INTERVAL);
        let started = Instant::now();
        if !writer.acked_after(started, RESUME_TIMEOUT).await {
            let log = writer.stop().await;
            bail!(
                "the writer through the master Service {service} of {cluster} got no row in \
                 within {RESUME_TIMEOUT:?} ({} attempts, {} failed)",
                log.attempts,
                log.failures
            );
        }
        Ok(ClusterWriter {
            writer,
            ns: ns.to_string(),
            cluster: cluster.to_string(),
            password: password.to_string(),
            started,
        })
    }

    /// Fails unless the application has seen no outage so far: no failed attempt and no time
    /// without an acknowledged row (an ongoing one included) of [`NO_RESTART_GAP`] or more.
    /// Prints the longest gap.
    pub fn ensure_uninterrupted_so_far(&self, scenario: &str) -> Result<()> {
        let log = self.writer.log.lock().expect("log");
        let ongoing = log.acked.last().map(|a| a.at.elapsed()).unwrap_or_default();
        let gap = log.longest_gap().max(ongoing);
        eprintln!(
            "WRITER {scenario} (so far): {} rows acknowledged, {} failed attempts, longest gap \
             {gap:.3?}",
            log.acked.len(),
            log.failures
        );
        uninterrupted(scenario, gap, log.failures)
    }

    /// Waits until writes go through again (a row acknowledged after this call), stops the
    /// writer, and fails unless every acknowledged row is on the cluster's current writable
    /// master. Prints one line `WRITER <scenario>: …` with the longest gap.
    pub async fn check(self, scenario: &str) -> Result<WriteReport> {
        let now = Instant::now();
        let resumed = self.writer.acked_after(now, RESUME_TIMEOUT).await;
        let elapsed = self.started.elapsed();
        let log = self.writer.stop().await;
        ensure!(
            resumed,
            "{scenario}: no row acknowledged within {RESUME_TIMEOUT:?} after the change \
             ({} acknowledged before, {} failed attempts)",
            log.acked.len(),
            log.failures
        );
        let (master, master_ip, _) =
            crate::patroni::writable_master(&self.ns, &self.cluster).await?;
        let lost = lost_writes(&master_ip, &self.password, &log).await?;
        let mut servers: Vec<String> = Vec::new();
        for ack in &log.acked {
            if !servers.contains(&ack.server) {
                servers.push(ack.server.clone());
            }
        }
        let report = WriteReport {
            acked: log.acked.len(),
            failures: log.failures,
            longest_gap: log.longest_gap(),
            servers,
            master,
        };
        eprintln!(
            "WRITER {scenario}: {} rows acknowledged in {elapsed:.1?} by {:?}, {} failed \
             attempts, longest gap {:.3?}, {} lost on {}",
            report.acked,
            report.servers,
            report.failures,
            report.longest_gap,
            lost.len(),
            report.master
        );
        if !lost.is_empty() {
            let first: Vec<(i64, &str)> = lost
                .iter()
                .take(20)
                .map(|a| (a.id, a.server.as_str()))
                .collect();
            bail!(
                "{scenario}: {} acknowledged rows missing on the master {} (first ids and the \
                 servers that acknowledged them: {first:?})",
                lost.len(),
                report.master
            );
        }
        Ok(report)
    }
}
