//! Built-in workloads behave on the kwok-backed control plane: StatefulSets with volumes,
//! pod IPs on loopback, pod deletion, Jobs, and garbage collection.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use e2e::paths::{self, Cidr};
use e2e::{TestNamespace, apply_yaml, cluster, eventually, eventually_with};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, PropagationPolicy};
use kube::{Api, ResourceExt};

fn is_loopback(ip: &str) -> bool {
    ip.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `ip` is a pod IP of this checkout's control plane (its slot's range).
fn in_pod_cidr(ip: &str) -> bool {
    ip.parse::<Ipv4Addr>()
        .is_ok_and(|ip| paths::network().pod_cidr.contains(ip))
}

#[tokio::test]
async fn nodes_are_ready_zoned_and_on_loopback() -> Result<()> {
    let c = cluster().await?;
    let nodes = Api::<Node>::all(c.client.clone())
        .list(&ListParams::default().labels("type=kwok"))
        .await?;
    ensure!(
        nodes.items.len() >= 3,
        "expected >= 3 kwok nodes, got {}",
        nodes.items.len()
    );
    // Node addresses start at this checkout's NODE_IP (its slot's; see scripts/lib.sh).
    let node_range = Cidr {
        addr: paths::network().node_ip,
        prefix: 24,
    };
    let mut zones = std::collections::BTreeSet::new();
    for n in &nodes.items {
        let zone = n.labels().get("topology.kubernetes.io/zone").cloned();
        ensure!(zone.is_some(), "node {} has no zone label", n.name_any());
        zones.extend(zone);
        let status = n.status.clone().unwrap_or_default();
        for a in status.addresses.unwrap_or_default() {
            if a.type_ == "InternalIP" || a.type_ == "ExternalIP" {
                ensure!(
                    is_loopback(&a.address)
                        && a.address
                            .parse::<Ipv4Addr>()
                            .is_ok_and(|ip| node_range.contains(ip)),
                    "node {} has address {}, outside {node_range}",
                    n.name_any(),
                    a.address
                );
            }
        }
    }
    ensure!(zones.len() >= 3, "expected 3 distinct zones, got {zones:?}");
    Ok(())
}

#[tokio::test]
async fn services_get_cluster_ips_from_this_checkouts_range() -> Result<()> {
    let c = cluster().await?;
    let ns = TestNamespace::new(&c, "svc").await?;
    apply_yaml(
        &c.client,
        Some(&ns.name),
        "apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec:\n  ports: [{port: 5432}]\n  selector: {app: db}\n",
    )
    .await?;
    let range = paths::network().service_cidr;
    let kubernetes = Api::<Service>::namespaced(c.client.clone(), "default")
        .get("kubernetes")
        .await?;
    let db = Api::<Service>::namespaced(c.client.clone(), &ns.name)
        .get("db")
        .await?;
    for svc in [&kubernetes, &db] {
        let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.clone());
        ensure!(
            ip.as_deref()
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
                .is_some_and(|ip| range.contains(ip)),
            "Service {} has clusterIP {ip:?}, outside this checkout's range {range}",
            svc.name_any()
        );
    }
    Ok(())
}

