//! Bad requests get a clear 4xx or a denial, never a panic or a hang.

mod support;

use bytes::Bytes;
use common::config::Config;
use serde_json::json;
use std::time::{Duration, Instant};
use support::{minimal, review, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A bare TLS connection, to send hand-written (and deliberately broken) HTTP.
async fn raw_tls(
    hook: &support::Running,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = e2e::tls_client::tls_config(hook.ca_pem.as_bytes()).unwrap();
    let tcp = tokio::net::TcpStream::connect(hook.admission)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap()
}

async fn post(hook: &support::Running, path: &str, body: impl Into<Bytes>) -> (u16, String) {
    let (status, body) = hook.connect().await.post(path, body.into()).await.unwrap();
    (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn malformed_wrong_and_incomplete_reviews_get_400() {
    let hook = start(Config::default(), "").await;
    let (status, body) = post(&hook, "/validate", "{not json").await;
    assert_eq!(status, 400);
    assert!(
        body.starts_with("request body is not a valid admission.k8s.io/v1 AdmissionReview"),
        "{body}"
    );

    let mut wrong = review("CREATE", Some(&minimal()), None);
    wrong["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let (status, body) = post(&hook, "/validate", wrong.to_string()).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("expected apiVersion admission.k8s.io/v1 and kind AdmissionReview"),
        "{body}"
    );

    let mut kind = review("CREATE", Some(&minimal()), None);
    kind["kind"] = json!("ConversionReview");
    assert_eq!(post(&hook, "/mutate", kind.to_string()).await.0, 400);

    let missing = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    let (status, body) = post(&hook, "/validate", missing.to_string()).await;
    assert_eq!(
        (status, body.as_str()),
        (400, "AdmissionReview has no request")
    );

    assert_eq!(post(&hook, "/other", "{}").await.0, 404);
    assert_eq!(post(&hook, "/validate", "").await.0, 400);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let hook = start(Config::default(), "").await;
    let huge = vec![b' '; 3 * 1024 * 1024 + 1];
    let (status, body) = post(&hook, "/validate", huge).await;
    assert_eq!(status, 413);
    assert_eq!(body, "the request body exceeds the limit of 3145728 bytes");
}

#[tokio::test]
async fn a_stalling_client_is_cut_off() {
    let hook = start(Config::default(), "").await;
    let mut tls = raw_tls(&hook).await;
    // Promise 100 bytes, send 10, then go silent.
    tls.write_all(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"apiVersi")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_string(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server must not wait for the client forever"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(4));

    // A client that never finishes its headers is disconnected too.
    let mut tls = raw_tls(&hook).await;
    tls.write_all(b"POST /validate HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "a header stall must end the connection");
}

#[tokio::test]
async fn wrong_method_is_refused() {
    let hook = start(Config::default(), "").await;
    let mut tls = raw_tls(&hook).await;
    tls.write_all(b"GET /validate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
}
