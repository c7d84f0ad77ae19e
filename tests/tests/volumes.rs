//! Volumes, the StatefulSet's replacement and cleanup on real Patroni + PostgreSQL members:
//!
//! - a size increase grows both members' claims, replaces the StatefulSet (a new uid, which
//!   owns the same pods) and restarts nothing: the same pod uids and the same
//!   `pg_postmaster_start_time()` on every member; then a StorageClass change of the claim
//!   template (which only a replacement can carry) restarts nothing either; with
//!   `persistent_volume_claim_retention_policy` `when_scaled: delete` a scale-down removes the
//!   dropped member's claim; a client writes a row every 10 ms through the master Service
//!   during the size and StorageClass changes (`e2e::writer::ClusterWriter`): no acknowledged
//!   row lost, no write failed, none waiting 1 s (`WriteReport::ensure_uninterrupted`);
//! - deleting the cluster removes Patroni's ConfigMaps and, with
//!   `enable_persistent_volume_claim_deletion` (the default), the claims; with it off the
//!   claims stay.
//!
//! The webhook's refusal of a shrink is in `webhook.rs`; what the controller does with one
//! that bypassed the webhook is a mock test (`controller/tests/mock_volumes.rs`). Kept cheap:
//! one two-member cluster and one single member.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use e2e::command::{kubectl, kubectl_with_stdin};
use e2e::events::notes_about;
use e2e::eventually::eventually_with;
use e2e::patch::{kubectl_apply, set_operator_config};
use e2e::patroni::{
    TIMEOUT, cluster_objects, json, manifest, pods, setup, sql, wait_streaming, writable_master,
};
use e2e::writer::ClusterWriter;
use serde_json::Value;

const POLL: Duration = Duration::from_millis(500);

/// The StatefulSet `name` as JSON.
async fn statefulset(ns: &str, name: &str) -> Result<Value> {
    json(&["get", "statefulset", name, "-n", ns]).await
}

/// The requested storage of each `pgdata` claim of `cluster`, sorted by claim.
async fn claim_sizes(ns: &str, cluster: &str) -> Result<Vec<(String, String)>> {
    let mut sizes: Vec<(String, String)> = cluster_objects(ns, "pvc", cluster)
        .await?
        .iter()
        .map(|c| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                s(&c["metadata"]["name"]),
                s(&c["spec"]["resources"]["requests"]["storage"]),
            )
        })
        .collect();
    sizes.sort();
    Ok(sizes)
}

/// Each member's `pg_postmaster_start_time()`, by pod: changes whenever PostgreSQL restarts.
async fn start_times(ns: &str, cluster: &str, pw: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (pod, ip, _) in pods(ns, cluster).await? {
        let started = sql(&ip, pw, "select pg_postmaster_start_time()").await?;
        out.push((pod, started));
    }
    Ok(out)
}

/// Waits for a StatefulSet `name` other than `old_uid`, whose claim template satisfies `want`,
/// owning every pod of the cluster with all of them ready; returns its uid.
async fn replaced(
    ns: &str,
    name: &str,
    old_uid: &str,
    instances: usize,
    want: impl Fn(&Value) -> bool,
) -> Result<String> {
    eventually_with(
        &format!("a new StatefulSet {name} owning its {instances} pods"),
        TIMEOUT,
        POLL,
        || async {
            let sts = statefulset(ns, name).await?;
            let uid = sts["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            ensure!(uid != old_uid, "still the old StatefulSet {uid}");
            let template = &sts["spec"]["volumeClaimTemplates"][0];
            ensure!(want(template), "claim template {template}");
            let ready = sts["status"]["readyReplicas"].as_u64().unwrap_or(0);
            ensure!(ready == instances as u64, "{ready} ready replicas");
            for pod in cluster_objects(ns, "pods", name).await? {
                let owner = pod["metadata"]["ownerReferences"][0]["uid"].as_str();
                ensure!(
                    owner == Some(uid.as_str()),
                    "pod {} is owned by {owner:?}",
                    pod["metadata"]["name"]
                );
            }
            Ok(uid)
        },
    )
    .await
}

/// Patroni's ConfigMaps of `cluster` that exist.
async fn patroni_config_maps(ns: &str, cluster: &str) -> Result<Vec<String>> {
    let list = json(&["get", "configmaps", "-n", ns]).await?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .filter(|n| {
            ["leader", "config", "sync", "failover"]
                .iter()
                .any(|s| *n == format!("{cluster}-{s}"))
        })
        .map(String::from)
        .collect())
}

