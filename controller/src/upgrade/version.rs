//! The major version in the pods' template, and holding a changed one until a maintenance
//! window opens.
//!
//! Spilo learns the major to run from `PGVERSION` (or, with `enable_pgversion_env_var` off,
//! from `postgresql.bin_dir` in `SPILO_CONFIGURATION`); a changed value rolls the pods, which keep
//! running the old major on their data until the upgrade script runs. Zalando keeps the old
//! version in the pod template while no maintenance window is open, so neither the rolling
//! update nor the upgrade happens outside one; the same here, decided from the pods: the version
//! is held only while no pod carries the new one yet (a rolling update begun in a window is
//! finished, never turned back).

use common::maintenance::Gate;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

use crate::members::POSTGRES_CONTAINER;

/// The variable Spilo reads the major from.
pub const PGVERSION: &str = "PGVERSION";
/// The variable holding Spilo's configuration (with `bin_dir` when `PGVERSION` is not used).
pub const SPILO_CONFIGURATION: &str = "SPILO_CONFIGURATION";

fn postgres(containers: &[Container]) -> Option<&Container> {
    containers.iter().find(|c| c.name == POSTGRES_CONTAINER)
}

fn env<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

/// The major in a `bin_dir` such as `/usr/lib/postgresql/15/bin`.
fn major_of_bin_dir(bin_dir: &str) -> Option<String> {
    let major = bin_dir
        .trim_end_matches('/')
        .strip_suffix("/bin")?
        .rsplit('/')
        .next()?;
    (!major.is_empty() && major.bytes().all(|b| b.is_ascii_digit())).then(|| major.to_string())
}

fn bin_dir(spilo_configuration: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(spilo_configuration).ok()?;
    value["postgresql"]["bin_dir"].as_str().map(str::to_string)
}

/// The major a container is told to run: `PGVERSION`, else the major of `bin_dir`.
pub fn container_major(container: &Container) -> Option<String> {
    if let Some(v) = env(container, PGVERSION) {
        return Some(v.trim().to_string());
    }
    major_of_bin_dir(&bin_dir(env(container, SPILO_CONFIGURATION)?)?)
}

/// The major a pod's postgres container is told to run.
pub fn pod_major(pod: &Pod) -> Option<String> {
    container_major(postgres(&pod.spec.as_ref()?.containers)?)
}

/// Of a postgres container's environment, what [`container_major`] reads (for the slimmed pod
/// cache): `PGVERSION`, and `SPILO_CONFIGURATION` cut down to its `bin_dir`.
pub fn slim_env(container: &Container) -> Option<Vec<EnvVar>> {
    let mut kept = Vec::new();
    if let Some(v) = env(container, PGVERSION) {
        kept.push(EnvVar {
            name: PGVERSION.into(),
            value: Some(v.to_string()),
            value_from: None,
        });
    }
    if let Some(dir) = env(container, SPILO_CONFIGURATION).and_then(bin_dir) {
        kept.push(EnvVar {
            name: SPILO_CONFIGURATION.into(),
            value: Some(serde_json::json!({"postgresql": {"bin_dir": dir}}).to_string()),
            value_from: None,
        });
    }
    (!kept.is_empty()).then_some(kept)
}

/// The major to keep in the template instead of `desired`, if any: outside the maintenance
/// windows, while every pod still carries one same older value. `pods` are the majors of the
/// cluster's pods (`None` for a pod without one).
pub fn held(desired: &str, pods: &[Option<String>], gate: Gate) -> Option<String> {
    if gate == Gate::Open {
        return None;
    }
    let first = pods.first()?.clone()?;
    if first == desired || pods.iter().any(|p| p.as_deref() != Some(first.as_str())) {
        return None;
    }
    Some(first)
}

/// Writes `major` into the template's postgres container: `PGVERSION`, or the major of
/// `bin_dir` in `SPILO_CONFIGURATION` (whichever the template uses), and the template's
/// fingerprint again (`lazy_image`: `enable_lazy_spilo_upgrade`), so the held template is the
/// one of the old version in every respect and recreates no pod.
pub fn hold(sts: &mut StatefulSet, major: &str, lazy_image: bool) {
    set_major(sts, major);
    if let Some(template) = sts.spec.as_ref().map(|s| &s.template) {
        let fingerprint = crate::rollout::template::fingerprint(template, lazy_image);
        sts.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(crate::rollout::template::FINGERPRINT.into(), fingerprint);
    }
}

