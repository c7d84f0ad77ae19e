//! The mock tier between unit and e2e tests: one reconcile against a mock API server (kube's
//! `tower-test` pair), asserting exactly which API calls it makes and that nothing else is sent.
//!
//! Each test uses its own namespace: `apply` remembers recent writes process-wide by
//! kind/namespace/name, so tests sharing a namespace would see each other's writes.
//!
//! Events are sent by a background task and may interleave with the reconcile's own calls; they
//! are recorded apart ([`support::Calls::events`]) and asserted after the Context is dropped,
//! which makes the task send everything it has queued and end.

mod support;

use common::config::Config;
use common::crd::Postgresql;
use common::rules::admission::Validated;
use controller::apply::{APPLIED_HASH, FIELD_MANAGER};
use controller::reconcile::{Error, error_policy};
use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use support::{CLUSTER, Call, Calls, applied_hash, context, mock_api, server};

/// The four user Secrets of the minimal manifest.
const SECRETS: [&str; 4] = [
    "postgres.acid-minimal-cluster.credentials.postgresql.acid.zalan.do",
    "standby.acid-minimal-cluster.credentials.postgresql.acid.zalan.do",
    "foo-user.acid-minimal-cluster.credentials.postgresql.acid.zalan.do",
    "zalando.acid-minimal-cluster.credentials.postgresql.acid.zalan.do",
];
const PDBS: [&str; 2] = [
    "postgres-acid-minimal-cluster-pdb",
    "postgres-acid-minimal-cluster-critical-op-pdb",
];
const REPLICA_SERVICE: &str = "acid-minimal-cluster-repl";

fn core(namespace: &str, resource: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/{resource}")
}

fn rbac(namespace: &str) -> String {
    format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings")
}

fn pdbs(namespace: &str) -> String {
    format!("/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets")
}

fn statefulsets(namespace: &str) -> String {
    format!("/apis/apps/v1/namespaces/{namespace}/statefulsets")
}

fn cluster_path(namespace: &str) -> String {
    format!("/apis/acid.zalan.do/v1/namespaces/{namespace}/postgresqls/{CLUSTER}")
}

fn line(method: Method, path: impl std::fmt::Display) -> String {
    format!("{method} {path}")
}

/// Runs one reconcile of `pg` against a mock server answering with `respond`, with `config` and
/// caches holding `cached`; returns its result and every call, once all of them are sent.
async fn run<F>(
    pg: Postgresql,
    config: Config,
    cached: Vec<support::Cached>,
    respond: F,
) -> (Result<Action, Error>, Calls, Action)
where
    F: FnMut(&Call) -> support::Reply + Send + 'static,
{
    let (client, api) = mock_api(respond);
    let ctx = context(client, config, cached);
    let pg = Arc::new(pg);
    let result = support::reconcile_bounded(pg.clone(), ctx.clone()).await;
    // What the controller's error policy makes of a failure (requeue for a success).
    let policy = match &result {
        Err(error) => error_policy(pg, error, ctx.clone()),
        Ok(action) => action.clone(),
    };
    drop(ctx);
    (result, api.calls().await, policy)
}

/// Asserts `call` is the controller's forced server-side apply of `kind`/`name` at `path`.
fn assert_apply(call: &Call, collection: &str, kind: &str, name: &str) {
    assert_eq!(
        call.line(),
        line(Method::PATCH, format!("{collection}/{name}"))
    );
    assert!(
        call.is_forced_apply(),
        "{} is a forced apply by {FIELD_MANAGER}: {call:?}",
        call.line()
    );
    assert_eq!(call.body()["kind"], kind, "{}", call.line());
    assert_eq!(call.body()["metadata"]["name"], name, "{}", call.line());
}

