//! Server-side apply under one field manager, skipped when the cached object already carries
//! everything we would write: that check is what makes a sync of an unchanged cluster free.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "postgres-operator";

/// The hash of the desired state a child was last applied with ([`Compare::Hash`]).
pub const APPLIED_HASH: &str = "postgres-operator.acid.zalan.do/applied-hash";

/// When a child was last applied. It changes with every apply, so the apply always moves this
/// manager's managedFields time forward, past whatever another writer did before it.
pub const APPLIED_AT: &str = "postgres-operator.acid.zalan.do/applied-at";

/// How long a write is remembered at most while the caches catch up with it.
const RECENT: Duration = Duration::from_secs(5);

/// A write of this controller that its caches have not necessarily seen yet.
struct Write {
    /// [`digest`] of the desired state written ("" for a create-only child).
    digest: String,
    /// The resourceVersion the write produced.
    resource_version: Option<String>,
    /// Whether the write came back through the watch (the cache now holds it or something newer).
    seen: bool,
    at: Instant,
}

/// Recent writes by object. Creating a child triggers another reconcile of its cluster before
/// the caches have seen every write of the first one; without this memory that reconcile would
/// repeat the writes. Expired entries are dropped once the map has doubled since the last sweep,
/// so bookkeeping stays O(1) per write at any number of clusters.
struct Writes {
    by_object: HashMap<String, Write>,
    sweep_at: usize,
}

static WRITES: LazyLock<Mutex<Writes>> = LazyLock::new(|| {
    Mutex::new(Writes {
        by_object: HashMap::new(),
        sweep_at: 1024,
    })
});

fn writes() -> std::sync::MutexGuard<'static, Writes> {
    WRITES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether the same desired state of `key` was written moments ago and the watch has not yet
/// brought it back.
fn recently_written(key: &str, digest: &str) -> bool {
    writes()
        .by_object
        .get(key)
        .is_some_and(|w| !w.seen && w.digest == digest && w.at.elapsed() < RECENT)
}

fn remember(key: String, digest: String, resource_version: Option<String>) {
    let mut writes = writes();
    if writes.by_object.len() >= writes.sweep_at {
        writes.by_object.retain(|_, w| w.at.elapsed() < RECENT);
        writes.sweep_at = (writes.by_object.len() * 2).max(1024);
    }
    writes.by_object.insert(
        key,
        Write {
            digest,
            resource_version,
            seen: false,
            at: Instant::now(),
        },
    );
}

/// Records a write made outside [`ensure`] and [`create_if_absent`] (a patch of a Secret's
/// data), so that its echo through the watch does not trigger the cluster again.
pub fn written<K: Resource>(object: &K)
where
    K::DynamicType: Default,
{
    remember(
        key_of(object),
        String::new(),
        object.meta().resource_version.clone(),
    );
}

/// Whether `object`, as a watch delivered it, is exactly what one of this controller's own
/// writes produced (marking that write as seen).
pub fn is_echo<K: Resource>(object: &K) -> bool
where
    K::DynamicType: Default,
{
    let Some(version) = object.meta().resource_version.as_deref() else {
        return false;
    };
    let mut writes = writes();
    match writes.by_object.get_mut(&key_of(object)) {
        Some(write) if write.resource_version.as_deref() == Some(version) => {
            write.seen = true;
            true
        }
        _ => false,
    }
}

/// Whether `object` is in the state this process's last write of it produced: `None` when it
/// remembers no write of it (after a restart, or once the write has expired).
fn is_our_last_write<K: Resource>(object: &K) -> Option<bool>
where
    K::DynamicType: Default,
{
    let version = object.meta().resource_version.as_deref();
    writes()
        .by_object
        .get(&key_of(object))
        .map(|w| version.is_some() && w.resource_version.as_deref() == version)
}

