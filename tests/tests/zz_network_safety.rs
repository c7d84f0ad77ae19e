//! Network safety: no process of the project connected outside 127.0.0.0/8.
//!
//! `scripts/netwatch.sh` (started by `scripts/up.sh`) samples every socket of the machine
//! every 200 ms and records those whose peer is not a loopback address. This test runs last
//! (test binaries run in name order) and fails if any recorded socket belongs to a process of
//! ours: the control plane, kubectl, helm, the pod runner, Patroni, PostgreSQL or a test binary.
//!
//! Other checkouts may run their own control planes beside this one (see `scripts/lib.sh`,
//! slots), and every watcher sees every socket of the machine. netwatch records each process's
//! working directory; a process that ran inside another checkout of this project is that
//! checkout's concern (its own watcher and test report it). One of unknown origin counts as ours.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use e2e::{cluster, paths, skip};

/// Process names (as `ss` shows them: at most 15 characters) that belong to the project.
fn ours(name: &str) -> bool {
    const FIXED: &[&str] = &[
        "etcd",
        "kube-apiserver",
        "kube-controller",
        "kube-scheduler",
        "kwok",
        "kubectl",
        "helm",
        "postgres",
        "bench-capacity",
        "webhook",
        "controller",
        // The pod runner and what it runs behind Spilo pods.
        "pod-runner",
        "patroni",
        "pg_basebackup",
        "pg_rewind",
        "psql",
    ];
    if FIXED.contains(&name) {
        return true;
    }
    // Test binaries are named <file stem>-<hash>.
    let stems: Vec<String> = std::fs::read_dir(paths::repo_root().join("tests/tests"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.path()
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    stems.iter().any(|s| {
        let prefix: String = format!("{s}-").chars().take(15).collect();
        name.starts_with(&prefix) || name == s.chars().take(15).collect::<String>()
    })
}

/// The checkout of this project that `cwd` lies in: the nearest ancestor with `scripts/netwatch.sh`.
fn checkout_of(cwd: &Path) -> Option<PathBuf> {
    cwd.ancestors()
        .find(|d| d.join("scripts/netwatch.sh").is_file())
        .map(|d| d.canonicalize().unwrap_or_else(|_| d.to_path_buf()))
}

/// Whether a netwatch line (`... cwd=<dir>`) comes from a process of another checkout.
fn other_checkout(line: &str, here: &Path) -> bool {
    let Some((_, cwd)) = line.rsplit_once(" cwd=") else {
        return false;
    };
    if cwd == "?" {
        return false;
    }
    checkout_of(Path::new(cwd)).is_some_and(|c| c != here)
}

#[tokio::test]
async fn no_project_socket_left_loopback() -> Result<()> {
    let _c = cluster().await?;
    let local = paths::local_dir();
    let pid = std::fs::read_to_string(local.join("pids/netwatch.pid")).unwrap_or_default();
    let alive =
        !pid.trim().is_empty() && std::path::Path::new(&format!("/proc/{}", pid.trim())).exists();
    if !alive {
        skip!("netwatch is not running (control plane not started by scripts/up.sh?)");
    }
    let log = std::fs::read_to_string(local.join("logs/netwatch.log")).unwrap_or_default();
    let here = paths::repo_root()
        .canonicalize()
        .unwrap_or_else(|_| paths::repo_root());
    let mut bad = Vec::new();
    for line in log.lines() {
        let procs = line.split_whitespace().next().unwrap_or("");
        if !procs.split(',').any(ours) {
            eprintln!("note: non-loopback socket of another process: {line}");
        } else if other_checkout(line, &here) {
            eprintln!("note: non-loopback socket of another checkout's process: {line}");
        } else {
            bad.push(line);
        }
    }
    if !bad.is_empty() {
        bail!(
            "sockets of the project with a peer outside 127.0.0.0/8:\n{}",
            bad.join("\n")
        );
    }
    Ok(())
}

#[test]
fn sockets_are_attributed_to_their_checkout() -> Result<()> {
    let here = paths::repo_root().canonicalize()?;
    let other = std::env::temp_dir().join(format!("pgop-other-checkout-{}", std::process::id()));
    std::fs::create_dir_all(other.join("scripts"))?;
    std::fs::create_dir_all(other.join("tests"))?;
    std::fs::write(other.join("scripts/netwatch.sh"), "")?;
    let line = |cwd: &Path| {
        format!(
            "kubectl tcp 10.0.0.1:443 ESTAB @ 2025-01-01T00:00:00Z users:((\"kubectl\",pid=1,fd=3)) cwd={}",
            cwd.display()
        )
    };
    let seen = [
        // Another checkout's process (also from a subdirectory) is that checkout's concern.
        other_checkout(&line(&other), &here),
        other_checkout(&line(&other.join("tests")), &here),
        // This checkout's, an unknown working directory and one outside any checkout count as ours.
        !other_checkout(&line(&here.join("tests")), &here),
        !other_checkout(&line(Path::new("?")), &here),
        !other_checkout(&line(Path::new("/")), &here),
        !other_checkout("kubectl tcp 10.0.0.1:443 ESTAB @ t users", &here),
    ];
    std::fs::remove_dir_all(&other)?;
    assert_eq!(seen, [true; 6], "attribution per case, in order");
    Ok(())
}
