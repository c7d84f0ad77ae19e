//! The webhook's decisions, over real TLS on loopback.

mod support;

use common::config::Config;
use serde_json::json;
use support::{apply_patch, minimal, review, start};

#[tokio::test]
async fn create_is_clamped_and_defaulted_with_warnings_and_reinvocation_is_a_no_op() {
    let config = Config {
        max_instances: 1,
        ..Config::default()
    };
    let hook = start(config, "").await;
    let object = minimal();
    let response = hook
        .review("/mutate", &review("CREATE", Some(&object), None))
        .await;
    assert_eq!(response["allowed"], true);
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["patchType"], "JSONPatch");
    let patched = apply_patch(&object, &response);
    assert_eq!(patched["spec"]["numberOfInstances"], 1);
    assert_eq!(
        patched["spec"]["allowedSourceRanges"],
        json!(["127.0.0.1/32"])
    );
    let warnings = response["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("changed from 2 to 1 because max_instances is 1")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("allowedSourceRanges")),
        "{warnings:?}"
    );

    // The API server may call the mutating webhook again with the patched object.
    let again = hook
        .review("/mutate", &review("CREATE", Some(&patched), None))
        .await;
    assert_eq!(again["allowed"], true);
    assert!(
        again.get("patch").is_none(),
        "reinvocation must not patch: {again}"
    );
    assert!(again.get("warnings").is_none(), "{again}");
}

#[tokio::test]
async fn update_keeps_source_ranges_untouched_but_clamps() {
    let config = Config {
        min_instances: 3,
        ..Config::default()
    };
    let hook = start(config, "").await;
    let object = minimal();
    let response = hook
        .review("/mutate", &review("UPDATE", Some(&object), Some(&object)))
        .await;
    let patched = apply_patch(&object, &response);
    assert_eq!(patched["spec"]["numberOfInstances"], 3);
    assert!(patched["spec"].get("allowedSourceRanges").is_none());
}

#[tokio::test]
async fn validation_denies_with_the_field_named() {
    let hook = start(Config::default(), "").await;
    let mut object = minimal();
    object["spec"]["databases"] = json!({"foo": "nobody"});
    object["spec"]["allowedSourceRanges"] = json!(["10.0.0.0/40"]);
    let response = hook
        .review("/validate", &review("CREATE", Some(&object), None))
        .await;
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.starts_with("2 problems:"), "{message}");
    assert!(
        message
            .contains("spec.allowedSourceRanges[0]: \"10.0.0.0/40\" has an invalid prefix length"),
        "{message}"
    );
    assert!(
        message.contains("spec.databases.foo: owner \"nobody\" is not declared under spec.users"),
        "{message}"
    );
    assert!(
        hook.review("/validate", &review("CREATE", Some(&minimal()), None))
            .await["allowed"]
            == true
    );
}

#[tokio::test]
async fn version_downgrade_is_denied_and_upgrade_warns_when_upgrades_are_off() {
    let mut config = Config::default();
    config.major_version_upgrade.major_version_upgrade_mode = "off".into();
    let hook = start(config, "").await;
    let old = minimal();
    let mut lower = minimal();
    lower["spec"]["postgresql"]["version"] = json!("16");
    let denied = hook
        .review("/validate", &review("UPDATE", Some(&lower), Some(&old)))
        .await;
    assert_eq!(denied["allowed"], false);
    assert!(
        denied["status"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot lower the major version from 17 to 16")
    );
    let mut higher = minimal();
    higher["spec"]["postgresql"]["version"] = json!("18");
    let allowed = hook
        .review("/validate", &review("UPDATE", Some(&higher), Some(&old)))
        .await;
    assert_eq!(allowed["allowed"], true);
    assert!(
        allowed["warnings"][0]
            .as_str()
            .unwrap()
            .contains("no upgrade will run")
    );
}

#[tokio::test]
async fn delete_protection_names_the_annotations() {
    let mut config = Config::default();
    config.kubernetes.delete_annotation_date_key = "delete-date".into();
    config.kubernetes.delete_annotation_name_key = "delete-clustername".into();
    let hook = start(config, "").await;
    let object = minimal();
    let denied = hook
        .review("/validate", &review("DELETE", None, Some(&object)))
        .await;
    assert_eq!(denied["allowed"], false);
    let message = denied["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("kubectl annotate postgresql acid-minimal-cluster delete-date="),
        "{message}"
    );
    let today = common::rules::delete_protection::today_utc();
    let mut annotated = minimal();
    annotated["metadata"]["annotations"] =
        json!({"delete-date": today, "delete-clustername": "acid-minimal-cluster"});
    let allowed = hook
        .review("/validate", &review("DELETE", None, Some(&annotated)))
        .await;
    assert_eq!(allowed["allowed"], true, "{allowed}");
}

#[tokio::test]
async fn objects_of_another_controller_pass_untouched() {
    let config = Config {
        max_instances: 1,
        ..Config::default()
    };
    let hook = start(config, "second-operator").await;
    let unowned = minimal();
    let response = hook
        .review("/mutate", &review("CREATE", Some(&unowned), None))
        .await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none());
    let mut owned = minimal();
    owned["metadata"]["annotations"] = json!({"acid.zalan.do/controller": "second-operator"});
    let response = hook
        .review("/mutate", &review("CREATE", Some(&owned), None))
        .await;
    assert!(response.get("patch").is_some());
    // Taking a cluster away without the hand-over annotation is refused.
    let mut taken = owned.clone();
    taken["metadata"]["annotations"] = json!({"acid.zalan.do/controller": "third-operator"});
    let denied = hook
        .review("/validate", &review("UPDATE", Some(&taken), Some(&owned)))
        .await;
    assert_eq!(denied["allowed"], false);
    assert!(
        denied["status"]["message"]
            .as_str()
            .unwrap()
            .contains("acid.zalan.do/controller-handover")
    );
}

#[tokio::test]
async fn a_malformed_object_is_denied_with_its_path() {
    let hook = start(Config::default(), "").await;
    let mut object = minimal();
    object["spec"]["numberOfInstances"] = json!("two");
    let response = hook
        .review("/validate", &review("CREATE", Some(&object), None))
        .await;
    assert_eq!(response["allowed"], false);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.contains("spec.numberOfInstances"), "{message}");
}

#[tokio::test]
async fn other_kinds_are_refused() {
    let hook = start(Config::default(), "").await;
    let mut pod = review("CREATE", Some(&minimal()), None);
    pod["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
    let response = hook.review("/validate", &pod).await;
    assert_eq!(response["allowed"], false);
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .contains("only reviews postgresqls.acid.zalan.do")
    );
}

#[tokio::test]
async fn admin_endpoints_and_metrics() {
    let hook = start(Config::default(), "").await;
    hook.review("/validate", &review("CREATE", Some(&minimal()), None))
        .await;
    assert_eq!(hook.admin_get("/healthz").await, (200, "ok".into()));
    assert_eq!(hook.admin_get("/readyz").await, (200, "ready".into()));
    hook.state
        .config_loaded
        .store(false, std::sync::atomic::Ordering::Release);
    assert_eq!(
        hook.admin_get("/readyz").await,
        (503, "operator configuration not loaded yet".into())
    );
    let (status, metrics) = hook.admin_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains(r#"pg_webhook_admission_reviews_total{operation="CREATE",rule="none",outcome="allowed"} 1"#), "{metrics}");
    assert!(
        metrics.contains("pg_webhook_admission_review_duration_seconds_bucket"),
        "{metrics}"
    );
}
