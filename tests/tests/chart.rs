//! The Helm chart in `charts/postgres-operator`.
//!
//! Rendering (no cluster needed): `helm lint`; Zalando's default values file
//! (`../shared/fixtures/zalando/chart-values.yaml`), unchanged, gives in both `configTarget`s the
//! configuration Zalando's chart renders from it, which our config loader accepts; the object
//! names, labels and selector are Zalando's; the RBAC is the one of `manifests/`; the pods pass the
//! restricted Pod Security Standard; each part can be turned off.
//!
//! End to end: `helm install` with a custom release name into a test namespace, the controller
//! scoped to it (`WATCHED_NAMESPACE` through `extraEnvs`) and the webhook's configurations limited
//! to it; the pods run for real through the pod runner; a cluster becomes Running with a Patroni
//! leader; a bad manifest is refused by the installed webhook; `helm upgrade` raising
//! `configGeneral.max_instances` and switching `configTarget` from ConfigMap to
//! OperatorConfigurationCRD takes effect (the webhook admits, the controller runs the larger
//! cluster) without restarting the database pod; `helm
//! uninstall` leaves the cluster's objects and the CRDs and no webhook configuration; deleting the
//! namespace of a release and its cluster is not blocked by the release's fail-closed webhook.

use anyhow::{Context, Result, bail, ensure};
use common::config::{Input, load};
use e2e::chart::{helm_wait, operator_chart, release_can_run};
use e2e::command::{helm, kubectl, kubectl_with_stdin};
use e2e::eventually::eventually_with;
use e2e::patroni::{TIMEOUT, json, manifest, writable_master};
use e2e::{cluster::cluster, namespace::TestNamespace, paths};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// Zalando's data files (`../shared/fixtures/zalando` next to the repository).
fn fixture(name: &str) -> PathBuf {
    let root = paths::repo_root();
    let candidates = [
        root.join("../shared/fixtures/zalando").join(name),
        PathBuf::from("/work/shared/fixtures/zalando").join(name),
    ];
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| candidates[0].clone())
}

/// The YAML documents of `text` as JSON, empty ones left out.
fn documents(text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(doc)?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// `helm template` of the chart as release `release` in `namespace` with extra arguments.
async fn render(release: &str, namespace: &str, args: &[&str]) -> Result<Vec<Value>> {
    let chart = operator_chart();
    let mut all = vec!["template", release, chart.as_str(), "-n", namespace];
    all.extend_from_slice(args);
    let out = helm(all).await?.ok()?;
    documents(&out.stdout)
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .with_context(|| format!("no {kind} {name} rendered"))
}

fn kinds(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// (group, resource, resourceNames) → verbs of a ClusterRole's rules.
type Grants = BTreeMap<(String, String, Vec<String>), BTreeSet<String>>;

fn grants(rules: &Value) -> Grants {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    let mut out = Grants::new();
    for rule in rules.as_array().into_iter().flatten() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                out.entry((group.clone(), resource, strings(&rule["resourceNames"])))
                    .or_default()
                    .extend(strings(&rule["verbs"]));
            }
        }
    }
    out
}

fn manifest_objects(path: &str) -> Result<Vec<Value>> {
    documents(&std::fs::read_to_string(paths::repo_root().join(path))?)
}

fn env_of(container: &Value) -> BTreeMap<String, Value> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let value = e
                .get("value")
                .cloned()
                .unwrap_or_else(|| e["valueFrom"].clone());
            (e["name"].as_str().unwrap_or_default().to_string(), value)
        })
        .collect()
}

/// The restricted Pod Security Standard's checks that concern us, and probes.
fn check_restricted(deployment: &Value) -> Result<()> {
    let name = &deployment["metadata"]["name"];
    let pod = &deployment["spec"]["template"]["spec"];
    ensure!(
        pod["securityContext"]["runAsNonRoot"] == true,
        "{name}: runAsNonRoot"
    );
    ensure!(
        pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault",
        "{name}: seccomp"
    );
    ensure!(
        pod["hostNetwork"].is_null() && pod["hostPID"].is_null(),
        "{name}: host namespaces"
    );
    for c in pod["containers"].as_array().into_iter().flatten() {
        let sc = &c["securityContext"];
        ensure!(
            sc["allowPrivilegeEscalation"] == false,
            "{name}: allowPrivilegeEscalation"
        );
        ensure!(
            sc["capabilities"]["drop"] == json!(["ALL"]),
            "{name}: capabilities"
        );
        ensure!(
            sc["readOnlyRootFilesystem"] == true,
            "{name}: readOnlyRootFilesystem"
        );
        ensure!(sc["runAsUser"] == 1000, "{name}: UID 1000");
        ensure!(
            sc["privileged"].is_null() || sc["privileged"] == false,
            "{name}: privileged"
        );
        ensure!(
            c["readinessProbe"]["httpGet"]["path"] == "/readyz",
            "{name}: readiness probe"
        );
        ensure!(
            c["livenessProbe"]["httpGet"]["path"] == "/healthz",
            "{name}: liveness probe"
        );
    }
    Ok(())
}

