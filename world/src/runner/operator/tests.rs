use std::path::PathBuf;

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use super::*;

fn repo_file(path: &str) -> String {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The pod template of the first Deployment in a manifest file, as a pod with an IP.
fn manifest_pod(path: &str) -> Pod {
    let text = repo_file(path);
    let deployment: Deployment = text
        .split("\n---\n")
        .filter_map(|doc| serde_yaml::from_str::<serde_json::Value>(doc).ok())
        .find(|v| v["kind"] == "Deployment")
        .and_then(|v| serde_json::from_value(v).ok())
        .expect("a Deployment");
    let template = deployment.spec.unwrap().template;
    Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: template.spec,
        status: serde_json::from_value(json!({"podIP": "127.11.0.5"})).ok(),
    }
}

fn mount(container_path: &str, host: &str) -> Mount {
    Mount {
        volume: "certs".into(),
        container_path: container_path.into(),
        host_path: host.into(),
        read_only: true,
        create_dir: false,
    }
}

const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 11, 0, 5));

#[test]
fn operator_images_match_by_repository_suffix() {
    assert_eq!(
        repository("ghcr.io/pg-operator/pg-operator-controller:0.1.0"),
        "ghcr.io/pg-operator/pg-operator-controller"
    );
    assert_eq!(
        repository("localhost:5000/pg-operator-webhook"),
        "localhost:5000/pg-operator-webhook"
    );
    assert_eq!(
        repository("x/pg-operator-webhook:1@sha256:ab"),
        "x/pg-operator-webhook"
    );
    assert_eq!(repository("busybox:1"), "busybox");
    let binary = |image: &str| row(Some(image)).map(|r| r.binary);
    assert_eq!(
        binary("ghcr.io/pg-operator/pg-operator-controller:0.1.0"),
        Some("controller")
    );
    assert_eq!(binary("pg-operator-controller"), Some("controller"));
    assert_eq!(
        binary("localhost:5000/team/pg-operator-webhook@sha256:00"),
        Some("webhook")
    );
    assert_eq!(
        binary("ghcr.io/pg-operator/pg-operator-controller-debug:1"),
        None
    );
    assert_eq!(binary("ghcr.io/pg-operator-controller/other:1"), None);
    assert!(is_runnable_image(Some("ghcr.io/zalando/spilo-17:4.0-p2")));
    assert!(!is_runnable_image(Some("busybox")));
    assert!(!is_runnable_image(None));
}

/// The kwok stages select exactly the pods [`is_runnable_image`] says the runner runs.
#[test]
fn kwok_stages_use_the_same_image_list() {
    let key = format!("- key: '{}'", kwok_selector_key());
    for file in ["pod-runner-ip.yaml", "pod-ready.yaml", "pod-delete.yaml"] {
        let text = repo_file(&format!("scripts/kwok/{file}"));
        assert!(
            text.contains(&key),
            "scripts/kwok/{file} does not select with\n{key}"
        );
    }
}

