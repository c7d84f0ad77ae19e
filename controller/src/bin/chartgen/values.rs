//! The chart's own keys, read from `values.yaml`: each key's type from its default and its
//! description from the comment above it. `values.yaml` stays the one place a chart key is
//! declared; the few facts a default cannot show (choices, Kubernetes objects passed through) are
//! the tables below, each entry checked to name a key that exists.

use crate::keys::{Key, Shape};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Values the templates hand to Kubernetes verbatim (`toYaml`): any field of that Kubernetes type
/// belongs there, so the schema checks only that it is an object and the API server the rest.
/// (Keys whose default is `{}` are treated the same without being listed.)
pub const KUBERNETES_OBJECTS: &[&str] = &[
    "resources",
    "securityContext",
    "podSecurityContext",
    "readinessProbe",
    "livenessProbe",
    "webhook.resources",
];

/// Schemas a default cannot show: the fixed choices of a value, and numbers Kubernetes also takes
/// as strings. Each replaces the type derived from the default.
pub fn overrides() -> Vec<(&'static str, Value)> {
    let tag = json!({"type": ["string", "number"]});
    let pull_policy = json!({"type": "string", "enum": ["Always", "IfNotPresent", "Never"]});
    vec![
        (
            "configTarget",
            json!({"type": "string", "enum": ["ConfigMap", "OperatorConfigurationCRD"]}),
        ),
        // A tag such as 2.1 given with --set arrives as a number.
        ("image.tag", tag.clone()),
        ("webhook.image.tag", tag),
        ("image.pullPolicy", pull_policy.clone()),
        ("webhook.image.pullPolicy", pull_policy),
        (
            "webhook.failurePolicy",
            json!({"type": "string", "enum": ["Fail", "Ignore"]}),
        ),
        (
            "webhook.tls.mode",
            json!({"type": "string", "enum": ["self-managed", "cert-manager", "secret"]}),
        ),
        (
            "webhook.tls.selfManaged.caDays",
            json!({"type": "integer", "minimum": 1}),
        ),
        (
            "webhook.tls.selfManaged.certDays",
            json!({"type": "integer", "minimum": 1}),
        ),
        // The API server's bounds of a webhook's timeout.
        (
            "webhook.timeoutSeconds",
            json!({"type": "integer", "minimum": 1, "maximum": 30}),
        ),
        // A PodDisruptionBudget takes a count or a percentage.
        (
            "webhook.podDisruptionBudget.minAvailable",
            json!({"anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]+%$"},
            ]}),
        ),
    ]
}

/// Every top-level key of `values.yaml` as a [`Key`], in the file's order.
pub fn keys(values_yaml: &str) -> Result<Vec<Key>, String> {
    let values: serde_yaml::Value =
        serde_yaml::from_str(values_yaml).map_err(|e| format!("values.yaml: {e}"))?;
    let serde_yaml::Value::Mapping(top) = values else {
        return Err("values.yaml: not a map of keys".into());
    };
    let comments = comments(values_yaml);
    let overrides: HashMap<&str, Value> = overrides().into_iter().collect();
    let context = Context {
        comments: &comments,
        overrides: &overrides,
    };
    top.iter()
        .map(|(name, value)| context.key("", name, value))
        .collect()
}

struct Context<'a> {
    comments: &'a HashMap<String, String>,
    overrides: &'a HashMap<&'static str, Value>,
}

impl Context<'_> {
    fn key(
        &self,
        parent: &str,
        name: &serde_yaml::Value,
        value: &serde_yaml::Value,
    ) -> Result<Key, String> {
        let name = name
            .as_str()
            .ok_or_else(|| format!("values.yaml: a key under {parent:?} is not a string"))?;
        let path = if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}.{name}")
        };
        let default: Value = serde_json::to_value(value)
            .map_err(|e| format!("values.yaml: {path} has no JSON form: {e}"))?;
        let description = self.comments.get(&path).cloned().unwrap_or_default();
        let shape = match value {
            serde_yaml::Value::Mapping(map)
                if !map.is_empty() && !KUBERNETES_OBJECTS.contains(&path.as_str()) =>
            {
                let keys = map
                    .iter()
                    .map(|(k, v)| self.key(&path, k, v))
                    .collect::<Result<Vec<_>, _>>()?;
                Shape::Block(keys)
            }
            _ => Shape::Leaf(
                self.overrides
                    .get(path.as_str())
                    .cloned()
                    .unwrap_or_else(|| schema_of_default(&default)),
            ),
        };
        Ok(Key {
            name: name.to_string(),
            description,
            default: Some(default),
            legacy: false,
            shape,
        })
    }
}