#[tokio::test]
async fn helm_lint_passes() -> Result<()> {
    helm(["lint", "--strict", &operator_chart()]).await?.ok()?;
    let zalando = fixture("chart-values.yaml");
    helm(["lint", &operator_chart(), "-f", &zalando.to_string_lossy()])
        .await?
        .ok()?;
    for variant in [
        "configTarget=ConfigMap",
        "webhook.enabled=false",
        "controller.enabled=false",
        "rbac.createAggregateClusterRoles=true",
    ] {
        helm(["lint", &operator_chart(), "--set", variant])
            .await?
            .ok()?;
    }
    Ok(())
}

/// Zalando's own default values file, rendered by our chart as Zalando's chart was rendered for the
/// fixtures: release and namespace `postgres-operator`.
#[tokio::test]
async fn zalando_values_give_zalandos_configuration_in_both_targets() -> Result<()> {
    let values = fixture("chart-values.yaml");
    let values = values.to_string_lossy();
    let mut loaded = BTreeMap::new();
    for (target, fixture_file, kind) in [
        ("ConfigMap", "rendered-configmap.yaml", "ConfigMap"),
        (
            "OperatorConfigurationCRD",
            "rendered-operatorconfiguration.yaml",
            "OperatorConfiguration",
        ),
    ] {
        let target_arg = format!("configTarget={target}");
        let objects = render(
            "postgres-operator",
            "postgres-operator",
            &["-f", &values, "--set", &target_arg],
        )
        .await?;
        let ours = find(&objects, kind, "postgres-operator")?;
        let text = std::fs::read_to_string(fixture(fixture_file))?;
        let theirs = documents(&text)?.remove(0);
        ensure!(ours["metadata"]["namespace"] == "postgres-operator");
        for label in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/managed-by",
        ] {
            ensure!(
                ours["metadata"]["labels"][label] == theirs["metadata"]["labels"][label],
                "{kind} label {label}"
            );
        }
        let (config, other_kind) = if kind == "ConfigMap" {
            ensure!(
                ours["data"] == theirs["data"],
                "ConfigMap data differs from Zalando's:\nours   {}\ntheirs {}",
                ours["data"],
                theirs["data"]
            );
            let data: BTreeMap<String, String> = serde_json::from_value(ours["data"].clone())?;
            let got = load(Input::ConfigMap(&data)).map_err(|e| anyhow::anyhow!("{e}"))?;
            ensure!(
                got.warnings.is_empty(),
                "the loader warns about the ConfigMap: {:?}",
                got.warnings
            );
            (got.config, "OperatorConfiguration")
        } else {
            ensure!(
                ours["configuration"] == theirs["configuration"],
                "OperatorConfiguration differs from Zalando's:\nours   {}\ntheirs {}",
                ours["configuration"],
                theirs["configuration"]
            );
            let got =
                load(Input::OperatorConfiguration(ours)).map_err(|e| anyhow::anyhow!("{e}"))?;
            (got.config, "ConfigMap")
        };
        ensure!(
            find(&objects, other_kind, "postgres-operator").is_err(),
            "{target} renders a {other_kind} too"
        );
        loaded.insert(target, config);

        // The controller reads the object the target names.
        let deployment = find(&objects, "Deployment", "postgres-operator")?;
        let env = env_of(&deployment["spec"]["template"]["spec"]["containers"][0]);
        let (wanted, unwanted) = if kind == "ConfigMap" {
            ("CONFIG_MAP_NAME", "POSTGRES_OPERATOR_CONFIGURATION_OBJECT")
        } else {
            ("POSTGRES_OPERATOR_CONFIGURATION_OBJECT", "CONFIG_MAP_NAME")
        };
        ensure!(
            env.get(wanted) == Some(&json!("postgres-operator")),
            "{env:?}"
        );
        ensure!(!env.contains_key(unwanted), "{env:?}");
    }
    // Both targets mean the same, except where Zalando's chart differs between them (kept, as
    // changing either would change running pods or nothing): the ConfigMap leaves out the pod
    // resources group and the OAuth token Secret, and only the ConfigMap names the database pods'
    // PriorityClass when the chart creates it without a name.
    let mut from_map = loaded["ConfigMap"].clone();
    let from_crd = &loaded["OperatorConfigurationCRD"];
    ensure!(from_map.kubernetes.pod_priority_class_name == "postgres-operator-pod");
    ensure!(from_crd.kubernetes.pod_priority_class_name.is_empty());
    from_map.postgres_pod_resources = from_crd.postgres_pod_resources.clone();
    from_map.kubernetes.oauth_token_secret_name =
        from_crd.kubernetes.oauth_token_secret_name.clone();
    from_map.kubernetes.pod_priority_class_name.clear();
    ensure!(
        &from_map == from_crd,
        "the two targets configure the operator differently:\n{}\n---\n{}",
        serde_yaml::to_string(&from_map)?,
        serde_yaml::to_string(from_crd)?
    );
    ensure!(from_crd.postgres_pod_resources.default_cpu_limit == "1");
    Ok(())
}