fn key_of<K: Resource>(object: &K) -> String
where
    K::DynamicType: Default,
{
    format!(
        "{}/{}/{}",
        K::kind(&Default::default()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// A stable digest of a desired state, for [`APPLIED_HASH`] (the same across restarts and
/// versions, unlike std's hasher).
pub fn digest(value: &Value) -> String {
    let hash = Sha256::digest(value.to_string().as_bytes());
    hash.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// Whether someone other than this controller's server-side apply wrote the object (its spec,
/// metadata or any subresource but status) after that apply: `Some(Greater)`, or only in the same
/// second, which managedFields' one-second times cannot order: `Some(Equal)`.
pub fn written_by_others(meta: &ObjectMeta) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering;
    let entries = meta.managed_fields.as_deref().unwrap_or_default();
    let is_ours = |e: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
        e.manager.as_deref() == Some(FIELD_MANAGER)
            && e.operation.as_deref() == Some("Apply")
            && e.subresource.as_deref().unwrap_or_default().is_empty()
    };
    let Some(ours) = entries
        .iter()
        .filter(is_ours)
        .filter_map(|e| e.time.as_ref())
        .max()
    else {
        return Some(Ordering::Greater);
    };
    entries
        .iter()
        .filter(|e| !is_ours(e) && e.subresource.as_deref() != Some("status"))
        .map(|e| e.time.as_ref().map_or(Ordering::Greater, |t| t.cmp(ours)))
        .filter(|o| *o != Ordering::Less)
        .max()
}

/// Whether the cached child differs from our last apply through someone else's write. A cached
/// state that is exactly our last write settles it. A write in the same second as ours is a
/// change only when this process remembers a later write of its own than the cached state;
/// without that memory (after a restart) it is taken as older, since every later foreign write
/// shows with a later time.
fn changed_by_others<K: Resource>(live: &K) -> bool
where
    K::DynamicType: Default,
{
    use std::cmp::Ordering;
    let ours = is_our_last_write(live);
    if ours == Some(true) {
        return false;
    }
    match written_by_others(live.meta()) {
        None => false,
        Some(Ordering::Equal) => ours == Some(false),
        Some(_) => true,
    }
}

/// How [`ensure`] decides that a cached child already matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// Every field we set has the same value in the cached copy ([`contains`]).
    Contents,
    /// The cached copy carries the [`APPLIED_HASH`] of the same desired state, and nobody else
    /// wrote it since ([`changed_by_others`]). For children whose cache keeps only metadata.
    Hash,
}

/// What happened to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It did not exist and was created.
    Created,
    /// It differed and was updated.
    Updated,
    /// It already matched: no API call was made.
    Unchanged,
    /// It was no longer wanted and was deleted.
    Deleted,
}

/// Whether every field set in `desired` has the same value in `live`. Maps may have extra keys
/// in `live` (defaults, other managers); lists must match element by element. Quantities are
/// compared by value where the server may have normalised them.
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => contains(lv, dv),
            None => {
                dv.is_null()
                    || dv.as_object().is_some_and(|o| o.is_empty())
                    || dv.as_array().is_some_and(|a| a.is_empty())
            }
        }),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| contains(lv, dv))
        }
        (Value::String(l), Value::String(d)) => l == d || same_quantity(l, d),
        (l, d) => l == d,
    }
}

fn same_quantity(a: &str, b: &str) -> bool {
    common::quantity::same(a, b) == Some(true)
}

/// Server-side applies `desired` unless the cached copy already matches it (by `compare`).
pub async fn ensure<K>(
    api: &Api<K>,
    store: &Store<K>,
    desired: &K,
    compare: Compare,
) -> kube::Result<Outcome>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let name = desired.name_any();
    let mut reference = ObjectRef::<K>::new(&name);
    if let Some(ns) = desired.namespace() {
        reference = reference.within(&ns);
    }
    let cached = store.get(&reference);
    let want = serde_json::to_value(desired).unwrap_or(Value::Null);
    let want_digest = digest(&want);
    let matches = |live: &K| match compare {
        Compare::Contents => serde_json::to_value(live).is_ok_and(|live| contains(&live, &want)),
        Compare::Hash => {
            let applied = live.annotations().get(APPLIED_HASH);
            applied == Some(&want_digest) && !changed_by_others(live)
        }
    };
    if cached.as_deref().is_some_and(matches) {
        return Ok(Outcome::Unchanged);
    }
    let key = key_of(desired);
    if recently_written(&key, &want_digest) {
        return Ok(Outcome::Unchanged);
    }
    let mut desired = desired.clone();
    if compare == Compare::Hash {
        let annotations = desired.annotations_mut();
        annotations.insert(APPLIED_HASH.into(), want_digest.clone());
        annotations.insert(
            APPLIED_AT.into(),
            k8s_openapi::jiff::Timestamp::now()
                .round(k8s_openapi::jiff::Unit::Millisecond)
                .map(|t| t.to_string())
                .unwrap_or_default(),
        );
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let written = api.patch(&name, &params, &Patch::Apply(&desired)).await?;
    remember(key, want_digest, written.resource_version());
    Ok(if cached.is_some() {
        Outcome::Updated
    } else {
        Outcome::Created
    })
}

