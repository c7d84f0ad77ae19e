//! Changes reaching running pods: pods whose template changed are flagged with Zalando's
//! rolling-update annotation ([`flag`], before the StatefulSet is written), then recreated one
//! step per reconcile as [`machine::next_action`] decides ([`step`]). Everything the rollout
//! needs to resume is on the pods, so a restarted controller — or another operator — goes on
//! where it stopped; nothing here costs an API call while no pod is flagged.

pub mod annotations;
pub mod machine;
pub mod template;

use crate::context::Context;
use crate::events::{Event, Kind};
use crate::members::{self, ROLLING_UPDATE_ANNOTATION};
use common::config::Config;
use common::crd::Postgresql;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use machine::Action;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Spilo's default `maximum_lag_on_failover` (32 MiB), when the manifest sets none.
pub const DEFAULT_MAX_LAG: u64 = 32 << 20;
/// How soon a cluster with flagged pods is looked at again.
pub const POLL: Duration = Duration::from_secs(2);

/// What the rollouts in progress remember between reconciles: only when the last step was
/// taken, for the stuck warning. Losing it (a restart) only restarts that clock.
#[derive(Default)]
pub struct Memo(Mutex<HashMap<String, Progress>>);

struct Progress {
    since: Instant,
    stuck_reported: bool,
    /// The uids of the pods this controller flagged that its pod cache does not show flagged
    /// yet: they count as flagged, or a step right after the flagging would see only some
    /// flagged and, say, switch over to a replica that is about to be recreated.
    flagged: BTreeSet<String>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            since: Instant::now(),
            stuck_reported: false,
            flagged: BTreeSet::new(),
        }
    }
}

impl Memo {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Progress>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a step failed; the reconcile goes on and the step is tried again.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// The cluster's pods `<cluster>-0 … <cluster>-<n-1>`, from the cache.
pub(crate) fn pods(
    ctx: &Context,
    namespace: &str,
    cluster: &str,
    instances: usize,
) -> Vec<Arc<Pod>> {
    (0..instances)
        .filter_map(|i| {
            ctx.observed
                .pods
                .get(&ObjectRef::new(&format!("{cluster}-{i}")).within(namespace))
        })
        .collect()
}

fn postgres_image(sts: &StatefulSet) -> Option<&str> {
    sts.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == members::POSTGRES_CONTAINER)?
        .image
        .as_deref()
}

/// Why each pod must be recreated before `desired` is written over the cached StatefulSet:
/// all of them when the template's fingerprint changed, and with `enable_lazy_spilo_upgrade`
/// off those still running another Spilo image (a lazy upgrade turned off later). A
/// StatefulSet without a fingerprint (written by another operator or an older version) only
/// gets one: taking a cluster over recreates nothing.
pub fn to_flag(
    config: &Config,
    cached: Option<&StatefulSet>,
    desired: &StatefulSet,
    pods: &[&Pod],
) -> Vec<(String, &'static str)> {
    let Some(cached) = cached else {
        return Vec::new();
    };
    let fingerprint = |s: &StatefulSet| s.annotations().get(template::FINGERPRINT).cloned();
    let changed = fingerprint(cached).is_some_and(|old| Some(old) != fingerprint(desired));
    let image = postgres_image(desired);
    pods.iter()
        .filter(|p| !members::is_flagged(p) && p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let why = if changed {
                "the pod template changed"
            } else if !config.enable_lazy_spilo_upgrade
                && members::postgres_image(p).is_some_and(|i| Some(i) != image)
            {
                "the pod runs another Spilo image"
            } else {
                return None;
            };
            Some((p.name_any(), why))
        })
        .collect()
}

/// Flags the pods that must be recreated (see [`to_flag`]); returns how many were flagged.
pub async fn flag(
    ctx: &Context,
    config: &Config,
    pg: &Postgresql,
    desired: &StatefulSet,
) -> Result<usize, Error> {
    let namespace = pg.namespace().unwrap_or_default();
    let key = ObjectRef::new(&desired.name_any()).within(&namespace);
    let cached = ctx.stores.statefulsets.get(&key);
    let instances = cached
        .as_ref()
        .and_then(|s| s.spec.as_ref()?.replicas)
        .unwrap_or(0)
        .max(0) as usize;
    let pods = pods(ctx, &namespace, pg.cluster_name(), instances);
    let pod_refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let flags = to_flag(config, cached.as_deref(), desired, &pod_refs);
    if flags.is_empty() {
        return Ok(0);
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch =
        serde_json::json!({"metadata": {"annotations": {ROLLING_UPDATE_ANNOTATION: "true"}}});
    for (pod, _) in &flags {
        api.patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| Error::Api {
                what: format!("flagging pod {pod} for the rolling update"),
                source,
            })?;
        ctx.metrics.wrote("pods");
    }
    let uids: Vec<String> = pods
        .iter()
        .filter(|p| flags.iter().any(|(name, _)| *name == p.name_any()))
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    let key = pg.metadata.uid.clone().unwrap_or_else(|| pg.name_any());
    ctx.rollouts
        .lock()
        .entry(key)
        .or_insert_with(Progress::new)
        .flagged
        .extend(uids);
    let names: Vec<&str> = flags.iter().map(|(p, _)| p.as_str()).collect();
    publish(
        ctx,
        pg,
        Kind::Normal,
        "RollingUpdate",
        format!(
            "Performing rolling update: {} ({})",
            names.join(", "),
            flags[0].1
        ),
    );
    Ok(flags.len())
}

