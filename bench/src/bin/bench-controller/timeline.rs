//! `BENCH_TIMELINE=1`: where the machine's CPU goes while the clusters converge, every 5 s.
//!
//! The controller shares two cores with the whole control plane; this shows which process is
//! busy when (and how far the clusters have got), to tell the controller's cost from the
//! cascade of pods and volumes its StatefulSets set off.

use crate::progress::{AbortOnDrop, Progress};
use std::time::{Duration, Instant};

/// The processes worth watching, by their `comm` name (15 characters at most).
const PROCESSES: [&str; 6] = [
    "kube-apiserver",
    "etcd",
    "kube-controller",
    "kube-scheduler",
    "kwok",
    "controller",
];

pub fn enabled() -> bool {
    std::env::var("BENCH_TIMELINE").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn pids() -> Vec<Option<u32>> {
    let mut found = vec![None; PROCESSES.len()];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if let Some(i) = PROCESSES.iter().position(|p| *p == comm.trim_end()) {
            found[i] = Some(pid);
        }
    }
    found
}

/// Prints a line every 5 s until aborted: elapsed time, clusters reconciled and running, and the
/// CPU seconds each process used in the interval.
pub fn spawn(progress: &Progress, started: Instant) -> Option<AbortOnDrop> {
    if !enabled() {
        return None;
    }
    let counts = progress.receiver();
    let pids = pids();
    let cpu = move || -> Vec<f64> {
        pids.iter()
            .map(|p| p.map(bench::procstat::cpu_seconds).unwrap_or(0.0))
            .collect()
    };
    println!(
        "    time  reconciled  running  CPU s per 5 s: {}",
        PROCESSES.join(" / ")
    );
    let task = tokio::spawn(async move {
        let mut before = cpu();
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let now = cpu();
            let used: Vec<String> = now
                .iter()
                .zip(&before)
                .map(|(n, b)| format!("{:.1}", n - b))
                .collect();
            let c = *counts.borrow();
            println!(
                "  {:5.1}s  {:10}  {:7}  {}",
                started.elapsed().as_secs_f64(),
                c.reconciled,
                c.running,
                used.join(" / ")
            );
            before = now;
        }
    });
    Some(AbortOnDrop::new(task))
}
