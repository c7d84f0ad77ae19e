//! The CRDs in `crds/` install, and the `postgresql` schema is enforced by the apiserver.

use anyhow::{Result, ensure};
use e2e::crds::install_crds;
use e2e::{TestNamespace, cluster, kubectl, kubectl_with_stdin, paths, skip};

const POSTGRESQL_CRD: &str = "postgresqls.acid.zalan.do";

#[tokio::test]
async fn crds_install_and_become_established() -> Result<()> {
    let c = cluster().await?;
    let names = install_crds(&c.client).await?;
    if names.is_empty() {
        skip!("crds/ has no YAML yet");
    }
    ensure!(
        names.iter().any(|n| n == POSTGRESQL_CRD),
        "crds/ does not define {POSTGRESQL_CRD}; found {names:?}"
    );
    // kubectl sees the new kind through discovery.
    let out = kubectl(["api-resources", "--api-group=acid.zalan.do", "-o", "name"])
        .await?
        .ok()?;
    ensure!(out.stdout.contains("postgresqls"), "{out}");
    Ok(())
}

#[tokio::test]
async fn valid_postgresql_is_accepted_and_schema_violation_is_rejected() -> Result<()> {
    let c = cluster().await?;
    let names = install_crds(&c.client).await?;
    if !names.iter().any(|n| n == POSTGRESQL_CRD) {
        skip!("crds/ does not define {POSTGRESQL_CRD} yet");
    }
    let ns = TestNamespace::new(&c, "crd-schema").await?;

    let manifest = paths::repo_root().join("manifests/minimal-postgres-manifest.yaml");
    let valid = if manifest.exists() {
        std::fs::read_to_string(&manifest)?
    } else {
        VALID.to_string()
    };
    kubectl_with_stdin(["apply", "-n", &ns.name, "-f", "-"], &valid)
        .await?
        .ok()?;
    let got = kubectl(["get", "postgresql", "-n", &ns.name, "-o", "name"])
        .await?
        .ok()?;
    ensure!(!got.stdout.trim().is_empty(), "no postgresql stored: {got}");

    // numberOfInstances must be an integer: the apiserver rejects the object and names the field.
    let invalid = VALID.replace("numberOfInstances: 2", "numberOfInstances: \"two\"");
    let out = kubectl_with_stdin(["apply", "-n", &ns.name, "-f", "-"], &invalid)
        .await?
        .failed()?;
    ensure!(
        out.stderr.contains("spec.numberOfInstances"),
        "rejection does not name spec.numberOfInstances:\n{out}"
    );
    // A missing required field is rejected too.
    let missing = VALID.replace("  teamId: \"acid\"\n", "");
    let out = kubectl_with_stdin(["apply", "-n", &ns.name, "-f", "-"], &missing)
        .await?
        .failed()?;
    ensure!(
        out.stderr.contains("teamId"),
        "rejection does not name teamId:\n{out}"
    );
    Ok(())
}

const VALID: &str = r#"apiVersion: acid.zalan.do/v1
kind: postgresql
metadata:
  name: acid-schema-check
spec:
  teamId: "acid"
  volume:
    size: 1Gi
  numberOfInstances: 2
  postgresql:
    version: "17"
"#;
