//! The admission webhook on the real control plane: registered by URL with its caBundle, driven
//! with kubectl. Each test runs its own webhook process, scoped to its own namespace, configured
//! from a ConfigMap in that namespace.

use anyhow::{Context, Result, bail};
use e2e::command::{kubectl, kubectl_with_stdin};
use e2e::process::{free_port, http_get};
use e2e::{cluster::cluster, namespace::TestNamespace, paths};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A webhook process registered for one namespace; unregistered and stopped on drop.
struct Webhook {
    process: Child,
    registration: String,
    admin_port: u16,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        for kind in [
            "mutatingwebhookconfiguration",
            "validatingwebhookconfiguration",
        ] {
            let _ = Command::new(&paths::tools().kubectl)
                .arg("--kubeconfig")
                .arg(paths::kubeconfig())
                .args([
                    "delete",
                    kind,
                    &self.registration,
                    "--ignore-not-found",
                    "--wait=false",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The committed webhook configuration, pointed at `https://127.0.0.1:<port>` and limited to `ns`.
fn registration(name: &str, ns: &str, port: u16, ca_bundle: &str) -> Result<String> {
    let text = std::fs::read_to_string(
        paths::repo_root().join("manifests/webhook/webhook-configuration.yaml"),
    )?;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut value: Value =
            serde_json::to_value(<serde_yaml::Value as serde::Deserialize>::deserialize(doc)?)?;
        value["metadata"]["name"] = json!(name);
        for hook in value["webhooks"].as_array_mut().context("webhooks")? {
            let path = hook["clientConfig"]["service"]["path"]
                .as_str()
                .context("service path")?
                .to_string();
            hook["clientConfig"] =
                json!({"url": format!("https://127.0.0.1:{port}{path}"), "caBundle": ca_bundle});
            hook["namespaceSelector"]["matchExpressions"]
                .as_array_mut()
                .context("matchExpressions")?
                .push(
                    json!({"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns]}),
                );
        }
        out.push(serde_yaml::to_string(&value)?);
    }
    Ok(out.join("---\n"))
}

async fn start_webhook(
    ns: &str,
    config: &[(&str, &str)],
    controller_id: Option<&str>,
) -> Result<Webhook> {
    let data: serde_json::Map<String, Value> = config
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "postgres-operator", "namespace": ns}, "data": data});
    kubectl_with_stdin(["apply", "-f", "-"], &configmap.to_string())
        .await?
        .ok()?;

    let issued = certs::issue(&certs::Request {
        service: "webhook".into(),
        namespace: ns.into(),
        dns_names: vec![],
        ip_addresses: vec!["127.0.0.1".parse()?],
        days: 1,
    })?;
    let dir = paths::local_dir().join("e2e-webhooks").join(ns);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("tls.crt"), &issued.tls_cert)?;
    std::fs::write(dir.join("tls.key"), &issued.tls_key)?;
    let (port, admin_port) = (free_port(), free_port());
    let log = std::fs::File::create(
        paths::local_dir()
            .join("logs")
            .join(format!("webhook-{ns}.log")),
    )
    .or_else(|_| std::fs::File::create(dir.join("webhook.log")))?;
    let mut command = Command::new(e2e::process::workspace_binary("webhook")?);
    command
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin_port}"),
        ])
        .arg("--tls-cert")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("tls.key"))
        .env("KUBECONFIG", paths::kubeconfig())
        .env("CONFIG_MAP_NAME", format!("{ns}/postgres-operator"))
        .env("OPERATOR_NAMESPACE", ns)
        .env_remove("POSTGRES_OPERATOR_CONFIGURATION_OBJECT")
        .env_remove("CONTROLLER_ID")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(id) = controller_id {
        command.env("CONTROLLER_ID", id);
    }
    let process = command.spawn().context("starting the webhook")?;
    let name = format!("pgop-{ns}");
    let webhook = Webhook {
        process,
        registration: name.clone(),
        admin_port,
    };
    let started = Instant::now();
    while http_get(admin_port, "/readyz").map(|(s, _)| s) != Some(200) {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the webhook did not become ready; see .local/logs/webhook-{ns}.log");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kubectl_with_stdin(
        ["apply", "-f", "-"],
        &registration(&name, ns, port, &issued.ca_bundle())?,
    )
    .await?
    .ok()?;
    // The API server picks up new webhook configurations asynchronously: wait until a probe
    // object is actually reviewed (the mutating webhook defaults its source ranges).
    let probe = cluster_yaml("probe-webhook", 1, "");
    e2e::eventually("the webhook to review requests", || async {
        let out = dry_run(ns, &probe).await?.ok()?;
        let object: Value = serde_json::from_str(&out.stdout)?;
        if object["spec"]["allowedSourceRanges"].is_null() && controller_id.is_none() {
            bail!("not reviewed yet");
        }
        Ok(())
    })
    .await?;
    Ok(webhook)
}

