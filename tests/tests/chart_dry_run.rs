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

/// The YAML documents `helm template` renders with `args`.
async fn render(args: &[&str]) -> Result<Vec<serde_json::Value>> {
    let chart = paths::repo_root().join("charts/postgres-operator");
    let chart = chart.to_string_lossy().into_owned();
    let mut all = vec!["template", "tls", chart.as_str(), "-n", "ops"];
    all.extend_from_slice(args);
    let text = helm(all).await?.ok()?.stdout;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(doc)?;
        if !value.is_null() {
            out.push(serde_json::to_value(value)?);
        }
    }
    Ok(out)
}

fn of_kind<'a>(objects: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

use serde::Deserialize;

/// GitOps tools render the chart again and again: nothing in it may change between renders (no
/// generated certificate), and each TLS mode renders what it needs and nothing else.
#[tokio::test]
async fn renders_are_stable_and_each_tls_mode_renders_its_parts() -> Result<()> {
    ensure!(
        render(&[]).await? == render(&[]).await?,
        "two renders differ"
    );

    // self-managed: the webhook's arguments, its Role for the one Secret, no volume, no caBundle.
    let objects = render(&[]).await?;
    let deployment = of_kind(&objects, "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "tls-postgres-operator-webhook")
        .cloned()
        .unwrap_or_default();
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    for arg in [
        "--tls-mode=self-managed",
        "--tls-secret=tls-postgres-operator-webhook-cert",
        "--webhook-configuration=tls-postgres-operator-webhook-ops",
    ] {
        ensure!(args.contains(arg), "{arg} missing in {args}");
    }
    ensure!(deployment["spec"]["template"]["spec"]["volumes"].is_null());
    ensure!(of_kind(&objects, "Role").len() == 1);
    ensure!(of_kind(&objects, "Certificate").is_empty());

    // cert-manager: a self-signed Issuer, a Certificate into the Secret the pods mount, and the
    // CA injector's annotation on both configurations.
    let objects = render(&["--set", "webhook.tls.mode=cert-manager"]).await?;
    ensure!(of_kind(&objects, "Issuer").len() == 1);
    let certificate = of_kind(&objects, "Certificate");
    ensure!(certificate.len() == 1);
    ensure!(certificate[0]["spec"]["secretName"] == "tls-postgres-operator-webhook-cert");
    ensure!(
        certificate[0]["spec"]["dnsNames"]
            .to_string()
            .contains("tls-postgres-operator-webhook.ops.svc"),
        "{}",
        certificate[0]
    );
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let config = of_kind(&objects, kind);
        ensure!(
            config[0]["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
                == "ops/tls-postgres-operator-webhook",
            "{kind}: {}",
            config[0]
        );
    }
    ensure!(
        of_kind(&objects, "Role").is_empty(),
        "no Secret access needed"
    );
    let mounted = objects.iter().any(|o| {
        o["kind"] == "Deployment"
            && o["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"]
                == "tls-postgres-operator-webhook-cert"
    });
    ensure!(mounted, "the webhook mounts the Certificate's Secret");
    // An existing issuer replaces the chart's own.
    let objects = render(&[
        "--set",
        "webhook.tls.mode=cert-manager",
        "--set",
        "webhook.tls.certManager.issuerRef.kind=ClusterIssuer",
        "--set",
        "webhook.tls.certManager.issuerRef.name=corp-ca",
    ])
    .await?;
    ensure!(of_kind(&objects, "Issuer").is_empty());
    ensure!(of_kind(&objects, "Certificate")[0]["spec"]["issuerRef"]["name"] == "corp-ca");

    // secret: the user's Secret, mounted; nothing else.
    let objects = render(&[
        "--set",
        "webhook.tls.mode=secret",
        "--set",
        "webhook.tls.secretName=mine",
    ])
    .await?;
    ensure!(of_kind(&objects, "Certificate").is_empty() && of_kind(&objects, "Role").is_empty());
    let mounted = objects.iter().any(|o| {
        o["kind"] == "Deployment"
            && o["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] == "mine"
    });
    ensure!(mounted, "the webhook mounts the user's Secret");
    // An unknown mode is refused by name (by the schema; the template refuses it too).
    let out = helm([
        "template",
        "tls",
        &paths::repo_root()
            .join("charts/postgres-operator")
            .to_string_lossy(),
        "--set",
        "webhook.tls.mode=vault",
    ])
    .await?
    .failed()?;
    ensure!(out.stderr.contains("/webhook/tls/mode"), "{out}");
    Ok(())
}
