//! The master and replica Services and the master Endpoints (Zalando's `generateService`,
//! `generateEndpoint`).
//!
//! Type: NodePort when enabled (manifest `enable*NodePort` over the configuration), else
//! LoadBalancer when enabled (manifest `enable*LoadBalancer`, then the deprecated
//! `useLoadBalancer`/`replicaLoadBalancer`, then the configuration), else ClusterIP.
//! Annotations, later winning: the idle-timeout default (LoadBalancer only),
//! `custom_service_annotations`, `spec.serviceAnnotations`, `spec.master|replicaServiceAnnotations`;
//! the external-dns hostname of a LoadBalancer is set last and cannot be overridden.

use super::{meta, namespace, uses_configmaps};
use common::config::Config;
use common::crd::Postgresql;
use common::labels::{role_labels, role_selector};
use common::naming::{DnsNameParts, Role, dns_name, service_name};
use common::rules::admission::Validated;
use k8s_openapi::api::core::v1::{Endpoints, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// external-dns hostname annotation.
pub const DNS_ANNOTATION: &str = "external-dns.alpha.kubernetes.io/hostname";
/// AWS ELB idle timeout annotation.
pub const ELB_TIMEOUT_ANNOTATION: &str =
    "service.beta.kubernetes.io/aws-load-balancer-connection-idle-timeout";
/// Its default value.
pub const ELB_TIMEOUT_DEFAULT: &str = "3600";

/// How a service is exposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposure {
    /// ClusterIP.
    ClusterIp,
    /// LoadBalancer.
    LoadBalancer,
    /// NodePort, with the manifest's port (0 or none lets Kubernetes choose).
    NodePort(Option<i32>),
}

/// The exposure of the service of a role.
pub fn exposure(config: &Config, pg: &Postgresql, role: Role) -> Exposure {
    let spec = &pg.spec;
    let lb = &config.load_balancer;
    let (node_port, port, load_balancer) = match role {
        Role::Master => (
            spec.enable_master_node_port
                .unwrap_or(lb.enable_master_node_port),
            spec.master_node_port,
            spec.enable_master_load_balancer
                .or(spec.use_load_balancer)
                .unwrap_or(lb.enable_master_load_balancer),
        ),
        Role::Replica => (
            spec.enable_replica_node_port
                .unwrap_or(lb.enable_replica_node_port),
            spec.replica_node_port,
            spec.enable_replica_load_balancer
                .or(spec.replica_load_balancer)
                .unwrap_or(lb.enable_replica_load_balancer),
        ),
    };
    if node_port {
        Exposure::NodePort(port.filter(|p| *p > 0))
    } else if load_balancer {
        Exposure::LoadBalancer
    } else {
        Exposure::ClusterIp
    }
}

/// The external-dns name(s) of a role: the configured format, plus the legacy format when the
/// cluster name starts with `<teamId>-` (comma-separated, as Zalando's `dnsName`).
pub fn dns_names(config: &Config, pg: &Postgresql, role: Role) -> String {
    let lb = &config.load_balancer;
    let (format, legacy) = match role {
        Role::Master => (
            &lb.master_dns_name_format,
            &lb.master_legacy_dns_name_format,
        ),
        Role::Replica => (
            &lb.replica_dns_name_format,
            &lb.replica_legacy_dns_name_format,
        ),
    };
    let cluster = pg.cluster_name();
    let parts = DnsNameParts {
        cluster,
        namespace: namespace(pg),
        team: &pg.spec.team_id,
        hosted_zone: &lb.db_hosted_zone,
    };
    let mut names = dns_name(format, parts);
    let team = pg.spec.team_id.to_lowercase();
    let prefix = format!("{team}-");
    if !team.is_empty()
        && !legacy.is_empty()
        && cluster.len() > prefix.len()
        && cluster.to_lowercase().starts_with(&prefix)
    {
        let short = &cluster[prefix.len()..];
        names = format!(
            "{names},{}",
            dns_name(
                legacy,
                DnsNameParts {
                    cluster: short,
                    ..parts
                }
            )
        );
    }
    names
}

fn annotations(
    config: &Config,
    pg: &Postgresql,
    role: Role,
    exposure: Exposure,
) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::new();
    if exposure == Exposure::LoadBalancer {
        annotations.insert(ELB_TIMEOUT_ANNOTATION.into(), ELB_TIMEOUT_DEFAULT.into());
    }
    annotations.extend(config.load_balancer.custom_service_annotations.clone());
    annotations.extend(pg.spec.service_annotations.clone().unwrap_or_default());
    let own = match role {
        Role::Master => &pg.spec.master_service_annotations,
        Role::Replica => &pg.spec.replica_service_annotations,
    };
    annotations.extend(own.clone().unwrap_or_default());
    if exposure == Exposure::LoadBalancer {
        annotations.insert(DNS_ANNOTATION.into(), dns_names(config, pg, role));
    }
    annotations
}

