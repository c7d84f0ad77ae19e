//! The pod runner: the kubelet of the kwok nodes for the containers it knows how to run.
//!
//! It watches the pods bound to a node (every node of the local control plane is a kwok node).
//! A pod with a Spilo container is the runner's: kwok only gives it an IP (the `pod-runner-ip`
//! stage of `scripts/kwok/`), and the runner starts a real Patroni + PostgreSQL per Spilo
//! container ([`member`]), writes the pod's status and `Ready` condition from the supervisor's
//! state and Patroni's readiness ([`status`]), drops the `spilo-role` label of a member that
//! died, and on deletion stops the members (SIGTERM, SIGKILL after the grace period) before it
//! finishes the deletion itself. A container of the operator's own images runs the locally
//! built binary ([`operator`]), ready by its `readinessProbe`. Other containers of such pods are
//! reported running and ready, as kwok reports them; pods without a container the runner runs
//! stay kwok's.
//!
//! [`services`] serves the Services with a selector on their ClusterIPs (loopback), so a client
//! of the master Service reaches the leader.
//!
//! `kubectl logs` and `kubectl exec` reach the containers through kwok's kubelet server: the
//! runner keeps each container's log in the kubelet's format ([`cri_log`]), tells kwok where it is
//! and how to run a command in the container ([`kubelet_io`]), and forwards every kwok node's
//! kubelet endpoint to kwok's one server ([`kubelet_proxy`]).
//!
//! Nothing a pod asks for takes the runner down: what cannot run becomes the container's waiting
//! reason, a `Ready=False` condition naming it, and a log line.

pub mod api;
pub mod claims;
pub mod containers;
pub mod cri_log;
pub mod kubelet_io;
pub mod kubelet_proxy;
pub mod member;
pub mod operator;
pub mod services;
pub mod status;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_pods};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::env::Allocatable;
use api::ApiServer;
use kubelet_io::ContainerIo;
use status::Known;

/// How often a pod's kwok `Logs` and `Exec` are written again (they are applied at the start;
/// this repairs one deleted meanwhile, e.g. by the garbage collector racing a recreated pod).
const KUBELET_IO_RESYNC: Duration = Duration::from_secs(60);

/// The pod label Patroni keeps the member's role in (Spilo's `KUBERNETES_ROLE_LABEL` default).
pub const ROLE_LABEL: &str = "spilo-role";

/// What every pod task shares.
pub struct Context {
    pub client: Client,
    /// The API server members dial (from the runner's kubeconfig).
    pub api: ApiServer,
    /// Pods' folders, claims' data, members' logs (`.local/state/world`).
    pub state_dir: PathBuf,
    /// Members' run dirs (unix sockets, pgpass, Patroni's configuration): a short path, because
    /// a socket path must stay under 108 bytes.
    pub run_root: PathBuf,
    /// `$PGOP_CACHE`: the world's majors and Patroni.
    pub cache: PathBuf,
    /// Where the operator's binaries are built (`$CARGO_TARGET_DIR/debug`), for its images.
    pub operator_bin: Option<PathBuf>,
}

/// Whether the runner runs (some of) this pod: it has a container of an image the runner runs
/// (Spilo, the operator's; [`operator::is_runnable_image`]).
pub fn runs(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.containers
            .iter()
            .any(|c| operator::is_runnable_image(c.image.as_deref()))
    })
}

pub(crate) fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Watches pods until the stream ends (never, unless the API goes away for good).
pub async fn run(ctx: Arc<Context>) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields("spec.nodeName!=");
    let mut events = std::pin::pin!(watch_pods(pods, config).default_backoff());
    let mut tasks: HashMap<String, (watch::Sender<Option<Pod>>, JoinHandle<()>)> = HashMap::new();
    while let Some(event) = events.next().await {
        let (pod, gone) = match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => (pod, false),
            Ok(Event::Delete(pod)) => (pod, true),
            Ok(Event::Init | Event::InitDone) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch failed; retrying");
                continue;
            }
        };
        tasks.retain(|_, (_, task)| !task.is_finished());
        if !runs(&pod) {
            continue;
        }
        let Some(uid) = pod.metadata.uid.clone() else {
            continue;
        };
        if let Some((sender, _)) = tasks.get(&uid) {
            sender.send_replace((!gone).then_some(pod));
            continue;
        }
        let has_ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_ref())
            .is_some();
        if gone || (!has_ip && pod.metadata.deletion_timestamp.is_none()) {
            continue;
        }
        let (sender, receiver) = watch::channel(Some(pod));
        let task = tokio::spawn(pod_task(ctx.clone(), receiver));
        tasks.insert(uid, (sender, task));
    }
    Ok(())
}

