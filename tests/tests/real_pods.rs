//! Real Patroni + PostgreSQL behind the Spilo pods: the pod runner started by `scripts/up.sh`
//! runs every Spilo container of the kwok nodes. A 1-instance cluster gets a master elected by
//! Patroni (label, leader ConfigMap) that psql reaches on its pod IP with the password of the
//! `postgres` Secret, also through the master Service's ClusterIP; a 2-instance cluster gets a streaming replica that sees the master's rows.
//! A pod whose environment names a Secret that does not exist yet says so in its status and
//! starts once the Secret appears, as a kubelet retries it.
//! Each test runs its own controller scoped to its own namespace. They cost real CPU (initdb,
//! basebackup) on 2 cores, so there are only these three.

use anyhow::{Result, bail};
use e2e::command::kubectl_with_stdin;
use e2e::patroni::{json, manifest, pods_with_role, setup, sql, wait_streaming, writable_master};
use std::time::Instant;

#[tokio::test]
async fn one_instance_gets_a_master_elected_by_patroni_that_psql_reaches() -> Result<()> {
    let (ns, _controller) = setup("real-one").await?;
    let n = ns.name.as_str();
    let started = Instant::now();
    kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &manifest("acid-one", 1))
        .await?
        .ok()?;
    let (pod, ip, pw) = writable_master(n, "acid-one").await?;
    eprintln!(
        "apply -> writable master {pod} ({ip}): {:?}",
        started.elapsed()
    );
    assert!(ip.starts_with("127."), "pod IP {ip} outside loopback");
    let leader = json(&["get", "configmap", "acid-one-leader", "-n", n]).await?;
    assert_eq!(leader["metadata"]["annotations"]["leader"], pod.as_str());
    assert_eq!(sql(&ip, &pw, "select 1").await?, "1");
    // The runner, not kwok, says Ready: the pod is Ready once Patroni answers /readiness.
    let p = json(&["get", "pod", &pod, "-n", n]).await?;
    let ready = e2e::status::condition(&p, "Ready");
    assert_eq!(ready["status"], "True", "{ready}");
    // The master Service, served by the runner on its ClusterIP, reaches the leader.
    let service = json(&["get", "service", "acid-one", "-n", n]).await?;
    let cluster_ip = service["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        cluster_ip.starts_with("127."),
        "ClusterIP {cluster_ip} outside loopback"
    );
    let through_service =
        e2e::eventually::eventually("psql through the master Service", || async {
            sql(&cluster_ip, &pw, "select pg_is_in_recovery()").await
        })
        .await?;
    assert_eq!(through_service, "f");
    Ok(())
}

#[tokio::test]
async fn two_instances_stream_and_the_replica_sees_the_masters_rows() -> Result<()> {
    let (ns, _controller) = setup("real-two").await?;
    let n = ns.name.as_str();
    let started = Instant::now();
    kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &manifest("acid-two", 2))
        .await?
        .ok()?;
    let (_, ip, pw) = writable_master(n, "acid-two").await?;
    eprintln!("apply -> writable master: {:?}", started.elapsed());
    wait_streaming(&ip, &pw, 1).await?;
    let replica_ip = e2e::eventually::eventually("the replica's role label", || async {
        match pods_with_role(n, "acid-two", "replica").await?.as_slice() {
            [(_, replica_ip)] => Ok(replica_ip.clone()),
            other => bail!("{} pods labelled replica", other.len()),
        }
    })
    .await?;
    eprintln!("apply -> streaming replica: {:?}", started.elapsed());
    sql(
        &ip,
        &pw,
        "create table probe(t text); insert into probe values ('hello')",
    )
    .await?;
    e2e::eventually::eventually("the row on the replica", || async {
        match sql(&replica_ip, &pw, "select t from probe").await?.as_str() {
            "hello" => Ok(()),
            other => bail!("replica has {other:?}"),
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_pod_waits_for_its_secret_then_starts() -> Result<()> {
    let (ns, _controller) = setup("real-late").await?;
    let n = ns.name.as_str();
    let pg = manifest("acid-late", 1).replace(
        "spec:\n",
        "spec:\n  env:\n  - name: LATE\n    valueFrom:\n      secretKeyRef: {name: late, key: value}\n",
    );
    kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &pg)
        .await?
        .ok()?;
    let waiting = e2e::eventually::eventually("the pod to say what it waits for", || async {
        let pod = json(&["get", "pod", "acid-late-0", "-n", n]).await?;
        let state = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
        match state["reason"].as_str() {
            Some("CreateContainerConfigError") => Ok(state["message"].to_string()),
            _ => bail!("container state {}", pod["status"]["containerStatuses"]),
        }
    })
    .await?;
    assert!(
        waiting.contains("late"),
        "the message names the Secret: {waiting}"
    );
    let secret = r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "late"}, "stringData": {"value": "x"}}"#;
    kubectl_with_stdin(["apply", "-n", n, "-f", "-"], secret)
        .await?
        .ok()?;
    let (_, ip, pw) = writable_master(n, "acid-late").await?;
    assert_eq!(sql(&ip, &pw, "select 1").await?, "1");
    Ok(())
}