/// The Service of one role.
pub fn service(
    config: &Config,
    valid: &Validated<'_>,
    role: Role,
    owner: Option<&OwnerReference>,
) -> Service {
    let pg = valid.pg;
    let cluster = pg.cluster_name();
    let exposure = exposure(config, pg, role);
    let selector = (role == Role::Replica || uses_configmaps(config))
        .then(|| role_selector(config, cluster, role));
    let mut spec = ServiceSpec {
        type_: Some("ClusterIP".into()),
        ports: Some(vec![ServicePort {
            name: Some("postgresql".into()),
            port: 5432,
            target_port: Some(IntOrString::Int(5432)),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        }]),
        selector,
        ..ServiceSpec::default()
    };
    match exposure {
        Exposure::ClusterIp => {}
        Exposure::LoadBalancer => {
            spec.type_ = Some("LoadBalancer".into());
            spec.load_balancer_source_ranges = Some(valid.source_ranges.clone());
            spec.external_traffic_policy =
                Some(config.load_balancer.external_traffic_policy.clone());
        }
        Exposure::NodePort(port) => {
            spec.type_ = Some("NodePort".into());
            spec.external_traffic_policy =
                Some(config.load_balancer.external_traffic_policy.clone());
            if let Some(ports) = spec.ports.as_mut() {
                ports[0].node_port = port;
            }
        }
    }
    Service {
        metadata: meta(
            pg,
            service_name(cluster, role),
            role_labels(config, pg, role),
            annotations(config, pg, role, exposure),
            owner,
        ),
        spec: Some(spec),
        status: None,
    }
}

/// Master and replica Services.
pub fn services(
    config: &Config,
    valid: &Validated<'_>,
    owner: Option<&OwnerReference>,
) -> Vec<Service> {
    [Role::Master, Role::Replica]
        .into_iter()
        .map(|role| service(config, valid, role, owner))
        .collect()
}

