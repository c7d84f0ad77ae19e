//! High availability of real Patroni + PostgreSQL members (issue 12, point 4), through the API
//! server, kubectl, psql and the members' processes:
//!
//! - three members: one leader, two streaming replicas that see the master's rows. One `kill -9`
//!   of the master's container: the runner restarts it at once (the kubelet's first restart has
//!   no back-off), so Patroni takes its still valid leader key back and no failover happens. A
//!   master whose container crash-loops (killed on each start) loses its key after the ttl: a
//!   replica is promoted (labels, leader ConfigMap and the master Service follow) and the old
//!   master, once its back-off ends, rejoins as a replica (pg_rewind). A deleted replica pod
//!   comes back with its data; a deleted master pod fails over and comes back as a replica;
//! - scaling 1 → 3 → 1 starts streaming replicas and stops the removed members' processes;
//!   deleting the cluster stops every member and frees the claims' folders.
//!
//! The write gaps (from the kill or the deletion until an INSERT through the master Service
//! succeeds) are printed for BENCHMARKS.md, not asserted. Patroni's ttl is lowered to 20 s to
//! bound the failovers. Two tests only: initdb and basebackups cost real CPU on 2 cores.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::command::{kubectl, kubectl_with_stdin};
use e2e::eventually::eventually_with;
use e2e::patroni::{
    TIMEOUT, claim_dir, claim_uid, container_init, json, kill_container, leader_annotation,
    manifest_with, password, pod_uid, pods, pods_with_role, port_open, processes_referencing,
    restart_count, setup, sql,
};
use e2e::steady::{master_service_ip, steady};

const PATRONI: &str = "    ttl: 20\n    loop_wait: 5\n    retry_timeout: 5\n";
const POLL: Duration = Duration::from_millis(500);

/// Waits until the member at `ip` (`pod`) has the probe row `value`.
async fn row_on(pod: &str, ip: &str, pw: &str, value: &str) -> Result<()> {
    let what = format!("row {value:?} on {pod} ({ip})");
    let query = format!("select count(*) from probe where t = '{value}'");
    eventually_with(&what, Duration::from_secs(120), POLL, || async {
        match sql(ip, pw, &query).await?.as_str() {
            "1" => Ok(()),
            other => bail!("{other} rows"),
        }
    })
    .await
}

/// Polls an INSERT of `value` through the master Service until one succeeds; the time since
/// `since` (the write gap), and the pod IP that took the write.
async fn write_gap(
    service_ip: &str,
    pw: &str,
    since: Instant,
    value: &str,
) -> Result<(Duration, String)> {
    let insert = format!("insert into probe values ('{value}') returning host(inet_server_addr())");
    let server = eventually_with(
        &format!("an INSERT of {value:?} through the master Service"),
        TIMEOUT,
        Duration::from_millis(200),
        || sql(service_ip, pw, &insert),
    )
    .await?;
    Ok((
        since.elapsed(),
        server.lines().next().unwrap_or_default().to_string(),
    ))
}

/// Waits until `pod` exists again with a uid other than `old_uid`; returns the new uid.
async fn recreated(ns: &str, pod: &str, old_uid: &str) -> Result<String> {
    eventually_with(&format!("{pod} recreated"), TIMEOUT, POLL, || async {
        let uid = pod_uid(ns, pod).await?;
        ensure!(uid != old_uid, "{pod} still has the old uid {old_uid}");
        Ok(uid)
    })
    .await
}