/// Asserts `call` is the controller's create of `kind`/`name` in `collection`.
fn assert_create(call: &Call, collection: &str, kind: &str, name: &str) {
    assert_eq!(call.line(), line(Method::POST, collection));
    assert!(
        call.is_create(),
        "{} is a create by {FIELD_MANAGER}: {call:?}",
        call.line()
    );
    assert_eq!(call.body()["kind"], kind, "{}", call.line());
    assert_eq!(call.body()["metadata"]["name"], name, "{}", call.line());
}

/// Asserts `call` creates an `events.k8s.io` Event about the cluster; returns its note.
fn assert_event(call: &Call, namespace: &str, type_: &str, reason: &str, action: &str) -> String {
    assert_eq!(
        call.line(),
        line(
            Method::POST,
            format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events")
        )
    );
    let event = call.body();
    assert_eq!(event["type"], type_, "{event}");
    assert_eq!(event["reason"], reason, "{event}");
    assert_eq!(event["action"], action, "{event}");
    assert_eq!(event["regarding"]["kind"], "postgresql", "{event}");
    assert_eq!(event["regarding"]["name"], CLUSTER, "{event}");
    assert_eq!(event["regarding"]["namespace"], namespace, "{event}");
    assert_eq!(event["reportingController"], "postgres-operator", "{event}");
    event["note"].as_str().expect("a note").to_string()
}

/// The children a `Created ...`/`Updated ...` note names.
fn named_children(note: &str, verb: &str) -> BTreeSet<String> {
    note.strip_prefix(verb)
        .and_then(|rest| rest.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{note:?} starts with {verb:?}"))
        .split(", ")
        .map(String::from)
        .collect()
}

/// Asserts `call` is the status merge patch; returns the status it writes.
fn assert_status_patch(call: &Call, namespace: &str) -> Value {
    assert_eq!(
        call.line(),
        line(Method::PATCH, format!("{}/status", cluster_path(namespace)))
    );
    assert!(call.is_merge_patch(), "{call:?}");
    let body = call.body().as_object().expect("an object");
    assert_eq!(
        body.keys().collect::<Vec<_>>(),
        ["status"],
        "only the status is patched"
    );
    body["status"].clone()
}

/// The `(type, status, reason)` of each condition of `status`.
fn conditions(status: &Value) -> Vec<(String, String, String)> {
    status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (field("type"), field("status"), field("reason"))
        })
        .collect()
}

fn condition(type_: &str, status: &str, reason: &str) -> (String, String, String) {
    (type_.into(), status.into(), reason.into())
}

fn to_json<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("JSON")
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

