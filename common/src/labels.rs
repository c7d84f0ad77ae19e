//! Labels and annotations the operator puts on a cluster's children (Zalando's `labelsSet`).

use crate::config::Config;
use crate::crd::Postgresql;
use crate::naming::Role;
use std::collections::BTreeMap;

/// Labels that select every child of a cluster: `cluster_labels` plus the cluster name label.
/// Used as selectors, so they must never depend on anything a user can change later.
pub fn selector_labels(config: &Config, cluster: &str) -> BTreeMap<String, String> {
    let mut labels = config.kubernetes.cluster_labels.clone();
    labels.insert(
        config.kubernetes.cluster_name_label.clone(),
        cluster.to_string(),
    );
    labels
}

/// Labels set on the children: the selector labels, `team`, and the manifest labels listed in
/// `inherited_labels` (applied last, as Zalando does).
pub fn object_labels(config: &Config, pg: &Postgresql) -> BTreeMap<String, String> {
    let mut labels = selector_labels(config, pg.cluster_name());
    labels.insert("team".to_string(), pg.spec.team_id.clone());
    if let Some(own) = &pg.metadata.labels {
        for key in &config.kubernetes.inherited_labels {
            if let Some(value) = own.get(key) {
                labels.insert(key.clone(), value.clone());
            }
        }
    }
    labels
}

/// Object labels plus the role label (`spilo-role: master|replica` by default).
pub fn role_labels(config: &Config, pg: &Postgresql, role: Role) -> BTreeMap<String, String> {
    let mut labels = object_labels(config, pg);
    labels.insert(
        config.kubernetes.pod_role_label.clone(),
        role.as_str().to_string(),
    );
    labels
}

/// Selector of the pods of one role.
pub fn role_selector(config: &Config, cluster: &str, role: Role) -> BTreeMap<String, String> {
    let mut labels = selector_labels(config, cluster);
    labels.insert(
        config.kubernetes.pod_role_label.clone(),
        role.as_str().to_string(),
    );
    labels
}

/// Manifest annotations whose keys are listed in `inherited_annotations`.
pub fn inherited_annotations(config: &Config, pg: &Postgresql) -> BTreeMap<String, String> {
    let Some(own) = &pg.metadata.annotations else {
        return BTreeMap::new();
    };
    config
        .kubernetes
        .inherited_annotations
        .iter()
        .filter_map(|key| own.get(key).map(|value| (key.clone(), value.clone())))
        .collect()
}

/// `KUBERNETES_LABELS` for Spilo: the cluster labels as JSON, which Patroni uses to find its pods.
pub fn spilo_labels_env(config: &Config) -> String {
    serde_json::to_string(&config.kubernetes.cluster_labels).expect("string maps serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Postgresql {
        serde_yaml::from_str(
            r#"
apiVersion: acid.zalan.do/v1
kind: postgresql
metadata:
  name: demo-cluster
  labels: {application: my-app, environment: demo, unrelated: x}
  annotations: {owner: db-team, other: y}
spec:
  teamId: acid
  numberOfInstances: 2
  postgresql: {version: "17"}
  volume: {size: 1Gi}
"#,
        )
        .unwrap()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn default_labels() {
        let config = Config::default();
        let pg = cluster();
        assert_eq!(
            selector_labels(&config, "demo-cluster"),
            map(&[("application", "spilo"), ("cluster-name", "demo-cluster")])
        );
        assert_eq!(
            object_labels(&config, &pg),
            map(&[
                ("application", "spilo"),
                ("cluster-name", "demo-cluster"),
                ("team", "acid")
            ])
        );
        assert_eq!(
            role_labels(&config, &pg, Role::Replica)["spilo-role"],
            "replica"
        );
        assert_eq!(
            role_selector(&config, "demo-cluster", Role::Master).len(),
            3
        );
        assert!(inherited_annotations(&config, &pg).is_empty());
        assert_eq!(spilo_labels_env(&config), r#"{"application":"spilo"}"#);
    }

    #[test]
    fn inherited_labels_and_annotations() {
        let mut config = Config::default();
        config.kubernetes.inherited_labels =
            vec!["application".into(), "environment".into(), "missing".into()];
        config.kubernetes.inherited_annotations = vec!["owner".into()];
        config.kubernetes.cluster_name_label = "cluster".into();
        config.kubernetes.pod_role_label = "role".into();
        let pg = cluster();
        let labels = object_labels(&config, &pg);
        // The manifest's application label wins over cluster_labels, as in Zalando.
        assert_eq!(
            labels,
            map(&[
                ("application", "my-app"),
                ("cluster", "demo-cluster"),
                ("environment", "demo"),
                ("team", "acid")
            ])
        );
        assert_eq!(
            selector_labels(&config, "demo-cluster")["application"],
            "spilo"
        );
        assert_eq!(role_labels(&config, &pg, Role::Master)["role"], "master");
        assert_eq!(
            inherited_annotations(&config, &pg),
            map(&[("owner", "db-team")])
        );
    }
}
