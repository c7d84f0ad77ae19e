//! One scenario's namespace: a fresh namespace with its own namespace-scoped controller (as
//! `tests/tests/real_pods.rs` runs it), the clusters created in it, what the API says about
//! their pods, and the cleanup that waits until the members' processes are gone.

use anyhow::{Context, Result, bail};
pub use bench::local::client;
use bench::local::{kubeconfig, repo};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use serde_json::{Value, json};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::procs;

/// The PostgreSQL major every benchmark cluster runs.
pub const MAJOR: &str = "17";

/// Fails unless this checkout's pod runner is alive: without it Spilo pods never start.
pub fn runner_is_up() -> Result<()> {
    let file = repo().join(".local/pids/pod-runner.pid");
    let pid = std::fs::read_to_string(&file)
        .with_context(|| format!("{} (run make up)", file.display()))?;
    if !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists() {
        bail!(
            "the pod runner (pid {}) is not running: run make up",
            pid.trim()
        );
    }
    Ok(())
}

/// A pod of a cluster as the API shows it.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub name: String,
    pub ip: String,
    pub role: Option<String>,
}

pub struct Scenario {
    pub ns: String,
    pub client: Client,
    /// The controller's admin port (`/metrics`; read by bench-database, which includes this file).
    #[allow(dead_code)]
    pub admin: u16,
    controller: Child,
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let _ = self.controller.kill();
        let _ = self.controller.wait();
    }
}

impl Scenario {
    /// `bench-world-<name>`, emptied first if a previous run left it, with its controller.
    pub async fn start(client: &Client, name: &str) -> Result<Scenario> {
        let periods = json!({"resync_period": "30s", "repair_period": "30s"});
        Scenario::start_in(client, &format!("bench-world-{name}"), periods).await
    }

