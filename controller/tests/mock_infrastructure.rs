//! The cluster Secrets of infrastructure roles against the mock API (see `mock_api.rs`): the
//! definition's password is the source of truth, so a missing Secret is created with it, a
//! Secret holding another password is patched, and one that holds it costs no API call.

mod support;

use common::config::Config;
use common::crd::Postgresql;
use controller::referenced::{Lookup, Reference};
use http::{Method, StatusCode};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};
use std::sync::Arc;
use support::{Cached, Call, Calls, context, mock_api, server};

const ROBOT_SECRET: &str = "robot-zmon.acid-minimal-cluster.credentials.postgresql.acid.zalan.do";

fn config() -> Config {
    let mut config = Config::default();
    config.kubernetes.infrastructure_roles_secret_name = "ops/infra".into();
    config
}

/// A reconcile of an unchanged running cluster whose infrastructure Secret `ops/infra` holds
/// `robot_zmon` with `password`, and whose caches also hold `extra`.
async fn run(ns: &str, password: &str, extra: Vec<Cached>) -> Calls {
    let pg: Postgresql = support::running_cluster(ns);
    let config = config();
    let mut cached = support::written_children(&config, &pg);
    cached.extend(extra);
    let mut inner = server(&pg);
    let respond = move |call: &Call| {
        if call.method == Method::PATCH && call.path.contains("/secrets/") {
            let name = call.path.rsplit('/').next().unwrap_or_default().to_string();
            let secret = json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name, "namespace": "x", "resourceVersion": "2000"},
                "data": call.body()["data"].clone()});
            return (StatusCode::OK, secret);
        }
        inner(call)
    };
    let (client, api) = mock_api(respond);
    let ctx = context(client, config, cached);
    let data = [("user1", "robot_zmon"), ("password1", password)]
        .map(|(k, v)| (k.to_string(), v.to_string()));
    ctx.roles.referenced.set(
        &Reference::Secret("ops".into(), "infra".into()),
        Lookup::Present(data.into()),
    );
    let result = support::reconcile_bounded(Arc::new(pg), ctx.clone()).await;
    assert!(result.is_ok(), "{result:?}");
    drop(ctx);
    api.calls().await
}

fn robot_secret(ns: &str, password: &str) -> Cached {
    let pg = support::running_cluster(ns);
    let mut secret: Secret =
        controller::database::infra_secrets::secret(&config(), &pg, "robot_zmon", password, None);
    secret.metadata.resource_version = Some("700".into());
    Cached::Secret(secret)
}

fn decoded(value: &Value) -> String {
    let bytes: ByteString = serde_json::from_value(value.clone()).expect("base64");
    String::from_utf8(bytes.0).expect("UTF-8")
}

#[tokio::test]
async fn a_missing_infrastructure_secret_is_created_with_the_definitions_password() {
    let ns = "mock-infra-missing";
    let calls = run(ns, "from-definition", Vec::new()).await;
    assert_eq!(
        calls.lines(),
        [format!("POST /api/v1/namespaces/{ns}/secrets")]
    );
    let body = calls.api[0].body();
    assert_eq!(body["metadata"]["name"], ROBOT_SECRET);
    assert_eq!(decoded(&body["data"]["username"]), "robot_zmon");
    assert_eq!(decoded(&body["data"]["password"]), "from-definition");
}

#[tokio::test]
async fn a_secret_with_another_password_is_patched() {
    let ns = "mock-infra-changed";
    let calls = run(ns, "new", vec![robot_secret(ns, "old")]).await;
    assert_eq!(
        calls.lines(),
        [format!(
            "PATCH /api/v1/namespaces/{ns}/secrets/{ROBOT_SECRET}"
        )]
    );
    assert!(calls.api[0].is_merge_patch());
    let body = calls.api[0].body();
    assert_eq!(decoded(&body["data"]["password"]), "new");
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "only data is patched"
    );
}

#[tokio::test]
async fn a_secret_that_holds_the_password_costs_nothing() {
    let ns = "mock-infra-same";
    let calls = run(ns, "same", vec![robot_secret(ns, "same")]).await;
    assert_eq!(calls.lines(), Vec::<String>::new());
}
