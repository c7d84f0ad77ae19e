//! A pod's volumes as folders on this machine, and where each container mount points.
//!
//! The runner mounts nothing: processes run in the host's file system, and the runner rewrites
//! the paths they are told about (environment, configuration) with [`Mount::host_path`]. What a
//! kubelet would put in the volumes is still put there, with the same keys, paths and modes, so
//! a process that reads `/etc/secrets/password` here reads the same bytes it would on a node.
//!
//! Planning is pure (the tests need no API server and no root); [`apply`] writes a plan. Files are
//! replaced by rename so a process that rereads a Secret after an update never sees half of it;
//! unlike the kubelet's `..data` symlink swap the update is atomic per file, not per volume.
//! Claims live under a separate root keyed by the claim's uid, so data outlives the pod (as a PV
//! does) and a claim deleted and recreated under the same name starts empty.

use std::collections::{BTreeMap, BTreeSet};

mod apply;
pub use apply::apply;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, KeyToPath, Pod};

use crate::env::{self, Allocatable, Environment, LookupError, Objects};

/// Issues service account tokens for projected `serviceAccountToken` sources (the runner asks the
/// API's TokenRequest, bound to the pod).
pub trait Tokens {
    fn token(
        &self,
        pod: &Pod,
        service_account: &str,
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Result<String, LookupError>;
}

/// Finds a claim's uid; `Ok(None)` when the claim does not exist.
pub trait Claims {
    fn claim_uid(&self, namespace: &str, claim: &str) -> Result<Option<String>, LookupError>;
}

/// Everything a plan reads besides the pod.
pub struct Sources<'a> {
    pub objects: &'a dyn Objects,
    pub tokens: &'a dyn Tokens,
    pub claims: &'a dyn Claims,
    pub allocatable: &'a Allocatable,
}

