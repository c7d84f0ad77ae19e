//! PostgreSQL major versions: supported ones, no downgrades, upgrades that will not run, clones.

use super::Verdict;
use crate::config::Config;
use crate::crd::Postgresql;
use crate::patterns::SUPPORTED_MAJOR_VERSIONS;

fn major(version: &str) -> Option<u32> {
    version.trim().parse().ok()
}

/// Checks `spec.postgresql.version` of a new or changed manifest.
///
/// Zalando silently keeps running the old major when a manifest lowers it, and silently does not
/// upgrade when upgrades are off; both become explicit here.
pub fn check_version(config: &Config, old: Option<&Postgresql>, new: &Postgresql) -> Verdict {
    check_version_from(config, old.map(|o| o.spec.postgresql.version.as_str()), new)
}

/// [`check_version`] given only the old object's version.
pub fn check_version_from(config: &Config, old_version: Option<&str>, new: &Postgresql) -> Verdict {
    let mut v = Verdict::default();
    let field = "spec.postgresql.version";
    let version = &new.spec.postgresql.version;
    let unchanged = old_version == Some(version.as_str());
    if !SUPPORTED_MAJOR_VERSIONS.contains(&version.as_str()) && unchanged {
        // Like the API server's validation ratcheting: a stored value that is no longer
        // supported does not block unrelated changes (such as the delete annotations).
        v.warn(format!(
            "spec.postgresql.version {version:?} is no longer supported; upgrade to one of {}",
            SUPPORTED_MAJOR_VERSIONS.join(", ")
        ));
        return v;
    }
    if !SUPPORTED_MAJOR_VERSIONS.contains(&version.as_str()) {
        v.deny(
            "version",
            field,
            format!(
                "{version:?} is not a supported major version; use one of {}",
                SUPPORTED_MAJOR_VERSIONS.join(", ")
            ),
        );
        return v;
    }
    let Some(old_version) = old_version else {
        return v;
    };
    match (major(old_version), major(version)) {
        (Some(before), Some(after)) if after < before => v.deny(
            "version",
            field,
            format!("cannot lower the major version from {before} to {after}; PostgreSQL data cannot be downgraded in place (clone into a new cluster instead)"),
        ),
        (Some(before), Some(after)) if after > before => {
            let upgrade = &config.major_version_upgrade;
            let team_allowed = upgrade.major_version_upgrade_team_allow_list.iter().any(|t| t == &new.spec.team_id);
            if upgrade.major_version_upgrade_mode == "off" && !team_allowed {
                v.warn(format!(
                    "spec.postgresql.version raised from {before} to {after}, but major_version_upgrade_mode is off and team {:?} is not in major_version_upgrade_team_allow_list: no upgrade will run and the cluster keeps running {before}",
                    new.spec.team_id
                ));
            } else if let Some(windows) = windows(config, new) {
                v.warn(format!(
                    "spec.postgresql.version raised from {before} to {after}: the pods' rolling update and the in-place upgrade run only inside the maintenance windows ({windows})"
                ));
            }
        }
        _ => {}
    }
    v
}

/// The maintenance windows that gate an upgrade of `pg`, as written; `None` when none does.
fn windows(config: &Config, pg: &Postgresql) -> Option<String> {
    if !config.enable_maintenance_windows {
        return None;
    }
    let windows = match pg.spec.maintenance_windows.as_deref() {
        Some(w) if !w.is_empty() => w,
        _ => &config.maintenance_windows,
    };
    (!windows.is_empty()).then(|| windows.join(", "))
}

/// A clone used as an upgrade path must not declare an older major than its source.
/// `source_version` is `None` when the source cluster could not be looked up.
pub fn check_clone_version(new: &Postgresql, source_version: Option<&str>) -> Verdict {
    let mut v = Verdict::default();
    let Some(clone) = &new.spec.clone else {
        return v;
    };
    let version = &new.spec.postgresql.version;
    match source_version {
        None => v.warn(format!(
            "could not look up the clone source {:?} to compare versions; make sure spec.postgresql.version {version} is not older than the source's",
            clone.cluster
        )),
        Some(source) => {
            if let (Some(src), Some(own)) = (major(source), major(version))
                && own < src
            {
                v.deny(
                    "clone-version",
                    "spec.postgresql.version",
                    format!("{own} is older than version {src} of the clone source {:?}; a clone must run the same or a newer major version", clone.cluster),
                );
            }
        }
    }
    v
}