#[tokio::test]
async fn three_members_stream_fail_over_and_rejoin() -> Result<()> {
    const C: &str = "acid-ha";
    let (ns, _controller) = setup("failover").await?;
    let n = ns.name.as_str();
    let started = Instant::now();
    kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &manifest_with(C, 3, PATRONI))
        .await?
        .ok()?;

    // 1. One leader, two streaming replicas, a master's row on every replica.
    let pw = eventually_with("the postgres Secret", TIMEOUT, POLL, || password(n, C)).await?;
    let first = steady(n, C, &pw, 2).await?;
    eprintln!(
        "apply -> 3 members streaming: {:?} ({first:?})",
        started.elapsed()
    );
    sql(
        &first.master_ip,
        &pw,
        "create table probe(t text primary key); insert into probe values ('initial')",
    )
    .await?;
    for (pod, ip) in &first.replicas {
        row_on(pod, ip, &pw, "initial").await?;
    }
    let service = master_service_ip(n, C).await?;

    // 2a. kill -9 of the master's container once: the runner restarts it at once, so the old
    // master may take its leader key back before the ttl runs out. Whoever leads, the write gap.
    let old = first.master.clone();
    let old_uid = pod_uid(n, &old).await?;
    let restarts = restart_count(n, &old).await?;
    let killed = Instant::now();
    let pid = kill_container(&old, &old_uid)?;
    let (gap, server) = write_gap(&service, &pw, killed, "after-kill").await?;
    eprintln!(
        "WRITE GAP kill -9 of the master's container (pid {pid}, {old}): {gap:?}, written on {server}"
    );
    let after = steady(n, C, &pw, 2).await?;
    eprintln!(
        "after one kill -9: leader {} ({:?} after the kill)",
        after.master,
        killed.elapsed()
    );
    let now = restart_count(n, &old).await?;
    ensure!(
        now > restarts,
        "{old}'s restartCount is {now} after kill -9 (was {restarts})"
    );

    // 2b. Failover: while the old master still leads, its container is killed whenever it comes
    // back (a crash loop, as a broken node makes), until a replica is promoted.
    let crash_started = Instant::now();
    let mut last_killed = pid;
    let old = after.master.clone();
    let old_uid = pod_uid(n, &old).await?;
    let old_name = old.as_str();
    let promoted = eventually_with(
        &format!("a replica promoted while {old}'s container crash-loops"),
        TIMEOUT,
        Duration::from_millis(250),
        || {
            // Each new run is killed as soon as its process appears, before Patroni can renew
            // the leader key.
            if container_init(&old_uid).is_some_and(|p| p.pid != last_killed)
                && let Ok(pid) = kill_container(old_name, &old_uid)
            {
                last_killed = pid;
            }
            async move {
                let leader = leader_annotation(n, C).await?;
                ensure!(
                    !leader.is_empty() && leader != old_name,
                    "the leader ConfigMap names {leader:?}"
                );
                Ok(leader)
            }
        },
    )
    .await?;
    let (gap, server) = write_gap(&service, &pw, crash_started, "after-failover").await?;
    eprintln!(
        "WRITE GAP failover (crash-looping master {old} -> {promoted}): {gap:?}, written on {server}"
    );
    // Only the new leader is labelled master, the master Service reaches it.
    let masters = eventually_with(
        "the master label on the promoted pod only",
        TIMEOUT,
        POLL,
        || async {
            let masters = pods_with_role(n, C, "master").await?;
            match masters.as_slice() {
                [(pod, ip)] if *pod == promoted => Ok(ip.clone()),
                _ => bail!("pods labelled master: {masters:?}, leader {promoted}"),
            }
        },
    )
    .await?;
    ensure!(
        server == masters,
        "the write through the Service went to {server}, the new leader is {masters}"
    );
    // The old master's container comes back (after its back-off) and rejoins as a replica.
    let rejoined = steady(n, C, &pw, 2).await?;
    ensure!(
        rejoined.master == promoted,
        "leader moved on to {} after {promoted}",
        rejoined.master
    );
    let (_, old_ip) = rejoined
        .replicas
        .iter()
        .find(|(p, _)| *p == old)
        .context("old master is not a replica")?;
    row_on(&old, old_ip, &pw, "after-failover").await?;
    eprintln!(
        "crash loop -> {old} rejoined as a streaming replica: {:?}",
        crash_started.elapsed()
    );

    // 3a. A deleted replica pod comes back with its own data and streams again.
    let (replica, replica_ip) = rejoined.replicas[0].clone();
    sql(
        &rejoined.master_ip,
        &pw,
        "insert into probe values ('before-replica-delete')",
    )
    .await?;
    row_on(&replica, &replica_ip, &pw, "before-replica-delete").await?;
    let claim = claim_uid(n, &replica).await?;
    let pg_version = claim_dir(&claim).join("pgroot/data/PG_VERSION");
    let written = std::fs::metadata(&pg_version)
        .and_then(|m| m.modified())
        .with_context(|| format!("{}: the replica's data on its claim", pg_version.display()))?;
    let uid = pod_uid(n, &replica).await?;
    let deleted = Instant::now();
    kubectl(["delete", "pod", &replica, "-n", n, "--wait=false"])
        .await?
        .ok()?;
    recreated(n, &replica, &uid).await?;
    let back = steady(n, C, &pw, 2).await?;
    let (_, ip) = back
        .replicas
        .iter()
        .find(|(p, _)| *p == replica)
        .context("the recreated pod is not a replica")?;
    row_on(&replica, ip, &pw, "before-replica-delete").await?;
    ensure!(
        claim_uid(n, &replica).await? == claim,
        "{replica} got a new claim"
    );
    let still = std::fs::metadata(&pg_version).and_then(|m| m.modified())?;
    ensure!(
        still == written,
        "{} was rewritten: the replica was rebuilt, not restarted on its data",
        pg_version.display()
    );
    eprintln!(
        "replica {replica} deleted -> streaming again on its data: {:?}",
        deleted.elapsed()
    );

    // 3b. A deleted master pod fails over; the recreated pod rejoins as a replica.
    let master = back.master.clone();
    let uid = pod_uid(n, &master).await?;
    let deleted = Instant::now();
    kubectl(["delete", "pod", &master, "-n", n, "--wait=false"])
        .await?
        .ok()?;
    let (gap, server) = write_gap(&service, &pw, deleted, "after-master-delete").await?;
    eprintln!("WRITE GAP graceful deletion of master {master}: {gap:?}, written on {server}");
    recreated(n, &master, &uid).await?;
    let last = steady(n, C, &pw, 2).await?;
    ensure!(
        last.master != master,
        "{master} leads again after its deletion"
    );
    let (_, ip) = last
        .replicas
        .iter()
        .find(|(p, _)| *p == master)
        .context("the recreated master is not a replica")?;
    row_on(&master, ip, &pw, "after-master-delete").await?;
    eprintln!(
        "master {master} deleted -> {} leads, {master} streams: {:?}",
        last.master,
        deleted.elapsed()
    );
    eprintln!("whole test: {:?}", started.elapsed());
    Ok(())
}

