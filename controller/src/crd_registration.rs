//! Registers or updates the `postgresql` CRD at start (`enable_crd_registration`).

use crate::apply::FIELD_MANAGER;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use std::time::Duration;

/// Applies the CRD with `categories` and waits until it is Established.
pub async fn register(client: &Client, categories: &[String]) -> anyhow::Result<()> {
    let mut crd = common::crd::generate::postgresql();
    crd.spec.names.categories = Some(categories.to_vec());
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot register the CRD {name}: {e}"))?;
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(api, &name, conditions::is_crd_established()),
    )
    .await
    .map_err(|_| anyhow::anyhow!("CRD {name} was not established within 30s"))??;
    Ok(())
}