/// Where volumes go: `pod_root/volumes/<volume>` for the pod's own, `pvc_root/<claim uid>` for claims.
#[derive(Debug, Clone)]
pub struct Roots {
    pub pod_root: PathBuf,
    pub pvc_root: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeKind {
    /// Secret, ConfigMap, projected, downwardAPI: the plan owns every file in the folder.
    Managed,
    /// emptyDir: created empty and world-writable, as the kubelet does; contents belong to the pod.
    EmptyDir,
    /// A PersistentVolumeClaim (also a generic ephemeral volume's claim).
    Claim { claim: String, uid: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Relative to the volume's folder.
    pub path: PathBuf,
    pub content: Vec<u8>,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedVolume {
    pub name: String,
    pub host_dir: PathBuf,
    pub kind: VolumeKind,
    pub files: Vec<PlannedFile>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumePlan {
    pub volumes: Vec<PlannedVolume>,
    /// Volumes of kinds the runner cannot provide (hostPath, csi, image, ...), with the kind.
    /// Declaring one is harmless; mounting one is an error.
    pub unsupported: Vec<(String, &'static str)>,
    /// The pod's `fsGroup`: files and folders get this group and group read access.
    pub fs_group: Option<u32>,
}

impl VolumePlan {
    /// Every file to write, as absolute host paths.
    pub fn files(&self) -> impl Iterator<Item = (PathBuf, &PlannedFile)> {
        self.volumes
            .iter()
            .flat_map(|v| v.files.iter().map(move |f| (v.host_dir.join(&f.path), f)))
    }

    /// Every folder to create: volume folders and the parents of their files.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = BTreeSet::new();
        for v in &self.volumes {
            dirs.insert(v.host_dir.clone());
            for f in &v.files {
                let mut p = f.path.parent();
                while let Some(parent) = p.filter(|p| !p.as_os_str().is_empty()) {
                    dirs.insert(v.host_dir.join(parent));
                    p = parent.parent();
                }
            }
        }
        dirs.into_iter().collect()
    }

    pub fn volume(&self, name: &str) -> Option<&PlannedVolume> {
        self.volumes.iter().find(|v| v.name == name)
    }
}

/// A container mount: what the container would see at `container_path` is at `host_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub volume: String,
    pub container_path: String,
    pub host_path: PathBuf,
    pub read_only: bool,
    /// A subPath folder in a writable volume that the kubelet would create if missing.
    pub create_dir: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pod {namespace}/{pod}, volume {volume}: {reason}")]
pub struct VolumeError {
    pub namespace: String,
    pub pod: String,
    pub volume: String,
    pub reason: VolumeReason,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeReason {
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("couldn't find key {key} in {object}")]
    KeyNotFound { object: String, key: String },
    #[error("persistentvolumeclaim \"{0}\" not found")]
    ClaimNotFound(String),
    #[error("invalid path {0:?}: must be relative, without '..'")]
    BadPath(String),
    #[error("path {0:?} is given twice, or both as a file and a folder")]
    PathConflict(String),
    #[error("invalid file mode {0:#o}")]
    BadMode(i32),
    #[error("{0}")]
    Field(#[from] env::Reason),
    #[error("token request failed: {0}")]
    Token(LookupError),
    #[error("lookup failed: {0}")]
    Lookup(LookupError),
    #[error("{0} volumes are not supported by the runner")]
    Unsupported(&'static str),
    #[error("no volume of that name in the pod")]
    NoSuchVolume,
    #[error("subPath {0:?} must be relative, without '..'")]
    BadSubPath(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ApplyError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Plans the pod's volumes and `container`'s mounts in one go.
pub fn plan(
    pod: &Pod,
    container: &Container,
    env: &Environment,
    sources: &Sources<'_>,
    roots: &Roots,
) -> Result<(VolumePlan, Vec<Mount>), Box<VolumeError>> {
    let volumes = plan_volumes(pod, sources, roots)?;
    let mounts = plan_mounts(pod, container, env, &volumes)?;
    Ok((volumes, mounts))
}

/// Plans every volume of the pod: the kubelet sets them all up before any container starts, so
/// a missing Secret fails the pod even if no container mounts it.
pub fn plan_volumes(
    pod: &Pod,
    sources: &Sources<'_>,
    roots: &Roots,
) -> Result<VolumePlan, Box<VolumeError>> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let mut plan = VolumePlan {
        fs_group: spec
            .and_then(|s| s.security_context.as_ref()?.fs_group)
            .and_then(|g| u32::try_from(g).ok()),
        ..VolumePlan::default()
    };
    for volume in spec.and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        let fail = |reason| {
            Box::new(VolumeError {
                namespace: namespace.clone(),
                pod: pod_name.clone(),
                volume: volume.name.clone(),
                reason,
            })
        };
        let own_dir = roots.pod_root.join("volumes").join(&volume.name);
        if safe_relative(&volume.name).is_err() {
            return Err(fail(VolumeReason::BadPath(volume.name.clone())));
        }
        let mut files = Files::default();
        let (kind, host_dir) = if let Some(s) = &volume.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let mode = default_mode(s.default_mode).map_err(fail)?;
            secret_files(
                &mut files,
                sources,
                &namespace,
                &name,
                s.items.as_deref(),
                s.optional,
                mode,
            )
            .map_err(fail)?;
            (VolumeKind::Managed, own_dir)
        } else if let Some(c) = &volume.config_map {
            let mode = default_mode(c.default_mode).map_err(fail)?;
            config_map_files(
                &mut files,
                sources,
                &namespace,
                &c.name,
                c.items.as_deref(),
                c.optional,
                mode,
            )
            .map_err(fail)?;
            (VolumeKind::Managed, own_dir)
        } else if let Some(d) = &volume.downward_api {
            let mode = default_mode(d.default_mode).map_err(fail)?;
            downward_files(
                &mut files,
                pod,
                sources.allocatable,
                d.items.as_deref(),
                mode,
            )
            .map_err(fail)?;
            (VolumeKind::Managed, own_dir)
        } else if let Some(p) = &volume.projected {
            let mode = default_mode(p.default_mode).map_err(fail)?;
            for source in p.sources.iter().flatten() {
                if let Some(s) = &source.secret {
                    secret_files(
                        &mut files,
                        sources,
                        &namespace,
                        &s.name,
                        s.items.as_deref(),
                        s.optional,
                        mode,
                    )
                    .map_err(fail)?;
                } else if let Some(c) = &source.config_map {
                    config_map_files(
                        &mut files,
                        sources,
                        &namespace,
                        &c.name,
                        c.items.as_deref(),
                        c.optional,
                        mode,
                    )
                    .map_err(fail)?;
                } else if let Some(d) = &source.downward_api {
                    downward_files(
                        &mut files,
                        pod,
                        sources.allocatable,
                        d.items.as_deref(),
                        mode,
                    )
                    .map_err(fail)?;
                } else if let Some(t) = &source.service_account_token {
                    let account = spec
                        .and_then(|s| s.service_account_name.clone())
                        .unwrap_or_else(|| "default".into());
                    // Written once, not refreshed as a kubelet does at 80% of its life: the
                    // processes here reach the API through their kubeconfig's pod-long token
                    // (runner::api::PROCESS_TOKEN_SECONDS), not through this file.
                    let expiry = t.expiration_seconds.unwrap_or(3600);
                    let token = sources
                        .tokens
                        .token(pod, &account, t.audience.as_deref(), expiry)
                        .map_err(|e| fail(VolumeReason::Token(e)))?;
                    files.add(&t.path, token.into_bytes(), mode).map_err(fail)?;
                } else if source.cluster_trust_bundle.is_some() {
                    return Err(fail(VolumeReason::Unsupported("clusterTrustBundle")));
                }
            }
            (VolumeKind::Managed, own_dir)
        } else if volume.empty_dir.is_some() {
            (VolumeKind::EmptyDir, own_dir)
        } else if let Some(claim) = volume
            .persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.clone())
            .or_else(|| {
                volume
                    .ephemeral
                    .as_ref()
                    .map(|_| format!("{pod_name}-{}", volume.name))
            })
        {
            let uid = match sources.claims.claim_uid(&namespace, &claim) {
                Ok(Some(uid)) if safe_relative(&uid).is_ok() => uid,
                Ok(Some(uid)) => return Err(fail(VolumeReason::BadPath(uid))),
                Ok(None) => return Err(fail(VolumeReason::ClaimNotFound(claim))),
                Err(e) => return Err(fail(VolumeReason::Lookup(e))),
            };
            let dir = roots.pvc_root.join(&uid);
            (VolumeKind::Claim { claim, uid }, dir)
        } else {
            plan.unsupported
                .push((volume.name.clone(), unsupported_kind(volume)));
            continue;
        };
        plan.volumes.push(PlannedVolume {
            name: volume.name.clone(),
            host_dir,
            kind,
            files: files.0,
        });
    }
    Ok(plan)
}

/// Maps `container`'s volumeMounts to host paths. `env` is the container's resolved environment,
/// which `subPathExpr` is expanded against.
pub fn plan_mounts(
    pod: &Pod,
    container: &Container,
    env: &Environment,
    plan: &VolumePlan,
) -> Result<Vec<Mount>, Box<VolumeError>> {
    let mut mounts = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let fail = |reason| {
            Box::new(VolumeError {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                pod: pod.metadata.name.clone().unwrap_or_default(),
                volume: m.name.clone(),
                reason,
            })
        };
        let Some(volume) = plan.volume(&m.name) else {
            return Err(fail(
                match plan.unsupported.iter().find(|(n, _)| *n == m.name) {
                    Some((_, kind)) => VolumeReason::Unsupported(kind),
                    None => VolumeReason::NoSuchVolume,
                },
            ));
        };
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(p), _) if !p.is_empty() => p.clone(),
            (_, Some(e)) if !e.is_empty() => env.expand(e),
            _ => String::new(),
        };
        let (host_path, create_dir) = if sub.is_empty() {
            (volume.host_dir.clone(), false)
        } else {
            let rel =
                safe_relative(&sub).map_err(|_| fail(VolumeReason::BadSubPath(sub.clone())))?;
            (
                volume.host_dir.join(rel),
                volume.kind != VolumeKind::Managed,
            )
        };
        mounts.push(Mount {
            volume: m.name.clone(),
            container_path: m.mount_path.clone(),
            host_path,
            read_only: m.read_only == Some(true) || volume.kind == VolumeKind::Managed,
            create_dir,
        });
    }
    Ok(mounts)
}

/// Files of one volume, refusing duplicates and file/folder clashes (a projected volume whose
/// sources collide, or `items` paths `a` and `a/b`).
#[derive(Default)]
struct Files(Vec<PlannedFile>);

impl Files {
    fn add(&mut self, path: &str, content: Vec<u8>, mode: u32) -> Result<(), VolumeReason> {
        let rel = safe_relative(path)?;
        let clash = self
            .0
            .iter()
            .any(|f| f.path == rel || f.path.starts_with(&rel) || rel.starts_with(&f.path));
        if clash {
            return Err(VolumeReason::PathConflict(path.to_owned()));
        }
        self.0.push(PlannedFile {
            path: rel,
            content,
            mode,
        });
        Ok(())
    }
}

fn safe_relative(path: &str) -> Result<PathBuf, VolumeReason> {
    let mut out = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            _ => return Err(VolumeReason::BadPath(path.to_owned())),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(VolumeReason::BadPath(path.to_owned()));
    }
    Ok(out)
}

