//! One pod's containers as the runner holds them: prepared (environment, volumes, token, Spilo's
//! configuration or the operator's arguments) and started under a [`Supervisor`], or failed
//! with the reason the pod shows. A container that could not be prepared — a Secret not there
//! yet, a clone source whose Service does not exist yet — is tried again with a back-off, as a
//! kubelet retries `CreateContainerConfigError`, so a pod never stays broken once its inputs
//! appear.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::api::ApiLookups;
use super::cri_log::Mirror;
use super::kubelet_io::{ContainerIo, ExecTarget};
use super::status::{Known, Readiness};
use super::{Context, ROLE_LABEL, member, operator, pod_key};
use crate::env::Allocatable;
use crate::supervisor::{ContainerSpec, Status, Supervisor};

/// The first retry of a container that could not be prepared; doubled per failure.
const RETRY_FIRST: Duration = Duration::from_secs(5);
/// The longest wait between retries (the kubelet's CrashLoopBackOff cap).
const RETRY_MAX: Duration = Duration::from_secs(300);

/// One container of a pod.
pub struct Slot {
    pub container: Container,
    pub known: Known,
    pub sup: Option<Supervisor>,
    pub readiness: Readiness,
    /// What `kubectl logs`/`exec` need of it, once started.
    pub io: Option<ContainerIo>,
    /// Keeps the CRI copy of the log going while the container lives.
    pub mirror: Option<Mirror>,
    /// When a container that failed to prepare is tried again.
    retry_at: Option<Instant>,
    failures: u32,
}

/// What a container became before it starts: its process, how its readiness is told, how
/// `kubectl exec` runs in it, and what the runner has to say about it.
type Prepared = (ContainerSpec, Readiness, ExecTarget, Vec<String>);

/// Prepares a container the runner runs (on a blocking thread: API lookups, files, openssl);
/// `None` for one it leaves to kwok.
async fn prepare(
    ctx: &Arc<Context>,
    pod: &Pod,
    container: &Container,
    alloc: &Allocatable,
) -> Option<Result<Prepared, member::PrepareError>> {
    let image = container.image.as_deref();
    let spilo = member::is_spilo_image(image);
    let row = operator::row(image);
    if !spilo && row.is_none() {
        return None;
    }
    let lookups = ApiLookups {
        client: ctx.client.clone(),
        handle: tokio::runtime::Handle::current(),
    };
    let (c, p, a, container) = (ctx.clone(), pod.clone(), alloc.clone(), container.clone());
    let prepared = tokio::task::spawn_blocking(move || match row {
        Some(row) if !spilo => operator::prepare(&c, &lookups, &p, &container, &a, row)
            .map(|(spec, readiness, exec)| (spec, readiness, exec, Vec::new())),
        _ => member::prepare(&c, &lookups, &p, &container, &a)
            .map(|(spec, warnings, exec)| (spec, Readiness::Patroni, exec, warnings)),
    })
    .await;
    Some(prepared.unwrap_or_else(|e| {
        Err(member::PrepareError {
            reason: "CreateContainerError",
            message: format!("the runner failed preparing the container: {e}"),
        })
    }))
}

/// Whether a member died between two statuses: it stopped, or it was restarted so fast that
/// the watch never showed it stopped (the first restart has no back-off).
pub fn died(before: &Status, now: &Status) -> bool {
    before.is_running() && (!now.is_running() || now.restart_count > before.restart_count)
}

/// Drops the role label when a member's process dies without Patroni removing it (a hard kill
/// leaves `spilo-role=master` on the pod, and tests would see two masters); Patroni sets it
/// again once the restarted member knows its role.
fn drop_role_when_dead(pods: Api<Pod>, name: String, key: String, sup: &Supervisor) {
    let mut rx = sup.watch();
    tokio::spawn(async move {
        let mut before = rx.borrow().clone();
        while rx.changed().await.is_ok() {
            let now = rx.borrow().clone();
            if died(&before, &now) {
                let patch = json!({"metadata": {"labels": {ROLE_LABEL: null}}});
                match pods
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => tracing::info!(pod = %key, "member died: {ROLE_LABEL} label dropped"),
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => tracing::warn!(pod = %key, error = %e, "could not drop {ROLE_LABEL}"),
                }
            }
            before = now;
        }
    });
}

/// The CRI copy of a started container's log ([`super::cri_log`]), beside the supervisor's.
fn mirror(key: &str, name: &str, sup: &Supervisor) -> Option<Mirror> {
    let source = sup.log_path(false).parent()?.to_path_buf();
    let out = source.join("cri");
    match Mirror::start(source, out, format!("{key}/{name}")) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(pod = %key, container = %name, error = %e, "no log for kubectl logs");
            None
        }
    }
}

