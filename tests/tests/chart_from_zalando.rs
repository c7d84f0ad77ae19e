//! A release of Zalando's chart is taken over in place by `helm upgrade` to this chart, with the
//! user's Zalando values file unchanged except its `image` block (as the README says).
//!
//! The release is a stand-in (`tests/fixtures/zalando-release`, written from the reference's
//! facts) plus the configuration object Zalando's chart renders from its default values. The
//! upgrade must keep every object Zalando's chart made under the same name — the Deployment
//! updated in place (same uid, same immutable selector), not replaced — and end with our
//! controller running. Cluster-scoped names get the namespace (through the values
//! Zalando's chart also has) so the test never meets the demo's or other tests' objects.

use anyhow::{Context, Result, bail, ensure};
use e2e::chart::{helm_wait, operator_chart, release_can_run};
use e2e::command::helm;
use e2e::eventually::eventually_with;
use e2e::patroni::json;
use e2e::{cluster::cluster, namespace::TestNamespace, paths};
use serde_json::{Value, json};
use std::time::Duration;

/// The stand-in chart with Zalando's rendered configuration object put into the namespace `ns`.
fn zalando_release_chart(ns: &str) -> Result<String> {
    let dir = paths::local_dir().join(format!("zalando-release-{ns}"));
    let _ = std::fs::remove_dir_all(&dir);
    let source = paths::repo_root().join("tests/fixtures/zalando-release");
    std::fs::create_dir_all(dir.join("templates"))?;
    for file in ["Chart.yaml", "values.yaml", "templates/objects.yaml"] {
        std::fs::copy(source.join(file), dir.join(file)).context(file)?;
    }
    let rendered = std::fs::read_to_string(
        paths::repo_root().join("../shared/fixtures/zalando/rendered-operatorconfiguration.yaml"),
    )?;
    let rendered = rendered.replace(
        "  namespace: postgres-operator\n",
        "  namespace: {{ .Release.Namespace }}\n",
    );
    std::fs::write(dir.join("templates/config.yaml"), rendered)?;
    Ok(dir.to_string_lossy().into_owned())
}

#[tokio::test]
async fn a_zalando_release_is_upgraded_in_place() -> Result<()> {
    release_can_run()?;
    let c = cluster().await?;
    let ns = TestNamespace::new(&c, "fromzal").await?;
    let n = ns.name.as_str();
    // Zalando's usual release name, so fullname is postgres-operator as in the rendered fixture.
    let release = "postgres-operator";
    let names = json!({
        "serviceAccount": {"name": format!("{n}-operator")},
        "podServiceAccount": {"name": format!("{n}-pod")},
        "podPriorityClassName": {"name": format!("{n}-pod")},
    });
    let names_file = paths::local_dir().join(format!("zalando-names-{n}.yaml"));
    std::fs::write(&names_file, serde_yaml::to_string(&names)?)?;
    let names_file = names_file.to_string_lossy().into_owned();
    let _cleanup = ClusterScoped(n.to_string());

    helm([
        "install",
        release,
        &zalando_release_chart(n)?,
        "-n",
        n,
        "-f",
        &names_file,
    ])
    .await?
    .ok()?;
    let before = json(&["get", "deployment", "postgres-operator", "-n", n]).await?;

    // The user's values: Zalando's default file unchanged, the image block replaced by ours, and
    // what keeps this test to its namespace.
    let ours = json!({
        "image": {"registry": "ghcr.io", "repository": "pg-operator/pg-operator-controller", "tag": ""},
        "configGeneral": {"enable_crd_registration": false},
        "configKubernetes": {"watched_namespace": n},
        // The webhook's cluster-scoped names follow the release name alone and would meet the
        // demo's (release postgres-operator too); it is new, not taken over, and tested elsewhere.
        "webhook": {"enabled": false},
    });
    let ours_file = paths::local_dir().join(format!("zalando-ours-{n}.yaml"));
    std::fs::write(&ours_file, serde_yaml::to_string(&ours)?)?;
    let zalando_values = paths::repo_root().join("../shared/fixtures/zalando/chart-values.yaml");
    let out = helm_wait(
        "upgrade",
        release,
        &operator_chart(),
        n,
        &[
            &zalando_values.to_string_lossy(),
            &names_file,
            &ours_file.to_string_lossy(),
        ],
    )
    .await?;
    ensure!(out.stdout.contains("STATUS: deployed"), "{out}");

    // The same Deployment, updated: same uid and selector, our image.
    let after = json(&["get", "deployment", "postgres-operator", "-n", n]).await?;
    ensure!(
        after["metadata"]["uid"] == before["metadata"]["uid"],
        "the Deployment was replaced"
    );
    ensure!(after["spec"]["selector"] == before["spec"]["selector"]);
    let image = after["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default();
    ensure!(
        image.contains("pg-operator/pg-operator-controller"),
        "{image}"
    );
    // Every other object of Zalando's release is now this chart's, under the same name.
    for (kind, name, namespaced) in [
        ("service", "postgres-operator".to_string(), true),
        ("serviceaccount", format!("{n}-operator"), true),
        (
            "operatorconfiguration",
            "postgres-operator".to_string(),
            true,
        ),
        ("clusterrole", format!("{n}-operator"), false),
        ("clusterrolebinding", format!("{n}-operator"), false),
        ("clusterrole", format!("{n}-pod"), false),
        ("priorityclass", format!("{n}-pod"), false),
    ] {
        let mut args = vec!["get", kind, name.as_str()];
        if namespaced {
            args.extend(["-n", n]);
        }
        let object = json(&args).await?;
        let chart_label = &object["metadata"]["labels"]["helm.sh/chart"];
        ensure!(
            chart_label.as_str().is_some_and(|l| !l.ends_with("2.0.1")),
            "{kind}/{name} still carries Zalando's chart label: {chart_label}"
        );
    }
    // The user's settings from Zalando's values file are in the configuration.
    let config = json(&["get", "operatorconfiguration", "postgres-operator", "-n", n]).await?;
    ensure!(config["configuration"]["workers"] == 8, "{config}");
    ensure!(
        config["configuration"]["kubernetes"]["pod_service_account_name"] == format!("{n}-pod"),
        "{config}"
    );
    // Our controller runs.
    ready_replicas(n, "postgres-operator").await?;
    helm(["uninstall", release, "-n", n, "--wait"])
        .await?
        .ok()?;
    Ok(())
}

async fn ready_replicas(ns: &str, deployment: &str) -> Result<()> {
    eventually_with(
        &format!("Deployment {deployment} ready"),
        Duration::from_secs(120),
        Duration::from_secs(1),
        || async {
            let d: Value = json(&["get", "deployment", deployment, "-n", ns]).await?;
            let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
            match d["status"]["readyReplicas"].as_i64() {
                Some(ready) if ready >= want => Ok(()),
                other => bail!("{other:?} of {want} ready"),
            }
        },
    )
    .await
}

/// Removes what the release leaves cluster-wide (the pod ClusterRole is kept by `helm uninstall`).
struct ClusterScoped(String);

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        let n = &self.0;
        let _ = std::process::Command::new(&paths::tools().kubectl)
            .env("KUBECONFIG", paths::kubeconfig())
            .args([
                "delete",
                "clusterrole,clusterrolebinding,priorityclass",
                &format!("{n}-operator"),
                &format!("{n}-pod"),
                "--ignore-not-found",
                "--wait=false",
            ])
            .output();
    }
}
