//! Real Patroni + PostgreSQL behind the Spilo pods: the pod runner started by `scripts/up.sh`
//! runs every Spilo container of the kwok nodes. A 1-instance cluster gets a master elected by
//! Patroni (label, leader ConfigMap) that psql reaches on its pod IP with the password of the
//! `postgres` Secret, also through the master Service's ClusterIP; a 2-instance cluster gets a streaming replica that sees the master's rows.
//! Each test runs its own controller scoped to its own namespace. They cost real CPU (initdb,
//! basebackup) on 2 cores, so there are only these two.

use anyhow::{Context, Result, bail};
use e2e::command::{kubectl, kubectl_with_stdin};
use e2e::{cluster::cluster, namespace::TestNamespace, paths};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MAJOR: &str = "17";
const TIMEOUT: Duration = Duration::from_secs(240);

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn runner_is_up() -> Result<()> {
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

async fn setup(prefix: &str) -> Result<(TestNamespace, Controller)> {
    runner_is_up()?;
    let cluster = cluster().await?;
    e2e::crds::install_crds(&cluster.client).await?;
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
    let child = Command::new(e2e::process::workspace_binary("controller")?)
        .args([
            "--admin-listen",
            &format!("127.0.0.1:{}", e2e::process::free_port()),
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

fn manifest(name: &str, instances: i32) -> String {
    format!(
        "apiVersion: acid.zalan.do/v1\nkind: postgresql\nmetadata:\n  name: {name}\nspec:\n  teamId: acid\n  numberOfInstances: {instances}\n  postgresql:\n    version: \"{MAJOR}\"\n  volume:\n    size: 1Gi\n"
    )
}

fn psql_bin() -> PathBuf {
    let cache = std::env::var_os("PGOP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/pgop")
        });
    cache.join("world/pg").join(MAJOR).join("bin/psql")
}

/// `psql -AtX -c sql` as postgres against `ip`; the trimmed output.
async fn sql(ip: &str, password: &str, sql: &str) -> Result<String> {
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

async fn json(args: &[&str]) -> Result<Value> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-o", "json"]);
    Ok(serde_json::from_str(&kubectl(all).await?.ok()?.stdout)?)
}

/// The pods of cluster `name` labelled `spilo-role=role`, as (name, IP).
async fn pods_with_role(ns: &str, name: &str, role: &str) -> Result<Vec<(String, String)>> {
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

async fn password(ns: &str, cluster: &str) -> Result<String> {
    let name = format!("postgres.{cluster}.credentials.postgresql.acid.zalan.do");
    let template = "go-template={{.data.password | base64decode}}";
    let out = kubectl(["get", "secret", &name, "-n", ns, "-o", template])
        .await?
        .ok()?;
    Ok(out.stdout)
}

/// Waits for exactly one master that answers psql as a writable primary; returns (pod, IP, password).
async fn writable_master(ns: &str, cluster: &str) -> Result<(String, String, String)> {
    e2e::eventually::eventually_with(
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

#[tokio::test]
async fn one_instance_gets_a_master_elected_by_patroni_that_psql_reaches() -> Result<()> {
    let (ns, _controller) = setup("real-one").await?;
    let n = ns.name.as_str();
    let started = Instant::now();
    kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &manifest("acid-one", 1))
        .await?
        .ok()?;
    let (pod, ip, pw) = writable_master(n, "acid-one").await?;
    eprintln!(
        "apply -> writable master {pod} ({ip}): {:?}",
        started.elapsed()
    );
    assert!(ip.starts_with("127."), "pod IP {ip} outside loopback");
    let leader = json(&["get", "configmap", "acid-one-leader", "-n", n]).await?;
    assert_eq!(leader["metadata"]["annotations"]["leader"], pod.as_str());
    assert_eq!(sql(&ip, &pw, "select 1").await?, "1");
    // The runner, not kwok, says Ready: the pod is Ready once Patroni answers /readiness.
    let p = json(&["get", "pod", &pod, "-n", n]).await?;
    let ready = p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["status"], "True", "{ready}");
    // The master Service, served by the runner on its ClusterIP, reaches the leader.
    let service = json(&["get", "service", "acid-one", "-n", n]).await?;
    let cluster_ip = service["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        cluster_ip.starts_with("127."),
        "ClusterIP {cluster_ip} outside loopback"
    );
    let through_service =
        e2e::eventually::eventually("psql through the master Service", || async {
            sql(&cluster_ip, &pw, "select pg_is_in_recovery()").await
        })
        .await?;
    assert_eq!(through_service, "f");
    Ok(())
}

#[tokio::test]
async fn two_instances_stream_and_the_replica_sees_the_masters_rows() -> Result<()> {
    let (ns, _controller) = setup("real-two").await?;
    let n = ns.name.as_str();
    let started = Instant::now();
    kubectl_with_stdin(["apply", "-n", n, "-f", "-"], &manifest("acid-two", 2))
        .await?
        .ok()?;
    let (_, ip, pw) = writable_master(n, "acid-two").await?;
    eprintln!("apply -> writable master: {:?}", started.elapsed());
    let replica_ip = e2e::eventually::eventually_with(
        "a streaming replica",
        TIMEOUT,
        Duration::from_millis(500),
        || async {
            let streaming = sql(
                &ip,
                &pw,
                "select count(*) from pg_stat_replication where state = 'streaming'",
            )
            .await?;
            if streaming != "1" {
                bail!("{streaming} streaming replicas");
            }
            match pods_with_role(n, "acid-two", "replica").await?.as_slice() {
                [(_, replica_ip)] => Ok(replica_ip.clone()),
                other => bail!("{} pods labelled replica", other.len()),
            }
        },
    )
    .await?;
    eprintln!("apply -> streaming replica: {:?}", started.elapsed());
    sql(
        &ip,
        &pw,
        "create table probe(t text); insert into probe values ('hello')",
    )
    .await?;
    e2e::eventually::eventually("the row on the replica", || async {
        match sql(&replica_ip, &pw, "select t from probe").await?.as_str() {
            "hello" => Ok(()),
            other => bail!("replica has {other:?}"),
        }
    })
    .await?;
    Ok(())
}
