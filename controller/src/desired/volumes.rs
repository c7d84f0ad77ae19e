//! Volumes of the database pods and the `pgdata` claim template.

use super::{BuildError, non_empty};
use common::config::Config;
use common::crd::Postgresql;
use common::labels::{inherited_annotations, object_labels};
use common::naming::DATA_VOLUME_NAME;
use common::quantity;
use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, PersistentVolumeClaim, PersistentVolumeClaimSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Mount path of the data volume.
pub const PGDATA_PATH: &str = "/home/postgres/pgdata";
/// Name of the memory-backed /dev/shm volume.
pub const SHM_VOLUME: &str = "dshm";

/// A /dev/shm volume is mounted when the configuration or the manifest (only `true`) says so.
pub fn shm_enabled(config: &Config, pg: &Postgresql) -> bool {
    config.enable_shm_volume || pg.spec.enable_shm_volume == Some(true)
}

/// Pod volumes (besides the claim template).
pub fn pod_volumes(config: &Config, pg: &Postgresql) -> Option<Vec<Volume>> {
    let mut volumes = Vec::new();
    if shm_enabled(config, pg) {
        volumes.push(Volume {
            name: SHM_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: None,
            }),
            ..Volume::default()
        });
    }
    (!volumes.is_empty()).then_some(volumes)
}

/// Mounts of the postgres container.
pub fn postgres_mounts(config: &Config, pg: &Postgresql) -> Vec<VolumeMount> {
    let volume = &pg.spec.volume;
    let sub_path = volume.sub_path.clone().filter(|s| !s.is_empty());
    let expr = volume.is_sub_path_expr == Some(true);
    let mut mounts = vec![VolumeMount {
        name: DATA_VOLUME_NAME.into(),
        mount_path: PGDATA_PATH.into(),
        sub_path: if expr { None } else { sub_path.clone() },
        sub_path_expr: if expr { sub_path } else { None },
        ..VolumeMount::default()
    }];
    if shm_enabled(config, pg) {
        mounts.push(VolumeMount {
            name: SHM_VOLUME.into(),
            mount_path: "/dev/shm".into(),
            ..VolumeMount::default()
        });
    }
    mounts
}

/// The `pgdata` claim template (never carries owner references).
pub fn claim_template(
    config: &Config,
    pg: &Postgresql,
) -> Result<PersistentVolumeClaim, BuildError> {
    let volume = &pg.spec.volume;
    let size = quantity::canonical(&volume.size).ok_or_else(|| BuildError::InvalidQuantity {
        field: "spec.volume.size".into(),
        value: volume.size.clone(),
    })?;
    Ok(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME_NAME.into()),
            labels: Some(object_labels(config, pg)),
            annotations: non_empty(inherited_annotations(config, pg)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            volume_mode: Some("Filesystem".into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Quantity(size))].into()),
                limits: None,
            }),
            storage_class_name: volume.storage_class.clone().filter(|s| !s.is_empty()),
            selector: volume.selector.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    })
}
