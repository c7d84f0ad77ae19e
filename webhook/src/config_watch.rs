//! Applies every new valid configuration to the running webhook.

use crate::state::State;
use common::config::ConfigSource;
use futures::StreamExt;
use runtime::config_watch::watch;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Runs until the stream ends (it does not): a valid configuration replaces the current one at
/// once; an invalid one is logged with every problem and the previous one stays in force.
pub async fn follow(client: kube::Client, source: ConfigSource, state: Arc<State>) {
    let mut updates = watch(client, source);
    while let Some(update) = updates.next().await {
        match update {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    tracing::warn!(option = %warning.key, "{warning}");
                }
                state.config.store(Arc::new(loaded));
                if !state.config_loaded.swap(true, Ordering::AcqRel) {
                    tracing::info!("operator configuration loaded");
                } else {
                    tracing::info!("operator configuration changed and applied");
                }
            }
            Err(invalid) => tracing::error!("{invalid}; keeping the previous configuration"),
        }
    }
}
