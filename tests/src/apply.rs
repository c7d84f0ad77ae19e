//! Server-side apply of YAML (one or more documents) through the Rust client.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};
use serde::Deserialize;

/// Applies every document of `yaml` (server-side apply, field manager `e2e`, forced).
/// Namespaced objects without a namespace go to `namespace` (or fail when it is `None`).
/// Returns the objects as stored by the apiserver.
pub async fn apply_yaml(
    client: &Client,
    namespace: Option<&str>,
    yaml: &str,
) -> Result<Vec<DynamicObject>> {
    let mut applied = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = serde_yaml::Value::deserialize(doc)
            .with_context(|| format!("YAML document {} does not parse", i + 1))?;
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_yaml::from_value(value)
            .with_context(|| format!("YAML document {} is not a Kubernetes object", i + 1))?;
        let types = obj
            .types
            .as_ref()
            .ok_or_else(|| anyhow!("YAML document {} has no apiVersion/kind", i + 1))?;
        let gvk = GroupVersionKind::try_from(types)
            .map_err(|e| anyhow!("YAML document {}: {e}", i + 1))?;
        let (ar, caps) = discovery::pinned_kind(client, &gvk)
            .await
            .with_context(|| format!("the apiserver does not serve {gvk:?}"))?;
        let name = obj.name_any();
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Cluster => Api::all_with(client.clone(), &ar),
            Scope::Namespaced => {
                let ns = obj
                    .metadata
                    .namespace
                    .as_deref()
                    .or(namespace)
                    .ok_or_else(|| {
                        anyhow!("{} {name} is namespaced but no namespace given", ar.kind)
                    })?;
                Api::namespaced_with(client.clone(), ns, &ar)
            }
        };
        let stored = api
            .patch(
                &name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&obj),
            )
            .await
            .with_context(|| format!("applying {} {name}", ar.kind))?;
        applied.push(stored);
    }
    Ok(applied)
}

/// [`apply_yaml`] on a file.
pub async fn apply_yaml_file(
    client: &Client,
    namespace: Option<&str>,
    path: &Path,
) -> Result<Vec<DynamicObject>> {
    let text = tokio::fs::read_to_string(path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    apply_yaml(client, namespace, &text)
        .await
        .with_context(|| format!("applying {}", path.display()))
}
