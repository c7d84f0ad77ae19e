//! One fresh namespace per test, deleted when the guard is dropped.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::cluster::Cluster;
use crate::paths;

/// Label carried by every namespace the tests create (to find leftovers).
pub const LABEL: &str = "pgop.e2e/test";

/// A namespace created for one test. Dropping it deletes the namespace (without waiting);
/// set `E2E_KEEP_NAMESPACES=1` to keep it for debugging.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    /// Creates `e2e-<prefix>-<unique>` and waits until its `default` service account exists
    /// (pods are rejected before that).
    pub async fn new(cluster: &Cluster, prefix: &str) -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let clean: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(30)
            .collect();
        let name = format!(
            "e2e-{}-{:x}{:x}{n}",
            clean.trim_matches('-'),
            std::process::id() & 0xffff,
            nanos & 0xfff
        );
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(LABEL.to_string(), clean.clone())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(cluster.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        let guard = TestNamespace { name };
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(cluster.client.clone(), &guard.name);
        crate::eventually(
            &format!("service account default in namespace {}", guard.name),
            || async { sa.get("default").await.map(|_| ()).map_err(Into::into) },
        )
        .await?;
        Ok(guard)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var("E2E_KEEP_NAMESPACES").is_ok_and(|v| v == "1") {
            eprintln!("e2e: keeping namespace {}", self.name);
            return;
        }
        // Synchronous on purpose: Drop cannot await, and the test's runtime may be shutting down.
        let _ = Command::new(&paths::tools().kubectl)
            .arg("--kubeconfig")
            .arg(paths::kubeconfig())
            .args([
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .output();
    }
}
