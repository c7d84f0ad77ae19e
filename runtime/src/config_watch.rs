//! Follows the configuration object so a change applies without a restart.

use common::config::{ConfigSource, Input, InvalidConfig, Loaded, load};
use common::crd::OperatorConfiguration;
use futures::{Stream, StreamExt, future};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::BTreeMap;

/// Every version of the configuration object, read and validated: `Ok` for a usable
/// configuration, `Err` for one that should not replace the current one. Transient watch errors
/// are retried with backoff and not reported. With [`ConfigSource::Defaults`] the stream yields
/// the defaults once and then never ends.
pub fn watch(
    client: kube::Client,
    source: ConfigSource,
) -> impl Stream<Item = Result<Loaded, InvalidConfig>> + Send {
    let (resource, namespace, name, is_configmap) = match source {
        ConfigSource::Defaults => {
            return futures::stream::once(future::ready(load(Input::Defaults)))
                .chain(futures::stream::pending())
                .boxed();
        }
        ConfigSource::ConfigMap { namespace, name } => {
            (ApiResource::erase::<ConfigMap>(&()), namespace, name, true)
        }
        ConfigSource::OperatorConfiguration { namespace, name } => (
            ApiResource::erase::<OperatorConfiguration>(&()),
            namespace,
            name,
            false,
        ),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watcher(api, config)
        .default_backoff()
        .applied_objects()
        .filter_map(move |object| {
            future::ready(match object {
                Ok(object) => Some(read(&object, is_configmap)),
                Err(error) => {
                    tracing::warn!(%error, "watching the operator configuration failed; retrying");
                    None
                }
            })
        })
        .boxed()
}

fn read(object: &DynamicObject, is_configmap: bool) -> Result<Loaded, InvalidConfig> {
    if is_configmap {
        let data: BTreeMap<String, String> = object
            .data
            .get("data")
            .and_then(|d| serde_json::from_value(d.clone()).ok())
            .unwrap_or_default();
        load(Input::ConfigMap(&data))
    } else {
        let value = serde_json::to_value(object).expect("objects serialize");
        load(Input::OperatorConfiguration(&value))
    }
}
