//! Changes of Patroni's dynamic configuration and of PostgreSQL parameters reaching a running
//! cluster of real Patroni + PostgreSQL members (`controller/src/dcs`), one 2-member cluster
//! per test (the tests may run in parallel, each with its own namespace and controller):
//!
//! - a `spec.patroni.ttl` change lands in Patroni's DCS (the `<cluster>-config` ConfigMap) and
//!   restarts nothing: the pods keep their uids and PostgreSQL its `pg_postmaster_start_time()`;
//!   a manifest slot is set and remembered in the `postgresql`'s annotation, and removed from the
//!   DCS once removed from the manifest, while a slot made behind the operator's back stays;
//! - a `max_connections` increase restarts each member once, the replica before the primary,
//!   and `SHOW max_connections` shows the new value on both;
//! - a `max_connections` decrease restarts the primary first.
//!
//! Each change runs under a client writing a row every 10 ms through the master Service
//! (`e2e::writer::ClusterWriter`): no acknowledged row is lost, and where nothing restarts
//! (`ttl`, slots) no write fails and none waits 1 s (`WriteReport::ensure_uninterrupted`).
//!
//! `loop_wait` is 5 s so the waits after the patch (loop_wait + 2 s) and between restarts stay
//! short.

use anyhow::{Context, Result, bail, ensure};
use e2e::events::notes_with_reason;
use e2e::eventually::eventually_with;
use e2e::patch::{kubectl_apply, patch_postgresql};
use e2e::patroni::{
    TIMEOUT, json, manifest_with, pods, pods_with_role, setup, sql, wait_streaming, writable_master,
};
use e2e::writer::ClusterWriter;
use serde_json::Value;
use std::time::Duration;

const PATRONI: &str = "    ttl: 30\n    loop_wait: 5\n    retry_timeout: 5\n";
const SLOTS_ANNOTATION: &str = "postgres-operator.acid.zalan.do/patroni-slots";
const POLL: Duration = Duration::from_millis(500);
/// How long a change may take to reach the members: the reconcile, loop_wait + 2 s, two
/// restarts with loop_wait after each, on a loaded machine.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(150);

/// One member: pod, IP, uid, and when its PostgreSQL started.
#[derive(Debug, Clone, PartialEq)]
struct Member {
    pod: String,
    ip: String,
    uid: String,
    started: f64,
}

/// Patroni's dynamic configuration as the `<cluster>-config` ConfigMap carries it.
async fn dcs(ns: &str, cluster: &str) -> Result<Value> {
    let cm = json(&["get", "configmap", &format!("{cluster}-config"), "-n", ns]).await?;
    let text = cm["metadata"]["annotations"]["config"]
        .as_str()
        .context("no config annotation yet")?;
    Ok(serde_json::from_str(text)?)
}

async fn started(ip: &str, pw: &str) -> Result<f64> {
    let out = sql(
        ip,
        pw,
        "select extract(epoch from pg_postmaster_start_time())",
    )
    .await?;
    out.parse()
        .with_context(|| format!("pg_postmaster_start_time of {ip}: {out:?}"))
}

/// The members, sorted by pod name.
async fn members(ns: &str, cluster: &str, pw: &str) -> Result<Vec<Member>> {
    let mut out = Vec::new();
    for (pod, ip, uid) in pods(ns, cluster).await? {
        let started = started(&ip, pw).await?;
        out.push(Member {
            pod,
            ip,
            uid,
            started,
        });
    }
    Ok(out)
}

/// Creates the 2-member cluster and waits until it streams and the controller's first sync of
/// Patroni's configuration is done (it writes Zalando's `failsafe_mode: false`); returns the
/// password, the master's pod name and the members, stable for a few seconds.
async fn cluster(ns: &str, cluster: &str) -> Result<(String, String, Vec<Member>)> {
    kubectl_apply(ns, &manifest_with(cluster, 2, PATRONI)).await?;
    let (master, master_ip, pw) = writable_master(ns, cluster).await?;
    wait_streaming(&master_ip, &pw, 1).await?;
    eventually_with("the first Patroni config sync", TIMEOUT, POLL, || async {
        let config = dcs(ns, cluster).await?;
        ensure!(
            config["failsafe_mode"] == Value::Bool(false),
            "failsafe_mode not written yet: {config}"
        );
        Ok(())
    })
    .await?;
    // Nothing pending restarts meanwhile: the same start times 8 s apart (loop_wait + 3 s).
    let before = members(ns, cluster, &pw).await?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = members(ns, cluster, &pw).await?;
    ensure!(
        before == after,
        "members changed at rest: {before:?} → {after:?}"
    );
    Ok((pw, master, after))
}

