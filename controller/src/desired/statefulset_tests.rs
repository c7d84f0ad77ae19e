//! Tests of the StatefulSet builder, from the shipped manifests and
//! `tests/fixtures/desired/cluster.yaml`.

use super::super::fixtures::*;
use super::*;
use k8s_openapi::api::core::v1::{EnvVar, PodSpec};

fn pod_of(sts: &StatefulSet) -> &PodSpec {
    sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn container<'a>(sts: &'a StatefulSet, name: &str) -> &'a Container {
    pod_of(sts)
        .containers
        .iter()
        .find(|c| c.name == name)
        .unwrap()
}

fn env_value<'a>(env: &'a [EnvVar], name: &str) -> Option<&'a str> {
    env.iter().find(|e| e.name == name)?.value.as_deref()
}

fn quantity(
    map: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    key: &str,
) -> String {
    map.as_ref().unwrap()[key].0.clone()
}

#[test]
fn minimal_shape() {
    let pg = minimal();
    let sts = statefulset(&config(), &Validated::trusted(&config(), &pg), None).unwrap();
    assert_eq!(sts.metadata.name.as_deref(), Some("acid-minimal-cluster"));
    assert_eq!(sts.metadata.namespace.as_deref(), Some("default"));
    let labels = sts.metadata.labels.as_ref().unwrap();
    assert_eq!(labels.len(), 3);
    assert_eq!(labels["team"], "acid");
    // Only the pod template's fingerprint, which decides the rolling update, and the immutable
    // parts' digests, which decide a replacement.
    let annotations = sts.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations.keys().collect::<Vec<_>>(),
        [
            crate::replace::IMMUTABLE,
            crate::rollout::template::FINGERPRINT
        ]
    );
    assert_eq!(
        annotations[crate::replace::IMMUTABLE],
        crate::replace::fingerprint(sts.spec.as_ref().unwrap())
    );
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.service_name.as_deref(), Some("acid-minimal-cluster"));
    assert_eq!(
        spec.selector.match_labels,
        Some(selector_labels(&config(), "acid-minimal-cluster"))
    );
    assert_eq!(
        spec.update_strategy.as_ref().unwrap().type_.as_deref(),
        Some("OnDelete")
    );
    assert_eq!(spec.pod_management_policy.as_deref(), Some("OrderedReady"));
    let retention = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .unwrap();
    assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
    assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
    assert_eq!(
        spec.template.metadata.as_ref().unwrap().labels.as_ref(),
        Some(labels)
    );

    let pod = pod_of(&sts);
    assert_eq!(pod.service_account_name.as_deref(), Some("postgres-pod"));
    assert_eq!(pod.termination_grace_period_seconds, Some(300));
    assert_eq!(pod.security_context, Some(PodSecurityContext::default()));
    assert!(pod.tolerations.is_none() && pod.affinity.is_none());
    assert_eq!(pod.containers.len(), 1);
    let postgres = container(&sts, "postgres");
    assert_eq!(
        postgres.image.as_deref(),
        Some(common::crd::operator_configuration::DEFAULT_SPILO_IMAGE)
    );
    let ports: Vec<_> = postgres
        .ports
        .iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone().unwrap(),
                p.container_port,
                p.protocol.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("patroni".to_string(), 8008, "TCP".to_string()),
            ("postgresql".to_string(), 5432, "TCP".to_string()),
            ("api".to_string(), 8080, "TCP".to_string())
        ]
    );
    assert!(postgres.resources.is_none());
    assert!(postgres.readiness_probe.is_none() && postgres.liveness_probe.is_none());
    let mounts: Vec<_> = postgres
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert_eq!(
        mounts,
        [("pgdata", "/home/postgres/pgdata"), ("dshm", "/dev/shm")]
    );
    let volume = &pod.volumes.as_ref().unwrap()[0];
    assert_eq!(volume.name, "dshm");
    assert_eq!(
        volume.empty_dir.as_ref().unwrap().medium.as_deref(),
        Some("Memory")
    );
    let security = postgres.security_context.as_ref().unwrap();
    assert_eq!(security.privileged, Some(false));
    assert_eq!(security.allow_privilege_escalation, Some(true));
    assert!(security.capabilities.is_none());

    let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
    assert_eq!(claim.metadata.name.as_deref(), Some("pgdata"));
    assert_eq!(claim.metadata.labels.as_ref(), Some(labels));
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(
        claim_spec.access_modes,
        Some(vec!["ReadWriteOnce".to_string()])
    );
    assert_eq!(claim_spec.volume_mode.as_deref(), Some("Filesystem"));
    assert_eq!(
        quantity(&claim_spec.resources.as_ref().unwrap().requests, "storage"),
        "1Gi"
    );
    assert!(claim_spec.storage_class_name.is_none());
}