/// Waits until nothing runs for the members (pod, IP, pod uid, claim uid): no process, 5432 and
/// 8008 closed on their IPs.
async fn members_stopped(members: &[(String, String, String, String)]) -> Result<()> {
    eventually_with(
        "the removed members' processes gone",
        TIMEOUT,
        POLL,
        || async {
            let uids: Vec<&str> = members
                .iter()
                .flat_map(|(_, _, p, c)| [p.as_str(), c.as_str()])
                .collect();
            let left = processes_referencing(&uids);
            ensure!(left.is_empty(), "processes left: {left:?}");
            for (pod, ip, _, _) in members {
                for port in [5432, 8008] {
                    ensure!(
                        !port_open(ip, port)?,
                        "{pod}'s {ip}:{port} still accepts connections"
                    );
                }
            }
            Ok(())
        },
    )
    .await
}

async fn members(ns: &str, cluster: &str) -> Result<Vec<(String, String, String, String)>> {
    let mut all = Vec::new();
    for (pod, ip, uid) in pods(ns, cluster).await? {
        let claim = claim_uid(ns, &pod).await?;
        all.push((pod, ip, uid, claim));
    }
    Ok(all)
}

#[tokio::test]
async fn scaling_and_deletion_stop_members_and_free_their_claims() -> Result<()> {
    const C: &str = "acid-scale";
    let (ns, _controller) = setup("scale").await?;
    let n = ns.name.as_str();
    let started = Instant::now();
    kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &manifest_with(C, 1, PATRONI))
        .await?
        .ok()?;
    let pw = eventually_with("the postgres Secret", TIMEOUT, POLL, || password(n, C)).await?;
    let one = steady(n, C, &pw, 0).await?;
    eprintln!(
        "apply -> writable master {}: {:?}",
        one.master,
        started.elapsed()
    );
    sql(
        &one.master_ip,
        &pw,
        "create table probe(t text primary key); insert into probe values ('one')",
    )
    .await?;

    // 4. 1 -> 3: two replicas stream and see the row.
    let scaled = Instant::now();
    let patch = |count: i32| format!("{{\"spec\":{{\"numberOfInstances\":{count}}}}}");
    kubectl([
        "patch",
        "postgresql",
        C,
        "-n",
        n,
        "--type",
        "merge",
        "-p",
        &patch(3),
    ])
    .await?
    .ok()?;
    let three = steady(n, C, &pw, 2).await?;
    ensure!(
        three.master == one.master,
        "scaling up moved the leader to {}",
        three.master
    );
    for (pod, ip) in &three.replicas {
        row_on(pod, ip, &pw, "one").await?;
    }
    eprintln!(
        "1 -> 3: two streaming replicas after {:?}",
        scaled.elapsed()
    );

    // 3 -> 1: the replicas' pods go and their processes with them.
    let before = members(n, C).await?;
    let removed: Vec<_> = before
        .iter()
        .filter(|(p, ..)| *p != one.master)
        .cloned()
        .collect();
    ensure!(
        removed.len() == 2,
        "members before scaling down: {before:?}"
    );
    let scaled = Instant::now();
    kubectl([
        "patch",
        "postgresql",
        C,
        "-n",
        n,
        "--type",
        "merge",
        "-p",
        &patch(1),
    ])
    .await?
    .ok()?;
    eventually_with("only the master's pod left", TIMEOUT, POLL, || async {
        let left = pods(n, C).await?;
        let names: Vec<&str> = left.iter().map(|(p, ..)| p.as_str()).collect();
        ensure!(names == [one.master.as_str()], "pods: {names:?}");
        Ok(())
    })
    .await?;
    members_stopped(&removed).await?;
    let alone = steady(n, C, &pw, 0).await?;
    ensure!(
        alone.master == one.master,
        "scaling down moved the leader to {}",
        alone.master
    );
    sql(&alone.master_ip, &pw, "insert into probe values ('alone')").await?;
    eprintln!(
        "3 -> 1: removed members stopped after {:?}",
        scaled.elapsed()
    );

    // 5. Deleting the cluster stops every member; the claims and their folders go (the
    // operator's enable_persistent_volume_claim_deletion defaults to true).
    let all: Vec<_> = members(n, C)
        .await?
        .into_iter()
        .chain(removed.clone())
        .collect();
    for (_, _, _, claim) in &all {
        ensure!(
            claim_dir(claim).exists(),
            "{} missing before the deletion",
            claim_dir(claim).display()
        );
    }
    let deleted = Instant::now();
    kubectl(["delete", "postgresql", C, "-n", n, "--wait=false"])
        .await?
        .ok()?;
    eventually_with("no pods of the cluster", TIMEOUT, POLL, || async {
        let left = pods(n, C).await?;
        ensure!(left.is_empty(), "pods: {left:?}");
        Ok(())
    })
    .await?;
    members_stopped(&all).await?;
    eprintln!(
        "cluster deleted -> members stopped: {:?}",
        deleted.elapsed()
    );
    eventually_with(
        "the claims and their folders gone",
        TIMEOUT,
        POLL,
        || async {
            let claims = json(&["get", "pvc", "-n", n, "-l", &format!("cluster-name={C}")]).await?;
            let names: Vec<&str> = claims["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["metadata"]["name"].as_str())
                .collect();
            ensure!(names.is_empty(), "claims left: {names:?}");
            let folders: Vec<PathBuf> = all
                .iter()
                .map(|(.., c)| claim_dir(c))
                .filter(|d| d.exists())
                .collect();
            ensure!(
                folders.is_empty(),
                "the runner kept the folders of deleted claims: {folders:?}"
            );
            Ok(())
        },
    )
    .await?;
    eprintln!(
        "cluster deleted -> claims' folders removed: {:?}",
        deleted.elapsed()
    );
    Ok(())
}
