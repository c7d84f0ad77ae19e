//! Resources of the postgres container (Zalando's `generateResourceRequirements`).
//!
//! Order: manifest values, then `postgres_pod_resources` defaults for what is missing ("" and "0"
//! mean unset); `min_cpu_limit`/`min_memory_limit` raise limits unless the manifest carries
//! `ignore_resources_limits_annotation_key: "true"`; `set_memory_request_to_limit` raises the
//! memory request to the limit; `max_cpu_request`/`max_memory_request` cap requests; finally a
//! request above its limit is lowered to the limit (the API server would refuse it otherwise).
//! Every quantity is emitted canonically ([`common::quantity::canonical`]).

use super::BuildError;
use common::config::Config;
use common::crd::Postgresql;
use common::crd::postgresql::{ResourceDescription, Resources};
use common::quantity;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::cmp::Ordering;
use std::collections::BTreeMap;

type List = BTreeMap<String, String>;

fn set(value: &Option<String>) -> Option<&str> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "0")
}

fn from_description(description: Option<&ResourceDescription>) -> List {
    let mut list = List::new();
    let Some(d) = description else {
        return list;
    };
    for (key, value) in [
        ("cpu", set(&d.cpu)),
        ("memory", set(&d.memory)),
        ("hugepages-2Mi", d.hugepages_2mi.as_deref()),
        ("hugepages-1Gi", d.hugepages_1gi.as_deref()),
    ] {
        if let Some(value) = value {
            list.insert(key.to_string(), value.to_string());
        }
    }
    list
}

fn fill(list: &mut List, key: &str, default: &str) {
    let default = default.trim();
    if !list.contains_key(key) && !default.is_empty() && default != "0" {
        list.insert(key.to_string(), default.to_string());
    }
}

fn check(field: &str, value: &str) -> Result<(), BuildError> {
    quantity::parse(value)
        .map(|_| ())
        .ok_or_else(|| BuildError::InvalidQuantity {
            field: field.to_string(),
            value: value.to_string(),
        })
}

/// Sets `list[key]` to `bound` when `keep(current vs bound)` says the current value is out of range.
fn bound(
    list: &mut List,
    key: &str,
    bound: &str,
    option: &str,
    out: Ordering,
) -> Result<(), BuildError> {
    let bound = bound.trim();
    if bound.is_empty() || bound == "0" {
        return Ok(());
    }
    check(option, bound)?;
    if let Some(current) = list.get(key)
        && quantity::cmp(current, bound) == Some(out)
    {
        list.insert(key.to_string(), bound.to_string());
    }
    Ok(())
}

