//! The Teams API client: `GET <teams_api_url>/teams/<team>` with the bearer token of
//! `oauth_token_secret_name`, whose `member` list names the team's people (Zalando's
//! `pkg/util/teams`).
//!
//! Behind the [`TeamsApi`] trait so the controller's logic is tested without a server. The HTTP
//! implementation has a timeout per request and a size limit per answer, so a slow or broken
//! API never holds a worker for long. [`Teams`] keeps each team's last good answer: a failed
//! lookup (other than 404) falls back to it, as Zalando keeps the previous team users. The token
//! never appears in a log, an Event or an error.

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How long one lookup may take, answer included.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Why a lookup gave no members.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// 404: the API does not know the team.
    #[error("the Teams API does not know the team")]
    NotFound,
    /// Anything else: unreachable, timed out, another status, an answer that does not parse.
    #[error("{0}")]
    Failed(String),
}

/// A Teams API.
pub trait TeamsApi: Send + Sync {
    /// The members of `team`, from the API at `url` with `token`.
    fn members<'a>(
        &'a self,
        url: &'a str,
        team: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, LookupError>>;
}

/// The part of Zalando's `Team` the operator reads.
#[derive(serde::Deserialize)]
struct Team {
    #[serde(default)]
    member: Vec<String>,
}

/// The request URL: the base without trailing slashes, `/teams/`, the team percent-encoded.
pub fn team_url(base: &str, team: &str) -> String {
    let mut encoded = String::new();
    for byte in team.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{}/teams/{encoded}", base.trim_end_matches('/'))
}

/// What an answer means: 200 with a team document, 404, or a failure naming the status and the
/// API's `error` message when it gives one.
pub fn interpret(status: u16, body: &[u8]) -> Result<Vec<String>, LookupError> {
    match status {
        200 => serde_json::from_slice::<Team>(body)
            .map(|t| t.member)
            .map_err(|e| LookupError::Failed(format!("the answer is not a team: {e}"))),
        404 => Err(LookupError::NotFound),
        _ => {
            let message = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("error").map(|e| e.to_string()));
            Err(LookupError::Failed(match message {
                Some(m) => format!("status {status}: {m}"),
                None => format!("status {status}"),
            }))
        }
    }
}

type PlainClient = Client<HttpConnector, Empty<Bytes>>;
type TlsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The HTTP(S) implementation (hyper, rustls with the system's roots). The TLS client is made
/// on first use of an `https://` URL: a machine without CA certificates fails those lookups
/// only, with a message saying so.
#[derive(Default)]
pub struct Http {
    plain: OnceLock<PlainClient>,
    tls: OnceLock<Result<TlsClient, String>>,
}

impl Http {
    fn plain(&self) -> &PlainClient {
        self.plain.get_or_init(|| {
            let mut connector = HttpConnector::new();
            connector.set_connect_timeout(Some(TIMEOUT));
            Client::builder(TokioExecutor::new()).build(connector)
        })
    }

    fn tls(&self) -> Result<&TlsClient, LookupError> {
        self.tls
            .get_or_init(|| {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_provider_and_native_roots(provider)
                    .map_err(|e| format!("no CA certificates to verify the Teams API: {e}"))?
                    .https_only()
                    .enable_http1()
                    .build();
                Ok(Client::builder(TokioExecutor::new()).build(connector))
            })
            .as_ref()
            .map_err(|e| LookupError::Failed(e.clone()))
    }

    async fn get(&self, url: &str, token: &str) -> Result<Vec<String>, LookupError> {
        let failed = |e: &dyn std::fmt::Display| LookupError::Failed(e.to_string());
        let request = http::Request::get(url)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| LookupError::Failed(format!("invalid teams_api_url {url:?}: {e}")))?;
        let response = if url.starts_with("https://") {
            self.tls()?.request(request).await
        } else if url.starts_with("http://") {
            self.plain().request(request).await
        } else {
            return Err(LookupError::Failed(format!(
                "teams_api_url {url:?} is neither http:// nor https://"
            )));
        }
        .map_err(|e| failed(&e))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| failed(&e))?
            .to_bytes();
        interpret(status, &body)
    }
}