/// Runs `jq -c filter` on `input`; `None` when jq is not installed.
fn jq(filter: &str, input: &str) -> Option<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("jq")
        .args(["-c", filter])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(input.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    assert!(
        out.status.success(),
        "jq: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The selector's jq means what the Rust test means (when jq is installed; kwok runs gojq,
/// whose `test` takes the same regular expression).
#[test]
fn kwok_selector_agrees_with_the_rust_test() {
    let images = [
        "ghcr.io/zalando/spilo-17:4.0-p2",
        "ghcr.io/pg-operator/pg-operator-controller:0.1.0",
        "localhost:5000/pg-operator-webhook",
        "x/pg-operator-webhook:1@sha256:ab",
        "ghcr.io/pg-operator/pg-operator-controller-debug:1",
        "ghcr.io/pg-operator-controller/other:1",
        "busybox:1",
    ];
    for image in images {
        let pod = json!({"spec": {"containers": [{"image": "busybox"}, {"image": image}]}});
        let Some(answer) = jq(&kwok_selector_key(), &pod.to_string()) else {
            eprintln!("SKIPPED: no jq");
            return;
        };
        assert_eq!(answer == "true", is_runnable_image(Some(image)), "{image}");
    }
}

#[test]
fn the_controller_manifest_runs_on_the_pod_ip_as_its_user() {
    let pod = manifest_pod("manifests/controller/controller.yaml");
    let container = &pod.spec.as_ref().unwrap().containers[0];
    let row = row(container.image.as_deref()).expect("an operator image");
    assert_eq!(row.binary, "controller");
    assert_eq!(
        arguments(row, &[], &[], IP, &[]),
        ["--admin-listen=127.11.0.5:8081"]
    );
    let env = [(
        "CONTROLLER_ADMIN_LISTEN".to_string(),
        "0.0.0.0:9000".to_string(),
    )];
    assert!(
        arguments(row, &[], &env, IP, &[]).is_empty(),
        "set by the environment"
    );
    assert_eq!(
        readiness(container).unwrap(),
        Readiness::HttpGet {
            port: 8081,
            path: "/readyz".into()
        }
    );
    let user = run_as(&pod, container);
    assert_eq!((user.uid, user.gid), (65532, 65532));
}

#[test]
fn the_webhook_manifest_gets_its_certificate_folder_and_pod_ip() {
    let pod = manifest_pod("manifests/webhook/webhook.yaml");
    let container = &pod.spec.as_ref().unwrap().containers[0];
    let row = row(container.image.as_deref()).expect("an operator image");
    assert_eq!(row.binary, "webhook");
    let mounts = [mount("/etc/webhook/certs", "/state/pods/u/volumes/certs")];
    let args = container.args.clone().unwrap_or_default();
    assert_eq!(
        arguments(row, &args, &[], IP, &mounts),
        [
            "--listen=127.11.0.5:8443",
            "--admin-listen=127.11.0.5:8080",
            "--tls-cert=/state/pods/u/volumes/certs/tls.crt",
            "--tls-key=/state/pods/u/volumes/certs/tls.key",
        ]
    );
    // Without the volume the defaults stay the binary's own (it reports the missing files).
    assert_eq!(arguments(row, &args, &[], IP, &[]).len(), 2);
    // Values of arguments and variables are rewritten alike; other addresses stay.
    assert_eq!(
        rewrite_arg("--tls-cert=/etc/webhook/certs/x.pem", IP, &mounts),
        "--tls-cert=/state/pods/u/volumes/certs/x.pem"
    );
    assert_eq!(rewrite_value("127.0.0.1:1", IP, &mounts), "127.0.0.1:1");
    assert_eq!(rewrite_value("[::]:1", IP, &mounts), "127.11.0.5:1");
    assert_eq!(rewrite_value("/etc/other", IP, &mounts), "/etc/other");
    assert_eq!(
        readiness(container).unwrap(),
        Readiness::HttpGet {
            port: 8080,
            path: "/readyz".into()
        }
    );
}

#[test]
fn users_and_probes_come_from_the_security_context_and_ports() {
    let pod: Pod = serde_json::from_value(json!({
        "spec": {"securityContext": {"runAsUser": 1000, "fsGroup": 2000, "supplementalGroups": [3000]},
                 "containers": [{"name": "c", "securityContext": {"runAsGroup": 1001},
                                 "readinessProbe": {"httpGet": {"port": "missing"}}}]}
    }))
    .unwrap();
    let container = &pod.spec.as_ref().unwrap().containers[0];
    let user = run_as(&pod, container);
    assert_eq!((user.uid, user.gid), (1000, 1001));
    assert_eq!(user.groups, [1001, 2000, 3000]);
    let err = readiness(container).unwrap_err();
    assert_eq!(err.reason, "CreateContainerConfigError");
    let bare = Container::default();
    assert_eq!(readiness(&bare).unwrap(), Readiness::Running);
}
