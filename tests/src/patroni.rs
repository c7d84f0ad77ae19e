//! Clusters of real Patroni + PostgreSQL members run by the pod runner: a namespace-scoped
//! controller per test, cluster manifests, psql from the world's cached major, the `spilo-role`
//! labels and leader ConfigMap Patroni keeps, and the members' processes as this machine sees
//! them (the runner runs each Spilo container as PID 1 of its own PID namespace).
//!
//! Every address dialled here is a pod or Service IP inside 127.0.0.0/8; [`port_open`] refuses
//! anything else.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::command::{kubectl, kubectl_with_stdin};
use crate::{cluster::cluster, namespace::TestNamespace, paths};

/// The PostgreSQL major of the test clusters (the world caches its binaries).
pub const MAJOR: &str = "17";
/// How long a cluster may take to get a writable master or a streaming replica on this machine.
pub const TIMEOUT: Duration = Duration::from_secs(240);

/// The controller process of one test; killed when dropped.
pub struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fails unless the pod runner of this checkout (started by `make up`) is alive.
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

/// A fresh namespace with Patroni's ClusterRole, the operator configuration and a controller
/// watching only that namespace (its log is `.local/logs/controller-<namespace>.log`).
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
        "data": {"enable_crd_registration": "false", "resync_period": "5s", "repair_period": "5s",
            "enable_teams_api": "false"}});
    kubectl_with_stdin(["apply", "-f", "-"], &config.to_string())
        .await?
        .ok()?;
    let controller = start_controller(&ns.name)?;
    Ok((ns, controller))
}

/// A controller watching only `namespace` and configured by its `postgres-operator`
/// ConfigMap; its log is appended to `.local/logs/controller-<namespace>.log`.
pub fn start_controller(namespace: &str) -> Result<Controller> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(
        paths::local_dir()
            .join("logs")
            .join(format!("controller-{namespace}.log")),
    )?;
    let child = controller_command(
        &crate::process::workspace_binary("controller")?,
        &paths::kubeconfig(),
        namespace,
        crate::process::free_port(),
    )
    .stdout(Stdio::null())
    .stderr(log)
    .spawn()
    .context("starting the controller")?;
    Ok(Controller(child))
}

/// The command line of the controller binary `exe` watching only `namespace` through
/// `kubeconfig`, configured by the namespace's `postgres-operator` ConfigMap alone (no
/// configuration object, no controller id from the caller's environment), logging at info, its
/// admin endpoints on 127.0.0.1:`admin`. The caller sets its output and spawns it.
pub fn controller_command(exe: &Path, kubeconfig: &Path, namespace: &str, admin: u16) -> Command {
    let mut command = Command::new(exe);
    command
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .args(["--leader-election", "false"])
        .env("KUBECONFIG", kubeconfig)
        .env("CONFIG_MAP_NAME", format!("{namespace}/postgres-operator"))
        .env("OPERATOR_NAMESPACE", namespace)
        .env("WATCHED_NAMESPACE", namespace)
        .env("RUST_LOG", "info,kube=warn")
        .env_remove("POSTGRES_OPERATOR_CONFIGURATION_OBJECT")
        .env_remove("CONTROLLER_ID");
    command
}

/// A `postgresql` manifest of `instances` members of the test major.
pub fn manifest(name: &str, instances: i32) -> String {
    manifest_with(name, instances, "")
}

/// As [`manifest`], with `patroni` as the body of `spec.patroni` (YAML indented by 4), e.g.
/// `"    ttl: 20\n    loop_wait: 5\n"`; empty for none.
pub fn manifest_with(name: &str, instances: i32, patroni: &str) -> String {
    let patroni = if patroni.is_empty() {
        String::new()
    } else {
        format!("  patroni:\n{patroni}")
    };
    format!(
        "apiVersion: acid.zalan.do/v1\nkind: postgresql\nmetadata:\n  name: {name}\nspec:\n  teamId: acid\n  numberOfInstances: {instances}\n  postgresql:\n    version: \"{MAJOR}\"\n  volume:\n    size: 1Gi\n{patroni}"
    )
}

/// psql of the test major in the world's cache.
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
    sql_as(ip, "postgres", password, "postgres", sql).await
}

/// `psql -AtX -c sql` as `user` on `database` at `ip`; the trimmed output.
pub async fn sql_as(
    ip: &str,
    user: &str,
    password: &str,
    database: &str,
    sql: &str,
) -> Result<String> {
    let psql = psql_bin();
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(&psql)
            .args(["-h", ip, "-U", user, "-d", database, "-AtX", "-c", sql])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "3")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("psql timed out")??;
    if !out.status.success() {
        bail!(
            "psql -h {ip} -U {user} -d {database}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `kubectl args… -o json`, parsed.
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

/// The password of the `postgres` user from the cluster's Secret.
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
                bail!("{} pods labelled master: {masters:?}", masters.len());
            };
            let pw = password(ns, cluster).await?;
            match sql(ip, &pw, "select pg_is_in_recovery()").await?.as_str() {
                "f" => Ok((pod.clone(), ip.clone(), pw)),
                other => bail!("pg_is_in_recovery() on {pod} is {other}"),
            }
        },
    )
    .await
}

