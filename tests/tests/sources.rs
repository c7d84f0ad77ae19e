//! A new cluster's data from another cluster, on real Patroni + PostgreSQL: `spec.clone`
//! (a basebackup of the running source through its master Service) and `spec.standby` with
//! `standby_host` (a standby cluster streaming from the source). One source serves both, so the
//! test costs three single-member clusters.

use anyhow::{Context, Result, bail};
use e2e::command::{kubectl, kubectl_with_stdin};
use e2e::{cluster::cluster, namespace::TestNamespace, paths};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const MAJOR: &str = "17";
const TIMEOUT: Duration = Duration::from_secs(300);

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn setup(prefix: &str) -> Result<(TestNamespace, Controller)> {
    let pids = paths::local_dir().join("pids");
    let pid = std::fs::read_to_string(pids.join("pod-runner.pid"))
        .context("no pod runner pid file: run make up")?;
    if !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists() {
        bail!("the pod runner is not running: run make up");
    }
    let cluster = cluster().await?;
    e2e::crds::install_crds(&cluster.client).await?;
    let ns = TestNamespace::new(&cluster, prefix).await?;
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
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(psql_bin())
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

async fn get(ns: &str, args: &[&str]) -> Result<Value> {
    let mut all = vec!["get", "-n", ns];
    all.extend(args);
    all.extend(["-o", "json"]);
    Ok(serde_json::from_str(&kubectl(all).await?.ok()?.stdout)?)
}

fn secret_name(user: &str, cluster: &str) -> String {
    format!("{user}.{cluster}.credentials.postgresql.acid.zalan.do")
}

async fn password(ns: &str, cluster: &str) -> Result<String> {
    let template = "go-template={{.data.password | base64decode}}";
    let name = secret_name("postgres", cluster);
    Ok(kubectl(["get", "secret", &name, "-n", ns, "-o", template])
        .await?
        .ok()?
        .stdout)
}

/// Applies a 1-member cluster with `extra` spec fields (JSON) and waits until its status is
/// Running — which the controller reports only once Patroni has a running leader.
async fn running(ns: &str, name: &str, extra: Value) -> Result<String> {
    let mut spec = json!({"teamId": "acid", "numberOfInstances": 1,
        "postgresql": {"version": MAJOR}, "volume": {"size": "1Gi"}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    let pg = json!({"apiVersion": "acid.zalan.do/v1", "kind": "postgresql",
        "metadata": {"name": name, "namespace": ns}, "spec": spec});
    kubectl_with_stdin(["apply", "-f", "-"], &pg.to_string())
        .await?
        .ok()?;
    e2e::eventually::eventually_with(
        &format!("{name} Running with a leader"),
        TIMEOUT,
        Duration::from_millis(500),
        || async {
            let pg = get(ns, &["postgresql", name]).await?;
            if pg["status"]["PostgresClusterStatus"] != "Running" {
                bail!("status {}", pg["status"]);
            }
            let pod = get(ns, &["pod", &format!("{name}-0")]).await?;
            match pod["status"]["podIP"].as_str() {
                Some(ip) => Ok(ip.to_string()),
                None => bail!("no pod IP"),
            }
        },
    )
    .await
}

/// Copies the source's `postgres` and `standby` Secrets to the names the standby cluster uses,
/// as Zalando's standby test does: a standby replicates with the source's credentials.
async fn copy_credentials(ns: &str, source: &str, target: &str) -> Result<()> {
    for user in ["postgres", "standby"] {
        let secret = get(ns, &["secret", &secret_name(user, source)]).await?;
        let copy = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": secret_name(user, target), "namespace": ns},
            "type": secret["type"], "data": secret["data"]});
        kubectl_with_stdin(["apply", "-f", "-"], &copy.to_string())
            .await?
            .ok()?;
    }
    Ok(())
}

#[tokio::test]
async fn a_clone_copies_the_source_and_a_standby_follows_it() -> Result<()> {
    let (ns, _controller) = setup("sources").await?;
    let n = ns.name.as_str();
    let source_ip = running(n, "acid-source", json!({})).await?;
    let pw = password(n, "acid-source").await?;
    let write = |ip: String, value: &'static str| {
        let pw = pw.clone();
        async move {
            sql(
                &ip,
                &pw,
                &format!(
                    "create table if not exists probe(t text); insert into probe values ('{value}')"
                ),
            )
            .await
        }
    };
    e2e::eventually::eventually("a write on the source", || {
        write(source_ip.clone(), "before")
    })
    .await?;

    // The clone: a basebackup of the running source, then a primary of its own.
    let clone_ip = running(
        n,
        "acid-clone",
        json!({"clone": {"cluster": "acid-source"}}),
    )
    .await?;
    let clone_pw = password(n, "acid-clone").await?;
    let rows = e2e::eventually::eventually("the source's row in the clone", || async {
        sql(&clone_ip, &clone_pw, "select string_agg(t, ',') from probe").await
    })
    .await?;
    assert_eq!(rows, "before", "the clone holds the source's data");
    // The clone's superuser is the clone's own Secret's: Spilo resets it after the copy.
    assert_eq!(
        sql(&clone_ip, &clone_pw, "select pg_is_in_recovery()").await?,
        "f",
        "a clone is an independent primary"
    );
    sql(
        &clone_ip,
        &clone_pw,
        "insert into probe values ('clone only')",
    )
    .await?;

    // The standby: streams from the source's master Service with the source's credentials.
    copy_credentials(n, "acid-source", "acid-standby").await?;
    let standby_ip = running(
        n,
        "acid-standby",
        json!({"standby": {"standby_host": "acid-source"}}),
    )
    .await?;
    e2e::eventually::eventually("the source's later row on the standby", || async {
        write(source_ip.clone(), "after").await.ok();
        let rows = sql(
            &standby_ip,
            &pw,
            "select count(*) from probe where t = 'after'",
        )
        .await?;
        if rows == "0" {
            bail!("the standby has no 'after' row yet");
        }
        Ok(())
    })
    .await?;
    assert_eq!(
        sql(&standby_ip, &pw, "select pg_is_in_recovery()").await?,
        "t",
        "a standby cluster's leader replays, it does not accept writes"
    );
    let refused = sql(&standby_ip, &pw, "insert into probe values ('x')").await;
    assert!(
        refused.is_err_and(|e| e.to_string().contains("read-only")),
        "a write on the standby is refused"
    );
    // The clone's own row never reached the source.
    assert_eq!(
        sql(
            &source_ip,
            &pw,
            "select count(*) from probe where t = 'clone only'"
        )
        .await?,
        "0"
    );
    Ok(())
}