fn to_quantities(
    list: List,
    prefix: &str,
) -> Result<Option<BTreeMap<String, Quantity>>, BuildError> {
    let mut out = BTreeMap::new();
    for (key, value) in list {
        let canonical = quantity::canonical(&value).ok_or_else(|| BuildError::InvalidQuantity {
            field: format!("{prefix}.{key}"),
            value: value.clone(),
        })?;
        out.insert(key, Quantity(canonical));
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Resources of the postgres container.
pub fn postgres(
    config: &Config,
    pg: &Postgresql,
) -> Result<Option<ResourceRequirements>, BuildError> {
    let defaults = &config.postgres_pod_resources;
    let spec = pg.spec.resources.as_ref();
    let mut requests = from_description(spec.and_then(|r| r.requests.as_ref()));
    let mut limits = from_description(spec.and_then(|r| r.limits.as_ref()));
    for (kind, list) in [("requests", &requests), ("limits", &limits)] {
        for (key, value) in list {
            check(&format!("spec.resources.{kind}.{key}"), value)?;
        }
    }
    fill(&mut requests, "cpu", &defaults.default_cpu_request);
    fill(&mut requests, "memory", &defaults.default_memory_request);
    fill(&mut limits, "cpu", &defaults.default_cpu_limit);
    fill(&mut limits, "memory", &defaults.default_memory_limit);

    let ignore_key = &config.ignore_resources_limits_annotation_key;
    let ignore = !ignore_key.is_empty() && pg.annotation(ignore_key) == Some("true");
    if !ignore {
        bound(
            &mut limits,
            "cpu",
            &defaults.min_cpu_limit,
            "min_cpu_limit",
            Ordering::Less,
        )?;
        bound(
            &mut limits,
            "memory",
            &defaults.min_memory_limit,
            "min_memory_limit",
            Ordering::Less,
        )?;
    }
    if config.set_memory_request_to_limit
        && let Some(limit) = limits.get("memory").cloned()
        && requests
            .get("memory")
            .is_none_or(|r| quantity::cmp(r, &limit) == Some(Ordering::Less))
    {
        requests.insert("memory".into(), limit);
    }
    bound(
        &mut requests,
        "cpu",
        &defaults.max_cpu_request,
        "max_cpu_request",
        Ordering::Greater,
    )?;
    bound(
        &mut requests,
        "memory",
        &defaults.max_memory_request,
        "max_memory_request",
        Ordering::Greater,
    )?;
    for key in ["cpu", "memory"] {
        if let Some(limit) = limits.get(key).cloned() {
            bound(&mut requests, key, &limit, "limit", Ordering::Greater)?;
        }
    }
    let requirements = ResourceRequirements {
        requests: to_quantities(requests, "requests")?,
        limits: to_quantities(limits, "limits")?,
        ..ResourceRequirements::default()
    };
    Ok((requirements.requests.is_some() || requirements.limits.is_some()).then_some(requirements))
}

/// Resources of a sidecar: its own values with the configured defaults filled in, no min/max.
pub fn sidecar(
    config: &Config,
    resources: Option<&Resources>,
    name: &str,
) -> Result<Option<ResourceRequirements>, BuildError> {
    let defaults = &config.postgres_pod_resources;
    let mut requests = from_description(resources.and_then(|r| r.requests.as_ref()));
    let mut limits = from_description(resources.and_then(|r| r.limits.as_ref()));
    fill(&mut requests, "cpu", &defaults.default_cpu_request);
    fill(&mut requests, "memory", &defaults.default_memory_request);
    fill(&mut limits, "cpu", &defaults.default_cpu_limit);
    fill(&mut limits, "memory", &defaults.default_memory_limit);
    let requirements = ResourceRequirements {
        requests: to_quantities(requests, &format!("sidecar {name} requests"))?,
        limits: to_quantities(limits, &format!("sidecar {name} limits"))?,
        ..ResourceRequirements::default()
    };
    Ok((requirements.requests.is_some() || requirements.limits.is_some()).then_some(requirements))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn get(r: &Option<BTreeMap<String, Quantity>>, key: &str) -> Option<String> {
        r.as_ref()?.get(key).map(|q| q.0.clone())
    }

    fn with_defaults() -> Config {
        let mut config = config();
        let d = &mut config.postgres_pod_resources;
        d.default_cpu_request = "100m".into();
        d.default_memory_request = "100Mi".into();
        d.default_cpu_limit = "1000m".into();
        d.default_memory_limit = "500Mi".into();
        config
    }

    #[test]
    fn no_defaults_no_resources() {
        assert_eq!(postgres(&config(), &minimal()).unwrap(), None);
    }

    #[test]
    fn defaults_fill_missing_values_canonically() {
        let r = postgres(&with_defaults(), &minimal()).unwrap().unwrap();
        assert_eq!(get(&r.requests, "cpu").as_deref(), Some("100m"));
        assert_eq!(get(&r.requests, "memory").as_deref(), Some("100Mi"));
        // "1000m" is emitted as the API server stores it.
        assert_eq!(get(&r.limits, "cpu").as_deref(), Some("1"));
        assert_eq!(get(&r.limits, "memory").as_deref(), Some("500Mi"));

        // The manifest wins; "0" in the configuration means unset.
        let mut config = with_defaults();
        config.postgres_pod_resources.default_cpu_limit = "0".into();
        let r = postgres(&config, &complete()).unwrap().unwrap();
        assert_eq!(get(&r.requests, "cpu").as_deref(), Some("10m"));
        assert_eq!(get(&r.limits, "cpu").as_deref(), Some("500m"));
        assert_eq!(get(&r.limits, "hugepages-2Mi").as_deref(), Some("0"));
    }

    #[test]
    fn min_limits_max_requests_and_memory_request_to_limit() {
        let mut config = with_defaults();
        let d = &mut config.postgres_pod_resources;
        d.min_cpu_limit = "2".into();
        d.min_memory_limit = "1Gi".into();
        d.max_cpu_request = "50m".into();
        d.max_memory_request = "64Mi".into();
        let r = postgres(&config, &minimal()).unwrap().unwrap();
        assert_eq!(get(&r.limits, "cpu").as_deref(), Some("2"));
        assert_eq!(get(&r.limits, "memory").as_deref(), Some("1Gi"));
        assert_eq!(get(&r.requests, "cpu").as_deref(), Some("50m"));
        assert_eq!(get(&r.requests, "memory").as_deref(), Some("64Mi"));

        config.set_memory_request_to_limit = true;
        config.postgres_pod_resources.max_memory_request = String::new();
        let r = postgres(&config, &minimal()).unwrap().unwrap();
        assert_eq!(get(&r.requests, "memory").as_deref(), Some("1Gi"));

        // The ignore annotation skips the limit floors only.
        config.ignore_resources_limits_annotation_key = "ignore-limits".into();
        let mut pg = minimal();
        pg.metadata.annotations = Some([("ignore-limits".to_string(), "true".to_string())].into());
        let r = postgres(&config, &pg).unwrap().unwrap();
        assert_eq!(get(&r.limits, "cpu").as_deref(), Some("1"));
        assert_eq!(get(&r.limits, "memory").as_deref(), Some("500Mi"));
        assert_eq!(get(&r.requests, "cpu").as_deref(), Some("50m"));
    }

    #[test]
    fn invalid_quantities_name_the_field() {
        let mut pg = minimal();
        pg.spec.resources = Some(Resources {
            requests: Some(ResourceDescription {
                cpu: Some("lots".into()),
                ..Default::default()
            }),
            limits: None,
        });
        let err = postgres(&config(), &pg).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.resources.requests.cpu: \"lots\" is not a valid Kubernetes quantity"
        );
        let mut config = config();
        config.postgres_pod_resources.min_memory_limit = "1 GB".into();
        config.postgres_pod_resources.default_memory_limit = "1Gi".into();
        let err = postgres(&config, &minimal()).unwrap_err();
        assert!(
            err.to_string().starts_with("min_memory_limit: \"1 GB\""),
            "{err}"
        );
    }
}
