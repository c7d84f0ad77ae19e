//! The test world answers Spilo's in-place major version upgrade with a real `pg_upgrade`,
//! without the operator's upgrade code: today's controller makes a 2-member cluster of
//! PostgreSQL 14 and, once the manifest asks for 15, rolls the pods with the new `PGVERSION`
//! (the members keep running 14: their data is of 14); then the test runs exactly the
//! operator's two exec commands in the primary's `postgres` container.
//!
//! One cluster for both outcomes, because initdb, basebackups and the rolling update cost real
//! CPU on 2 cores: first a `regproc` column makes `pg_upgrade --check` refuse (non-zero exit,
//! the reason on the last line, both members still on 14 with their rows, Patroni not paused);
//! with the column dropped the same command upgrades (exit 0, both members on 15 with the rows,
//! the replica streaming with the new system identifier that Patroni's `initialize` key holds,
//! Patroni resumed, `last_upgrade.log` in the exec folder); a recreated replica pod keeps
//! running 15.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use e2e::command::{kubectl, kubectl_with_stdin};
use e2e::eventually::eventually_with;
use e2e::patroni::{
    MAJOR, TIMEOUT, json, manifest_with, pod_uid, pods, setup, sql, wait_streaming, writable_master,
};
use serde_json::Value;

const CLUSTER: &str = "acid-upgrade";
const PATRONI: &str = "    ttl: 20\n    loop_wait: 5\n    retry_timeout: 5\n";
const POLL: Duration = Duration::from_millis(500);
const UPGRADE: &str =
    "set -o pipefail && /usr/bin/python3 /scripts/inplace_upgrade.py 2 2>&1 | tee last_upgrade.log";

