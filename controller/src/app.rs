//! Wiring: configuration, CRD, caches, the controller loop, leader election and shutdown.

use crate::args::Args;
use crate::children::Stores;
use crate::context::Context;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::reconcile::{error_policy, reconcile};
use crate::stores::{Slim, api};
use arc_swap::ArcSwap;
use common::config::{self, ConfigSource, Environment, WatchScope};
use common::crd::Postgresql;
use futures::StreamExt;
use kube::runtime::{Controller, WatchStreamExt, controller, watcher};
use kube::{Api, Client, ResourceExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let namespace = config::source::operator_namespace(args.operator_namespace.clone());
    let env = Environment::from_lookup(|k| std::env::var(k).ok(), namespace.clone());
    let source = ConfigSource::select(&env).map_err(anyhow::Error::msg)?;
    let client = Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the Kubernetes API: {e}"))?;
    let loaded = runtime::config_fetch::fetch(&client, &source).await?;
    for warning in &loaded.warnings {
        tracing::warn!(option = %warning.key, "{warning}");
    }
    if args.print_config {
        print!("{}", serde_yaml::to_string(&loaded.config)?);
        return Ok(());
    }
    let config = loaded.config.clone();
    if config.enable_crd_registration {
        crate::crd_registration::register(&client, &config.crd_categories).await?;
    }
    let scope = WatchScope::resolve(&env, &config);
    let watched = match &scope {
        WatchScope::All => None,
        WatchScope::Namespace(ns) => Some(ns.clone()),
    };
    tracing::info!(?source, ?scope, controller_id = %env.controller_id(), "starting");

    // One cache per child kind of the table, narrowed by the cluster labels (never every Secret
    // of the cluster), and the clusters their changes trigger.
    let ns = watched.as_deref();
    let started = Stores::start(&client, ns, &config);
    let stores = started.stores;
    let members = crate::members::start(&client, ns, &config);

    let identity = args.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| format!("controller-{}", std::process::id()))
    });
    let reporter = crate::events::Reporter {
        controller: "postgres-operator".into(),
        instance: identity.clone(),
    };
    let metrics = Metrics::default();
    let leading = Arc::new(AtomicBool::new(!args.leader_election));
    let ctx = Arc::new(Context {
        client: client.clone(),
        config: ArcSwap::from_pointee(loaded),
        controller_id: env.controller_id().to_string(),
        stores: stores.clone(),
        observed: members.observed.clone(),
        connector: Default::default(),
        database_failures: Default::default(),
        inside_reads: Default::default(),
        roles: crate::roles::RoleSources::new(namespace.clone(), Default::default()),
        patroni: Arc::new(crate::patroni::http::Http::default()),
        rollouts: Default::default(),
        patroni_config: Default::default(),
        exec: Arc::new(crate::upgrade::exec::Kube(client.clone())),
        upgrades: Default::default(),
        events: Events::start(client.clone(), reporter, metrics.events_dropped.clone()),
        metrics,
        caches_ready: AtomicBool::new(false),
        leading: leading.clone(),
    });

    let mut background = tokio::task::JoinSet::new();
    for task in started.background {
        background.spawn(task);
    }
    background.spawn(follow_config(client.clone(), source, ctx.clone()));
    // The Secrets, ConfigMaps and PostgresTeams the roles come from: a change re-syncs every
    // cluster (they apply to all of them).
    let (referenced_tx, referenced_rx) = tokio::sync::mpsc::unbounded_channel();
    background.spawn(crate::referenced::run(
        ctx.clone(),
        watched.clone(),
        referenced_tx,
    ));
    background.spawn(watch_deletions(api::<Postgresql>(&client, ns), ctx.clone()));
    if args.leader_election {
        let election = crate::leader::Election {
            namespace: namespace.clone(),
            name: args.lease_name.clone(),
            identity,
            duration: Duration::from_secs(args.lease_seconds.max(2)),
            renew: Duration::from_secs((args.lease_seconds / 3).max(1)),
        };
        background.spawn(crate::leader::run(
            client.clone(),
            election,
            leading.clone(),
        ));
    }
    {
        let ctx = ctx.clone();
        background.spawn(async move {
            if ctx.stores.wait_until_ready().await.is_ok()
                && ctx.observed.wait_until_ready().await.is_ok()
            {
                ctx.caches_ready.store(true, Ordering::Release);
                tracing::info!("caches synced");
            }
        });
    }
    let admin = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.admin_listen))?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let admin_task = tokio::spawn(runtime::http::serve_admin(admin, ctx.clone(), {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }));

    // Zalando's `workers` (goroutines, each pinned to a share of the clusters) becomes how many
    // clusters are reconciled at once; a restart applies a change.
    let concurrency = args
        .concurrency
        .unwrap_or_else(|| u16::try_from(config.workers).unwrap_or(u16::MAX));
    let pg_api: Api<Postgresql> = api(&client, ns);
    let (clusters, cluster_writer) = kube::runtime::reflector::store();
    // Node drains: the masters leave a node turning not ready (always on, as in Zalando).
    background.spawn(crate::drain::run(
        client.clone(),
        ctx.clone(),
        clusters.clone(),
    ));
    // A status write (ours) or another status-only change is no reason to reconcile; what is:
    // the spec (generation), labels, annotations (ownership, delete protection), finalizers and
    // deletion.
    let cluster_changes = watcher(pg_api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|pg| pg.slim())
        .reflect(cluster_writer)
        .applied_objects()
        .predicate_filter(reconcile_worthy, Default::default());
    let every_cluster = every_cluster_on(referenced_rx, clusters.clone());
    let controller = Controller::for_stream(cluster_changes, clusters)
        .with_config(controller::Config::default().concurrency(concurrency))
        .reconcile_on(futures::stream::select_all([
            started.triggers,
            members.triggers,
            every_cluster.boxed(),
        ]))
        .graceful_shutdown_on(async move {
            runtime::http::shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
    let status_gauges = tokio::spawn(update_status_gauges(controller.store(), ctx.clone()));
    controller
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile ended with an error");
            }
        })
        .await;
    let _ = stop_rx.wait_for(|s| *s).await;
    status_gauges.abort();
    let _ = admin_task.await;
    background.shutdown().await;
    Ok(())
}

