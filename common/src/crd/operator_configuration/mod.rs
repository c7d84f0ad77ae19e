//! The `OperatorConfiguration` custom resource and the typed operator configuration [`Config`].
//!
//! One struct serves both forms Zalando reads: the CRD's nested `configuration:` object is
//! [`Config`] itself, and a ConfigMap's flat keys are mapped onto the same fields by
//! [`crate::config::configmap`]. Defaults are those of Zalando's code (`pkg/util/config`), not of
//! its docs or shipped example manifests; each disagreement is noted on the field.

mod groups;

pub use groups::*;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Configuration of the operator (Zalando-compatible `OperatorConfiguration`).
// Each printcolumn(...) repeats `type_ = "string"`, which clippy mistakes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "acid.zalan.do",
    version = "v1",
    kind = "OperatorConfiguration",
    plural = "operatorconfigurations",
    singular = "operatorconfiguration",
    shortname = "opconfig",
    category = "all",
    namespaced,
    no_spec,
    derive = "Default",
    derive = "PartialEq",
    doc = "Configuration of the Postgres operator, read at start and watched for changes.",
    label("app.kubernetes.io/name", "postgres-operator"),
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".configuration.docker_image",
        description = "Spilo image to use for Pods"
    ),
    printcolumn(
        name = "Cluster-Label",
        type_ = "string",
        json_path = ".configuration.kubernetes.cluster_name_label",
        description = "Label for K8s resources created by operator"
    ),
    printcolumn(
        name = "Service-Account",
        type_ = "string",
        json_path = ".configuration.kubernetes.pod_service_account_name",
        description = "Name of service account to be used"
    ),
    printcolumn(
        name = "Min-Instances",
        type_ = "integer",
        json_path = ".configuration.min_instances",
        description = "Minimum number of instances per Postgres cluster"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct OperatorConfigurationFields {
    /// The operator configuration, grouped as in Zalando's operator_parameters reference.
    #[serde(default)]
    pub configuration: Config,
}
