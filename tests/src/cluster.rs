//! The local control plane: start it (or reuse a running one) and connect to it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::paths;

/// A connection to the local control plane as the admin user (`system:masters`).
///
/// Create one per test: a `kube::Client` belongs to the tokio runtime it was made in, and each
/// `#[tokio::test]` has its own runtime.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub kubeconfig: PathBuf,
}

/// Makes sure the control plane is up (once per test process), then connects to it.
pub async fn cluster() -> Result<Cluster> {
    ensure_up()?;
    let kubeconfig = paths::kubeconfig();
    let client = client_from(&kubeconfig, None).await?;
    Ok(Cluster { client, kubeconfig })
}

/// A client from `kubeconfig`; with `token`, the client authenticates with that bearer token
/// instead of the kubeconfig's client certificate (to act as a service account).
pub async fn client_from(kubeconfig: &std::path::Path, token: Option<&str>) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .context("building client configuration from the kubeconfig")?;
    if let Some(token) = token {
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.to_string().into()),
            ..Default::default()
        };
    }
    Client::try_from(config).context("creating kube client")
}

/// Whether the apiserver answers `/readyz` with the admin credentials.
pub fn is_ready() -> bool {
    let kubeconfig = paths::kubeconfig();
    let kubectl = &paths::tools().kubectl;
    if !kubeconfig.exists() || !kubectl.exists() {
        return false;
    }
    Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "--raw", "/readyz", "--request-timeout=5s"])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "ok")
        .unwrap_or(false)
}

/// Runs `scripts/up.sh` unless the control plane is already ready; once per process.
/// `up.sh` takes a lock, so parallel test binaries do not start two control planes.
pub fn ensure_up() -> Result<()> {
    static UP: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    UP.get_or_init(|| {
        if is_ready() {
            return Ok(());
        }
        let up = paths::script("up.sh");
        eprintln!("e2e: control plane not ready; running {}", up.display());
        let status = Command::new(&up)
            .stdout(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::inherit())
            .status()
            .map_err(|e| format!("cannot run {}: {e}", up.display()))?;
        if !status.success() {
            return Err(format!(
                "{} failed with {status}; see {}",
                up.display(),
                paths::local_dir().join("logs").display()
            ));
        }
        if !is_ready() {
            return Err("up.sh finished but /readyz still fails".into());
        }
        Ok(())
    })
    .clone()
    .map_err(|e| anyhow!(e))
}
