//! Which changes of the pod template recreate pods: a fingerprint of the template without
//! what reaches running pods another way, kept on the StatefulSet ([`FINGERPRINT`]). When the
//! fingerprint of the desired template differs from the one the StatefulSet carries, every
//! pod is flagged for the rolling update — before the StatefulSet is written, so a crash in
//! between loses nothing.
//!
//! Left out, as in Zalando's comparison: the template's annotations (patched onto running
//! pods), the `bootstrap.dcs` part of `SPILO_CONFIGURATION` (applied through Patroni's REST
//! API) and, with `enable_lazy_spilo_upgrade`, the `postgres` container's image (picked up
//! when a pod is recreated for another reason). A fingerprint rather than a comparison with
//! the live template: the server adds defaults to the live one, and a removed field (an env
//! variable, a limit) must count as a change too.

use crate::members::POSTGRES_CONTAINER;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

/// The StatefulSet annotation carrying the fingerprint of its pod template.
pub const FINGERPRINT: &str = "postgres-operator.acid.zalan.do/pod-template-fingerprint";

/// The fingerprint of `template`.
pub fn fingerprint(template: &PodTemplateSpec, lazy_image: bool) -> String {
    let mut value = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("annotations");
    }
    if let Some(containers) = value
        .pointer_mut("/spec/containers")
        .and_then(Value::as_array_mut)
    {
        for container in containers {
            let is_postgres = container["name"] == POSTGRES_CONTAINER;
            let Some(container) = container.as_object_mut() else {
                continue;
            };
            if is_postgres && lazy_image {
                container.remove("image");
            }
            if let Some(env) = container.get_mut("env").and_then(Value::as_array_mut) {
                for var in env {
                    if var["name"] == "SPILO_CONFIGURATION" {
                        strip_dcs(var);
                    }
                }
            }
        }
    }
    crate::apply::digest(&value)
}

fn strip_dcs(var: &mut Value) {
    let Some(text) = var["value"].as_str() else {
        return;
    };
    let Ok(mut spilo) = serde_json::from_str::<Value>(text) else {
        return;
    };
    if let Some(bootstrap) = spilo.get_mut("bootstrap").and_then(Value::as_object_mut) {
        bootstrap.remove("dcs");
    }
    var["value"] = Value::String(spilo.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(image: &str, cpu: &str, dcs_ttl: u32, annotation: &str) -> PodTemplateSpec {
        let spilo = json!({"bootstrap": {"dcs": {"ttl": dcs_ttl}, "initdb": ["data-checksums"]},
            "postgresql": {"parameters": {"shared_buffers": "128MB"}}});
        serde_json::from_value(json!({
            "metadata": {"labels": {"application": "spilo"}, "annotations": {"a": annotation}},
            "spec": {"containers": [{
                "name": "postgres", "image": image,
                "resources": {"requests": {"cpu": cpu}},
                "env": [{"name": "SPILO_CONFIGURATION", "value": spilo.to_string()}]
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn what_reaches_pods_another_way_does_not_change_the_fingerprint() {
        let base = fingerprint(&template("spilo:1", "100m", 30, "x"), false);
        assert_eq!(
            base,
            fingerprint(&template("spilo:1", "100m", 20, "x"), false)
        );
        assert_eq!(
            base,
            fingerprint(&template("spilo:1", "100m", 30, "y"), false)
        );
        assert_ne!(
            base,
            fingerprint(&template("spilo:1", "200m", 30, "x"), false)
        );
        assert_ne!(
            base,
            fingerprint(&template("spilo:2", "100m", 30, "x"), false)
        );
    }

    #[test]
    fn a_lazy_image_change_recreates_nothing() {
        assert_eq!(
            fingerprint(&template("spilo:1", "100m", 30, "x"), true),
            fingerprint(&template("spilo:2", "100m", 30, "x"), true)
        );
    }

    #[test]
    fn a_local_parameter_and_a_removed_field_change_it() {
        let mut changed = template("spilo:1", "100m", 30, "x");
        let env = &mut changed.spec.as_mut().unwrap().containers[0]
            .env
            .as_mut()
            .unwrap()[0];
        let spilo = env.value.as_ref().unwrap().replace("128MB", "256MB");
        env.value = Some(spilo);
        let base = fingerprint(&template("spilo:1", "100m", 30, "x"), false);
        assert_ne!(base, fingerprint(&changed, false));
        let mut removed = template("spilo:1", "100m", 30, "x");
        removed.spec.as_mut().unwrap().containers[0].resources = None;
        assert_ne!(base, fingerprint(&removed, false));
    }
}
