//! The least ClusterRole the controller needs, derived from the table of child kinds plus the
//! few objects that are not children. `manifests/controller/rbac.yaml` (and later the chart)
//! must grant exactly this: a test fails on a missing verb and on an extra one.

use super::{ChildKind, EXTRA, KINDS, Removal, Write};
use std::collections::{BTreeMap, BTreeSet};

/// One RBAC rule: group, resource, optional resource names, verbs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// API group ("" for the core group).
    pub group: &'static str,
    /// Resource, or `resource/subresource`.
    pub resource: &'static str,
    /// Restricts the rule to these names (empty: all).
    pub names: &'static [&'static str],
    /// Verbs.
    pub verbs: Vec<&'static str>,
    /// Why the controller needs it, for the manifest's comment.
    pub why: &'static str,
}

/// A grant the controller needs beyond its children: group, resource, resource names, verbs and
/// why.
type Need = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static str,
);

/// What the controller needs beyond its children.
const OTHERS: &[Need] = &[
    (
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        &[],
        &["get", "list", "watch", "create", "patch"],
        "registers or updates the CRDs (enable_crd_registration)",
    ),
    (
        "acid.zalan.do",
        "postgresqls",
        &[],
        &["get", "list", "watch", "patch"],
        "the clusters; patch adds and removes the finalizer",
    ),
    (
        "acid.zalan.do",
        "postgresqls/status",
        &[],
        &["patch"],
        "the cluster status",
    ),
    (
        "acid.zalan.do",
        "postgresqls/finalizers",
        &[],
        &["update"],
        "owner references that block deletion need it",
    ),
    (
        "acid.zalan.do",
        "operatorconfigurations",
        &[],
        &["get", "list", "watch"],
        "the configuration in CRD form",
    ),
    (
        "",
        "configmaps",
        &[],
        &["get", "list", "watch", "delete"],
        "the configuration in ConfigMap form; Patroni's leader lock and infrastructure role descriptions (read); Patroni's ConfigMaps deleted with their cluster",
    ),
    (
        "",
        "persistentvolumeclaims",
        &[],
        &["watch", "patch"],
        "the data volumes' sizes (cached) and their growth to spec.volume.size (storage_resize_mode pvc or mixed)",
    ),
    (
        "storage.k8s.io",
        "storageclasses",
        &[],
        &["get"],
        "whether a volume's StorageClass allows expansion before it is grown",
    ),
    (
        "",
        "secrets",
        &[],
        &["patch"],
        "an infrastructure role's password copied into its cluster Secret when they differ",
    ),
    (
        "acid.zalan.do",
        "postgresteams",
        &[],
        &["list", "watch"],
        "additional teams and members (enable_postgres_team_crd)",
    ),
    (
        "",
        "pods",
        &[],
        &["list", "watch", "patch", "delete"],
        "the members' role labels, readiness and Patroni state: Running needs a leader; the rolling update flags pods (patch) and recreates them (delete)",
    ),
    (
        "",
        "pods/exec",
        &[],
        &["create", "get"],
        "the major version upgrade runs Spilo's upgrade script in the primary's postgres container (create; get is what API servers before 1.35 check for a WebSocket exec)",
    ),
    (
        "",
        "nodes",
        &[],
        &["list", "watch"],
        "node drains: the masters leave a node that is cordoned or loses node_readiness_label",
    ),
    (
        "rbac.authorization.k8s.io",
        "clusterroles",
        &["postgres-pod"],
        &["bind"],
        "binding the pods' ClusterRole without holding its permissions",
    ),
    (
        "events.k8s.io",
        "events",
        &[],
        &["create", "patch"],
        "events about clusters",
    ),
    (
        "coordination.k8s.io",
        "leases",
        &[],
        &["get", "create", "update"],
        "leader election",
    ),
];