#[test]
fn complete_manifest_pod_settings() {
    let mut config = config();
    config.kubernetes.enable_readiness_probe = true;
    config.kubernetes.custom_pod_annotations = [
        ("example.com/owner".to_string(), "config".to_string()),
        ("c".to_string(), "1".to_string()),
    ]
    .into();
    config.kubernetes.spilo_runasuser = Some(1);
    config.kubernetes.additional_pod_capabilities = vec!["sys_nice".into()];
    config.sidecar_docker_images = [
        ("metrics-exporter".to_string(), "ignored".to_string()),
        ("logger".to_string(), "log:1".to_string()),
    ]
    .into();
    let pg = complete();
    let sts = statefulset(&config, &Validated::trusted(&config, &pg), None).unwrap();
    let pod = pod_of(&sts);
    // Standby with 2 instances only warns; replicas stay 2.
    assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(2));
    let annotations = sts
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap();
    assert_eq!(annotations["example.com/owner"], "db-team");
    assert_eq!(annotations["c"], "1");
    let security = pod.security_context.as_ref().unwrap();
    assert_eq!(
        (
            security.run_as_user,
            security.run_as_group,
            security.fs_group
        ),
        (Some(101), Some(103), Some(103))
    );
    assert_eq!(
        pod.tolerations.as_ref().unwrap()[0].key.as_deref(),
        Some("postgres")
    );
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("postgres-pod-priority")
    );
    assert_eq!(pod.scheduler_name.as_deref(), Some("default-scheduler"));
    assert_eq!(pod.topology_spread_constraints.as_ref().unwrap().len(), 1);
    let init: Vec<_> = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(init, ["date", "legacy-date"]);
    let names: Vec<_> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["postgres", "metrics-exporter", "logger"]);

    let postgres = container(&sts, "postgres");
    assert_eq!(
        postgres.image.as_deref(),
        Some("ghcr.io/zalando/spilo-18:4.1-p2")
    );
    assert_eq!(
        postgres
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readiness")
    );
    assert_eq!(
        postgres
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/liveness")
    );
    assert_eq!(postgres.env_from.as_ref().unwrap().len(), 2);
    assert_eq!(
        postgres
            .security_context
            .as_ref()
            .unwrap()
            .capabilities
            .as_ref()
            .unwrap()
            .add,
        Some(vec!["SYS_NICE".to_string()])
    );
    let resources = postgres.resources.as_ref().unwrap();
    assert_eq!(quantity(&resources.requests, "cpu"), "10m");
    assert_eq!(quantity(&resources.limits, "memory"), "500Mi");
    assert_eq!(
        postgres.volume_mounts.as_ref().unwrap()[0]
            .sub_path
            .as_deref(),
        Some("data")
    );

    let claim = &sts
        .spec
        .as_ref()
        .unwrap()
        .volume_claim_templates
        .as_ref()
        .unwrap()[0];
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("standard"));
    assert!(claim_spec.selector.is_some());

    let exporter = container(&sts, "metrics-exporter");
    let env: Vec<_> = exporter
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        env,
        [
            "POD_NAME",
            "POD_NAMESPACE",
            "POSTGRES_USER",
            "POSTGRES_PASSWORD",
            "DATA_SOURCE_URI"
        ]
    );
    assert_eq!(
        exporter.image.as_deref(),
        Some("quay.io/prometheuscommunity/postgres-exporter:v0.15.0")
    );
    assert_eq!(
        quantity(&exporter.resources.as_ref().unwrap().limits, "cpu"),
        "100m"
    );
    assert_eq!(container(&sts, "logger").image.as_deref(), Some("log:1"));
}

