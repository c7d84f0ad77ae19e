//! The test world's answer to Spilo's in-place major version upgrade.
//!
//! The operator upgrades a cluster as Zalando's does: it execs
//! `/usr/bin/python3 /scripts/inplace_upgrade.py <members>` in the primary's `postgres`
//! container. There is no `/scripts` on this machine, and nothing may be written outside the
//! repository and the cache, so the pod runner puts a folder holding `sitecustomize.py`
//! (`world/spilo-scripts/`) on `PYTHONPATH` of every `kubectl exec` into a Spilo container
//! ([`hook_dir`], [`install_hook`]). Python imports it before running any script; when the
//! script is Spilo's upgrade script it replaces the process with the pod runner's own binary,
//! linked beside it, as `pod-runner spilo-inplace-upgrade <members>` ([`main`]), which does
//! the upgrade with real `pg_upgrade` ([`run`]). Everything else Python runs is untouched.
//!
//! The decisions are pure ([`decide`]); the steps that touch processes, files, Patroni and the
//! API are in [`io`] and [`run`]. What it does, and where it differs from Spilo, is in the
//! README's section on the test world.

pub mod decide;
pub mod io;
mod replicas;
mod run;

use std::path::{Path, PathBuf};

/// The subcommand of `pod-runner` that runs the upgrade.
pub const SUBCOMMAND: &str = "spilo-inplace-upgrade";

/// The hook Python imports first (`world/spilo-scripts/sitecustomize.py`).
pub const SITECUSTOMIZE: &str = include_str!("../../spilo-scripts/sitecustomize.py");

/// The name the hook runs, linked to the pod runner's binary.
const PROGRAM: &str = "inplace-upgrade";

/// The folder the runner puts on `PYTHONPATH` of Spilo containers' execs (one per checkout:
/// it links to this checkout's runner).
pub fn hook_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("spilo-python")
}

/// Writes the hook and the link to `program` (the running pod runner) into `dir`, readable by
/// every user (the exec runs as the container's user).
pub fn install_hook(dir: &Path, program: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let file = dir.join("sitecustomize.py");
    let tmp = dir.join("sitecustomize.py.tmp");
    std::fs::write(&tmp, SITECUSTOMIZE)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, &file)?;
    let link = dir.join(PROGRAM);
    match std::fs::remove_file(&link) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::os::unix::fs::symlink(program, &link)
}

/// `PYTHONPATH` for a Spilo container's exec: the hook first, then the container's own.
pub fn python_path(hook: &Path, container: Option<&str>) -> String {
    match container.filter(|p| !p.is_empty()) {
        Some(own) => format!("{}:{own}", hook.display()),
        None => hook.display().to_string(),
    }
}

/// Runs the upgrade with the script's arguments; the process's exit code (0 done or nothing to
/// do, 1 refused or failed, 2 a wrong call). The last line printed is the outcome.
pub fn main(args: &[String]) -> i32 {
    match run::upgrade(args) {
        Ok(message) => {
            io::log("INFO", &message);
            0
        }
        Err(e) => {
            io::log("ERROR", &e.to_string());
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_acts_only_for_spilos_script() {
        assert!(SITECUSTOMIZE.contains(r#"sys.orig_argv[1:2] == ["/scripts/inplace_upgrade.py"]"#));
        assert!(SITECUSTOMIZE.contains(&format!("\"{PROGRAM}\"")));
        assert!(SITECUSTOMIZE.contains(&format!("\"{SUBCOMMAND}\"")));
        assert!(
            !SITECUSTOMIZE.contains("sys.exit("),
            "sys.exit in sitecustomize is fatal"
        );
    }

    #[test]
    fn python_path_puts_the_hook_first() {
        let hook = Path::new("/s/spilo-python");
        assert_eq!(python_path(hook, None), "/s/spilo-python");
        assert_eq!(python_path(hook, Some("")), "/s/spilo-python");
        assert_eq!(python_path(hook, Some("/a:/b")), "/s/spilo-python:/a:/b");
    }

    /// Python as the operator calls it: the hook runs the linked program with the script's
    /// arguments, and leaves every other script alone.
    #[test]
    fn python_runs_the_linked_program_for_the_upgrade_script_only() {
        let python = Path::new("/usr/bin/python3");
        if !python.exists() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let program = tmp.path().join("fake-runner");
        std::fs::write(&program, "#!/bin/sh\necho \"runner $*\"\nexit 3\n").unwrap();
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let hook = tmp.path().join("hook");
        install_hook(&hook, &program).unwrap();
        install_hook(&hook, &program).unwrap(); // idempotent
        let out = crate::output_retrying(|| {
            let mut command = std::process::Command::new(python);
            command
                .args(["/scripts/inplace_upgrade.py", "2"])
                .env("PYTHONPATH", python_path(&hook, None));
            command
        });
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("runner {SUBCOMMAND} 2\n")
        );
        let other = std::process::Command::new(python)
            .args(["-c", "print('plain')"])
            .env("PYTHONPATH", python_path(&hook, None))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&other.stdout), "plain\n");
        assert!(other.status.success());
    }
}
