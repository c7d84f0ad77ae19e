//! Helpers of the mock-API tests: a mock API server (kube's recommended `tower-test` pair) that
//! records every request and answers it, the controller's [`Context`] over that client with
//! pre-filled caches, and the cluster and children the scenarios start from.
//!
//! [`context`] is the only function that knows the shape of `Context` and `Stores`.

#![allow(dead_code)]

use arc_swap::ArcSwap;
use common::config::{Config, Loaded};
use common::crd::Postgresql;
use common::rules::admission::Validated;
use controller::apply::{APPLIED_AT, APPLIED_HASH, FIELD_MANAGER};
use controller::children::Stores;
use controller::context::Context;
use controller::events::{Events, Reporter};
use controller::metrics::Metrics;
use controller::stores::Slim;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
use kube::client::Body;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

mod run;
// Each test binary uses some of them.
#[allow(unused_imports)]
pub use run::{Sent, deleted, reconcile_bounded, run, running};

/// The longest any test waits for the mock server to see its last request (and for a
/// reconcile to finish).
const WAIT: Duration = Duration::from_secs(10);

// ===== the mock API server =====

/// One request as the mock API server received it.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// HTTP method.
    pub method: Method,
    /// URL path (no query).
    pub path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The JSON body, if any.
    pub body: Option<Value>,
}

impl Call {
    async fn read(request: Request<Body>) -> Self {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("request body");
        Call {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(parse_query).unwrap_or_default(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.to_str().expect("ASCII content type").to_string()),
            body: (!bytes.is_empty())
                .then(|| serde_json::from_slice(&bytes).expect("a JSON request body")),
        }
    }

    /// `"METHOD /path"`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Whether this is an `events.k8s.io` write (sent by the Events background task).
    pub fn is_event(&self) -> bool {
        self.path.starts_with("/apis/events.k8s.io/")
    }

    /// The body; panics when there is none.
    pub fn body(&self) -> &Value {
        self.body
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no body", self.line()))
    }

    /// Whether this is a server-side apply by the controller's field manager, with `force`.
    pub fn is_forced_apply(&self) -> bool {
        self.method == Method::PATCH
            && self.content_type.as_deref() == Some("application/apply-patch+yaml")
            && self.query.get("fieldManager").map(String::as_str) == Some(FIELD_MANAGER)
            && self.query.get("force").map(String::as_str) == Some("true")
    }

    /// Whether this is a create by the controller's field manager.
    pub fn is_create(&self) -> bool {
        self.method == Method::POST
            && self.query.get("fieldManager").map(String::as_str) == Some(FIELD_MANAGER)
    }

    /// Whether this is a JSON merge patch.
    pub fn is_merge_patch(&self) -> bool {
        self.method == Method::PATCH
            && self.content_type.as_deref() == Some("application/merge-patch+json")
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII escape");
                out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("UTF-8 query")
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

/// What the mock server answers: an HTTP status and a JSON body.
pub type Reply = (StatusCode, Value);

/// The running mock API server.
pub struct MockApi {
    server: tokio::task::JoinHandle<Vec<Call>>,
}

/// Every request one reconcile made, split into the reconcile's own calls (in the order the
/// server received them) and the Events the background publisher sent (which may interleave
/// with the reconcile's calls, so they are kept apart).
#[derive(Debug)]
pub struct Calls {
    /// The reconcile's calls, in order.
    pub api: Vec<Call>,
    /// Event writes.
    pub events: Vec<Call>,
}

impl Calls {
    /// The reconcile's calls as `"METHOD /path"` lines.
    pub fn lines(&self) -> Vec<String> {
        self.api.iter().map(Call::line).collect()
    }
}

/// A client whose every request goes to a mock server answering with `respond`, which records
/// all of them.
pub fn mock_api<F>(mut respond: F) -> (Client, MockApi)
where
    F: FnMut(&Call) -> Reply + Send + 'static,
{
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let mut calls = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let call = Call::read(request).await;
            let (status, body) = respond(&call);
            let response = Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&body).expect("JSON")))
                .expect("a response");
            send.send_response(response);
            calls.push(call);
        }
        calls
    });
    (Client::new(service, "default"), MockApi { server })
}

impl MockApi {
    /// Every request received, once the last client is gone: drop the Context (and every client
    /// clone) first; the Events task then sends what it has queued and drops its client. Waits
    /// at most [`WAIT`], so a leaked client fails the test instead of hanging it.
    pub async fn calls(self) -> Calls {
        let calls = tokio::time::timeout(WAIT, self.server)
            .await
            .expect("a client is still alive: drop the Context before reading the calls")
            .expect("the mock server panicked");
        let (events, api) = calls.into_iter().partition(Call::is_event);
        Calls { api, events }
    }
}

