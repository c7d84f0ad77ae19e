//! The deployment manifests keep the properties a production webhook needs.

use serde_json::Value;
use std::path::Path;

fn documents(file: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/webhook")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("${CA_BUNDLE}", "Q0E=");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let value: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
            serde_json::to_value(value).unwrap()
        })
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn webhook_configurations() {
    let docs = documents("webhook-configuration.yaml");
    for (kind_name, index, operations) in [
        ("MutatingWebhookConfiguration", 0, vec!["CREATE", "UPDATE"]),
        (
            "ValidatingWebhookConfiguration",
            0,
            vec!["CREATE", "UPDATE"],
        ),
        ("ValidatingWebhookConfiguration", 1, vec!["DELETE"]),
    ] {
        let hook = &kind(&docs, kind_name)["webhooks"][index];
        assert_eq!(hook["admissionReviewVersions"], serde_json::json!(["v1"]));
        assert_eq!(hook["sideEffects"], "None");
        assert_eq!(hook["matchPolicy"], "Equivalent");
        assert!(hook["timeoutSeconds"].as_u64().unwrap() <= 5);
        let rule = &hook["rules"][0];
        assert_eq!(rule["resources"], serde_json::json!(["postgresqls"]));
        assert_eq!(rule["apiGroups"], serde_json::json!(["acid.zalan.do"]));
        assert_eq!(rule["operations"], serde_json::json!(operations));
        let excluded = &hook["namespaceSelector"]["matchExpressions"][0];
        assert_eq!(excluded["operator"], "NotIn");
        assert_eq!(
            excluded["values"],
            serde_json::json!(["kube-system", "postgres-operator"])
        );
    }
    // Creates and updates fail closed; deletes (delete protection) fail open, so a namespace
    // deletion that takes the webhook down never hangs.
    let validating = &kind(&docs, "ValidatingWebhookConfiguration")["webhooks"];
    assert_eq!(validating[0]["failurePolicy"], "Fail");
    assert_eq!(validating[1]["failurePolicy"], "Ignore");
}

#[test]
fn deployment_is_hardened_and_redundant() {
    let docs = documents("webhook.yaml");
    let deployment = kind(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert_eq!(kind(&docs, "Service")["spec"]["ports"][0]["port"], 443);
}
