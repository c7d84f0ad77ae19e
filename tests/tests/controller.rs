//! The controller on the real control plane: children, status, repair, scaling, deletion,
//! ownership, least-privilege RBAC, crash recovery and leader election. Each test runs its own
//! controller process scoped to its own namespace and configured by a ConfigMap there.

use anyhow::{Context, Result, bail};
use e2e::command::{kubectl, kubectl_with_stdin};
use e2e::process::{free_port, http_get};
use e2e::{cluster::cluster, namespace::TestNamespace, paths};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Controller {
    process: Child,
    admin_port: u16,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Controller {
    /// The sum of every series of metric `name`; None when it has none.
    fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = http_get(self.admin_port, "/metrics")?;
        e2e::promtext::sum(&body, name)
    }

    fn kill9(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.process.id().to_string()])
            .status();
        let _ = self.process.wait();
    }
}

async fn write_config(ns: &str, config: &[(&str, &str)]) -> Result<()> {
    let mut data = serde_json::Map::new();
    data.insert("enable_crd_registration".into(), json!("false"));
    data.insert("resync_period".into(), json!("3s"));
    data.insert("repair_period".into(), json!("3s"));
    for (k, v) in config {
        data.insert(k.to_string(), json!(v));
    }
    // (later entries override the defaults above)
    let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "postgres-operator", "namespace": ns}, "data": data});
    kubectl_with_stdin(["apply", "-f", "-"], &configmap.to_string())
        .await?
        .ok()?;
    Ok(())
}

struct Options<'a> {
    controller_id: Option<&'a str>,
    kubeconfig: Option<PathBuf>,
    leader_election: bool,
    identity: &'a str,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            controller_id: None,
            kubeconfig: None,
            leader_election: false,
            identity: "e2e",
        }
    }
}

async fn start_controller(ns: &str, options: Options<'_>) -> Result<Controller> {
    let admin_port = free_port();
    let log_path = paths::local_dir()
        .join("logs")
        .join(format!("controller-{ns}-{}.log", options.identity));
    let log = std::fs::File::create(&log_path)?;
    let mut command = Command::new(e2e::process::workspace_binary("controller")?);
    command
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .args([
            "--leader-election",
            if options.leader_election {
                "true"
            } else {
                "false"
            },
        ])
        .args(["--lease-seconds", "6", "--identity", options.identity])
        .env(
            "KUBECONFIG",
            options.kubeconfig.unwrap_or_else(paths::kubeconfig),
        )
        .env("CONFIG_MAP_NAME", format!("{ns}/postgres-operator"))
        .env("OPERATOR_NAMESPACE", ns)
        .env("WATCHED_NAMESPACE", ns)
        .env("RUST_LOG", "info,kube=warn")
        .env_remove("POSTGRES_OPERATOR_CONFIGURATION_OBJECT")
        .env_remove("CONTROLLER_ID")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(id) = options.controller_id {
        command.env("CONTROLLER_ID", id);
    }
    let controller = Controller {
        process: command.spawn().context("starting the controller")?,
        admin_port,
    };
    let started = Instant::now();
    while http_get(admin_port, "/readyz").map(|(s, _)| s) != Some(200) {
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "the controller did not become ready; see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(controller)
}

/// Waits for `check` to pass, failing unless it does within 10 s: a repair goes through the
/// watch, not the next resync.
async fn repaired_within_10s<F, Fut>(what: &str, check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let started = Instant::now();
    e2e::eventually(what, check).await?;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{what}: repair took {:?}",
        started.elapsed()
    );
    Ok(())
}

async fn setup(
    prefix: &str,
    config: &[(&str, &str)],
) -> Result<(e2e::cluster::Cluster, TestNamespace)> {
    let cluster = cluster().await?;
    e2e::crds::install_crds(&cluster.client).await?;
    let ns = TestNamespace::new(&cluster, prefix).await?;
    write_config(&ns.name, config).await?;
    Ok((cluster, ns))
}

fn minimal(name: &str, instances: i32) -> String {
    format!(
        "apiVersion: acid.zalan.do/v1\nkind: postgresql\nmetadata:\n  name: {name}\nspec:\n  teamId: acid\n  numberOfInstances: {instances}\n  postgresql:\n    version: \"17\"\n  volume:\n    size: 1Gi\n  users:\n    zalando: [superuser, createdb]\n    foo_user: []\n  databases:\n    foo: zalando\n"
    )
}

