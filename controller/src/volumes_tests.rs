use super::*;
use serde_json::json;
use std::sync::Arc;

fn claim(name: &str, cluster: &str, size: &str, class: Option<&str>) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "labels": {"cluster-name": cluster},
            "annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
            "resources": {"requests": {"storage": size}}, "volumeName": "pv-1"},
        "status": {"phase": "Bound", "capacity": {"storage": size}}
    }))
    .unwrap()
}

fn names(claims: &[&PersistentVolumeClaim]) -> Vec<String> {
    claims.iter().map(|c| c.name_any()).collect()
}

#[test]
fn a_slim_claim_keeps_labels_size_and_class() {
    let mut c = claim("pgdata-acid-a-0", "acid-a", "1Gi", Some("standard"));
    c.slim();
    assert_eq!(requested(&c), Some("1Gi"));
    assert_eq!(
        c.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("standard")
    );
    assert_eq!(c.labels()["cluster-name"], "acid-a");
    assert_eq!(c.metadata.annotations, None);
    assert_eq!(c.status, None);
    assert_eq!(c.spec.as_ref().unwrap().volume_name, None);
}

#[test]
fn only_the_clusters_data_claims_count() {
    let mut deleting = claim("pgdata-acid-a-2", "acid-a", "1Gi", None);
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    let mut elsewhere = claim("pgdata-acid-a-0", "acid-a", "1Gi", None);
    elsewhere.metadata.namespace = Some("other".into());
    let all: Vec<Arc<PersistentVolumeClaim>> = [
        claim("pgdata-acid-a-1", "acid-a", "1Gi", None),
        claim("pgdata-acid-a-0", "acid-a", "1Gi", None),
        // acid-a-b's claims start with acid-a's prefix but carry another label.
        claim("pgdata-acid-a-b-0", "acid-a-b", "1Gi", None),
        claim("other-acid-a-0", "acid-a", "1Gi", None),
        deleting,
        elsewhere,
    ]
    .into_iter()
    .map(Arc::new)
    .collect();
    assert_eq!(
        names(&claims_of(&all, "ns", "acid-a", "cluster-name")),
        ["pgdata-acid-a-0", "pgdata-acid-a-1"]
    );
}

#[test]
fn claims_grow_only_in_the_modes_that_grow_them() {
    let a = claim("pgdata-acid-a-0", "acid-a", "1Gi", Some("standard"));
    let b = claim("pgdata-acid-a-1", "acid-a", "2Gi", None);
    let claims = [&a, &b];
    let grown = plan("pvc", "2048Mi", &claims);
    assert_eq!(grown.wanted, "2Gi");
    assert_eq!(
        grown.grow,
        [Grow {
            claim: "pgdata-acid-a-0".into(),
            from: "1Gi".into(),
            class: Some("standard".into()),
        }]
    );
    assert!(grown.larger.is_empty());
    assert_eq!(plan("mixed", "2Gi", &claims).grow.len(), 1);
    for mode in ["off", "ebs"] {
        assert_eq!(plan(mode, "2Gi", &claims).grow, [], "{mode}");
    }
    // Less than a GiB more is still more (Zalando truncates to GiB and sees nothing).
    assert_eq!(plan("pvc", "1.5Gi", &[&a]).grow.len(), 1);
    assert_eq!(plan("pvc", "1.5Gi", &[&a]).wanted, "1536Mi");
    // Equal sizes in another notation: nothing, as in Zalando.
    assert_eq!(
        plan("pvc", "1024Mi", &[&a]),
        Plan {
            wanted: "1Gi".into(),
            ..Plan::default()
        }
    );
}

#[test]
fn claims_larger_than_the_manifest_are_never_shrunk_in_any_mode() {
    let a = claim("pgdata-acid-a-0", "acid-a", "3Gi", None);
    let b = claim("pgdata-acid-a-1", "acid-a", "2Gi", None);
    for mode in ["pvc", "mixed", "ebs", "off"] {
        let p = plan(mode, "1Gi", &[&a, &b]);
        assert!(p.grow.is_empty(), "{mode}");
        assert_eq!(p.larger.len(), 2, "{mode}");
        assert_eq!(p.largest(), Some("3Gi"));
    }
    let note = shrink_note(&plan("pvc", "1Gi", &[&a, &b])).unwrap();
    assert!(
        note.starts_with("spec.volume.size: cannot shrink the volume from 3Gi to 1Gi"),
        "{note}"
    );
    assert!(
        note.contains("pgdata-acid-a-0 (3Gi), pgdata-acid-a-1 (2Gi)"),
        "{note}"
    );
    assert!(note.contains("new replicas get 3Gi"), "{note}");
    assert_eq!(shrink_note(&plan("pvc", "3Gi", &[&a, &b])), None);
}

#[test]
fn the_claim_template_keeps_the_largest_size() {
    let config = common::config::Config::default();
    let pg: Postgresql = serde_json::from_value(json!({
        "apiVersion": "acid.zalan.do/v1", "kind": "postgresql",
        "metadata": {"name": "acid-a", "namespace": "ns"},
        "spec": {"teamId": "acid", "numberOfInstances": 1, "volume": {"size": "1Gi"},
            "postgresql": {"version": "17"}}
    }))
    .unwrap();
    let valid = common::rules::admission::Validated::trusted(&config, &pg);
    let mut sts = crate::desired::statefulset::statefulset(&config, &valid, None).unwrap();
    let before = sts.annotations()[crate::replace::IMMUTABLE].clone();
    assert!(keep_size(&mut sts, "3072Mi"));
    let template = &sts
        .spec
        .as_ref()
        .unwrap()
        .volume_claim_templates
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        template
            .spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"]
            .0,
        "3Gi"
    );
    assert_ne!(
        sts.annotations()[crate::replace::IMMUTABLE],
        before,
        "re-stamped"
    );
    assert!(!keep_size(&mut sts, "3Gi"), "already");
}

#[test]
fn the_expansion_warning_names_the_class_and_the_fix() {
    let grow = Grow {
        claim: "pgdata-acid-a-0".into(),
        from: "1Gi".into(),
        class: Some("slow".into()),
    };
    let note = no_expansion_note(Some("slow"), &[&grow], "2Gi");
    assert_eq!(
        note,
        "StorageClass slow does not allow volume expansion: persistent volume claims pgdata-acid-a-0 (1Gi) are not grown to spec.volume.size = 2Gi; set allowVolumeExpansion: true on StorageClass slow"
    );
    assert!(no_expansion_note(None, &[&grow], "2Gi").starts_with("claims without a StorageClass"));
}

#[test]
fn a_shrink_warning_is_sent_once_until_it_changes_or_goes_away() {
    assert!(first_time("ns/once", "a"));
    assert!(!first_time("ns/once", "a"));
    assert!(first_time("ns/once", "b"));
    forget("ns/once");
    assert!(first_time("ns/once", "b"));
}
