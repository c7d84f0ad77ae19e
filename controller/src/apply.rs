//! Server-side apply under one field manager, skipped when the cached object already carries
//! everything we would write: that check is what makes a sync of an unchanged cluster free.

use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt::Debug;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "postgres-operator";

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
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let name = desired.name_any();
    let mut reference = ObjectRef::<K>::new(&name);
    if let Some(ns) = desired.namespace() {
        reference = reference.within(&ns);
    }
    let cached = store.get(&reference);
    if let Some(live) = &cached {
        let (live, want) = (
            serde_json::to_value(live.as_ref()),
            serde_json::to_value(desired),
        );
        if let (Ok(live), Ok(want)) = (live, want)
            && contains(&live, &want)
        {
            return Ok(Outcome::Unchanged);
        }
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(desired)).await?;
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
    if store.get(&reference).is_some() {
        return Ok(Outcome::Unchanged);
    }
    match api
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            desired,
        )
        .await
    {
        Ok(_) => Ok(Outcome::Created),
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
