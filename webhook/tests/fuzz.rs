//! Bounded property test: arbitrary bodies never panic the decision path, and every valid review
//! gets an answer with its uid. Runs a fixed number of deterministic cases within `make test`.

mod support;

use common::config::Config;
use serde_json::Value;
use support::{minimal, review};
use webhook::review::{Endpoint, Inputs, handle};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate_value(rng: &mut XorShift, value: &mut Value, depth: usize) {
    let replacements = [
        Value::Null,
        Value::from(-1),
        Value::from(i64::MAX),
        Value::from("x"),
        Value::from(""),
        Value::from("Sat:25:99-00:00"),
        Value::from("999.1.1.1/99"),
        serde_json::json!(["nologin", "LOGIN", "bogus"]),
        serde_json::json!({"a": {"b": []}}),
        Value::Bool(true),
    ];
    match value {
        Value::Object(map) if !map.is_empty() && depth < 6 => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = &keys[rng.below(keys.len())];
            if rng.below(4) == 0 {
                map.insert(
                    key.clone(),
                    replacements[rng.below(replacements.len())].clone(),
                );
            } else {
                mutate_value(rng, map.get_mut(key).unwrap(), depth + 1);
            }
        }
        Value::Array(items) if !items.is_empty() && depth < 6 => {
            let i = rng.below(items.len());
            mutate_value(rng, &mut items[i], depth + 1);
        }
        other => *other = replacements[rng.below(replacements.len())].clone(),
    }
}

#[test]
fn random_reviews_never_panic() {
    let mut config = Config {
        max_instances: 3,
        min_instances: 1,
        ..Config::default()
    };
    config.kubernetes.delete_annotation_date_key = "delete-date".into();
    let inputs = Inputs {
        config: &config,
        controller_id: "",
        today: "2026-11-23",
        clone_source_version: None,
    };
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let operations = ["CREATE", "UPDATE", "DELETE", "CONNECT", "BOGUS"];
    for case in 0..3000 {
        let mut object = minimal();
        object["spec"]["sidecars"] = serde_json::json!([{"name": "s", "image": "i", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]);
        for _ in 0..1 + rng.below(4) {
            mutate_value(&mut rng, &mut object, 0);
        }
        let operation = operations[rng.below(operations.len())];
        let mut body = review(operation, Some(&object), Some(&minimal()));
        if rng.below(10) == 0 {
            mutate_value(&mut rng, &mut body, 0);
        }
        let mut bytes = body.to_string().into_bytes();
        if rng.below(8) == 0 && !bytes.is_empty() {
            let cut = rng.below(bytes.len());
            bytes.truncate(cut);
        }
        if rng.below(8) == 0 && !bytes.is_empty() {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
            if let Ok(answer) = handle(endpoint, &bytes, &inputs) {
                let parsed: Value = serde_json::from_slice(&answer.body)
                    .unwrap_or_else(|e| panic!("case {case}: unparsable answer {e}"));
                assert!(
                    parsed["response"]["allowed"].is_boolean(),
                    "case {case}: {parsed}"
                );
            }
        }
    }
}