/// An API server in miniature: creates and applies echo the object back with a new
/// resourceVersion; merge patches of the cluster (status, finalizers) are applied to `pg` and
/// return it; lists are empty; deletes succeed.
pub fn server(pg: &Postgresql) -> impl FnMut(&Call) -> Reply + Send + 'static {
    let mut pg = serde_json::to_value(pg).expect("JSON");
    let mut version = 1000;
    move |call| {
        version += 1;
        let with_version = |mut object: Value| {
            object["metadata"]["resourceVersion"] = json!(version.to_string());
            object
        };
        match call.method {
            Method::POST => (StatusCode::CREATED, with_version(call.body().clone())),
            Method::PATCH if call.path.contains("/postgresqls/") && call.is_merge_patch() => {
                merge(&mut pg, call.body());
                pg = with_version(pg.take());
                (StatusCode::OK, pg.clone())
            }
            // A merge patch of a pod's metadata (the rolling-update flag): the pod it makes.
            Method::PATCH if call.path.contains("/pods/") && call.is_merge_patch() => {
                let name = call.path.rsplit('/').next().unwrap_or_default();
                let mut pod =
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}});
                merge(&mut pod, call.body());
                (StatusCode::OK, with_version(pod))
            }
            Method::PATCH if call.is_forced_apply() => {
                (StatusCode::OK, with_version(call.body().clone()))
            }
            Method::GET => (StatusCode::OK, list(Vec::new())),
            Method::DELETE => (StatusCode::OK, success()),
            _ => panic!("the mock server does not expect {}", call.line()),
        }
    }
}

/// A `List` of `items`.
pub fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items})
}

/// A successful delete's `Status`.
pub fn success() -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success", "code": 200})
}

/// A failed call's `Status`.
pub fn failure(code: StatusCode) -> Reply {
    (
        code,
        json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "message": format!("mock failure {code}"), "reason": "InternalError", "code": code.as_u16()}),
    )
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let object = target.as_object_mut().expect("an object");
            for (key, value) in fields {
                if value.is_null() {
                    object.remove(key);
                } else {
                    merge(object.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

// ===== the Context =====

/// One object in a child cache, as its reflector would hold it.
// A handful per test: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Cached {
    StatefulSet(StatefulSet),
    Service(Service),
    Endpoints(Endpoints),
    Secret(Secret),
    Pdb(PodDisruptionBudget),
    ServiceAccount(ServiceAccount),
    RoleBinding(RoleBinding),
    /// Observed, never written: a member pod.
    Pod(Pod),
    /// Observed, never written: Patroni's ConfigMaps.
    ConfigMap(ConfigMap),
    /// Observed, patched to grow: a data volume's claim.
    Claim(PersistentVolumeClaim),
}

macro_rules! cached_from {
    ($($variant:ident($kind:ty)),*) => {$(
        impl From<$kind> for Cached {
            fn from(object: $kind) -> Self {
                Cached::$variant(object)
            }
        }
    )*};
}
cached_from!(
    StatefulSet(StatefulSet),
    Service(Service),
    Endpoints(Endpoints),
    Secret(Secret),
    Pdb(PodDisruptionBudget),
    ServiceAccount(ServiceAccount),
    RoleBinding(RoleBinding),
    Pod(Pod),
    ConfigMap(ConfigMap),
    Claim(PersistentVolumeClaim)
);

impl Cached {
    /// `Kind/name`.
    pub fn key(&self) -> String {
        match self {
            Cached::StatefulSet(o) => format!("StatefulSet/{}", o.name_any()),
            Cached::Service(o) => format!("Service/{}", o.name_any()),
            Cached::Endpoints(o) => format!("Endpoints/{}", o.name_any()),
            Cached::Secret(o) => format!("Secret/{}", o.name_any()),
            Cached::Pdb(o) => format!("PodDisruptionBudget/{}", o.name_any()),
            Cached::ServiceAccount(o) => format!("ServiceAccount/{}", o.name_any()),
            Cached::RoleBinding(o) => format!("RoleBinding/{}", o.name_any()),
            Cached::Pod(o) => format!("Pod/{}", o.name_any()),
            Cached::ConfigMap(o) => format!("ConfigMap/{}", o.name_any()),
            Cached::Claim(o) => format!("PersistentVolumeClaim/{}", o.name_any()),
        }
    }
}

/// A store holding `objects`, slimmed as the controller's reflectors slim them.
fn store<K>(objects: Vec<K>) -> Store<K>
where
    K: Resource + Slim + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, mut writer) = reflector::store();
    for mut object in objects {
        object.slim();
        writer.apply_watcher_event(&watcher::Event::Apply(object));
    }
    reader
}