impl Slot {
    fn new(container: Container) -> Slot {
        Slot {
            container,
            known: Known::Fake,
            sup: None,
            readiness: Readiness::Running,
            io: None,
            mirror: None,
            retry_at: None,
            failures: 0,
        }
    }

    /// Prepares and starts the container, or records why it cannot run and when to try again.
    async fn start(&mut self, ctx: &Arc<Context>, pods: &Api<Pod>, pod: &Pod, alloc: &Allocatable) {
        let key = pod_key(pod);
        let name = self.container.name.clone();
        match prepare(ctx, pod, &self.container, alloc).await {
            None => {}
            Some(Ok((spec, readiness, exec, warnings))) => {
                for w in warnings {
                    tracing::info!(pod = %key, container = %name, "spilo: {w}");
                }
                tracing::info!(pod = %key, container = %name, argv = ?spec.argv, "starting");
                let sup = Supervisor::start(spec);
                if let Some(m) = mirror(&key, &name, &sup) {
                    self.io = Some(ContainerIo {
                        name: name.clone(),
                        log: m.path(false).to_path_buf(),
                        previous_log: m.path(true).to_path_buf(),
                        exec: Some(exec),
                    });
                    self.mirror = Some(m);
                }
                if readiness == Readiness::Patroni {
                    let pod_name = pod.metadata.name.clone().unwrap_or_default();
                    drop_role_when_dead(pods.clone(), pod_name, key.clone(), &sup);
                }
                self.known = Known::Run {
                    status: sup.status(),
                    ready: false,
                };
                self.sup = Some(sup);
                self.readiness = readiness;
                self.retry_at = None;
            }
            Some(Err(e)) => {
                let wait = retry_after(self.failures);
                self.failures += 1;
                tracing::warn!(pod = %key, container = %name, reason = e.reason, retry_in = ?wait, "cannot run: {}", e.message);
                self.known = Known::Failed {
                    reason: e.reason.into(),
                    message: e.message,
                };
                self.retry_at = Some(Instant::now() + wait);
            }
        }
    }

    /// Whether a failed container is due for another try.
    pub fn due(&self, now: Instant) -> bool {
        self.sup.is_none() && self.retry_at.is_some_and(|at| at <= now)
    }
}

/// The back-off before retry number `failures + 1`.
pub fn retry_after(failures: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(RETRY_MAX)
}

/// Prepares and starts every container of `pod`.
pub async fn start_all(ctx: &Arc<Context>, pods: &Api<Pod>, pod: &Pod) -> Vec<Slot> {
    let alloc = super::allocatable(&ctx.client, pod).await;
    let mut slots = Vec::new();
    for container in pod.spec.clone().unwrap_or_default().containers {
        let mut slot = Slot::new(container);
        slot.start(ctx, pods, pod, &alloc).await;
        slots.push(slot);
    }
    slots
}

/// Tries again the containers whose preparation failed and whose back-off is over; returns
/// whether one started (its `kubectl logs`/`exec` then need writing).
pub async fn retry_due(ctx: &Arc<Context>, pods: &Api<Pod>, pod: &Pod, slots: &mut [Slot]) -> bool {
    let now = Instant::now();
    if !slots.iter().any(|s| s.due(now)) {
        return false;
    }
    let alloc = super::allocatable(&ctx.client, pod).await;
    let mut started = false;
    for slot in slots.iter_mut().filter(|s| s.due(now)) {
        slot.start(ctx, pods, pod, &alloc).await;
        started |= slot.sup.is_some();
    }
    started
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::State;
    use std::time::SystemTime;

    fn status(running: bool, restarts: u32) -> Status {
        Status {
            state: if running {
                State::Running {
                    started_at: SystemTime::UNIX_EPOCH,
                    pid: Some(7),
                }
            } else {
                State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: None,
                }
            },
            last_state: None,
            restart_count: restarts,
        }
    }

    #[test]
    fn a_death_is_seen_even_when_the_restart_hides_the_stop() {
        assert!(died(&status(true, 0), &status(false, 0)));
        assert!(
            died(&status(true, 0), &status(true, 1)),
            "restarted at once"
        );
        assert!(!died(&status(true, 1), &status(true, 1)));
        assert!(
            !died(&status(false, 1), &status(true, 1)),
            "a start is no death"
        );
    }

    #[test]
    fn retries_back_off_to_the_kubelets_cap() {
        assert_eq!(retry_after(0), Duration::from_secs(5));
        assert_eq!(retry_after(1), Duration::from_secs(10));
        assert_eq!(retry_after(5), Duration::from_secs(160));
        assert_eq!(retry_after(6), RETRY_MAX);
        assert_eq!(retry_after(u32::MAX), RETRY_MAX);
    }
}
