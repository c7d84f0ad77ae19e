//! A Spilo container made into a supervised Patroni: environment, volumes, token and kubeconfig,
//! Patroni's configuration and files, then the [`ContainerSpec`] to start as user `postgres`.
//!
//! Everything here blocks (API lookups, files, openssl): run it on a blocking thread. Whatever
//! the pod asks for that cannot run becomes a [`PrepareError`] whose `reason` is the container's
//! waiting reason and whose message names the cause; the runner never fails on a pod.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::Context;
use super::api::ApiLookups;
use super::kubelet_io::{self, ExecTarget};
use crate::env::{self, Allocatable};
use crate::spilo::{self, Env, Member, Paths, Tls};
use crate::supervisor::{Backoff, ContainerSpec, Isolation, RestartPolicy, User};
use crate::volumes::{self, Mount, Roots, Sources};

/// Whether the runner runs `image` as a real Patroni (any image whose name says Spilo).
pub fn is_spilo_image(image: Option<&str>) -> bool {
    image.is_some_and(|i| i.contains("spilo"))
}

/// The system part of a container's `PATH` (after its own tools).
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a container cannot start, as the kubelet reports it in `state.waiting`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareError {
    /// `CreateContainerConfigError` (environment, volumes, Spilo configuration) or
    /// `CreateContainerError` (what this machine lacks: a major, files).
    pub reason: &'static str,
    pub message: String,
}

pub(crate) fn config_error(message: impl ToString) -> PrepareError {
    PrepareError {
        reason: "CreateContainerConfigError",
        message: message.to_string(),
    }
}

pub(crate) fn create_error(message: impl ToString) -> PrepareError {
    PrepareError {
        reason: "CreateContainerError",
        message: message.to_string(),
    }
}

/// The folder of a pod's own things (volumes, run dirs, logs): `<state>/pods/<uid>`.
pub fn pod_root(ctx: &Context, pod: &Pod) -> PathBuf {
    ctx.state_dir
        .join("pods")
        .join(pod.metadata.uid.as_deref().unwrap_or("no-uid"))
}

/// The postgres user (uid, gid) the members run as.
pub fn postgres_user() -> Result<User, PrepareError> {
    match nix::unistd::User::from_name("postgres") {
        Ok(Some(user)) => Ok(User {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups: vec![user.gid.as_raw()],
        }),
        _ => Err(create_error(
            "no user postgres on this machine (run scripts/world-install.sh)",
        )),
    }
}

/// Where a container path is on this machine, through the container's mounts (the longest
/// mount path that is a prefix wins); `None` when no mount holds it.
pub fn host_path(mounts: &[Mount], container_path: &str) -> Option<PathBuf> {
    mounts
        .iter()
        .filter_map(|m| {
            let base = m.container_path.trim_end_matches('/');
            let rest = container_path.strip_prefix(base)?;
            if !rest.is_empty() && !rest.starts_with('/') {
                return None;
            }
            Some((base.len(), m.host_path.join(rest.trim_start_matches('/'))))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, p)| p)
}

pub(crate) fn dir_for(path: &Path, user: &User, mode: u32) -> Result<(), PrepareError> {
    fs::create_dir_all(path).map_err(|e| create_error(format!("{}: {e}", path.display())))?;
    chown(path, user)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| create_error(format!("{}: {e}", path.display())))
}

fn chown(path: &Path, user: &User) -> Result<(), PrepareError> {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(user.uid)),
        Some(nix::unistd::Gid::from_raw(user.gid)),
    )
    .map_err(|e| create_error(format!("chown {}: {e}", path.display())))
}

/// Writes `contents` to `path` owned by `user` with `mode` (replaced by rename).
pub(crate) fn write_file(
    path: &Path,
    contents: &[u8],
    mode: u32,
    user: &User,
) -> Result<(), PrepareError> {
    let tmp = path.with_extension("tmp-runner");
    let fail = |e: std::io::Error| create_error(format!("{}: {e}", path.display()));
    fs::write(&tmp, contents).map_err(fail)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(fail)?;
    chown(&tmp, user)?;
    fs::rename(&tmp, path).map_err(fail)
}

