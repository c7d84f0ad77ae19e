//! Cost of one decision without TLS or HTTP: `cargo run --release -p webhook --example decide`.
//! Complements `make bench-webhook`, which measures the whole server from another process.

#[global_allocator]
static GLOBAL: runtime::alloc::Allocator = runtime::alloc::Allocator;

use std::time::Instant;
use webhook::review::{Endpoint, Inputs, handle, parse};

fn main() {
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/complete-postgres-manifest.yaml"
    ))
    .unwrap();
    let mut object: serde_json::Value = serde_yaml::from_str(&manifest).unwrap();
    object["spec"].as_object_mut().unwrap().remove("clone");
    object["spec"].as_object_mut().unwrap().remove("standby");
    object.as_object_mut().unwrap().remove("status");
    let review = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "1", "kind": {"group": "acid.zalan.do", "version": "v1", "kind": "postgresql"},
        "resource": {"group": "acid.zalan.do", "version": "v1", "resource": "postgresqls"},
        "name": "x", "namespace": "b", "operation": "UPDATE", "userInfo": {"username": "b"},
        "object": object, "oldObject": object, "dryRun": false}});
    let body = review.to_string().into_bytes();
    let config = common::config::Config::default();
    let inputs = Inputs {
        config: &config,
        controller_id: "",
        today: "2026-11-23",
        clone_source_version: None,
    };
    let n = 20_000;
    for (name, endpoint) in [
        ("validate", Endpoint::Validate),
        ("mutate", Endpoint::Mutate),
    ] {
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(handle(endpoint, &body, &inputs).unwrap());
        }
        println!(
            "{name}: {:.1} us per review",
            started.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(parse(&body).unwrap());
    }
    println!(
        "parse only: {:.1} us per review ({} bytes)",
        started.elapsed().as_secs_f64() * 1e6 / n as f64,
        body.len()
    );
}
