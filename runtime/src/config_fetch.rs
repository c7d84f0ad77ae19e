//! Fetches the configuration the environment selects, for both binaries.

use common::config::{ConfigSource, Input, InvalidConfig, Loaded, load};
use common::crd::OperatorConfiguration;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::{Client, Resource};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The object named by the environment could not be read.
    #[error("cannot read {what}: {source}")]
    Api {
        /// The object, e.g. `ConfigMap default/postgres-operator`.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The object was read but is not a valid configuration.
    #[error(transparent)]
    Invalid(#[from] InvalidConfig),
}

/// Reads and validates the configuration from `source`.
pub async fn fetch(client: &Client, source: &ConfigSource) -> Result<Loaded, FetchError> {
    match source {
        ConfigSource::Defaults => Ok(load(Input::Defaults)?),
        ConfigSource::ConfigMap { namespace, name } => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            let cm = api.get(name).await.map_err(|source| FetchError::Api {
                what: format!("ConfigMap {namespace}/{name}"),
                source,
            })?;
            let data = cm.data.unwrap_or_default();
            Ok(load(Input::ConfigMap(&data))?)
        }
        ConfigSource::OperatorConfiguration { namespace, name } => {
            // Read untyped: omitted options have a meaning of their own (see load()).
            let resource = ApiResource::erase::<OperatorConfiguration>(&());
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &resource);
            let object = api.get(name).await.map_err(|source| FetchError::Api {
                what: format!("{} {namespace}/{name}", OperatorConfiguration::kind(&())),
                source,
            })?;
            let value = serde_json::to_value(&object).expect("objects serialize");
            Ok(load(Input::OperatorConfiguration(&value))?)
        }
    }
}
