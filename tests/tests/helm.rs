//! `helm install` of a trivial local chart works against the control plane.

use anyhow::{Result, ensure};
use e2e::{TestNamespace, cluster, helm, kubectl, paths};

#[tokio::test]
async fn helm_installs_and_uninstalls_a_local_chart() -> Result<()> {
    let c = cluster().await?;
    let ns = TestNamespace::new(&c, "helm").await?;
    let chart = paths::repo_root().join("tests/fixtures/hello-chart");
    let chart = chart.to_string_lossy().to_string();

    let out = helm([
        "install",
        "hello",
        &chart,
        "-n",
        &ns.name,
        "--set",
        "greeting=hi",
        "--wait",
        "--timeout",
        "60s",
    ])
    .await?
    .ok()?;
    ensure!(out.stdout.contains("STATUS: deployed"), "{out}");

    let cm = kubectl([
        "get",
        "configmap",
        "hello-greeting",
        "-n",
        &ns.name,
        "-o",
        "jsonpath={.data.greeting}",
    ])
    .await?
    .ok()?;
    ensure!(cm.stdout == "hi", "unexpected ConfigMap data: {cm}");

    let list = helm(["list", "-n", &ns.name, "-q"]).await?.ok()?;
    ensure!(list.stdout.lines().any(|l| l == "hello"), "{list}");

    helm(["uninstall", "hello", "-n", &ns.name, "--wait"])
        .await?
        .ok()?;
    let gone = kubectl(["get", "configmap", "hello-greeting", "-n", &ns.name])
        .await?
        .failed()?;
    ensure!(gone.stderr.contains("NotFound"), "{gone}");
    Ok(())
}