#[tokio::test]
async fn statefulset_with_volume_claims_gets_running_pods_and_bound_pvcs() -> Result<()> {
    let c = cluster().await?;
    let ns = TestNamespace::new(&c, "sts").await?;
    apply_yaml(&c.client, Some(&ns.name), STS).await?;

    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &ns.name);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), &ns.name);
    let sts: Api<StatefulSet> = Api::namespaced(c.client.clone(), &ns.name);
    let ips = eventually_with(
        "2 Running and Ready pods of StatefulSet web",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async {
            let list = pods.list(&ListParams::default().labels("app=web")).await?;
            let mut ips = Vec::new();
            for p in &list.items {
                let st = p.status.clone().unwrap_or_default();
                let ready = st
                    .conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                if st.phase.as_deref() == Some("Running") && ready {
                    ips.extend(st.pod_ip);
                }
            }
            if ips.len() == 2 {
                Ok(ips)
            } else {
                bail!("{} of {} pods Running+Ready", ips.len(), list.items.len())
            }
        },
    )
    .await?;
    for ip in &ips {
        ensure!(is_loopback(ip), "pod IP {ip} is outside 127.0.0.0/8");
        ensure!(
            in_pod_cidr(ip),
            "pod IP {ip} is outside this checkout's pod range {}",
            paths::network().pod_cidr
        );
    }
    // The scheduler places a pod once its claim names a volume; the claim's phase turns Bound in
    // a later update by the volume controller, which lags when it has a backlog.
    for i in 0..2 {
        let name = format!("data-web-{i}");
        eventually(&format!("PVC {name} Bound"), || async {
            let phase = pvcs.get(&name).await?.status.and_then(|s| s.phase);
            ensure!(phase.as_deref() == Some("Bound"), "PVC {name} is {phase:?}");
            Ok(())
        })
        .await?;
    }
    // The disruption controller counts the Ready pods for the PodDisruptionBudget.
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), &ns.name);
    eventually("PDB web to count 2 healthy pods", || async {
        let st = pdbs.get("web").await?.status.unwrap_or_default();
        if st.current_healthy == 2 && st.disruptions_allowed == 1 {
            Ok(())
        } else {
            bail!(
                "currentHealthy={} disruptionsAllowed={}",
                st.current_healthy,
                st.disruptions_allowed
            )
        }
    })
    .await?;
    eventually("StatefulSet status to report 2 ready replicas", || async {
        let s = sts.get("web").await?;
        let ready = s.status.and_then(|s| s.ready_replicas).unwrap_or(0);
        if ready == 2 {
            Ok(())
        } else {
            bail!("readyReplicas={ready}")
        }
    })
    .await?;

    // A deleted pod finishes terminating (kwok plays the kubelet) and the StatefulSet
    // replaces it with a new pod of the same name.
    let old_uid = pods.get("web-0").await?.uid();
    pods.delete("web-0", &DeleteParams::default()).await?;
    eventually("web-0 to be replaced by a new Running pod", || async {
        let p = pods.get("web-0").await?;
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if p.uid() != old_uid && running && p.metadata.deletion_timestamp.is_none() {
            Ok(())
        } else {
            bail!("web-0 uid={:?} running={running}", p.uid())
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn job_pods_complete() -> Result<()> {
    let c = cluster().await?;
    let ns = TestNamespace::new(&c, "job").await?;
    apply_yaml(&c.client, Some(&ns.name), JOB).await?;
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), &ns.name);
    eventually_with(
        "Job once to succeed",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || async {
            let j = jobs.get("once").await?;
            let st = j.status.unwrap_or_default();
            let done = st
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True");
            if done && st.succeeded == Some(1) {
                Ok(())
            } else {
                bail!("succeeded={:?} active={:?}", st.succeeded, st.active)
            }
        },
    )
    .await
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_owned_objects() -> Result<()> {
    let c = cluster().await?;
    let ns = TestNamespace::new(&c, "gc").await?;
    // A ConfigMap owned by another ConfigMap (explicit ownerReference).
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns.name);
    apply_yaml(
        &c.client,
        Some(&ns.name),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner}\ndata: {a: b}\n",
    )
    .await?;
    let owner_uid = cms.get("owner").await?.uid().unwrap_or_default();
    apply_yaml(
        &c.client,
        Some(&ns.name),
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n  ownerReferences:\n  - {{apiVersion: v1, kind: ConfigMap, name: owner, uid: {owner_uid}}}\ndata: {{c: d}}\n"
        ),
    )
    .await?;

    // A Deployment owns a ReplicaSet which owns pods.
    apply_yaml(&c.client, Some(&ns.name), DEPLOY).await?;
    let rs: Api<ReplicaSet> = Api::namespaced(c.client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &ns.name);
    eventually(
        "Deployment app to create its ReplicaSet and pod",
        || async {
            let n_rs = rs.list(&ListParams::default()).await?.items.len();
            let n_pods = pods
                .list(&ListParams::default().labels("app=gc"))
                .await?
                .items
                .len();
            if n_rs == 1 && n_pods == 1 {
                Ok(())
            } else {
                bail!("{n_rs} ReplicaSets, {n_pods} pods")
            }
        },
    )
    .await?;

    cms.delete("owner", &DeleteParams::default()).await?;
    Api::<Deployment>::namespaced(c.client.clone(), &ns.name)
        .delete(
            "app",
            &DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            },
        )
        .await?;
    eventually_with(
        "garbage collection of the owned ConfigMap, ReplicaSet and pod",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || async {
            let owned = cms.get_opt("owned").await?.is_some();
            let n_rs = rs.list(&ListParams::default()).await?.items.len();
            let n_pods = pods
                .list(&ListParams::default().labels("app=gc"))
                .await?
                .items
                .len();
            if !owned && n_rs == 0 && n_pods == 0 {
                Ok(())
            } else {
                bail!("owned ConfigMap present={owned}, {n_rs} ReplicaSets, {n_pods} pods left")
            }
        },
    )
    .await
}

const STS: &str = r#"
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: db
        image: example.invalid/never-pulled:1
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

const JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: run
        image: example.invalid/never-pulled:1
"#;

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  replicas: 1
  selector: {matchLabels: {app: gc}}
  template:
    metadata: {labels: {app: gc}}
    spec:
      containers:
      - name: app
        image: example.invalid/never-pulled:1
"#;