/// `kubectl apply --dry-run=server -o json` of `yaml` in `ns`: what the API server (and so the
/// webhook) would store, without storing it.
async fn dry_run(ns: &str, yaml: &str) -> Result<e2e::command::CommandOutput> {
    kubectl_with_stdin(
        [
            "apply",
            "--dry-run=server",
            "-n",
            ns,
            "-o",
            "json",
            "-f",
            "-",
        ],
        yaml,
    )
    .await?
    .ok()
}

fn cluster_yaml(name: &str, instances: i32, extra: &str) -> String {
    format!(
        "apiVersion: acid.zalan.do/v1\nkind: postgresql\nmetadata:\n  name: {name}\nspec:\n  teamId: acid\n  numberOfInstances: {instances}\n  postgresql:\n    version: \"17\"\n  volume:\n    size: 1Gi\n{extra}"
    )
}

async fn get_pg(ns: &str, name: &str) -> Result<Value> {
    let out = kubectl(["get", "postgresql", name, "-n", ns, "-o", "json"])
        .await?
        .ok()?;
    Ok(serde_json::from_str(&out.stdout)?)
}

#[tokio::test]
async fn clamps_defaults_and_warns_and_dry_run_works() -> Result<()> {
    let cluster = cluster().await?;
    let ns = TestNamespace::new(&cluster, "webhook-mutate").await?;
    let _hook = start_webhook(&ns.name, &[("max_instances", "2")], None).await?;

    let applied = kubectl_with_stdin(
        ["apply", "-n", &ns.name, "-f", "-"],
        &cluster_yaml("acid-clamped", 5, ""),
    )
    .await?
    .ok()?;
    assert!(
        applied.stderr.contains(
            "Warning: spec.numberOfInstances was changed from 5 to 2 because max_instances is 2"
        ),
        "{applied}"
    );
    assert!(
        applied
            .stderr
            .contains("Warning: spec.allowedSourceRanges was not set"),
        "{applied}"
    );
    let stored = kubectl([
        "get",
        "postgresql",
        "acid-clamped",
        "-n",
        &ns.name,
        "-o",
        "yaml",
    ])
    .await?
    .ok()?;
    assert!(stored.stdout.contains("numberOfInstances: 2"), "{stored}");
    assert!(stored.stdout.contains("- 127.0.0.1/32"), "{stored}");

    let dry = dry_run(&ns.name, &cluster_yaml("acid-dry", 7, "")).await?;
    let object: Value = serde_json::from_str(&dry.stdout)?;
    assert_eq!(object["spec"]["numberOfInstances"], 2, "{dry}");
    assert!(
        dry.stderr
            .contains("Warning: spec.numberOfInstances was changed from 7 to 2"),
        "{dry}"
    );
    let absent = kubectl(["get", "postgresql", "acid-dry", "-n", &ns.name])
        .await?
        .failed()?;
    assert!(absent.stderr.contains("NotFound"), "{absent}");

    // A field the operator does not act on yet is accepted with a warning naming it, and a
    // change that will not take effect is warned about too.
    let ignored = kubectl_with_stdin(
        ["apply", "-n", &ns.name, "-f", "-"],
        &cluster_yaml("acid-ignored", 1, "  enableLogicalBackup: true\n"),
    )
    .await?
    .ok()?;
    assert!(
        ignored.stderr.contains(
            "Warning: spec.enableLogicalBackup is not implemented yet and will be ignored: "
        ),
        "{ignored}"
    );
    let resized = kubectl_with_stdin(
        ["apply", "-n", &ns.name, "-f", "-"],
        &cluster_yaml("acid-ignored", 1, "  enableLogicalBackup: true\n")
            .replace("size: 1Gi", "size: 2Gi"),
    )
    .await?
    .ok()?;
    // A larger volume now takes effect (the claims grow): no warning about it.
    assert!(
        !resized.stderr.contains("spec.volume.size was changed"),
        "{resized}"
    );
    let upgraded = kubectl_with_stdin(
        ["apply", "-n", &ns.name, "-f", "-"],
        &cluster_yaml("acid-ignored", 1, "  enableLogicalBackup: true\n")
            .replace("size: 1Gi", "size: 2Gi")
            .replace("version: \"17\"", "version: \"18\""),
    )
    .await?
    .ok()?;
    // A raised major version is upgraded in place: no warning about it either.
    assert!(
        !upgraded.stderr.contains("spec.postgresql.version"),
        "{upgraded}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_manifests_are_rejected_with_their_message() -> Result<()> {
    let cluster = cluster().await?;
    let ns = TestNamespace::new(&cluster, "webhook-validate").await?;
    let _hook = start_webhook(&ns.name, &[], None).await?;
    let cases = [
        (
            "acid-flags",
            "  users:\n    foo_user: [login, nologin]\n",
            "spec.users.foo_user: flags login and nologin contradict each other",
        ),
        (
            "acid-owner",
            "  users:\n    zalando: []\n  databases:\n    bar: nobody\n",
            "spec.databases.bar: owner \"nobody\" is not declared under spec.users",
        ),
        (
            "acid-ipv6",
            "  allowedSourceRanges: [\"2001:db8:::/32\"]\n",
            "spec.allowedSourceRanges[0]: \"2001:db8:::/32\" is not a valid address",
        ),
        (
            "acid-window",
            "  maintenanceWindows: [\"05:00-01:00\"]\n",
            "spec.maintenanceWindows[0]: \"05:00-01:00\" ends before it starts",
        ),
    ];
    for (name, extra, message) in cases {
        let out = kubectl_with_stdin(
            ["apply", "-n", &ns.name, "-f", "-"],
            &cluster_yaml(name, 1, extra),
        )
        .await?
        .failed()?;
        assert!(out.stderr.contains("denied the request"), "{name}: {out}");
        assert!(out.stderr.contains(message), "{name}: {out}");
        kubectl(["get", "postgresql", name, "-n", &ns.name])
            .await?
            .failed()?;
    }
    // A downgrade on update.
    kubectl_with_stdin(
        ["apply", "-n", &ns.name, "-f", "-"],
        &cluster_yaml("acid-versions", 1, ""),
    )
    .await?
    .ok()?;
    let lower = cluster_yaml("acid-versions", 1, "").replace("version: \"17\"", "version: \"16\"");
    let out = kubectl_with_stdin(["apply", "-n", &ns.name, "-f", "-"], &lower)
        .await?
        .failed()?;
    assert!(
        out.stderr
            .contains("cannot lower the major version from 17 to 16"),
        "{out}"
    );
    assert_eq!(
        get_pg(&ns.name, "acid-versions").await?["spec"]["postgresql"]["version"],
        "17"
    );
    Ok(())
}

/// Volumes only grow: a smaller `spec.volume.size` is refused with the field and both sizes
/// (compared by value: 2048Mi is 2Gi), a larger one passes without a "will not take effect"
/// warning (claims are grown now).
#[tokio::test]
async fn a_volume_shrink_is_refused_with_both_sizes() -> Result<()> {
    let cluster = cluster().await?;
    let ns = TestNamespace::new(&cluster, "webhook-volume").await?;
    let _hook = start_webhook(&ns.name, &[], None).await?;
    let sized = |size: &str| {
        cluster_yaml("acid-volume", 1, "").replace("size: 1Gi", &format!("size: {size}"))
    };
    kubectl_with_stdin(["apply", "-n", &ns.name, "-f", "-"], &sized("2Gi"))
        .await?
        .ok()?;
    let out = kubectl_with_stdin(["apply", "-n", &ns.name, "-f", "-"], &sized("1Gi"))
        .await?
        .failed()?;
    assert!(out.stderr.contains("denied the request"), "{out}");
    assert!(
        out.stderr
            .contains("spec.volume.size: cannot shrink the volume from 2Gi to 1Gi"),
        "{out}"
    );
    assert_eq!(
        get_pg(&ns.name, "acid-volume").await?["spec"]["volume"]["size"],
        "2Gi"
    );
    let same = kubectl_with_stdin(["apply", "-n", &ns.name, "-f", "-"], &sized("2048Mi"))
        .await?
        .ok()?;
    assert!(!same.stderr.contains("volume"), "{same}");
    let grown = kubectl_with_stdin(["apply", "-n", &ns.name, "-f", "-"], &sized("3Gi"))
        .await?
        .ok()?;
    assert!(!grown.stderr.contains("will not take effect"), "{grown}");
    Ok(())
}

#[tokio::test]
async fn delete_protection_blocks_until_annotated() -> Result<()> {
    let cluster = cluster().await?;
    let ns = TestNamespace::new(&cluster, "webhook-delete").await?;
    let config = [
        ("delete_annotation_date_key", "delete-date"),
        ("delete_annotation_name_key", "delete-clustername"),
    ];
    let _hook = start_webhook(&ns.name, &config, None).await?;
    for name in ["acid-keep-a", "acid-keep-b"] {
        kubectl_with_stdin(
            ["apply", "-n", &ns.name, "-f", "-"],
            &cluster_yaml(name, 1, ""),
        )
        .await?
        .ok()?;
    }
    let today = e2e::process::today_utc();
    let denied = kubectl([
        "delete",
        "postgresql",
        "acid-keep-a",
        "-n",
        &ns.name,
        "--wait=false",
    ])
    .await?
    .failed()?;
    assert!(
        denied.stderr.contains(&format!("kubectl annotate postgresql acid-keep-a delete-date={today} delete-clustername=acid-keep-a --overwrite")),
        "{denied}"
    );
    get_pg(&ns.name, "acid-keep-a").await?;
    // --all checks each object.
    let all = kubectl([
        "delete",
        "postgresql",
        "--all",
        "-n",
        &ns.name,
        "--wait=false",
    ])
    .await?;
    assert!(
        all.stderr.matches("deletion of postgresql").count() >= 2,
        "{all}"
    );
    get_pg(&ns.name, "acid-keep-b").await?;

    kubectl([
        "annotate",
        "postgresql",
        "acid-keep-a",
        "-n",
        &ns.name,
        &format!("delete-date={today}"),
        "delete-clustername=acid-keep-a",
    ])
    .await?
    .ok()?;
    kubectl([
        "delete",
        "postgresql",
        "acid-keep-a",
        "-n",
        &ns.name,
        "--wait=false",
    ])
    .await?
    .ok()?;
    e2e::eventually("acid-keep-a to be gone", || async {
        kubectl(["get", "postgresql", "acid-keep-a", "-n", &ns.name])
            .await?
            .failed()
            .map(|_| ())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn clusters_of_another_controller_pass_untouched() -> Result<()> {
    let cluster = cluster().await?;
    let ns = TestNamespace::new(&cluster, "webhook-owner").await?;
    let _hook = start_webhook(&ns.name, &[("max_instances", "1")], Some("first-operator")).await?;
    let foreign = cluster_yaml("acid-foreign", 3, "").replace(
        "metadata:\n  name: acid-foreign\n",
        "metadata:\n  name: acid-foreign\n  annotations:\n    acid.zalan.do/controller: second-operator\n",
    );
    let out = kubectl_with_stdin(["apply", "-n", &ns.name, "-f", "-"], &foreign)
        .await?
        .ok()?;
    assert!(!out.stderr.contains("Warning"), "{out}");
    let stored = get_pg(&ns.name, "acid-foreign").await?;
    assert_eq!(stored["spec"]["numberOfInstances"], 3);
    assert!(stored["spec"]["allowedSourceRanges"].is_null());
    Ok(())
}

#[tokio::test]
async fn configuration_changes_apply_without_restart() -> Result<()> {
    let cluster = cluster().await?;
    let ns = TestNamespace::new(&cluster, "webhook-config").await?;
    let hook = start_webhook(&ns.name, &[("max_instances", "2")], None).await?;
    let pid = hook.process.id();
    kubectl_with_stdin(
        ["apply", "-n", &ns.name, "-f", "-"],
        &cluster_yaml("acid-before", 5, ""),
    )
    .await?
    .ok()?;
    assert_eq!(
        get_pg(&ns.name, "acid-before").await?["spec"]["numberOfInstances"],
        2
    );

    kubectl([
        "patch",
        "configmap",
        "postgres-operator",
        "-n",
        &ns.name,
        "--type=merge",
        "-p",
        r#"{"data":{"max_instances":"3"}}"#,
    ])
    .await?
    .ok()?;
    e2e::eventually("the new max_instances to apply", || async {
        let out = dry_run(&ns.name, &cluster_yaml("acid-after", 5, "")).await?;
        let object: Value = serde_json::from_str(&out.stdout)?;
        match object["spec"]["numberOfInstances"].as_i64() {
            Some(3) => Ok(()),
            other => bail!("numberOfInstances is {other:?}"),
        }
    })
    .await?;
    assert_eq!(hook.process.id(), pid, "the same webhook process");
    let (status, metrics) = http_get(hook.admin_port, "/metrics").context("metrics")?;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("pg_webhook_admission_reviews_total"),
        "{metrics}"
    );
    Ok(())
}
