//! What the control plane needs to reach the state the controller converges to, measured by
//! writing it directly with the benchmark's concurrency: the floors the controller is compared to.

use crate::{cluster, concurrency, namespace, remove_namespace};
use anyhow::Result;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use std::time::{Duration, Instant};

use common::crd::Postgresql;

/// `objects` small ConfigMaps created with POST: the cheapest write there is.
pub async fn configmaps(client: &Client, objects: usize) -> Result<Duration> {
    let ns = "bench-floor";
    namespace(client, ns).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    let writes = stream::iter(0..objects).map(|i| {
        let api = api.clone();
        async move {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(format!("floor-{i}")),
                    ..Default::default()
                },
                data: Some([("k".to_string(), "v".repeat(64))].into()),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await.map(|_| ())
        }
    });
    finish(client, ns, started, writes).await
}

/// How the floor writes the children.
#[derive(Clone, Copy)]
pub enum Verb {
    /// POST, the cheapest write the API server has.
    Create,
    /// Server-side apply, as the controller writes them (the API server computes managed fields).
    Apply,
}

/// What a floor writes besides the children.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only the children of each cluster.
    Children,
    /// Everything the converged state holds: each `postgresql` created (as the benchmark does
    /// before the controller sees it), its children applied, its status written (the signal
    /// "converged" is measured by) and its Event naming the children (the issue asks for one
    /// per child created; the controller folds them into one per reconcile).
    Complete,
}

async fn write<K>(api: Api<K>, object: K, verb: Verb) -> kube::Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match verb {
        Verb::Create => api
            .create(&PostParams::default(), &object)
            .await
            .map(|_| ()),
        Verb::Apply => {
            let name = object.meta().name.clone().unwrap_or_default();
            let params = PatchParams::apply("bench-floor").force();
            api.patch(&name, &params, &Patch::Apply(&object))
                .await
                .map(|_| ())
        }
    }
}

/// The objects the controller writes for `n` clusters (built by its own builders), written
/// directly with the same concurrency. Unlike plain ConfigMaps this includes what those objects
/// set off in the control plane (pods, volumes, kwok) while they are written.
pub async fn same_objects(client: &Client, n: usize, verb: Verb, scope: Scope) -> Result<Duration> {
    let ns = "bench-direct";
    namespace(client, ns).await?;
    let pgs_api: Api<Postgresql> = Api::namespaced(client.clone(), ns);
    let manifests = (0..n)
        .map(|i| {
            let mut pg: Postgresql = serde_json::from_value(cluster(&format!("direct-{i}")))?;
            pg.metadata.namespace = Some(ns.into());
            Ok(pg)
        })
        .collect::<Result<Vec<_>>>()?;

    let started = Instant::now();
    // The benchmark creates every postgresql before the controller has written much: so here.
    let pgs = if scope == Scope::Complete {
        stream::iter(manifests)
            .map(|pg| {
                let api = pgs_api.clone();
                async move { api.create(&PostParams::default(), &pg).await }
            })
            .buffer_unordered(concurrency())
            .try_collect::<Vec<_>>()
            .await?
    } else {
        manifests
    };
    let config = common::config::Config::default();
    let reporter = controller::events::Reporter {
        controller: "bench-floor".into(),
        instance: "bench".into(),
    };
    let mut writes: Vec<BoxFuture<'static, kube::Result<()>>> = Vec::new();
    for pg in &pgs {
        let desired = controller::desired::build(
            &config,
            &common::rules::admission::Validated::trusted(&config, pg),
            None,
        )?;
        let mut children = Vec::new();
        for sts in desired.statefulsets {
            children.push(format!("StatefulSet {}", sts.name_any()));
            let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
            writes.push(Box::pin(write(api, sts, verb)));
        }
        for service in desired.services {
            children.push(format!("Service {}", service.name_any()));
            let api: Api<Service> = Api::namespaced(client.clone(), ns);
            writes.push(Box::pin(write(api, service, verb)));
        }
        for pdb in desired.pdbs {
            children.push(format!("PodDisruptionBudget {}", pdb.name_any()));
            let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
            writes.push(Box::pin(write(api, pdb, verb)));
        }
        for secret in desired.secrets {
            children.push(format!("Secret {}", secret.name_any()));
            let api: Api<Secret> = Api::namespaced(client.clone(), ns);
            // The controller creates Secrets (never applies them): so does the floor.
            writes.push(Box::pin(write(api, secret, Verb::Create)));
        }
        if scope == Scope::Complete {
            let now = k8s_openapi::jiff::Timestamp::now();
            let ignored = common::fields::summary(&common::fields::ignored_fields(pg));
            let status = controller::status::next(
                pg,
                &controller::status::Result::Applied {
                    pods: controller::status::Pods::Waiting(
                        "the StatefulSet is not seen yet".into(),
                    ),
                    database: controller::status::Database::NotYet,
                    ignored: ignored.clone(),
                },
                Time(now),
            );
            let (api, name) = (pgs_api.clone(), pg.name_any());
            writes.push(Box::pin(async move {
                let patch = serde_json::json!({ "status": status });
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }));
            let event = controller::events::Event {
                kind: controller::events::Kind::Normal,
                reason: "Created".into(),
                note: controller::events::summary("Created", &children),
                action: "Create".into(),
                related: None,
            };
            let event =
                controller::events::build(&reporter, &event, pg.object_ref(&()), MicroTime(now));
            let api: Api<K8sEvent> = Api::namespaced(client.clone(), ns);
            writes.push(Box::pin(write(api, event, Verb::Create)));
            // The Warning Event about fields not acted on yet, which the converged state holds
            // for these manifests (their users and databases are not created in PostgreSQL).
            if let Some(note) = ignored {
                let warning = controller::events::Event {
                    kind: controller::events::Kind::Warning,
                    reason: common::fields::CONDITION_REASON.into(),
                    note,
                    action: "Reconcile".into(),
                    related: None,
                };
                // Events are named after their object and time: a later time, as when the
                // controller sends it after the Created one.
                let later = now
                    .checked_add(k8s_openapi::jiff::SignedDuration::from_micros(1))
                    .unwrap_or(now);
                let warning = controller::events::build(
                    &reporter,
                    &warning,
                    pg.object_ref(&()),
                    MicroTime(later),
                );
                let api: Api<K8sEvent> = Api::namespaced(client.clone(), ns);
                writes.push(Box::pin(write(api, warning, Verb::Create)));
            }
        }
    }
    finish(client, ns, started, stream::iter(writes)).await
}

/// Runs `writes` with the benchmark's concurrency and returns the time since `started`; then
/// removes namespace `ns` (and the pods its objects set off) before the next measurement.
async fn finish<W, T>(client: &Client, ns: &str, started: Instant, writes: W) -> Result<Duration>
where
    W: futures::Stream,
    W::Item: std::future::Future<Output = kube::Result<T>>,
{
    writes
        .buffer_unordered(concurrency())
        .try_collect::<Vec<_>>()
        .await?;
    let elapsed = started.elapsed();
    remove_namespace(client, ns).await?;
    Ok(elapsed)
}