/// Names, labels and selector of Zalando's chart for the same release name, and the RBAC of
/// `manifests/`.
#[tokio::test]
async fn objects_are_named_as_zalandos_and_grant_what_the_manifests_grant() -> Result<()> {
    let objects = render("postgres-operator", "operators", &[]).await?;
    let all = kinds(&objects);
    let deployment = find(&objects, "Deployment", "postgres-operator")?;
    ensure!(
        deployment["spec"]["selector"]["matchLabels"]
            == json!({"app.kubernetes.io/name": "postgres-operator", "app.kubernetes.io/instance": "postgres-operator"}),
        "selector {}",
        deployment["spec"]["selector"]
    );
    let labels = &deployment["metadata"]["labels"];
    ensure!(
        labels["helm.sh/chart"]
            .as_str()
            .unwrap_or("")
            .starts_with("postgres-operator-")
    );
    ensure!(labels["app.kubernetes.io/managed-by"] == "Helm");
    let service = find(&objects, "Service", "postgres-operator")?;
    ensure!(service["spec"]["ports"][0]["port"] == 8080, "{service}");
    ensure!(service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    ensure!(
        container["ports"][0]["containerPort"] == 8080 && container["ports"][0]["name"] == "http",
        "the Service's target port is the controller's HTTP port: {container}"
    );
    let env = env_of(container);
    ensure!(env["CONTROLLER_ADMIN_LISTEN"] == "0.0.0.0:8080");
    ensure!(env["LEADER_ELECTION"] == "true");
    find(&objects, "ServiceAccount", "postgres-operator")?;
    find(&objects, "ClusterRoleBinding", "postgres-operator")?;
    find(&objects, "PriorityClass", "postgres-operator-pod")?;

    // The ClusterRoles grant what manifests/ grants (checked there against the children table).
    let manifest = manifest_objects("manifests/controller/rbac.yaml")?;
    for (ours, theirs) in [
        ("postgres-operator", "postgres-operator"),
        ("postgres-pod", "postgres-pod"),
    ] {
        let a = grants(&find(&objects, "ClusterRole", ours)?["rules"]);
        let b = grants(&find(&manifest, "ClusterRole", theirs)?["rules"]);
        ensure!(
            a == b,
            "ClusterRole {ours} differs from manifests/:\n{a:?}\n{b:?}"
        );
    }
    // The webhook's ClusterRole is manifests/webhook's plus, for its self-managed certificate,
    // its own two webhook configurations by name (and its Secret, in a Role in its namespace).
    let webhook_manifest = manifest_objects("manifests/webhook/webhook.yaml")?;
    let mut a = grants(&find(&objects, "ClusterRole", "postgres-operator-webhook")?["rules"]);
    let configurations = vec!["postgres-operator-webhook-operators".to_string()];
    for resource in [
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
    ] {
        let key = (
            "admissionregistration.k8s.io".to_string(),
            resource.to_string(),
            configurations.clone(),
        );
        let verbs = a.remove(&key).unwrap_or_default();
        ensure!(
            verbs == ["get", "list", "update", "watch"].map(String::from).into(),
            "{resource}: {verbs:?}"
        );
    }
    let b = grants(&find(&webhook_manifest, "ClusterRole", "pg-operator-webhook")?["rules"]);
    ensure!(
        a == b,
        "the webhook's ClusterRole differs from manifests/webhook"
    );
    let role = grants(&find(&objects, "Role", "postgres-operator-webhook")?["rules"]);
    let secret = vec!["postgres-operator-webhook-cert".to_string()];
    let expected: Grants = [
        (
            (String::new(), "secrets".to_string(), secret),
            ["get", "list", "update", "watch"].map(String::from).into(),
        ),
        (
            (String::new(), "secrets".to_string(), vec![]),
            ["create"].map(String::from).into(),
        ),
    ]
    .into();
    ensure!(role == expected, "the webhook's Role: {role:?}");

    // The webhook: two replicas, a PDB, its own selector the controller's does not match.
    let webhook = find(&objects, "Deployment", "postgres-operator-webhook")?;
    ensure!(webhook["spec"]["replicas"] == 2);
    let pdb = find(&objects, "PodDisruptionBudget", "postgres-operator-webhook")?;
    ensure!(pdb["spec"]["selector"] == webhook["spec"]["selector"]);
    ensure!(
        webhook["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] != "postgres-operator"
    );
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let config = find(&objects, kind, "postgres-operator-webhook-operators")?;
        for hook in config["webhooks"].as_array().into_iter().flatten() {
            ensure!(
                hook["clientConfig"].get("caBundle").is_none(),
                "{kind} renders a caBundle"
            );
            ensure!(hook["clientConfig"]["service"]["namespace"] == "operators");
            // Fail-closed validation reaches postgresql objects only, so nothing Helm, a
            // namespace deletion or the webhook's own start creates or deletes waits for it.
            for rule in hook["rules"].as_array().into_iter().flatten() {
                ensure!(rule["apiGroups"] == json!(["acid.zalan.do"]), "{hook}");
                ensure!(rule["resources"] == json!(["postgresqls"]), "{hook}");
            }
            let operations = hook["rules"][0]["operations"].to_string();
            // Only creates and updates may fail closed: a delete (a namespace deletion takes the
            // webhook down first) and the defaults (the controller applies them) never do.
            if kind.starts_with("Mutating") || operations.contains("DELETE") {
                ensure!(hook["failurePolicy"] == "Ignore", "{hook}");
            }
        }
        ensure!(
            config["webhooks"].to_string().contains("DELETE") == kind.starts_with("Validating"),
            "delete protection is reviewed by the validating configuration only"
        );
    }
    for d in [deployment, webhook] {
        check_restricted(d)?;
    }
    // Nothing but the two Deployments runs pods; the aggregated roles are opt-in.
    ensure!(
        !all.iter().any(|k| k.contains(":users:")),
        "aggregated roles without rbac.createAggregateClusterRoles: {all:?}"
    );
    Ok(())
}

#[tokio::test]
async fn each_part_can_be_turned_off_and_options_render_as_asked() -> Result<()> {
    let release = ["acme", "ops"];
    let no_webhook = render(release[0], release[1], &["--set", "webhook.enabled=false"]).await?;
    let all = kinds(&no_webhook);
    ensure!(
        all.iter().any(|k| k == "Deployment/acme-postgres-operator"),
        "{all:?}"
    );
    ensure!(!all.iter().any(|k| k.contains("webhook")), "{all:?}");

    let no_controller = render(
        release[0],
        release[1],
        &["--set", "controller.enabled=false"],
    )
    .await?;
    let all = kinds(&no_controller);
    ensure!(
        all.iter()
            .any(|k| k == "Deployment/acme-postgres-operator-webhook"),
        "{all:?}"
    );
    ensure!(
        !all.iter()
            .any(|k| k == "Deployment/acme-postgres-operator"
                || k == "Service/acme-postgres-operator"),
        "{all:?}"
    );
    // The webhook reads the same configuration, so it stays.
    ensure!(
        all.iter()
            .any(|k| k == "OperatorConfiguration/acme-postgres-operator"),
        "{all:?}"
    );

    let values = r#"
fullnameOverride: pgo
rbac: {createAggregateClusterRoles: true}
serviceAccount: {name: op-account}
podServiceAccount: {name: db-pod}
controllerID: {create: true, name: blue}
enableJsonLogging: true
extraArgs: ["--concurrency=3"]
extraEnvs: [{name: WATCHED_NAMESPACE, value: team-a}]
podLabels: {team: a}
podAnnotations: {note: x}
priorityClassName: ops-critical
podPriorityClassName: {create: true, name: db-high, priority: 5}
nodeSelector: {disk: ssd}
tolerations: [{key: dedicated, operator: Exists}]
configTarget: ConfigMap
configGeneral: {max_instances: 10000000}
configKubernetes:
  liveness_probe: {httpGet: {path: /health, port: 8008}}
securityContext: {runAsUser: 1000}
"#;
    let file = paths::local_dir().join("chart-test-values.yaml");
    std::fs::create_dir_all(paths::local_dir())?;
    std::fs::write(&file, values)?;
    let objects = render("acme", "ops", &["-f", &file.to_string_lossy()]).await?;
    let all = kinds(&objects);
    for name in ["view", "edit", "admin"] {
        let role = find(&objects, "ClusterRole", &format!("pgo:users:{name}"))?;
        ensure!(
            role["metadata"]["labels"][format!("rbac.authorization.k8s.io/aggregate-to-{name}")]
                == "true"
        );
    }
    find(&objects, "ClusterRole", "op-account")?;
    let binding = find(&objects, "ClusterRoleBinding", "op-account")?;
    ensure!(
        binding["subjects"][0]
            == json!({"kind": "ServiceAccount", "name": "op-account", "namespace": "ops"})
    );
    let pod_role = find(&objects, "ClusterRole", "db-pod")?;
    ensure!(pod_role["rules"].as_array().is_some_and(|r| !r.is_empty()));
    let operator_role = find(&objects, "ClusterRole", "op-account")?;
    ensure!(
        grants(&operator_role["rules"]).contains_key(&(
            "rbac.authorization.k8s.io".into(),
            "clusterroles".into(),
            vec!["db-pod".into()]
        )),
        "the operator may bind the pod ClusterRole: {}",
        operator_role["rules"]
    );
    find(&objects, "PriorityClass", "db-high")?;
    let d = find(&objects, "Deployment", "pgo")?;
    let pod = &d["spec"]["template"];
    ensure!(
        pod["metadata"]["labels"]["team"] == "a" && pod["metadata"]["annotations"]["note"] == "x"
    );
    ensure!(pod["spec"]["priorityClassName"] == "ops-critical");
    ensure!(pod["spec"]["serviceAccountName"] == "op-account");
    ensure!(pod["spec"]["nodeSelector"] == json!({"disk": "ssd"}));
    ensure!(pod["spec"]["tolerations"][0]["key"] == "dedicated");
    let container = &pod["spec"]["containers"][0];
    ensure!(container["args"] == json!(["--concurrency=3"]));
    let env = env_of(container);
    ensure!(env["CONTROLLER_ID"] == "blue");
    ensure!(env["ENABLE_JSON_LOGGING"] == "true");
    ensure!(env["WATCHED_NAMESPACE"] == "team-a");
    ensure!(env["CONFIG_MAP_NAME"] == "pgo");
    // A partial securityContext keeps the rest of the restricted defaults.
    check_restricted(d)?;
    let cm = find(&objects, "ConfigMap", "pgo")?;
    let data = &cm["data"];
    ensure!(data["pod_service_account_name"] == "db-pod");
    ensure!(data["pod_priority_class_name"] == "db-high");
    // Zalando's chart prints 1e+07 and mangles nested maps; ours prints the number and writes
    // the nested map as JSON, which the loader ignores with a warning (OperatorConfiguration only).
    ensure!(
        data["max_instances"] == "10000000",
        "{}",
        data["max_instances"]
    );
    ensure!(
        data["liveness_probe"] == r#"{"httpGet":{"path":"/health","port":8008}}"#,
        "{}",
        data["liveness_probe"]
    );
    let map: BTreeMap<String, String> = serde_json::from_value(data.clone())?;
    let got = load(Input::ConfigMap(&map)).map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(got.config.max_instances == 10_000_000);
    ensure!(
        got.warnings.iter().any(|w| w.key == "liveness_probe"),
        "{:?}",
        got.warnings
    );
    ensure!(
        !all.iter().any(|k| k.starts_with("OperatorConfiguration/")),
        "{all:?}"
    );

    // The same in CRD form keeps the probe and the priority class.
    let objects = render(
        "acme",
        "ops",
        &[
            "-f",
            &file.to_string_lossy(),
            "--set",
            "configTarget=OperatorConfigurationCRD",
        ],
    )
    .await?;
    let config = find(&objects, "OperatorConfiguration", "pgo")?;
    let k8s = &config["configuration"]["kubernetes"];
    ensure!(k8s["liveness_probe"]["httpGet"]["port"] == 8008, "{k8s}");
    ensure!(k8s["pod_priority_class_name"] == "db-high" && k8s["oauth_token_secret_name"] == "pgo");
    let got = load(Input::OperatorConfiguration(config)).map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(got.config.kubernetes.liveness_probe.is_some());

    // A wrong configTarget is refused with its name.
    let chart = operator_chart();
    let bad = helm(["template", "x", &chart, "--set", "configTarget=Secret"])
        .await?
        .failed()?;
    ensure!(bad.stderr.contains("configTarget"), "{bad}");
    Ok(())
}

/// Uninstalls the release when the test ends early, so its cluster-scoped objects do not stay.
struct Release {
    name: String,
    namespace: String,
    done: bool,
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let base = paths::local_dir().join("helm");
        let _ = std::process::Command::new(&paths::tools().helm)
            .env("KUBECONFIG", paths::kubeconfig())
            .env("HELM_CACHE_HOME", base.join("cache"))
            .env("HELM_CONFIG_HOME", base.join("config"))
            .env("HELM_DATA_HOME", base.join("data"))
            .args([
                "uninstall",
                &self.name,
                "-n",
                &self.namespace,
                "--wait=false",
            ])
            .output();
    }
}

