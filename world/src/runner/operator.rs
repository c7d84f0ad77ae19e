//! The operator's own images as the locally built binaries, and the one list of the images the
//! runner runs.
//!
//! A container whose image repository ends in `pg-operator-controller` or `pg-operator-webhook`
//! (any registry, tag or digest: the manifests name `ghcr.io/example/...:0.1.0`) runs the binary
//! of that name from the runner's `--operator-bin` folder (`$CARGO_TARGET_DIR/debug`), with the
//! container's command arguments and environment resolved as a kubelet would, the pod's
//! ServiceAccount token as `KUBECONFIG`, its volumes written under the pod's folder, and its
//! `securityContext` user. What the binary would find at a container path is given its place on
//! this machine: an argument or variable that starts with a mount path is rewritten to the
//! volume's folder, an all-interfaces listen address becomes the pod IP (never `0.0.0.0`: the
//! world stays on loopback), and a default of the binary that is such a path or address (the
//! webhook's certificate, every admin port) is passed explicitly, rewritten.
//!
//! kwok's stages (`scripts/kwok/*.yaml`) leave these pods to the runner with a jq selector made
//! from the same list ([`kwok_selector_key`]; a unit test compares the files with it).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Context;
use super::api::ApiLookups;
use super::kubelet_io::ExecTarget;
use super::member::{self, PrepareError, SYSTEM_PATH, config_error, create_error, host_path};
use super::status::Readiness;
use crate::env::Allocatable;
use crate::supervisor::{Backoff, ContainerSpec, Isolation, RestartPolicy, User};
use crate::volumes::Mount;

/// What a default of a binary is, for rewriting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A listen address (`0.0.0.0:PORT` becomes the pod IP).
    Listen,
    /// A container path (mapped through the mounts).
    Path,
}

/// A default of a binary's flag (also settable by `env`) that needs rewriting here.
#[derive(Debug)]
struct Default {
    flag: &'static str,
    env: &'static str,
    value: &'static str,
    kind: Kind,
}

/// One operator image: the binary it stands for and its defaults to rewrite (they mirror the
/// binaries' `args.rs`).
#[derive(Debug)]
pub struct Row {
    repository_suffix: &'static str,
    pub binary: &'static str,
    defaults: &'static [Default],
}

const ROWS: &[Row] = &[
    Row {
        repository_suffix: "pg-operator-controller",
        binary: "controller",
        defaults: &[Default {
            flag: "--admin-listen",
            env: "CONTROLLER_ADMIN_LISTEN",
            value: "0.0.0.0:8081",
            kind: Kind::Listen,
        }],
    },
    Row {
        repository_suffix: "pg-operator-webhook",
        binary: "webhook",
        defaults: &[
            Default {
                flag: "--listen",
                env: "WEBHOOK_LISTEN",
                value: "0.0.0.0:8443",
                kind: Kind::Listen,
            },
            Default {
                flag: "--admin-listen",
                env: "WEBHOOK_ADMIN_LISTEN",
                value: "0.0.0.0:8080",
                kind: Kind::Listen,
            },
            Default {
                flag: "--tls-cert",
                env: "WEBHOOK_TLS_CERT",
                value: "/etc/webhook/certs/tls.crt",
                kind: Kind::Path,
            },
            Default {
                flag: "--tls-key",
                env: "WEBHOOK_TLS_KEY",
                value: "/etc/webhook/certs/tls.key",
                kind: Kind::Path,
            },
        ],
    },
];

/// What in an image name says Spilo (see [`super::member::is_spilo_image`]).
pub const SPILO_MARK: &str = "spilo";

/// The repository of an image reference: without its digest and tag.
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match (image.rfind(':'), image.rfind('/')) {
        (Some(colon), Some(slash)) if colon > slash => &image[..colon],
        (Some(colon), None) => &image[..colon],
        _ => image,
    }
}

/// The operator image row of `image`, if it is one.
pub fn row(image: Option<&str>) -> Option<&'static Row> {
    let repo = repository(image?);
    ROWS.iter().find(|r| repo.ends_with(r.repository_suffix))
}

/// Whether the runner runs a container of `image` (Spilo or an operator image).
pub fn is_runnable_image(image: Option<&str>) -> bool {
    member::is_spilo_image(image) || row(image).is_some()
}

/// The jq expression kwok's stages select the runner's pods with (`true` when some container
/// has a runnable image); the same test as [`is_runnable_image`].
pub fn kwok_selector_key() -> String {
    let suffixes: Vec<&str> = ROWS.iter().map(|r| r.repository_suffix).collect();
    format!(
        r#"[.spec.containers[].image // "" | select(contains("{SPILO_MARK}") or test("({})(:[^/@]*)?(@.*)?$"))] | length > 0"#,
        suffixes.join("|")
    )
}

/// `value` with an all-interfaces address made the pod IP, or a container path under a mount
/// made the mount's folder on this machine; unchanged otherwise.
fn rewrite_value(value: &str, pod_ip: IpAddr, mounts: &[Mount]) -> String {
    if let Ok(address) = value.parse::<SocketAddr>() {
        if address.ip().is_unspecified() {
            return SocketAddr::new(pod_ip, address.port()).to_string();
        }
        return value.to_string();
    }
    if value.starts_with('/')
        && let Some(host) = host_path(mounts, value)
    {
        return host.display().to_string();
    }
    value.to_string()
}

/// One argument rewritten: a whole value, or the value of `--flag=value`.
fn rewrite_arg(arg: &str, pod_ip: IpAddr, mounts: &[Mount]) -> String {
    match arg.split_once('=') {
        Some((flag, value)) if flag.starts_with('-') => {
            format!("{flag}={}", rewrite_value(value, pod_ip, mounts))
        }
        _ => rewrite_value(arg, pod_ip, mounts),
    }
}