#[test]
fn fixture_cluster() {
    let mut config = config();
    config.kubernetes.inherited_labels = vec!["environment".into()];
    config.kubernetes.inherited_annotations = vec!["owner".into()];
    config.kubernetes.node_readiness_label = [("ready".to_string(), "true".to_string())].into();
    config.kubernetes.enable_pod_antiaffinity = true;
    config.kubernetes.pod_management_policy = "parallel".into();
    config.kubernetes.persistent_volume_claim_retention_policy =
        [("when_deleted".to_string(), "delete".to_string())].into();
    config.kubernetes.toleration = [
        ("key".to_string(), "db".to_string()),
        ("operator".to_string(), "Exists".to_string()),
    ]
    .into();
    config.enable_shm_volume = false;
    config.max_instances = 2;
    let pg = fixture();
    let sts = statefulset(&config, &Validated::trusted(&config, &pg), None).unwrap();
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let retention = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .unwrap();
    assert_eq!(
        (
            retention.when_deleted.as_deref(),
            retention.when_scaled.as_deref()
        ),
        (Some("Delete"), Some("Retain"))
    );
    assert_eq!(sts.metadata.labels.as_ref().unwrap()["environment"], "test");
    assert_eq!(sts.metadata.annotations.as_ref().unwrap().len(), 3);
    assert_eq!(
        sts.metadata.annotations.as_ref().unwrap()["owner"],
        "db-team"
    );
    // Selectors never carry inherited labels.
    assert!(
        !spec
            .selector
            .match_labels
            .as_ref()
            .unwrap()
            .contains_key("environment")
    );

    let pod = pod_of(&sts);
    let toleration = &pod.tolerations.as_ref().unwrap()[0];
    assert_eq!(
        (toleration.key.as_deref(), toleration.operator.as_deref()),
        (Some("db"), Some("Exists"))
    );
    let affinity = pod.affinity.as_ref().unwrap();
    let terms = &affinity
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms;
    // OR (default): the readiness term is added beside the manifest's.
    assert_eq!(terms.len(), 2);
    assert_eq!(terms[1].match_expressions.as_ref().unwrap()[0].key, "ready");
    let anti = affinity.pod_anti_affinity.as_ref().unwrap();
    let term = &anti
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()[0];
    assert_eq!(term.topology_key, "kubernetes.io/hostname");
    assert_eq!(
        term.label_selector.as_ref().unwrap().match_labels,
        Some(selector_labels(&config, "acid-fixture"))
    );

    let postgres = container(&sts, "postgres");
    let resources = postgres.resources.as_ref().unwrap();
    // Canonical quantities: 0.5 → 500m, 1024Mi → 1Gi, 1000m → 1.
    assert_eq!(quantity(&resources.requests, "cpu"), "500m");
    assert_eq!(quantity(&resources.requests, "memory"), "1Gi");
    assert_eq!(quantity(&resources.limits, "cpu"), "1");
    assert_eq!(quantity(&resources.limits, "memory"), "2Gi");
    let env = postgres.env.as_ref().unwrap();
    assert_eq!(env_value(env, "PGVERSION"), Some("16"));
    let mounts = postgres.volume_mounts.as_ref().unwrap();
    // spec.enableShmVolume: true wins over the configuration's false.
    assert_eq!(mounts[1].name, "dshm");
    assert_eq!(mounts[0].sub_path_expr.as_deref(), Some("$(POD_NAME)"));
    assert!(mounts[0].sub_path.is_none());
    assert!(pod.volumes.is_some());
    let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
    assert_eq!(
        quantity(
            &claim
                .spec
                .as_ref()
                .unwrap()
                .resources
                .as_ref()
                .unwrap()
                .requests,
            "storage"
        ),
        "1536Mi"
    );
    assert_eq!(
        claim.metadata.annotations.as_ref().unwrap()["owner"],
        "db-team"
    );

    // Sidecar without a name: sidecar-0; its own POSTGRES_USER cannot override the operator's.
    let sidecar = container(&sts, "sidecar-0");
    let env = sidecar.env.as_ref().unwrap();
    assert_eq!(env_value(env, "POSTGRES_USER"), Some("postgres"));
    assert_eq!(env_value(env, "EXTRA"), Some("1"));
    assert_eq!(env.len(), 5);

    // AND merges the readiness expressions into every manifest term; preferred anti-affinity.
    config.kubernetes.node_readiness_label_merge = "AND".into();
    config
        .kubernetes
        .pod_antiaffinity_preferred_during_scheduling = true;
    let sts = statefulset(&config, &Validated::trusted(&config, &pg), None).unwrap();
    let affinity = pod_of(&sts).affinity.as_ref().unwrap();
    let terms = &affinity
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms;
    assert_eq!(terms.len(), 1);
    assert_eq!(terms[0].match_expressions.as_ref().unwrap().len(), 2);
    let anti = affinity.pod_anti_affinity.as_ref().unwrap();
    assert!(
        anti.required_during_scheduling_ignored_during_execution
            .is_none()
    );
    assert_eq!(
        anti.preferred_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()[0]
            .weight,
        1
    );
}

