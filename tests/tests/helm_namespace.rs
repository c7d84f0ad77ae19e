//! Deleting the namespace of a Helm release of the chart, with a `postgresql` object in it and
//! the webhook's pods already gone (a namespace deletion takes them down in no set order), is not
//! blocked by the fail-closed validation: deletes are reviewed with `failurePolicy: Ignore`, while
//! creates in the same state are refused — the validation is still fail-closed where it matters.
//!
//! The release's cluster-scoped objects outlive the namespace, as with any chart deleted that way;
//! the test removes them by their instance label.

use anyhow::{Result, bail, ensure};
use e2e::command::{helm, kubectl, kubectl_with_stdin};
use e2e::eventually::eventually_with;
use e2e::patroni::{json, manifest, runner_is_up};
use e2e::{cluster::cluster, namespace::TestNamespace, paths};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn deleting_the_release_namespace_is_not_blocked_by_the_webhook() -> Result<()> {
    runner_is_up()?;
    e2e::process::workspace_binary("webhook")?;
    let c = cluster().await?;
    let ns = TestNamespace::new(&c, "chartns").await?;
    let n = ns.name.as_str();
    let release = format!("gone-{}", n.trim_start_matches("e2e-"));
    let webhook = format!("{release}-postgres-operator-webhook");

    // The webhook only (no controller: nothing here needs one), fail-closed, for this namespace.
    let values = json!({
        "controller": {"enabled": false},
        "podServiceAccount": {"name": format!("{n}-pod")},
        "webhook": {
            "replicas": 1,
            "failurePolicy": "Fail",
            "namespaceSelector": {"matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [n]}
            ]},
        },
    });
    let file = paths::local_dir().join(format!("chart-{n}-values.yaml"));
    std::fs::write(&file, serde_yaml::to_string(&values)?)?;
    let chart = paths::repo_root().join("charts/postgres-operator");
    helm([
        "install",
        &release,
        &chart.to_string_lossy(),
        "-n",
        n,
        "-f",
        &file.to_string_lossy(),
        "--wait",
        "--timeout",
        "120s",
    ])
    .await?
    .ok()?;
    let cleanup = Leftovers(release.clone());

    // The webhook reviews: a manifest is admitted once its own certificate is in place.
    eventually_with(
        "the webhook to admit a manifest",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let out = kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &manifest("acid-kept", 1))
                .await?;
            ensure!(out.success(), "{out}");
            Ok(())
        },
    )
    .await?;

    // The webhook's pods go first.
    kubectl(["scale", "deployment", &webhook, "-n", n, "--replicas=0"])
        .await?
        .ok()?;
    eventually_with(
        "the webhook's pods gone",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let pods = json(&[
                "get",
                "pods",
                "-n",
                n,
                "-l",
                "app.kubernetes.io/name=postgres-operator-webhook",
            ])
            .await?;
            match pods["items"].as_array().map_or(0, Vec::len) {
                0 => Ok(()),
                left => bail!("{left} left"),
            }
        },
    )
    .await?;
    // Fail-closed: a create is refused while nothing answers.
    let refused = kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &manifest("acid-new", 1))
        .await?
        .failed()?;
    ensure!(
        refused.stderr.contains("failed calling webhook"),
        "{refused}"
    );

    // The namespace goes, with its postgresql object.
    kubectl(["delete", "namespace", n, "--wait=false"])
        .await?
        .ok()?;
    eventually_with(
        "the namespace deleted",
        Duration::from_secs(120),
        Duration::from_secs(1),
        || async {
            let out = kubectl(["get", "namespace", n, "-o", "name"]).await?;
            if out.success() {
                bail!("still there: {out}");
            }
            ensure!(out.stderr.contains("NotFound"), "{out}");
            Ok(())
        },
    )
    .await?;
    drop(cleanup);
    Ok(())
}

/// Removes the release's cluster-scoped objects, which a namespace deletion leaves.
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&paths::tools().kubectl)
            .env("KUBECONFIG", paths::kubeconfig())
            .args([
                "delete",
                "mutatingwebhookconfiguration,validatingwebhookconfiguration,clusterrole,clusterrolebinding,priorityclass",
                "-l",
                &format!("app.kubernetes.io/instance={}", self.0),
                "--ignore-not-found",
                "--wait=false",
            ])
            .output();
    }
}
