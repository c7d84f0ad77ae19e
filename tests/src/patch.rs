//! Changing objects the way a user does, with `kubectl apply` and JSON merge patches: a
//! manifest applied from a string, a `postgresql` patched, keys of the operator's ConfigMap
//! set. One spelling for every test, so that each test reads as what it changes.

use anyhow::Result;
use serde_json::{Map, Value};

use crate::command::{kubectl, kubectl_with_stdin};

/// The operator's ConfigMap in a test namespace (see [`crate::patroni::setup`]).
pub const OPERATOR_CONFIG_MAP: &str = "postgres-operator";

/// `kubectl apply -n ns -f -` of `yaml`; fails with kubectl's output when it refuses.
pub async fn kubectl_apply(ns: &str, yaml: &str) -> Result<()> {
    kubectl_with_stdin(["apply", "-n", ns, "-f", "-"], yaml)
        .await?
        .ok()?;
    Ok(())
}

/// `kubectl patch <resource> <name> -n ns --type=merge -p <patch>` (RFC 7386: `null` removes a
/// key); fails with kubectl's output when it is refused.
pub async fn merge_patch(ns: &str, resource: &str, name: &str, patch: &Value) -> Result<()> {
    kubectl([
        "patch",
        resource,
        name,
        "-n",
        ns,
        "--type=merge",
        "-p",
        &patch.to_string(),
    ])
    .await?
    .ok()?;
    Ok(())
}

/// A merge patch of the `postgresql` `cluster`, e.g. `json!({"spec": {"numberOfInstances": 3}})`.
pub async fn patch_postgresql(ns: &str, cluster: &str, patch: &Value) -> Result<()> {
    merge_patch(ns, "postgresql", cluster, patch).await
}

/// Sets `keys` (name, value) in the operator's ConfigMap of `ns`; the other keys stay.
pub async fn set_operator_config(ns: &str, keys: &[(&str, &str)]) -> Result<()> {
    let data: Map<String, Value> = keys
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    let patch = serde_json::json!({ "data": data });
    merge_patch(ns, "configmap", OPERATOR_CONFIG_MAP, &patch).await
}
