//! Installing the operator's CustomResourceDefinitions from `crds/*.yaml`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client, ResourceExt};

use crate::{apply_yaml_file, eventually, paths};

/// The `*.yaml` files in `crds/`, sorted (empty when there are none yet).
pub fn crd_files() -> Result<Vec<PathBuf>> {
    let dir = paths::repo_root().join("crds");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Applies every CRD in `crds/` (server-side) and waits until each is Established.
/// Returns the CRD names; an empty list means `crds/` holds no YAML yet.
pub async fn install_crds(client: &Client) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for file in crd_files()? {
        for obj in apply_yaml_file(client, None, &file).await? {
            let kind = obj.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("");
            if kind != "CustomResourceDefinition" {
                bail!("{} holds a {kind}, not only CRDs", file.display());
            }
            names.push(obj.name_any());
        }
    }
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in &names {
        eventually(&format!("CRD {name} to be Established"), || async {
            let crd = api.get(name).await?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                Ok(())
            } else {
                bail!("not Established yet")
            }
        })
        .await?;
    }
    Ok(names)
}
