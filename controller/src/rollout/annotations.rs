//! The pod template's annotations reach running pods without recreating them, as in Zalando
//! (which patches them onto the pods when only they changed).
//!
//! The template carries a digest of its other annotations ([`DIGEST`]), so a pod tells which
//! annotations it got — from the template when it was created, or from the last patch — through
//! one annotation the pod cache keeps: a sync of an unchanged cluster compares digests and makes
//! no call. Like Zalando's merge patch, a patch adds and changes annotations and removes none (an
//! annotation dropped from the template stays on running pods until they are recreated).

use crate::context::Context;
use common::crd::Postgresql;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use std::collections::BTreeMap;

/// The annotation with the digest of the template's other annotations.
pub const DIGEST: &str = "postgres-operator.acid.zalan.do/pod-annotations";

/// The digest of `annotations` without [`DIGEST`].
pub fn digest(annotations: &BTreeMap<String, String>) -> String {
    let mut others = annotations.clone();
    others.remove(DIGEST);
    crate::apply::digest(&serde_json::to_value(&others).unwrap_or_default())
}

/// Adds the digest of the annotations to them (for the pod template).
pub fn stamp(annotations: &mut BTreeMap<String, String>) {
    let value = digest(annotations);
    annotations.insert(DIGEST.into(), value);
}

/// The annotations to patch onto `pod`, when the template's (`template`, stamped) are not the
/// ones it got; never for a pod that is being deleted or waits to be recreated.
pub fn to_patch<'a>(
    template: &'a BTreeMap<String, String>,
    pod: &Pod,
) -> Option<&'a BTreeMap<String, String>> {
    if pod.metadata.deletion_timestamp.is_some() || crate::members::is_flagged(pod) {
        return None;
    }
    let has = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DIGEST));
    (has != template.get(DIGEST)).then_some(template)
}

/// Patches the annotations of `sts`'s pod template onto the cluster's pods that did not get
/// them; returns how many pods were patched.
pub async fn sync(
    ctx: &Context,
    pg: &Postgresql,
    sts: &StatefulSet,
) -> Result<usize, super::Error> {
    let Some(spec) = &sts.spec else {
        return Ok(0);
    };
    let Some(template) = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
    else {
        return Ok(0);
    };
    let namespace = pg.namespace().unwrap_or_default();
    let instances = spec.replicas.unwrap_or(1).max(0) as usize;
    let pods = super::pods(ctx, &namespace, pg.cluster_name(), instances);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut patched = 0;
    for pod in &pods {
        let Some(annotations) = to_patch(template, pod) else {
            continue;
        };
        let name = pod.name_any();
        let patch = serde_json::json!({"metadata": {"annotations": annotations}});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                ctx.metrics.wrote("pods");
                patched += 1;
            }
            // Gone meanwhile: its successor is created from the template.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => {
                return Err(super::Error::Api {
                    what: format!("patching the pod template's annotations onto pod {name}"),
                    source,
                });
            }
        }
    }
    if patched > 0 {
        tracing::info!(cluster = %pg.name_any(), patched, "pod template annotations patched onto running pods");
    }
    Ok(patched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stamped(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut a: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        stamp(&mut a);
        a
    }

    fn pod(annotations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "acid-0", "annotations": annotations}}))
            .unwrap()
    }

    #[test]
    fn the_digest_follows_the_other_annotations_only() {
        let a = stamped(&[("prometheus.io/scrape", "true")]);
        assert_eq!(digest(&a), a[DIGEST], "stamping is stable");
        assert_ne!(
            a[DIGEST],
            stamped(&[("prometheus.io/scrape", "false")])[DIGEST]
        );
        assert_ne!(a[DIGEST], stamped(&[])[DIGEST]);
    }

    #[test]
    fn only_pods_with_another_digest_are_patched() {
        let template = stamped(&[("a", "1")]);
        let current = pod(json!({"a": "1", DIGEST: template[DIGEST], "status": "{}"}));
        assert_eq!(to_patch(&template, &current), None);
        let old = pod(json!({"a": "0", DIGEST: "older"}));
        assert_eq!(to_patch(&template, &old), Some(&template));
        assert_eq!(
            to_patch(&template, &pod(json!({}))),
            Some(&template),
            "a pod from before the digest"
        );
        let flagged = pod(json!({crate::members::ROLLING_UPDATE_ANNOTATION: "true"}));
        assert_eq!(
            to_patch(&template, &flagged),
            None,
            "it is recreated anyway"
        );
    }
}