#[test]
fn build_errors_name_option_and_value() {
    let pg = minimal();
    let mut config = config();
    config.kubernetes.pod_management_policy = "random".into();
    assert_eq!(
        statefulset(&config, &Validated::trusted(&config, &pg), None)
            .unwrap_err()
            .to_string(),
        "configuration option pod_management_policy: \"random\" is invalid: expected ordered_ready or parallel"
    );
    let mut config = super::super::fixtures::config();
    config.kubernetes.persistent_volume_claim_retention_policy =
        [("when_scaled".to_string(), "keep".to_string())].into();
    assert_eq!(
        statefulset(&config, &Validated::trusted(&config, &pg), None)
            .unwrap_err()
            .to_string(),
        "configuration option persistent_volume_claim_retention_policy.when_scaled: \"keep\" is invalid: expected retain or delete"
    );
    let mut config = super::super::fixtures::config();
    config.kubernetes.pod_terminate_grace_period = "5 minutes".into();
    let err = statefulset(&config, &Validated::trusted(&config, &pg), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("configuration option pod_terminate_grace_period: \"5 minutes\""),
        "{err}"
    );

    let mut bad = minimal();
    bad.spec.volume.size = "big".into();
    assert_eq!(
        statefulset(
            &super::super::fixtures::config(),
            &Validated::trusted(&super::super::fixtures::config(), &bad),
            None
        )
        .unwrap_err()
        .to_string(),
        "spec.volume.size: \"big\" is not a valid Kubernetes quantity"
    );

    let mut config = super::super::fixtures::config();
    config.kubernetes.enable_sidecars = false;
    assert_eq!(
        statefulset(&config, &Validated::trusted(&config, &complete()), None)
            .unwrap_err()
            .to_string(),
        "spec.sidecars is set but enable_sidecars is false in the operator configuration"
    );
    config.kubernetes.enable_sidecars = true;
    config.kubernetes.enable_init_containers = false;
    assert_eq!(
        statefulset(&config, &Validated::trusted(&config, &complete()), None)
            .unwrap_err()
            .to_string(),
        "spec.initContainers is set but enable_init_containers is false in the operator configuration"
    );
}
