//! What the controller observes of a cluster's members without owning them: the pods (their
//! role label, readiness and the member status Patroni writes on them) and Patroni's leader
//! object. Ready pods are not a running database: a cluster is `Running` only once Patroni holds
//! a leader lock and that leader runs ([`leader`]), as read from these caches — no API call.
//!
//! Both caches trigger a reconcile only when what [`leader`] reads changes (a predicate over
//! the role label, readiness and Patroni's state; the leader annotation), not on every renewal
//! Patroni writes each `loop_wait`.

use crate::status::Pods;
use crate::stores::{Slim, api, owner_of, reflect, selector};
use common::config::Config;
use common::crd::Postgresql;
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Endpoints, PersistentVolumeClaim, Pod, PodSpec, PodStatus,
};
use kube::Client;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{ObjectRef, Store, store::WriterDropped};
use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

/// The pod annotation Patroni's Kubernetes DCS keeps a member's state in (JSON).
pub const STATUS_ANNOTATION: &str = "status";
/// The leader object's annotation naming the member that holds the lock.
pub const LEADER_ANNOTATION: &str = "leader";
/// The pod label value of the leader (Spilo configures Patroni with Zalando's value).
pub const MASTER: &str = "master";
/// Zalando's annotation on a pod that must be recreated by the rolling update; it survives a
/// restart of the operator, and an operator taking over a cluster from another one.
pub const ROLLING_UPDATE_ANNOTATION: &str = "zalando-postgres-operator-rolling-update-required";
/// The container whose image is Spilo's.
pub const POSTGRES_CONTAINER: &str = "postgres";

/// The caches of what the members show.
#[derive(Clone)]
pub struct Observed {
    /// The clusters' pods (selected by the cluster labels), slimmed to what [`leader`] reads.
    pub pods: Store<Pod>,
    /// Patroni's ConfigMaps (selected by the cluster labels Spilo gives them), slimmed to the
    /// leader annotation.
    pub config_maps: Store<ConfigMap>,
    /// The data volumes' claims (the claim template gives them the cluster labels), slimmed to
    /// their size and StorageClass ([`crate::volumes`]). They trigger nothing.
    pub claims: Store<PersistentVolumeClaim>,
}

/// The caches and the clusters whose members changed in a way [`leader`] sees.
pub struct Started {
    /// The caches.
    pub observed: Observed,
    /// The cluster of every such change.
    pub triggers: BoxStream<'static, ObjectRef<Postgresql>>,
}

