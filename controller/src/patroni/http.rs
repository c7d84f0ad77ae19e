//! The real client: plain HTTP to `<member IP>:8008`, one timeout per call, answers read up to
//! a size limit, so a hung member never holds a reconcile for long.

use super::{Cluster, Error, PORT, Patroni, Status};
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;

/// How long a read or a configuration change may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a switchover or a restart may take: Patroni answers once it is done.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Patroni over HTTP.
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        Http {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

impl Http {
    /// One call; returns the body of a 2xx answer.
    async fn call(
        &self,
        address: &str,
        call: &'static str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Bytes, Error> {
        let (method, path) = call.split_once(' ').unwrap_or(("GET", call));
        let url = format!("http://{}:{PORT}{path}", host(address));
        let unreachable = |reason: String| Error::Unreachable {
            address: address.to_string(),
            call,
            reason,
        };
        let mut request = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::ACCEPT, "application/json");
        let payload = match body {
            Some(body) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|e| unreachable(format!("invalid request {url}: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {timeout:?}")))??;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let mut message = String::from_utf8_lossy(&body).trim().to_string();
        if message.len() > 300 {
            message.truncate(300);
            message.push('…');
        }
        Err(Error::Refused {
            address: address.to_string(),
            call,
            status,
            message,
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        address: &str,
        call: &'static str,
    ) -> Result<T, Error> {
        let body = self.call(address, call, None, TIMEOUT).await?;
        serde_json::from_slice(&body).map_err(|e| Error::Malformed {
            address: address.to_string(),
            call,
            reason: e.to_string(),
        })
    }
}

/// An IPv6 address goes in brackets.
fn host(address: &str) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Patroni for Http {
    fn cluster<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<Cluster, Error>> {
        Box::pin(self.json(address, "GET /cluster"))
    }

    fn status<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<Status, Error>> {
        Box::pin(self.json(address, "GET /patroni"))
    }

    fn config<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(self.json(address, "GET /config"))
    }

    fn patch_config<'a>(
        &'a self,
        address: &'a str,
        patch: &'a Value,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.call(address, "PATCH /config", Some(patch), TIMEOUT)
                .await
                .map(drop)
        })
    }

    fn restart<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let body = serde_json::json!({ "restart_pending": true });
            self.call(address, "POST /restart", Some(&body), ACTION_TIMEOUT)
                .await
                .map(drop)
        })
    }

    fn switchover<'a>(
        &'a self,
        address: &'a str,
        leader: &'a str,
        candidate: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let body = serde_json::json!({ "leader": leader, "candidate": candidate });
            self.call(address, "POST /switchover", Some(&body), ACTION_TIMEOUT)
                .await
                .map(drop)
        })
    }

    fn scheduled_switchover<'a>(
        &'a self,
        address: &'a str,
        leader: &'a str,
        candidate: &'a str,
        scheduled_at: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let body = serde_json::json!({
                "leader": leader, "candidate": candidate, "scheduled_at": scheduled_at
            });
            self.call(address, "POST /switchover", Some(&body), TIMEOUT)
                .await
                .map(drop)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_are_bracketed() {
        assert_eq!(host("127.10.0.5"), "127.10.0.5");
        assert_eq!(host("::1"), "[::1]");
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_not_a_panic() {
        // 127.0.0.1:8008 is assumed closed here; whatever answers, the call must not panic and
        // a failure must name the call.
        match Http::default().cluster("127.0.0.1").await {
            Ok(_) => {}
            Err(e) => assert!(e.to_string().contains("GET /cluster"), "{e}"),
        }
    }
}
