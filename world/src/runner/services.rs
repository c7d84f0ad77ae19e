//! Services served in user space, as kube-proxy would: every Service with a selector is listened
//! on at its ClusterIP and ports (TCP), and each connection is forwarded to a ready pod its
//! selector matches. ClusterIPs come from this checkout's service range inside 127.0.0.0/8, so
//! nothing leaves loopback; a ClusterIP or pod IP outside it is never bound or dialled.
//!
//! Listeners are rebuilt only when a Service's IP, ports or selector change.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Api, Client};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One port of a Service, as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub namespace: String,
    pub selector: BTreeMap<String, String>,
    pub address: SocketAddr,
    pub target: IntOrString,
}

/// The ports of `service` to serve: TCP ports of a Service with a selector and a loopback
/// ClusterIP (others are left alone).
pub fn served(service: &Service) -> Vec<Served> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let selector = spec.selector.clone().unwrap_or_default();
    let ip = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<IpAddr>().ok());
    let Some(ip) = ip.filter(|ip| ip.is_loopback()) else {
        return Vec::new();
    };
    if selector.is_empty() {
        return Vec::new();
    }
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    spec.ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .map(|p| Served {
            namespace: namespace.clone(),
            selector: selector.clone(),
            address: SocketAddr::new(ip, p.port as u16),
            target: p.target_port.clone().unwrap_or(IntOrString::Int(p.port)),
        })
        .collect()
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// The loopback address of a ready pod matching `served`, chosen round-robin by `turn`.
pub fn backend(served: &Served, pods: &[Arc<Pod>], turn: usize) -> Option<SocketAddr> {
    let mut candidates: Vec<SocketAddr> = pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(served.namespace.as_str()))
        .filter(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            served
                .selector
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        })
        .filter(|p| is_ready(p))
        .filter_map(|p| {
            let ip: IpAddr = p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
            if !ip.is_loopback() {
                return None;
            }
            let port = match &served.target {
                IntOrString::Int(n) => *n,
                IntOrString::String(name) => {
                    p.spec
                        .as_ref()?
                        .containers
                        .iter()
                        .flat_map(|c| c.ports.iter().flatten())
                        .find(|cp| cp.name.as_deref() == Some(name.as_str()))?
                        .container_port
                }
            };
            Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
        })
        .collect();
    candidates.sort();
    if candidates.is_empty() {
        return None;
    }
    Some(candidates[turn % candidates.len()])
}

async fn listen(served: Served, pods: Store<Pod>) {
    let listener = loop {
        match TcpListener::bind(served.address).await {
            Ok(listener) => break listener,
            Err(e) => {
                tracing::warn!(address = %served.address, error = %e, "cannot listen for a Service; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let turn = AtomicUsize::new(0);
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let target = backend(&served, &pods.state(), turn.fetch_add(1, Ordering::Relaxed));
        let address = served.address;
        tokio::spawn(async move {
            let Some(target) = target else {
                tracing::debug!(%address, "no ready pod behind the Service");
                return;
            };
            let connect = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(target));
            match connect.await {
                Ok(Ok(mut server)) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
                _ => tracing::debug!(%address, %target, "backend did not accept"),
            }
        });
    }
}

/// Serves every Service until the watch ends.
pub async fn serve(client: Client) -> anyhow::Result<()> {
    let (pods, writer) = reflector::store();
    let pod_events = watch(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .for_each(|_| futures::future::ready(()));
    tokio::spawn(pod_events);
    let services: Api<Service> = Api::all(client);
    let mut events = std::pin::pin!(watch(services, watcher::Config::default()).default_backoff());
    let mut listeners: HashMap<String, (Vec<Served>, Vec<JoinHandle<()>>)> = HashMap::new();
    while let Some(event) = events.next().await {
        let (service, gone) = match event {
            Ok(Event::Apply(s) | Event::InitApply(s)) => (s, false),
            Ok(Event::Delete(s)) => (s, true),
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "service watch failed; retrying");
                continue;
            }
        };
        let key = format!(
            "{}/{}",
            service.metadata.namespace.as_deref().unwrap_or_default(),
            service.metadata.name.as_deref().unwrap_or_default()
        );
        let wanted = if gone { Vec::new() } else { served(&service) };
        if listeners.get(&key).map(|(s, _)| s) == Some(&wanted) {
            continue;
        }
        if let Some((_, tasks)) = listeners.remove(&key) {
            for task in tasks {
                task.abort();
                let _ = task.await;
            }
        }
        if wanted.is_empty() {
            continue;
        }
        for s in &wanted {
            tracing::info!(service = %key, address = %s.address, "serving");
        }
        let tasks = wanted
            .iter()
            .map(|s| tokio::spawn(listen(s.clone(), pods.clone())))
            .collect();
        listeners.insert(key, (wanted, tasks));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus, ServicePort, ServiceSpec};
    use kube::api::ObjectMeta;

    fn service(ip: &str, selector: &[(&str, &str)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("s".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                selector: Some(
                    selector
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ports: Some(vec![ServicePort {
                    port: 5432,
                    target_port: Some(IntOrString::Int(5432)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(ip: &str, role: &str, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                labels: Some([("spilo-role".to_string(), role.to_string())].into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                pod_ip: Some(ip.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn only_loopback_services_with_a_selector_are_served() {
        assert_eq!(
            served(&service("127.96.0.9", &[("spilo-role", "master")])).len(),
            1
        );
        assert!(served(&service("127.96.0.9", &[])).is_empty());
        assert!(served(&service("10.0.0.1", &[("spilo-role", "master")])).is_empty());
        assert!(served(&service("None", &[("spilo-role", "master")])).is_empty());
    }

    #[test]
    fn connections_go_to_ready_matching_loopback_pods() {
        let s = &served(&service("127.96.0.9", &[("spilo-role", "master")]))[0];
        let pods = [
            pod("127.10.0.1", "replica", true),
            pod("127.10.0.2", "master", false),
            pod("10.1.1.1", "master", true),
            pod("127.10.0.3", "master", true),
        ];
        assert_eq!(
            backend(s, &pods, 0),
            Some("127.10.0.3:5432".parse().unwrap())
        );
        assert_eq!(backend(s, &pods[..3], 0), None);
    }
}
