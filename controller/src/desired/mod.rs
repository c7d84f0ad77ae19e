//! Pure builders of a cluster's child objects (Zalando's `k8sres.go` shapes and names).
//!
//! Nothing here talks to the API server: [`build`] turns the configuration and one `postgresql`
//! into the desired objects of every kind of the children table ([`crate::children`]): the
//! StatefulSet, Services, Endpoints, PodDisruptionBudgets, the user Secrets (created once, never
//! updated) and the per-namespace ServiceAccount and RoleBinding of the database pods.
//!
//! Quantities are emitted in the API server's canonical form ([`common::quantity::canonical`]), so a
//! StatefulSet read back from the server compares equal to a freshly built one.

pub(crate) mod env;
pub mod pdb;
pub mod rbac;
mod resources;
pub mod secrets;
pub mod services;
mod sources;
pub(crate) mod spilo;
pub mod statefulset;
mod volumes;

pub use rbac::{pod_role_binding, pod_service_account};
pub use secrets::{password, secrets};

use common::config::Config;
use common::crd::Postgresql;
use common::rules::admission::Validated;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::BTreeMap;

pub use crate::children::Desired;

/// A manifest or configuration value the builders cannot turn into an object. Each message names
/// the field or option and the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A resource quantity that does not parse.
    #[error("{field}: {value:?} is not a valid Kubernetes quantity")]
    InvalidQuantity {
        /// Manifest field or configuration option.
        field: String,
        /// The value as written.
        value: String,
    },
    /// A configuration option with a value the builders do not know.
    #[error("configuration option {option}: {value:?} is invalid: {expected}")]
    InvalidOption {
        /// Option name.
        option: String,
        /// The value as written.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A manifest field with a value the builders cannot use.
    #[error("{field}: {value:?} is invalid: {expected}")]
    InvalidField {
        /// Manifest field.
        field: String,
        /// The value as written.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A manifest feature switched off in the configuration.
    #[error("{field} is set but {option} is false in the operator configuration")]
    Disabled {
        /// Manifest field.
        field: String,
        /// Configuration option that disables it.
        option: String,
    },
}

/// Builds every desired object of a cluster, one list per kind of the children table.
///
/// `owner`: `Some` when `enable_owner_references` is on (a controller reference to the
/// `postgresql`); it goes on every built object except the PVC template and the per-namespace
/// pod ServiceAccount and RoleBinding, which other clusters share. Secrets carry fresh random
/// passwords: they are only ever created, never compared.
pub fn build(
    config: &Config,
    valid: &Validated<'_>,
    owner: Option<&OwnerReference>,
) -> Result<Desired, BuildError> {
    let pg = valid.pg;
    let namespace = namespace(pg);
    Ok(Desired {
        service_accounts: vec![pod_service_account(config, namespace)?],
        role_bindings: vec![pod_role_binding(config, namespace)?],
        secrets: secrets(config, pg, owner),
        services: services::services(config, valid, owner),
        endpoints: services::endpoints(config, pg, owner),
        pdbs: pdb::pdbs(config, pg, owner),
        statefulsets: vec![statefulset::statefulset(config, valid, owner)?],
    })
}

/// Patroni keeps its state in ConfigMaps (Zalando's `patroniKubernetesUseConfigMaps`): only when
/// it uses the Kubernetes API as DCS at all (no `etcd_host`) and `kubernetes_use_configmaps` is on.
pub fn uses_configmaps(config: &Config) -> bool {
    config.etcd_host.is_empty() && config.kubernetes_use_configmaps
}

/// Metadata of a child in the cluster's namespace.
pub(crate) fn meta(
    pg: &Postgresql,
    name: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    owner: Option<&OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: pg.metadata.namespace.clone(),
        labels: Some(labels),
        annotations: non_empty(annotations),
        owner_references: owner.map(|o| vec![o.clone()]),
        ..ObjectMeta::default()
    }
}

/// `None` for an empty map, so a built object carries no field the API server would drop.
pub(crate) fn non_empty<K: Ord, V>(map: BTreeMap<K, V>) -> Option<BTreeMap<K, V>> {
    (!map.is_empty()).then_some(map)
}

/// The cluster namespace (`default` when the manifest has none, as the API server would set).
pub(crate) fn namespace(pg: &Postgresql) -> &str {
    pg.metadata.namespace.as_deref().unwrap_or("default")
}

#[cfg(test)]
pub(crate) mod fixtures {
    use common::config::Config;
    use common::crd::Postgresql;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    pub const MINIMAL: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/minimal-postgres-manifest.yaml"
    ));
    pub const COMPLETE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/complete-postgres-manifest.yaml"
    ));
    pub const FIXTURE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/desired/cluster.yaml"
    ));

    /// Parses a manifest and gives it a namespace and uid as the API server would.
    pub fn pg(yaml: &str) -> Postgresql {
        let mut pg: Postgresql = serde_yaml::from_str(yaml).expect("fixture parses");
        pg.metadata
            .namespace
            .get_or_insert_with(|| "default".into());
        pg.metadata
            .uid
            .get_or_insert_with(|| "0c4b6f0e-1111-2222-3333-444455556666".into());
        pg
    }

    pub fn minimal() -> Postgresql {
        pg(MINIMAL)
    }

    pub fn complete() -> Postgresql {
        pg(COMPLETE)
    }

    pub fn fixture() -> Postgresql {
        pg(FIXTURE)
    }

    pub fn config() -> Config {
        Config::default()
    }

    pub fn owner(pg: &Postgresql) -> OwnerReference {
        OwnerReference {
            api_version: "acid.zalan.do/v1".into(),
            kind: "postgresql".into(),
            name: pg.cluster_name().into(),
            uid: pg.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn owner_references_on_every_object_but_pvc_templates() {
        let pg = minimal();
        let reference = owner(&pg);
        let desired = build(
            &config(),
            &Validated::trusted(&config(), &pg),
            Some(&reference),
        )
        .unwrap();
        let expected = Some(vec![reference]);
        assert_eq!(desired.statefulsets[0].metadata.owner_references, expected);
        assert!(
            desired
                .secrets
                .iter()
                .all(|s| s.metadata.owner_references == expected)
        );
        assert!(
            desired.service_accounts[0]
                .metadata
                .owner_references
                .is_none()
        );
        let templates = desired.statefulsets[0]
            .spec
            .as_ref()
            .unwrap()
            .volume_claim_templates
            .as_ref()
            .unwrap();
        assert!(
            templates
                .iter()
                .all(|t| t.metadata.owner_references.is_none())
        );
        assert!(
            desired
                .services
                .iter()
                .all(|s| s.metadata.owner_references == expected)
        );
        assert!(
            desired
                .pdbs
                .iter()
                .all(|p| p.metadata.owner_references == expected)
        );

        let desired = build(&config(), &Validated::trusted(&config(), &pg), None).unwrap();
        assert!(desired.statefulsets[0].metadata.owner_references.is_none());
        assert!(
            desired
                .services
                .iter()
                .all(|s| s.metadata.owner_references.is_none())
        );
    }

    #[test]
    fn complete_manifest_builds() {
        let desired = build(&config(), &Validated::trusted(&config(), &complete()), None).unwrap();
        assert_eq!(desired.statefulsets.len(), 1);
        assert_eq!(desired.services.len(), 2);
        assert_eq!(desired.pdbs.len(), 2);
        assert_eq!(
            (desired.service_accounts.len(), desired.role_bindings.len()),
            (1, 1)
        );
        // ConfigMaps are the default DCS store: no Endpoints.
        assert!(desired.endpoints.is_empty());
    }
}
