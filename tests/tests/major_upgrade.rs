//! Major version upgrades (issue 14) on real Patroni + PostgreSQL members: the controller runs
//! Spilo's `inplace_upgrade.py` through `pods/exec`, which the pod runner answers with a real
//! `pg_upgrade` (world/spilo-scripts):
//!
//! - a two-member cluster on 14 raised to 15 while a client writes a row every 10 ms through
//!   the master Service: the pods roll, the primary is upgraded, both members run 15 with every
//!   row and every acknowledged write, the success annotation and Event; then a table with a
//!   `regproc` column (which pg_upgrade refuses) makes the raise to 16 fail: the failure
//!   annotation, a Warning with pg_upgrade's reason, the cluster still on 15 with its rows and
//!   no second attempt; with the table dropped and the annotation removed, 16 succeeds;
//! - a maintenance window that opens in two minutes: the raised version waits (no pod
//!   recreated, `PGVERSION` unchanged, an Event saying until when), then runs once it opens.

use anyhow::{Result, bail, ensure};
use e2e::command::kubectl;
use e2e::events::notes_with_reason;
use e2e::eventually::eventually_with;
use e2e::patch::{kubectl_apply, patch_postgresql};
use e2e::patroni::{MAJOR, TIMEOUT, json, manifest, password, setup, sql};
use e2e::steady::{master_service_ip, steady};
use e2e::writer::{Writer, create_table, lost_writes};
use serde_json::{Value, json as j};
use std::time::Duration;

const POLL: Duration = Duration::from_secs(1);
const SUCCESS: &str = "last-major-upgrade-success";
const FAILURE: &str = "last-major-upgrade-failure";
const REASON: &str = "MajorVersionUpgrade";

/// The test manifest on `version`, with `extra` appended to its spec.
fn on_version(name: &str, instances: i32, version: &str, extra: &str) -> String {
    let yaml = manifest(name, instances).replace(
        &format!("version: \"{MAJOR}\""),
        &format!("version: \"{version}\""),
    );
    format!("{yaml}{extra}")
}

async fn annotations(ns: &str, cluster: &str) -> Result<Value> {
    Ok(json(&["get", "postgresql", cluster, "-n", ns]).await?["metadata"]["annotations"].clone())
}

