//! The rendered chart is accepted by a real API server: `helm template` with the default values,
//! Zalando's default values file and a few variants, applied with `kubectl apply
//! --dry-run=server` (schemas, defaulting and validation run, nothing is stored). cert-manager's
//! mode renders cert-manager objects, whose CRDs this control plane does not have; its render is
//! checked in `chart.rs`.

use anyhow::{Result, ensure};
use e2e::command::{helm, kubectl_with_stdin};
use e2e::{cluster::cluster, namespace::TestNamespace, paths};

#[tokio::test]
async fn rendered_chart_passes_a_server_side_dry_run() -> Result<()> {
    let c = cluster().await?;
    let ns = TestNamespace::new(&c, "chartdry").await?;
    let chart = paths::repo_root().join("charts/postgres-operator");
    let chart = chart.to_string_lossy().into_owned();
    let zalando = paths::repo_root().join("../shared/fixtures/zalando/chart-values.yaml");
    let zalando = zalando.to_string_lossy().into_owned();
    let variants: [&[&str]; 6] = [
        &[],
        &["-f", &zalando],
        &["--set", "configTarget=ConfigMap"],
        &["--set", "webhook.tls.mode=secret"],
        &["--set", "controller.enabled=false"],
        &[
            "--set",
            "rbac.createAggregateClusterRoles=true",
            "--set",
            "controller.replicas=2",
        ],
    ];
    for variant in variants {
        let mut args = vec![
            "template",
            "dry",
            chart.as_str(),
            "-n",
            ns.name.as_str(),
            "--include-crds",
        ];
        args.extend_from_slice(variant);
        let rendered = helm(args).await?.ok()?.stdout;
        let out = kubectl_with_stdin(
            ["apply", "--dry-run=server", "-n", &ns.name, "-f", "-"],
            &rendered,
        )
        .await?;
        ensure!(out.success(), "variant {variant:?}: {out}");
        ensure!(
            out.stdout.contains("deployment.apps/dry-postgres-operator")
                || variant.contains(&"controller.enabled=false"),
            "variant {variant:?} created no controller Deployment: {out}"
        );
    }
    Ok(())
}
