//! Writing a [`VolumePlan`] to disk.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{ApplyError, Mount, VolumeKind, VolumePlan};

/// Writes a plan: folders, then files by temp file and rename, then removes files a managed
/// volume no longer has (a key dropped from a Secret). Files whose content and mode are already
/// right are left alone, so rewriting an unchanged plan every sync costs no renames.
pub fn apply(plan: &VolumePlan, mounts: &[Mount]) -> Result<(), ApplyError> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ApplyError { path, source }
    };
    for volume in &plan.volumes {
        let dir = &volume.host_dir;
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(at(dir))?;
            let mode = if volume.kind == VolumeKind::Managed {
                0o755
            } else {
                0o777
            };
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(at(dir))?;
            chgrp(dir, plan.fs_group).map_err(at(dir))?;
        }
        for file in &volume.files {
            let target = dir.join(&file.path);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(at(parent))?;
            }
            let mode = file.mode | if plan.fs_group.is_some() { 0o440 } else { 0 };
            write_atomically(&target, &file.content, mode, plan.fs_group).map_err(at(&target))?;
        }
        if volume.kind == VolumeKind::Managed {
            let keep: BTreeSet<PathBuf> = volume.files.iter().map(|f| dir.join(&f.path)).collect();
            prune(dir, &keep).map_err(at(dir))?;
        }
    }
    for mount in mounts.iter().filter(|m| m.create_dir) {
        if !mount.host_path.exists() {
            fs::create_dir_all(&mount.host_path).map_err(at(&mount.host_path))?;
            fs::set_permissions(&mount.host_path, fs::Permissions::from_mode(0o777))
                .map_err(at(&mount.host_path))?;
        }
    }
    Ok(())
}

fn write_atomically(
    target: &Path,
    content: &[u8],
    mode: u32,
    group: Option<u32>,
) -> std::io::Result<()> {
    if let Ok(meta) = fs::symlink_metadata(target)
        && meta.is_file()
        && meta.permissions().mode() & 0o7777 == mode
        && fs::read(target).is_ok_and(|old| old == content)
    {
        return Ok(());
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = target.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
        chgrp(&tmp, group)?;
        if fs::symlink_metadata(target).is_ok_and(|m| m.is_dir()) {
            fs::remove_dir_all(target)?;
        }
        fs::rename(&tmp, target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn chgrp(path: &Path, group: Option<u32>) -> std::io::Result<()> {
    match group {
        Some(gid) => std::os::unix::fs::chown(path, None, Some(gid)),
        None => Ok(()),
    }
}

/// Removes what is not in `keep` (nor a folder on the way to something kept); returns whether
/// `dir` ended up empty.
fn prune(dir: &Path, keep: &BTreeSet<PathBuf>) -> std::io::Result<bool> {
    let mut empty = true;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            if prune(&path, keep)? && !keep.iter().any(|k| k.starts_with(&path)) {
                fs::remove_dir(&path)?;
            } else {
                empty = false;
            }
        } else if keep.contains(&path) {
            empty = false;
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(empty)
}