/// The master Endpoints (no subsets; Patroni fills them), only when Patroni does not keep its
/// state in ConfigMaps.
pub fn endpoints(
    config: &Config,
    pg: &Postgresql,
    owner: Option<&OwnerReference>,
) -> Vec<Endpoints> {
    if uses_configmaps(config) {
        return Vec::new();
    }
    vec![Endpoints {
        metadata: meta(
            pg,
            service_name(pg.cluster_name(), Role::Master),
            role_labels(config, pg, Role::Master),
            BTreeMap::new(),
            owner,
        ),
        subsets: None,
    }]
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn spec(service: &Service) -> &ServiceSpec {
        service.spec.as_ref().unwrap()
    }

    fn annotation<'a>(service: &'a Service, key: &str) -> Option<&'a str> {
        service
            .metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    #[test]
    fn default_config_master_load_balancer_replica_cluster_ip() {
        let pg = minimal();
        let services = services(&config(), &Validated::trusted(&config(), &pg), None);
        let (master, replica) = (&services[0], &services[1]);
        assert_eq!(
            master.metadata.name.as_deref(),
            Some("acid-minimal-cluster")
        );
        assert_eq!(
            replica.metadata.name.as_deref(),
            Some("acid-minimal-cluster-repl")
        );
        assert_eq!(master.metadata.namespace.as_deref(), Some("default"));
        let labels = master.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["spilo-role"], "master");
        assert_eq!(labels["team"], "acid");
        // Zalando's code default enables the master load balancer.
        assert_eq!(spec(master).type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(
            spec(master).load_balancer_source_ranges,
            Some(vec!["127.0.0.1/32".to_string()])
        );
        assert_eq!(
            spec(master).external_traffic_policy.as_deref(),
            Some("Cluster")
        );
        assert_eq!(
            annotation(master, DNS_ANNOTATION),
            Some("acid-minimal-cluster.default.db.example.com,minimal-cluster.acid.db.example.com")
        );
        assert_eq!(annotation(master, ELB_TIMEOUT_ANNOTATION), Some("3600"));
        // ConfigMaps (default): the master service selects the master pod.
        assert_eq!(
            spec(master).selector.as_ref().unwrap()["spilo-role"],
            "master"
        );
        assert_eq!(spec(replica).type_.as_deref(), Some("ClusterIP"));
        assert!(replica.metadata.annotations.is_none());
        assert_eq!(
            spec(replica).selector.as_ref().unwrap()["spilo-role"],
            "replica"
        );
        assert_eq!(spec(replica).selector.as_ref().unwrap().len(), 3);
        let port = &spec(master).ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.port),
            (Some("postgresql"), 5432)
        );
        assert_eq!(port.target_port, Some(IntOrString::Int(5432)));
    }

    #[test]
    fn manifest_flags_override_config_and_node_port_wins() {
        let mut config = config();
        config.load_balancer.enable_master_load_balancer = false;
        let mut pg = minimal();
        pg.spec.replica_load_balancer = Some(true);
        pg.spec.allowed_source_ranges = Some(vec!["10.0.0.0/8".into()]);
        let both = services(&config, &Validated::trusted(&config, &pg), None);
        assert_eq!(spec(&both[0]).type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec(&both[1]).type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(
            spec(&both[1]).load_balancer_source_ranges,
            Some(vec!["10.0.0.0/8".to_string()])
        );
        assert_eq!(
            annotation(&both[1], DNS_ANNOTATION),
            Some(
                "acid-minimal-cluster-repl.default.db.example.com,minimal-cluster-repl.acid.db.example.com"
            )
        );

        pg.spec.enable_replica_node_port = Some(true);
        pg.spec.replica_node_port = Some(30432);
        let replica = service(
            &config,
            &Validated::trusted(&config, &pg),
            Role::Replica,
            None,
        );
        assert_eq!(spec(&replica).type_.as_deref(), Some("NodePort"));
        assert_eq!(
            spec(&replica).ports.as_ref().unwrap()[0].node_port,
            Some(30432)
        );
        assert!(spec(&replica).load_balancer_source_ranges.is_none());
        assert!(annotation(&replica, DNS_ANNOTATION).is_none());

        // The complete manifest switches both load balancers off explicitly.
        let all = services(
            &super::super::fixtures::config(),
            &Validated::trusted(&super::super::fixtures::config(), &complete()),
            None,
        );
        assert!(
            all.iter()
                .all(|s| spec(s).type_.as_deref() == Some("ClusterIP"))
        );
    }

    #[test]
    fn annotation_precedence() {
        let mut config = config();
        config.load_balancer.custom_service_annotations = [
            ("example.com/service".to_string(), "custom".to_string()),
            (ELB_TIMEOUT_ANNOTATION.to_string(), "60".to_string()),
            (DNS_ANNOTATION.to_string(), "hijack".to_string()),
        ]
        .into();
        let mut pg = complete();
        pg.spec.enable_master_load_balancer = Some(true);
        let services = services(&config, &Validated::trusted(&config, &pg), None);
        let (master, replica) = (&services[0], &services[1]);
        assert_eq!(annotation(master, "example.com/service"), Some("master"));
        assert_eq!(annotation(replica, "example.com/service"), Some("replica"));
        assert_eq!(annotation(master, ELB_TIMEOUT_ANNOTATION), Some("60"));
        assert_eq!(
            annotation(master, DNS_ANNOTATION),
            Some("acid-test-cluster.default.db.example.com,test-cluster.acid.db.example.com")
        );
        assert_eq!(
            spec(master).load_balancer_source_ranges,
            Some(vec!["127.0.0.1/32".to_string(), "10.0.0.0/8".to_string()])
        );
        // A ClusterIP service gets no operator DNS name; configured annotations pass through.
        assert_eq!(annotation(replica, DNS_ANNOTATION), Some("hijack"));
        assert_eq!(annotation(replica, ELB_TIMEOUT_ANNOTATION), Some("60"));
    }

    #[test]
    fn endpoints_only_without_configmaps() {
        let pg = minimal();
        let mut config = config();
        assert!(endpoints(&config, &pg, None).is_empty());
        config.kubernetes_use_configmaps = false;
        let eps = endpoints(&config, &pg, None);
        assert_eq!(eps.len(), 1);
        assert_eq!(
            eps[0].metadata.name.as_deref(),
            Some("acid-minimal-cluster")
        );
        assert_eq!(
            eps[0].metadata.labels.as_ref().unwrap()["spilo-role"],
            "master"
        );
        assert!(eps[0].subsets.is_none());
        // Without ConfigMaps the master service has no selector; the replica keeps its own.
        let services = services(&config, &Validated::trusted(&config, &pg), None);
        assert!(spec(&services[0]).selector.is_none());
        assert!(spec(&services[1]).selector.is_some());
    }
}
