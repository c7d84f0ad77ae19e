//! The in-place major version upgrade of a running cluster, as Zalando runs it
//! (`majorVersionUpgrade`): once the pods carry the new `PGVERSION` (a rolling update, held
//! outside maintenance windows by [`version`]), Spilo's upgrade script runs in the primary's
//! `postgres` container through `pods/exec`; the outcome is the `postgresql`'s annotation
//! `last-major-upgrade-success` or `last-major-upgrade-failure` and an Event. A failure
//! annotation stops further attempts until it is removed or the cluster runs the wanted major.
//!
//! [`decide`] is the pure decision; [`sync`], the reconcile's one call, gathers its input from
//! the caches and Patroni, and carries it out. The reconcile of the cluster waits for the script
//! (kube-runtime never runs two reconciles of one cluster at once), so no rolling-update step,
//! Patroni configuration change or database sync of this cluster runs meanwhile.
//!
//! A controller restarted while the script runs finds the pods marked ([`MARK`]); once Patroni
//! is resumed it reports the outcome from the running major and removes the marks.

pub mod decide;
#[cfg(test)]
mod decide_tests;
pub mod exec;
pub mod version;

use crate::context::Context;
use crate::desired::pdb::CRITICAL_OPERATION_LABEL;
use crate::events::{Event, Kind};
use chrono::Utc;
use common::config::Config;
use common::crd::Postgresql;
use common::maintenance::{self, Gate};
use decide::{Decision, Input, Mode};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Zalando's annotation of a successful upgrade (UTC time, seconds, `Z`).
pub const SUCCESS_ANNOTATION: &str = "last-major-upgrade-success";
/// Zalando's annotation of a failed upgrade; it blocks further attempts.
pub const FAILURE_ANNOTATION: &str = "last-major-upgrade-failure";
/// The Events' reason (Zalando's is "Major Version Upgrade").
pub const REASON: &str = "MajorVersionUpgrade";
/// The pod annotation that marks the pods of a run in progress (with the critical-operation
/// label), so a controller restarted meanwhile knows the label is its own and what to report.
pub const MARK: &str = "postgres-operator.acid.zalan.do/major-version-upgrade";
/// How long the script may run before the controller stops waiting for it.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(3600);
/// How soon a cluster whose upgrade waits for something other than a window is looked at again.
pub const POLL: Duration = Duration::from_secs(10);

/// The command Zalando runs, `members` being the number of pods.
pub fn upgrade_command(members: usize) -> String {
    format!(
        "set -o pipefail && /usr/bin/python3 /scripts/inplace_upgrade.py {members} 2>&1 | tee last_upgrade.log"
    )
}

/// The exec's argv: through `su postgres` when the container runs as root, as Zalando does.
pub fn upgrade_argv(members: usize, root: bool) -> Vec<String> {
    let command = upgrade_command(members);
    if root {
        vec!["/bin/su".into(), "postgres".into(), "-c".into(), command]
    } else {
        vec!["/bin/bash".into(), "-c".into(), command]
    }
}

/// The reason a failed run gives: its last non-empty output line, else what the API server
/// said, else the standard error.
pub fn failure_reason(output: &exec::Output) -> Option<String> {
    if output.success && output.stderr.trim().is_empty() {
        return None;
    }
    let last = |text: &str| {
        text.lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
    };
    Some(
        last(&output.stdout)
            .or_else(|| last(&output.stderr))
            .or_else(|| output.failure.clone())
            .unwrap_or_else(|| "the upgrade script failed without a message".into()),
    )
}

/// What the controller remembers per cluster between reconciles.
#[derive(Default)]
pub struct Memo(Mutex<HashMap<String, Seen>>);

#[derive(Clone, Default)]
struct Seen {
    /// The major the primary was seen running (no Patroni call while it is the desired one).
    running: Option<u32>,
    /// The last wait reported (one Event per distinct reason).
    waiting: Option<String>,
    /// When this controller removed the marks of its own run: a pod cache that still shows them
    /// shortly after is behind, not a run it did not see end.
    unmarked_at: Option<std::time::Instant>,
}

impl Memo {
    fn get(&self, key: &str) -> Seen {
        self.lock().get(key).cloned().unwrap_or_default()
    }