/// Waits until the `postgresql` carries `annotation`; waiting for success, a failure ends the
/// wait at once (a success annotation stays after a later failure: Zalando only adds them).
async fn outcome(ns: &str, cluster: &str, annotation: &str, within: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let a = annotations(ns, cluster).await?;
        if a[annotation].is_string() {
            return Ok(());
        }
        let failed = annotation == SUCCESS && a[FAILURE].is_string();
        if failed || std::time::Instant::now() > deadline {
            let notes = notes_with_reason(ns, REASON).await?;
            bail!("waiting for {annotation}: annotations {a}, Events {notes:#?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn major(ip: &str, pw: &str) -> Result<u32> {
    Ok(sql(ip, pw, "show server_version_num")
        .await?
        .trim()
        .parse::<u32>()?
        / 10_000)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The pods' uids and their postgres container's `PGVERSION`.
async fn pod_versions(ns: &str, cluster: &str) -> Result<Vec<(String, String)>> {
    let list = json(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        &format!("cluster-name={cluster}"),
    ])
    .await?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let env = p["spec"]["containers"][0]["env"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let version = env
                .iter()
                .find(|e| e["name"] == "PGVERSION")
                .and_then(|e| e["value"].as_str())
                .unwrap_or_default()
                .to_string();
            (
                p["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                version,
            )
        })
        .collect())
}

#[tokio::test]
async fn a_raised_version_is_upgraded_in_place_and_a_refused_one_keeps_the_old() -> Result<()> {
    const C: &str = "acid-upgrade";
    let (ns, _controller) = setup("upgrade").await?;
    let n = ns.name.as_str();
    kubectl_apply(n, &on_version(C, 2, "14", "")).await?;
    let pw = eventually_with("the postgres Secret", TIMEOUT, POLL, || password(n, C)).await?;
    let before = steady(n, C, &pw, 1).await?;
    ensure!(major(&before.master_ip, &pw).await? == 14);
    sql(
        &before.master_ip,
        &pw,
        "create table kept as select g as id, md5(g::text) as v from generate_series(1, 1000) g",
    )
    .await?;

    // An application writing a row every 10 ms through the master Service meanwhile.
    create_table(&before.master_ip, &pw).await?;
    let writer = Writer::start(
        master_service_ip(n, C).await?,
        pw.clone(),
        Duration::from_millis(10),
    );
    patch_postgresql(n, C, &j!({"spec": {"postgresql": {"version": "15"}}})).await?;
    outcome(n, C, SUCCESS, TIMEOUT * 4).await?;
    let after = steady(n, C, &pw, 1).await?;
    // Writes go on through the Service once the upgraded primary runs.
    let resumed = std::time::Instant::now();
    eventually_with("writes after the upgrade", TIMEOUT, POLL, || async {
        let log = writer.log.lock().expect("log");
        ensure!(
            log.acked.last().is_some_and(|a| a.at > resumed),
            "no write acknowledged yet"
        );
        Ok(())
    })
    .await?;
    let log = writer.stop().await;
    let lost = lost_writes(&after.master_ip, &pw, &log).await?;
    eprintln!(
        "UPGRADE 14 -> 15, 2 members: longest write gap {:?}, {} writes acknowledged, {} failed, {} lost",
        log.longest_gap(),
        log.acked.len(),
        log.failures,
        lost.len()
    );
    ensure!(
        lost.is_empty(),
        "acknowledged writes lost in the upgrade: {lost:?}"
    );
    for ip in std::iter::once(&after.master_ip).chain(after.replicas.iter().map(|(_, ip)| ip)) {
        ensure!(major(ip, &pw).await? == 15, "{ip} does not run 15");
        let rows = sql(ip, &pw, "select count(*) from kept").await?;
        ensure!(rows.trim() == "1000", "{ip} has {rows} rows");
    }
    let notes = notes_with_reason(n, REASON).await?;
    ensure!(
        notes
            .iter()
            .any(|m| m.contains("from major 14 to 15 succeeded")),
        "{notes:#?}"
    );

    // pg_upgrade refuses user tables with reg* columns (other than regclass, regrole, regtype).
    sql(
        &after.master_ip,
        &pw,
        "create table refused (p regproc); insert into refused values ('now'::regproc)",
    )
    .await?;
    patch_postgresql(n, C, &j!({"spec": {"postgresql": {"version": "16"}}})).await?;
    outcome(n, C, FAILURE, TIMEOUT * 4).await?;
    let notes = notes_with_reason(n, REASON).await?;
    let failed: Vec<&String> = notes
        .iter()
        .filter(|m| m.contains("from major 15 to 16 failed"))
        .collect();
    ensure!(failed.len() == 1, "{notes:#?}");
    ensure!(
        failed[0].contains("reg* data types"),
        "the Event does not give pg_upgrade's reason: {}",
        failed[0]
    );
    let kept = steady(n, C, &pw, 1).await?;
    ensure!(
        major(&kept.master_ip, &pw).await? == 15,
        "the failed upgrade left 15"
    );
    let rows = sql(&kept.master_ip, &pw, "select count(*) from kept").await?;
    ensure!(
        rows.trim() == "1000",
        "{rows} rows after the failed upgrade"
    );
    // The failure annotation blocks another attempt.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let attempts = notes_with_reason(n, REASON)
        .await?
        .iter()
        .filter(|m| m.starts_with("Starting the upgrade from major 15 to 16"))
        .count();
    ensure!(attempts == 1, "{attempts} attempts");

    // Mended and the annotation removed by hand: the next attempt succeeds.
    sql(&kept.master_ip, &pw, "drop table refused").await?;
    kubectl(["annotate", "postgresql", C, "-n", n, &format!("{FAILURE}-")])
        .await?
        .ok()?;
    eventually_with(
        "the second upgrade's success",
        TIMEOUT * 4,
        POLL,
        || async {
            let notes = notes_with_reason(n, REASON).await?;
            ensure!(
                notes
                    .iter()
                    .any(|m| m.contains("from major 15 to 16 succeeded")),
                "{notes:#?}"
            );
            Ok(())
        },
    )
    .await?;
    let last = steady(n, C, &pw, 1).await?;
    for ip in std::iter::once(&last.master_ip).chain(last.replicas.iter().map(|(_, ip)| ip)) {
        ensure!(major(ip, &pw).await? == 16, "{ip} does not run 16");
        let rows = sql(ip, &pw, "select count(*) from kept").await?;
        ensure!(rows.trim() == "1000", "{ip} has {rows} rows");
    }
    Ok(())
}

#[tokio::test]
async fn outside_the_maintenance_window_nothing_happens_until_it_opens() -> Result<()> {
    const C: &str = "acid-window";
    let (ns, _controller) = setup("upgrade-window").await?;
    let n = ns.name.as_str();
    kubectl_apply(n, &on_version(C, 1, "14", "")).await?;
    let pw = eventually_with("the postgres Secret", TIMEOUT, POLL, || password(n, C)).await?;
    steady(n, C, &pw, 0).await?;
    let before = pod_versions(n, C).await?;
    ensure!(before.iter().all(|(_, v)| v == "14"), "{before:?}");

    // A window from the whole minute after next, for 20 minutes (the same day, UTC).
    let mut now = unix_now();
    if (now / 60) % 1440 > 1440 - 23 {
        tokio::time::sleep(Duration::from_secs(25 * 60)).await;
        now = unix_now();
    }
    let start = (now / 60 + 2) * 60;
    let hhmm = |secs: u64| format!("{:02}:{:02}", (secs / 3600) % 24, (secs / 60) % 60);
    let window = format!("{}-{}", hhmm(start), hhmm(start + 20 * 60));
    patch_postgresql(
        n,
        C,
        &j!({"spec": {"maintenanceWindows": [window], "postgresql": {"version": "15"}}}),
    )
    .await?;
    eventually_with("the wait's Event", TIMEOUT, POLL, || async {
        let notes = notes_with_reason(n, REASON).await?;
        ensure!(
            notes
                .iter()
                .any(|m| m.contains("outside the maintenance windows")),
            "{notes:#?}"
        );
        Ok(())
    })
    .await?;
    // Until the window opens: the same pod, still told 14, no outcome.
    let opens = Duration::from_secs(start.saturating_sub(unix_now()));
    tokio::time::sleep(opens.saturating_sub(Duration::from_secs(10))).await;
    ensure!(
        pod_versions(n, C).await? == before,
        "changed before the window"
    );
    let a = annotations(n, C).await?;
    ensure!(!a[SUCCESS].is_string() && !a[FAILURE].is_string(), "{a}");

    outcome(n, C, SUCCESS, TIMEOUT * 4).await?;
    let after = pod_versions(n, C).await?;
    ensure!(
        after.len() == 1 && after[0].0 != before[0].0 && after[0].1 == "15",
        "{after:?}"
    );
    let master = steady(n, C, &pw, 0).await?;
    ensure!(major(&master.master_ip, &pw).await? == 15);
    Ok(())
}
