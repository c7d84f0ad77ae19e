//! Server-side apply under one field manager, skipped when the cached object already carries
//! everything we would write: that check is what makes a sync of an unchanged cluster free.

use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "postgres-operator";

/// How long a write is remembered while the cache catches up with it.
const RECENT: Duration = Duration::from_secs(2);

/// Writes made in the last [`RECENT`], by object and desired state. Creating a child triggers
/// another reconcile of its cluster before the caches have seen every write of the first one;
/// without this memory that reconcile would repeat the writes.
static RECENT_WRITES: LazyLock<Mutex<HashMap<String, (u64, Instant)>>> =
    LazyLock::new(Default::default);

fn fingerprint(value: &Value) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    value.to_string().hash(&mut hasher);
    hasher.finish()
}

/// Whether the same desired state of `key` was written moments ago.
fn recently_written(key: &str, fingerprint: u64) -> bool {
    let mut recent = RECENT_WRITES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    recent.retain(|_, (_, at)| at.elapsed() < RECENT);
    recent.get(key).is_some_and(|(f, _)| *f == fingerprint)
}

fn remember(key: String, fingerprint: u64) {
    let mut recent = RECENT_WRITES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    recent.insert(key, (fingerprint, Instant::now()));
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

/// What happened to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It did not exist and was created.
    Created,
    /// It differed and was updated.
    Updated,
    /// It already matched: no API call was made.
    Unchanged,
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
    let parse = |s: &str| common::quantity::bytes(s).or_else(|| common::quantity::cpu_cores(s));
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(1.0),
        _ => false,
    }
}

/// Server-side applies `desired` unless the cached copy already contains it.
pub async fn ensure<K>(api: &Api<K>, store: &Store<K>, desired: &K) -> kube::Result<Outcome>
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
    if let Some(live) = &cached
        && let Ok(live) = serde_json::to_value(live.as_ref())
        && contains(&live, &want)
    {
        return Ok(Outcome::Unchanged);
    }
    let (key, print) = (key_of(desired), fingerprint(&want));
    if recently_written(&key, print) {
        return Ok(Outcome::Unchanged);
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(desired)).await?;
    remember(key, print);
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
    if store.get(&reference).is_some() || recently_written(&key, 0) {
        return Ok(Outcome::Unchanged);
    }
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&params, desired).await {
        Ok(_) => {
            remember(key, 0);
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
    use serde_json::json;

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