/// Every known cluster, each time `signals` says so; signals within a second are one.
fn every_cluster_on(
    signals: tokio::sync::mpsc::UnboundedReceiver<()>,
    clusters: kube::runtime::reflector::Store<Postgresql>,
) -> impl futures::Stream<Item = kube::runtime::reflector::ObjectRef<Postgresql>> + Send {
    futures::stream::unfold(signals, |mut signals| async move {
        signals.recv().await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        while signals.try_recv().is_ok() {}
        Some(((), signals))
    })
    .flat_map(move |()| {
        let refs: Vec<_> = clusters
            .state()
            .iter()
            .map(|pg| kube::runtime::reflector::ObjectRef::from(pg.as_ref()))
            .collect();
        futures::stream::iter(refs)
    })
}

/// A digest of everything about a `postgresql` a reconcile depends on, except its status.
fn reconcile_worthy(pg: &Postgresql) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = &pg.metadata;
    let mut hasher = std::hash::DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.labels.hash(&mut hasher);
    meta.annotations.hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_millisecond())
        .hash(&mut hasher);
    Some(hasher.finish())
}

async fn follow_config(client: Client, source: ConfigSource, ctx: Arc<Context>) {
    let mut updates = runtime::config_watch::watch(client, source);
    while let Some(update) = updates.next().await {
        match update {
            Ok(loaded) => {
                if loaded.config != ctx.config.load().config {
                    tracing::info!(
                        "operator configuration changed and applied (label and namespace options need a restart)"
                    );
                }
                ctx.config.store(Arc::new(loaded));
            }
            Err(invalid) => tracing::error!("{invalid}; keeping the previous configuration"),
        }
    }
}

/// Deleted clusters are gone from every cache; their last state arrives only as a watch delete
/// event, which is when children the garbage collector does not own are removed.
async fn watch_deletions(api: Api<Postgresql>, ctx: Arc<Context>) {
    let mut events = std::pin::pin!(kube::runtime::WatchStreamExt::default_backoff(watcher(
        api,
        watcher::Config::default()
    )));
    while let Some(event) = events.next().await {
        let Ok(watcher::Event::Delete(pg)) = event else {
            continue;
        };
        let config = ctx.config.load_full();
        if !ctx.leading.load(Ordering::Acquire)
            || config.config.kubernetes.enable_finalizers
            || !common::rules::ownership::is_owned_by(
                pg.metadata.annotations.as_ref(),
                &ctx.controller_id,
            )
        {
            continue;
        }
        ctx.roles
            .forget(&pg.metadata.uid.clone().unwrap_or_else(|| pg.name_any()));
        match crate::deletion::cleanup(&ctx, &pg).await {
            Ok(crate::deletion::Cleaned::PodsRemain) => {
                tokio::spawn(crate::deletion::finish_later(ctx.clone(), pg));
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(cluster = %pg.name_any(), %error, "cleaning up the deleted cluster failed");
            }
        }
    }
}

async fn update_status_gauges(
    store: kube::runtime::reflector::Store<Postgresql>,
    ctx: Arc<Context>,
) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let mut counts = std::collections::BTreeMap::<String, i64>::new();
        for pg in store.state() {
            let status = pg
                .status
                .as_ref()
                .map(|s| s.postgres_cluster_status.to_string())
                .unwrap_or_default();
            *counts
                .entry(if status.is_empty() {
                    "Unknown".into()
                } else {
                    status
                })
                .or_default() += 1;
        }
        ctx.metrics.clusters.clear();
        for (status, count) in counts {
            ctx.metrics
                .clusters
                .get_or_create(&crate::metrics::StatusLabels { status })
                .set(count);
        }
    }
}
