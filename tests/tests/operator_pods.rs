//! The operator's controller as a pod from `manifests/controller/`, run by the pod runner: its
//! image (`ghcr.io/pg-operator/pg-operator-controller`) becomes the locally built `controller` with
//! the pod's environment and ServiceAccount token, listening on the pod IP, Ready by its
//! `readinessProbe`. Scoped to the test namespace (`WATCHED_NAMESPACE`), it brings a 1-instance
//! cluster to `Running` with a Patroni master, as the local-process controller of `real_pods`
//! does, and `kubectl logs` shows its log.
//!
//! The webhook likewise from `manifests/webhook/`: its certificate Secret materialised as a
//! volume the binary's default paths are mapped to, listening on the pod IP, registered through
//! its Service (which the runner serves on the ClusterIP), it mutates and denies manifests.
//!
//! The manifests are applied as committed except for what puts them in the test namespace: the
//! namespace of the namespaced objects, one replica, `WATCHED_NAMESPACE`, cluster-scoped objects
//! named after the namespace (removed at the end), and the webhook registration limited to the
//! namespace with the test's CA.

use anyhow::{Context, Result, bail};
use e2e::command::{kubectl, kubectl_with_stdin};
use e2e::eventually::eventually_with;
use e2e::patroni::{TIMEOUT, json, manifest, runner_is_up, writable_master};
use e2e::{cluster::cluster, namespace::TestNamespace, paths};
use serde_json::{Value, json};
use std::time::Duration;

/// The operator's namespace in the committed manifests.
const MANIFEST_NAMESPACE: &str = "postgres-operator";

/// The YAML documents of a repository file, as JSON.
fn documents(path: &str) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(paths::repo_root().join(path))?;
    let mut out = Vec::new();
    for doc in text.split("\n---\n") {
        let value: Value = serde_yaml::from_str(doc).with_context(|| path.to_string())?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// Deletes a cluster-scoped object when dropped (the namespace takes the rest with it).
struct ClusterScoped(String);

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&paths::tools().kubectl)
            .env("KUBECONFIG", paths::kubeconfig())
            .args(["delete", "--ignore-not-found", "--wait=false", &self.0])
            .output();
    }
}

/// The manifests' objects moved into `ns`: namespaced ones get `ns`, the controller's
/// ClusterRoleBinding a per-namespace name and subject, the Deployment one replica watching `ns`.
fn into_namespace(mut objects: Vec<Value>, ns: &str) -> Vec<Value> {
    for object in &mut objects {
        if object["metadata"]["namespace"] == MANIFEST_NAMESPACE {
            object["metadata"]["namespace"] = json!(ns);
        }
        if object["kind"] == "ClusterRoleBinding"
            || object["kind"]
                .as_str()
                .is_some_and(|k| k.ends_with("WebhookConfiguration"))
        {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            object["metadata"]["name"] = json!(format!("{name}-{ns}"));
            for subject in object["subjects"].as_array_mut().into_iter().flatten() {
                if subject["namespace"] == MANIFEST_NAMESPACE {
                    subject["namespace"] = json!(ns);
                }
            }
        }
        for hook in object["webhooks"].as_array_mut().into_iter().flatten() {
            hook["clientConfig"]["service"]["namespace"] = json!(ns);
            if let Some(expressions) = hook["namespaceSelector"]["matchExpressions"].as_array_mut()
            {
                expressions.push(
                    json!({"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns]}),
                );
            }
        }
        if object["kind"] == "Deployment" {
            object["spec"]["replicas"] = json!(1);
            for container in object["spec"]["template"]["spec"]["containers"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                if let Some(env) = container["env"].as_array_mut() {
                    env.push(json!({"name": "WATCHED_NAMESPACE", "value": ns}));
                }
            }
        }
    }
    objects
}

/// The Ready pod of the Deployment labelled `app`, once there is one.
async fn ready_pod(ns: &str, app: &str) -> Result<String> {
    eventually_with(
        &format!("a Ready pod of {app}"),
        Duration::from_secs(120),
        Duration::from_secs(1),
        || async {
            let selector = format!("app.kubernetes.io/name={app}");
            let pods = json(&["get", "pods", "-n", ns, "-l", &selector]).await?;
            for pod in pods["items"].as_array().into_iter().flatten() {
                let ready = pod["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                if ready {
                    return Ok(pod["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string());
                }
            }
            bail!("no Ready pod: {}", pods["items"])
        },
    )
    .await
}

#[tokio::test]
async fn the_controller_runs_as_a_pod_and_brings_a_cluster_up() -> Result<()> {
    runner_is_up()?;
    e2e::process::workspace_binary("controller")?;
    let cluster = cluster().await?;
    e2e::crds::install_crds(&cluster.client).await?;
    let ns = TestNamespace::new(&cluster, "op-pods").await?;
    let n = ns.name.as_str();

    let mut objects = documents("manifests/controller/rbac.yaml")?;
    objects.extend(documents("manifests/controller/controller.yaml")?);
    let objects = into_namespace(objects, n);
    let _binding = ClusterScoped(format!("clusterrolebinding/postgres-operator-{n}"));
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "postgres-operator", "namespace": n},
        "data": {"enable_crd_registration": "false", "resync_period": "5s", "repair_period": "5s"}});
    for object in objects.iter().chain([&config]) {
        kubectl_with_stdin(["apply", "-f", "-"], &object.to_string())
            .await?
            .ok()?;
    }

    let pod = ready_pod(n, "postgres-operator").await?;
    let p = json(&["get", "pod", &pod, "-n", n]).await?;
    let ip = p["status"]["podIP"].as_str().unwrap_or_default();
    assert!(ip.starts_with("127."), "pod IP {ip} outside loopback");
    let status = &p["status"]["containerStatuses"][0];
    assert_eq!(status["ready"], true, "{status}");

    kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &manifest("acid-op", 1))
        .await?
        .ok()?;
    let (master, _, _) = writable_master(n, "acid-op").await?;
    eprintln!("master {master}");
    eventually_with(
        "postgresql acid-op Running",
        TIMEOUT,
        Duration::from_secs(1),
        || async {
            let pg = json(&["get", "postgresql", "acid-op", "-n", n]).await?;
            match pg["status"]["PostgresClusterStatus"].as_str() {
                Some("Running") => Ok(()),
                other => bail!("status is {other:?}"),
            }
        },
    )
    .await?;

    let logs = kubectl(["logs", "-n", n, &pod]).await?.ok()?;
    assert!(
        logs.stdout.contains("acid-op"),
        "the controller's log names the cluster it reconciled:\n{}",
        logs.stdout
    );
    Ok(())
}