/// The controller's shared state over `client`, with `config` and child caches holding exactly
/// `cached`; synced and leading. The only function here that knows `Context`'s and `Stores`'s
/// shape.
///
/// The database side is off (`enable_database_access: false`): these tests assert API calls,
/// and the SQL side is tested against real PostgreSQL (`tests/tests/database.rs`).
pub fn context(client: Client, mut config: Config, cached: Vec<Cached>) -> Arc<Context> {
    config.debug.enable_database_access = false;
    let mut sts: Vec<StatefulSet> = Vec::new();
    let mut svc: Vec<Service> = Vec::new();
    let mut ep: Vec<Endpoints> = Vec::new();
    let mut secret: Vec<Secret> = Vec::new();
    let mut pdb: Vec<PodDisruptionBudget> = Vec::new();
    let mut sa: Vec<ServiceAccount> = Vec::new();
    let mut rb: Vec<RoleBinding> = Vec::new();
    let mut pods: Vec<Pod> = Vec::new();
    let mut cms: Vec<ConfigMap> = Vec::new();
    let mut claims: Vec<PersistentVolumeClaim> = Vec::new();
    for object in cached {
        match object {
            Cached::StatefulSet(o) => sts.push(o),
            Cached::Service(o) => svc.push(o),
            Cached::Endpoints(o) => ep.push(o),
            Cached::Secret(o) => secret.push(o),
            Cached::Pdb(o) => pdb.push(o),
            Cached::ServiceAccount(o) => sa.push(o),
            Cached::RoleBinding(o) => rb.push(o),
            Cached::Pod(o) => pods.push(o),
            Cached::ConfigMap(o) => cms.push(o),
            Cached::Claim(o) => claims.push(o),
        }
    }
    let observed = controller::members::Observed {
        pods: store(pods),
        config_maps: store(cms),
        claims: store(claims),
    };
    let stores = Stores {
        statefulsets: store(sts),
        services: store(svc),
        endpoints: store(ep),
        secrets: store(secret),
        pdbs: store(pdb),
        service_accounts: store(sa),
        role_bindings: store(rb),
    };
    let metrics = Metrics::default();
    let reporter = Reporter {
        controller: "postgres-operator".into(),
        instance: "mock-test".into(),
    };
    Arc::new(Context {
        client: client.clone(),
        config: ArcSwap::from_pointee(Loaded {
            config,
            warnings: Vec::new(),
        }),
        controller_id: String::new(),
        stores,
        observed,
        connector: Default::default(),
        database_failures: Default::default(),
        inside_reads: Default::default(),
        roles: Default::default(),
        patroni: Arc::new(patroni_in_line()),
        rollouts: Default::default(),
        patroni_config: Default::default(),
        exec: Arc::new(controller::upgrade::exec::Recorded::default()),
        upgrades: Default::default(),
        events: Events::start(client, reporter, metrics.events_dropped.clone()),
        metrics,
        caches_ready: AtomicBool::new(true),
        leading: Arc::new(AtomicBool::new(true)),
    })
}

/// A Patroni whose members (the pod IPs of [`members`]) show a dynamic configuration in line with
/// a manifest that sets no Patroni setting and no parameter, and no pending restart: the
/// controller's sync of Patroni's configuration (`controller::dcs`) finds nothing to do.
pub fn patroni_in_line() -> controller::patroni::fake::Fake {
    let fake = controller::patroni::fake::Fake::default();
    let config = json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10,
        "maximum_lag_on_failover": 33554432, "failsafe_mode": false,
        "postgresql": {"parameters": {"max_connections": 100}}});
    for i in 2..10 {
        let ip = format!("127.10.0.{i}");
        fake.configs
            .lock()
            .unwrap()
            .insert(ip.clone(), Ok(config.clone()));
        let status = controller::patroni::Status {
            state: "running".into(),
            ..Default::default()
        };
        fake.statuses.lock().unwrap().insert(ip, Ok(status));
    }
    fake
}

