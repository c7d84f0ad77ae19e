//! Claims' folders follow their claims. A claim's data lives in `<state>/pvcs/<claim uid>` (see
//! [`crate::volumes`]); when the claim is gone and its volume was not to be retained, the folder
//! is removed, as the provisioner deletes a released volume whose reclaim policy is `Delete`
//! (the default of dynamically provisioned volumes). Without this, every deleted cluster left its
//! databases on the disk.
//!
//! The watch's initial listing also removes the folders of claims deleted while the runner was
//! down (folders untouched for a minute whose uid no claim has, so a claim created during the
//! listing keeps its fresh folder).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_claims};

/// A folder younger than this is never taken for a leftover of a claim the listing missed.
const FRESH: Duration = Duration::from_secs(60);

/// Whether the volume bound to `claim` is to be kept after the claim (reclaim policy `Retain`).
async fn retained(client: &Client, claim: &PersistentVolumeClaim) -> bool {
    let Some(volume) = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) else {
        return false;
    };
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    match volumes.get_opt(volume).await {
        Ok(Some(pv)) => pv
            .spec
            .and_then(|s| s.persistent_volume_reclaim_policy)
            .is_some_and(|p| p == "Retain"),
        Ok(None) => false,
        // Unknown: keep the data rather than lose it.
        Err(e) => {
            tracing::warn!(volume, error = %e, "reclaim policy unknown; keeping the claim's folder");
            true
        }
    }
}

fn remove(dir: &Path, why: &str) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => tracing::info!(folder = %dir.display(), "{why}: claim's folder removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(folder = %dir.display(), error = %e, "removing a claim's folder failed")
        }
    }
}

/// The folders under `root` named by no uid of `known` and untouched for [`FRESH`].
pub fn leftovers(root: &Path, known: &BTreeSet<String>, now: SystemTime) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| !known.contains(e.file_name().to_string_lossy().as_ref()))
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= FRESH)
        })
        .map(|e| e.path())
        .collect()
}

/// Watches claims until the stream ends, removing the folders of deleted ones under `root`.
pub async fn collect(client: Client, root: PathBuf) -> anyhow::Result<()> {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let mut events =
        std::pin::pin!(watch_claims(claims, watcher::Config::default()).default_backoff());
    let mut listed: BTreeSet<String> = BTreeSet::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(claim)) => listed.extend(claim.metadata.uid),
            Ok(Event::InitDone) => {
                for dir in leftovers(&root, &listed, SystemTime::now()) {
                    remove(&dir, "no such claim");
                }
            }
            Ok(Event::Apply(_)) => {}
            Ok(Event::Delete(claim)) => {
                let Some(uid) = claim.metadata.uid.as_deref() else {
                    continue;
                };
                let dir = root.join(uid);
                if !dir.exists() {
                    continue;
                }
                if retained(&client, &claim).await {
                    tracing::info!(folder = %dir.display(), "claim deleted; its volume is retained");
                } else {
                    remove(&dir, "claim deleted");
                }
            }
            Err(e) => tracing::warn!(error = %e, "claim watch failed; retrying"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_old_folders_of_unknown_claims() {
        let root = std::env::temp_dir().join(format!("claims-test-{}", std::process::id()));
        for uid in ["known", "gone"] {
            std::fs::create_dir_all(root.join(uid)).unwrap();
        }
        let known: BTreeSet<String> = ["known".to_string()].into();
        let now = SystemTime::now();
        assert!(
            leftovers(&root, &known, now).is_empty(),
            "fresh folders stay"
        );
        let later = now + FRESH + Duration::from_secs(1);
        assert_eq!(leftovers(&root, &known, later), vec![root.join("gone")]);
        std::fs::remove_dir_all(&root).unwrap();
        assert!(
            leftovers(&root, &known, later).is_empty(),
            "no root, nothing"
        );
    }
}