    /// Namespace `ns`, emptied first if a previous run left it, with its controller, whose
    /// ConfigMap holds `settings` (an object of strings) besides `enable_crd_registration`.
    pub async fn start_in(client: &Client, ns: &str, settings: Value) -> Result<Scenario> {
        let ns = ns.to_string();
        remove_namespace(client, &ns).await?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let meta = ObjectMeta {
            name: Some(ns.clone()),
            ..Default::default()
        };
        namespaces
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: meta,
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("creating namespace {ns}"))?;
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        e2e::eventually("the default service account", || async {
            accounts
                .get("default")
                .await
                .map(|_| ())
                .map_err(Into::into)
        })
        .await?;
        let mut data = json!({"enable_crd_registration": "false"});
        for (k, v) in settings.as_object().into_iter().flatten() {
            data[k] = v.clone();
        }
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "postgres-operator", "namespace": ns}, "data": data});
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        cms.create(&PostParams::default(), &serde_json::from_value(config)?)
            .await?;
        let exe = std::env::current_exe()?
            .parent()
            .context("target dir")?
            .join("controller");
        let log_path = repo().join(format!(".local/logs/bench-world-controller-{ns}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let admin = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let controller = e2e::patroni::controller_command(&exe, &kubeconfig(), &ns, admin)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        Ok(Scenario {
            ns,
            client: client.clone(),
            admin,
            controller,
        })
    }

    /// The controller's PID (bench-database samples its sockets).
    #[allow(dead_code)]
    pub fn controller_pid(&self) -> u32 {
        self.controller.id()
    }

    /// Creates a postgresql `name` with `instances` members and an optional `spec.patroni`.
    pub async fn create_cluster(
        &self,
        name: &str,
        instances: i32,
        patroni: Option<Value>,
    ) -> Result<()> {
        let mut spec = json!({"teamId": "acid", "numberOfInstances": instances,
            "postgresql": {"version": MAJOR}, "volume": {"size": "1Gi"}});
        if let Some(p) = patroni {
            spec["patroni"] = p;
        }
        let object = json!({"apiVersion": "acid.zalan.do/v1", "kind": "postgresql",
            "metadata": {"name": name, "namespace": self.ns}, "spec": spec});
        let pg: common::crd::Postgresql = serde_json::from_value(object)?;
        let api: Api<common::crd::Postgresql> = Api::namespaced(self.client.clone(), &self.ns);
        api.create(&PostParams::default(), &pg)
            .await
            .with_context(|| format!("creating postgresql {name}"))?;
        Ok(())
    }

    /// The cluster's `PostgresClusterStatus` (empty before the controller wrote one).
    pub async fn cluster_status(&self, name: &str) -> Result<String> {
        let api: Api<common::crd::Postgresql> = Api::namespaced(self.client.clone(), &self.ns);
        let pg = api.get(name).await?;
        let v = serde_json::to_value(&pg.status)?;
        Ok(v["PostgresClusterStatus"]
            .as_str()
            .or_else(|| v.as_str())
            .unwrap_or_default()
            .to_string())
    }

    /// Deletes the postgresql `name` and waits (up to 5 minutes) until its pods and their
    /// members' processes are gone.
    pub async fn delete_cluster(&self, name: &str) -> Result<()> {
        let api: Api<common::crd::Postgresql> = Api::namespaced(self.client.clone(), &self.ns);
        api.delete(name, &DeleteParams::default()).await?;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let pods = self.pods(name).await?;
            let left = procs::members_of(&self.ns, Some(name)).len();
            if pods.is_empty() && left == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "cluster {name}: {} pods and {left} members still there 5 min after its deletion",
                    pods.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The pods of cluster `name`.
    pub async fn pods(&self, name: &str) -> Result<Vec<PodInfo>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        let list = api
            .list(&ListParams::default().labels(&format!("cluster-name={name}")))
            .await?;
        Ok(list
            .items
            .into_iter()
            .map(|p| PodInfo {
                name: p.metadata.name.clone().unwrap_or_default(),
                ip: p
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.clone())
                    .unwrap_or_default(),
                role: p
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("spilo-role").cloned()),
            })
            .collect())
    }

    /// The only pod labelled master, or an error saying how many there are.
    pub async fn master(&self, name: &str) -> Result<PodInfo> {
        let pods = self.pods(name).await?;
        let masters: Vec<&PodInfo> = pods
            .iter()
            .filter(|p| p.role.as_deref() == Some("master"))
            .collect();
        match masters.as_slice() {
            [m] if !m.ip.is_empty() => Ok((*m).clone()),
            other => bail!("{} pods of {name} labelled master", other.len()),
        }
    }

    /// The password of user postgres.
    pub async fn password(&self, cluster: &str) -> Result<String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        let name = format!("postgres.{cluster}.credentials.postgresql.acid.zalan.do");
        let secret = api.get(&name).await?;
        let bytes = secret
            .data
            .and_then(|d| d.get("password").cloned())
            .with_context(|| format!("secret {name} has no password"))?;
        Ok(String::from_utf8(bytes.0)?)
    }

    /// The ClusterIP of the master Service (named as the cluster).
    pub async fn master_service_ip(&self, cluster: &str) -> Result<String> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.ns);
        let svc = api.get(cluster).await?;
        svc.spec
            .and_then(|s| s.cluster_ip)
            .filter(|ip| !ip.is_empty() && ip != "None")
            .with_context(|| format!("service {cluster} has no ClusterIP yet"))
    }

    /// `ttl`, `loop_wait` and `retry_timeout` of the cluster's configuration in Patroni's DCS
    /// (the `<cluster>-config` ConfigMap's `config` annotation), as Patroni runs with them.
    pub async fn dcs_timeouts(&self, cluster: &str) -> Result<String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.ns);
        let cm = api.get(&format!("{cluster}-config")).await?;
        let text = cm
            .metadata
            .annotations
            .and_then(|a| a.get("config").cloned())
            .context("no config annotation yet")?;
        let v: Value = serde_json::from_str(&text)?;
        Ok(format!(
            "ttl {} loop_wait {} retry_timeout {}",
            v["ttl"], v["loop_wait"], v["retry_timeout"]
        ))
    }

    /// Cleans up whatever `result` is; the scenario's error comes first.
    /// `BENCH_WORLD_KEEP=1` keeps the namespace (and stops only the controller), to look at it.
    pub async fn finish(self, result: Result<()>) -> Result<()> {
        if std::env::var("BENCH_WORLD_KEEP").is_ok_and(|v| v == "1") {
            println!("  keeping namespace {} (BENCH_WORLD_KEEP=1)", self.ns);
            return result;
        }
        let cleaned = self.cleanup().await;
        result.and(cleaned)
    }

    /// Deletes the namespace and waits until it is gone and no member of it runs any more,
    /// then stops the controller.
    pub async fn cleanup(self) -> Result<()> {
        let started = Instant::now();
        remove_namespace(&self.client, &self.ns).await?;
        let deadline = Instant::now() + Duration::from_secs(300);
        while !procs::members_of(&self.ns, None).is_empty() {
            if Instant::now() > deadline {
                bail!("members of {} still run 5 min after its deletion", self.ns);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!(
            "  cleanup of {}: {:.1}s",
            self.ns,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// Deletes a namespace and waits (up to 10 minutes) until it and everything in it are gone.
async fn remove_namespace(client: &Client, ns: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(ns, &DeleteParams::default()).await;
    for _ in 0..1200 {
        if namespaces.get_opt(ns).await?.is_none() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("namespace {ns} still there 10 min after its deletion")
}