/// [`patroni_in_line`] whose members (at both pods' addresses) are `members`.
pub fn patroni_with(members: Vec<controller::patroni::Member>) -> controller::patroni::fake::Fake {
    let fake = patroni_in_line();
    let cluster = controller::patroni::Cluster {
        members,
        pause: false,
    };
    for i in 2..4 {
        fake.clusters
            .lock()
            .unwrap()
            .insert(format!("127.10.0.{i}"), Ok(cluster.clone()));
    }
    fake
}

/// Member `<cluster>-<ordinal>` of the minimal cluster as Patroni's `/cluster` lists it.
pub fn member(
    ordinal: usize,
    role: &str,
    state: &str,
    lag: Option<u64>,
) -> controller::patroni::Member {
    controller::patroni::Member {
        name: format!("{CLUSTER}-{ordinal}"),
        role: role.into(),
        state: state.into(),
        lag,
        ..Default::default()
    }
}

// ===== the cluster and its children =====

/// The cluster name of `manifests/minimal-postgres-manifest.yaml`.
pub const CLUSTER: &str = "acid-minimal-cluster";

const MINIMAL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../manifests/minimal-postgres-manifest.yaml"
));

/// The minimal manifest as the API server holds it in `namespace`: with a uid, resourceVersion
/// and generation, never reconciled (no status).
pub fn cluster(namespace: &str) -> Postgresql {
    let mut pg: Postgresql = serde_yaml::from_str(MINIMAL).expect("the manifest parses");
    pg.metadata.namespace = Some(namespace.into());
    pg.metadata.uid = Some(format!("0c4b6f0e-0000-4000-8000-{:0>12}", namespace.len()));
    pg.metadata.resource_version = Some("41".into());
    pg.metadata.generation = Some(1);
    pg
}

/// The cluster with the status a reconcile of its ready children writes (Running).
pub fn running_cluster(namespace: &str) -> Postgresql {
    let mut pg = cluster(namespace);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    pg.status = Some(controller::status::next(
        &pg,
        &controller::status::Result::Applied {
            pods: controller::status::Pods::Running(format!("{CLUSTER}-0")),
            database: controller::status::Database::Skipped("enable_database_access is off".into()),
            ignored: common::fields::summary(&common::fields::ignored_fields(&pg)),
        },
        now,
    ));
    pg
}

/// A managedFields entry of `manager` at `time`.
pub fn managed(
    manager: &str,
    operation: &str,
    time: k8s_openapi::jiff::Timestamp,
) -> ManagedFieldsEntry {
    ManagedFieldsEntry {
        manager: Some(manager.into()),
        operation: Some(operation.into()),
        api_version: Some("v1".into()),
        fields_type: Some("FieldsV1".into()),
        time: Some(Time(time)),
        ..Default::default()
    }
}

/// A second ago, whole seconds (as managedFields times are).
pub fn applied_time() -> k8s_openapi::jiff::Timestamp {
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    k8s_openapi::jiff::Timestamp::from_second(now - 1).expect("a valid time")
}

/// What the server holds after the controller wrote `object` by server-side apply.
fn as_written<K: Resource>(mut object: K, version: usize) -> K {
    let meta = object.meta_mut();
    meta.resource_version = Some(version.to_string());
    meta.uid = Some(format!("00000000-0000-4000-8000-{version:012}"));
    meta.generation = Some(1);
    meta.managed_fields = Some(vec![managed(FIELD_MANAGER, "Apply", applied_time())]);
    object
}

/// Every child as the controller's writes left it on the server (what the caches hold after a
/// successful reconcile with `config`): the desired objects, the StatefulSet with its applied
/// hash, its managedFields entry and all pods ready.
pub fn written_children(config: &Config, pg: &Postgresql) -> Vec<Cached> {
    let namespace = pg.namespace().expect("a namespace");
    let owner = config
        .kubernetes
        .enable_owner_references
        .then(|| pg.controller_owner_ref(&()))
        .flatten();
    let wanted =
        controller::desired::build(config, &Validated::trusted(config, pg), owner.as_ref())
            .expect("builds");
    let mut children: Vec<Cached> = vec![
        controller::desired::pod_service_account(config, &namespace)
            .expect("builds")
            .into(),
        controller::desired::pod_role_binding(config, &namespace)
            .expect("builds")
            .into(),
    ];
    children.extend(
        controller::desired::secrets(config, pg, owner.as_ref())
            .into_iter()
            .map(Cached::from),
    );
    children.extend(wanted.services.into_iter().map(Cached::from));
    children.extend(wanted.endpoints.into_iter().map(Cached::from));
    children.extend(wanted.pdbs.into_iter().map(Cached::from));
    children.push(applied_statefulset(&wanted.statefulsets[0]).into());
    children
        .into_iter()
        .enumerate()
        .map(|(i, child)| {
            let version = 500 + i;
            match child {
                Cached::StatefulSet(o) => as_written(o, version).into(),
                Cached::Service(o) => as_written(o, version).into(),
                Cached::Endpoints(o) => as_written(o, version).into(),
                Cached::Secret(o) => as_written(o, version).into(),
                Cached::Pdb(o) => as_written(o, version).into(),
                Cached::ServiceAccount(o) => as_written(o, version).into(),
                Cached::RoleBinding(o) => as_written(o, version).into(),
                other => other,
            }
        })
        .chain(members(config, pg))
        .collect()
}