/// Creates `desired` when the cache has no object of that name; never touches an existing one
/// (used for Secrets, whose passwords must never be replaced).
pub async fn create_if_absent<K>(
    api: &Api<K>,
    store: &Store<K>,
    desired: &K,
) -> kube::Result<Outcome>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let name = desired.name_any();
    let mut reference = ObjectRef::<K>::new(&name);
    if let Some(ns) = desired.namespace() {
        reference = reference.within(&ns);
    }
    let key = key_of(desired);
    if store.get(&reference).is_some() || recently_written(&key, "") {
        return Ok(Outcome::Unchanged);
    }
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&params, desired).await {
        Ok(created) => {
            remember(key, String::new(), created.resource_version());
            Ok(Outcome::Created)
        }
        // Created meanwhile (or before the cache saw it): keep the existing one and its password.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Outcome::Unchanged),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
    use serde_json::json;

    fn entry(manager: &str, operation: &str, subresource: &str, second: i64) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            subresource: (!subresource.is_empty()).then(|| subresource.into()),
            time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + second).unwrap(),
            )),
            ..Default::default()
        }
    }

    fn meta(entries: Vec<ManagedFieldsEntry>) -> ObjectMeta {
        ObjectMeta {
            managed_fields: Some(entries),
            ..Default::default()
        }
    }

    #[test]
    fn writes_by_others_after_our_apply_are_changes() {
        use std::cmp::Ordering::{Equal, Greater};
        let changed_by_others = |m: &ObjectMeta| written_by_others(m).is_some();
        let ours = entry(FIELD_MANAGER, "Apply", "", 10);
        // Only our apply, or status written by kube-controller-manager: unchanged.
        assert!(!changed_by_others(&meta(vec![ours.clone()])));
        assert!(!changed_by_others(&meta(vec![
            ours.clone(),
            entry("kube-controller-manager", "Update", "status", 20),
        ])));
        // Someone else wrote before our last apply (which overrode them): unchanged.
        assert!(!changed_by_others(&meta(vec![
            entry("kubectl-edit", "Update", "", 5),
            ours.clone(),
        ])));
        // `kubectl edit` or `kubectl scale` (the scale subresource) after it: changed.
        assert!(changed_by_others(&meta(vec![
            ours.clone(),
            entry("kubectl-edit", "Update", "", 11),
        ])));
        assert!(changed_by_others(&meta(vec![
            ours.clone(),
            entry("kubectl", "Update", "scale", 12),
        ])));
        // The same second cannot be ordered.
        assert_eq!(
            written_by_others(&meta(vec![
                ours.clone(),
                entry("kubectl-edit", "Update", "", 10),
            ])),
            Some(Equal)
        );
        assert_eq!(
            written_by_others(&meta(vec![
                ours.clone(),
                entry("kubectl-edit", "Update", "", 10),
                entry("kubectl", "Update", "scale", 11),
            ])),
            Some(Greater)
        );
        // Our own non-apply writes are not our apply.
        assert!(changed_by_others(&meta(vec![
            ours,
            entry(FIELD_MANAGER, "Update", "", 11),
        ])));
        // Never applied by us (created by someone else, or by Zalando's operator): changed.
        assert!(changed_by_others(&meta(vec![entry(
            "postgres-operator-zalando",
            "Update",
            "",
            1
        )])));
        assert!(changed_by_others(&ObjectMeta::default()));
    }

    #[test]
    fn the_digest_is_stable_and_tells_states_apart() {
        let a = json!({"spec": {"replicas": 2}});
        assert_eq!(digest(&a), digest(&json!({"spec": {"replicas": 2}})));
        assert_ne!(digest(&a), digest(&json!({"spec": {"replicas": 3}})));
        assert_eq!(digest(&a).len(), 24);
        // Fixed across builds and versions: an annotation written by one must match the next.
        assert_eq!(digest(&json!({})), "44136fa355b3678a1146ad16");
    }

    #[test]
    fn a_write_is_an_echo_once_and_suppresses_repeats_until_seen() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let object = |rv: &str| ConfigMap {
            metadata: ObjectMeta {
                name: Some("echo-test".into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let key = key_of(&object("1"));
        assert_eq!(is_our_last_write(&object("5")), None);
        remember(key.clone(), "a".into(), Some("5".into()));
        assert!(recently_written(&key, "a"));
        assert!(
            !recently_written(&key, "b"),
            "another desired state is written"
        );
        assert!(!is_echo(&object("4")), "an older state is not our write");
        assert!(recently_written(&key, "a"));
        assert!(is_echo(&object("5")));
        assert!(
            !recently_written(&key, "a"),
            "once the cache has our write, it decides alone"
        );
        assert_eq!(is_our_last_write(&object("5")), Some(true));
        assert!(!is_echo(&object("6")), "a later change by someone else");
        assert_eq!(is_our_last_write(&object("6")), Some(false));
    }

    #[test]
    fn containment() {
        let live = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}, "resourceVersion": "5"},
            "spec": {"replicas": 2, "template": {"containers": [{"name": "c", "image": "i", "terminationMessagePath": "/dev/x"}]},
                     "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}});
        assert!(contains(
            &live,
            &json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 2}})
        ));
        assert!(contains(
            &live,
            &json!({"spec": {"template": {"containers": [{"name": "c", "image": "i"}]}}})
        ));
        assert!(!contains(&live, &json!({"spec": {"replicas": 3}})));
        assert!(!contains(
            &live,
            &json!({"metadata": {"labels": {"z": "1"}}})
        ));
        assert!(!contains(
            &live,
            &json!({"spec": {"template": {"containers": [{"name": "c"}, {"name": "d"}]}}})
        ));
        // The API server normalises quantities.
        assert!(contains(
            &live,
            &json!({"spec": {"resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}}}})
        ));
        assert!(!contains(
            &live,
            &json!({"spec": {"resources": {"requests": {"cpu": "1"}}}})
        ));
        // Empty desired collections are satisfied by absence.
        assert!(contains(&live, &json!({"metadata": {"annotations": {}}})));
    }
}
