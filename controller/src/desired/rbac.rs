//! The per-namespace ServiceAccount and RoleBinding of the database pods (Zalando's
//! `initPodServiceAccount`, `initRoleBinding`).
//!
//! Definitions are YAML or JSON (JSON is YAML). The ServiceAccount's name is always
//! `pod_service_account_name` (Zalando overrides a differing definition name the same way); the
//! default RoleBinding is named after the ServiceAccount and binds the ClusterRole of the same
//! name (`postgres-pod` by default). A ServiceAccount subject without a namespace gets the
//! binding's namespace, which is what the API server assumes for it anyway.

use super::BuildError;
use common::config::Config;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;

/// Annotation of the IRSA role on the ServiceAccount.
pub const IRSA_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

fn parse<T: DeserializeOwned>(option: &str, text: &str, kind: &str) -> Result<T, BuildError> {
    let error = |expected: String| BuildError::InvalidOption {
        option: option.into(),
        value: text.into(),
        expected,
    };
    let value: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| error(format!("expected YAML or JSON: {e}")))?;
    let found = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default();
    if found != kind {
        return Err(error(format!("expected kind {kind}, found {found:?}")));
    }
    serde_yaml::from_value(value).map_err(|e| error(format!("expected a valid {kind}: {e}")))
}

/// The pod ServiceAccount for `namespace`.
pub fn pod_service_account(config: &Config, namespace: &str) -> Result<ServiceAccount, BuildError> {
    let k8s = &config.kubernetes;
    let mut account = if k8s.pod_service_account_definition.trim().is_empty() {
        ServiceAccount::default()
    } else {
        parse(
            "pod_service_account_definition",
            &k8s.pod_service_account_definition,
            "ServiceAccount",
        )?
    };
    account.metadata.name = Some(k8s.pod_service_account_name.clone());
    account.metadata.namespace = Some(namespace.to_string());
    if !config.aws_or_gcp.irsa_role_arn.is_empty() {
        account
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                IRSA_ANNOTATION.into(),
                config.aws_or_gcp.irsa_role_arn.clone(),
            );
    }
    Ok(account)
}

/// The RoleBinding of the pod ServiceAccount for `namespace`.
pub fn pod_role_binding(config: &Config, namespace: &str) -> Result<RoleBinding, BuildError> {
    let k8s = &config.kubernetes;
    let account = &k8s.pod_service_account_name;
    let mut binding = if k8s
        .pod_service_account_role_binding_definition
        .trim()
        .is_empty()
    {
        RoleBinding {
            metadata: ObjectMeta {
                name: Some(account.clone()),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: account.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: account.clone(),
                ..Subject::default()
            }]),
        }
    } else {
        let binding: RoleBinding = parse(
            "pod_service_account_role_binding_definition",
            &k8s.pod_service_account_role_binding_definition,
            "RoleBinding",
        )?;
        if binding
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .is_empty()
        {
            return Err(BuildError::InvalidOption {
                option: "pod_service_account_role_binding_definition".into(),
                value: k8s.pod_service_account_role_binding_definition.clone(),
                expected: "expected metadata.name".into(),
            });
        }
        binding
    };
    binding.metadata.namespace = Some(namespace.to_string());
    for subject in binding.subjects.iter_mut().flatten() {
        if subject.kind == "ServiceAccount"
            && subject.namespace.as_deref().unwrap_or_default().is_empty()
        {
            subject.namespace = Some(namespace.to_string());
        }
    }
    Ok(binding)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::config;
    use super::*;

    #[test]
    fn defaults() {
        let account = pod_service_account(&config(), "prod").unwrap();
        assert_eq!(account.metadata.name.as_deref(), Some("postgres-pod"));
        assert_eq!(account.metadata.namespace.as_deref(), Some("prod"));
        assert!(account.metadata.annotations.is_none());

        let binding = pod_role_binding(&config(), "prod").unwrap();
        assert_eq!(binding.metadata.name.as_deref(), Some("postgres-pod"));
        assert_eq!(binding.metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(binding.role_ref.kind, "ClusterRole");
        assert_eq!(binding.role_ref.name, "postgres-pod");
        let subject = &binding.subjects.as_ref().unwrap()[0];
        assert_eq!(subject.kind, "ServiceAccount");
        assert_eq!(subject.name, "postgres-pod");
        assert_eq!(subject.namespace.as_deref(), Some("prod"));
    }

    #[test]
    fn from_definitions() {
        let mut config = config();
        config.kubernetes.pod_service_account_name = "pg-pod".into();
        config.kubernetes.pod_service_account_definition = r#"{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"other","annotations":{"a":"b"}},"automountServiceAccountToken":false}"#.into();
        config
            .kubernetes
            .pod_service_account_role_binding_definition = "
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: pg-pod-binding}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: custom-role}
subjects:
- {kind: ServiceAccount, name: pg-pod}
- {kind: ServiceAccount, name: elsewhere, namespace: other}
"
        .into();
        config.aws_or_gcp.irsa_role_arn = "arn:aws:iam::1:role/pg".into();
        let account = pod_service_account(&config, "prod").unwrap();
        assert_eq!(account.metadata.name.as_deref(), Some("pg-pod"));
        assert_eq!(account.automount_service_account_token, Some(false));
        let annotations = account.metadata.annotations.unwrap();
        assert_eq!(annotations["a"], "b");
        assert_eq!(annotations[IRSA_ANNOTATION], "arn:aws:iam::1:role/pg");

        let binding = pod_role_binding(&config, "prod").unwrap();
        assert_eq!(binding.metadata.name.as_deref(), Some("pg-pod-binding"));
        assert_eq!(binding.role_ref.name, "custom-role");
        let subjects = binding.subjects.unwrap();
        assert_eq!(subjects[0].namespace.as_deref(), Some("prod"));
        assert_eq!(subjects[1].namespace.as_deref(), Some("other"));
    }

    #[test]
    fn bad_definitions_name_the_option() {
        let mut config = config();
        config.kubernetes.pod_service_account_definition = "kind: Pod\nmetadata: {name: x}".into();
        let err = pod_service_account(&config, "prod")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("configuration option pod_service_account_definition: "),
            "{err}"
        );
        assert!(
            err.contains("expected kind ServiceAccount, found \"Pod\""),
            "{err}"
        );

        config
            .kubernetes
            .pod_service_account_role_binding_definition = "{not yaml".into();
        let err = pod_role_binding(&config, "prod").unwrap_err().to_string();
        assert!(
            err.starts_with("configuration option pod_service_account_role_binding_definition: "),
            "{err}"
        );
    }
}