async fn ready_pods(ns: &str, selector: &str, want: usize) -> Result<Vec<Value>> {
    eventually_with(
        &format!("{want} Ready pods {selector}"),
        Duration::from_secs(120),
        Duration::from_secs(1),
        || async {
            let pods = json(&["get", "pods", "-n", ns, "-l", selector]).await?;
            let ready: Vec<Value> = pods["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| {
                    p["metadata"]["deletionTimestamp"].is_null()
                        && p["status"]["conditions"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
                .cloned()
                .collect();
            if ready.len() >= want {
                Ok(ready)
            } else {
                bail!("{} Ready", ready.len())
            }
        },
    )
    .await
}

/// Writes the release's values: the test namespace everywhere the chart would otherwise reach
/// the whole cluster.
fn values_file(ns: &str, target: &str, max_instances: i32) -> Result<PathBuf> {
    let values = json!({
        "configTarget": target,
        "configGeneral": {
            // The CRDs come from the chart; other tests' controllers own them too.
            "enable_crd_registration": false,
            "resync_period": "5s",
            "repair_period": "5s",
            "max_instances": max_instances,
        },
        // Cluster-scoped names of this release only (another test applies manifests/' postgres-pod).
        "podServiceAccount": {"name": format!("{ns}-pod")},
        "extraEnvs": [{"name": "WATCHED_NAMESPACE", "value": ns}],
        "webhook": {
            "namespaceSelector": {"matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns]}
            ]},
            // A serving certificate valid for a minute, so its renewal happens within the test.
            "extraArgs": ["--tls-cert-validity-seconds=60", "--tls-check-seconds=5"],
        },
    });
    let file = paths::local_dir().join(format!("chart-{ns}-values.yaml"));
    std::fs::write(&file, serde_yaml::to_string(&values)?)?;
    Ok(file)
}

/// The `caBundle`s of the named configuration's webhooks.
async fn ca_bundles(kind: &str, name: &str) -> Result<Vec<Value>> {
    let config = json(&["get", kind, name]).await?;
    Ok(config["webhooks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| w["clientConfig"]["caBundle"].clone())
        .collect())
}

/// Waits until both configurations carry the CA of the webhook's Secret; returns the Secret.
async fn ca_injected(ns: &str, secret: &str, configurations: &str) -> Result<Value> {
    eventually_with(
        "the webhook's own CA in both webhook configurations",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let secret = json(&["get", "secret", secret, "-n", ns]).await?;
            let ca = &secret["data"]["ca.crt"];
            ensure!(ca.is_string(), "no ca.crt in {secret}");
            for kind in [
                "mutatingwebhookconfiguration",
                "validatingwebhookconfiguration",
            ] {
                let bundles = ca_bundles(kind, configurations).await?;
                ensure!(
                    !bundles.is_empty() && bundles.iter().all(|b| b == ca),
                    "{kind}: not injected yet"
                );
            }
            Ok(secret)
        },
    )
    .await
}

/// The numberOfInstances a manifest asking for `asked` gets through admission (a server-side dry run).
async fn admitted_instances(ns: &str, asked: i32) -> Result<i64> {
    let out = kubectl_with_stdin(
        [
            "apply",
            "--dry-run=server",
            "-n",
            ns,
            "-o",
            "json",
            "-f",
            "-",
        ],
        &manifest("acid-probe", asked),
    )
    .await?
    .ok()?;
    let object: Value = serde_json::from_str(&out.stdout)?;
    object["spec"]["numberOfInstances"]
        .as_i64()
        .with_context(|| format!("no numberOfInstances in {object}"))
}

async fn statefulset_replicas(ns: &str, name: &str) -> Result<i64> {
    let sts = json(&["get", "statefulset", name, "-n", ns]).await?;
    sts["spec"]["replicas"]
        .as_i64()
        .with_context(|| format!("no replicas in {sts}"))
}

#[tokio::test]
async fn helm_install_upgrade_and_uninstall_run_the_operator() -> Result<()> {
    release_can_run()?;
    let c = cluster().await?;
    let ns = TestNamespace::new(&c, "chart").await?;
    let n = ns.name.as_str();
    // A custom release name: the objects are called <release>-postgres-operator.
    let release = format!("acme-{}", n.trim_start_matches("e2e-"));
    let fullname = format!("{release}-postgres-operator");
    let webhook = format!("{fullname}-webhook");
    let configurations = format!("{webhook}-{n}");

    helm(["lint", &operator_chart()]).await?.ok()?;
    let values = values_file(n, "ConfigMap", 1)?;
    let values = values.to_string_lossy().into_owned();
    let mut guard = Release {
        name: release.clone(),
        namespace: n.into(),
        done: false,
    };
    let out = helm_wait("install", &release, &operator_chart(), n, &[&values]).await?;
    ensure!(out.stdout.contains("STATUS: deployed"), "{out}");

    // Both Deployments' pods run (the runner's loopback pod IPs) and are Ready.
    let controller_selector =
        format!("app.kubernetes.io/name=postgres-operator,app.kubernetes.io/instance={release}");
    let controller_pods = ready_pods(n, &controller_selector, 1).await?;
    let ip = controller_pods[0]["status"]["podIP"]
        .as_str()
        .unwrap_or_default();
    ensure!(ip.starts_with("127."), "pod IP {ip} outside loopback");
    ready_pods(
        n,
        &format!(
            "app.kubernetes.io/name=postgres-operator-webhook,app.kubernetes.io/instance={release}"
        ),
        2,
    )
    .await?;
    // The CRDs are there (installed by Helm from crds/, or already present).
    kubectl([
        "get",
        "crd",
        "postgresqls.acid.zalan.do",
        "operatorconfigurations.acid.zalan.do",
    ])
    .await?
    .ok()?;
    let config = json(&["get", "configmap", &fullname, "-n", n]).await?;
    ensure!(config["data"]["max_instances"] == "1", "{config}");

    // Nobody made a certificate: the webhook wrote its own CA and serving certificate into its
    // Secret and its CA into both configurations (which existed, fail-closed, before it served).
    let secret_name = format!("{webhook}-cert");
    let secret = ca_injected(n, &secret_name, &configurations).await?;
    ensure!(secret["type"] == "kubernetes.io/tls", "{secret}");
    let first_serving = secret["data"]["tls.crt"].clone();
    let bad = format!(
        "{}  maintenanceWindows: [\"05:00-01:00\"]\n",
        manifest("acid-bad", 1)
    );
    eventually_with(
        "the installed webhook to refuse a bad manifest",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let out = kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &bad).await?;
            if out.success() {
                kubectl(["delete", "postgresql", "acid-bad", "-n", n, "--wait=false"]).await?;
                bail!("accepted");
            }
            ensure!(out.stderr.contains("ends before it starts"), "{out}");
            Ok(())
        },
    )
    .await?;

    // One instance (max_instances is 1): Running once Patroni has a leader.
    kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &manifest("acid-chart", 1))
        .await?
        .ok()?;
    let (master, _, _) = writable_master(n, "acid-chart").await?;
    eventually_with(
        "postgresql acid-chart Running",
        TIMEOUT,
        Duration::from_secs(1),
        || async {
            let pg = json(&["get", "postgresql", "acid-chart", "-n", n]).await?;
            match pg["status"]["PostgresClusterStatus"].as_str() {
                Some("Running") => Ok(()),
                other => bail!("status is {other:?}"),
            }
        },
    )
    .await?;
    ensure!(statefulset_replicas(n, "acid-chart").await? == 1);
    let master_uid = e2e::patroni::pod_uid(n, &master).await?;
    // Two instances are cut to max_instances (the mutating webhook says so).
    ensure!(admitted_instances(n, 2).await? == 1);

    // helm upgrade to the OperatorConfiguration target with max_instances 2: the webhook and the
    // controller take the new limit, the ConfigMap goes, the database pod keeps running.
    let values = values_file(n, "OperatorConfigurationCRD", 2)?;
    let values = values.to_string_lossy().into_owned();
    helm_wait("upgrade", &release, &operator_chart(), n, &[&values]).await?;
    let config = json(&["get", "operatorconfiguration", &fullname, "-n", n]).await?;
    ensure!(config["configuration"]["max_instances"] == 2, "{config}");
    let gone = kubectl(["get", "configmap", &fullname, "-n", n])
        .await?
        .failed()?;
    ensure!(gone.stderr.contains("NotFound"), "{gone}");
    eventually_with(
        "the webhook to admit 2 instances",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || async {
            match admitted_instances(n, 2).await? {
                2 => Ok(()),
                other => bail!("{other} admitted"),
            }
        },
    )
    .await?;
    kubectl([
        "patch",
        "postgresql",
        "acid-chart",
        "-n",
        n,
        "--type=merge",
        "-p",
        r#"{"spec":{"numberOfInstances":2}}"#,
    ])
    .await?
    .ok()?;
    eventually_with(
        "StatefulSet acid-chart with 2 replicas",
        TIMEOUT,
        Duration::from_secs(1),
        || async {
            match statefulset_replicas(n, "acid-chart").await? {
                2 => Ok(()),
                other => bail!("{other} replicas"),
            }
        },
    )
    .await?;
    ensure!(
        e2e::patroni::pod_uid(n, &master).await? == master_uid,
        "the upgrade restarted the database pod {master}"
    );
    // The injected CA survived the upgrade: the webhook still reviews.
    let out = kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &bad)
        .await?
        .failed()?;
    ensure!(out.stderr.contains("ends before it starts"), "{out}");
    // The one-minute serving certificate was renewed under the same CA, and both replicas serve
    // the new one (the API server still reaches the webhook: the refusal is the webhook's own).
    eventually_with(
        "the serving certificate renewed",
        Duration::from_secs(90),
        Duration::from_secs(1),
        || async {
            let now = json(&["get", "secret", &secret_name, "-n", n]).await?;
            ensure!(now["data"]["tls.crt"] != first_serving, "not yet");
            ensure!(
                now["data"]["ca.crt"] == secret["data"]["ca.crt"],
                "a new CA: {now}"
            );
            Ok(())
        },
    )
    .await?;
    // Renewed once, not on every look: the Secret stays put for a while.
    let version = |s: Value| s["metadata"]["resourceVersion"].clone();
    let before = version(json(&["get", "secret", &secret_name, "-n", n]).await?);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = version(json(&["get", "secret", &secret_name, "-n", n]).await?);
    ensure!(before == after, "the Secret keeps being rewritten");
    for _ in 0..4 {
        let out = kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &bad)
            .await?
            .failed()?;
        ensure!(out.stderr.contains("ends before it starts"), "{out}");
    }

    // helm uninstall: the cluster, its StatefulSet and the CRDs stay; no webhook configuration.
    helm([
        "uninstall",
        &release,
        "-n",
        n,
        "--wait",
        "--timeout",
        "120s",
    ])
    .await?
    .ok()?;
    guard.done = true;
    kubectl(["get", "postgresql", "acid-chart", "-n", n])
        .await?
        .ok()?;
    kubectl(["get", "statefulset", "acid-chart", "-n", n])
        .await?
        .ok()?;
    kubectl([
        "get",
        "crd",
        "postgresqls.acid.zalan.do",
        "operatorconfigurations.acid.zalan.do",
        "postgresteams.acid.zalan.do",
    ])
    .await?
    .ok()?;
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        let out = kubectl(["get", kind, &configurations]).await?.failed()?;
        ensure!(out.stderr.contains("NotFound"), "{out}");
    }
    let out = kubectl(["get", "deployment", &fullname, "-n", n])
        .await?
        .failed()?;
    ensure!(out.stderr.contains("NotFound"), "{out}");
    // The database pods keep their ClusterRole (helm.sh/resource-policy: keep), so Patroni keeps
    // its leader lock; the test removes it.
    let pod_role = format!("{n}-pod");
    kubectl(["get", "clusterrole", &pod_role]).await?.ok()?;
    kubectl(["delete", "clusterrole", &pod_role]).await?.ok()?;
    // Nothing is left that would call the gone webhook: postgresql objects are still written.
    kubectl([
        "annotate",
        "postgresql",
        "acid-chart",
        "-n",
        n,
        "e2e/after-uninstall=yes",
    ])
    .await?
    .ok()?;
    Ok(())
}

