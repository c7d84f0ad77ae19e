//! An in-process webhook on loopback with a fresh CA, and AdmissionReview builders.

#![allow(dead_code)]

use arc_swap::ArcSwap;
use bytes::Bytes;
use common::config::{Config, Loaded};
use e2e::tls_client::{Connection, tls_config};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::net::TcpListener;
use webhook::metrics::Metrics;
use webhook::state::State;
use webhook::tls::{ReloadingCert, server_config};

pub struct Running {
    pub admission: SocketAddr,
    pub admin: SocketAddr,
    pub state: Arc<State>,
    pub ca_pem: String,
    pub dir: PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn issue() -> certs::Issued {
    certs::issue(&certs::Request {
        service: "pg-webhook".into(),
        namespace: "test".into(),
        dns_names: vec![],
        ip_addresses: vec!["127.0.0.1".parse().unwrap()],
        days: 1,
    })
    .unwrap()
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let unique = format!(
        "pg-webhook-{tag}-{}-{:?}",
        std::process::id(),
        std::time::Instant::now()
    );
    let dir = std::env::temp_dir().join(unique.replace([' ', ':', '.'], "_"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts the webhook with `config` and a request timeout of one second.
pub async fn start(config: Config, controller_id: &str) -> Running {
    let dir = temp_dir("srv");
    let issued = issue();
    std::fs::write(dir.join("tls.crt"), &issued.tls_cert).unwrap();
    std::fs::write(dir.join("tls.key"), &issued.tls_key).unwrap();
    let certs = ReloadingCert::load(&dir.join("tls.crt"), &dir.join("tls.key")).unwrap();
    let state = Arc::new(State {
        config: ArcSwap::from_pointee(Loaded {
            config,
            warnings: vec![],
        }),
        config_loaded: AtomicBool::new(true),
        controller_id: controller_id.to_string(),
        certs: certs.clone(),
        metrics: Metrics::default(),
        client: None,
        max_body_bytes: 3 * 1024 * 1024,
        request_timeout: Duration::from_secs(1),
    });
    let admission = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (admission_addr, admin_addr) =
        (admission.local_addr().unwrap(), admin.local_addr().unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(webhook::server::serve_admission(
        admission,
        state.clone(),
        server_config(certs.clone()),
        stopped(rx.clone()),
    ));
    tokio::spawn(runtime::http::serve_admin(
        admin,
        state.clone(),
        stopped(rx),
    ));
    tokio::spawn(certs.watch(Duration::from_millis(100)));
    Running {
        admission: admission_addr,
        admin: admin_addr,
        state,
        ca_pem: issued.ca_cert,
        dir,
        stop,
    }
}

impl Running {
    pub async fn connect(&self) -> Connection {
        Connection::open(
            self.admission,
            tls_config(self.ca_pem.as_bytes()).unwrap(),
            "127.0.0.1",
        )
        .await
        .unwrap()
    }

    pub async fn review(&self, path: &str, review: &Value) -> Value {
        let (status, body) = self
            .connect()
            .await
            .post(path, Bytes::from(review.to_string()))
            .await
            .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice::<Value>(&body).unwrap()["response"].clone()
    }

    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.admin).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        let status = text[9..12].parse().unwrap();
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }
}

pub fn minimal() -> Value {
    json!({
        "apiVersion": "acid.zalan.do/v1",
        "kind": "postgresql",
        "metadata": {"name": "acid-minimal-cluster", "namespace": "default"},
        "spec": {
            "teamId": "acid",
            "numberOfInstances": 2,
            "postgresql": {"version": "17"},
            "volume": {"size": "1Gi"},
            "users": {"zalando": ["superuser", "createdb"], "foo_user": []},
            "databases": {"foo": "zalando"}
        }
    })
}

/// An AdmissionReview for a postgresql.
pub fn review(operation: &str, object: Option<&Value>, old: Option<&Value>) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "acid.zalan.do", "version": "v1", "kind": "postgresql"},
            "resource": {"group": "acid.zalan.do", "version": "v1", "resource": "postgresqls"},
            "name": "acid-minimal-cluster",
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    })
}

/// Applies a JSON patch from a response to `object`.
pub fn apply_patch(object: &Value, response: &Value) -> Value {
    use base64::Engine;
    let mut out = object.clone();
    // kube sends the bytes as a JSON array (Go decodes it element-wise); accept base64 too.
    let bytes: Option<Vec<u8>> = match &response["patch"] {
        Value::String(encoded) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap(),
        ),
        Value::Array(items) => Some(items.iter().map(|b| b.as_u64().unwrap() as u8).collect()),
        _ => None,
    };
    if let Some(bytes) = bytes {
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut out, &patch).unwrap();
    }
    out
}