/// Scenario 1: a new cluster with empty caches creates the pod ServiceAccount and RoleBinding,
/// then the Secrets, Services and PDBs together, then the StatefulSet, then writes the status
/// (Creating) — and one Event naming every child.
#[tokio::test]
async fn a_new_cluster_creates_every_child_then_writes_creating() {
    let ns = "mock-new-cluster";
    let pg = support::cluster(ns);
    let config = Config::default();
    let wanted = controller::desired::build(&config, &Validated::trusted(&config, &pg), None)
        .expect("builds");
    let (result, calls, _) = run(pg.clone(), config.clone(), Vec::new(), server(&pg)).await;
    assert_eq!(result.unwrap(), Action::requeue(config.resync_period()));

    let lines = calls.lines();
    assert_eq!(
        lines.len(),
        2 + SECRETS.len() + 2 + PDBS.len() + 2,
        "{lines:#?}"
    );
    // The pod ServiceAccount and RoleBinding first, in this order.
    assert_create(
        &calls.api[0],
        &core(ns, "serviceaccounts"),
        "ServiceAccount",
        "postgres-pod",
    );
    assert_create(&calls.api[1], &rbac(ns), "RoleBinding", "postgres-pod");
    // Then Secrets, Services and PDBs, written concurrently: a set. (No Endpoints: by default
    // Patroni keeps its state in ConfigMaps.)
    let together = &calls.api[2..lines.len() - 2];
    let mut expected: Vec<String> = SECRETS
        .iter()
        .map(|_| line(Method::POST, core(ns, "secrets")))
        .collect();
    for service in [CLUSTER, REPLICA_SERVICE] {
        expected.push(line(
            Method::PATCH,
            format!("{}/{service}", core(ns, "services")),
        ));
    }
    for pdb in PDBS {
        expected.push(line(Method::PATCH, format!("{}/{pdb}", pdbs(ns))));
    }
    assert_eq!(
        sorted(together.iter().map(Call::line).collect()),
        sorted(expected)
    );
    let mut secret_names = BTreeSet::new();
    for call in together {
        match call.method {
            Method::POST => {
                let name = call.body()["metadata"]["name"].as_str().unwrap();
                assert_create(call, &core(ns, "secrets"), "Secret", name);
                assert!(call.body()["data"]["password"].is_string());
                secret_names.insert(name.to_string());
            }
            _ if call.path.contains("/services/") => {
                let name = call.path.rsplit('/').next().unwrap();
                assert_apply(call, &core(ns, "services"), "Service", name);
                let desired = wanted.services.iter().find(|s| s.name_any() == name);
                assert_eq!(
                    Some(call.body()),
                    desired.map(|s| serde_json::to_value(s).unwrap()).as_ref(),
                    "the Service is applied exactly as built"
                );
            }
            _ => {
                let name = call.path.rsplit('/').next().unwrap();
                assert_apply(call, &pdbs(ns), "PodDisruptionBudget", name);
            }
        }
    }
    assert_eq!(
        secret_names,
        SECRETS.iter().map(|s| s.to_string()).collect()
    );
    // Then the StatefulSet, carrying the hash of its desired state.
    let sts = &calls.api[lines.len() - 2];
    assert_apply(sts, &statefulsets(ns), "StatefulSet", CLUSTER);
    assert_eq!(
        sts.body()["metadata"]["annotations"][APPLIED_HASH],
        applied_hash(&wanted.statefulsets[0])
    );
    assert_eq!(sts.body()["spec"]["replicas"], 2);
    // Last, the status: Creating, the pods not ready yet: Ready says so.
    let status = assert_status_patch(&calls.api[lines.len() - 1], ns);
    assert_eq!(status["PostgresClusterStatus"], "Creating");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(
        conditions(&status),
        [
            condition("Ready", "False", "PodsNotReady"),
            condition("Reconciled", "True", "Applied"),
        ]
    );
    assert_eq!(
        status["conditions"][0]["message"],
        "waiting: the StatefulSet is not seen yet"
    );

    // One Event names every child created (the minimal manifest asks for nothing ignored).
    assert_eq!(calls.events.len(), 1, "{:#?}", calls.events);
    let note = assert_event(&calls.events[0], ns, "Normal", "Created", "Create");
    let mut children: BTreeSet<String> = [
        "ServiceAccount postgres-pod".to_string(),
        "RoleBinding postgres-pod".to_string(),
        format!("Service {CLUSTER}"),
        format!("Service {REPLICA_SERVICE}"),
        format!("StatefulSet {CLUSTER}"),
    ]
    .into();
    children.extend(SECRETS.iter().map(|s| format!("Secret {s}")));
    children.extend(PDBS.iter().map(|p| format!("PodDisruptionBudget {p}")));
    assert_eq!(named_children(&note, "Created"), children);
}

/// Scenario 2: caches holding exactly what the controller wrote, and the status already
/// matching: no API call at all, not even an Event.
#[tokio::test]
async fn an_unchanged_cluster_makes_no_api_call() {
    let ns = "mock-unchanged";
    let (pg, config, cached) = support::running(ns);
    let (result, calls, _) = run(pg.clone(), config.clone(), cached, server(&pg)).await;
    assert_eq!(result.unwrap(), Action::requeue(config.resync_period()));
    assert_eq!(calls.lines(), Vec::<String>::new());
    assert_eq!(calls.events, Vec::new());
}