/// Pods keep their labels, Patroni's member status, the rolling-update flag, the digest of the
/// template annotations they got, the mark of a major version upgrade in progress, the Ready
/// condition and IP, their node, the image of the `postgres` container and the major it is told
/// to run.
impl Slim for Pod {
    fn slim(&mut self) {
        let meta = &mut self.metadata;
        meta.managed_fields = None;
        if let Some(annotations) = &mut meta.annotations {
            annotations.retain(|k, _| {
                k == STATUS_ANNOTATION
                    || k == ROLLING_UPDATE_ANNOTATION
                    || k == crate::rollout::annotations::DIGEST
                    || k == crate::upgrade::MARK
            });
        }
        self.spec = self.spec.take().map(|spec| PodSpec {
            node_name: spec.node_name,
            containers: spec
                .containers
                .into_iter()
                .filter(|c| c.name == POSTGRES_CONTAINER)
                .map(|c| Container {
                    env: crate::upgrade::version::slim_env(&c),
                    name: c.name,
                    image: c.image,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        if let Some(status) = self.status.take() {
            self.status = Some(PodStatus {
                pod_ip: status.pod_ip,
                conditions: status
                    .conditions
                    .map(|c| c.into_iter().filter(|c| c.type_ == "Ready").collect()),
                ..Default::default()
            });
        }
    }
}

/// Patroni's ConfigMaps keep only who holds the leader lock (the configuration and the lock's
/// renewal times change all the time and are not read here).
impl Slim for ConfigMap {
    fn slim(&mut self) {
        let meta = &mut self.metadata;
        meta.managed_fields = None;
        if let Some(annotations) = &mut meta.annotations {
            annotations.retain(|k, _| k == LEADER_ANNOTATION);
        }
        self.data = None;
        self.binary_data = None;
    }
}

fn digest(parts: impl Hash) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    parts.hash(&mut hasher);
    hasher.finish()
}

/// What of a pod decides the leader: role label, readiness, Patroni's state and role.
fn pod_worthy(role_label: &str) -> impl Fn(&Pod) -> Option<u64> + Send + 'static {
    let role_label = role_label.to_string();
    move |pod: &Pod| {
        let role = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(&role_label));
        let member = patroni_member(pod);
        let flagged = is_flagged(pod);
        let deleting = pod.metadata.deletion_timestamp.is_some();
        Some(digest((role, is_ready(pod), member, flagged, deleting)))
    }
}

fn leader_worthy(cm: &ConfigMap) -> Option<u64> {
    Some(digest(annotation(
        &cm.metadata.annotations,
        LEADER_ANNOTATION,
    )))
}

/// Starts both caches.
pub fn start(client: &Client, namespace: Option<&str>, config: &Config) -> Started {
    let k8s = &config.kubernetes;
    let labels = watcher::Config::default()
        .labels(&selector(&k8s.cluster_labels))
        .any_semantic();
    let (pods, pod_changes) = reflect::<Pod>(api(client, namespace), labels.clone());
    let (config_maps, cm_changes) = reflect::<ConfigMap>(api(client, namespace), labels.clone());
    let (claims, claim_changes) = reflect::<PersistentVolumeClaim>(api(client, namespace), labels);
    // Polled with the triggers so that the cache fills; a claim's change triggers nothing.
    let claim_changes = claim_changes.filter_map(|_| futures::future::ready(None));
    let (pod_label, cm_label) = (
        k8s.cluster_name_label.clone(),
        k8s.cluster_name_label.clone(),
    );
    let pod_triggers = pod_changes
        .predicate_filter(pod_worthy(&k8s.pod_role_label), Default::default())
        .filter_map(move |pod| {
            futures::future::ready(pod.ok().and_then(|p| owner_of(&p, &pod_label)))
        });
    let cm_triggers = cm_changes
        .predicate_filter(leader_worthy, Default::default())
        .filter_map(move |cm| {
            futures::future::ready(cm.ok().and_then(|c| owner_of(&c, &cm_label)))
        });
    Started {
        observed: Observed {
            pods,
            config_maps,
            claims,
        },
        triggers: futures::stream::select_all([
            pod_triggers.boxed(),
            cm_triggers.boxed(),
            claim_changes.boxed(),
        ])
        .boxed(),
    }
}

impl Observed {
    /// Whether every cache has listed.
    pub async fn wait_until_ready(&self) -> Result<(), WriterDropped> {
        self.pods.wait_until_ready().await?;
        self.config_maps.wait_until_ready().await?;
        self.claims.wait_until_ready().await
    }

