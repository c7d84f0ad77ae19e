//! `kubectl logs` and `kubectl exec` for the runner's containers, through kwok's kubelet server.
//!
//! The API server sends a pod's log and exec requests to its node's kubelet endpoint, which is
//! kwok's server for the kwok nodes (`scripts/up.sh`). kwok answers them from two of its
//! objects named like the pod: a `Logs` (`kwok.x-k8s.io/v1alpha1`) names each container's log
//! file and the previous run's, an `Exec` how to run a command locally for a container (working
//! directory, environment, user). The runner writes both for every pod it runs, owned by the pod
//! (the garbage collector removes them with it even when the runner is gone), and deletes them
//! itself when it finishes a pod.
//!
//! Facts about kwok that shape this:
//! - it reads logs with the kubelet's reader, so the files are the CRI copies of
//!   [`super::cri_log`], not the supervisor's plain ones;
//! - it resolves an exec command in its own `PATH` before applying the `Exec`'s environment
//!   (which goes on top of kwok's own), so kwok runs with a `PATH` that starts with a folder of
//!   shims ([`write_exec_shims`]) that re-run the command from the pod's `PATH`: `kubectl exec
//!   POD -- psql` then runs the pod's major's `psql`, as in Spilo;
//! - it carries literal values only: secret-sourced variables of the container end up in the
//!   `Exec` object in clear, readable by whoever may read that group in this local test API.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};

pub const GROUP: &str = "kwok.x-k8s.io";
pub const VERSION: &str = "v1alpha1";
const MANAGER: &str = "pod-runner";

/// How a command runs "in" a container: the container's environment, folder and user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTarget {
    pub work_dir: PathBuf,
    pub env: Vec<(String, String)>,
    pub uid: u32,
    pub gid: u32,
}

/// What kwok serves for one container the runner runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerIo {
    pub name: String,
    /// The CRI log of the current (or last) run and of the one before.
    pub log: PathBuf,
    pub previous_log: PathBuf,
    pub exec: Option<ExecTarget>,
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn logs_resource() -> ApiResource {
    resource("Logs", "logs")
}

fn exec_resource() -> ApiResource {
    resource("Exec", "execs")
}

/// Metadata of an object kwok finds by the pod's name and namespace, owned by the pod.
fn metadata(pod: &Pod) -> Value {
    json!({
        "name": pod.metadata.name,
        "namespace": pod.metadata.namespace,
        "labels": {"app.kubernetes.io/managed-by": MANAGER},
        "ownerReferences": [{
            "apiVersion": "v1",
            "kind": "Pod",
            "name": pod.metadata.name,
            "uid": pod.metadata.uid,
        }],
    })
}

/// The pod's `Logs`: each container to its log files (`None` without containers).
pub fn logs_object(pod: &Pod, containers: &[ContainerIo]) -> Option<Value> {
    if containers.is_empty() {
        return None;
    }
    let logs: Vec<Value> = containers
        .iter()
        .map(|c| {
            json!({
                "containers": [c.name],
                "logsFile": c.log.display().to_string(),
                "previousLogsFile": c.previous_log.display().to_string(),
            })
        })
        .collect();
    Some(json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "Logs",
        "metadata": metadata(pod),
        "spec": {"logs": logs},
    }))
}

/// The pod's `Exec`: each container with a target to a local exec as its user, in its folder,
/// with its environment (`None` when no container has a target).
pub fn exec_object(pod: &Pod, containers: &[ContainerIo]) -> Option<Value> {
    let execs: Vec<Value> = containers
        .iter()
        .filter_map(|c| {
            let target = c.exec.as_ref()?;
            let envs: Vec<Value> = target
                .env
                .iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect();
            Some(json!({
                "containers": [c.name],
                "local": {
                    "workDir": target.work_dir.display().to_string(),
                    "envs": envs,
                    "securityContext": {"runAsUser": target.uid, "runAsGroup": target.gid},
                },
            }))
        })
        .collect();
    if execs.is_empty() {
        return None;
    }
    Some(json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": "Exec",
        "metadata": metadata(pod),
        "spec": {"execs": execs},
    }))
}

