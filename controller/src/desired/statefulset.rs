//! The Spilo StatefulSet (Zalando's `generateStatefulSet` / `generatePodTemplate`).

use super::volumes::{claim_template, pod_volumes, postgres_mounts};
use super::{BuildError, env, meta, non_empty, resources};
use common::config::encoding::parse_duration;
use common::config::{Config, effective_toleration};
use common::crd::Postgresql;
use common::labels::{inherited_annotations, object_labels, selector_labels};
use common::naming::statefulset_name;
use common::rules::admission::Validated;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, HTTPGetAction, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SecurityContext, Toleration,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// Name of the Spilo container.
pub const POSTGRES_CONTAINER: &str = "postgres";
/// Patroni's REST port.
pub const PATRONI_PORT: i32 = 8008;
/// PostgreSQL's port.
pub const POSTGRES_PORT: i32 = 5432;
/// Spilo's API port.
pub const API_PORT: i32 = 8080;
/// Pod annotation of kube2iam.
pub const KUBE_IAM_ANNOTATION: &str = "iam.amazonaws.com/role";

fn option_error(option: &str, value: &str, expected: &str) -> BuildError {
    BuildError::InvalidOption {
        option: option.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

fn pod_management_policy(config: &Config) -> Result<String, BuildError> {
    let value = &config.kubernetes.pod_management_policy;
    match value.as_str() {
        "ordered_ready" => Ok("OrderedReady".into()),
        "parallel" => Ok("Parallel".into()),
        _ => Err(option_error(
            "pod_management_policy",
            value,
            "expected ordered_ready or parallel",
        )),
    }
}

fn retention_policy(
    config: &Config,
) -> Result<StatefulSetPersistentVolumeClaimRetentionPolicy, BuildError> {
    let policy = &config.kubernetes.persistent_volume_claim_retention_policy;
    let get = |key: &str| -> Result<String, BuildError> {
        match policy.get(key).map(String::as_str) {
            None | Some("retain") => Ok("Retain".into()),
            Some("delete") => Ok("Delete".into()),
            Some(other) => Err(option_error(
                &format!("persistent_volume_claim_retention_policy.{key}"),
                other,
                "expected retain or delete",
            )),
        }
    };
    Ok(StatefulSetPersistentVolumeClaimRetentionPolicy {
        when_deleted: Some(get("when_deleted")?),
        when_scaled: Some(get("when_scaled")?),
    })
}

fn termination_grace_seconds(config: &Config) -> Result<i64, BuildError> {
    let value = &config.kubernetes.pod_terminate_grace_period;
    parse_duration(value)
        .map(|d| d.as_secs() as i64)
        .map_err(|expected| option_error("pod_terminate_grace_period", value, &expected))
}

fn tolerations(config: &Config, pg: &Postgresql) -> Result<Option<Vec<Toleration>>, BuildError> {
    if let Some(own) = pg.spec.tolerations.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(own.clone()));
    }
    let configured = &config.kubernetes.toleration;
    if configured.is_empty() {
        return Ok(None);
    }
    let fields = effective_toleration(configured)
        .map_err(|expected| option_error("toleration", &format!("{configured:?}"), &expected))?;
    let get = |k: &str| fields.get(k).cloned().filter(|v| !v.is_empty());
    Ok(Some(vec![Toleration {
        key: get("key"),
        operator: get("operator"),
        value: get("value"),
        effect: get("effect"),
        toleration_seconds: None,
    }]))
}

fn security_context(config: &Config, pg: &Postgresql) -> PodSecurityContext {
    let k8s = &config.kubernetes;
    PodSecurityContext {
        run_as_user: pg.spec.spilo_run_as_user.or(k8s.spilo_runasuser),
        run_as_group: pg.spec.spilo_run_as_group.or(k8s.spilo_runasgroup),
        fs_group: pg.spec.spilo_fs_group.or(k8s.spilo_fsgroup),
        ..PodSecurityContext::default()
    }
}