    /// The leader of `cluster`'s `instances` pods (`<cluster>-0` …), from the caches.
    /// `endpoints` is the controller's Endpoints cache, where Patroni keeps the lock when it
    /// does not use ConfigMaps.
    pub fn leader(
        &self,
        config: &Config,
        endpoints: &Store<Endpoints>,
        namespace: &str,
        cluster: &str,
        instances: i32,
    ) -> Pods {
        let pods: Vec<_> = (0..instances.max(0))
            .filter_map(|i| {
                self.pods
                    .get(&ObjectRef::new(&format!("{cluster}-{i}")).within(namespace))
            })
            .collect();
        let pods: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let lock = if crate::desired::uses_configmaps(config) {
            let name = format!("{cluster}-leader");
            self.config_maps
                .get(&ObjectRef::new(&name).within(namespace))
                .map(|cm| annotation(&cm.metadata.annotations, LEADER_ANNOTATION))
        } else if config.etcd_host.is_empty() {
            endpoints
                .get(&ObjectRef::new(cluster).within(namespace))
                .map(|ep| annotation(&ep.metadata.annotations, LEADER_ANNOTATION))
        } else {
            // etcd keeps the lock: the pods' labels (Spilo's role callback) are all there is.
            None
        };
        leader(&pods, lock, &config.kubernetes.pod_role_label)
    }
}

fn annotation(annotations: &Option<BTreeMap<String, String>>, key: &str) -> Option<String> {
    annotations
        .as_ref()?
        .get(key)
        .filter(|v| !v.is_empty())
        .cloned()
}

/// Whether the pod carries the rolling-update flag.
pub fn is_flagged(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROLLING_UPDATE_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// The image of the pod's `postgres` container.
pub fn postgres_image(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == POSTGRES_CONTAINER)?
        .image
        .as_deref()
}

/// Whether the pod's Ready condition is true.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Patroni's view of one member, from the pod's `status` annotation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
pub struct Member {
    /// `running`, `starting`, `stopped`, `crashed`, …
    #[serde(default)]
    pub state: String,
    /// `primary` (Patroni 4), `master` (older), `standby_leader`, `replica`.
    #[serde(default)]
    pub role: String,
}

fn patroni_member(pod: &Pod) -> Option<Member> {
    let raw = annotation(&pod.metadata.annotations, STATUS_ANNOTATION)?;
    serde_json::from_str(&raw).ok()
}

/// The leader among a cluster's pods. `lock` is the member named by Patroni's leader object:
/// `None` when that object is not seen (etcd, or not yet created), `Some(None)` when it names
/// no one. A pod counts as the leader when it carries the master role label, is ready, Patroni's
/// member status (when present) says it runs as the leader, and the lock (when seen) names it.
/// The label alone is not enough: a hard-killed leader keeps it until someone removes it.
pub fn leader(pods: &[&Pod], lock: Option<Option<String>>, role_label: &str) -> Pods {
    let labelled: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(role_label))
                .map(String::as_str)
                == Some(MASTER)
        })
        .collect();
    let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    if let Some(None) = &lock {
        return Pods::Waiting("Patroni's leader lock is free: no member holds it".into());
    }
    let candidates: Vec<&Pod> = labelled
        .iter()
        .copied()
        .filter(|p| match &lock {
            Some(Some(holder)) => *holder == name(p),
            _ => true,
        })
        .collect();
    let [pod] = candidates.as_slice() else {
        return Pods::Waiting(match (labelled.len(), &lock) {
            (0, _) => format!("no pod is labelled {role_label}={MASTER} yet"),
            (_, Some(Some(holder))) => format!(
                "Patroni's leader lock names {holder}, which is not the pod labelled {role_label}={MASTER} ({})",
                labelled
                    .iter()
                    .map(|p| name(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (n, _) => format!("{n} pods are labelled {role_label}={MASTER}"),
        });
    };
    if !is_ready(pod) {
        return Pods::Waiting(format!("the leader {} is not ready", name(pod)));
    }
    if let Some(member) = patroni_member(pod) {
        let leads = matches!(
            member.role.as_str(),
            "primary" | "master" | "standby_leader"
        );
        if member.state != "running" || !leads {
            return Pods::Waiting(format!(
                "Patroni reports the leader {} as {} {}",
                name(pod),
                if member.state.is_empty() {
                    "unknown"
                } else {
                    &member.state
                },
                if member.role.is_empty() {
                    "member"
                } else {
                    &member.role
                },
            ));
        }
    }
    Pods::Running(name(pod))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, role: Option<&str>, ready: bool, status: Option<&str>) -> Pod {
        let mut labels = json!({"cluster-name": "acid-a"});
        if let Some(role) = role {
            labels["spilo-role"] = json!(role);
        }
        let mut annotations = json!({});
        if let Some(s) = status {
            annotations[STATUS_ANNOTATION] = json!(s);
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "labels": labels, "annotations": annotations},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    const PRIMARY: Option<&str> = Some(r#"{"state":"running","role":"primary","timeline":1}"#);
    const REPLICA: Option<&str> = Some(r#"{"state":"running","role":"replica"}"#);

    fn lock(holder: &str) -> Option<Option<String>> {
        Some(Some(holder.into()))
    }

    #[test]
    fn a_ready_labelled_running_primary_named_by_the_lock_leads() {
        let a = pod("acid-a-0", Some("master"), true, PRIMARY);
        let b = pod("acid-a-1", Some("replica"), true, REPLICA);
        assert_eq!(
            leader(&[&a, &b], lock("acid-a-0"), "spilo-role"),
            Pods::Running("acid-a-0".into())
        );
        // Without a leader object (etcd) or member status, the label and readiness decide.
        let bare = pod("acid-a-0", Some("master"), true, None);
        assert_eq!(
            leader(&[&bare], None, "spilo-role"),
            Pods::Running("acid-a-0".into())
        );
    }

    #[test]
    fn ready_pods_without_a_leader_are_not_running() {
        let a = pod("acid-a-0", None, true, None);
        let Pods::Waiting(why) = leader(&[&a], None, "spilo-role") else {
            panic!()
        };
        assert_eq!(why, "no pod is labelled spilo-role=master yet");
        let Pods::Waiting(why) = leader(&[&a], Some(None), "spilo-role") else {
            panic!()
        };
        assert!(why.contains("lock is free"), "{why}");
    }

    #[test]
    fn a_stale_master_label_is_not_the_leader() {
        // acid-a-0 was killed hard and keeps its label; acid-a-1 took the lock.
        let old = pod("acid-a-0", Some("master"), false, None);
        let new = pod("acid-a-1", Some("master"), true, PRIMARY);
        assert_eq!(
            leader(&[&old, &new], lock("acid-a-1"), "spilo-role"),
            Pods::Running("acid-a-1".into())
        );
        // Without the lock two labelled pods are ambiguous.
        let Pods::Waiting(why) = leader(&[&old, &new], None, "spilo-role") else {
            panic!()
        };
        assert_eq!(why, "2 pods are labelled spilo-role=master");
        // The lock names someone not labelled yet.
        let Pods::Waiting(why) = leader(&[&old], lock("acid-a-1"), "spilo-role") else {
            panic!()
        };
        assert!(why.contains("names acid-a-1"), "{why}");
    }

    #[test]
    fn the_leader_must_be_ready_and_running_as_leader() {
        let unready = pod("acid-a-0", Some("master"), false, PRIMARY);
        assert_eq!(
            leader(&[&unready], lock("acid-a-0"), "spilo-role"),
            Pods::Waiting("the leader acid-a-0 is not ready".into())
        );
        let starting = pod(
            "acid-a-0",
            Some("master"),
            true,
            Some(r#"{"state":"starting","role":"replica"}"#),
        );
        assert_eq!(
            leader(&[&starting], lock("acid-a-0"), "spilo-role"),
            Pods::Waiting("Patroni reports the leader acid-a-0 as starting replica".into())
        );
        let standby = pod(
            "acid-a-0",
            Some("master"),
            true,
            Some(r#"{"state":"running","role":"standby_leader"}"#),
        );
        assert_eq!(
            leader(&[&standby], lock("acid-a-0"), "spilo-role"),
            Pods::Running("acid-a-0".into())
        );
    }

    #[test]
    fn slim_pods_keep_what_the_leader_check_reads() {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "acid-a-0", "labels": {"spilo-role": "master"},
                "annotations": {"status": "{}", "other": "x"},
                "managedFields": [{"manager": "patroni"}]},
            "spec": {"containers": [{"name": "postgres"}]},
            "status": {"podIP": "127.10.0.5", "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}
        }))
        .unwrap();
        p.slim();
        assert_eq!(postgres_image(&p), None);
        assert_eq!(p.spec.as_ref().unwrap().containers.len(), 1);
        assert_eq!(p.metadata.managed_fields, None);
        assert_eq!(p.metadata.annotations.as_ref().unwrap().len(), 1);
        let status = p.status.as_ref().unwrap();
        assert_eq!(status.pod_ip.as_deref(), Some("127.10.0.5"));
        assert_eq!(status.conditions.as_ref().unwrap().len(), 1);
        assert!(is_ready(&p));
    }

    #[test]
    fn triggers_ignore_patronis_renewals() {
        let worthy = pod_worthy("spilo-role");
        let a = pod("acid-a-0", Some("master"), true, PRIMARY);
        let renewed = pod(
            "acid-a-0",
            Some("master"),
            true,
            Some(r#"{"state":"running","role":"primary","timeline":1,"xlog_location":99}"#),
        );
        assert_eq!(worthy(&a), worthy(&renewed));
        let demoted = pod("acid-a-0", Some("replica"), true, REPLICA);
        assert_ne!(worthy(&a), worthy(&demoted));
        let cm = |leader: &str| -> ConfigMap {
            serde_json::from_value(json!({"metadata": {"name": "acid-a-leader",
                "annotations": {"leader": leader, "renewTime": "now"}}}))
            .unwrap()
        };
        assert_ne!(
            leader_worthy(&cm("acid-a-0")),
            leader_worthy(&cm("acid-a-1"))
        );
    }
}
