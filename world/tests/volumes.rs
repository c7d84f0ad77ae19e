//! Volume plans (pure) and their execution in temp dirs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use serde_json::json;
use world::env::{Allocatable, Environment, InMemory, LookupError};
use world::volumes::{
    Claims, Roots, Sources, Tokens, VolumeKind, VolumePlan, VolumeReason, apply, plan, plan_mounts,
    plan_volumes,
};

struct FixedToken;
impl Tokens for FixedToken {
    fn token(
        &self,
        pod: &Pod,
        sa: &str,
        audience: Option<&str>,
        exp: i64,
    ) -> Result<String, LookupError> {
        Ok(format!(
            "{}:{sa}:{}:{exp}",
            pod.metadata.name.as_deref().unwrap_or(""),
            audience.unwrap_or("-")
        ))
    }
}

struct OneClaim;
impl Claims for OneClaim {
    fn claim_uid(&self, namespace: &str, claim: &str) -> Result<Option<String>, LookupError> {
        Ok(match (namespace, claim) {
            ("ns", "pgdata-acid-a-0") => Some("pvc-uid-1".into()),
            ("ns", "acid-a-0-scratch") => Some("pvc-uid-2".into()),
            ("ns", "broken") => return Err(LookupError("api down".into())),
            _ => None,
        })
    }
}

fn objects() -> InMemory {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds", "namespace": "ns"},
        "data": {"password": "czNjcjN0", "user": "cG9zdGdyZXM="}
    }))
    .unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cfg", "namespace": "ns"},
        "data": {"a.conf": "a=1"}, "binaryData": {"blob": "AAE="}
    }))
    .unwrap();
    let ca: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "kube-root-ca.crt", "namespace": "ns"}, "data": {"ca.crt": "CA"}
    }))
    .unwrap();
    InMemory::new()
        .with_secret(secret)
        .with_config_map(cm)
        .with_config_map(ca)
}

fn pod(volumes: serde_json::Value, mounts: serde_json::Value) -> (Pod, Container) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "acid-a-0", "namespace": "ns", "uid": "u-1", "labels": {"app": "x"}},
        "spec": {
            "serviceAccountName": "postgres-pod",
            "containers": [{"name": "postgres", "volumeMounts": mounts,
                            "resources": {"limits": {"memory": "1Gi"}}}],
            "volumes": volumes
        }
    }))
    .unwrap();
    let c = pod.spec.as_ref().unwrap().containers[0].clone();
    (pod, c)
}

fn roots(base: &Path) -> Roots {
    Roots {
        pod_root: base.join("pods/u-1"),
        pvc_root: base.join("pvcs"),
    }
}

fn planned(volumes: serde_json::Value) -> Result<VolumePlan, VolumeReason> {
    let (pod, _) = pod(volumes, json!([]));
    let (objects, alloc) = (objects(), Allocatable::default());
    let sources = Sources {
        objects: &objects,
        tokens: &FixedToken,
        claims: &OneClaim,
        allocatable: &alloc,
    };
    plan_volumes(&pod, &sources, &roots(Path::new("/r"))).map_err(|e| e.reason)
}

/// (path, content, mode) of a one-volume plan.
fn files(volume: serde_json::Value) -> Vec<(String, String, u32)> {
    let plan = planned(json!([volume])).unwrap();
    plan.volumes[0]
        .files
        .iter()
        .map(|f| {
            (
                f.path.display().to_string(),
                String::from_utf8_lossy(&f.content).into_owned(),
                f.mode,
            )
        })
        .collect()
}

fn f(path: &str, content: &str, mode: u32) -> (String, String, u32) {
    (path.into(), content.into(), mode)
}

#[test]
fn secret_and_config_map_volumes() {
    assert_eq!(
        files(json!({"name": "s", "secret": {"secretName": "creds"}})),
        [f("password", "s3cr3t", 0o644), f("user", "postgres", 0o644)]
    );
    assert_eq!(
        files(
            json!({"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o400,
            "items": [{"key": "password", "path": "pw/file"}, {"key": "user", "path": "u", "mode": 0o600}]}})
        ),
        [f("pw/file", "s3cr3t", 0o400), f("u", "postgres", 0o600)]
    );
    assert_eq!(
        files(json!({"name": "c", "configMap": {"name": "cfg"}})),
        [f("a.conf", "a=1", 0o644), f("blob", "\u{0}\u{1}", 0o644)]
    );
    assert_eq!(
        files(json!({"name": "s", "secret": {"secretName": "absent", "optional": true}})),
        []
    );
    assert_eq!(
        files(
            json!({"name": "s", "secret": {"secretName": "creds", "optional": true,
            "items": [{"key": "nope", "path": "n"}, {"key": "user", "path": "u"}]}})
        ),
        [f("u", "postgres", 0o644)]
    );
}