/// The `leader` annotation of the cluster's leader ConfigMap (empty when there is none).
pub async fn leader_annotation(ns: &str, cluster: &str) -> Result<String> {
    let leader = json(&["get", "configmap", &format!("{cluster}-leader"), "-n", ns]).await?;
    Ok(leader["metadata"]["annotations"]["leader"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// The master's `pg_stat_replication` as (application_name, state), sorted.
pub async fn replication(master_ip: &str, password: &str) -> Result<Vec<(String, String)>> {
    let out = sql(
        master_ip,
        password,
        "select application_name || ' ' || state from pg_stat_replication",
    )
    .await?;
    let mut rows: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, s)| (a.to_string(), s.to_string()))
        .collect();
    rows.sort();
    Ok(rows)
}

/// Waits until the master at `master_ip` has `replicas` replicas in state `streaming` (a
/// replica's own `pg_basebackup`, also `streaming` while the replica is being made, does not
/// count).
pub async fn wait_streaming(master_ip: &str, password: &str, replicas: usize) -> Result<()> {
    crate::eventually::eventually_with(
        &format!("{replicas} streaming replicas"),
        TIMEOUT,
        Duration::from_millis(500),
        || async {
            let rows = replication(master_ip, password).await?;
            let streaming = rows
                .iter()
                .filter(|(name, s)| s == "streaming" && name != "pg_basebackup")
                .count();
            if streaming != replicas {
                bail!("replication: {rows:?}");
            }
            Ok(())
        },
    )
    .await
}

/// The objects of `resource` (e.g. `pods`, `pvc`) labelled `cluster-name=<cluster>`, as JSON.
pub async fn cluster_objects(ns: &str, resource: &str, cluster: &str) -> Result<Vec<Value>> {
    let selector = format!("cluster-name={cluster}");
    let list = json(&["get", resource, "-n", ns, "-l", &selector]).await?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// The cluster's pods as (name, IP, uid), sorted by name.
pub async fn pods(ns: &str, cluster: &str) -> Result<Vec<(String, String, String)>> {
    let mut pods: Vec<(String, String, String)> = cluster_objects(ns, "pods", cluster)
        .await?
        .iter()
        .map(|p| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                s(&p["metadata"]["name"]),
                s(&p["status"]["podIP"]),
                s(&p["metadata"]["uid"]),
            )
        })
        .collect();
    pods.sort();
    Ok(pods)
}

/// The `restartCount` of the pod's `postgres` container (0 when not reported yet).
pub async fn restart_count(ns: &str, pod: &str) -> Result<u64> {
    let p = json(&["get", "pod", pod, "-n", ns]).await?;
    Ok(p["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "postgres")
        .and_then(|c| c["restartCount"].as_u64())
        .unwrap_or(0))
}

/// A process of this machine: PID and command line (NULs as spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub cmdline: String,
}

fn read_proc(pid: u32) -> Option<(String, String, String)> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    Some((cmdline.trim().to_string(), cwd, status))
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose command line or working directory contains any of `markers` (a pod's uid
/// names its Patroni's run dir, a claim's uid the data directory PostgreSQL runs in). The
/// runner's own reaper processes (forks of the runner, outside the namespace) are left out.
pub fn processes_referencing(markers: &[&str]) -> Vec<Proc> {
    all_pids()
        .into_iter()
        .filter_map(|pid| {
            let (cmdline, cwd, _) = read_proc(pid)?;
            if cmdline.contains("pod-runner") {
                return None;
            }
            markers
                .iter()
                .any(|m| !m.is_empty() && (cmdline.contains(m) || cwd.contains(m)))
                .then_some(Proc { pid, cmdline })
        })
        .collect()
}

/// The main process of the pod's Spilo container: PID 1 of its PID namespace (Patroni), found by
/// the pod's uid in its configuration path.
pub fn container_init(pod_uid: &str) -> Option<Proc> {
    all_pids().into_iter().find_map(|pid| {
        let (cmdline, _, status) = read_proc(pid)?;
        if !cmdline.contains(pod_uid) || !cmdline.contains("patroni") {
            return None;
        }
        let nspid = status.lines().find(|l| l.starts_with("NSpid:"))?;
        (nspid.split_whitespace().last() == Some("1")).then_some(Proc { pid, cmdline })
    })
}

/// Whether something accepts TCP connections on `ip:port` (a loopback address only).
pub fn port_open(ip: &str, port: u16) -> Result<bool> {
    let addr: IpAddr = ip.parse().with_context(|| format!("bad IP {ip:?}"))?;
    if !addr.is_loopback() {
        bail!("refusing to dial {addr}: outside 127.0.0.0/8");
    }
    Ok(TcpStream::connect_timeout(&SocketAddr::new(addr, port), Duration::from_secs(2)).is_ok())
}

/// The uid of `pod`.
pub async fn pod_uid(ns: &str, pod: &str) -> Result<String> {
    let p = json(&["get", "pod", pod, "-n", ns]).await?;
    Ok(p["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// The uid of `pod`'s `pgdata` claim.
pub async fn claim_uid(ns: &str, pod: &str) -> Result<String> {
    let pvc = json(&["get", "pvc", &format!("pgdata-{pod}"), "-n", ns]).await?;
    Ok(pvc["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// The pod runner's folder of a claim (`.local/state/world/pvcs/<claim uid>`).
pub fn claim_dir(claim_uid: &str) -> PathBuf {
    paths::local_dir().join("state/world/pvcs").join(claim_uid)
}

/// `kill -9` of the pod's container (PID 1 of its namespace: Patroni and PostgreSQL die with
/// it); the PID killed.
pub fn kill_container(pod: &str, uid: &str) -> Result<u32> {
    let init = container_init(uid)
        .with_context(|| format!("no container process of {pod} (uid {uid}) on this machine"))?;
    let status = Command::new("kill")
        .args(["-9", &init.pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -9 {} ({}) failed", init.pid, init.cmdline);
    }
    Ok(init.pid)
}
