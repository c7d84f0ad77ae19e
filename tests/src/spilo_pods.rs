//! Clusters whose Spilo pods the pod runner runs for real (Patroni + PostgreSQL): a namespace
//! with its own controller process scoped to it, the cluster manifest, and the waits and
//! queries the tests of real pods share.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::command::{kubectl, kubectl_with_stdin};
use crate::{cluster::cluster, namespace::TestNamespace, paths};

/// The major the tests' clusters run.
pub const MAJOR: &str = "17";
/// How long a cluster may take to get a writable master (initdb on 2 busy cores).
pub const TIMEOUT: Duration = Duration::from_secs(240);

/// A controller process, killed when dropped.
pub struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fails unless the pod runner of this checkout's control plane runs.
pub fn runner_is_up() -> Result<()> {
    let pids = paths::local_dir().join("pids");
    let pid = std::fs::read_to_string(pids.join("pod-runner.pid"))
        .context("no pod runner pid file: run make up")?;
    if !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists() {
        bail!(
            "the pod runner (pid {}) is not running: run make up",
            pid.trim()
        );
    }
    Ok(())
}

/// A fresh namespace `prefix-…` with Patroni's ClusterRole, an operator ConfigMap with short
/// periods, and a controller process watching only that namespace (log:
/// `.local/logs/controller-<namespace>.log`).
pub async fn setup(prefix: &str) -> Result<(TestNamespace, Controller)> {
    runner_is_up()?;
    let cluster = cluster().await?;
    crate::crds::install_crds(&cluster.client).await?;
    let ns = TestNamespace::new(&cluster, prefix).await?;
    // Patroni's permissions (the controller binds this ClusterRole in the namespace).
    let rbac = std::fs::read_to_string(paths::repo_root().join("manifests/controller/rbac.yaml"))?;
    let pod_role = rbac
        .split("\n---\n")
        .find(|doc| doc.contains("name: postgres-pod"))
        .context("no postgres-pod ClusterRole in rbac.yaml")?;
    kubectl_with_stdin(["apply", "-f", "-"], pod_role)
        .await?
        .ok()?;
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "postgres-operator", "namespace": ns.name},
        "data": {"enable_crd_registration": "false", "resync_period": "5s", "repair_period": "5s"}});
    kubectl_with_stdin(["apply", "-f", "-"], &config.to_string())
        .await?
        .ok()?;
    let log = std::fs::File::create(
        paths::local_dir()
            .join("logs")
            .join(format!("controller-{}.log", ns.name)),
    )?;
    let child = Command::new(crate::process::workspace_binary("controller")?)
        .args([
            "--admin-listen",
            &format!("127.0.0.1:{}", crate::process::free_port()),
        ])
        .args(["--leader-election", "false"])
        .env("KUBECONFIG", paths::kubeconfig())
        .env("CONFIG_MAP_NAME", format!("{}/postgres-operator", ns.name))
        .env("OPERATOR_NAMESPACE", &ns.name)
        .env("WATCHED_NAMESPACE", &ns.name)
        .env("RUST_LOG", "info,kube=warn")
        .env_remove("POSTGRES_OPERATOR_CONFIGURATION_OBJECT")
        .env_remove("CONTROLLER_ID")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting the controller")?;
    Ok((ns, Controller(child)))
}

/// A minimal `postgresql` manifest of [`MAJOR`] with `instances` pods.
pub fn manifest(name: &str, instances: i32) -> String {
    format!(
        "apiVersion: acid.zalan.do/v1\nkind: postgresql\nmetadata:\n  name: {name}\nspec:\n  teamId: acid\n  numberOfInstances: {instances}\n  postgresql:\n    version: \"{MAJOR}\"\n  volume:\n    size: 1Gi\n"
    )
}

/// The world's `psql` of [`MAJOR`].
pub fn psql_bin() -> PathBuf {
    let cache = std::env::var_os("PGOP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/pgop")
        });
    cache.join("world/pg").join(MAJOR).join("bin/psql")
}

/// `psql -AtX -c sql` as postgres against `ip`; the trimmed output.
pub async fn sql(ip: &str, password: &str, sql: &str) -> Result<String> {
    let psql = psql_bin();
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(&psql)
            .args([
                "-h", ip, "-U", "postgres", "-d", "postgres", "-AtX", "-c", sql,
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "3")
            .output(),
    )
    .await
    .context("psql timed out")??;
    if !out.status.success() {
        bail!(
            "psql -h {ip}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `kubectl ARGS -o json`, parsed.
pub async fn json(args: &[&str]) -> Result<Value> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-o", "json"]);
    Ok(serde_json::from_str(&kubectl(all).await?.ok()?.stdout)?)
}

/// The pods of cluster `name` labelled `spilo-role=role`, as (name, IP).
pub async fn pods_with_role(ns: &str, name: &str, role: &str) -> Result<Vec<(String, String)>> {
    let selector = format!("cluster-name={name},spilo-role={role}");
    let list = json(&["get", "pods", "-n", ns, "-l", &selector]).await?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["status"]["podIP"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect())
}

/// The `postgres` user's password of cluster `cluster`.
pub async fn password(ns: &str, cluster: &str) -> Result<String> {
    let name = format!("postgres.{cluster}.credentials.postgresql.acid.zalan.do");
    let template = "go-template={{.data.password | base64decode}}";
    let out = kubectl(["get", "secret", &name, "-n", ns, "-o", template])
        .await?
        .ok()?;
    Ok(out.stdout)
}

/// Waits for exactly one master that answers psql as a writable primary; returns (pod, IP, password).
pub async fn writable_master(ns: &str, cluster: &str) -> Result<(String, String, String)> {
    crate::eventually::eventually_with(
        &format!("a writable master of {cluster}"),
        TIMEOUT,
        Duration::from_millis(500),
        || async {
            let masters = pods_with_role(ns, cluster, "master").await?;
            let [(pod, ip)] = masters.as_slice() else {
                bail!("{} pods labelled master", masters.len());
            };
            let pw = password(ns, cluster).await?;
            match sql(ip, &pw, "select pg_is_in_recovery()").await?.as_str() {
                "f" => Ok((pod.clone(), ip.clone(), pw)),
                other => bail!("pg_is_in_recovery() is {other}"),
            }
        },
    )
    .await
}