/// The type a default stands for. Empty defaults say little, so they are permissive: `null` also
/// takes a string, `{}` any object and `[]` any list.
pub fn schema_of_default(default: &Value) -> Value {
    match default {
        Value::Null => json!({"type": ["string", "null"]}),
        Value::Bool(_) => json!({"type": "boolean"}),
        Value::Number(n) if n.is_f64() => json!({"type": "number"}),
        Value::Number(_) => json!({"type": "integer"}),
        Value::String(_) => json!({"type": "string"}),
        Value::Array(_) => json!({"type": "array"}),
        Value::Object(_) => json!({"type": "object"}),
    }
}

/// The comment block directly above each key (no blank line between), by dotted path. A comment
/// separated from the next key by a blank line heads a section and describes no key.
pub fn comments(values_yaml: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut pending: Vec<String> = Vec::new();
    // (indent, key) of the keys enclosing the current line.
    let mut parents: Vec<(usize, String)> = Vec::new();
    for line in values_yaml.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() {
            pending.clear();
            continue;
        }
        if let Some(text) = trimmed.strip_prefix('#') {
            let text = text.trim();
            if !text.is_empty() {
                pending.push(text.to_string());
            }
            continue;
        }
        let Some(name) = key_of(trimmed) else {
            // A list item or a continuation line.
            pending.clear();
            continue;
        };
        while parents.last().is_some_and(|(i, _)| *i >= indent) {
            parents.pop();
        }
        let mut path: Vec<&str> = parents.iter().map(|(_, k)| k.as_str()).collect();
        path.push(name);
        if !pending.is_empty() {
            out.insert(path.join("."), pending.join(" "));
        }
        pending.clear();
        parents.push((indent, name.to_string()));
    }
    out
}

/// The key a `key: value` or `key:` line starts with.
fn key_of(line: &str) -> Option<&str> {
    if line.starts_with('-') {
        return None;
    }
    let (key, rest) = line.split_once(':')?;
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    (plain && (rest.is_empty() || rest.starts_with(' '))).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# The header of the file.

# The image.
image:
  # Where from.
  registry: ghcr.io
  tag: \"\"
  pullPolicy: IfNotPresent
list:
  - item: 1
# Labels.
podLabels: {}
resources:
  limits:
    memory: 1Mi
";

    #[test]
    fn comments_directly_above_a_key_describe_it() {
        let c = comments(SAMPLE);
        assert_eq!(c["image"], "The image.");
        assert_eq!(c["image.registry"], "Where from.");
        assert_eq!(c["podLabels"], "Labels.");
        assert!(!c.contains_key("image.tag"));
        assert!(!c.values().any(|v| v.contains("header")), "{c:?}");
    }

    #[test]
    fn types_come_from_defaults_and_the_tables() {
        let keys = keys(SAMPLE).unwrap();
        let root = Key {
            name: String::new(),
            description: String::new(),
            default: None,
            legacy: false,
            shape: Shape::Block(keys),
        };
        let leaf = |path: &str| match &root.find(path).unwrap().shape {
            Shape::Leaf(schema) => schema.clone(),
            Shape::Block(_) => panic!("{path} is a block"),
        };
        assert_eq!(leaf("image.registry"), json!({"type": "string"}));
        assert_eq!(leaf("image.tag"), json!({"type": ["string", "number"]}));
        assert_eq!(leaf("image.registry"), json!({"type": "string"}));
        assert_eq!(leaf("image.pullPolicy")["enum"][1], "IfNotPresent");
        assert_eq!(leaf("podLabels"), json!({"type": "object"}));
        assert_eq!(leaf("list"), json!({"type": "array"}));
        // A Kubernetes object passed through is not a block of fixed keys.
        assert_eq!(leaf("resources"), json!({"type": "object"}));
        assert_eq!(
            root.find("resources").unwrap().default,
            Some(json!({"limits": {"memory": "1Mi"}}))
        );
    }
}