/// The binary's arguments: the container's (`command` after its first word, then `args`),
/// rewritten, then each default that needs rewriting and that neither an argument nor the
/// environment sets.
pub fn arguments(
    row: &Row,
    container_args: &[String],
    env: &[(String, String)],
    pod_ip: IpAddr,
    mounts: &[Mount],
) -> Vec<String> {
    let mut out: Vec<String> = container_args
        .iter()
        .map(|a| rewrite_arg(a, pod_ip, mounts))
        .collect();
    for default in row.defaults {
        let in_args = container_args
            .iter()
            .any(|a| a == default.flag || a.starts_with(&format!("{}=", default.flag)));
        let in_env = env.iter().any(|(name, _)| name == default.env);
        if in_args || in_env {
            continue;
        }
        let value = rewrite_value(default.value, pod_ip, mounts);
        if default.kind == Kind::Path && value == default.value {
            // Not in any volume: the binary reports the missing file itself.
            continue;
        }
        out.push(format!("{}={value}", default.flag));
    }
    out
}

/// The user the container runs as: its `runAsUser`/`runAsGroup`, else the pod's, else 65532
/// (the non-root user the operator's images are built with); the pod's `fsGroup` and
/// `supplementalGroups` as extra groups.
pub fn run_as(pod: &Pod, container: &Container) -> User {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let own = container.security_context.as_ref();
    let uid = own
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_sc.and_then(|s| s.run_as_user))
        .unwrap_or(65532);
    let gid = own
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_sc.and_then(|s| s.run_as_group))
        .unwrap_or(uid);
    let mut groups = vec![gid];
    groups.extend(pod_sc.and_then(|s| s.fs_group));
    groups.extend(
        pod_sc
            .and_then(|s| s.supplemental_groups.clone())
            .into_iter()
            .flatten(),
    );
    let clamp = |v: i64| u32::try_from(v).unwrap_or(65534);
    let mut groups: Vec<u32> = groups.into_iter().map(clamp).collect();
    groups.sort_unstable();
    groups.dedup();
    User {
        uid: clamp(uid),
        gid: clamp(gid),
        groups,
    }
}

/// The container's `readinessProbe.httpGet` port (a number or a named container port) and path.
pub fn readiness(container: &Container) -> Result<Readiness, PrepareError> {
    let Some(get) = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
    else {
        return Ok(Readiness::Running);
    };
    let port = match &get.port {
        IntOrString::Int(p) => Some(*p),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
    };
    let port = port
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| config_error(format!("readinessProbe port {:?}: no such port", get.port)))?;
    if get.scheme.as_deref().is_some_and(|s| s != "HTTP") {
        return Err(config_error(
            "readinessProbe: only HTTP probes are run here",
        ));
    }
    Ok(Readiness::HttpGet {
        port,
        path: get.path.clone().unwrap_or_else(|| "/".into()),
    })
}

/// Everything up to the process of an operator container: its spec, readiness and exec target.
pub fn prepare(
    ctx: &Context,
    lookups: &ApiLookups,
    pod: &Pod,
    container: &Container,
    allocatable: &Allocatable,
    row: &Row,
) -> Result<(ContainerSpec, Readiness, ExecTarget), PrepareError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let pod_ip: IpAddr = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| create_error("the pod has no IP yet"))?;
    if !pod_ip.is_loopback() {
        return Err(create_error(format!("pod IP {pod_ip} is outside loopback")));
    }
    let bin_dir = ctx.operator_bin.as_ref().ok_or_else(|| {
        create_error("the runner was started without --operator-bin (scripts/up.sh passes it)")
    })?;
    let binary = bin_dir.join(row.binary);
    if !binary.is_file() {
        return Err(create_error(format!(
            "{} is not built (cargo build -p {})",
            binary.display(),
            row.binary
        )));
    }
    let readiness = readiness(container)?;
    let user = run_as(pod, container);

    let (resolved, root, mounts) = member::mount(ctx, lookups, pod, container, allocatable)?;
    let run_dir = member::run_dir(ctx, pod, container, &user)?;
    let kubeconfig = member::write_kubeconfig(ctx, lookups, pod, &run_dir, &user, "local")?;

    let container_env: Vec<(String, String)> = resolved
        .vars()
        .iter()
        .map(|(k, v)| (k.clone(), rewrite_value(v, pod_ip, &mounts)))
        .collect();
    let words: Vec<String> = container
        .command
        .iter()
        .flatten()
        .skip(1)
        .chain(container.args.iter().flatten())
        .map(|a| resolved.expand(a))
        .collect();
    let mut argv = vec![binary.display().to_string()];
    argv.extend(arguments(row, &words, &container_env, pod_ip, &mounts));

    let overrides = [
        ("KUBECONFIG".to_string(), kubeconfig.display().to_string()),
        ("HOME".to_string(), run_dir.display().to_string()),
        ("PATH".to_string(), SYSTEM_PATH.to_string()),
    ];
    let process_env = super::kubelet_io::exec_env(&container_env, &overrides);
    let grace = spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64;
    let exec = ExecTarget {
        work_dir: run_dir.clone(),
        env: process_env.clone(),
        uid: user.uid,
        gid: user.gid,
    };
    let spec = ContainerSpec {
        name: container.name.clone(),
        argv,
        env: process_env,
        working_dir: Some(run_dir),
        user: Some(user),
        log_dir: root.join("logs").join(&container.name),
        restart_policy: RestartPolicy::from_pod(spec.restart_policy.as_deref()),
        grace_period: Duration::from_secs(grace),
        backoff: Backoff::default(),
        isolation: Isolation::best(),
    };
    Ok((spec, readiness, exec))
}

#[cfg(test)]
mod tests;
