//! The benchmark's clusters: `manifests/complete-postgres-manifest.yaml` with what the test
//! world cannot run taken out (each removal is listed, with its reason), and the roles that
//! must log in once the cluster is synced.

use anyhow::{Context, Result};
use bench::local::repo;
use serde_json::{Value, json};

/// The complete manifest adapted to the test world, and what was changed.
pub struct Template {
    pub spec: Value,
    pub labels: Value,
    pub adjusted: Vec<String>,
}

/// Spec fields dropped, with the reason the test world cannot run them.
const DROPPED: [(&str, &str); 16] = [
    (
        "clone",
        "a clone from S3 WAL: there is no object storage here",
    ),
    (
        "standby",
        "a standby cluster takes no role or database writes",
    ),
    ("sidecars", "the pod runner runs only the Spilo container"),
    (
        "initContainers",
        "the pod runner runs only the Spilo container",
    ),
    (
        "init_containers",
        "the pod runner runs only the Spilo container",
    ),
    (
        "podPriorityClassName",
        "no PriorityClass postgres-pod-priority here",
    ),
    (
        "pod_priority_class_name",
        "no PriorityClass postgres-pod-priority here",
    ),
    ("tls", "its Secrets pg-tls and pg-tls-ca do not exist"),
    ("env", "names a missing Secret and a WAL bucket"),
    (
        "envFrom",
        "names a ConfigMap and a Secret that do not exist",
    ),
    ("streams", "no FabricEventStream CRD here"),
    (
        "nodeAffinity",
        "the kwok nodes have no instance type m5.large",
    ),
    (
        "topologySpreadConstraints",
        "its selector names acid-test-cluster",
    ),
    (
        "spiloRunAsUser",
        "the runner runs every member as user postgres",
    ),
    (
        "spiloRunAsGroup",
        "the runner runs every member as user postgres",
    ),
    (
        "spiloFSGroup",
        "the runner runs every member as user postgres",
    ),
];

/// Reads and adapts the complete manifest for `instances` members each.
pub fn template(instances: i32, patroni_timing: Option<(u32, u32)>) -> Result<Template> {
    let path = repo().join("manifests/complete-postgres-manifest.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text)?;
    let doc: Value = serde_json::to_value(yaml)?;
    let mut spec = doc["spec"].clone();
    let mut adjusted = Vec::new();
    let obj = spec.as_object_mut().context("spec is not a mapping")?;
    for (field, why) in DROPPED {
        if obj.remove(field).is_some() {
            adjusted.push(format!("spec.{field} dropped: {why}"));
        }
    }
    if obj.insert("numberOfInstances".into(), json!(instances)) != Some(json!(instances)) {
        adjusted.push(format!("numberOfInstances {instances}"));
    }
    let patroni = &mut spec["patroni"];
    if patroni
        .as_object_mut()
        .and_then(|p| p.remove("pg_hba"))
        .is_some()
    {
        adjusted.push(
            "spec.patroni.pg_hba dropped: it has no local line for Patroni's socket and no \
             replication line; Spilo's default admits 127.0.0.0/8"
                .into(),
        );
    }
    if patroni
        .as_object_mut()
        .and_then(|p| p.remove("slots"))
        .is_some()
    {
        adjusted.push("spec.patroni.slots dropped: a logical slot needs wal_level logical".into());
    }
    if let Some((ttl, loop_wait)) = patroni_timing {
        patroni["ttl"] = json!(ttl);
        patroni["loop_wait"] = json!(loop_wait);
        adjusted.push(format!(
            "spec.patroni ttl {ttl}, loop_wait {loop_wait}: fewer Patroni loops per second, so that \
             many members fit on this machine's cores"
        ));
    }
    let volume = &mut spec["volume"];
    if volume
        .as_object_mut()
        .and_then(|v| v.remove("selector"))
        .is_some()
    {
        adjusted.push("spec.volume.selector dropped: the hostPath provisioner binds none".into());
    }
    if let Some(volumes) = spec["additionalVolumes"].as_array_mut() {
        let before = volumes.len();
        volumes.retain(|v| v["volumeSource"].get("persistentVolumeClaim").is_none());
        if volumes.len() != before {
            adjusted.push(
                "additionalVolumes: the PVC pvc-postgresql-data-partitions dropped (missing)"
                    .into(),
            );
        }
    }
    for (name, db) in spec["preparedDatabases"]
        .as_object_mut()
        .into_iter()
        .flatten()
    {
        let db = db.as_object_mut().context("a prepared database")?;
        if db.remove("secretNamespace").is_some() {
            adjusted.push(format!(
                "preparedDatabases.{name}.secretNamespace dropped: Secrets stay in the bench namespace"
            ));
        }
        if let Some(ext) = db.get_mut("extensions").and_then(Value::as_object_mut)
            && ext.remove("pg_partman").is_some()
        {
            adjusted.push(format!(
                "preparedDatabases.{name}.extensions.pg_partman dropped: not installed here"
            ));
        }
    }
    adjusted.push("metadata.annotations: delete-date today, delete-clustername the cluster".into());
    Ok(Template {
        spec,
        labels: doc["metadata"]["labels"].clone(),
        adjusted,
    })
}

impl Template {
    /// The `postgresql` object of cluster `name` in `ns`.
    pub fn object(&self, ns: &str, name: &str) -> Value {
        json!({"apiVersion": "acid.zalan.do/v1", "kind": "postgresql",
            "metadata": {"name": name, "namespace": ns, "labels": self.labels,
                "annotations": {"delete-date": common::rules::delete_protection::today_utc(),
                    "delete-clustername": name}},
            "spec": self.spec})
    }

    /// The roles that must log in: the manifest's users and the default LOGIN users of the
    /// prepared databases (`<db>_{owner,reader,writer}_user`, and `<db>_<schema>_…` for a
    /// schema with `defaultUsers`).
    pub fn login_roles(&self) -> Vec<String> {
        let mut roles: Vec<String> = self.spec["users"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, _)| name.clone())
            .collect();
        let defaults = |prefix: &str| {
            ["owner", "reader", "writer"].map(|kind| format!("{prefix}_{kind}_user"))
        };
        for (db, body) in self.spec["preparedDatabases"]
            .as_object()
            .into_iter()
            .flatten()
        {
            if body["defaultUsers"].as_bool() == Some(true) {
                roles.extend(defaults(db));
            }
            for (schema, s) in body["schemas"].as_object().into_iter().flatten() {
                if s["defaultUsers"].as_bool() == Some(true) {
                    roles.extend(defaults(&format!("{db}_{schema}")));
                }
            }
        }
        roles
    }
}

/// The Secret of `user` in cluster `cluster` (the default `secret_name_template`).
pub fn secret_name(user: &str, cluster: &str) -> String {
    format!(
        "{}.{cluster}.credentials.postgresql.acid.zalan.do",
        user.replace('_', "-")
    )
}
