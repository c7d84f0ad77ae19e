//! Reading an object's status conditions (a `postgresql`'s or a pod's) the same way everywhere.

use serde_json::Value;

/// The condition of type `kind` in `object["status"]["conditions"]`; `Null` when there is none
/// (so `condition(..)["status"] != "True"` reads as "not yet").
pub fn condition(object: &Value, kind: &str) -> Value {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .cloned()
        .unwrap_or_default()
}
