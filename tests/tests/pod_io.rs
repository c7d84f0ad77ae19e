//! `kubectl logs` and `kubectl exec` on the pods the pod runner runs: the API server reaches
//! kwok's kubelet server (on the node's loopback address), which serves the container's log
//! from the runner's CRI copy of it and runs exec commands as the container's user with its
//! environment (the `Logs` and `Exec` objects the runner writes, `world/src/runner/kubelet_io.rs`).
//!
//! One 1-instance cluster on a node other than the first, so the API server's connection goes
//! through the runner's forward of that node's kubelet endpoint to kwok's server: Patroni's
//! output through `kubectl logs`, `psql` and `env` through `kubectl exec`, then a killed Patroni
//! whose run is `kubectl logs --previous`.

use anyhow::{Context, Result, bail};
use e2e::command::{kubectl, kubectl_with_stdin};
use e2e::eventually::{eventually, eventually_with};
use e2e::patroni::{TIMEOUT, json, manifest, setup, writable_master};
use std::time::Duration;

/// The node the pod is pinned to (not kwok-node-0, whose address kwok's server listens on).
const NODE: &str = "kwok-node-2";

/// What Patroni prints every loop while it leads.
const LEADER_LINE: &str = "the leader with the lock";

/// The pids of the Patroni processes of the pod with `uid` (their configuration is in the
/// runner's run dir of that pod: `<run dir>/<uid>/<container index>/patroni.yml`).
fn patroni_pids(uid: &str) -> Vec<u32> {
    let needle = format!("/{uid}/0/patroni.yml");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .is_ok_and(|c| c.contains("patroni") && c.contains(&needle))
        })
        .collect()
}

async fn restart_count(ns: &str, pod: &str) -> Result<i64> {
    let p = json(&["get", "pod", pod, "-n", ns]).await?;
    p["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .context("no restartCount")
}

#[tokio::test]
async fn logs_and_exec_reach_the_containers_of_runner_pods() -> Result<()> {
    let (ns, _controller) = setup("pod-io").await?;
    let n = ns.name.as_str();
    let pinned = format!(
        "{}  nodeAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n      nodeSelectorTerms:\n      - matchExpressions:\n        - {{key: kubernetes.io/hostname, operator: In, values: [{NODE}]}}\n",
        manifest("acid-io", 1)
    );
    kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &pinned)
        .await?
        .ok()?;
    let (pod, _, _) = writable_master(n, "acid-io").await?;
    let node = json(&["get", "pod", &pod, "-n", n]).await?["spec"]["nodeName"].clone();
    assert_eq!(node, NODE);

    let logs = eventually_with(
        "Patroni's leader line in kubectl logs",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || async {
            let out = kubectl(["logs", "-n", n, &pod]).await?.ok()?;
            if !out.stdout.contains(LEADER_LINE) {
                bail!("no {LEADER_LINE:?} in:\n{}", out.stdout);
            }
            Ok(out.stdout)
        },
    )
    .await?;
    assert!(
        !logs.contains(" stdout F "),
        "kubectl shows the text, not the CRI framing:\n{logs}"
    );

    let select = kubectl([
        "exec", "-n", n, &pod, "--", "psql", "-U", "postgres", "-tAc", "select 1",
    ])
    .await?
    .ok()?;
    assert_eq!(select.stdout.trim(), "1", "{select}");
    let user = kubectl(["exec", "-n", n, &pod, "--", "id", "-un"])
        .await?
        .ok()?;
    assert_eq!(user.stdout.trim(), "postgres", "{user}");
    let env = kubectl(["exec", "-n", n, &pod, "--", "env"]).await?.ok()?;
    let vars: Vec<&str> = env.stdout.lines().collect();
    assert!(vars.contains(&"SCOPE=acid-io"), "{env}");
    assert!(vars.contains(&"PGVERSION=17"), "{env}");
    let server = kubectl(["exec", "-n", n, &pod, "--", "postgres", "--version"])
        .await?
        .ok()?;
    assert!(
        server.stdout.contains("PostgreSQL) 17."),
        "the pod's major first on PATH: {server}"
    );

    // A container restart: kill Patroni (PID 1 of the container's PID namespace).
    let uid = json(&["get", "pod", &pod, "-n", n]).await?["metadata"]["uid"]
        .as_str()
        .context("no pod uid")?
        .to_string();
    let before = restart_count(n, &pod).await?;
    let pids = patroni_pids(&uid);
    assert!(!pids.is_empty(), "no Patroni process of pod {uid}");
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    eventually_with(
        "a restart in the pod's status",
        TIMEOUT,
        Duration::from_secs(1),
        || async {
            let count = restart_count(n, &pod).await?;
            if count <= before {
                bail!("restartCount {count}");
            }
            Ok(())
        },
    )
    .await?;
    let previous = kubectl(["logs", "--previous", "-n", n, &pod]).await?.ok()?;
    assert!(
        previous.stdout.contains(LEADER_LINE),
        "the killed run's log:\n{previous}"
    );
    eventually("the new run's log", || async {
        let out = kubectl(["logs", "-n", n, &pod]).await?.ok()?;
        if out.stdout.trim().is_empty() {
            bail!("empty");
        }
        Ok(())
    })
    .await?;
    Ok(())
}