/// The `PGVERSION` of the pod's `postgres` container and whether the pod is Ready.
async fn pod_state(ns: &str, pod: &str) -> Result<(String, bool)> {
    let p = json(&["get", "pod", pod, "-n", ns]).await?;
    let version = p["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == "postgres")
        .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
        .find(|e| e["name"] == "PGVERSION")
        .and_then(|e| e["value"].as_str().map(String::from))
        .unwrap_or_default();
    let ready = p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    Ok((version, ready))
}

/// The major each member's server reports, by pod name (sorted).
async fn majors(ns: &str, pw: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (pod, ip, _) in pods(ns, CLUSTER).await? {
        let num = sql(&ip, pw, "show server_version_num").await?;
        out.push((pod, num.get(..2).unwrap_or_default().to_string()));
    }
    Ok(out)
}

/// Waits until both members run `major`, the master is writable and the replica streams;
/// returns the master's (pod, IP).
async fn settled(ns: &str, major: &str) -> Result<(String, String, String)> {
    let (pod, ip, pw) = writable_master(ns, CLUSTER).await?;
    wait_streaming(&ip, &pw, 1).await?;
    eventually_with(
        &format!("both members on {major}"),
        TIMEOUT,
        POLL,
        || async {
            let found = majors(ns, &pw).await?;
            ensure!(
                found.len() == 2 && found.iter().all(|(_, m)| m == major),
                "{found:?}"
            );
            Ok(())
        },
    )
    .await?;
    Ok((pod, ip, pw))
}

/// The rows every member must keep, counted on `ip`.
async fn rows(ip: &str, pw: &str) -> Result<String> {
    sql(ip, pw, "select count(*) || ':' || sum(i) from kept").await
}

/// Patroni's dynamic configuration and `initialize` key from the `<cluster>-config` ConfigMap.
async fn dcs(ns: &str) -> Result<(Value, String)> {
    let map = json(&["get", "configmap", &format!("{CLUSTER}-config"), "-n", ns]).await?;
    let annotations = &map["metadata"]["annotations"];
    let config = serde_json::from_str(annotations["config"].as_str().unwrap_or("{}"))?;
    Ok((
        config,
        annotations["initialize"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    ))
}

async fn exec(ns: &str, pod: &str, command: &str) -> Result<e2e::command::CommandOutput> {
    kubectl([
        "exec",
        "-n",
        ns,
        pod,
        "-c",
        "postgres",
        "--",
        "/bin/bash",
        "-c",
        command,
    ])
    .await
}

#[tokio::test]
async fn inplace_upgrade_is_refused_by_pg_upgrade_then_upgrades_14_to_15() -> Result<()> {
    let (ns, _controller) = setup("upgrade").await?;
    let n = ns.name.as_str();
    let manifest = manifest_with(CLUSTER, 2, PATRONI)
        .replace(&format!("version: \"{MAJOR}\""), "version: \"14\"");
    ensure!(manifest.contains("version: \"14\""), "{manifest}");
    kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &manifest)
        .await?
        .ok()?;
    let (_, ip, pw) = settled(n, "14").await?;
    sql(
        &ip,
        &pw,
        "create table kept (i int primary key, t text); \
                   insert into kept select g, 'row ' || g from generate_series(1, 50) g; \
                   create table reg (f regproc); insert into reg values ('now')",
    )
    .await?;
    let before = rows(&ip, &pw).await?;
    assert_eq!(before, "50:1275");

    // The manifest asks for 15: the controller rolls the pods with PGVERSION=15, the data
    // stays of 14, so the members keep running 14.
    kubectl([
        "patch",
        "postgresql",
        CLUSTER,
        "-n",
        n,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"postgresql":{"version":"15"}}}"#,
    ])
    .await?
    .ok()?;
    eventually_with(
        "both pods rolled with PGVERSION=15 and Ready",
        TIMEOUT,
        POLL,
        || async {
            let all = pods(n, CLUSTER).await?;
            ensure!(all.len() == 2, "{all:?}");
            for (pod, _, _) in &all {
                let (version, ready) = pod_state(n, pod).await?;
                ensure!(
                    version == "15" && ready,
                    "{pod}: PGVERSION {version:?}, ready {ready}"
                );
            }
            Ok(())
        },
    )
    .await?;
    let (master, _, _) = settled(n, "14").await?;

    // The operator's first exec: not root here.
    let uid = exec(n, &master, "/usr/bin/id -u").await?.ok()?;
    ensure!(uid.stdout.trim() != "0", "the exec runs as root");

    // A regproc column: pg_upgrade --check refuses, nothing changes.
    let refused = exec(n, &master, UPGRADE).await?;
    println!("--- refused upgrade:\n{}{}", refused.stdout, refused.stderr);
    ensure!(
        !refused.success(),
        "the upgrade with a regproc column succeeded"
    );
    let last = refused
        .stdout
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    ensure!(
        last.contains("pg_upgrade --check refused") && last.contains("reg*"),
        "last line: {last}"
    );
    let (_, ip2, _) = settled(n, "14").await?;
    assert_eq!(rows(&ip2, &pw).await?, before);
    for (pod, pod_ip, _) in pods(n, CLUSTER).await? {
        assert_eq!(rows(&pod_ip, &pw).await?, before, "rows on {pod}");
    }
    let (config, _) = dcs(n).await?;
    ensure!(
        config["pause"] != Value::Bool(true),
        "Patroni stayed paused: {config}"
    );

    // Without it the same command upgrades.
    sql(&ip2, &pw, "drop table reg").await?;
    let (master, ip, _) = settled(n, "14").await?;
    let old_sysid = sql(
        &ip,
        &pw,
        "select system_identifier from pg_control_system()",
    )
    .await?;
    let done = exec(n, &master, UPGRADE).await?;
    println!("--- upgrade:\n{}{}", done.stdout, done.stderr);
    ensure!(
        done.success(),
        "the upgrade failed: {}",
        done.stdout.lines().last().unwrap_or_default()
    );
    let (_, ip, _) = settled(n, "15").await?;
    for (pod, pod_ip, _) in pods(n, CLUSTER).await? {
        eventually_with(&format!("the rows on {pod}"), TIMEOUT, POLL, || async {
            ensure!(rows(&pod_ip, &pw).await? == before, "rows differ");
            Ok(())
        })
        .await?;
    }
    let sysid = sql(
        &ip,
        &pw,
        "select system_identifier from pg_control_system()",
    )
    .await?;
    ensure!(sysid != old_sysid, "the system identifier did not change");
    let (config, initialize) = dcs(n).await?;
    assert_eq!(initialize, sysid, "Patroni's initialize key");
    ensure!(
        config["pause"] != Value::Bool(true),
        "Patroni stayed paused: {config}"
    );
    let log = exec(n, &master, "cat last_upgrade.log").await?.ok()?;
    ensure!(
        log.stdout.contains("from 14 to 15 complete"),
        "last_upgrade.log: {}",
        log.stdout
    );

    // A recreated replica pod runs 15 from its data (the runner's choice agrees).
    let (_, _, _) = writable_master(n, CLUSTER).await?;
    let replica = pods(n, CLUSTER)
        .await?
        .into_iter()
        .map(|(pod, _, _)| pod)
        .find(|pod| *pod != master)
        .context("no replica pod")?;
    let uid = pod_uid(n, &replica).await?;
    kubectl(["delete", "pod", &replica, "-n", n]).await?.ok()?;
    eventually_with(&format!("{replica} recreated"), TIMEOUT, POLL, || async {
        if pod_uid(n, &replica).await? == uid {
            bail!("old pod still there");
        }
        Ok(())
    })
    .await?;
    let (_, ip, _) = settled(n, "15").await?;
    wait_streaming(&ip, &pw, 1).await?;
    Ok(())
}