/// Ready pods are not a running database: when Patroni's lock names a pod that does not carry
/// the master label (a failover under way), the only call is the status write, which leaves
/// Running and says why; nothing is applied.
#[tokio::test]
async fn ready_pods_without_a_running_leader_are_not_running() {
    let ns = "mock-no-leader";
    let (pg, config, mut cached) = support::running(ns);
    for child in cached.iter_mut() {
        if let support::Cached::Pod(pod) = child {
            let labels = pod.metadata.labels.as_mut().unwrap();
            labels.insert("spilo-role".into(), "replica".into());
        }
    }
    let (result, calls, _) = run(pg.clone(), config.clone(), cached, server(&pg)).await;
    assert_eq!(result.unwrap(), Action::requeue(config.resync_period()));
    assert_eq!(calls.api.len(), 1, "{:#?}", calls.lines());
    let status = assert_status_patch(&calls.api[0], ns);
    assert_eq!(status["PostgresClusterStatus"], "Updating");
    assert_eq!(
        status["conditions"][0]["message"],
        "waiting: no pod is labelled spilo-role=master yet"
    );
}

/// Scenario 3: one Service missing from the cache (deleted by someone): exactly one apply of
/// that Service, exactly as built, and an Event naming it. The status (Running) is unchanged.
#[tokio::test]
async fn a_deleted_service_is_applied_again_and_nothing_else() {
    let ns = "mock-deleted-child";
    let pg = support::running_cluster(ns);
    let config = Config::default();
    let cached = support::without(
        support::written_children(&config, &pg),
        &format!("Service/{REPLICA_SERVICE}"),
    );
    let (result, calls, _) = run(pg.clone(), config.clone(), cached, server(&pg)).await;
    assert_eq!(result.unwrap(), Action::requeue(config.resync_period()));

    assert_eq!(calls.api.len(), 1, "{:#?}", calls.lines());
    let apply = &calls.api[0];
    assert_apply(apply, &core(ns, "services"), "Service", REPLICA_SERVICE);
    let desired = controller::desired::build(&config, &Validated::trusted(&config, &pg), None)
        .unwrap()
        .services
        .into_iter()
        .find(|s| s.name_any() == REPLICA_SERVICE)
        .unwrap();
    assert_eq!(apply.body(), &serde_json::to_value(desired).unwrap());

    assert_eq!(calls.events.len(), 1, "{:#?}", calls.events);
    let note = assert_event(&calls.events[0], ns, "Normal", "Created", "Create");
    assert_eq!(note, format!("Created Service {REPLICA_SERVICE}"));
}

/// Asserts that the only calls were one apply of the StatefulSet (Updated event included).
fn assert_only_the_statefulset_is_applied(calls: &Calls, ns: &str, pg: &Postgresql) {
    assert_eq!(calls.api.len(), 1, "{:#?}", calls.lines());
    let apply = &calls.api[0];
    assert_apply(apply, &statefulsets(ns), "StatefulSet", CLUSTER);
    let desired = controller::desired::build(
        &Config::default(),
        &Validated::trusted(&Config::default(), pg),
        None,
    )
    .unwrap()
    .statefulsets
    .remove(0);
    assert_eq!(
        apply.body()["metadata"]["annotations"][APPLIED_HASH],
        applied_hash(&desired)
    );
    assert_eq!(calls.events.len(), 1, "{:#?}", calls.events);
    let note = assert_event(&calls.events[0], ns, "Normal", "Updated", "Update");
    assert_eq!(note, format!("Updated StatefulSet {CLUSTER}"));
}

/// Scenario 4a: someone else (`kubectl edit`) wrote the StatefulSet after the controller's
/// apply: exactly one apply of the StatefulSet, which takes its fields back.
#[tokio::test]
async fn a_foreign_edit_of_the_statefulset_is_applied_over() {
    let ns = "mock-foreign-edit";
    let (pg, config, mut cached) = support::running(ns);
    support::edit_statefulset(&mut cached, |sts| {
        let later = support::applied_time() + k8s_openapi::jiff::SignedDuration::from_secs(1);
        sts.metadata
            .managed_fields
            .get_or_insert_with(Vec::new)
            .push(support::managed("kubectl-edit", "Update", later));
    });
    let (result, calls, _) = run(pg.clone(), config.clone(), cached, server(&pg)).await;
    assert_eq!(result.unwrap(), Action::requeue(config.resync_period()));
    assert_only_the_statefulset_is_applied(&calls, ns, &pg);
}

