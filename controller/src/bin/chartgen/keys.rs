//! The chart's values as one tree of keys. Both `values.schema.json` and the README's values
//! listing are written from this tree, so what the schema accepts and what the README says cannot
//! disagree.

use serde_json::{Map, Value, json};

/// One key of the chart's values.
#[derive(Clone, Debug)]
pub struct Key {
    /// Its name inside its parent.
    pub name: String,
    /// What it does: the comment above it in `values.yaml`, or the option's doc comment.
    pub description: String,
    /// What `values.yaml` sets it to; `None` where the chart leaves it unset.
    pub default: Option<Value>,
    /// A key old Zalando values files still carry: accepted so those files keep working, and
    /// listed apart in the README because it does nothing.
    pub legacy: bool,
    pub shape: Shape,
}

/// What a key may hold.
#[derive(Clone, Debug)]
pub enum Shape {
    /// A value checked by this JSON schema (its description is added from the key).
    Leaf(Value),
    /// A block of named keys; any other key inside it is refused, because there an unknown key is
    /// almost always a typo that would otherwise be silently ignored.
    Block(Vec<Key>),
}

impl Key {
    /// A key holding a value checked by `schema`.
    pub fn leaf(name: &str, description: &str, default: Option<Value>, schema: Value) -> Self {
        Self {
            name: name.to_string(),
            description: description.to_string(),
            default,
            legacy: false,
            shape: Shape::Leaf(schema),
        }
    }

    /// The key at `path` (names joined by dots) below this one.
    #[cfg(test)]
    pub fn find(&self, path: &str) -> Option<&Key> {
        let (head, rest) = match path.split_once('.') {
            Some((head, rest)) => (head, Some(rest)),
            None => (path, None),
        };
        let Shape::Block(keys) = &self.shape else {
            return None;
        };
        let key = keys.iter().find(|k| k.name == head)?;
        match rest {
            Some(rest) => key.find(rest),
            None => Some(key),
        }
    }

    /// The same key with every leaf's schema passed through `f` (used for the ConfigMap form,
    /// where each option may also be written as Zalando's string encoding).
    pub fn map_leaves(&self, f: &impl Fn(&Value) -> Value) -> Key {
        let shape = match &self.shape {
            Shape::Leaf(schema) => Shape::Leaf(f(schema)),
            Shape::Block(keys) => Shape::Block(keys.iter().map(|k| k.map_leaves(f)).collect()),
        };
        Key {
            shape,
            ..self.clone()
        }
    }

    /// The JSON schema of this key.
    pub fn schema(&self) -> Value {
        let mut schema = match &self.shape {
            Shape::Leaf(schema) => schema.clone(),
            Shape::Block(keys) => block_schema(keys),
        };
        if !self.description.is_empty()
            && let Some(map) = schema.as_object_mut()
        {
            map.insert("description".into(), json!(self.description));
        }
        schema
    }
}

/// An object whose keys are `keys` and nothing else.
pub fn block_schema(keys: &[Key]) -> Value {
    let properties: Map<String, Value> =
        keys.iter().map(|k| (k.name.clone(), k.schema())).collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
    })
}

/// A short, human name of a leaf schema's type for the README ("integer ≥ 1", "list of
/// strings", "`off` | `manual` | `full`").
pub fn type_label(schema: &Value) -> String {
    if let Some(choices) = schema["enum"].as_array() {
        let names: Vec<String> = choices
            .iter()
            .filter(|c| !c.is_null())
            .map(|c| {
                format!(
                    "`{}`",
                    c.as_str().map_or_else(|| c.to_string(), str::to_string)
                )
            })
            .collect();
        return names.join(" \\| ");
    }
    if let Some(options) = schema["anyOf"].as_array() {
        let names: Vec<String> = options.iter().map(type_label).collect();
        return names.join(" or ");
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let names: Vec<String> = types.iter().map(|t| single_type_label(t, schema)).collect();
    match names.as_slice() {
        [] => "any".to_string(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn single_type_label(t: &str, schema: &Value) -> String {
    match t {
        "integer" | "number" => match (schema["minimum"].as_f64(), schema["maximum"].as_f64()) {
            (Some(min), Some(max)) => format!("{t} {}–{}", num(min), num(max)),
            (Some(min), None) => format!("{t} ≥ {}", num(min)),
            (None, Some(max)) => format!("{t} ≤ {}", num(max)),
            (None, None) => t.to_string(),
        },
        "array" => match schema["items"]["type"].as_str() {
            Some(item) => format!("list of {item}s"),
            None => "list".to_string(),
        },
        "object" => match schema["additionalProperties"]["type"].as_str() {
            Some(value) => format!("map of {value}s"),
            None => "object".to_string(),
        },
        "string" => match schema["pattern"].as_str() {
            Some(pattern) => format!("string matching `{pattern}`"),
            None => "string".to_string(),
        },
        other => other.to_string(),
    }
}

/// A bound as written in a schema (JSON numbers may come out as `1.0`).
fn num(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_type_and_its_bounds() {
        assert_eq!(
            type_label(&json!({"type": "integer", "minimum": -1.0})),
            "integer ≥ -1"
        );
        assert_eq!(
            type_label(&json!({"type": "array", "items": {"type": "string"}})),
            "list of strings"
        );
        assert_eq!(
            type_label(&json!({"type": "object", "additionalProperties": {"type": "string"}})),
            "map of strings"
        );
        assert_eq!(
            type_label(&json!({"type": ["string", "null"]})),
            "string or null"
        );
        assert_eq!(
            type_label(&json!({"type": "string", "enum": ["a", "b"]})),
            "`a` \\| `b`"
        );
    }

    #[test]
    fn a_block_refuses_other_keys_and_find_walks_dotted_paths() {
        let inner = Key::leaf("tag", "The tag.", None, json!({"type": "string"}));
        let image = Key {
            name: "image".into(),
            description: String::new(),
            default: None,
            legacy: false,
            shape: Shape::Block(vec![inner]),
        };
        let root = Key {
            name: String::new(),
            description: String::new(),
            default: None,
            legacy: false,
            shape: Shape::Block(vec![image]),
        };
        assert_eq!(root.find("image.tag").map(|k| k.name.as_str()), Some("tag"));
        assert!(root.find("image.tags").is_none());
        let schema = root.schema();
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(
            schema["properties"]["image"]["properties"]["tag"]["description"],
            "The tag."
        );
    }
}