pub(crate) async fn allocatable(client: &Client, pod: &Pod) -> Allocatable {
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return Allocatable::default();
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let found = nodes.get(&node).await.ok();
    let alloc = found
        .and_then(|n| n.status)
        .and_then(|s| s.allocatable)
        .unwrap_or_default();
    Allocatable {
        cpu: alloc.get("cpu").cloned(),
        memory: alloc.get("memory").cloned(),
        ephemeral_storage: alloc.get("ephemeral-storage").cloned(),
    }
}

/// Writes the pod's kwok `Logs` and `Exec` (a failure is logged; the next resync retries).
async fn apply_io(ctx: &Context, pod: &Pod, io: &[ContainerIo]) -> bool {
    match kubelet_io::apply(&ctx.client, pod, io).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(pod = %pod_key(pod), error = %e, "kwok Logs/Exec not written");
            false
        }
    }
}

/// Deletes the pod's kwok `Logs` and `Exec` once its containers are gone.
async fn delete_io(ctx: &Context, pod: &Pod) {
    if let Err(e) = kubelet_io::delete(&ctx.client, pod).await {
        tracing::warn!(pod = %pod_key(pod), error = %e, "kwok Logs/Exec not deleted");
    }
}

/// One pod from its first sight to the end of its deletion.
async fn pod_task(ctx: Arc<Context>, mut updates: watch::Receiver<Option<Pod>>) {
    let Some(mut pod) = updates.borrow().clone() else {
        return;
    };
    let key = pod_key(&pod);
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut slots = if pod.metadata.deletion_timestamp.is_none() {
        containers::start_all(&ctx, &pods, &pod).await
    } else {
        Vec::new()
    };
    let mut io_written: Option<Instant> = None;
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        if pod.metadata.deletion_timestamp.is_some() {
            break;
        }
        if containers::retry_due(&ctx, &pods, &pod, &mut slots).await {
            io_written = None;
        }
        for slot in slots.iter_mut() {
            if let Some(sup) = &slot.sup {
                let status = sup.status();
                if let Some(m) = &slot.mirror {
                    m.sync();
                }
                let ready = status.is_running() && slot.readiness.ready(&ip).await;
                slot.known = Known::Run { status, ready };
            }
        }
        let io: Vec<ContainerIo> = slots.iter().filter_map(|s| s.io.clone()).collect();
        if !io.is_empty() && io_written.is_none_or(|at| at.elapsed() >= KUBELET_IO_RESYNC) {
            io_written = apply_io(&ctx, &pod, &io).await.then(Instant::now);
        }
        let known: Vec<Known> = slots.iter().map(|s| s.known.clone()).collect();
        let patch = status::pod_status(&pod, &known, SystemTime::now());
        if !status::unchanged(&pod, &patch) {
            let body = json!({"status": patch});
            match pods
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(updated) => pod = updated,
                Err(e) => tracing::warn!(pod = %key, error = %e, "status update failed"),
            }
        }
        tokio::select! {
            _ = tick.tick() => {}
            changed = updates.changed() => {
                let latest = if changed.is_ok() { updates.borrow().clone() } else { None };
                match latest {
                    Some(latest) => pod = latest,
                    None => {
                        // Gone without a graceful deletion (force delete): kill at once.
                        tracing::info!(pod = %key, "pod gone; killing its containers");
                        for sup in slots.into_iter().filter_map(|s| s.sup) {
                            sup.stop_with(Duration::ZERO).await;
                        }
                        delete_io(&ctx, &pod).await;
                        forget(&ctx, &pod);
                        return;
                    }
                }
            }
        }
    }
    // Graceful deletion: SIGTERM, SIGKILL after the grace period, then finish the deletion.
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0) as u64;
    tracing::info!(pod = %key, grace, "pod deleted; stopping its containers");
    let stops = slots
        .into_iter()
        .filter_map(|s| s.sup)
        .map(|sup| sup.stop_with(Duration::from_secs(grace)));
    futures::future::join_all(stops).await;
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    delete_io(&ctx, &pod).await;
    match pods.delete(&name, &params).await {
        Ok(_) => tracing::info!(pod = %key, "deletion finished"),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => tracing::warn!(pod = %key, error = %e, "finishing the deletion failed"),
    }
    forget(&ctx, &pod);
}

/// Removes what a deleted pod left on this machine, as a kubelet does (its token, Secrets,
/// emptyDirs, run dir), but its logs, kept for whoever debugs a test; claims' data goes with the
/// claim ([`claims`]).
fn forget(ctx: &Context, pod: &Pod) {
    if let Some(uid) = &pod.metadata.uid {
        let _ = std::fs::remove_dir_all(ctx.run_root.join(uid));
    }
    let root = member::pod_root(ctx, pod);
    for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        if entry.file_name() != "logs" {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = removed {
                tracing::warn!(pod = %pod_key(pod), path = %path.display(), error = %e, "not removed");
            }
        }
    }
}