/// The container's variables in their order, each of `overrides` replacing the variable of
/// its name in place or added at the end (a variable named twice keeps its last value).
pub fn exec_env(
    container: &[(String, String)],
    overrides: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in container.iter().chain(overrides) {
        match out.iter_mut().find(|(n, _)| n == name) {
            Some(existing) => existing.1 = value.clone(),
            None => out.push((name.clone(), value.clone())),
        }
    }
    out
}

/// The shim every name in the exec folder links to: it runs its own name from `PATH` without
/// the folder itself (kwok found it there; the pod's `PATH` is in the environment).
const SHIM: &str = r#"#!/bin/sh
# Written by the pod runner (world/src/runner/kubelet_io.rs): kwok looks an exec command up in
# its own PATH, which starts with this folder; run the name from the pod's PATH instead.
set -f
name=${0##*/}
here=${0%/*}
rest=
IFS=:
for d in $PATH; do
  [ "$d" = "$here" ] || rest=${rest:+$rest:}$d
done
unset IFS
PATH=$rest
export PATH
exec "$name" "$@"
"#;

const SHIM_NAME: &str = ".pod-exec-shim";

/// The executable names in `dirs` (what the shims cover: the majors' tools, `patronictl`).
pub fn executables(dirs: &[PathBuf]) -> BTreeSet<String> {
    dirs.iter()
        .flat_map(|dir| fs::read_dir(dir).into_iter().flatten().flatten())
        .filter(|entry| {
            fs::metadata(entry.path())
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.') && !name.contains('/'))
        .collect()
}

/// Makes `dir` hold the shim and one link to it per name in `names`; other links are removed.
/// Returns how many names it holds.
pub fn write_exec_shims(dir: &Path, names: &BTreeSet<String>) -> io::Result<usize> {
    fs::create_dir_all(dir)?;
    let shim = dir.join(SHIM_NAME);
    let tmp = dir.join(format!("{SHIM_NAME}.tmp"));
    fs::write(&tmp, SHIM)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, &shim)?;
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != SHIM_NAME && !names.contains(&name) {
            fs::remove_file(entry.path())?;
        }
    }
    for name in names {
        let link = dir.join(name);
        if fs::read_link(&link).is_ok_and(|target| target == Path::new(SHIM_NAME)) {
            continue;
        }
        match fs::remove_file(&link) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::os::unix::fs::symlink(SHIM_NAME, &link)?;
    }
    Ok(names.len())
}

fn api(client: &Client, namespace: &str, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, resource)
}

/// Writes the pod's `Logs` and `Exec` (server-side apply: a repeat changes nothing).
pub async fn apply(client: &Client, pod: &Pod, containers: &[ContainerIo]) -> kube::Result<()> {
    let (Some(name), Some(namespace)) = (&pod.metadata.name, &pod.metadata.namespace) else {
        return Ok(());
    };
    let params = PatchParams::apply(MANAGER).force();
    let objects = [
        (logs_resource(), logs_object(pod, containers)),
        (exec_resource(), exec_object(pod, containers)),
    ];
    for (resource, object) in objects {
        if let Some(object) = object {
            api(client, namespace, &resource)
                .patch(name, &params, &Patch::Apply(&object))
                .await?;
        }
    }
    Ok(())
}

/// Deletes the pod's `Logs` and `Exec` if they are still this pod's: a pod recreated under
/// the same name (a StatefulSet's) may already own new ones.
pub async fn delete(client: &Client, pod: &Pod) -> kube::Result<()> {
    let (Some(name), Some(namespace)) = (&pod.metadata.name, &pod.metadata.namespace) else {
        return Ok(());
    };
    for resource in [logs_resource(), exec_resource()] {
        let api = api(client, namespace, &resource);
        let Some(object) = api.get_opt(name).await? else {
            continue;
        };
        let owned = object
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| Some(&o.uid) == pod.metadata.uid.as_ref());
        if !owned {
            continue;
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: object.metadata.uid.clone(),
                resource_version: object.metadata.resource_version.clone(),
            }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "acid-a-0", "namespace": "ns", "uid": "u-1"},
            "spec": {"containers": [{"name": "postgres"}, {"name": "sidecar"}]},
        }))
        .unwrap()
    }

    fn io(name: &str, exec: bool) -> ContainerIo {
        ContainerIo {
            name: name.into(),
            log: format!("/s/{name}/current.log").into(),
            previous_log: format!("/s/{name}/previous.log").into(),
            exec: exec.then(|| ExecTarget {
                work_dir: "/run/x".into(),
                env: vec![("SCOPE".into(), "acid-a".into())],
                uid: 999,
                gid: 998,
            }),
        }
    }

    #[test]
    fn objects_are_named_like_the_pod_and_owned_by_it() {
        let logs = logs_object(&pod(), &[io("postgres", true)]).unwrap();
        assert_eq!(logs["kind"], "Logs");
        assert_eq!(logs["apiVersion"], "kwok.x-k8s.io/v1alpha1");
        assert_eq!(logs["metadata"]["name"], "acid-a-0");
        assert_eq!(logs["metadata"]["namespace"], "ns");
        assert_eq!(logs["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(logs["metadata"]["ownerReferences"][0]["kind"], "Pod");
        assert_eq!(
            logs["spec"]["logs"][0],
            json!({"containers": ["postgres"], "logsFile": "/s/postgres/current.log",
                   "previousLogsFile": "/s/postgres/previous.log"})
        );
        assert!(logs_object(&pod(), &[]).is_none());
    }

    #[test]
    fn exec_runs_as_the_containers_user_in_its_folder_and_environment() {
        let exec = exec_object(&pod(), &[io("postgres", true), io("sidecar", false)]).unwrap();
        let execs = exec["spec"]["execs"].as_array().unwrap();
        assert_eq!(execs.len(), 1, "only containers with a target: {exec}");
        assert_eq!(
            execs[0],
            json!({"containers": ["postgres"], "local": {
                "workDir": "/run/x",
                "envs": [{"name": "SCOPE", "value": "acid-a"}],
                "securityContext": {"runAsUser": 999, "runAsGroup": 998}}})
        );
        assert!(exec_object(&pod(), &[io("sidecar", false)]).is_none());
    }

    #[test]
    fn overrides_replace_in_place_or_append() {
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let env = exec_env(
            &pairs(&[("SCOPE", "a"), ("PATH", "/bin"), ("SCOPE", "b")]),
            &pairs(&[("PATH", "/pg/bin:/bin"), ("PGHOST", "/run")]),
        );
        assert_eq!(
            env,
            pairs(&[("SCOPE", "b"), ("PATH", "/pg/bin:/bin"), ("PGHOST", "/run")])
        );
    }

    #[test]
    fn shims_run_the_name_from_the_pods_path() {
        let tmp = tempfile::tempdir().unwrap();
        let (tools, shims) = (tmp.path().join("pg/bin"), tmp.path().join("exec-path"));
        fs::create_dir_all(&tools).unwrap();
        let tool = tools.join("psql");
        fs::write(&tool, "#!/bin/sh\necho \"psql of the pod: $*\"\n").unwrap();
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(tools.join("README"), "not executable").unwrap();
        let names = executables(std::slice::from_ref(&tools));
        assert_eq!(names, BTreeSet::from(["psql".to_string()]));
        fs::create_dir_all(&shims).unwrap();
        fs::write(shims.join("stale"), "").unwrap();
        assert_eq!(write_exec_shims(&shims, &names).unwrap(), 1);
        assert_eq!(write_exec_shims(&shims, &names).unwrap(), 1, "idempotent");
        assert!(!shims.join("stale").exists());
        // As kwok runs it: found in kwok's PATH, run with the pod's PATH (which may even
        // include the shim folder) in the environment.
        let out = crate::output_retrying(|| {
            let mut command = std::process::Command::new(shims.join("psql"));
            command.arg("-c").env(
                "PATH",
                format!("{}:{}:/usr/bin:/bin", shims.display(), tools.display()),
            );
            command
        });
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "psql of the pod: -c\n"
        );
    }
}
