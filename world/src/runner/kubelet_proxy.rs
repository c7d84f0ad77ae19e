//! Every kwok node's kubelet endpoint, forwarded to kwok's one server.
//!
//! The API server reaches a node's kubelet (for `kubectl logs`, `exec`) at the node's
//! `InternalIP` and `status.daemonEndpoints.kubeletEndpoint.Port`. Each kwok node has its own
//! loopback address, but kwok serves all of them from one listen address (`--server-address`,
//! the first node's address in `scripts/up.sh`). Listening on all interfaces instead would expose
//! kwok's exec, which runs commands as any user, beyond this machine; so the runner listens on
//! the other nodes' addresses (loopback only) and forwards the connections, bytes unchanged (TLS
//! is end to end between the API server and kwok).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ListParams};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The annotation `scripts/up.sh` gives the nodes kwok manages.
const KWOK_NODE: (&str, &str) = ("kwok.x-k8s.io/node", "fake");

/// How often the node list is read again (nodes come and go rarely here).
const RESYNC: Duration = Duration::from_secs(15);

/// The kubelet endpoints of `nodes` to forward to `server`: kwok nodes with a loopback
/// `InternalIP`, at their advertised port (the server's when none is advertised yet), except
/// the server's own address.
pub fn endpoints(nodes: &[Node], server: SocketAddr) -> BTreeSet<SocketAddr> {
    nodes
        .iter()
        .filter(|n| {
            n.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(KWOK_NODE.0))
                .is_some_and(|v| v == KWOK_NODE.1)
        })
        .filter_map(|n| {
            let status = n.status.as_ref()?;
            let ip = status
                .addresses
                .iter()
                .flatten()
                .filter(|a| a.type_ == "InternalIP")
                .find_map(|a| a.address.parse::<IpAddr>().ok())
                .filter(|ip| ip.is_loopback())?;
            let port = status
                .daemon_endpoints
                .as_ref()
                .and_then(|d| d.kubelet_endpoint.as_ref())
                .and_then(|e| u16::try_from(e.port).ok())
                .filter(|p| *p != 0)
                .unwrap_or(server.port());
            Some(SocketAddr::new(ip, port))
        })
        .filter(|address| *address != server)
        .collect()
}

async fn forward(address: SocketAddr, server: SocketAddr) {
    let listener = loop {
        match TcpListener::bind(address).await {
            Ok(listener) => break listener,
            Err(e) => {
                tracing::warn!(%address, error = %e, "cannot listen for a node's kubelet; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    tracing::info!(%address, %server, "forwarding a kwok node's kubelet endpoint");
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let connect = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(server));
            match connect.await {
                Ok(Ok(mut upstream)) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                _ => tracing::warn!(%address, %server, "kwok's server did not accept"),
            }
        });
    }
}

/// Forwards every kwok node's kubelet endpoint to `server` until the runner stops; `server`
/// must be a loopback address (anything else is refused).
pub async fn serve(client: Client, server: SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(
        server.ip().is_loopback(),
        "--kubelet-server {server}: only loopback addresses are dialled"
    );
    let nodes: Api<Node> = Api::all(client);
    let mut listeners: HashMap<SocketAddr, JoinHandle<()>> = HashMap::new();
    loop {
        match nodes.list(&ListParams::default()).await {
            Ok(list) => {
                let wanted = endpoints(&list.items, server);
                listeners.retain(|address, task| {
                    let keep = wanted.contains(address);
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                for address in wanted {
                    listeners
                        .entry(address)
                        .or_insert_with(|| tokio::spawn(forward(address, server)));
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing nodes failed; retrying"),
        }
        tokio::time::sleep(RESYNC).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ip: &str, port: Option<i32>, kwok: bool) -> Node {
        let annotations = if kwok {
            json!({"kwok.x-k8s.io/node": "fake"})
        } else {
            json!({})
        };
        let mut status = json!({"addresses": [
            {"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]});
        if let Some(port) = port {
            status["daemonEndpoints"] = json!({"kubeletEndpoint": {"Port": port}});
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn other_kwok_nodes_on_loopback_are_forwarded() {
        let server: SocketAddr = "127.0.1.10:19250".parse().unwrap();
        let nodes = [
            node("kwok-node-0", "127.0.1.10", Some(19250), true),
            node("kwok-node-1", "127.0.1.11", Some(19250), true),
            node("kwok-node-2", "127.0.1.12", None, true),
            node("real", "127.0.1.13", Some(10250), false),
            node("far", "10.0.0.1", Some(19250), true),
        ];
        let got: Vec<String> = endpoints(&nodes, server)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["127.0.1.11:19250", "127.0.1.12:19250"]);
    }
}