#[test]
fn bad_volumes_are_errors_not_panics() {
    let cases = [
        (
            json!({"name": "s", "secret": {"secretName": "absent"}}),
            VolumeReason::SecretNotFound("absent".into()),
        ),
        (
            json!({"name": "c", "configMap": {"name": "absent"}}),
            VolumeReason::ConfigMapNotFound("absent".into()),
        ),
        (
            json!({"name": "s", "secret": {"secretName": "creds", "items": [{"key": "k", "path": "k"}]}}),
            VolumeReason::KeyNotFound {
                object: "Secret creds".into(),
                key: "k".into(),
            },
        ),
        (
            json!({"name": "s", "secret": {"secretName": "creds", "items": [{"key": "user", "path": "../escape"}]}}),
            VolumeReason::BadPath("../escape".into()),
        ),
        (
            json!({"name": "s", "secret": {"secretName": "creds", "items": [{"key": "user", "path": "/etc/passwd"}]}}),
            VolumeReason::BadPath("/etc/passwd".into()),
        ),
        (
            json!({"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o1777}}),
            VolumeReason::BadMode(0o1777),
        ),
        (
            json!({"name": "s", "secret": {"secretName": "creds", "items": [{"key": "user", "path": "a"}, {"key": "password", "path": "a/b"}]}}),
            VolumeReason::PathConflict("a/b".into()),
        ),
        (
            json!({"name": "p", "persistentVolumeClaim": {"claimName": "absent"}}),
            VolumeReason::ClaimNotFound("absent".into()),
        ),
        (
            json!({"name": "p", "persistentVolumeClaim": {"claimName": "broken"}}),
            VolumeReason::Lookup(LookupError("api down".into())),
        ),
        (
            json!({"name": "..", "emptyDir": {}}),
            VolumeReason::BadPath("..".into()),
        ),
    ];
    for (volume, want) in cases {
        assert_eq!(
            planned(json!([volume.clone()])).map(|_| ()),
            Err(want),
            "{volume}"
        );
    }
}

#[test]
fn projected_and_downward_api() {
    // What the ServiceAccount admission plugin injects into every pod.
    let got = files(
        json!({"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            {"secret": {"name": "creds", "items": [{"key": "user", "path": "user", "mode": 0o600}]}},
            {"secret": {"name": "absent", "optional": true}}
        ]}}),
    );
    assert_eq!(
        got,
        [
            f("token", "acid-a-0:postgres-pod:-:3607", 0o644),
            f("ca.crt", "CA", 0o644),
            f("namespace", "ns", 0o644),
            f("user", "postgres", 0o600),
        ]
    );
    let got = files(json!({"name": "d", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "mem", "mode": 0o444, "resourceFieldRef": {"containerName": "postgres", "resource": "limits.memory", "divisor": "1Mi"}}
    ]}}));
    assert_eq!(
        got,
        [f("labels", "app=\"x\"", 0o644), f("mem", "1024", 0o444)]
    );
    // Volumes only take metadata fields, and resources need a container name.
    let bad = planned(
        json!([{"name": "d", "downwardAPI": {"items": [{"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}]}}]),
    );
    assert!(matches!(bad, Err(VolumeReason::Field(_))), "{bad:?}");
    let clash = planned(json!([{"name": "p", "projected": {"sources": [
        {"secret": {"name": "creds"}}, {"secret": {"name": "creds"}}]}}]));
    assert_eq!(
        clash.map(|_| ()),
        Err(VolumeReason::PathConflict("password".into()))
    );
}

#[test]
fn claims_empty_dirs_and_unsupported() {
    let plan = planned(json!([
        {"name": "pgdata", "persistentVolumeClaim": {"claimName": "pgdata-acid-a-0"}},
        {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
        {"name": "host", "hostPath": {"path": "/etc"}}
    ]))
    .unwrap();
    let dirs: Vec<(&str, &Path, &VolumeKind)> = plan
        .volumes
        .iter()
        .map(|v| (v.name.as_str(), v.host_dir.as_path(), &v.kind))
        .collect();
    assert_eq!(
        dirs,
        [
            (
                "pgdata",
                Path::new("/r/pvcs/pvc-uid-1"),
                &VolumeKind::Claim {
                    claim: "pgdata-acid-a-0".into(),
                    uid: "pvc-uid-1".into()
                }
            ),
            (
                "scratch",
                Path::new("/r/pvcs/pvc-uid-2"),
                &VolumeKind::Claim {
                    claim: "acid-a-0-scratch".into(),
                    uid: "pvc-uid-2".into()
                }
            ),
            (
                "dshm",
                Path::new("/r/pods/u-1/volumes/dshm"),
                &VolumeKind::EmptyDir
            ),
        ]
    );
    assert_eq!(plan.unsupported, [("host".to_string(), "hostPath")]);
}

#[test]
fn mounts_map_container_paths_with_sub_paths() {
    let (pod, c) = pod(
        json!([
            {"name": "pgdata", "persistentVolumeClaim": {"claimName": "pgdata-acid-a-0"}},
            {"name": "creds", "secret": {"secretName": "creds"}},
            {"name": "host", "hostPath": {"path": "/etc"}}
        ]),
        json!([
            {"name": "pgdata", "mountPath": "/home/postgres/pgdata"},
            {"name": "pgdata", "mountPath": "/sub", "subPath": "a/b"},
            {"name": "pgdata", "mountPath": "/expr", "subPathExpr": "$(POD)/x"},
            {"name": "creds", "mountPath": "/etc/pw", "subPath": "password"}
        ]),
    );
    let (objects, alloc) = (objects(), Allocatable::default());
    let sources = Sources {
        objects: &objects,
        tokens: &FixedToken,
        claims: &OneClaim,
        allocatable: &alloc,
    };
    let mut env = Environment::default();
    env.set("POD", "acid-a-0".into());
    let (volumes, mounts) = plan(&pod, &c, &env, &sources, &roots(Path::new("/r"))).unwrap();
    let got: Vec<(&str, PathBuf, bool, bool)> = mounts
        .iter()
        .map(|m| {
            (
                m.container_path.as_str(),
                m.host_path.clone(),
                m.read_only,
                m.create_dir,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "/home/postgres/pgdata",
                "/r/pvcs/pvc-uid-1".into(),
                false,
                false
            ),
            ("/sub", "/r/pvcs/pvc-uid-1/a/b".into(), false, true),
            ("/expr", "/r/pvcs/pvc-uid-1/acid-a-0/x".into(), false, true),
            (
                "/etc/pw",
                "/r/pods/u-1/volumes/creds/password".into(),
                true,
                false
            ),
        ]
    );
    let mount = |m: serde_json::Value| {
        let mut c = c.clone();
        c.volume_mounts = Some(vec![serde_json::from_value(m).unwrap()]);
        plan_mounts(&pod, &c, &env, &volumes).map_err(|e| e.reason)
    };
    assert_eq!(
        mount(json!({"name": "nope", "mountPath": "/x"})),
        Err(VolumeReason::NoSuchVolume)
    );
    assert_eq!(
        mount(json!({"name": "host", "mountPath": "/x"})),
        Err(VolumeReason::Unsupported("hostPath"))
    );
    assert_eq!(
        mount(json!({"name": "pgdata", "mountPath": "/x", "subPath": "../../x"})),
        Err(VolumeReason::BadSubPath("../../x".into()))
    );
    assert_eq!(
        mount(json!({"name": "pgdata", "mountPath": "/x", "subPathExpr": "/$(POD)"})),
        Err(VolumeReason::BadSubPath("/acid-a-0".into()))
    );
}

#[test]
fn apply_writes_atomically_updates_and_prunes() {
    let tmp = tempfile::tempdir().unwrap();
    let (pod, c) = pod(
        json!([
            {"name": "creds", "secret": {"secretName": "creds", "items": [
                {"key": "password", "path": "nested/pw", "mode": 0o600}, {"key": "user", "path": "user"}]}},
            {"name": "pgdata", "persistentVolumeClaim": {"claimName": "pgdata-acid-a-0"}},
            {"name": "dshm", "emptyDir": {}}
        ]),
        json!([{"name": "pgdata", "mountPath": "/data", "subPath": "pgroot"}]),
    );
    let alloc = Allocatable::default();
    let run = |objects: &InMemory| {
        let sources = Sources {
            objects,
            tokens: &FixedToken,
            claims: &OneClaim,
            allocatable: &alloc,
        };
        let (volumes, mounts) = plan(
            &pod,
            &c,
            &Environment::default(),
            &sources,
            &roots(tmp.path()),
        )
        .unwrap();
        apply(&volumes, &mounts).unwrap();
        volumes
    };
    let volumes = run(&objects());
    let creds = tmp.path().join("pods/u-1/volumes/creds");
    assert_eq!(
        fs::read_to_string(creds.join("nested/pw")).unwrap(),
        "s3cr3t"
    );
    assert_eq!(
        fs::metadata(creds.join("nested/pw"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(creds.join("user"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    assert!(volumes.dirs().contains(&creds.join("nested")));
    let pgroot = tmp.path().join("pvcs/pvc-uid-1/pgroot");
    assert!(pgroot.is_dir());
    assert_eq!(
        fs::metadata(tmp.path().join("pods/u-1/volumes/dshm"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o777
    );

    // Data in the claim survives a re-plan; an unchanged file is not rewritten.
    fs::write(pgroot.join("PG_VERSION"), "17").unwrap();
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
    let user_inode = inode(&creds.join("user"));
    run(&objects());
    assert_eq!(inode(&creds.join("user")), user_inode);
    assert_eq!(fs::read_to_string(pgroot.join("PG_VERSION")).unwrap(), "17");

    // A Secret update replaces the file by rename (new inode), and a dropped key disappears.
    let updated: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds", "namespace": "ns"}, "stringData": {"password": "n3w", "user": "other"}
    }))
    .unwrap();
    fs::write(creds.join("stale"), "x").unwrap();
    run(&objects().with_secret(updated));
    assert_eq!(fs::read_to_string(creds.join("user")).unwrap(), "other");
    assert_ne!(inode(&creds.join("user")), user_inode);
    assert_eq!(fs::read_to_string(creds.join("nested/pw")).unwrap(), "n3w");
    assert!(!creds.join("stale").exists());
    let leftovers: Vec<_> = fs::read_dir(&creds)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temp files left: {leftovers:?}");
}
