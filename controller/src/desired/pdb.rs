//! PodDisruptionBudgets (Zalando's `generatePrimaryPodDisruptionBudget`,
//! `generateCriticalOpPodDisruptionBudget`). Both use the raw `spec.numberOfInstances`, not the
//! clamped value, as Zalando does.

use super::meta;
use common::config::Config;
use common::crd::Postgresql;
use common::labels::{inherited_annotations, object_labels, selector_labels};
use common::naming::{Role, critical_op_pdb_name, primary_pdb_name};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Label Spilo puts on pods during critical operations (major upgrades).
pub const CRITICAL_OPERATION_LABEL: &str = "critical-operation";

fn relaxed(config: &Config, pg: &Postgresql) -> bool {
    !config.kubernetes.enable_pod_disruption_budget || pg.spec.number_of_instances <= 0
}

/// The primary PDB: minAvailable 1 (0 when relaxed; `synchronous_node_count + 1` when the
/// master selector is off and `synchronous_mode_strict` is on).
pub fn primary(
    config: &Config,
    pg: &Postgresql,
    owner: Option<&OwnerReference>,
) -> PodDisruptionBudget {
    let k8s = &config.kubernetes;
    let mut selector = selector_labels(config, pg.cluster_name());
    if k8s.pdb_master_label_selector {
        selector.insert(k8s.pod_role_label.clone(), Role::Master.as_str().into());
    }
    let patroni = pg.spec.patroni.as_ref();
    let min_available = if relaxed(config, pg) {
        0
    } else if !k8s.pdb_master_label_selector
        && patroni.and_then(|p| p.synchronous_mode_strict) == Some(true)
    {
        patroni.and_then(|p| p.synchronous_node_count).unwrap_or(1) as i32 + 1
    } else {
        1
    };
    PodDisruptionBudget {
        metadata: meta(
            pg,
            primary_pdb_name(&k8s.pdb_name_format, pg.cluster_name()),
            object_labels(config, pg),
            inherited_annotations(config, pg),
            owner,
        ),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(min_available)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

/// The critical-operation PDB: maxUnavailable 0 ("100%" when relaxed).
pub fn critical_op(
    config: &Config,
    pg: &Postgresql,
    owner: Option<&OwnerReference>,
) -> PodDisruptionBudget {
    let mut selector = selector_labels(config, pg.cluster_name());
    selector.insert(CRITICAL_OPERATION_LABEL.into(), "true".into());
    let max_unavailable = if relaxed(config, pg) {
        IntOrString::String("100%".into())
    } else {
        IntOrString::Int(0)
    };
    PodDisruptionBudget {
        metadata: meta(
            pg,
            critical_op_pdb_name(pg.cluster_name()),
            object_labels(config, pg),
            inherited_annotations(config, pg),
            owner,
        ),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(max_unavailable),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

/// Both PDBs.
pub fn pdbs(
    config: &Config,
    pg: &Postgresql,
    owner: Option<&OwnerReference>,
) -> Vec<PodDisruptionBudget> {
    vec![primary(config, pg, owner), critical_op(config, pg, owner)]
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn min_available(pdb: &PodDisruptionBudget) -> Option<IntOrString> {
        pdb.spec.as_ref()?.min_available.clone()
    }

    fn max_unavailable(pdb: &PodDisruptionBudget) -> Option<IntOrString> {
        pdb.spec.as_ref()?.max_unavailable.clone()
    }

    fn selector(pdb: &PodDisruptionBudget) -> Vec<(String, String)> {
        let labels = pdb
            .spec
            .as_ref()
            .unwrap()
            .selector
            .as_ref()
            .unwrap()
            .match_labels
            .clone();
        labels.unwrap().into_iter().collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_selectors_and_defaults() {
        let pg = minimal();
        let [primary, critical] = <[_; 2]>::try_from(pdbs(&config(), &pg, None)).unwrap();
        assert_eq!(
            primary.metadata.name.as_deref(),
            Some("postgres-acid-minimal-cluster-pdb")
        );
        assert_eq!(
            critical.metadata.name.as_deref(),
            Some("postgres-acid-minimal-cluster-critical-op-pdb")
        );
        assert_eq!(min_available(&primary), Some(IntOrString::Int(1)));
        assert_eq!(max_unavailable(&critical), Some(IntOrString::Int(0)));
        assert_eq!(
            selector(&primary),
            pairs(&[
                ("application", "spilo"),
                ("cluster-name", "acid-minimal-cluster"),
                ("spilo-role", "master")
            ])
        );
        assert_eq!(
            selector(&critical),
            pairs(&[
                ("application", "spilo"),
                ("cluster-name", "acid-minimal-cluster"),
                ("critical-operation", "true")
            ])
        );
        assert_eq!(primary.metadata.labels.as_ref().unwrap()["team"], "acid");
    }

    #[test]
    fn relaxed_when_disabled_or_no_instances() {
        let mut pg = minimal();
        pg.spec.number_of_instances = 0;
        let [first, critical] = <[_; 2]>::try_from(pdbs(&config(), &pg, None)).unwrap();
        assert_eq!(min_available(&first), Some(IntOrString::Int(0)));
        assert_eq!(
            max_unavailable(&critical),
            Some(IntOrString::String("100%".into()))
        );

        let mut config = config();
        config.kubernetes.enable_pod_disruption_budget = false;
        config.kubernetes.pdb_master_label_selector = false;
        config.kubernetes.pdb_name_format = "{cluster}-budget".into();
        let primary = primary(&config, &minimal(), None);
        assert_eq!(
            primary.metadata.name.as_deref(),
            Some("acid-minimal-cluster-budget")
        );
        assert_eq!(min_available(&primary), Some(IntOrString::Int(0)));
        assert!(!selector(&primary).iter().any(|(k, _)| k == "spilo-role"));
    }
}