/// Scenario 4b: the cached StatefulSet was applied from another desired state (another
/// applied-hash, e.g. by an older version of the spec): exactly one apply of it.
#[tokio::test]
async fn a_statefulset_with_another_applied_hash_is_applied() {
    let ns = "mock-other-hash";
    let (pg, config, mut cached) = support::running(ns);
    support::edit_statefulset(&mut cached, |sts| {
        sts.annotations_mut()
            .insert(APPLIED_HASH.into(), "000000000000000000000000".into());
    });
    let (result, calls, _) = run(pg.clone(), config.clone(), cached, server(&pg)).await;
    assert_eq!(result.unwrap(), Action::requeue(config.resync_period()));
    assert_only_the_statefulset_is_applied(&calls, ns, &pg);
}

/// What the server lists as the cluster's labelled ConfigMaps: Patroni's four and another.
fn patroni_config_maps(ns: &str) -> Vec<Value> {
    ["leader", "config", "sync", "failover", "other"]
        .iter()
        .map(|suffix| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("{CLUSTER}-{suffix}"), "namespace": ns,
                    "labels": {"application": "spilo", "cluster-name": CLUSTER}}})
        })
        .collect()
}

/// Scenario 5: a cluster being deleted, with the finalizer (`enable_finalizers` on, owner
/// references off), whose pods are gone: each kind of child is listed by the cluster's labels
/// and every one found is deleted (a child already gone is skipped), then Patroni's four
/// ConfigMaps (by name, among those carrying the cluster's labels), then the finalizer is
/// removed by a resourceVersion-guarded merge patch. One Event per deleted child.
#[tokio::test]
async fn a_deleted_cluster_deletes_its_children_then_drops_the_finalizer() {
    let ns = "mock-deleted-cluster";
    let (pg, mut config) = support::deleted(ns);
    config.kubernetes.enable_owner_references = false;

    // What the server lists by the cluster's labels, by resource.
    let wanted =
        controller::desired::build(&config, &Validated::trusted(&config, &pg), None).unwrap();
    let pvc = |i: usize| PersistentVolumeClaim {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(format!("pgdata-{CLUSTER}-{i}")),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let listed: Vec<(&str, Vec<Value>)> = vec![
        ("statefulsets", vec![to_json(&wanted.statefulsets[0])]),
        ("services", wanted.services.iter().map(to_json).collect()),
        ("endpoints", Vec::new()),
        (
            "poddisruptionbudgets",
            wanted.pdbs.iter().map(to_json).collect(),
        ),
        (
            "secrets",
            controller::desired::secrets(&config, &pg, None)
                .iter()
                .map(to_json)
                .collect(),
        ),
        (
            "persistentvolumeclaims",
            vec![to_json(&pvc(0)), to_json(&pvc(1))],
        ),
    ];
    // The second volume claim is gone by the time it is deleted.
    let gone = format!("{}/pgdata-{CLUSTER}-1", core(ns, "persistentvolumeclaims"));
    let mut fallback = server(&pg);
    let lists = listed.clone();
    let missing = gone.clone();
    let respond = move |call: &Call| {
        if call.method == Method::GET {
            let resource = call.path.rsplit('/').next().unwrap();
            if resource == "configmaps" {
                return (StatusCode::OK, support::list(patroni_config_maps(ns)));
            }
            let items = lists
                .iter()
                .find(|(r, _)| *r == resource)
                .unwrap_or_else(|| panic!("unexpected list {}", call.line()));
            return (StatusCode::OK, support::list(items.1.clone()));
        }
        if call.method == Method::DELETE && call.path == missing {
            return support::failure(StatusCode::NOT_FOUND);
        }
        fallback(call)
    };
    let mut cached = support::written_children(&config, &pg);
    cached.retain(|c| !matches!(c, support::Cached::Pod(_)));
    let (result, calls, _) = run(pg.clone(), config.clone(), cached, respond).await;
    assert_eq!(result.unwrap(), Action::await_change());

    let collection = |resource: &str| match resource {
        "statefulsets" => statefulsets(ns),
        "poddisruptionbudgets" => pdbs(ns),
        other => core(ns, other),
    };
    let mut expected = Vec::new();
    let mut deleted = Vec::new();
    for (resource, items) in &listed {
        expected.push(line(Method::GET, collection(resource)));
        for item in items {
            let name = item["metadata"]["name"].as_str().unwrap();
            let path = format!("{}/{name}", collection(resource));
            expected.push(line(Method::DELETE, &path));
            if path != gone {
                deleted.push(format!("{} {name} deleted", item["kind"].as_str().unwrap()));
            }
        }
    }
    // Patroni's ConfigMaps, not another of the cluster's.
    expected.push(line(Method::GET, core(ns, "configmaps")));
    for suffix in ["leader", "config", "sync", "failover"] {
        let name = format!("{CLUSTER}-{suffix}");
        expected.push(line(
            Method::DELETE,
            format!("{}/{name}", core(ns, "configmaps")),
        ));
        deleted.push(format!("ConfigMap {name} deleted"));
    }
    expected.push(line(Method::PATCH, cluster_path(ns)));
    assert_eq!(calls.lines(), expected);

    let selector = format!("application=spilo,cluster-name={CLUSTER}");
    for call in &calls.api {
        match call.method {
            Method::GET => assert_eq!(
                call.query.get("labelSelector"),
                Some(&selector),
                "{}",
                call.line()
            ),
            Method::DELETE => assert_eq!(
                call.body()["propagationPolicy"],
                "Background",
                "{}",
                call.line()
            ),
            _ => {}
        }
    }
    let finalizers = calls.api.last().unwrap();
    assert!(finalizers.is_merge_patch(), "{finalizers:?}");
    assert_eq!(
        finalizers.query.get("fieldManager").map(String::as_str),
        Some(FIELD_MANAGER)
    );
    assert_eq!(
        finalizers.body(),
        &json!({"metadata": {"finalizers": [], "resourceVersion": "41"}})
    );

    let notes: Vec<String> = calls
        .events
        .iter()
        .map(|call| assert_event(call, ns, "Normal", "Deleted", "Delete"))
        .collect();
    assert_eq!(notes, deleted);
}

/// A 500 on the StatefulSet's apply: the reconcile returns the typed API error (no panic), after
/// writing the failure into the status and a warning Event; the error policy requeues soon.
#[tokio::test]
async fn an_api_error_is_returned_typed_and_requeued() {
    let ns = "mock-api-error";
    let (pg, config, mut cached) = support::running(ns);
    support::edit_statefulset(&mut cached, |sts| {
        sts.annotations_mut()
            .insert(APPLIED_HASH.into(), "000000000000000000000000".into());
    });
    let mut fallback = server(&pg);
    let respond = move |call: &Call| {
        if call.method == Method::PATCH && call.path.contains("/statefulsets/") {
            return support::failure(StatusCode::INTERNAL_SERVER_ERROR);
        }
        fallback(call)
    };
    let (result, calls, policy) = run(pg.clone(), config.clone(), cached, respond).await;
    let error = result.expect_err("the apply failed");
    let Error::Api {
        what,
        source: kube::Error::Api(status),
    } = &error
    else {
        panic!("an API error: {error:?}")
    };
    assert_eq!(what, &format!("applying StatefulSet {CLUSTER}"));
    assert_eq!(status.code, 500);
    assert_eq!(error.reason(), "api");
    assert_eq!(
        policy,
        Action::requeue(config.repair_period().min(Duration::from_secs(5)))
    );

    assert_eq!(calls.api.len(), 2, "{:#?}", calls.lines());
    assert_apply(&calls.api[0], &statefulsets(ns), "StatefulSet", CLUSTER);
    let written = assert_status_patch(&calls.api[1], ns);
    assert_eq!(written["PostgresClusterStatus"], "SyncFailed");
    assert_eq!(
        conditions(&written),
        [
            condition("Ready", "False", "ReconcileFailed"),
            condition("Reconciled", "False", "Failed"),
        ]
    );
    let message = written["conditions"][1]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("applying StatefulSet {CLUSTER}: ")),
        "{message}"
    );

    assert_eq!(calls.events.len(), 1, "{:#?}", calls.events);
    let note = assert_event(&calls.events[0], ns, "Warning", "SyncFailed", "Reconcile");
    assert_eq!(note, error.to_string());
}