/// The verbs one child kind needs: its cache lists and watches, its writes create (server-side
/// apply creates through patch, which the API server authorizes as create too) and patch, and
/// deletion (with the cluster or as an orphan) deletes.
pub fn verbs(kind: &ChildKind) -> Vec<&'static str> {
    let mut verbs = Vec::new();
    if kind.select.is_some() {
        verbs.extend(["list", "watch"]);
    } else if kind.removal != Removal::Never {
        verbs.push("list");
    }
    match kind.write {
        Some(Write::Apply(_)) => verbs.extend(["create", "patch"]),
        Some(Write::CreateOnly) => verbs.push("create"),
        None => {}
    }
    if kind.removal != Removal::Never || kind.orphans {
        verbs.push("delete");
    }
    verbs
}

/// Every rule of the controller's ClusterRole.
pub fn rules() -> Vec<Rule> {
    let children = KINDS.iter().chain(EXTRA).map(|kind| Rule {
        group: kind.group,
        resource: kind.resource,
        names: &[],
        verbs: verbs(kind),
        why: "a child kind (controller/src/children)",
    });
    let others = OTHERS
        .iter()
        .map(|(group, resource, names, verbs, why)| Rule {
            group,
            resource,
            names,
            verbs: verbs.to_vec(),
            why,
        });
    children.chain(others).collect()
}

/// The rules as a comparable set: (group, resource, names) → verbs.
pub type Grants = BTreeMap<(String, String, Vec<String>), BTreeSet<String>>;

/// [`rules`] as [`Grants`].
pub fn grants() -> Grants {
    let mut grants = Grants::new();
    for rule in rules() {
        let key = (
            rule.group.to_string(),
            rule.resource.to_string(),
            rule.names.iter().map(|n| n.to_string()).collect(),
        );
        grants
            .entry(key)
            .or_default()
            .extend(rule.verbs.iter().map(|v| v.to_string()));
    }
    grants
}

/// The grants of a ClusterRole's `rules` as written in a manifest (each rule may list several
/// groups and resources).
pub fn grants_of(rules: &serde_json::Value) -> Grants {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    let mut grants = Grants::new();
    for rule in rules.as_array().into_iter().flatten() {
        let names = strings(&rule["resourceNames"]);
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                grants
                    .entry((group.clone(), resource, names.clone()))
                    .or_default()
                    .extend(strings(&rule["verbs"]));
            }
        }
    }
    grants
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/controller/rbac.yaml"
    ));

    fn cluster_role(name: &str) -> serde_json::Value {
        serde_yaml::Deserializer::from_str(MANIFEST)
            .map(|doc| serde_json::Value::deserialize(doc).expect("rbac.yaml parses"))
            .find(|doc| doc["kind"] == "ClusterRole" && doc["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("rbac.yaml has the ClusterRole {name}"))
    }

    use serde::Deserialize;

    #[test]
    fn the_manifest_grants_exactly_what_the_table_needs() {
        let granted = grants_of(&cluster_role("postgres-operator")["rules"]);
        let needed = grants();
        let mut problems = Vec::new();
        for (key, verbs) in &needed {
            let have = granted.get(key).cloned().unwrap_or_default();
            let missing: Vec<_> = verbs.difference(&have).collect();
            if !missing.is_empty() {
                problems.push(format!("{key:?} lacks {missing:?}"));
            }
        }
        for (key, verbs) in &granted {
            let need = needed.get(key).cloned().unwrap_or_default();
            let extra: Vec<_> = verbs.difference(&need).collect();
            if !extra.is_empty() {
                problems.push(format!("{key:?} grants {extra:?}, which nothing needs"));
            }
        }
        assert!(
            problems.is_empty(),
            "manifests/controller/rbac.yaml differs from controller/src/children:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn verbs_follow_the_row() {
        let statefulsets = KINDS.iter().find(|k| k.field == "statefulsets").unwrap();
        assert_eq!(
            verbs(statefulsets),
            ["list", "watch", "create", "patch", "delete"]
        );
        let accounts = KINDS
            .iter()
            .find(|k| k.field == "service_accounts")
            .unwrap();
        assert_eq!(verbs(accounts), ["list", "watch", "create"]);
        assert_eq!(verbs(&EXTRA[0]), ["list", "delete"]);
    }
}