/// Node affinity from `node_readiness_label` merged with `spec.nodeAffinity`, plus the pod
/// anti-affinity of `enable_pod_antiaffinity` (Zalando's `nodeAffinity`, `generatePodAntiAffinity`).
fn affinity(config: &Config, pg: &Postgresql) -> Result<Option<Affinity>, BuildError> {
    let k8s = &config.kubernetes;
    let mut node = pg.spec.node_affinity.clone();
    if !k8s.node_readiness_label.is_empty() {
        let expressions: Vec<NodeSelectorRequirement> = k8s
            .node_readiness_label
            .iter()
            .map(|(key, value)| NodeSelectorRequirement {
                key: key.clone(),
                operator: "In".into(),
                values: Some(vec![value.clone()]),
            })
            .collect();
        let readiness_term = NodeSelectorTerm {
            match_expressions: Some(expressions.clone()),
            match_fields: None,
        };
        let node = node.get_or_insert_with(NodeAffinity::default);
        match node
            .required_during_scheduling_ignored_during_execution
            .as_mut()
        {
            None => {
                node.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
                    node_selector_terms: vec![readiness_term],
                })
            }
            Some(required) => match k8s.node_readiness_label_merge.as_str() {
                "OR" => required.node_selector_terms.push(readiness_term),
                "AND" => {
                    for term in &mut required.node_selector_terms {
                        term.match_expressions
                            .get_or_insert_with(Vec::new)
                            .extend(expressions.iter().cloned());
                    }
                }
                other => {
                    return Err(option_error(
                        "node_readiness_label_merge",
                        other,
                        "expected OR or AND",
                    ));
                }
            },
        }
    }
    let anti = k8s.enable_pod_antiaffinity.then(|| {
        let term = PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(config, pg.cluster_name())),
                match_expressions: None,
            }),
            topology_key: k8s.pod_antiaffinity_topology_key.clone(),
            ..PodAffinityTerm::default()
        };
        if k8s.pod_antiaffinity_preferred_during_scheduling {
            PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 1,
                        pod_affinity_term: term,
                    },
                ]),
                ..PodAntiAffinity::default()
            }
        } else {
            PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term]),
                ..PodAntiAffinity::default()
            }
        }
    });
    if node.is_none() && anti.is_none() {
        return Ok(None);
    }
    Ok(Some(Affinity {
        node_affinity: node,
        pod_anti_affinity: anti,
        pod_affinity: None,
    }))
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn readiness_probe() -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/readiness".into()),
            port: IntOrString::Int(PATRONI_PORT),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(6),
        period_seconds: Some(10),
        timeout_seconds: Some(5),
        success_threshold: Some(1),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

fn postgres_container(config: &Config, pg: &Postgresql) -> Result<Container, BuildError> {
    let k8s = &config.kubernetes;
    let image = pg
        .spec
        .docker_image
        .clone()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| config.docker_image.clone());
    let capabilities = (!k8s.additional_pod_capabilities.is_empty()).then(|| Capabilities {
        add: Some(
            k8s.additional_pod_capabilities
                .iter()
                .map(|c| c.to_uppercase())
                .collect(),
        ),
        drop: None,
    });
    Ok(Container {
        name: POSTGRES_CONTAINER.into(),
        image: Some(image),
        image_pull_policy: Some("IfNotPresent".into()),
        ports: Some(vec![
            port("patroni", PATRONI_PORT),
            port("postgresql", POSTGRES_PORT),
            port("api", API_PORT),
        ]),
        env: Some(env::postgres(config, pg)),
        env_from: pg.spec.env_from.clone().filter(|e| !e.is_empty()),
        resources: resources::postgres(config, pg)?,
        volume_mounts: Some(postgres_mounts(config, pg)),
        security_context: Some(SecurityContext {
            privileged: Some(k8s.spilo_privileged),
            allow_privilege_escalation: Some(k8s.spilo_allow_privilege_escalation),
            read_only_root_filesystem: Some(false),
            capabilities,
            ..SecurityContext::default()
        }),
        readiness_probe: k8s.enable_readiness_probe.then(readiness_probe),
        liveness_probe: pg
            .spec
            .liveness_probe
            .clone()
            .or_else(|| k8s.liveness_probe.clone()),
        ..Container::default()
    })
}

/// Sidecars: manifest sidecars, then the configured `sidecars`, then `sidecar_docker_images`; the
/// first of a name wins. Each gets POD_NAME, POD_NAMESPACE, POSTGRES_USER and POSTGRES_PASSWORD
/// before its own environment.
fn sidecars(config: &Config, pg: &Postgresql) -> Result<Vec<Container>, BuildError> {
    let own = pg.spec.sidecars.as_deref().unwrap_or_default();
    if !own.is_empty() && !config.kubernetes.enable_sidecars {
        return Err(BuildError::Disabled {
            field: "spec.sidecars".into(),
            option: "enable_sidecars".into(),
        });
    }
    let mut containers: Vec<Container> = Vec::new();
    for (index, sidecar) in own.iter().enumerate() {
        let name = sidecar
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("sidecar-{index}"));
        let resources = resources::sidecar(config, sidecar.resources.as_ref(), &name)?;
        containers.push(Container {
            name,
            image: sidecar.image.clone(),
            image_pull_policy: Some("IfNotPresent".into()),
            ports: sidecar.ports.clone(),
            env: sidecar.env.clone(),
            command: sidecar.command.clone(),
            resources,
            ..Container::default()
        });
    }
    containers.extend(config.sidecars.iter().cloned());
    containers.extend(
        config
            .sidecar_docker_images
            .iter()
            .map(|(name, image)| Container {
                name: name.clone(),
                image: Some(image.clone()),
                image_pull_policy: Some("IfNotPresent".into()),
                ..Container::default()
            }),
    );
    let mut merged: Vec<Container> = Vec::new();
    for mut container in containers {
        if merged.iter().any(|c| c.name == container.name) {
            continue;
        }
        let mut env_vars = env::sidecar(config, pg);
        env::append(&mut env_vars, container.env.take().unwrap_or_default());
        container.env = Some(env_vars);
        merged.push(container);
    }
    Ok(merged)
}

