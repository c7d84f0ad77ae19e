//! The small HTTP pieces both binaries share: response helpers, a hardened connection builder and
//! the plain-HTTP admin server (`/healthz`, `/readyz`, `/metrics`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Response body type of every handler.
pub type Body = Full<Bytes>;

/// How long open connections get to finish after shutdown starts.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A response with a status, content type and body.
pub fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

/// A plain-text response.
pub fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    reply(status, "text/plain; charset=utf-8", message.into())
}

/// HTTP/1 and HTTP/2 with header and keep-alive timeouts, so a stalled client cannot hold a
/// connection forever.
pub fn builder(header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// What an admin server answers: liveness, readiness and metrics.
pub trait Admin: Send + Sync + 'static {
    /// `None` when ready, else why not.
    fn not_ready_reason(&self) -> Option<String>;
    /// The OpenMetrics exposition.
    fn metrics(&self) -> String;
}

/// Serves `/healthz` (always 200), `/readyz` (200 or 503 with the reason) and `/metrics` over
/// plain HTTP until `shutdown` completes, then drains open connections.
pub async fn serve_admin(
    listener: TcpListener,
    admin: Arc<dyn Admin>,
    shutdown: impl Future<Output = ()>,
) {
    let builder = builder(Duration::from_secs(10));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            () = &mut shutdown => break,
        };
        let (builder, admin) = (builder.clone(), admin.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(route_admin(admin.as_ref(), req.uri().path())) }
            });
            let _ = watcher
                .watch(
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned(),
                )
                .await;
        });
    }
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
}

fn route_admin(admin: &dyn Admin, path: &str) -> Response<Body> {
    match path {
        "/healthz" => text(StatusCode::OK, "ok"),
        "/readyz" => match admin.not_ready_reason() {
            None => text(StatusCode::OK, "ready"),
            Some(reason) => text(StatusCode::SERVICE_UNAVAILABLE, reason),
        },
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            admin.metrics(),
        ),
        other => text(StatusCode::NOT_FOUND, format!("no such endpoint {other}")),
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler succeeds");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Installs the log subscriber: JSON lines (`ENABLE_JSON_LOGGING=true`) or compact text, filtered
/// by `RUST_LOG` (default info).
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.compact().init();
    }
}