/// `kubectl apply` of `yaml` in namespace `ns`, which must succeed.
async fn apply(ns: &str, yaml: &str) -> Result<()> {
    kubectl_with_stdin(["apply", "-n", ns, "-f", "-"], yaml)
        .await?
        .ok()?;
    Ok(())
}

async fn get(kind: &str, ns: &str, name: &str) -> Result<Value> {
    let out = kubectl(["get", kind, name, "-n", ns, "-o", "json"])
        .await?
        .ok()?;
    Ok(serde_json::from_str(&out.stdout)?)
}

/// Waits for the status; Running needs Patroni to elect a leader on the pod runner's real
/// members, which takes as long as initdb on a loaded machine.
async fn wait_status(ns: &str, name: &str, want: &str) -> Result<Value> {
    e2e::eventually::eventually_with(
        &format!("postgresql {name} to be {want}"),
        e2e::patroni::TIMEOUT,
        std::time::Duration::from_millis(250),
        || async {
            let pg = get("postgresql", ns, name).await?;
            match pg["status"]["PostgresClusterStatus"].as_str() {
                Some(s) if s == want => Ok(pg),
                other => bail!("status is {other:?}"),
            }
        },
    )
    .await
}

#[tokio::test]
async fn minimal_cluster_gets_its_children_and_becomes_running() -> Result<()> {
    let (_cluster, ns) = setup("ctl-minimal", &[]).await?;
    let controller = start_controller(&ns.name, Options::default()).await?;
    let n = ns.name.as_str();
    kubectl_with_stdin(
        ["apply", "-n", n, "-f", "-"],
        &minimal("acid-minimal-cluster", 2),
    )
    .await?
    .ok()?;
    wait_status(n, "acid-minimal-cluster", "Running").await?;
    // Ready once its users and databases exist inside PostgreSQL (the database side ran).
    let pg = e2e::eventually::eventually_with(
        "acid-minimal-cluster Ready",
        e2e::patroni::TIMEOUT,
        std::time::Duration::from_millis(500),
        || async {
            let pg = get("postgresql", n, "acid-minimal-cluster").await?;
            let ready = e2e::status::condition(&pg, "Ready");
            if ready["status"] != "True" {
                bail!("Ready is {ready}");
            }
            Ok(pg)
        },
    )
    .await?;
    assert_eq!(
        pg["status"]["observedGeneration"],
        pg["metadata"]["generation"]
    );
    let conditions = pg["status"]["conditions"]
        .as_array()
        .context("conditions")?;
    let ready = conditions
        .iter()
        .find(|c| c["type"] == "Ready")
        .context("Ready condition")?;
    assert_eq!(ready["reason"], "PodsReady", "{conditions:?}");
    let message = ready["message"].as_str().unwrap_or_default();
    // Running means Patroni has a leader, not only ready pods (the pod runner runs Patroni).
    assert!(
        message.ends_with("all pods are ready and acid-minimal-cluster-0 is Patroni's leader")
            || message
                .ends_with("all pods are ready and acid-minimal-cluster-1 is Patroni's leader"),
        "{message}"
    );
    let listed = kubectl(["get", "postgresql", "acid-minimal-cluster", "-n", n])
        .await?
        .ok()?;
    let header: Vec<&str> = listed
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header.last(), Some(&"READY"), "{}", listed.stdout);
    let row: Vec<&str> = listed
        .stdout
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[row.len().saturating_sub(2)..],
        ["Running", "PodsReady"],
        "{}",
        listed.stdout
    );

    let sts = get("statefulset", n, "acid-minimal-cluster").await?;
    assert_eq!(sts["spec"]["replicas"], 2);
    assert_eq!(sts["spec"]["updateStrategy"]["type"], "OnDelete");
    assert_eq!(sts["metadata"]["labels"]["application"], "spilo");
    assert_eq!(
        sts["metadata"]["labels"]["cluster-name"],
        "acid-minimal-cluster"
    );
    assert_eq!(sts["metadata"]["labels"]["team"], "acid");
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["name"],
        "postgres"
    );
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "pgdata"
    );
    for service in ["acid-minimal-cluster", "acid-minimal-cluster-repl"] {
        get("service", n, service).await?;
    }
    for secret in ["postgres", "standby", "zalando", "foo-user"] {
        let s = get(
            "secret",
            n,
            &format!("{secret}.acid-minimal-cluster.credentials.postgresql.acid.zalan.do"),
        )
        .await?;
        assert!(s["data"]["password"].is_string(), "{secret}");
    }
    get(
        "poddisruptionbudget",
        n,
        "postgres-acid-minimal-cluster-pdb",
    )
    .await?;
    get(
        "poddisruptionbudget",
        n,
        "postgres-acid-minimal-cluster-critical-op-pdb",
    )
    .await?;
    get("serviceaccount", n, "postgres-pod").await?;
    get("rolebinding", n, "postgres-pod").await?;
    let events = kubectl([
        "get",
        "events",
        "-n",
        n,
        "--field-selector",
        "involvedObject.name=acid-minimal-cluster",
        "-o",
        "json",
    ])
    .await?
    .ok()?;
    // One Event per reconcile names every child it created.
    for child in [
        "StatefulSet acid-minimal-cluster",
        "Service acid-minimal-cluster",
        "Service acid-minimal-cluster-repl",
        "Secret postgres.acid-minimal-cluster.credentials.postgresql.acid.zalan.do",
        "PodDisruptionBudget postgres-acid-minimal-cluster-pdb",
    ] {
        assert!(events.stdout.contains(child), "{child}: {events}");
    }
    assert!(
        events.stdout.contains("\"reason\": \"Created\""),
        "{events}"
    );
    // The database side said what it did, and nothing is ignored.
    assert!(
        events.stdout.contains("\"reason\": \"DatabaseSynced\""),
        "{events}"
    );
    assert!(!events.stdout.contains("UnsupportedField"), "{events}");

    // Writes are counted by resource: one StatefulSet, two Services, four Secrets so far.
    for (resource, at_least) in [("statefulsets", 1.0), ("services", 2.0), ("secrets", 4.0)] {
        let series = format!("pg_controller_api_writes_total{{resource=\"{resource}\"}}");
        let written = controller.metric(&series).unwrap_or(0.0);
        assert!(written >= at_least, "{series} is {written}");
    }

    // An unchanged cluster costs no writes on resync (resync_period is 3s here).
    let before = controller
        .metric("pg_controller_api_writes_total")
        .context("writes metric")?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = controller
        .metric("pg_controller_api_writes_total")
        .context("writes metric")?;
    assert_eq!(
        before, after,
        "a sync of an unchanged cluster must make no API writes"
    );
    assert!(
        controller
            .metric("pg_controller_reconciles_total")
            .unwrap_or(0.0)
            >= 3.0
    );

    // Without the fields it cannot act on yet, the cluster is Ready.
    kubectl([
        "patch",
        "postgresql",
        "acid-minimal-cluster",
        "-n",
        n,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/users"},{"op":"remove","path":"/spec/databases"}]"#,
    ])
    .await?
    .ok()?;
    e2e::eventually("the cluster to become Ready", || async {
        let pg = get("postgresql", n, "acid-minimal-cluster").await?;
        let ready = pg["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
            .context("Ready condition")?;
        anyhow::ensure!(
            ready["status"] == "True" && ready["reason"] == "PodsReady",
            "{ready}"
        );
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn scaling_and_repair() -> Result<()> {
    let (_cluster, ns) = setup("ctl-scale", &[]).await?;
    let _controller = start_controller(&ns.name, Options::default()).await?;
    let n = ns.name.as_str();
    apply(n, &minimal("acid-scale", 2)).await?;
    wait_status(n, "acid-scale", "Running").await?;
    for replicas in [3, 2] {
        kubectl_with_stdin(
            ["apply", "-n", n, "-f", "-"],
            &minimal("acid-scale", replicas),
        )
        .await?
        .ok()?;
        e2e::eventually(
            &format!("the StatefulSet to have {replicas} replicas"),
            || async {
                let sts = get("statefulset", n, "acid-scale").await?;
                if sts["spec"]["replicas"] == replicas {
                    Ok(())
                } else {
                    bail!("replicas {}", sts["spec"]["replicas"])
                }
            },
        )
        .await?;
        wait_status(n, "acid-scale", "Running").await?;
    }
    // A deleted child comes back through the watch, not at the next period.
    kubectl(["delete", "service", "acid-scale-repl", "-n", n])
        .await?
        .ok()?;
    repaired_within_10s("the replica service to come back", || async {
        get("service", n, "acid-scale-repl").await.map(|_| ())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn invalid_manifests_are_reported_not_built() -> Result<()> {
    let (_cluster, ns) = setup("ctl-invalid", &[]).await?;
    let _controller = start_controller(&ns.name, Options::default()).await?;
    let n = ns.name.as_str();
    let bad = minimal("acid-invalid", 1).replace("    foo: zalando\n", "    foo: nobody\n");
    apply(n, &bad).await?;
    let pg = wait_status(n, "acid-invalid", "Invalid").await?;
    let message = pg["status"]["conditions"][1]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("spec.databases.foo: owner \"nobody\" is not declared"),
        "{message}"
    );
    kubectl(["get", "statefulset", "acid-invalid", "-n", n])
        .await?
        .failed()?;
    Ok(())
}

#[tokio::test]
async fn deletion_respects_protection() -> Result<()> {
    let config = [
        ("delete_annotation_date_key", "delete-date"),
        ("delete_annotation_name_key", "delete-clustername"),
    ];
    let (_cluster, ns) = setup("ctl-delete", &config).await?;
    let _controller = start_controller(&ns.name, Options::default()).await?;
    let n = ns.name.as_str();
    for name in ["acid-protected", "acid-annotated"] {
        apply(n, &minimal(name, 1)).await?;
        wait_status(n, name, "Running").await?;
    }
    // Without the webhook the delete goes through; the controller keeps the children.
    kubectl(["delete", "postgresql", "acid-protected", "-n", n])
        .await?
        .ok()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    get("statefulset", n, "acid-protected").await?;
    get("service", n, "acid-protected").await?;

    let today = e2e::process::today_utc();
    kubectl([
        "annotate",
        "postgresql",
        "acid-annotated",
        "-n",
        n,
        &format!("delete-date={today}"),
        "delete-clustername=acid-annotated",
    ])
    .await?
    .ok()?;
    kubectl(["delete", "postgresql", "acid-annotated", "-n", n])
        .await?
        .ok()?;
    e2e::eventually("the children of acid-annotated to be deleted", || async {
        for (kind, name) in [
            ("statefulset", "acid-annotated"),
            ("service", "acid-annotated"),
            ("service", "acid-annotated-repl"),
            ("poddisruptionbudget", "postgres-acid-annotated-pdb"),
        ] {
            if kubectl(["get", kind, name, "-n", n]).await?.success() {
                bail!("{kind} {name} still exists");
            }
        }
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn another_controller_id_is_left_alone() -> Result<()> {
    let (_cluster, ns) = setup("ctl-owner", &[]).await?;
    let _controller = start_controller(
        &ns.name,
        Options {
            controller_id: Some("first"),
            ..Default::default()
        },
    )
    .await?;
    let n = ns.name.as_str();
    let foreign = minimal("acid-foreign", 1).replace(
        "metadata:\n  name: acid-foreign\n",
        "metadata:\n  name: acid-foreign\n  annotations:\n    acid.zalan.do/controller: second\n",
    );
    let mine = minimal("acid-mine", 1).replace(
        "metadata:\n  name: acid-mine\n",
        "metadata:\n  name: acid-mine\n  annotations:\n    acid.zalan.do/controller: first\n",
    );
    apply(n, &foreign).await?;
    apply(n, &mine).await?;
    wait_status(n, "acid-mine", "Running").await?;
    kubectl(["get", "statefulset", "acid-foreign", "-n", n])
        .await?
        .failed()?;
    assert!(get("postgresql", n, "acid-foreign").await?["status"].is_null());
    Ok(())
}

/// A kubeconfig that authenticates as the controller's ServiceAccount from manifests/.
async fn service_account_kubeconfig(ns: &str) -> Result<PathBuf> {
    let rbac = std::fs::read_to_string(paths::repo_root().join("manifests/controller/rbac.yaml"))?;
    kubectl(["create", "namespace", "postgres-operator"]).await?;
    kubectl_with_stdin(["apply", "-f", "-"], &rbac)
        .await?
        .ok()?;
    let token = kubectl([
        "create",
        "token",
        "postgres-operator",
        "-n",
        "postgres-operator",
        "--duration=2h",
    ])
    .await?
    .ok()?
    .stdout
    .trim()
    .to_string();
    let admin: Value = serde_yaml::from_str(&std::fs::read_to_string(paths::kubeconfig())?)?;
    let cluster = admin["clusters"][0]["cluster"].clone();
    let config = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": "sa", "namespace": ns}}],
    });
    let path = paths::local_dir().join(format!("kubeconfig-sa-{ns}"));
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;
    Ok(path)
}

#[tokio::test]
async fn runs_under_its_least_privileged_service_account_and_survives_kill_9() -> Result<()> {
    let (_cluster, ns) = setup("ctl-rbac", &[]).await?;
    let kubeconfig = service_account_kubeconfig(&ns.name).await?;
    let n = ns.name.as_str();
    let mut controller = start_controller(
        n,
        Options {
            kubeconfig: Some(kubeconfig.clone()),
            ..Default::default()
        },
    )
    .await?;
    apply(n, &minimal("acid-rbac", 2)).await?;
    // Kill the controller in the middle of its work, then start it again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    controller.kill9();
    let _again = start_controller(
        n,
        Options {
            kubeconfig: Some(kubeconfig),
            identity: "again",
            ..Default::default()
        },
    )
    .await?;
    wait_status(n, "acid-rbac", "Running").await?;
    let secrets = kubectl([
        "get",
        "secrets",
        "-n",
        n,
        "-l",
        "cluster-name=acid-rbac",
        "-o",
        "name",
    ])
    .await?
    .ok()?;
    assert_eq!(
        secrets.stdout.lines().count(),
        4,
        "one secret per user, no duplicates: {secrets}"
    );
    let sts = kubectl(["get", "statefulsets", "-n", n, "-o", "name"])
        .await?
        .ok()?;
    assert_eq!(sts.stdout.lines().count(), 1, "{sts}");
    Ok(())
}

#[tokio::test]
async fn two_replicas_never_act_at_once_and_fail_over() -> Result<()> {
    let (_cluster, ns) = setup("ctl-leader", &[]).await?;
    let n = ns.name.as_str();
    let first = start_controller(
        n,
        Options {
            leader_election: true,
            identity: "first",
            ..Default::default()
        },
    )
    .await?;
    let second = start_controller(
        n,
        Options {
            leader_election: true,
            identity: "second",
            ..Default::default()
        },
    )
    .await?;
    apply(n, &minimal("acid-leader", 1)).await?;
    wait_status(n, "acid-leader", "Running").await?;
    let writes = |c: &Controller| c.metric("pg_controller_api_writes_total").unwrap_or(0.0);
    assert!(
        writes(&first) == 0.0 || writes(&second) == 0.0,
        "only the leader writes: {} and {}",
        writes(&first),
        writes(&second)
    );
    let lease = get("lease", n, "postgres-operator-leader").await?;
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(holder == "first" || holder == "second", "{lease}");
    // Kill whichever replica leads; the other must take over within 15 s.
    let (mut leader, survivor) = if holder == "first" {
        (first, "second")
    } else {
        (second, "first")
    };
    leader.kill9();
    let started = Instant::now();
    e2e::eventually("the other replica to take over", || async {
        let lease = get("lease", n, "postgres-operator-leader").await?;
        if lease["spec"]["holderIdentity"] == survivor {
            Ok(())
        } else {
            bail!("holder {}", lease["spec"]["holderIdentity"])
        }
    })
    .await?;
    assert!(
        started.elapsed() <= Duration::from_secs(15),
        "failover took {:?}",
        started.elapsed()
    );
    // The new leader acts: a change is reconciled.
    apply(n, &minimal("acid-leader", 2)).await?;
    e2e::eventually("the new leader to scale", || async {
        let sts = get("statefulset", n, "acid-leader").await?;
        if sts["spec"]["replicas"] == 2 {
            Ok(())
        } else {
            bail!("replicas {}", sts["spec"]["replicas"])
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn complete_manifest_with_owner_references_cascades() -> Result<()> {
    let (_cluster, ns) = setup("ctl-owners", &[("enable_owner_references", "true")]).await?;
    let _controller = start_controller(&ns.name, Options::default()).await?;
    let n = ns.name.as_str();
    let text = std::fs::read_to_string(
        paths::repo_root().join("manifests/complete-postgres-manifest.yaml"),
    )?;
    let mut complete: Value = serde_yaml::from_str(&text)?;
    let object = complete.as_object_mut().context("object")?;
    object.remove("status");
    let spec = complete["spec"].as_object_mut().context("spec")?;
    // A clone source and a standby source would point at clusters that do not exist here.
    spec.remove("clone");
    spec.remove("standby");
    spec.insert("numberOfInstances".into(), json!(1));
    apply(n, &complete.to_string()).await?;
    // Its pods cannot start here (it names a node type, storage class and priority class this
    // control plane lacks), so wait for the children rather than for Running.
    let pg = e2e::eventually("acid-test-cluster to be reconciled", || async {
        let pg = get("postgresql", n, "acid-test-cluster").await?;
        let reconciled = pg["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Reconciled" && c["status"] == "True")
        });
        if reconciled {
            Ok(pg)
        } else {
            bail!("status {}", pg["status"])
        }
    })
    .await?;
    assert_eq!(
        pg["status"]["PostgresClusterStatus"], "Creating",
        "not Running while the pods are not ready"
    );
    // What it asks for that the operator does not do yet is in Ready and one Warning Event.
    let ready = e2e::status::condition(&pg, "Ready");
    assert_eq!(ready["reason"], "UnsupportedField", "{ready}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("spec.tls ("),
        "{ready}"
    );
    let events = e2e::eventually("the UnsupportedField Warning", || async {
        let out = kubectl([
            "get",
            "events",
            "-n",
            n,
            "--field-selector",
            "reason=UnsupportedField",
            "-o",
            "json",
        ])
        .await?
        .ok()?;
        let events: Value = serde_json::from_str(&out.stdout)?;
        let items = events["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            bail!("no UnsupportedField Event yet");
        }
        Ok(items)
    })
    .await?;
    assert_eq!(events.len(), 1, "one Warning per change: {events:?}");
    assert_eq!(events[0]["type"], "Warning");
    let uid = pg["metadata"]["uid"].as_str().context("uid")?.to_string();
    let owned = |object: &Value| {
        object["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| {
                refs.iter()
                    .any(|r| r["uid"] == uid.as_str() && r["kind"] == "postgresql")
            })
    };
    for (kind, name) in [
        ("statefulset", "acid-test-cluster"),
        ("service", "acid-test-cluster"),
        ("service", "acid-test-cluster-repl"),
        ("poddisruptionbudget", "postgres-acid-test-cluster-pdb"),
        (
            "secret",
            "postgres.acid-test-cluster.credentials.postgresql.acid.zalan.do",
        ),
        (
            "secret",
            "foo-user.acid-test-cluster.credentials.postgresql.acid.zalan.do",
        ),
    ] {
        let child = get(kind, n, name).await?;
        assert!(
            owned(&child),
            "{kind} {name} has no owner reference to the postgresql"
        );
        assert_eq!(
            child["metadata"]["labels"]["cluster-name"], "acid-test-cluster",
            "{kind} {name}"
        );
    }
    let sts = get("statefulset", n, "acid-test-cluster").await?;
    let containers = sts["spec"]["template"]["spec"]["containers"]
        .as_array()
        .context("containers")?;
    assert!(
        containers.iter().any(|c| c["name"] == "metrics-exporter"),
        "the sidecar is in the pod"
    );
    // Every user that can log in has a secret.
    get(
        "secret",
        n,
        "flow-user.acid-test-cluster.credentials.postgresql.acid.zalan.do",
    )
    .await?;
    // With owner references the garbage collector removes the children.
    kubectl(["delete", "postgresql", "acid-test-cluster", "-n", n])
        .await?
        .ok()?;
    e2e::eventually(
        "the garbage collector to remove the StatefulSet",
        || async {
            if kubectl(["get", "statefulset", "acid-test-cluster", "-n", n])
                .await?
                .success()
            {
                bail!("still there")
            } else {
                Ok(())
            }
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn finalizers_clean_up_before_the_object_disappears() -> Result<()> {
    let (_cluster, ns) = setup(
        "ctl-finalizer",
        &[
            ("enable_finalizers", "true"),
            ("enable_secrets_deletion", "false"),
        ],
    )
    .await?;
    let _controller = start_controller(&ns.name, Options::default()).await?;
    let n = ns.name.as_str();
    apply(n, &minimal("acid-final", 1)).await?;
    let pg = wait_status(n, "acid-final", "Running").await?;
    assert_eq!(
        pg["metadata"]["finalizers"],
        json!(["postgres-operator.acid.zalan.do"])
    );
    kubectl([
        "delete",
        "postgresql",
        "acid-final",
        "-n",
        n,
        "--wait=true",
        "--timeout=60s",
    ])
    .await?
    .ok()?;
    kubectl(["get", "statefulset", "acid-final", "-n", n])
        .await?
        .failed()?;
    kubectl(["get", "service", "acid-final-repl", "-n", n])
        .await?
        .failed()?;
    // enable_secrets_deletion: false keeps the credentials.
    get(
        "secret",
        n,
        "postgres.acid-final.credentials.postgresql.acid.zalan.do",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_hand_edited_statefulset_is_put_back() -> Result<()> {
    let (_cluster, ns) = setup("ctl-edit", &[]).await?;
    let _controller = start_controller(&ns.name, Options::default()).await?;
    let n = ns.name.as_str();
    apply(n, &minimal("acid-edit", 2)).await?;
    wait_status(n, "acid-edit", "Running").await?;
    kubectl(["scale", "statefulset", "acid-edit", "-n", n, "--replicas=5"])
        .await?
        .ok()?;
    repaired_within_10s("the StatefulSet to be put back to 2 replicas", || async {
        let sts = get("statefulset", n, "acid-edit").await?;
        if sts["spec"]["replicas"] == 2 {
            Ok(())
        } else {
            bail!("replicas {}", sts["spec"]["replicas"])
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn registers_the_crd_with_its_categories() -> Result<()> {
    let (_cluster, ns) = setup("ctl-crd", &[]).await?;
    // This test alone lets the controller register the CRD, with an extra category.
    write_config(
        &ns.name,
        &[
            ("enable_crd_registration", "true"),
            ("crd_categories", "all,pgop-e2e"),
        ],
    )
    .await?;
    let _controller = start_controller(&ns.name, Options::default()).await?;
    let crd = get(
        "customresourcedefinition",
        "default",
        "postgresqls.acid.zalan.do",
    )
    .await?;
    assert_eq!(
        crd["spec"]["names"]["categories"],
        json!(["all", "pgop-e2e"])
    );
    assert!(crd["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    }));
    // Put the committed CRD back for the other tests.
    let committed = std::fs::read_to_string(paths::repo_root().join("crds/postgresql.yaml"))?;
    kubectl_with_stdin(
        ["apply", "--server-side", "--force-conflicts", "-f", "-"],
        &committed,
    )
    .await?
    .ok()?;
    Ok(())
}

/// The StatefulSet's cache keeps no pod template: a change is told by the hash it was applied
/// with and by who wrote it since (managedFields). This checks both ways that can go wrong:
/// a foreign edit missed, or a foreign write the controller keeps answering.
#[tokio::test]
async fn foreign_edits_are_put_back_and_a_restart_writes_nothing() -> Result<()> {
    let (_cluster, ns) = setup("ctl-drift", &[]).await?;
    let controller = start_controller(&ns.name, Options::default()).await?;
    let n = ns.name.as_str();
    apply(n, &minimal("acid-drift", 1)).await?;
    wait_status(n, "acid-drift", "Running").await?;
    let image = get("statefulset", n, "acid-drift").await?["spec"]["template"]["spec"]
        ["containers"][0]["image"]
        .clone();

    // An edit of the pod template is put back through the watch.
    let patch = r#"{"spec":{"template":{"spec":{"containers":[{"name":"postgres","image":"example.invalid/other:1"}]}}}}"#;
    kubectl(["patch", "statefulset", "acid-drift", "-n", n, "-p", patch])
        .await?
        .ok()?;
    repaired_within_10s("the image to be put back", || async {
        let sts = get("statefulset", n, "acid-drift").await?;
        let now = &sts["spec"]["template"]["spec"]["containers"][0]["image"];
        if *now == image {
            Ok(())
        } else {
            bail!("image {now}")
        }
    })
    .await?;

    // A foreign annotation (a field the controller does not own) costs at most one write, and
    // none on the resyncs after it (resync_period is 3s here); the annotation is left alone.
    kubectl([
        "annotate",
        "statefulset",
        "acid-drift",
        "-n",
        n,
        "example.com/note=kept",
    ])
    .await?
    .ok()?;
    // (Status writes may still follow the image repair above, so the StatefulSet's own
    // applied-at annotation, which every apply of it changes, is what is watched.)
    // (A foreign write in the same second as the controller's last apply is answered at the
    // next resync at the latest; resync_period is 3s.)
    tokio::time::sleep(Duration::from_secs(7)).await;
    let applied_at = || async {
        let sts = get("statefulset", n, "acid-drift").await?;
        anyhow::Ok(sts["metadata"]["annotations"].clone())
    };
    let before = applied_at().await?["postgres-operator.acid.zalan.do/applied-at"].clone();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = applied_at().await?;
    assert_eq!(
        after["postgres-operator.acid.zalan.do/applied-at"], before,
        "resyncs after a foreign write must not apply the StatefulSet again"
    );
    assert_eq!(after["example.com/note"], "kept");
    drop(controller);
    // Let the status settle before the restart is measured.
    wait_status(n, "acid-drift", "Running").await?;

    // A restarted controller finds everything in place and writes nothing.
    let again = start_controller(
        n,
        Options {
            identity: "again",
            ..Default::default()
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        again
            .metric("pg_controller_reconciles_total")
            .unwrap_or(0.0)
            >= 2.0,
        "the restarted controller resyncs"
    );
    assert_eq!(
        again.metric("pg_controller_api_writes_total"),
        Some(0.0),
        "writes after a restart with nothing changed"
    );
    Ok(())
}

/// Many clusters at once, resynced every second while their pods come up: each child is
/// written once, when it is created, and never again; only the statuses change. Every member is
/// a real Patroni + PostgreSQL, so the count is what 2 cores bootstrap in a few minutes next to
/// the other tests; the database side (a catalog read per sync) is off here and tested in
/// `database.rs`.
#[tokio::test]
async fn many_clusters_going_running_write_each_child_once() -> Result<()> {
    const CLUSTERS: usize = 12;
    /// StatefulSet, 2 Services, 2 PDBs and 4 Secrets per minimal cluster.
    const CHILDREN: usize = 9;
    let (_cluster, ns) = setup(
        "ctl-many",
        &[("resync_period", "1s"), ("enable_database_access", "false")],
    )
    .await?;
    let controller = start_controller(&ns.name, Options::default()).await?;
    let n = ns.name.as_str();
    let manifests: Vec<String> = (0..CLUSTERS)
        .map(|i| minimal(&format!("many-{i}"), 1))
        .collect();
    apply(n, &manifests.join("---\n")).await?;
    e2e::eventually_with(
        "every cluster Running",
        Duration::from_secs(180),
        Duration::from_secs(1),
        || async {
            let out = kubectl(["get", "postgresql", "-n", n, "-o", "json"])
                .await?
                .ok()?;
            let list: Value = serde_json::from_str(&out.stdout)?;
            let running = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|pg| pg["status"]["PostgresClusterStatus"] == "Running")
                .count();
            ensure_count(running, CLUSTERS)
        },
    )
    .await?;
    // Several resyncs of every cluster, all Running now.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let all = controller
        .metric("pg_controller_api_writes_total")
        .context("writes metric")?;
    let statuses = controller
        .metric("pg_controller_api_writes_total{resource=\"postgresqls/status\"}")
        .context("status writes metric")?;
    // The pod ServiceAccount and RoleBinding are written once for the namespace.
    assert_eq!(
        (all - statuses) as usize,
        CLUSTERS * CHILDREN + 2,
        "child writes beyond their creation"
    );
    assert!(
        controller
            .metric("pg_controller_reconciles_total")
            .unwrap_or(0.0)
            >= (CLUSTERS * 4) as f64,
        "every cluster resynced"
    );
    Ok(())
}

fn ensure_count(have: usize, want: usize) -> Result<()> {
    if have == want {
        Ok(())
    } else {
        bail!("{have} of {want}")
    }
}