/// `spec.initContainers` then the deprecated `spec.init_containers` (first of a name wins).
fn init_containers(config: &Config, pg: &Postgresql) -> Result<Option<Vec<Container>>, BuildError> {
    let mut merged: Vec<Container> = Vec::new();
    for (field, list) in [
        ("spec.initContainers", &pg.spec.init_containers),
        ("spec.init_containers", &pg.spec.init_containers_old),
    ] {
        let list = list.as_deref().unwrap_or_default();
        if !list.is_empty() && !config.kubernetes.enable_init_containers {
            return Err(BuildError::Disabled {
                field: field.into(),
                option: "enable_init_containers".into(),
            });
        }
        for container in list {
            if !merged.iter().any(|c| c.name == container.name) {
                merged.push(container.clone());
            }
        }
    }
    Ok((!merged.is_empty()).then_some(merged))
}

fn pod_annotations(config: &Config, pg: &Postgresql) -> BTreeMap<String, String> {
    let mut annotations = config.kubernetes.custom_pod_annotations.clone();
    annotations.extend(pg.spec.pod_annotations.clone().unwrap_or_default());
    annotations.extend(inherited_annotations(config, pg));
    if !config.aws_or_gcp.kube_iam_role.is_empty() {
        annotations.insert(
            KUBE_IAM_ANNOTATION.into(),
            config.aws_or_gcp.kube_iam_role.clone(),
        );
    }
    crate::rollout::annotations::stamp(&mut annotations);
    annotations
}

fn priority_class(config: &Config, pg: &Postgresql) -> Option<String> {
    [
        pg.spec.pod_priority_class_name.as_ref(),
        pg.spec.pod_priority_class_name_old.as_ref(),
        Some(&config.kubernetes.pod_priority_class_name),
    ]
    .into_iter()
    .flatten()
    .find(|name| !name.is_empty())
    .cloned()
}

/// The pod template of the StatefulSet.
pub fn pod_template(config: &Config, pg: &Postgresql) -> Result<PodTemplateSpec, BuildError> {
    let mut containers = vec![postgres_container(config, pg)?];
    containers.extend(sidecars(config, pg)?);
    Ok(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(object_labels(config, pg)),
            annotations: non_empty(pod_annotations(config, pg)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(config.kubernetes.pod_service_account_name.clone()),
            termination_grace_period_seconds: Some(termination_grace_seconds(config)?),
            security_context: Some(security_context(config, pg)),
            tolerations: tolerations(config, pg)?,
            affinity: affinity(config, pg)?,
            priority_class_name: priority_class(config, pg),
            scheduler_name: pg.spec.scheduler_name.clone().filter(|s| !s.is_empty()),
            topology_spread_constraints: pg
                .spec
                .topology_spread_constraints
                .clone()
                .filter(|t| !t.is_empty()),
            init_containers: init_containers(config, pg)?,
            containers,
            volumes: pod_volumes(config, pg),
            ..PodSpec::default()
        }),
    })
}

/// The StatefulSet `<cluster>`.
pub fn statefulset(
    config: &Config,
    valid: &Validated<'_>,
    owner: Option<&OwnerReference>,
) -> Result<StatefulSet, BuildError> {
    let pg = valid.pg;
    let cluster = pg.cluster_name();
    let template = pod_template(config, pg)?;
    let mut annotations = inherited_annotations(config, pg);
    annotations.insert(
        crate::rollout::template::FINGERPRINT.into(),
        crate::rollout::template::fingerprint(&template, config.enable_lazy_spilo_upgrade),
    );
    let mut sts = StatefulSet {
        metadata: meta(
            pg,
            statefulset_name(cluster),
            object_labels(config, pg),
            annotations,
            owner,
        ),
        spec: Some(StatefulSetSpec {
            replicas: Some(valid.instances),
            selector: LabelSelector {
                match_labels: Some(selector_labels(config, cluster)),
                match_expressions: None,
            },
            service_name: Some(cluster.to_string()),
            template,
            volume_claim_templates: Some(vec![claim_template(config, pg)?]),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                rolling_update: None,
            }),
            pod_management_policy: Some(pod_management_policy(config)?),
            persistent_volume_claim_retention_policy: Some(retention_policy(config)?),
            ..StatefulSetSpec::default()
        }),
        status: None,
    };
    // What tells a change that needs a replacement (see `crate::replace`).
    crate::replace::stamp(&mut sts);
    Ok(sts)
}

#[cfg(test)]
#[path = "statefulset_tests.rs"]
mod tests;