/// A merge patch of the cluster's `spec` with `spec`.
async fn patch(ns: &str, cluster: &str, spec: Value) -> Result<()> {
    patch_postgresql(ns, cluster, &serde_json::json!({ "spec": spec })).await
}

async fn show_max_connections(ip: &str, pw: &str) -> Result<String> {
    sql(ip, pw, "show max_connections").await
}

/// The notes of the cluster's Events with reason `Update` (the restarts).
async fn restart_events(ns: &str) -> Result<Vec<String>> {
    notes_with_reason(ns, "Update").await
}

/// Changes `max_connections` from its current value by `delta` and waits until both members run
/// with it; returns the members before and after, and the master's pod.
async fn change_max_connections(
    prefix: &str,
    name: &str,
    delta: i64,
) -> Result<(Vec<Member>, Vec<Member>, String, Vec<String>)> {
    let (ns, _controller) = setup(prefix).await?;
    let n = ns.name.as_str();
    let (pw, master, before) = cluster(n, name).await?;
    let current: i64 = show_max_connections(&before[0].ip, &pw).await?.parse()?;
    let wanted = (current + delta).to_string();
    let writer = ClusterWriter::start(n, name, &pw).await?;
    patch(
        n,
        name,
        serde_json::json!({"postgresql": {"parameters": {"max_connections": wanted}}}),
    )
    .await?;
    let after = eventually_with(
        &format!("max_connections {wanted} on both members"),
        CHANGE_TIMEOUT,
        POLL,
        || async {
            let now = members(n, name, &pw).await?;
            for m in &now {
                let shown = show_max_connections(&m.ip, &pw).await?;
                ensure!(shown == wanted, "{}: max_connections {shown}", m.pod);
            }
            Ok(now)
        },
    )
    .await?;
    // Settled: nothing restarts any more.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let settled = members(n, name, &pw).await?;
    ensure!(
        settled == after,
        "members restarted again: {after:?} → {settled:?}"
    );
    let masters = pods_with_role(n, name, "master").await?;
    ensure!(
        masters.len() == 1 && masters[0].0 == master,
        "the master moved from {master}: {masters:?}"
    );
    // The primary's restart is an outage for the application, not a loss.
    writer
        .check(&format!("max_connections {current} -> {wanted}, 2 members"))
        .await?;
    let events = restart_events(n).await?;
    eprintln!(
        "{prefix}: {current} → {wanted}: before {before:?}, after {after:?}, events {events:?}"
    );
    for (b, a) in before.iter().zip(&after) {
        ensure!(b.uid == a.uid, "{} was recreated", b.pod);
        ensure!(a.started > b.started, "{} was not restarted", b.pod);
    }
    Ok((before, after, master, events))
}

