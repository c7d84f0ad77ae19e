//! A container's environment, resolved the way the kubelet resolves it.
//!
//! The runner starts real processes for pods the API server believes run on kwok nodes, so the
//! processes must see exactly the environment a kubelet would have given them: Spilo derives
//! Patroni's whole configuration from it, and a silently different value would make a test pass
//! here and fail on a real cluster. Resolution is pure: Secrets and ConfigMaps come through
//! [`Objects`], so the rules are table-tested without an API server.
//!
//! Rules kept from the kubelet (`makeEnvironmentVariables`, `third_party/forked/golang/expansion`):
//! `envFrom` sources are applied first, in order, then `env`, in order; a later definition of a
//! name replaces the earlier value. Only literal `value`s are `$(VAR)`-expanded, against what was
//! defined before them; `valueFrom` results are taken verbatim. Service links
//! (`FOO_SERVICE_HOST`) are not injected: on loopback pod IPs they would point nowhere.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Where Secrets and ConfigMaps come from. The runner backs it with the API (or a reflector
/// store); tests with [`InMemory`]. `Ok(None)` means "does not exist", which `optional` may
/// excuse; `Err` is a failed lookup, which nothing excuses.
pub trait Objects {
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, LookupError>;
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, LookupError>;
}

/// A lookup that failed for another reason than absence (API unreachable, forbidden, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LookupError(pub String);

/// Objects held in memory, keyed by namespace and name.
#[derive(Debug, Default, Clone)]
pub struct InMemory {
    secrets: BTreeMap<(String, String), Secret>,
    config_maps: BTreeMap<(String, String), ConfigMap>,
}

impl InMemory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_secret(mut self, secret: Secret) -> Self {
        let key = key_of(&secret.metadata);
        self.secrets.insert(key, secret);
        self
    }

    pub fn with_config_map(mut self, config_map: ConfigMap) -> Self {
        let key = key_of(&config_map.metadata);
        self.config_maps.insert(key, config_map);
        self
    }
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl Objects for InMemory {
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, LookupError> {
        Ok(self.secrets.get(&(namespace.into(), name.into())).cloned())
    }
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, LookupError> {
        Ok(self
            .config_maps
            .get(&(namespace.into(), name.into()))
            .cloned())
    }
}

/// The node's allocatable resources. The kubelet substitutes them for a container's missing
/// limits before answering `resourceFieldRef` (`defaultPodLimitsForDownwardAPI`), so a
/// `limits.memory` reference on a container without a limit reports the node's memory.
#[derive(Debug, Default, Clone)]
pub struct Allocatable {
    pub cpu: Option<Quantity>,
    pub memory: Option<Quantity>,
    pub ephemeral_storage: Option<Quantity>,
}

/// The resolved environment: unique names in order of first definition, last value wins.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Environment {
    vars: Vec<(String, String)>,
    /// `envFrom` keys that are not valid variable names (empty, `=`, non-printable): the kubelet
    /// skips them and only records an Event, so the runner should report them the same way.
    pub skipped_keys: Vec<String>,
}

impl Environment {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    pub fn set(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_owned(), value)),
        }
    }

    /// `$(VAR)` expansion of `command`/`args` against this (final) environment.
    pub fn expand(&self, s: &str) -> String {
        expand(s, |name| self.get(name).map(str::to_owned))
    }
}

/// What went wrong, named so the runner can put it in a `CreateContainerConfigError` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pod {namespace}/{pod}, container {container}, {subject}: {reason}")]
pub struct EnvError {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// `env FOO` or `envFrom[2]`.
    pub subject: String,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in Secret {name}")]
    SecretKeyNotFound { name: String, key: String },
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {name}")]
    ConfigMapKeyNotFound { name: String, key: String },
    #[error("value of key {key} in Secret {name} is not UTF-8")]
    NotUtf8 { name: String, key: String },
    #[error("unsupported fieldPath: {0}")]
    UnsupportedFieldPath(String),
    #[error("unsupported fieldRef apiVersion: {0}")]
    UnsupportedApiVersion(String),
    #[error("unsupported container resource: {0}")]
    UnsupportedResource(String),
    #[error("container {0} not found in the pod")]
    NoSuchContainer(String),
    #[error("invalid quantity {0:?}")]
    BadQuantity(String),
    #[error("valueFrom names no source")]
    EmptySource,
    #[error("lookup failed: {0}")]
    Lookup(#[from] LookupError),
}

/// Resolves `container`'s environment in `pod`.
pub fn resolve(
    pod: &Pod,
    container: &Container,
    objects: &dyn Objects,
    allocatable: &Allocatable,
) -> Result<Environment, Box<EnvError>> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let fail = |subject: String, reason: Reason| {
        Box::new(EnvError {
            namespace: namespace.clone(),
            pod: pod.metadata.name.clone().unwrap_or_default(),
            container: container.name.clone(),
            subject,
            reason,
        })
    };
    let mut env = Environment::default();