    fn update(&self, key: &str, f: impl FnOnce(&mut Seen)) {
        f(self.lock().entry(key.to_string()).or_default());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The maintenance windows of the cluster now.
pub fn gate(config: &Config, pg: &Postgresql) -> Gate {
    let (windows, invalid) = maintenance::effective(
        pg.spec.maintenance_windows.as_deref(),
        &config.maintenance_windows,
    );
    for error in invalid {
        tracing::warn!(cluster = %pg.name_any(), "{error}; ignored");
    }
    maintenance::gate(&windows, config.enable_maintenance_windows, Utc::now())
}

/// Whether upgrades apply to this cluster at all, and the major it should run.
fn wanted(config: &Config, pg: &Postgresql) -> (Mode, bool, Option<u32>) {
    let upgrade = &config.major_version_upgrade;
    let mode = Mode::parse(&upgrade.major_version_upgrade_mode);
    let team_allowed = upgrade
        .major_version_upgrade_team_allow_list
        .iter()
        .any(|t| t == &pg.spec.team_id);
    let desired = crate::desired::env::desired_version(config, pg)
        .trim()
        .parse()
        .ok();
    (mode, team_allowed, desired)
}

/// The cluster's upgrade, one step: nothing, a wait, or the whole upgrade. Returns when to look
/// again. Never fails: what went wrong is an Event, an annotation and a retry.
pub async fn sync(
    ctx: &Context,
    config: &Config,
    pg: &Postgresql,
    instances: usize,
) -> Option<Duration> {
    let (mode, team_allowed, Some(desired)) = wanted(config, pg) else {
        return None;
    };
    if mode == Mode::Off && !team_allowed {
        return None;
    }
    let key = pg.metadata.uid.clone().unwrap_or_else(|| pg.name_any());
    let failed_at = pg.annotations().get(FAILURE_ANNOTATION).cloned();
    let seen = ctx.upgrades.get(&key);
    let namespace = pg.namespace().unwrap_or_default();
    let pods = crate::rollout::pods(ctx, &namespace, pg.cluster_name(), instances);
    let own_run_just_ended = seen
        .unmarked_at
        .is_some_and(|at| at.elapsed() < Duration::from_secs(60));
    let marked: Vec<String> = pods
        .iter()
        .filter(|p| p.annotations().contains_key(MARK) && !own_run_just_ended)
        .map(|p| p.name_any())
        .collect();
    if marked.is_empty() && failed_at.is_none() && seen.running.is_some_and(|r| r >= desired) {
        return None;
    }
    let (view, _) = crate::rollout::patroni_view(ctx, config, &pods).await;
    if !marked.is_empty() {
        let running = primary_version(ctx, &view, &pods)
            .await
            .map(|(_, v)| decide::major_of(v));
        let paused = view.as_ref().ok().map(|c| c.pause);
        return finish_interrupted(ctx, pg, &namespace, &marked, paused, running, desired).await;
    }
    let member_view: Vec<decide::Member> = match &view {
        Ok(cluster) => cluster
            .members
            .iter()
            .map(|m| decide::Member {
                name: m.name.clone(),
                role: m.role.clone(),
                state: m.state.clone(),
                lag: m.lag,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let primary = primary_version(ctx, &view, &pods).await;
    let pod_view: Vec<decide::Pod> = pods
        .iter()
        .map(|p| decide::Pod {
            name: p.name_any(),
            flagged: crate::members::is_flagged(p),
            pgversion: version::pod_major(p),
            terminating: p.metadata.deletion_timestamp.is_some(),
        })
        .collect();
    let decision = decide::decide(&Input {
        mode,
        team_allowed,
        desired,
        primary: primary.as_ref().map(|(n, v)| (n.as_str(), *v)),
        members: view
            .as_ref()
            .map(|_| member_view.as_slice())
            .map_err(String::as_str),
        paused: view.as_ref().is_ok_and(|c| c.pause),
        pods: &pod_view,
        failed_at: failed_at.as_deref(),
        gate: gate(config, pg),
    });
    tracing::debug!(cluster = %pg.name_any(), ?decision, "major version upgrade");
    match decision {
        Decision::Nothing => {
            let running = primary.map(|(_, v)| decide::major_of(v));
            ctx.upgrades.update(&key, |s| {
                s.running = running;
                s.waiting = None;
            });
            None
        }
        Decision::Unknown(why) => {
            tracing::debug!(cluster = %pg.name_any(), "major version upgrade: {why}");
            None
        }
        Decision::ClearFailure => {
            if annotate(ctx, pg, FAILURE_ANNOTATION, None).await {
                publish(
                    ctx,
                    pg,
                    Kind::Normal,
                    format!(
                        "The cluster runs major {desired}: annotation {FAILURE_ANNOTATION} removed"
                    ),
                );
            }
            Some(POLL)
        }
        Decision::Wait(why) => {
            if seen.waiting.as_deref() != Some(why.as_str()) {
                let kind = if failed_at.is_some() {
                    Kind::Warning
                } else {
                    Kind::Normal
                };
                publish(
                    ctx,
                    pg,
                    kind,
                    format!("The upgrade to major {desired} waits: {why}"),
                );
                ctx.upgrades.update(&key, |s| s.waiting = Some(why));
            }
            Some(match gate(config, pg) {
                Gate::Closed { next } => (next - Utc::now()).to_std().unwrap_or(POLL).max(POLL),
                Gate::Open => POLL,
            })
        }
        Decision::Upgrade {
            pod,
            members,
            from,
            to,
        } => {
            ctx.upgrades.update(&key, |s| s.waiting = None);
            run(ctx, pg, &namespace, &pods, &pod, members, from, to).await;
            Some(POLL)
        }
    }
}

/// Reports a run the controller did not see end, once it has ended, and removes its marks.
async fn finish_interrupted(
    ctx: &Context,
    pg: &Postgresql,
    namespace: &str,
    marked: &[String],
    paused: Option<bool>,
    running: Option<u32>,
    desired: u32,
) -> Option<Duration> {
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    match decide::interrupted(paused, running, desired) {
        decide::Interrupted::MayStillRun => return Some(POLL),
        decide::Interrupted::Succeeded => {
            annotate(ctx, pg, SUCCESS_ANNOTATION, Some(&now)).await;
            publish(
                ctx,
                pg,
                Kind::Normal,
                format!(
                    "The upgrade to major {desired} succeeded while the controller was not watching it"
                ),
            );
        }
        decide::Interrupted::Failed => {
            annotate(ctx, pg, FAILURE_ANNOTATION, Some(&now)).await;
            let running = running.unwrap_or_default();
            publish(
                ctx,
                pg,
                Kind::Warning,
                format!(
                    "The upgrade to major {desired} ended while the controller was not watching it and the cluster still runs {running}; see last_upgrade.log in the primary's postgres container"
                ),
            );
        }
    }
    mark(ctx, namespace, marked, false).await;
    Some(POLL)
}

/// The primary's name and `server_version`, from Patroni's `GET /patroni` on the leader.
async fn primary_version(
    ctx: &Context,
    view: &Result<crate::patroni::Cluster, String>,
    pods: &[Arc<Pod>],
) -> Option<(String, u32)> {
    let leader = view.as_ref().ok()?.leader()?.name.clone();
    let pod = pods.iter().find(|p| p.name_any() == leader)?;
    let ip = pod.status.as_ref()?.pod_ip.clone()?;
    match ctx.patroni.status(&ip).await {
        Ok(status) if status.is_primary() && status.server_version > 0 => {
            Some((leader, status.server_version))
        }
        Ok(_) => None,
        Err(e) => {
            tracing::info!(pod = %leader, error = %e, "no server version for the upgrade check");
            None
        }
    }
}

/// Runs the upgrade: the pods marked critical, the script, the marks removed, the outcome
/// annotated.
#[allow(clippy::too_many_arguments)]
async fn run(
    ctx: &Context,
    pg: &Postgresql,
    namespace: &str,
    pods: &[Arc<Pod>],
    primary: &str,
    members: usize,
    from: u32,
    to: u32,
) {
    let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    publish(
        ctx,
        pg,
        Kind::Normal,
        format!(
            "Starting the upgrade from major {from} to {to} on pod {primary} of {members} pods"
        ),
    );
    mark(ctx, namespace, &names, true).await;
    let outcome = execute(ctx, namespace, primary, members).await;
    mark(ctx, namespace, &names, false).await;
    let now = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let key = pg.metadata.uid.clone().unwrap_or_else(|| pg.name_any());
    ctx.upgrades
        .update(&key, |s| s.unmarked_at = Some(std::time::Instant::now()));
    match outcome {
        Ok(()) => {
            annotate(ctx, pg, SUCCESS_ANNOTATION, Some(&now)).await;
            ctx.upgrades.update(&key, |s| s.running = Some(to));
            publish(
                ctx,
                pg,
                Kind::Normal,
                format!("The upgrade from major {from} to {to} succeeded on pod {primary}"),
            );
        }
        Err(why) => {
            annotate(ctx, pg, FAILURE_ANNOTATION, Some(&now)).await;
            publish(
                ctx,
                pg,
                Kind::Warning,
                format!(
                    "The upgrade from major {from} to {to} failed on pod {primary}; the cluster keeps running {from}: {why}"
                ),
            );
        }
    }
}

/// The uid check and the script in the primary's postgres container.
async fn execute(ctx: &Context, namespace: &str, pod: &str, members: usize) -> Result<(), String> {
    let container = crate::members::POSTGRES_CONTAINER;
    let id = vec!["/bin/bash".into(), "-c".into(), "/usr/bin/id -u".into()];
    let uid = ctx
        .exec
        .run(namespace, pod, container, id, Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(why) = failure_reason(&uid) {
        return Err(format!("checking the container's user: {why}"));
    }
    let argv = upgrade_argv(members, uid.stdout.trim() == "0");
    let output = ctx
        .exec
        .run(namespace, pod, container, argv, SCRIPT_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    match failure_reason(&output) {
        None => Ok(()),
        Some(why) => Err(why),
    }
}

/// Sets (or removes) the critical-operation label on the pods, so the critical-operation
/// PodDisruptionBudget keeps them from voluntary evictions meanwhile, with [`MARK`].
async fn mark(ctx: &Context, namespace: &str, pods: &[String], on: bool) {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({"metadata": {
        "labels": {CRITICAL_OPERATION_LABEL: on.then_some("true")},
        "annotations": {MARK: on.then(|| Utc::now().to_rfc3339())},
    }});
    for pod in pods {
        match api
            .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => ctx.metrics.wrote("pods"),
            Err(e) => {
                tracing::warn!(%pod, error = %e, "could not set the {CRITICAL_OPERATION_LABEL} label")
            }
        }
    }
}

/// Sets (or with `None` removes) an annotation of the `postgresql`; returns whether it wrote.
async fn annotate(ctx: &Context, pg: &Postgresql, name: &str, value: Option<&str>) -> bool {
    let api: Api<Postgresql> =
        Api::namespaced(ctx.client.clone(), &pg.namespace().unwrap_or_default());
    let patch = serde_json::json!({"metadata": {"annotations": {name: value}}});
    match api
        .patch(
            &pg.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {
            ctx.metrics.wrote("postgresqls");
            true
        }
        Err(e) => {
            tracing::warn!(cluster = %pg.name_any(), error = %e, "could not write annotation {name}");
            false
        }
    }
}

fn publish(ctx: &Context, pg: &Postgresql, kind: Kind, note: String) {
    tracing::info!(cluster = %pg.name_any(), reason = REASON, "{note}");
    ctx.events.publish(
        pg.object_ref(&()),
        Event {
            kind,
            reason: REASON.into(),
            note,
            action: "MajorVersionUpgrade".into(),
            related: None,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_zalandos() {
        assert_eq!(
            upgrade_argv(3, false),
            [
                "/bin/bash",
                "-c",
                "set -o pipefail && /usr/bin/python3 /scripts/inplace_upgrade.py 3 2>&1 | tee last_upgrade.log"
            ]
        );
        assert_eq!(upgrade_argv(1, true)[..3], ["/bin/su", "postgres", "-c"]);
    }

    #[test]
    fn a_failure_is_told_by_its_last_line() {
        let ok = exec::Output {
            success: true,
            stdout: "done\n".into(),
            ..Default::default()
        };
        assert_eq!(failure_reason(&ok), None);
        let failed = exec::Output {
            success: false,
            failure: Some("command terminated with non-zero exit code: 1".into()),
            stdout: "checking\npg_upgrade --check failed: reg* types\n\n".into(),
            ..Default::default()
        };
        assert_eq!(
            failure_reason(&failed).as_deref(),
            Some("pg_upgrade --check failed: reg* types")
        );
        let silent = exec::Output {
            success: false,
            failure: Some("exit code 2".into()),
            ..Default::default()
        };
        assert_eq!(failure_reason(&silent).as_deref(), Some("exit code 2"));
        let stderr = exec::Output {
            success: true,
            stderr: "warning: something\n".into(),
            ..Default::default()
        };
        assert_eq!(
            failure_reason(&stderr).as_deref(),
            Some("warning: something"),
            "any standard error output is a failure, as in Zalando"
        );
    }
}
