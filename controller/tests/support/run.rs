//! One reconcile against the mock API server, as every mock test runs it: bounded in time (a
//! hung reconcile fails the test instead of hanging it), the Context dropped before the calls
//! are read (see [`super::MockApi::calls`]), and the Events it sent read back as text.

use super::{Cached, Call, Calls, Reply, WAIT, context, mock_api};
use common::config::Config;
use common::crd::Postgresql;
use controller::context::Context;
use controller::reconcile::{Error, reconcile};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use std::sync::Arc;

/// The running minimal cluster in `namespace`, the default configuration, and every child as a
/// reconcile with that configuration left it: where most scenarios start.
pub fn running(namespace: &str) -> (Postgresql, Config, Vec<Cached>) {
    let pg = super::running_cluster(namespace);
    let config = Config::default();
    let cached = super::written_children(&config, &pg);
    (pg, config, cached)
}

/// The running minimal cluster in `namespace` being deleted (a deletion timestamp and the
/// controller's finalizer), and the default configuration with `enable_finalizers` on.
pub fn deleted(namespace: &str) -> (Postgresql, Config) {
    let mut pg = super::running_cluster(namespace);
    pg.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    pg.metadata.finalizers = Some(vec![controller::deletion::FINALIZER.into()]);
    let mut config = Config::default();
    config.kubernetes.enable_finalizers = true;
    (pg, config)
}

/// One reconcile of `pg` over `ctx`; panics when it takes longer than the mock server waits.
pub async fn reconcile_bounded(pg: Arc<Postgresql>, ctx: Arc<Context>) -> Result<Action, Error> {
    tokio::time::timeout(WAIT, reconcile(pg, ctx))
        .await
        .expect("the reconcile finishes")
}

/// Runs one reconcile of `pg` against a mock server answering with `respond`, with `config` and
/// caches holding `cached`; returns its result and every call, once all of them are sent.
pub async fn run<F>(
    pg: Postgresql,
    config: Config,
    cached: Vec<Cached>,
    respond: F,
) -> (Result<Action, Error>, Calls)
where
    F: FnMut(&Call) -> Reply + Send + 'static,
{
    let (client, api) = mock_api(respond);
    let ctx = context(client, config, cached);
    let result = reconcile_bounded(Arc::new(pg), ctx.clone()).await;
    drop(ctx);
    (result, api.calls().await)
}

/// One Event the reconcile sent, as `events.k8s.io/v1` carries it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    /// `Normal` or `Warning`.
    pub type_: String,
    pub reason: String,
    pub note: String,
}

impl Calls {
    /// The Events sent, in the order the server received them ("" for a missing field).
    pub fn sent_events(&self) -> Vec<Sent> {
        self.events
            .iter()
            .map(|e| {
                let body = e.body();
                let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
                Sent {
                    type_: text("type"),
                    reason: text("reason"),
                    note: text("note"),
                }
            })
            .collect()
    }
}

impl Calls {
    /// The first Event sent with `reason`, after asserting that it is of `type_` and that its
    /// note starts with `prefix`.
    pub fn expect_event(&self, type_: &str, reason: &str, prefix: &str) -> Sent {
        let event = self
            .sent_events()
            .into_iter()
            .find(|e| e.reason == reason)
            .unwrap_or_else(|| panic!("a {reason} Event: {:#?}", self.events));
        assert_eq!(event.type_, type_, "{event:?}");
        assert!(event.note.starts_with(prefix), "{}", event.note);
        event
    }
}