/// A self-signed certificate and key, as Spilo makes without `SSL_*` (kept across restarts).
fn self_signed(dir: &Path, name: &str, user: &User) -> Result<Tls, PrepareError> {
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    if !cert.exists() || !key.exists() {
        let out = std::process::Command::new("openssl")
            .args([
                "req", "-nodes", "-new", "-x509", "-newkey", "rsa:2048", "-days", "3650",
            ])
            .arg("-subj")
            .arg(format!("/CN={name}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .map_err(|e| create_error(format!("openssl: {e}")))?;
        if !out.status.success() {
            return Err(create_error(format!(
                "openssl req: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600))
        .map_err(|e| create_error(format!("{}: {e}", key.display())))?;
    chown(&key, user)?;
    chown(&cert, user)?;
    Ok(Tls {
        cert,
        key,
        ca: None,
        crl: None,
    })
}

/// The clone or standby source hosts that name a Service, mapped to its ClusterIP (the runner
/// serves it, so the source's current primary answers there).
fn source_hosts(
    lookups: &ApiLookups,
    env: &Env,
    namespace: &str,
) -> Result<BTreeMap<String, String>, PrepareError> {
    let mut hosts = BTreeMap::new();
    for variable in spilo::HOST_VARIABLES {
        let Some(host) = spilo::get(env, variable) else {
            continue;
        };
        let Some((ns, name)) = spilo::service_of(host, namespace) else {
            continue;
        };
        let ip = lookups
            .service_ip(&ns, &name)
            .map_err(|e| create_error(format!("{variable}: Service {ns}/{name}: {e}")))?;
        if let Some(ip) = ip {
            hosts.insert(host.to_string(), ip);
        }
    }
    Ok(hosts)
}

/// The container's environment resolved and its volumes laid out on this machine (what every
/// container the runner starts begins with), with the pod's folder and the mounts.
pub(super) fn mount(
    ctx: &Context,
    lookups: &ApiLookups,
    pod: &Pod,
    container: &Container,
    allocatable: &Allocatable,
) -> Result<(env::Environment, PathBuf, Vec<Mount>), PrepareError> {
    let resolved = env::resolve(pod, container, lookups, allocatable).map_err(config_error)?;
    let root = pod_root(ctx, pod);
    let roots = Roots {
        pod_root: root.clone(),
        pvc_root: ctx.state_dir.join("pvcs"),
    };
    let sources = Sources {
        objects: lookups,
        tokens: lookups,
        claims: lookups,
        allocatable,
    };
    let (plan, mounts) =
        volumes::plan(pod, container, &resolved, &sources, &roots).map_err(config_error)?;
    volumes::apply(&plan, &mounts).map_err(create_error)?;
    Ok((resolved, root, mounts))
}

/// The container's own folder, owned by `user`. By container index: names may be long, and a
/// socket path in it must stay under 108 bytes.
pub(super) fn run_dir(
    ctx: &Context,
    pod: &Pod,
    container: &Container,
    user: &User,
) -> Result<PathBuf, PrepareError> {
    let index = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().position(|c| c.name == container.name))
        .unwrap_or(0);
    let uid = pod.metadata.uid.as_deref().unwrap_or("no-uid");
    let run_dir = ctx.run_root.join(uid).join(index.to_string());
    dir_for(&run_dir, user, 0o700)?;
    Ok(run_dir)
}

/// `<run_dir>/kubeconfig` for the API server with a token of the pod's service account, as the
/// process finds its in-cluster credentials; returns its path.
pub(super) fn write_kubeconfig(
    ctx: &Context,
    lookups: &ApiLookups,
    pod: &Pod,
    run_dir: &Path,
    user: &User,
    context: &str,
) -> Result<PathBuf, PrepareError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let service_account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .unwrap_or("default");
    let token = crate::volumes::Tokens::token(
        lookups,
        pod,
        service_account,
        None,
        super::api::PROCESS_TOKEN_SECONDS,
    )
    .map_err(|e| create_error(format!("token for service account {service_account}: {e}")))?;
    let kubeconfig = run_dir.join("kubeconfig");
    let text = ctx.api.kubeconfig(&token, context, namespace);
    write_file(&kubeconfig, text.as_bytes(), 0o600, user)?;
    Ok(kubeconfig)
}
/// Everything up to the process: the container's supervised spec, Spilo's warnings, and how
/// `kubectl exec` runs a command in the container.
pub fn prepare(
    ctx: &Context,
    lookups: &ApiLookups,
    pod: &Pod,
    container: &Container,
    allocatable: &Allocatable,
) -> Result<(ContainerSpec, Vec<String>, ExecTarget), PrepareError> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.clone().unwrap_or_default();
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .ok_or_else(|| create_error("the pod has no IP yet"))?;
    let user = postgres_user()?;

    let (resolved, root, mounts) = mount(ctx, lookups, pod, container, allocatable)?;
    let env: Env = resolved.vars().iter().cloned().collect();

    // PGROOT through the mounts: a recreated pod with the same claim finds its data.
    let pgroot = spilo::get(&env, "PGROOT").unwrap_or("/home/postgres/pgdata/pgroot");
    let pgroot_host = host_path(&mounts, pgroot).unwrap_or_else(|| root.join("pgroot"));
    dir_for(&pgroot_host, &user, 0o700)?;

    // As Spilo: existing data keeps its major until an in-place upgrade, new data gets PGVERSION.
    let wanted = spilo::major(&env).map_err(config_error)?;
    let in_data = crate::majors::data_major(&pgroot_host.join("data"));
    let running = crate::majors::running_major(&wanted, in_data.as_deref());
    if let Some(pending) = &running.pending {
        tracing::warn!(pod = %format!("{namespace}/{name}"), container = %container.name, "{pending}");
    }
    let bin_dir = crate::majors::bin_dir(&ctx.cache, &running.major).map_err(create_error)?;
    let run_dir = run_dir(ctx, pod, container, &user)?;

    let tls = match spilo::tls_files(&env) {
        Some((cert, key, ca, crl)) => {
            let map = |p: &str| {
                host_path(&mounts, p)
                    .ok_or_else(|| config_error(format!("{p}: not in any volume of the container")))
            };
            Tls {
                cert: map(&cert)?,
                key: map(&key)?,
                ca: ca.as_deref().map(map).transpose()?,
                crl: crl.as_deref().map(map).transpose()?,
            }
        }
        None => self_signed(&run_dir, name, &user)?,
    };

    let context = "local".to_string();
    let kubeconfig = write_kubeconfig(ctx, lookups, pod, &run_dir, &user, &context)?;

    let paths = Paths {
        data_dir: pgroot_host.join("data"),
        run_dir: run_dir.clone(),
        bin_dir,
        kubeconfig,
        context,
        tls,
        hosts: source_hosts(lookups, &env, namespace)?,
    };
    let member = Member {
        name,
        namespace,
        pod_ip: &pod_ip,
    };
    let launch = spilo::patroni_config(&env, &member, &paths).map_err(config_error)?;
    for file in &launch.files {
        write_file(&file.path, file.contents.as_bytes(), file.mode, &user)?;
    }
    let config_path = run_dir.join("patroni.yml");
    let yaml = serde_yaml::to_string(&launch.config).map_err(create_error)?;
    write_file(&config_path, yaml.as_bytes(), 0o600, &user)?;

    let mut process_env: Vec<(String, String)> = launch.env.clone().into_iter().collect();
    process_env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    process_env.push(("HOME".into(), run_dir.display().to_string()));
    process_env.push(("PYTHONUNBUFFERED".into(), "1".into()));
    // A command run in the container (`kubectl exec`) sees the container's variables, with the
    // major's tools and patronictl first on PATH and libpq pointed at the member's socket, as
    // in Spilo, where they are on PATH and the socket is in libpq's default folder.
    let venv_bin = crate::majors::patroni(&ctx.cache)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut exec_overrides: Vec<(String, String)> = launch.env.clone().into_iter().collect();
    exec_overrides.extend([
        (
            "PATH".to_string(),
            format!("{}:{venv_bin}:{SYSTEM_PATH}", paths.bin_dir.display()),
        ),
        ("HOME".to_string(), run_dir.display().to_string()),
        ("PGHOST".to_string(), run_dir.display().to_string()),
        // Spilo's /scripts/inplace_upgrade.py, answered by the world (see crate::upgrade).
        (
            "PYTHONPATH".to_string(),
            crate::upgrade::python_path(
                &crate::upgrade::hook_dir(&ctx.state_dir),
                spilo::get(&env, "PYTHONPATH"),
            ),
        ),
    ]);
    let exec = ExecTarget {
        work_dir: run_dir.clone(),
        env: kubelet_io::exec_env(resolved.vars(), &exec_overrides),
        uid: user.uid,
        gid: user.gid,
    };
    let grace = spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64;
    let spec = ContainerSpec {
        name: container.name.clone(),
        argv: vec![
            crate::majors::patroni(&ctx.cache).display().to_string(),
            config_path.display().to_string(),
        ],
        env: process_env,
        working_dir: Some(run_dir),
        user: Some(user),
        log_dir: root.join("logs").join(&container.name),
        restart_policy: RestartPolicy::from_pod(spec.restart_policy.as_deref()),
        grace_period: Duration::from_secs(grace),
        backoff: Backoff::default(),
        isolation: Isolation::best(),
    };
    Ok((spec, launch.warnings, exec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(container_path: &str, host: &str) -> Mount {
        Mount {
            volume: "v".into(),
            container_path: container_path.into(),
            host_path: host.into(),
            read_only: false,
            create_dir: false,
        }
    }

    #[test]
    fn container_paths_map_through_the_longest_mount() {
        let mounts = [
            mount("/home/postgres/pgdata", "/pvc/u1"),
            mount("/home/postgres", "/pod/home"),
        ];
        assert_eq!(
            host_path(&mounts, "/home/postgres/pgdata/pgroot"),
            Some(PathBuf::from("/pvc/u1/pgroot"))
        );
        assert_eq!(
            host_path(&mounts, "/home/postgres/x"),
            Some(PathBuf::from("/pod/home/x"))
        );
        assert_eq!(host_path(&mounts, "/home/postgresql"), None);
        assert_eq!(host_path(&mounts, "/etc"), None);
    }

    #[test]
    fn spilo_images_are_recognised_by_name() {
        assert!(is_spilo_image(Some("ghcr.io/zalando/spilo-17:4.0-p2")));
        assert!(!is_spilo_image(Some("busybox")));
        assert!(!is_spilo_image(None));
    }
}