impl TeamsApi for Http {
    fn members<'a>(
        &'a self,
        url: &'a str,
        team: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, LookupError>> {
        Box::pin(async move {
            let url = team_url(url, team);
            match tokio::time::timeout(TIMEOUT, self.get(&url, token)).await {
                Ok(result) => result,
                Err(_) => Err(LookupError::Failed(format!(
                    "no answer from {url} within {TIMEOUT:?}"
                ))),
            }
        })
    }
}

/// The client the controller uses, with the last good answer per (API, team).
pub struct Teams {
    api: Box<dyn TeamsApi>,
    last_good: Mutex<HashMap<(String, String), Vec<String>>>,
}

impl Default for Teams {
    fn default() -> Self {
        Teams::new(Box::new(Http::default()))
    }
}

impl Teams {
    /// A client over `api`.
    pub fn new(api: Box<dyn TeamsApi>) -> Self {
        Teams {
            api,
            last_good: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `team`: the members, 404, or a failure with the last good answer.
    pub async fn answer(
        &self,
        url: &str,
        team: &str,
        token: Result<&str, String>,
    ) -> common::database::teams::Answer {
        use common::database::teams::Answer;
        let key = (url.to_string(), team.to_string());
        let result = match token {
            Ok(token) => self.api.members(url, team, token).await,
            Err(problem) => Err(LookupError::Failed(problem)),
        };
        let mut last_good = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(members) => {
                last_good.insert(key, members.clone());
                Answer::Members(members)
            }
            Err(LookupError::NotFound) => {
                last_good.remove(&key);
                Answer::NotFound
            }
            Err(LookupError::Failed(error)) => Answer::Failed {
                error,
                last_good: last_good.get(&key).cloned(),
            },
        }
    }
}

/// The bearer token from the OAuth Secret's data, as Zalando reads it: `read-only-token-type`
/// must say `Bearer`, the token is `read-only-token-secret`.
pub fn token(
    data: Option<&common::database::infrastructure::Data>,
    secret: &str,
) -> Result<String, String> {
    let Some(data) = data else {
        return Err(format!(
            "the Secret {secret} (oauth_token_secret_name) with the Teams API token does not exist or was not read yet"
        ));
    };
    let kind = data.get("read-only-token-type").map(String::as_str);
    if kind != Some("Bearer") {
        return Err(format!(
            "the Secret {secret} (oauth_token_secret_name): read-only-token-type must be \"Bearer\", not {kind:?}"
        ));
    }
    match data.get("read-only-token-secret") {
        Some(token) if !token.is_empty() => Ok(token.clone()),
        _ => Err(format!(
            "the Secret {secret} (oauth_token_secret_name) has no read-only-token-secret"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::database::teams::Answer;

    #[test]
    fn urls_and_answers() {
        assert_eq!(
            team_url("http://127.0.0.1:1/api/", "acid"),
            "http://127.0.0.1:1/api/teams/acid"
        );
        assert_eq!(
            team_url("http://h/api", "a b/c"),
            "http://h/api/teams/a%20b%2Fc"
        );
        assert_eq!(
            interpret(200, br#"{"id": "acid", "member": ["alice", "bob"]}"#),
            Ok(vec!["alice".to_string(), "bob".to_string()])
        );
        assert_eq!(interpret(200, b"{}"), Ok(vec![]));
        assert_eq!(interpret(404, b""), Err(LookupError::NotFound));
        assert_eq!(
            interpret(500, br#"{"error": "boom"}"#),
            Err(LookupError::Failed("status 500: \"boom\"".into()))
        );
        assert!(matches!(
            interpret(200, b"<html>"),
            Err(LookupError::Failed(_))
        ));
    }

    #[test]
    fn the_token_needs_the_bearer_type() {
        let data = |pairs: &[(&str, &str)]| -> common::database::infrastructure::Data {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let good = data(&[
            ("read-only-token-type", "Bearer"),
            ("read-only-token-secret", "t"),
        ]);
        assert_eq!(token(Some(&good), "ns/s"), Ok("t".into()));
        let wrong = data(&[
            ("read-only-token-type", "Basic"),
            ("read-only-token-secret", "t"),
        ]);
        let error = token(Some(&wrong), "ns/s").unwrap_err();
        assert!(
            error.contains("Bearer") && !error.contains("\"t\""),
            "{error}"
        );
        assert!(token(None, "ns/s").unwrap_err().contains("ns/s"));
    }

    /// A one-request-per-connection HTTP server on 127.0.0.1 answering `/api/teams/<team>`:
    /// `acid` with members when the bearer token is right, `gone` with 404, anything else 500.
    async fn server() -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).to_lowercase();
                let authorized = text.contains("authorization: bearer t0ken");
                let (status, body) = if text.starts_with("get /api/teams/acid ") && authorized {
                    ("200 OK", r#"{"member": ["alice"]}"#)
                } else if text.starts_with("get /api/teams/gone ") {
                    ("404 Not Found", r#"{"error": "no team"}"#)
                } else {
                    ("500 Internal Server Error", r#"{"error": "boom"}"#)
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn the_http_client_asks_with_the_token() {
        let port = server().await;
        let url = format!("http://127.0.0.1:{port}/api/");
        let api = Http::default();
        assert_eq!(
            api.members(&url, "acid", "t0ken").await,
            Ok(vec!["alice".into()])
        );
        assert_eq!(
            api.members(&url, "gone", "t0ken").await,
            Err(LookupError::NotFound)
        );
        assert_eq!(
            api.members(&url, "acid", "wrong").await,
            Err(LookupError::Failed("status 500: \"boom\"".into()))
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = format!("http://127.0.0.1:{}/", closed.local_addr().unwrap().port());
        drop(closed);
        assert!(matches!(
            api.members(&refused, "acid", "t").await,
            Err(LookupError::Failed(_))
        ));
        let odd = api.members("ftp://127.0.0.1/", "acid", "t").await;
        assert!(matches!(odd, Err(LookupError::Failed(m)) if m.contains("neither http")));
    }

    /// Answers from a script: each call takes the next result.
    struct Scripted(Mutex<Vec<Result<Vec<String>, LookupError>>>);

    impl TeamsApi for Scripted {
        fn members<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Vec<String>, LookupError>> {
            let next = self.0.lock().unwrap().remove(0);
            Box::pin(async move { next })
        }
    }

    #[tokio::test]
    async fn a_failure_falls_back_to_the_last_good_answer() {
        let teams = Teams::new(Box::new(Scripted(Mutex::new(vec![
            Err(LookupError::Failed("down".into())),
            Ok(vec!["alice".into()]),
            Err(LookupError::Failed("down".into())),
            Err(LookupError::NotFound),
            Err(LookupError::Failed("down".into())),
        ]))));
        let ask = || teams.answer("http://127.0.0.1:9/", "acid", Ok("t"));
        let down = |last_good: Option<Vec<String>>| Answer::Failed {
            error: "down".into(),
            last_good,
        };
        assert_eq!(ask().await, down(None));
        assert_eq!(ask().await, Answer::Members(vec!["alice".into()]));
        assert_eq!(ask().await, down(Some(vec!["alice".into()])));
        assert_eq!(ask().await, Answer::NotFound);
        assert_eq!(ask().await, down(None));
        let no_token = teams.answer("u", "acid", Err("no Secret".into())).await;
        assert!(matches!(no_token, Answer::Failed { error, .. } if error == "no Secret"));
    }
}