/// A 500 on the status write (every child matches, the status is new): the typed error names
/// the status write, and no warning Event is sent for it.
#[tokio::test]
async fn a_failed_status_write_is_returned_typed() {
    let ns = "mock-status-error";
    let pg = support::cluster(ns);
    let config = Config::default();
    // Every child exists and matches; only the status (none yet) must be written.
    let cached = support::written_children(&config, &pg);
    let mut fallback = server(&pg);
    let respond = move |call: &Call| {
        if call.path.ends_with("/status") {
            return support::failure(StatusCode::INTERNAL_SERVER_ERROR);
        }
        fallback(call)
    };
    let (result, calls, policy) = run(pg.clone(), config.clone(), cached, respond).await;
    let error = result.expect_err("the status write failed");
    assert!(
        matches!(&error, Error::Api { what, source: kube::Error::Api(s) } if what == "writing the status" && s.code == 500),
        "{error:?}"
    );
    assert_eq!(
        policy,
        Action::requeue(config.repair_period().min(Duration::from_secs(5)))
    );
    assert_eq!(calls.api.len(), 1, "{:#?}", calls.lines());
    let written = assert_status_patch(&calls.api[0], ns);
    assert_eq!(written["PostgresClusterStatus"], "Running");
    assert_eq!(calls.events, Vec::new());
}