fn set_major(sts: &mut StatefulSet, major: &str) {
    let Some(spec) = sts.spec.as_mut().and_then(|s| s.template.spec.as_mut()) else {
        return;
    };
    let Some(container) = spec
        .containers
        .iter_mut()
        .find(|c| c.name == POSTGRES_CONTAINER)
    else {
        return;
    };
    for var in container.env.iter_mut().flatten() {
        match var.name.as_str() {
            PGVERSION => var.value = Some(major.to_string()),
            SPILO_CONFIGURATION => {
                let Some(mut value) = var
                    .value
                    .as_deref()
                    .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
                else {
                    continue;
                };
                if value["postgresql"]["bin_dir"].is_string() {
                    value["postgresql"]["bin_dir"] =
                        format!("/usr/lib/postgresql/{major}/bin").into();
                    var.value = Some(value.to_string());
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    fn closed() -> Gate {
        Gate::Closed {
            next: Utc.with_ymd_and_hms(2026, 12, 7, 1, 0, 0).unwrap(),
        }
    }

    fn v(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn a_change_is_held_only_outside_windows_and_before_any_pod_has_it() {
        assert_eq!(held("15", &[v("14"), v("14")], closed()), v("14"));
        assert_eq!(held("15", &[v("14"), v("14")], Gate::Open), None);
        assert_eq!(
            held("15", &[v("15"), v("14")], closed()),
            None,
            "begun in a window: finished"
        );
        assert_eq!(held("15", &[v("14"), v("15")], closed()), None);
        assert_eq!(held("15", &[v("15"), v("15")], closed()), None);
        assert_eq!(held("15", &[], closed()), None, "a new cluster");
        assert_eq!(held("15", &[None], closed()), None);
    }

    fn container(env: serde_json::Value) -> Container {
        serde_json::from_value(json!({"name": "postgres", "env": env})).unwrap()
    }

    #[test]
    fn the_major_comes_from_pgversion_or_bin_dir() {
        let c = container(json!([{"name": "PGVERSION", "value": "16"}]));
        assert_eq!(container_major(&c), v("16"));
        let spilo =
            json!({"postgresql": {"bin_dir": "/usr/lib/postgresql/17/bin", "parameters": {}}});
        let c = container(json!([{"name": "SPILO_CONFIGURATION", "value": spilo.to_string()}]));
        assert_eq!(container_major(&c), v("17"));
        let slim = slim_env(&c).unwrap();
        assert_eq!(container_major(&container(json!(slim))), v("17"));
        assert_eq!(container_major(&container(json!([]))), None);
        assert_eq!(major_of_bin_dir("/usr/lib/postgresql/x/bin"), None);
    }

    #[test]
    fn hold_rewrites_what_the_template_uses() {
        let spilo = json!({"postgresql": {"bin_dir": "/usr/lib/postgresql/15/bin"}});
        let mut sts: StatefulSet = serde_json::from_value(json!({"spec": {
        "selector": {}, "serviceName": "x",
        "template": {"spec": {"containers": [
            {"name": "postgres", "env": [
                {"name": "PGVERSION", "value": "15"},
                {"name": "SPILO_CONFIGURATION", "value": spilo.to_string()}]},
            {"name": "sidecar", "env": [{"name": "PGVERSION", "value": "15"}]}
        ]}}}}))
        .unwrap();
        hold(&mut sts, "14", false);
        let containers = &sts.spec.unwrap().template.spec.unwrap().containers;
        assert_eq!(env(&containers[0], PGVERSION), Some("14"));
        assert_eq!(
            bin_dir(env(&containers[0], SPILO_CONFIGURATION).unwrap()).as_deref(),
            Some("/usr/lib/postgresql/14/bin")
        );
        assert_eq!(
            env(&containers[1], PGVERSION),
            Some("15"),
            "sidecars untouched"
        );
    }

    #[test]
    fn a_held_template_is_the_old_versions_fingerprint_included() {
        use crate::desired::fixtures::pg;
        use common::config::Config;
        use common::rules::admission::Validated;
        let config = Config::default();
        let old = pg(crate::desired::fixtures::MINIMAL);
        let mut new = old.clone();
        new.spec.postgresql.version = "18".into();
        new.spec.maintenance_windows = Some(vec!["01:00-02:00".into()]);
        let build = |pg| crate::desired::build(&config, &Validated::trusted(&config, pg), None);
        let before = build(&old).unwrap().statefulsets.remove(0);
        let mut held = build(&new).unwrap().statefulsets.remove(0);
        assert_ne!(before, held);
        hold(&mut held, &old.spec.postgresql.version, false);
        assert_eq!(before.spec, held.spec);
        assert_eq!(before.metadata.annotations, held.metadata.annotations);
    }
}