    for (i, from) in container.env_from.iter().flatten().enumerate() {
        let subject = || format!("envFrom[{i}]");
        let prefix = from.prefix.as_deref().unwrap_or("");
        let mut pairs = Vec::new();
        if let Some(cm) = &from.config_map_ref {
            match objects.config_map(&namespace, &cm.name) {
                Err(e) => return Err(fail(subject(), e.into())),
                Ok(None) if cm.optional == Some(true) => {}
                Ok(None) => {
                    return Err(fail(subject(), Reason::ConfigMapNotFound(cm.name.clone())));
                }
                Ok(Some(obj)) => pairs.extend(obj.data.unwrap_or_default()),
            }
        } else if let Some(sr) = &from.secret_ref {
            match objects.secret(&namespace, &sr.name) {
                Err(e) => return Err(fail(subject(), e.into())),
                Ok(None) if sr.optional == Some(true) => {}
                Ok(None) => return Err(fail(subject(), Reason::SecretNotFound(sr.name.clone()))),
                Ok(Some(obj)) => {
                    for (k, v) in secret_data(&obj) {
                        let v = String::from_utf8(v).map_err(|_| {
                            let reason = Reason::NotUtf8 {
                                name: sr.name.clone(),
                                key: k.clone(),
                            };
                            fail(subject(), reason)
                        })?;
                        pairs.push((k, v));
                    }
                }
            }
        }
        for (k, v) in pairs {
            let name = format!("{prefix}{k}");
            if valid_name(&name) {
                env.set(&name, v);
            } else {
                env.skipped_keys.push(name);
            }
        }
    }

    for var in container.env.iter().flatten() {
        let subject = || format!("env {}", var.name);
        let Some(from) = &var.value_from else {
            let value = expand(var.value.as_deref().unwrap_or(""), |n| {
                env.get(n).map(str::to_owned)
            });
            env.set(&var.name, value);
            continue;
        };
        let value = if let Some(f) = &from.field_ref {
            Some(field_value(pod, f, false).map_err(|r| fail(subject(), r))?)
        } else if let Some(r) = &from.resource_field_ref {
            Some(
                resource_value(pod, Some(container), r, allocatable)
                    .map_err(|r| fail(subject(), r))?,
            )
        } else if let Some(sel) = &from.config_map_key_ref {
            let optional = sel.optional == Some(true);
            match objects.config_map(&namespace, &sel.name) {
                Err(e) => return Err(fail(subject(), e.into())),
                Ok(None) if optional => None,
                Ok(None) => {
                    return Err(fail(subject(), Reason::ConfigMapNotFound(sel.name.clone())));
                }
                Ok(Some(obj)) => match obj.data.unwrap_or_default().remove(&sel.key) {
                    Some(v) => Some(v),
                    None if optional => None,
                    None => {
                        let reason = Reason::ConfigMapKeyNotFound {
                            name: sel.name.clone(),
                            key: sel.key.clone(),
                        };
                        return Err(fail(subject(), reason));
                    }
                },
            }
        } else if let Some(sel) = &from.secret_key_ref {
            let optional = sel.optional == Some(true);
            match objects.secret(&namespace, &sel.name) {
                Err(e) => return Err(fail(subject(), e.into())),
                Ok(None) if optional => None,
                Ok(None) => return Err(fail(subject(), Reason::SecretNotFound(sel.name.clone()))),
                Ok(Some(obj)) => match secret_data(&obj).remove(&sel.key) {
                    Some(v) => Some(String::from_utf8(v).map_err(|_| {
                        let reason = Reason::NotUtf8 {
                            name: sel.name.clone(),
                            key: sel.key.clone(),
                        };
                        fail(subject(), reason)
                    })?),
                    None if optional => None,
                    None => {
                        let reason = Reason::SecretKeyNotFound {
                            name: sel.name.clone(),
                            key: sel.key.clone(),
                        };
                        return Err(fail(subject(), reason));
                    }
                },
            }
        } else {
            return Err(fail(subject(), Reason::EmptySource));
        };
        if let Some(value) = value {
            env.set(&var.name, value);
        }
    }
    Ok(env)
}

