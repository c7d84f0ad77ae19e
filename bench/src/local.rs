//! This checkout's local control plane (`make up`) as the benchmark programs reach it: the
//! repository, an API client with a long read timeout (a list of 1000 clusters on a loaded
//! machine is slow), and a controller's `/metrics` page.

use anyhow::{Context, Result};
use kube::{Client, Config};
use std::path::PathBuf;
use std::time::Duration;

/// The repository this program was built from.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The admin kubeconfig `scripts/up.sh` writes.
pub fn kubeconfig() -> PathBuf {
    repo().join(".local/kubeconfig")
}

/// A client of this checkout's control plane, reads timing out after 60 s.
pub async fn client() -> Result<Client> {
    let path = kubeconfig();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .with_context(|| format!("{} (run make up)", path.display()))?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    config.read_timeout = Some(Duration::from_secs(60));
    Ok(Client::try_from(config)?)
}

/// The whole HTTP response of `GET /metrics` on 127.0.0.1:`port` (a controller's admin port);
/// `None` when nothing answers or a read stalls for 5 s.
pub fn metrics_text(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}