/// Orphan cleanup: a Service the controller applied for this cluster but no longer wants is
/// deleted; one
/// with the cluster's labels that someone else wrote (as Patroni writes its own objects) is kept.
#[tokio::test]
async fn services_no_longer_wanted_are_deleted_and_foreign_ones_kept() {
    let ns = "mock-orphans";
    let (pg, config, mut cached) = support::running(ns);
    let template = cached
        .iter()
        .find_map(|c| match c {
            support::Cached::Service(s) if s.name_any() == CLUSTER => Some(s.clone()),
            _ => None,
        })
        .expect("the master Service is cached");
    let now = k8s_openapi::jiff::Timestamp::now();
    for (name, manager, operation) in [
        ("acid-minimal-cluster-old", "postgres-operator", "Apply"),
        ("acid-minimal-cluster-patroni", "Patroni", "Update"),
    ] {
        let mut service = template.clone();
        service.metadata.name = Some(name.into());
        service.metadata.managed_fields = Some(vec![support::managed(manager, operation, now)]);
        cached.push(service.into());
    }
    let (result, calls, _) = run(pg.clone(), config.clone(), cached, server(&pg)).await;
    assert_eq!(result.unwrap(), Action::requeue(config.resync_period()));
    assert_eq!(
        calls.lines(),
        [format!(
            "DELETE {}/acid-minimal-cluster-old",
            core(ns, "services")
        )]
    );
    assert_eq!(calls.events.len(), 1, "{:#?}", calls.events);
    let note = assert_event(&calls.events[0], ns, "Normal", "Deleted", "Delete");
    assert_eq!(note, "Deleted Service acid-minimal-cluster-old");
}
