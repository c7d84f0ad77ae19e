//! Patroni runs under the pod ServiceAccount the operator creates, bound to the `postgres-pod`
//! ClusterRole of `manifests/controller/rbac.yaml` — and that role is what Patroni needs, proven
//! by a run: a 2-member cluster bootstraps, streams, fails over when its master pod is deleted
//! and is deleted, while the API server's audit log (`scripts/kube/audit-policy.yaml`) records
//! every request of the ServiceAccount. Nothing it asked for was refused, everything it used is
//! granted, and every grant it did not use is one the other Patroni modes or tools need (listed
//! below with the reason), so no rule can go.

use anyhow::{Context, Result, bail};
use e2e::command::{kubectl, kubectl_with_stdin};
use e2e::paths;
use e2e::patroni::{TIMEOUT, manifest, pods_with_role, setup, wait_streaming, writable_master};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// Grants Patroni does not use in ConfigMap mode on a cluster's normal life, and who needs them.
const UNUSED_BY_DESIGN: &[(&str, &str, &str)] = &[
    (
        "endpoints",
        "*",
        "Patroni keeps its state in Endpoints when kubernetes_use_configmaps is off",
    ),
    (
        "services",
        "create",
        "Patroni creates the config Service in Endpoints mode",
    ),
    (
        "configmaps",
        "delete",
        "patronictl remove deletes the cluster's DCS objects",
    ),
    (
        "configmaps",
        "deletecollection",
        "patronictl remove deletes the cluster's DCS objects",
    ),
    (
        "configmaps",
        "update",
        "Patroni replaces an object whose patch conflicts",
    ),
    (
        "pods",
        "update",
        "Patroni replaces a pod's metadata when a patch conflicts",
    ),
    (
        "pods",
        "get",
        "patronictl and Spilo's callbacks read a single pod",
    ),
    ("configmaps", "get", "patronictl reads a single DCS object"),
];

fn unused_by_design(resource: &str, verb: &str) -> bool {
    UNUSED_BY_DESIGN
        .iter()
        .any(|(r, v, _)| *r == resource && (*v == "*" || *v == verb))
}

/// (resource, verb) pairs of the `postgres-pod` ClusterRole in the manifests.
fn granted() -> Result<BTreeSet<(String, String)>> {
    let rbac = std::fs::read_to_string(paths::repo_root().join("manifests/controller/rbac.yaml"))?;
    let role = rbac
        .split("\n---\n")
        .find(|doc| doc.contains("name: postgres-pod\n"))
        .context("no postgres-pod ClusterRole in rbac.yaml")?;
    let role: Value = serde_yaml::from_str(role)?;
    let mut grants = BTreeSet::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        for resource in rule["resources"].as_array().into_iter().flatten() {
            for verb in rule["verbs"].as_array().into_iter().flatten() {
                grants.insert((
                    resource.as_str().unwrap_or_default().to_string(),
                    verb.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    Ok(grants)
}

/// The (resource, verb, status code) of every audited request by `user`.
fn audited(user: &str) -> Result<Vec<(String, String, i64)>> {
    let path = paths::local_dir().join("logs/audit.log");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: no audit log; the API server predates it: make down && make up",
            path.display()
        )
    })?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["user"]["username"] == user && e["stage"] == "ResponseComplete")
        .map(|e| {
            let resource = e["objectRef"]["resource"].as_str().unwrap_or_default();
            let sub = e["objectRef"]["subresource"].as_str();
            (
                match sub {
                    Some(sub) => format!("{resource}/{sub}"),
                    None => resource.to_string(),
                },
                e["verb"].as_str().unwrap_or_default().to_string(),
                e["responseStatus"]["code"].as_i64().unwrap_or_default(),
            )
        })
        .collect())
}

#[tokio::test]
async fn patroni_needs_exactly_the_pod_cluster_role() -> Result<()> {
    let (ns, _controller) = setup("pod-rbac").await?;
    let n = ns.name.as_str();
    kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &manifest("acid-rbac", 2))
        .await?
        .ok()?;
    let (master, ip, pw) = writable_master(n, "acid-rbac").await?;
    wait_streaming(&ip, &pw, 1).await?;
    // A failover: Patroni moves the lock and the labels.
    kubectl(["delete", "pod", &master, "-n", n, "--wait=false"])
        .await?
        .ok()?;
    e2e::eventually::eventually_with("a new master", TIMEOUT, Duration::from_secs(1), || async {
        match pods_with_role(n, "acid-rbac", "master").await?.as_slice() {
            [(pod, _)] if *pod != master => Ok(()),
            other => bail!("masters: {other:?}"),
        }
    })
    .await?;
    writable_master(n, "acid-rbac").await?;
    kubectl(["delete", "postgresql", "acid-rbac", "-n", n, "--wait=true"])
        .await?
        .ok()?;

    let user = format!("system:serviceaccount:{n}:postgres-pod");
    let requests = audited(&user)?;
    assert!(
        requests.len() > 10,
        "the audit log has only {} requests by {user}: did Patroni run under it?",
        requests.len()
    );
    let refused: BTreeSet<_> = requests
        .iter()
        .filter(|(_, _, code)| *code == 403)
        .map(|(r, v, _)| format!("{v} {r}"))
        .collect();
    assert!(refused.is_empty(), "Patroni was refused: {refused:?}");
    let used: BTreeSet<(String, String)> = requests
        .iter()
        .map(|(r, v, _)| (r.clone(), v.clone()))
        .collect();
    let grants = granted()?;
    let beyond: Vec<_> = used.difference(&grants).collect();
    assert!(beyond.is_empty(), "used but not granted: {beyond:?}");
    let idle: Vec<_> = grants
        .iter()
        .filter(|(r, v)| !used.contains(&(r.clone(), v.clone())) && !unused_by_design(r, v))
        .collect();
    assert!(
        idle.is_empty(),
        "granted, never used, and no known reason: {idle:?} (used: {used:?})"
    );
    eprintln!("Patroni used: {used:?}");
    Ok(())
}