/// A Secret's bytes per key. Objects read from the API only carry `data`; `stringData` is
/// honoured (and wins, as the API server's merge does) so hand-built test objects work too.
pub fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

/// The relaxed rule of Kubernetes 1.32+: any printable ASCII except `=`, not empty.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
}

/// Kubernetes' `$(VAR)` expansion: `$(NAME)` becomes the mapped value, or stays as written
/// when `lookup` does not know the name; `$$` is a literal `$`; a `$` before anything else and an
/// unterminated `$(` are kept as they are.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let mut chars = after.chars();
        match chars.next() {
            None => {
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(c) => {
                out.push('$');
                out.push(c);
                rest = chars.as_str();
            }
        }
    }
    out.push_str(rest);
    out
}

/// A `fieldRef` value. Downward API volumes only accept `metadata.*` paths, hence `metadata_only`.
pub fn field_value(
    pod: &Pod,
    sel: &ObjectFieldSelector,
    metadata_only: bool,
) -> Result<String, Reason> {
    match sel.api_version.as_deref() {
        None | Some("") | Some("v1") => {}
        Some(other) => return Err(Reason::UnsupportedApiVersion(other.to_owned())),
    }
    let path = sel.field_path.as_str();
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let unsupported = || Err(Reason::UnsupportedFieldPath(path.to_owned()));
    for (base, map) in [
        ("metadata.labels", &meta.labels),
        ("metadata.annotations", &meta.annotations),
    ] {
        match subscript(path, base) {
            Some(Some(key)) => {
                return Ok(map
                    .as_ref()
                    .and_then(|m| m.get(key).cloned())
                    .unwrap_or_default());
            }
            Some(None) => return unsupported(),
            None => {}
        }
    }
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "metadata.labels" => Some(format_map(meta.labels.as_ref())),
        "metadata.annotations" => Some(format_map(meta.annotations.as_ref())),
        _ if metadata_only => return unsupported(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" => status.and_then(|s| {
            s.pod_ips
                .as_ref()
                .and_then(|ips| ips.first().map(|ip| ip.ip.clone()))
                .or(s.pod_ip.clone())
        }),
        "status.podIPs" => status.map(|s| match &s.pod_ips {
            Some(ips) if !ips.is_empty() => ips
                .iter()
                .map(|ip| ip.ip.as_str())
                .collect::<Vec<_>>()
                .join(","),
            _ => s.pod_ip.clone().unwrap_or_default(),
        }),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()),
        "status.hostIPs" => status.map(|s| match &s.host_ips {
            Some(ips) if !ips.is_empty() => ips
                .iter()
                .map(|ip| ip.ip.as_str())
                .collect::<Vec<_>>()
                .join(","),
            _ => s.host_ip.clone().unwrap_or_default(),
        }),
        _ => return unsupported(),
    };
    Ok(value.unwrap_or_default())
}

/// `Some(Some(key))` for `base['key']`, `Some(None)` for a malformed subscript of `base`.
fn subscript<'a>(path: &'a str, base: &str) -> Option<Option<&'a str>> {
    let inner = path.strip_prefix(base)?.strip_prefix("['")?;
    Some(inner.strip_suffix("']"))
}

/// The kubelet's rendering of a whole map: `k="v"` lines, sorted, values Go-quoted.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    let lines: Vec<String> = map
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    lines.join("\n")
}

fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `resourceFieldRef` value: `ceil(quantity / divisor)`, in millis for CPU, as the kubelet
/// computes it. `container` is the one whose environment is resolved; a selector naming another
/// container (or a downward API volume's selector) is looked up in the pod.
pub fn resource_value(
    pod: &Pod,
    container: Option<&Container>,
    sel: &ResourceFieldSelector,
    allocatable: &Allocatable,
) -> Result<String, Reason> {
    let target = match sel.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .ok_or_else(|| Reason::NoSuchContainer(name.to_owned()))?,
        None => container.ok_or_else(|| Reason::NoSuchContainer(String::new()))?,
    };
    let (kind, resource) = sel
        .resource
        .split_once('.')
        .ok_or_else(|| Reason::UnsupportedResource(sel.resource.clone()))?;
    let resources = target.resources.as_ref();
    let quantity = match kind {
        "limits" => resources
            .and_then(|r| r.limits.as_ref()?.get(resource).cloned())
            .or(match resource {
                "cpu" => allocatable.cpu.clone(),
                "memory" => allocatable.memory.clone(),
                "ephemeral-storage" => allocatable.ephemeral_storage.clone(),
                _ => None,
            }),
        "requests" => resources.and_then(|r| r.requests.as_ref()?.get(resource).cloned()),
        _ => return Err(Reason::UnsupportedResource(sel.resource.clone())),
    };
    if !matches!(resource, "cpu" | "memory" | "ephemeral-storage")
        && !resource.starts_with("hugepages-")
    {
        return Err(Reason::UnsupportedResource(sel.resource.clone()));
    }
    let value = match &quantity {
        Some(q) => Milli::parse(&q.0).ok_or_else(|| Reason::BadQuantity(q.0.clone()))?,
        None => Milli(0),
    };
    let divisor = match sel.divisor.as_ref().filter(|d| !d.0.is_empty()) {
        Some(d) => Milli::parse(&d.0).ok_or_else(|| Reason::BadQuantity(d.0.clone()))?,
        None => Milli(1000),
    };
    let result = if resource == "cpu" {
        ceil_div(value.0, divisor.0)
    } else {
        // Value() rounds each quantity up to a whole unit before dividing.
        ceil_div(
            ceil_div(value.0, 1000).ok_or_else(|| Reason::BadQuantity(String::new()))?,
            ceil_div(divisor.0, 1000).unwrap_or(0),
        )
    };
    result.map(|n| n.to_string()).ok_or_else(|| {
        Reason::BadQuantity(
            sel.divisor
                .as_ref()
                .map(|d| d.0.clone())
                .unwrap_or_default(),
        )
    })
}

fn ceil_div(a: i128, b: i128) -> Option<i128> {
    if b <= 0 {
        return None;
    }
    Some(if a >= 0 { (a + b - 1) / b } else { a / b })
}

/// A quantity in thousandths, rounded up (`Quantity.MilliValue()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Milli(pub i128);

impl Milli {
    /// Parses the Kubernetes quantity grammar: sign, decimal digits, then a binary suffix
    /// (`Ki`…`Ei`), a decimal one (`n u m "" k M G T P E`) or an exponent (`e3`, `E-2`).
    pub fn parse(s: &str) -> Option<Milli> {
        let s = s.trim();
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(end);
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') || int.len() + frac.len() > 30
        {
            return None;
        }
        let mut mantissa: i128 = format!("{int}{frac}").parse().ok()?;
        let mut exp10: i32 = 3 - frac.len() as i32;
        let mut exp2: u32 = 0;
        match suffix {
            "" => {}
            "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
                exp2 = 10 * (1 + "KMGTPE".find(&suffix[..1])? as u32);
            }
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            e if e.starts_with(['e', 'E']) => {
                exp10 += e[1..].parse::<i32>().ok().filter(|x| x.abs() < 40)?
            }
            _ => return None,
        }
        mantissa = mantissa.checked_mul(1i128.checked_shl(exp2)?)?;
        if exp10 >= 0 {
            mantissa = mantissa.checked_mul(10i128.checked_pow(exp10 as u32)?)?;
        } else {
            mantissa = ceil_div(mantissa, 10i128.checked_pow(exp10.unsigned_abs())?)?;
        }
        Some(Milli(if negative { -mantissa } else { mantissa }))
    }
}