/// Takes the rolling update's next step; returns when to look again (`None`: nothing to do).
pub async fn step(
    ctx: &Context,
    config: &Config,
    pg: &Postgresql,
    instances: usize,
) -> Result<Option<Duration>, Error> {
    let namespace = pg.namespace().unwrap_or_default();
    let key = pg.metadata.uid.clone().unwrap_or_else(|| pg.name_any());
    let pods = pods(ctx, &namespace, pg.cluster_name(), instances);
    let flagged_here = {
        let mut memo = ctx.rollouts.lock();
        match memo.get_mut(&key) {
            Some(progress) => {
                // Forget what the cache shows flagged now, or what is gone.
                progress.flagged.retain(|uid| {
                    pods.iter()
                        .any(|p| p.metadata.uid.as_ref() == Some(uid) && !members::is_flagged(p))
                });
                progress.flagged.clone()
            }
            None => BTreeSet::new(),
        }
    };
    let is_flagged = |p: &Pod| {
        members::is_flagged(p)
            || p.metadata
                .uid
                .as_ref()
                .is_some_and(|u| flagged_here.contains(u))
    };
    if !pods.iter().any(|p| is_flagged(p)) {
        if ctx.rollouts.lock().remove(&key).is_some() {
            publish(
                ctx,
                pg,
                Kind::Normal,
                "RollingUpdate",
                "Rolling update done - pods have been recreated".into(),
            );
        }
        return Ok(None);
    }
    let view: Vec<machine::Pod> = pods
        .iter()
        .map(|p| machine::Pod {
            name: p.name_any(),
            flagged: is_flagged(p),
            ready: members::is_ready(p),
            terminating: p.metadata.deletion_timestamp.is_some(),
        })
        .collect();
    let (cluster, address) = patroni_view(ctx, config, &pods).await;
    let waiting_for = {
        let mut memo = ctx.rollouts.lock();
        let progress = memo.entry(key.clone()).or_insert_with(Progress::new);
        progress.since.elapsed()
    };
    let input = machine::Input {
        instances,
        pods: &view,
        patroni: cluster.as_ref().map_err(String::as_str),
        max_lag: max_lag(pg),
        synchronous_mode: synchronous_mode(pg),
        waiting_for,
        timeout: config.pod_label_wait_timeout(),
    };
    let action = machine::next_action(&input);
    tracing::debug!(cluster = %pg.name_any(), ?action, "rolling update");
    match action {
        Action::Idle => return Ok(None),
        Action::Wait(_) => {}
        Action::Stuck(why) => {
            let first = ctx
                .rollouts
                .lock()
                .get_mut(&key)
                .is_some_and(|p| !std::mem::replace(&mut p.stuck_reported, true));
            if first {
                publish(ctx, pg, Kind::Warning, "RollingUpdateStuck", why);
            }
        }
        Action::Recreate { pod, downtime } => {
            if downtime {
                publish(
                    ctx,
                    pg,
                    Kind::Warning,
                    "RollingUpdate",
                    format!(
                        "{pod} is the only member: no switchover is possible, writes stop until its successor runs"
                    ),
                );
            }
            recreate(ctx, pg, &namespace, &pods, &pod).await?;
            progressed(ctx, &key);
        }
        Action::Switchover { leader, candidate } => {
            let address = address.unwrap_or_default();
            publish(
                ctx,
                pg,
                Kind::Normal,
                "Switchover",
                format!("Switching over from {leader} to {candidate} before {leader} is recreated"),
            );
            match ctx.patroni.switchover(&address, &leader, &candidate).await {
                Ok(()) => {
                    publish(
                        ctx,
                        pg,
                        Kind::Normal,
                        "Switchover",
                        format!("Switchover from {leader} to {candidate} done"),
                    );
                    progressed(ctx, &key);
                }
                // Refused or lost (the candidate went away): the next step looks again.
                Err(e) => publish(
                    ctx,
                    pg,
                    Kind::Warning,
                    "SwitchoverFailed",
                    format!("Switchover from {leader} to {candidate} failed: {e}"),
                ),
            }
        }
    }
    Ok(Some(POLL))
}

/// The largest lag a replica may have to be promoted: the manifest's
/// `maximum_lag_on_failover`, else Spilo's default.
pub fn max_lag(pg: &Postgresql) -> u64 {
    pg.spec
        .patroni
        .as_ref()
        .and_then(|p| p.maximum_lag_on_failover)
        .and_then(|l| u64::try_from(l).ok())
        .filter(|l| *l > 0)
        .unwrap_or(DEFAULT_MAX_LAG)
}

/// Whether Patroni runs in synchronous mode (only a synchronous standby may be promoted).
pub fn synchronous_mode(pg: &Postgresql) -> bool {
    pg.spec
        .patroni
        .as_ref()
        .and_then(|p| p.synchronous_mode)
        .unwrap_or(false)
}