fn cluster_yaml(name: &str, extra: &str) -> String {
    format!("{}{extra}", manifest(name, 1))
}

#[tokio::test]
async fn the_webhook_runs_as_a_pod_behind_its_service() -> Result<()> {
    runner_is_up()?;
    e2e::process::workspace_binary("webhook")?;
    let cluster = cluster().await?;
    e2e::crds::install_crds(&cluster.client).await?;
    let ns = TestNamespace::new(&cluster, "op-hook").await?;
    let n = ns.name.as_str();
    let issued = certs::issue(&certs::Request {
        service: "pg-operator-webhook".into(),
        namespace: n.into(),
        dns_names: vec![],
        ip_addresses: vec![],
        days: 1,
    })?;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "pg-operator-webhook-certs", "namespace": n},
        "stringData": {"tls.crt": issued.tls_cert, "tls.key": issued.tls_key}});
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "postgres-operator", "namespace": n}, "data": {}});
    let objects = into_namespace(documents("manifests/webhook/webhook.yaml")?, n);
    let _binding = ClusterScoped(format!("clusterrolebinding/pg-operator-webhook-{n}"));
    for object in [&secret, &config].into_iter().chain(&objects) {
        kubectl_with_stdin(["apply", "-f", "-"], &object.to_string())
            .await?
            .ok()?;
    }
    let pod = ready_pod(n, "pg-operator-webhook").await?;

    let registration = documents("manifests/webhook/webhook-configuration.yaml")?;
    let _mutating = ClusterScoped(format!(
        "mutatingwebhookconfiguration/pg-operator-webhook-{n}"
    ));
    let _validating = ClusterScoped(format!(
        "validatingwebhookconfiguration/pg-operator-webhook-{n}"
    ));
    for mut object in into_namespace(registration, n) {
        for hook in object["webhooks"].as_array_mut().into_iter().flatten() {
            hook["clientConfig"]["caBundle"] = json!(issued.ca_bundle());
        }
        kubectl_with_stdin(["apply", "-f", "-"], &object.to_string())
            .await?
            .ok()?;
    }
    // The mutating webhook, reached through the Service, defaults the source ranges.
    eventually_with(
        "the webhook to review requests",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let out = kubectl_with_stdin(
                [
                    "apply",
                    "--dry-run=server",
                    "-n",
                    n,
                    "-o",
                    "json",
                    "-f",
                    "-",
                ],
                &cluster_yaml("acid-probe", ""),
            )
            .await?
            .ok()?;
            let object: Value = serde_json::from_str(&out.stdout)?;
            match &object["spec"]["allowedSourceRanges"] {
                Value::Null => bail!("not reviewed yet"),
                ranges => Ok(ranges.clone()),
            }
        },
    )
    .await
    .map(|ranges| assert_eq!(ranges, json!(["127.0.0.1/32"])))?;
    let denied = kubectl_with_stdin(
        ["apply", "-n", n, "-f", "-"],
        &cluster_yaml("acid-window", "  maintenanceWindows: [\"05:00-01:00\"]\n"),
    )
    .await?
    .failed()?;
    assert!(
        denied.stderr.contains("ends before it starts"),
        "the validating webhook's message: {denied}"
    );
    let logs = kubectl(["logs", "-n", n, &pod]).await?.ok()?;
    assert!(logs.stdout.contains("listening"), "{}", logs.stdout);
    Ok(())
}
