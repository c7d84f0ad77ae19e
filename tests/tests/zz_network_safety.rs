//! Network safety: no process of the project connected outside 127.0.0.0/8.
//!
//! `scripts/netwatch.sh` (started by `scripts/up.sh`) samples every socket of the machine
//! every 200 ms and records those whose peer is not a loopback address. This test runs last
//! (test binaries run in name order) and fails if any recorded socket belongs to a process of
//! ours: the control plane, kubectl, helm, PostgreSQL or a test binary.

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
    let mut bad = Vec::new();
    for line in log.lines() {
        let procs = line.split_whitespace().next().unwrap_or("");
        if procs.split(',').any(ours) {
            bad.push(line);
        } else {
            eprintln!("note: non-loopback socket of another process: {line}");
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