fn file_mode(mode: Option<i32>, default: u32) -> Result<u32, VolumeReason> {
    match mode {
        None => Ok(default),
        Some(m) if (0..=0o777).contains(&m) => Ok(m as u32),
        Some(m) => Err(VolumeReason::BadMode(m)),
    }
}

fn default_mode(mode: Option<i32>) -> Result<u32, VolumeReason> {
    file_mode(mode, 0o644)
}

/// Writes `data` as files: every key, or only `items` (each with its own path and mode). A
/// missing object or key is excused only by `optional`.
fn keyed_files(
    files: &mut Files,
    object: &str,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    mode: u32,
) -> Result<(), VolumeReason> {
    let Some(data) = data else { return Ok(()) };
    match items {
        None => {
            for (key, value) in data {
                files.add(&key, value, mode)?;
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(value) => {
                        files.add(&item.path, value.clone(), file_mode(item.mode, mode)?)?
                    }
                    None if optional => {}
                    None => {
                        return Err(VolumeReason::KeyNotFound {
                            object: object.to_owned(),
                            key: item.key.clone(),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

fn secret_files(
    files: &mut Files,
    sources: &Sources<'_>,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: u32,
) -> Result<(), VolumeReason> {
    let optional = optional == Some(true);
    let data = match sources
        .objects
        .secret(namespace, name)
        .map_err(VolumeReason::Lookup)?
    {
        Some(secret) => Some(env::secret_data(&secret)),
        None if optional => None,
        None => return Err(VolumeReason::SecretNotFound(name.to_owned())),
    };
    keyed_files(
        files,
        &format!("Secret {name}"),
        data,
        items,
        optional,
        mode,
    )
}

fn config_map_files(
    files: &mut Files,
    sources: &Sources<'_>,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: u32,
) -> Result<(), VolumeReason> {
    let optional = optional == Some(true);
    let data = match sources
        .objects
        .config_map(namespace, name)
        .map_err(VolumeReason::Lookup)?
    {
        Some(cm) => {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .binary_data
                .into_iter()
                .flatten()
                .map(|(k, v)| (k, v.0))
                .collect();
            data.extend(
                cm.data
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k, v.into_bytes())),
            );
            Some(data)
        }
        None if optional => None,
        None => return Err(VolumeReason::ConfigMapNotFound(name.to_owned())),
    };
    keyed_files(
        files,
        &format!("ConfigMap {name}"),
        data,
        items,
        optional,
        mode,
    )
}

fn downward_files(
    files: &mut Files,
    pod: &Pod,
    allocatable: &Allocatable,
    items: Option<&[DownwardAPIVolumeFile]>,
    mode: u32,
) -> Result<(), VolumeReason> {
    for item in items.into_iter().flatten() {
        let value = if let Some(f) = &item.field_ref {
            env::field_value(pod, f, true)?
        } else if let Some(r) = &item.resource_field_ref {
            env::resource_value(pod, None, r, allocatable)?
        } else {
            return Err(VolumeReason::Field(env::Reason::EmptySource));
        };
        files.add(&item.path, value.into_bytes(), file_mode(item.mode, mode)?)?;
    }
    Ok(())
}

fn unsupported_kind(v: &k8s_openapi::api::core::v1::Volume) -> &'static str {
    if v.host_path.is_some() {
        "hostPath"
    } else if v.csi.is_some() {
        "csi"
    } else if v.image.is_some() {
        "image"
    } else if v.nfs.is_some() {
        "nfs"
    } else {
        "this kind of"
    }
}
