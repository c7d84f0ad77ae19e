//! Environment resolution against the kubelet's rules, one table per concern.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;
use world::env::{Allocatable, EnvError, Environment, InMemory, Milli, Reason, expand, resolve};

fn pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": "acid-a-0", "namespace": "ns", "uid": "u-1",
            "labels": {"application": "spilo", "cluster-name": "acid-a"},
            "annotations": {"note": "say \"hi\"\n"}
        },
        "spec": {
            "nodeName": "kwok-node-0", "serviceAccountName": "postgres-pod",
            "containers": [
                {"name": "postgres", "resources": {
                    "limits": {"cpu": "1500m", "memory": "1Gi"},
                    "requests": {"cpu": "100m", "memory": "100Mi"}}},
                {"name": "sidecar"}
            ]
        },
        "status": {"podIP": "127.10.0.5", "podIPs": [{"ip": "127.10.0.5"}], "hostIP": "10.0.0.1"}
    }))
    .unwrap()
}

fn objects() -> InMemory {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds", "namespace": "ns"},
        "data": {"password": "czNjcjN0", "user": "cG9zdGdyZXM=", "bad=key": "eA=="}
    }))
    .unwrap();
    let mut binary = secret.clone();
    binary.metadata.name = Some("binary".into());
    binary.data = Some(BTreeMap::from([(
        "b".to_string(),
        ByteString(vec![0xff, 0xfe]),
    )]));
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cfg", "namespace": "ns"},
        "data": {"SCOPE": "acid-a", "PGPORT": "5432", "REF": "$(SCOPE)-x"}
    }))
    .unwrap();
    InMemory::new()
        .with_secret(secret)
        .with_secret(binary)
        .with_config_map(cm)
}

fn container(spec: serde_json::Value) -> Container {
    let mut c = json!({"name": "postgres", "resources": {
        "limits": {"cpu": "1500m", "memory": "1Gi"},
        "requests": {"cpu": "100m", "memory": "100Mi"}}});
    c.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    serde_json::from_value(c).unwrap()
}

fn run(spec: serde_json::Value) -> Result<Environment, Box<EnvError>> {
    let alloc = Allocatable {
        cpu: Some(Quantity("2".into())),
        memory: Some(Quantity("8Gi".into())),
        ..Default::default()
    };
    resolve(&pod(), &container(spec), &objects(), &alloc)
}

fn one(var: serde_json::Value) -> Result<Option<String>, Reason> {
    let name = var["name"].as_str().unwrap().to_owned();
    run(json!({"env": [var]}))
        .map(|e| e.get(&name).map(str::to_owned))
        .map_err(|e| e.reason)
}