#[tokio::test]
async fn a_volume_change_replaces_the_statefulset_and_restarts_nothing() -> Result<()> {
    let (ns, _controller) = setup("vol-grow").await?;
    let n = ns.name.as_str();
    let name = "acid-vol";
    kubectl_apply(n, &manifest(name, 2)).await?;
    let (_, master_ip, pw) = writable_master(n, name).await?;
    wait_streaming(&master_ip, &pw, 1).await?;
    let before_pods = pods(n, name).await?;
    let before_times = start_times(n, name, &pw).await?;
    let first_uid = replaced(n, name, "", 2, |_| true).await?;
    let writer = ClusterWriter::start(n, name, &pw).await?;
    assert_eq!(
        claim_sizes(n, name).await?,
        [
            (format!("pgdata-{name}-0"), "1Gi".to_string()),
            (format!("pgdata-{name}-1"), "1Gi".to_string()),
        ]
    );

    // 1Gi -> 2Gi: the claims grow, the StatefulSet is replaced, no pod restarts.
    kubectl_apply(n, &manifest(name, 2).replace("size: 1Gi", "size: 2Gi")).await?;
    eventually_with("both claims at 2Gi", TIMEOUT, POLL, || async {
        let sizes = claim_sizes(n, name).await?;
        if sizes.iter().all(|(_, s)| s == "2Gi") && sizes.len() == 2 {
            Ok(())
        } else {
            bail!("claims {sizes:?}")
        }
    })
    .await?;
    let second_uid = replaced(n, name, &first_uid, 2, |t| {
        t["spec"]["resources"]["requests"]["storage"] == "2Gi"
    })
    .await?;
    assert_eq!(pods(n, name).await?, before_pods, "the same pods (uids)");
    assert_eq!(
        start_times(n, name, &pw).await?,
        before_times,
        "no PostgreSQL restarted"
    );
    let notes = notes_about(n, name, "Replacing").await?;
    assert!(
        notes
            .iter()
            .any(|m| m.contains("spec.volumeClaimTemplates changed")),
        "{notes:?}"
    );
    let resized = notes_about(n, name, "VolumeResized").await?;
    assert_eq!(resized.len(), 2, "{resized:?}");

    // Another StorageClass for new claims: a claim template change only a replacement carries;
    // the existing claims keep theirs, nothing restarts.
    let class = format!("{n}-slow");
    let storage_class = format!(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: {class}\nprovisioner: kubernetes.io/host-path\nreclaimPolicy: Delete\nvolumeBindingMode: Immediate\n"
    );
    kubectl_with_stdin(["apply", "-f", "-"], &storage_class)
        .await?
        .ok()?;
    let with_class = manifest(name, 2).replace(
        "size: 1Gi",
        &format!("size: 2Gi\n    storageClass: {class}"),
    );
    kubectl_apply(n, &with_class).await?;
    replaced(n, name, &second_uid, 2, |t| {
        t["spec"]["storageClassName"] == class.as_str()
    })
    .await?;
    assert_eq!(pods(n, name).await?, before_pods, "the same pods (uids)");
    assert_eq!(
        start_times(n, name, &pw).await?,
        before_times,
        "no PostgreSQL restarted"
    );
    let _ = kubectl(["delete", "storageclass", &class, "--wait=false"]).await;
    // Both replacements orphan and adopt running pods: the application saw no outage.
    let scenario = "volume size increase and StorageClass change, 2 members";
    writer
        .check(scenario)
        .await?
        .ensure_uninterrupted(scenario)?;

    // persistent_volume_claim_retention_policy when_scaled: delete reaches the StatefulSet in
    // place (no replacement), and a scale-down then removes the dropped member's claim.
    let master = writable_master(n, name).await?.0;
    ensure!(master == format!("{name}-0"), "the master is {master}");
    set_operator_config(
        n,
        &[(
            "persistent_volume_claim_retention_policy",
            "when_deleted:retain,when_scaled:delete",
        )],
    )
    .await?;
    eventually_with(
        "the retention policy on the StatefulSet",
        TIMEOUT,
        POLL,
        || async {
            let sts = statefulset(n, name).await?;
            let policy = &sts["spec"]["persistentVolumeClaimRetentionPolicy"];
            ensure!(policy["whenScaled"] == "Delete", "policy {policy}");
            Ok(sts["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string())
        },
    )
    .await?;
    kubectl_apply(
        n,
        &with_class.replace("numberOfInstances: 2", "numberOfInstances: 1"),
    )
    .await?;
    eventually_with("one member and one claim", TIMEOUT, POLL, || async {
        let left = (pods(n, name).await?, claim_sizes(n, name).await?);
        if left.0.len() == 1 && left.1 == [(format!("pgdata-{name}-0"), "2Gi".to_string())] {
            Ok(())
        } else {
            bail!("left: {left:?}")
        }
    })
    .await?;
    assert_eq!(pods(n, name).await?[0], before_pods[0], "the master stays");

    // Deleting the cluster: Patroni's ConfigMaps and the claims go with it.
    ensure!(
        !patroni_config_maps(n, name).await?.is_empty(),
        "Patroni made its ConfigMaps"
    );
    kubectl(["delete", "postgresql", name, "-n", n, "--wait=false"])
        .await?
        .ok()?;
    eventually_with(
        "the pods, Patroni's ConfigMaps and the claims gone",
        TIMEOUT,
        POLL,
        || async {
            let left = (
                pods(n, name).await?,
                patroni_config_maps(n, name).await?,
                claim_sizes(n, name).await?,
            );
            if left.0.is_empty() && left.1.is_empty() && left.2.is_empty() {
                Ok(())
            } else {
                bail!("left: {left:?}")
            }
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn claims_are_kept_when_their_deletion_is_off() -> Result<()> {
    let (ns, _controller) = setup("vol-keep").await?;
    let n = ns.name.as_str();
    set_operator_config(n, &[("enable_persistent_volume_claim_deletion", "false")]).await?;
    let name = "acid-keep";
    kubectl_apply(n, &manifest(name, 1)).await?;
    writable_master(n, name).await?;
    kubectl(["delete", "postgresql", name, "-n", n, "--wait=false"])
        .await?
        .ok()?;
    eventually_with(
        "the pod and Patroni's ConfigMaps gone",
        TIMEOUT,
        POLL,
        || async {
            let left = (pods(n, name).await?, patroni_config_maps(n, name).await?);
            if left.0.is_empty() && left.1.is_empty() {
                Ok(())
            } else {
                bail!("left: {left:?}")
            }
        },
    )
    .await?;
    // Well after the pods: the claim stays.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        claim_sizes(n, name).await?,
        [(format!("pgdata-{name}-0"), "1Gi".to_string())]
    );
    Ok(())
}
