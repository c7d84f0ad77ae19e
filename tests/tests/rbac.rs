//! RBAC is enforced: a service account without rights gets 403; granting a Role fixes it.

use anyhow::{Result, bail, ensure};
use e2e::cluster::client_from;
use e2e::{TestNamespace, apply_yaml, cluster, eventually, kubectl};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::ListParams;

#[tokio::test]
async fn service_account_without_rights_gets_403() -> Result<()> {
    let c = cluster().await?;
    let ns = TestNamespace::new(&c, "rbac").await?;
    kubectl(["create", "serviceaccount", "nobody", "-n", &ns.name])
        .await?
        .ok()?;
    let token = kubectl([
        "create",
        "token",
        "nobody",
        "-n",
        &ns.name,
        "--duration=10m",
    ])
    .await?
    .ok()?
    .stdout
    .trim()
    .to_string();
    ensure!(!token.is_empty(), "empty token");
    let sa = client_from(&c.kubeconfig, Some(&token)).await?;

    let err = Api::<Pod>::namespaced(sa.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .expect_err("listing pods without rights must fail");
    match &err {
        kube::Error::Api(s) if s.code == 403 => {
            ensure!(
                s.message
                    .contains(&format!("system:serviceaccount:{}:nobody", ns.name)),
                "403 does not name the service account: {}",
                s.message
            )
        }
        other => bail!("expected 403 Forbidden, got {other:?}"),
    }

    // The same token works once a Role allows it (so the 403 above was authorization, not
    // a broken token).
    apply_yaml(
        &c.client,
        Some(&ns.name),
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: read-configmaps}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: nobody-reads-configmaps}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-configmaps}
subjects:
- {kind: ServiceAccount, name: nobody}
"#,
    )
    .await?;
    let cms = Api::<ConfigMap>::namespaced(sa.clone(), &ns.name);
    eventually("the Role to take effect", || async {
        cms.list(&ListParams::default()).await?;
        Ok(())
    })
    .await?;
    // Still no access to pods.
    let still = Api::<Pod>::namespaced(sa, &ns.name)
        .list(&ListParams::default())
        .await;
    ensure!(
        matches!(still, Err(kube::Error::Api(ref s)) if s.code == 403),
        "pods must stay forbidden: {still:?}"
    );
    Ok(())
}