#[test]
fn field_refs() {
    let cases = [
        ("metadata.name", "acid-a-0"),
        ("metadata.namespace", "ns"),
        ("metadata.uid", "u-1"),
        ("metadata.labels['cluster-name']", "acid-a"),
        ("metadata.labels['missing']", ""),
        ("metadata.annotations['note']", "say \"hi\"\n"),
        (
            "metadata.labels",
            "application=\"spilo\"\ncluster-name=\"acid-a\"",
        ),
        ("metadata.annotations", "note=\"say \\\"hi\\\"\\n\""),
        ("status.podIP", "127.10.0.5"),
        ("status.podIPs", "127.10.0.5"),
        ("status.hostIP", "10.0.0.1"),
        ("spec.serviceAccountName", "postgres-pod"),
        ("spec.nodeName", "kwok-node-0"),
    ];
    for (path, want) in cases {
        let got = one(json!({"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path}}}));
        assert_eq!(got, Ok(Some(want.to_string())), "{path}");
    }
    for path in [
        "spec.containers",
        "metadata.generateName",
        "metadata.labels['x",
    ] {
        let got = one(json!({"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path}}}));
        assert_eq!(
            got,
            Err(Reason::UnsupportedFieldPath(path.into())),
            "{path}"
        );
    }
    let got = one(
        json!({"name": "V", "valueFrom": {"fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}}}),
    );
    assert_eq!(got, Err(Reason::UnsupportedApiVersion("v2".into())));
}

#[test]
fn resource_field_refs() {
    let cases = [
        (json!({"resource": "limits.cpu"}), "2"),
        (json!({"resource": "limits.cpu", "divisor": "1m"}), "1500"),
        (json!({"resource": "requests.cpu"}), "1"),
        (json!({"resource": "requests.cpu", "divisor": "1m"}), "100"),
        (json!({"resource": "limits.memory"}), "1073741824"),
        (
            json!({"resource": "limits.memory", "divisor": "1Mi"}),
            "1024",
        ),
        (
            json!({"resource": "requests.memory", "divisor": "1M"}),
            "105",
        ),
        (
            json!({"resource": "requests.memory", "divisor": "1Gi"}),
            "1",
        ),
        // Another container without limits: the node's allocatable stands in, as in the kubelet.
        (
            json!({"resource": "limits.memory", "containerName": "sidecar", "divisor": "1Gi"}),
            "8",
        ),
        (
            json!({"resource": "limits.cpu", "containerName": "sidecar"}),
            "2",
        ),
        (
            json!({"resource": "requests.cpu", "containerName": "sidecar"}),
            "0",
        ),
    ];
    for (sel, want) in cases {
        let got = one(json!({"name": "V", "valueFrom": {"resourceFieldRef": sel.clone()}}));
        assert_eq!(got, Ok(Some(want.to_string())), "{sel}");
    }
    let bad = [
        (
            json!({"resource": "limits.gpu"}),
            Reason::UnsupportedResource("limits.gpu".into()),
        ),
        (
            json!({"resource": "cpu"}),
            Reason::UnsupportedResource("cpu".into()),
        ),
        (
            json!({"resource": "limits.cpu", "containerName": "nope"}),
            Reason::NoSuchContainer("nope".into()),
        ),
        (
            json!({"resource": "limits.cpu", "divisor": "lots"}),
            Reason::BadQuantity("lots".into()),
        ),
    ];
    for (sel, want) in bad {
        let got = one(json!({"name": "V", "valueFrom": {"resourceFieldRef": sel.clone()}}));
        assert_eq!(got, Err(want), "{sel}");
    }
}

#[test]
fn quantities() {
    let cases = [
        ("1", Some(1000)),
        ("1500m", Some(1500)),
        ("0.5", Some(500)),
        ("1.5Gi", Some(1_610_612_736_000)),
        ("1Ki", Some(1_024_000)),
        ("2k", Some(2_000_000)),
        ("1e3", Some(1_000_000)),
        ("1E", Some(1_000_000_000_000_000_000_000)),
        ("100n", Some(1)), // rounded up, like MilliValue()
        ("+3", Some(3000)),
        ("", None),
        ("1Q", None),
        ("1..2", None),
        ("Gi", None),
        ("99999999999999999999999999999999", None),
    ];
    for (s, want) in cases {
        assert_eq!(Milli::parse(s).map(|m| m.0), want, "{s:?}");
    }
}

#[test]
fn key_refs() {
    let ok = |var| one(var).unwrap();
    assert_eq!(
        ok(
            json!({"name": "P", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}})
        ),
        Some("s3cr3t".into())
    );
    assert_eq!(
        ok(json!({"name": "S", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "SCOPE"}}})),
        Some("acid-a".into())
    );
    // Optional: a missing object or key leaves the variable unset.
    for sel in [
        json!({"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}),
        json!({"secretKeyRef": {"name": "creds", "key": "nope", "optional": true}}),
        json!({"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}),
        json!({"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": true}}),
    ] {
        assert_eq!(
            ok(json!({"name": "O", "valueFrom": sel.clone()})),
            None,
            "{sel}"
        );
    }
    let errs = [
        (
            json!({"secretKeyRef": {"name": "nope", "key": "k"}}),
            Reason::SecretNotFound("nope".into()),
        ),
        (
            json!({"secretKeyRef": {"name": "creds", "key": "k", "optional": false}}),
            Reason::SecretKeyNotFound {
                name: "creds".into(),
                key: "k".into(),
            },
        ),
        (
            json!({"configMapKeyRef": {"name": "nope", "key": "k"}}),
            Reason::ConfigMapNotFound("nope".into()),
        ),
        (
            json!({"configMapKeyRef": {"name": "cfg", "key": "k"}}),
            Reason::ConfigMapKeyNotFound {
                name: "cfg".into(),
                key: "k".into(),
            },
        ),
        (
            json!({"secretKeyRef": {"name": "binary", "key": "b"}}),
            Reason::NotUtf8 {
                name: "binary".into(),
                key: "b".into(),
            },
        ),
        (json!({}), Reason::EmptySource),
    ];
    for (sel, want) in errs {
        assert_eq!(
            one(json!({"name": "E", "valueFrom": sel.clone()})),
            Err(want),
            "{sel}"
        );
    }
}

#[test]
fn errors_name_pod_container_and_variable() {
    let err = run(json!({"env": [{"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "password"}}}]})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pod ns/acid-a-0, container postgres, env PGPASSWORD: secret \"gone\" not found"
    );
    let err = run(
        json!({"envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "gone"}}]}),
    )
    .unwrap_err();
    assert_eq!(err.subject, "envFrom[1]");
}

#[test]
fn env_from_prefix_optional_and_order() {
    let env = run(json!({
        "envFrom": [
            {"configMapRef": {"name": "cfg"}},
            {"secretRef": {"name": "creds"}, "prefix": "PG_"},
            {"secretRef": {"name": "absent", "optional": true}},
            {"configMapRef": {"name": "absent", "optional": true}}
        ],
        "env": [
            {"name": "PGPORT", "value": "6432"},
            {"name": "A", "value": "1"},
            {"name": "A", "value": "$(A)2"}
        ]
    }))
    .unwrap();
    let names: Vec<&str> = env.vars().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["PGPORT", "REF", "SCOPE", "PG_password", "PG_user", "A"]
    );
    // env after envFrom wins; a later env entry wins and sees the earlier one.
    assert_eq!(env.get("PGPORT"), Some("6432"));
    assert_eq!(env.get("A"), Some("12"));
    assert_eq!(env.get("PG_user"), Some("postgres"));
    // Values from envFrom are not expanded.
    assert_eq!(env.get("REF"), Some("$(SCOPE)-x"));
    assert_eq!(env.skipped_keys, ["PG_bad=key"]);
    let err = run(json!({"envFrom": [{"configMapRef": {"name": "absent"}}]})).unwrap_err();
    assert_eq!(err.reason, Reason::ConfigMapNotFound("absent".into()));
}

#[test]
fn values_expand_only_earlier_definitions() {
    let env = run(json!({
        "envFrom": [{"configMapRef": {"name": "cfg"}}],
        "env": [
            {"name": "B", "value": "$(SCOPE)/$(C)"},
            {"name": "C", "value": "c"},
            {"name": "D", "value": "$(C)$$(C)$$$(C)"},
            {"name": "E", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "REF"}}},
            {"name": "F"}
        ]
    }))
    .unwrap();
    assert_eq!(env.get("B"), Some("acid-a/$(C)"));
    assert_eq!(env.get("D"), Some("c$(C)$c"));
    assert_eq!(
        env.get("E"),
        Some("$(SCOPE)-x"),
        "valueFrom results are verbatim"
    );
    assert_eq!(env.get("F"), Some(""));
    assert_eq!(
        env.expand("run $(B) $(F) $(NOPE)"),
        "run acid-a/$(C)  $(NOPE)"
    );
}

#[test]
fn expansion_rules() {
    let vars = BTreeMap::from([("A", "x"), ("B", "$(A)"), ("EMPTY", "")]);
    let lookup = |n: &str| vars.get(n).map(|v| v.to_string());
    let cases = [
        ("", ""),
        ("plain", "plain"),
        ("$(A)", "x"),
        ("a$(A)b$(A)c", "axbxc"),
        ("$(B)", "$(A)"), // one pass: a value is not expanded again
        ("$(EMPTY)|", "|"),
        ("$(UNKNOWN)", "$(UNKNOWN)"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$x"),
        ("$$$$", "$$"),
        ("$", "$"),
        ("a$", "a$"),
        ("$A", "$A"),
        ("$é", "$é"),
        ("$(A", "$(A"),
        ("$(", "$("),
        ("$(A$(A)", "$(A$(A)"),
        ("$()", "$()"),
        ("ü$(A)ü", "üxü"),
    ];
    for (input, want) in cases {
        assert_eq!(expand(input, lookup), want, "{input:?}");
    }
}