/// Adds the slot `foreign` to the DCS behind the operator's back (`PATCH /config` with curl to
/// a member's pod IP, inside 127.0.0.0/8).
async fn foreign_slot(ip: &str) -> Result<()> {
    ensure!(ip.starts_with("127."), "pod IP {ip} outside loopback");
    let out = tokio::process::Command::new("curl")
        .args(["-sSf", "--max-time", "10", "-X", "PATCH"])
        .args(["-H", "Content-Type: application/json"])
        .args(["-d", r#"{"slots":{"foreign":{"type":"physical"}}}"#])
        .arg(format!("http://{ip}:8008/config"))
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "curl PATCH /config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn member<'a>(members: &'a [Member], pod: &str) -> Result<&'a Member> {
    members
        .iter()
        .find(|m| m.pod == pod)
        .with_context(|| format!("no member {pod}: {members:?}"))
}

#[tokio::test]
async fn a_ttl_change_reaches_the_dcs_without_restarting_anything() -> Result<()> {
    const C: &str = "acid-ttl";
    let (ns, _controller) = setup("pcfg-ttl").await?;
    let n = ns.name.as_str();
    let (pw, _, before) = cluster(n, C).await?;
    let writer = ClusterWriter::start(n, C, &pw).await?;
    ensure!(
        dcs(n, C).await?["ttl"] == 30,
        "ttl before: {}",
        dcs(n, C).await?
    );
    patch(n, C, serde_json::json!({"patroni": {"ttl": 25}})).await?;
    eventually_with("ttl 25 in the DCS", CHANGE_TIMEOUT, POLL, || async {
        let config = dcs(n, C).await?;
        ensure!(config["ttl"] == 25, "ttl {}", config["ttl"]);
        Ok(())
    })
    .await?;
    // Beyond loop_wait + 2 s: had a restart been wrongly made, it would have happened.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let after = members(n, C, &pw).await?;
    ensure!(
        before == after,
        "a ttl change restarted or recreated a member: {before:?} → {after:?}"
    );
    let config = dcs(n, C).await?;
    ensure!(
        config["loop_wait"] == 5 && config["retry_timeout"] == 5,
        "other settings changed: {config}"
    );
    // A manifest slot is set and remembered on the postgresql; removed from the manifest, it is
    // removed from the DCS (a slot someone else made stays).
    patch(
        n,
        C,
        serde_json::json!({"patroni": {"slots": {"keep": {"type": "physical"}}}}),
    )
    .await?;
    eventually_with("slot keep in the DCS", CHANGE_TIMEOUT, POLL, || async {
        let config = dcs(n, C).await?;
        ensure!(
            config["slots"]["keep"]["type"] == "physical",
            "slots {}",
            config["slots"]
        );
        Ok(())
    })
    .await?;
    let remembered = eventually_with("the remembered slots", TIMEOUT, POLL, || async {
        let pg = json(&["get", "postgresql", C, "-n", n]).await?;
        pg["metadata"]["annotations"][SLOTS_ANNOTATION]
            .as_str()
            .map(String::from)
            .context("no annotation yet")
    })
    .await?;
    ensure!(
        remembered == r#"{"keep":{"type":"physical"}}"#,
        "remembered {remembered}"
    );
    foreign_slot(&before[0].ip).await?;
    patch(n, C, serde_json::json!({"patroni": {"slots": null}})).await?;
    eventually_with(
        "slot keep removed from the DCS",
        CHANGE_TIMEOUT,
        POLL,
        || async {
            let config = dcs(n, C).await?;
            ensure!(
                config["slots"].get("keep").is_none() && config["slots"].get("foreign").is_some(),
                "slots {}",
                config["slots"]
            );
            Ok(())
        },
    )
    .await?;
    let after = members(n, C, &pw).await?;
    ensure!(
        before == after,
        "a slot change restarted a member: {before:?} → {after:?}"
    );
    let events = restart_events(n).await?;
    ensure!(events.is_empty(), "restart events: {events:?}");
    // Nothing restarted, so the application saw no outage either.
    let scenario = "ttl and slot changes, 2 members";
    writer
        .check(scenario)
        .await?
        .ensure_uninterrupted(scenario)?;
    Ok(())
}

#[tokio::test]
async fn a_max_connections_increase_restarts_the_replica_then_the_primary() -> Result<()> {
    let (_, after, master, events) = change_max_connections("pcfg-up", "acid-conn-up", 20).await?;
    let primary = member(&after, &master)?;
    let replica = after
        .iter()
        .find(|m| m.pod != master)
        .context("no replica")?;
    ensure!(
        replica.started < primary.started,
        "the replica {} (started {}) was not restarted before the primary {} (started {})",
        replica.pod,
        replica.started,
        primary.pod,
        primary.started
    );
    // Each member exactly once, with Zalando's Events before and after.
    for (role, pod) in [("replica", &replica.pod), ("master", &primary.pod)] {
        let before = format!("restarting Postgres server within {role} pod {pod}");
        let done = format!("Postgres server restart done for {role} pod {pod}");
        let count = |text: &str| events.iter().filter(|e| *e == text).count();
        if count(&before) != 1 || count(&done) != 1 {
            bail!("want one restart of {pod} ({role}) with its two Events: {events:?}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_max_connections_decrease_restarts_the_primary_first() -> Result<()> {
    let (_, after, master, events) =
        change_max_connections("pcfg-down", "acid-conn-down", -20).await?;
    let primary = member(&after, &master)?;
    let replica = after
        .iter()
        .find(|m| m.pod != master)
        .context("no replica")?;
    // The replica starts after the primary: it may only run with the lower values once its
    // primary does (a replica restarted before would keep the old ones and stay pending).
    ensure!(
        primary.started < replica.started,
        "the primary {} (started {}) was not restarted before the replica {} (started {})",
        primary.pod,
        primary.started,
        replica.pod,
        replica.started
    );
    let restarted = |role: &str, pod: &str| {
        let text = format!("Postgres server restart done for {role} pod {pod}");
        events.iter().filter(|e| **e == text).count()
    };
    ensure!(
        restarted("master", &primary.pod) == 1 && restarted("replica", &replica.pod) >= 1,
        "restart Events: {events:?}"
    );
    Ok(())
}
