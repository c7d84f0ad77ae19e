//! The HTTPS admission server and the plain-HTTP admin server.

use crate::review::{self, Endpoint, Inputs};
use crate::state::State;
use common::crd::Postgresql;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use kube::Api;
use runtime::http::{Body, DRAIN_TIMEOUT, builder, reply, text};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Time a client gets to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the clone-source lookup may take; the API server gives the whole call at most 5 s.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(1500);

/// Serves `/mutate` and `/validate` over TLS until `shutdown` completes, then drains.
pub async fn serve_admission(
    listener: TcpListener,
    state: Arc<State>,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let builder = builder(state.request_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, builder, state) = (acceptor.clone(), builder.clone(), state.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route_admission(&state, req).await) }
            });
            let connection = builder
                .serve_connection(TokioIo::new(tls), service)
                .into_owned();
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout");
    }
}

async fn route_admission(state: &State, req: Request<Incoming>) -> Response<Body> {
    let endpoint = match req.uri().path() {
        "/mutate" => Endpoint::Mutate,
        "/validate" => Endpoint::Validate,
        other => {
            return text(
                StatusCode::NOT_FOUND,
                format!("no such endpoint {other}; use /mutate or /validate"),
            );
        }
    };
    if req.method() != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "admission reviews are sent with POST",
        );
    }
    let started = Instant::now();
    let limited = Limited::new(req.into_body(), state.max_body_bytes);
    let body = match tokio::time::timeout(state.request_timeout, limited.collect()).await {
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            );
        }
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body exceeds the limit of {} bytes",
                    state.max_body_bytes
                ),
            );
        }
        Ok(Err(error)) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {error}"),
            );
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let parsed = match review::parse(&body) {
        Ok(parsed) => parsed,
        Err(bad) => {
            let labels = crate::metrics::ReviewLabels {
                operation: "invalid".into(),
                rule: "none".into(),
                outcome: "error".into(),
            };
            state.metrics.observe(labels, started.elapsed());
            return text(StatusCode::BAD_REQUEST, bad.to_string());
        }
    };
    let clone_version = match (endpoint, review::clone_source(&parsed)) {
        (Endpoint::Validate, Some((namespace, name))) => {
            lookup_version(state, &namespace, &name).await
        }
        _ => None,
    };
    let loaded = state.config.load();
    let today = common::rules::delete_protection::today_utc();
    let inputs = Inputs {
        config: &loaded.config,
        controller_id: &state.controller_id,
        today: &today,
        clone_source_version: clone_version.as_deref(),
    };
    let (response, labels) = review::decide(endpoint, &parsed, &inputs);
    let body = response.encode();
    state.metrics.observe(labels, started.elapsed());
    reply(StatusCode::OK, "application/json", body)
}

async fn lookup_version(state: &State, namespace: &str, name: &str) -> Option<String> {
    let client = state.client.clone()?;
    let api: Api<Postgresql> = Api::namespaced(client, namespace);
    match tokio::time::timeout(LOOKUP_TIMEOUT, api.get_opt(name)).await {
        Ok(Ok(Some(source))) => Some(source.spec.postgresql.version),
        Ok(Ok(None)) => None,
        Ok(Err(error)) => {
            tracing::warn!(%error, namespace, name, "cannot look up the clone source");
            None
        }
        Err(_) => {
            tracing::warn!(namespace, name, "looking up the clone source timed out");
            None
        }
    }
}