/// Removes a release's cluster-scoped objects (its webhook configurations, ClusterRoles and
/// bindings) when its namespace went with its release record, even when the test fails.
struct ClusterScoped {
    release: String,
    pod_role: String,
}

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        let kubectl = |args: &[&str]| {
            let _ = std::process::Command::new(&paths::tools().kubectl)
                .arg("--kubeconfig")
                .arg(paths::kubeconfig())
                .args(args)
                .output();
        };
        kubectl(&[
            "delete",
            "mutatingwebhookconfiguration,validatingwebhookconfiguration,clusterrole,clusterrolebinding",
            "-l",
            &format!("app.kubernetes.io/instance={}", self.release),
            "--ignore-not-found",
        ]);
        kubectl(&[
            "delete",
            "clusterrole",
            &self.pod_role,
            "--ignore-not-found",
        ]);
    }
}

/// `kubectl delete namespace` of a namespace holding a release (its fail-closed webhook, its
/// controller) and a cluster finishes: the webhook goes down with the namespace, and the deletes
/// that follow are reviewed with `Ignore`.
#[tokio::test]
async fn deleting_the_namespace_of_a_release_and_its_cluster_is_not_blocked() -> Result<()> {
    release_can_run()?;
    let c = cluster().await?;
    let ns = TestNamespace::new(&c, "chart-gone").await?;
    let n = ns.name.as_str();
    let release = format!("gone-{}", n.trim_start_matches("e2e-"));
    let _cleanup = ClusterScoped {
        release: release.clone(),
        pod_role: format!("{n}-pod"),
    };
    let values = values_file(n, "ConfigMap", 1)?;
    helm_wait(
        "install",
        &release,
        &operator_chart(),
        n,
        &[&values.to_string_lossy()],
    )
    .await?;
    // The webhook reviews (fail-closed) and the controller makes the cluster's pod.
    let bad = kubectl_with_stdin(
        ["apply", "-n", n, "-f", "-"],
        &format!(
            "{}  maintenanceWindows: [\"05:00-01:00\"]\n",
            manifest("acid-bad", 1)
        ),
    )
    .await?
    .failed()?;
    ensure!(bad.stderr.contains("ends before it starts"), "{bad}");
    kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &manifest("acid-gone", 1))
        .await?
        .ok()?;
    ready_pods(n, "cluster-name=acid-gone", 1).await?;

    let started = std::time::Instant::now();
    kubectl(["delete", "namespace", n, "--timeout=180s"])
        .await?
        .ok()?;
    let out = kubectl(["get", "namespace", n]).await?.failed()?;
    ensure!(out.stderr.contains("NotFound"), "{out}");
    eprintln!(
        "CHART namespace with a release and a cluster deleted in {:?}",
        started.elapsed()
    );
    Ok(())
}