fn progressed(ctx: &Context, key: &str) {
    if let Some(p) = ctx.rollouts.lock().get_mut(key) {
        p.since = Instant::now();
        p.stuck_reported = false;
    }
}

/// Patroni's `/cluster`, asked of the pod labelled master first, then of the others; with the
/// address that answered.
pub(crate) async fn patroni_view(
    ctx: &Context,
    config: &Config,
    pods: &[Arc<Pod>],
) -> (Result<crate::patroni::Cluster, String>, Option<String>) {
    let role = &config.kubernetes.pod_role_label;
    let mut order: Vec<&Arc<Pod>> = pods.iter().collect();
    order.sort_by_key(|p| p.labels().get(role).map(String::as_str) != Some(members::MASTER));
    let mut last = "no pod has an IP".to_string();
    for pod in order {
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        match ctx.patroni.cluster(&ip).await {
            Ok(cluster) if cluster.leader().is_some() => return (Ok(cluster), Some(ip)),
            Ok(_) => last = format!("{} knows no leader", pod.name_any()),
            Err(e) => last = e.to_string(),
        }
    }
    (Err(last), None)
}

/// Deletes `name`, only if it is still the pod that was observed (a uid precondition), so a
/// successor that appeared meanwhile is never deleted.
async fn recreate(
    ctx: &Context,
    pg: &Postgresql,
    namespace: &str,
    pods: &[Arc<Pod>],
    name: &str,
) -> Result<(), Error> {
    let uid = pods
        .iter()
        .find(|p| p.name_any() == name)
        .and_then(|p| p.metadata.uid.clone());
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let params = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    publish(
        ctx,
        pg,
        Kind::Normal,
        "RollingUpdate",
        format!("Recreating pod {name}"),
    );
    match api.delete(name, &params).await {
        Ok(_) => {
            ctx.metrics.wrote("pods");
            Ok(())
        }
        // Already gone, or already replaced: the next step sees the successor.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(source) => Err(Error::Api {
            what: format!("deleting pod {name} for the rolling update"),
            source,
        }),
    }
}

fn publish(ctx: &Context, pg: &Postgresql, kind: Kind, reason: &str, note: String) {
    tracing::info!(cluster = %pg.name_any(), reason, "{note}");
    ctx.events.publish(
        pg.object_ref(&()),
        Event {
            kind,
            reason: reason.into(),
            note,
            action: "RollingUpdate".into(),
            related: None,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sts(fingerprint: Option<&str>, image: &str) -> StatefulSet {
        let mut annotations = json!({});
        if let Some(f) = fingerprint {
            annotations[template::FINGERPRINT] = json!(f);
        }
        serde_json::from_value(json!({
            "metadata": {"name": "a", "annotations": annotations},
            "spec": {"selector": {}, "serviceName": "a", "template": {"spec": {"containers": [
                {"name": "postgres", "image": image}]}}}
        }))
        .unwrap()
    }

    fn pod(name: &str, image: &str, flagged: bool) -> Pod {
        let annotations = if flagged {
            json!({ROLLING_UPDATE_ANNOTATION: "true"})
        } else {
            json!({})
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"containers": [{"name": "postgres", "image": image}]}
        }))
        .unwrap()
    }

    fn names(flags: Vec<(String, &'static str)>) -> Vec<String> {
        flags.into_iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn a_changed_fingerprint_flags_every_pod_not_yet_flagged() {
        let config = Config::default();
        let (a, b) = (pod("a-0", "spilo:1", false), pod("a-1", "spilo:1", true));
        let flags = to_flag(
            &config,
            Some(&sts(Some("old"), "spilo:1")),
            &sts(Some("new"), "spilo:1"),
            &[&a, &b],
        );
        assert_eq!(names(flags), ["a-0"]);
        // Same fingerprint, same image: nothing.
        let same = to_flag(
            &config,
            Some(&sts(Some("x"), "spilo:1")),
            &sts(Some("x"), "spilo:1"),
            &[&a],
        );
        assert!(same.is_empty());
    }

    #[test]
    fn a_new_or_taken_over_statefulset_recreates_nothing() {
        let config = Config::default();
        let a = pod("a-0", "spilo:1", false);
        assert!(to_flag(&config, None, &sts(Some("new"), "spilo:1"), &[&a]).is_empty());
        assert!(
            to_flag(
                &config,
                Some(&sts(None, "spilo:1")),
                &sts(Some("new"), "spilo:1"),
                &[&a]
            )
            .is_empty()
        );
    }

    #[test]
    fn pods_on_another_image_are_flagged_only_when_lazy_upgrade_is_off() {
        let mut config = Config::default();
        let a = pod("a-0", "spilo:1", false);
        let (old, new) = (sts(Some("x"), "spilo:2"), sts(Some("x"), "spilo:2"));
        assert_eq!(names(to_flag(&config, Some(&old), &new, &[&a])), ["a-0"]);
        config.enable_lazy_spilo_upgrade = true;
        assert!(to_flag(&config, Some(&old), &new, &[&a]).is_empty());
    }
}