/// The cluster's pods and Patroni's leader lock as a running cluster shows them: the first pod
/// leads (labelled master, ready, Patroni running it as primary), the others are replicas.
pub fn members(config: &Config, pg: &Postgresql) -> Vec<Cached> {
    let namespace = pg.namespace().expect("a namespace");
    let cluster = pg.name_any();
    let instances = pg.spec.number_of_instances.max(1);
    let k8s = &config.kubernetes;
    // The pods were created from the current template: they carry its annotations' digest.
    let digest = controller::desired::build(config, &Validated::trusted(config, pg), None)
        .ok()
        .and_then(|d| d.statefulsets.into_iter().next())
        .and_then(|s| s.spec?.template.metadata?.annotations)
        .and_then(|a| a.get(controller::rollout::annotations::DIGEST).cloned())
        .unwrap_or_default();
    let mut members: Vec<Cached> = (0..instances)
        .map(|i| {
            let (role, state) = if i == 0 {
                ("master", "primary")
            } else {
                ("replica", "replica")
            };
            let mut labels: BTreeMap<String, String> = k8s.cluster_labels.clone();
            labels.insert(k8s.cluster_name_label.clone(), cluster.clone());
            labels.insert(k8s.pod_role_label.clone(), role.into());
            let status = json!({"state": "running", "role": state}).to_string();
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": format!("{cluster}-{i}"), "namespace": namespace,
                    "labels": labels, "annotations": {"status": status,
                        controller::rollout::annotations::DIGEST: digest}},
                "status": {"podIP": format!("127.10.0.{}", i + 2),
                    "conditions": [{"type": "Ready", "status": "True"}]}
            }))
            .expect("a pod");
            Cached::Pod(pod)
        })
        .collect();
    let lock: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": format!("{cluster}-leader"), "namespace": namespace,
            "annotations": {"leader": format!("{cluster}-0")}}
    }))
    .expect("a ConfigMap");
    members.push(Cached::ConfigMap(lock));
    members
}

/// The hash [`controller::apply::ensure`] puts on `desired` when it applies it.
pub fn applied_hash<K: serde::Serialize>(desired: &K) -> String {
    controller::apply::digest(&serde_json::to_value(desired).expect("JSON"))
}

/// `desired` as applied: with the applied-hash and applied-at annotations, and every pod ready.
fn applied_statefulset(desired: &StatefulSet) -> StatefulSet {
    let mut sts = desired.clone();
    let hash = applied_hash(desired);
    let annotations = sts.annotations_mut();
    annotations.insert(APPLIED_HASH.into(), hash);
    annotations.insert(APPLIED_AT.into(), applied_time().to_string());
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    sts.status = Some(StatefulSetStatus {
        replicas,
        ready_replicas: Some(replicas),
        current_replicas: Some(replicas),
        updated_replicas: Some(replicas),
        available_replicas: Some(replicas),
        observed_generation: Some(1),
        ..Default::default()
    });
    sts
}

/// Removes the cached child `key` (`Kind/name`); panics when it is not there.
pub fn without(children: Vec<Cached>, key: &str) -> Vec<Cached> {
    let before = children.len();
    let rest: Vec<Cached> = children.into_iter().filter(|c| c.key() != key).collect();
    assert_eq!(rest.len() + 1, before, "{key} is not among the children");
    rest
}

/// Changes the cached StatefulSet with `edit`.
pub fn edit_statefulset(children: &mut [Cached], edit: impl FnOnce(&mut StatefulSet)) {
    let sts = children
        .iter_mut()
        .find_map(|c| match c {
            Cached::StatefulSet(sts) => Some(sts),
            _ => None,
        })
        .expect("a cached StatefulSet");
    edit(sts);
}
