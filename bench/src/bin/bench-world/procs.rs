//! The members' processes as `/proc` shows them, and what the machine has left.
//!
//! The pod runner (`world/src/supervisor`) starts each Spilo container as PID 1 of its own PID
//! namespace: Patroni, run as `patroni <run dir>/patroni.yml`, whose file names the member
//! (`name`), its cluster (`scope`) and namespace (`kubernetes.namespace`). Every PostgreSQL
//! process of the member lives in that PID namespace, so a member is "the processes whose
//! `/proc/<pid>/ns/pid` is its Patroni's". The runner's own reaper process outside the
//! namespace (a forked copy of the runner) is not counted. Reading another user's `environ`,
//! `ns/pid` and `smaps_rollup` needs root, which the runner needs anyway.

use bench::procstat::{cpu_seconds_with_children, status_field as kib};
use std::collections::HashMap;
use std::fs;

#[derive(Debug, Clone)]
pub struct Member {
    pub namespace: String,
    pub cluster: String,
    pub pod: String,
    /// Patroni, the namespace's PID 1, as this machine sees it.
    pub init_pid: u32,
    pub pids: Vec<u32>,
}

/// What a set of processes uses right now.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub processes: usize,
    pub rss_kib: u64,
    /// Proportional set size: shared pages (shared_buffers, libraries) divided among sharers.
    pub pss_kib: u64,
    /// utime + stime, with those of children already reaped (cutime + cstime), in seconds.
    pub cpu_seconds: f64,
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, o: Usage) -> Usage {
        Usage {
            processes: self.processes + o.processes,
            rss_kib: self.rss_kib + o.rss_kib,
            pss_kib: self.pss_kib + o.pss_kib,
            cpu_seconds: self.cpu_seconds + o.cpu_seconds,
        }
    }
}

fn pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn status_field(pid: u32, field: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

fn pid_namespace(pid: u32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Every member running on this machine (of any checkout).
pub fn members() -> Vec<Member> {
    let all = pids();
    let mut found = Vec::new();
    for &pid in &all {
        let args = cmdline(pid);
        let Some(config) = args.iter().find(|a| a.ends_with("/patroni.yml")) else {
            continue;
        };
        // `python3 …/bin/patroni <config>` (the entry point is a script).
        if !args.iter().any(|a| a != config && a.ends_with("patroni")) {
            continue;
        }
        // PID 1 of its namespace: the last NSpid is 1.
        let is_init =
            status_field(pid, "NSpid").is_some_and(|v| v.split_whitespace().last() == Some("1"));
        if !is_init {
            continue;
        }
        let Ok(text) = fs::read_to_string(config) else {
            continue;
        };
        let Ok(yaml) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
            continue;
        };
        let s = |v: &serde_yaml::Value| v.as_str().unwrap_or_default().to_string();
        found.push(Member {
            namespace: s(&yaml["kubernetes"]["namespace"]),
            cluster: s(&yaml["scope"]),
            pod: s(&yaml["name"]),
            init_pid: pid,
            pids: Vec::new(),
        });
    }
    let by_ns: HashMap<String, usize> = found
        .iter()
        .enumerate()
        .filter_map(|(i, m)| Some((pid_namespace(m.init_pid)?, i)))
        .collect();
    for &pid in &all {
        if let Some(&i) = pid_namespace(pid).and_then(|ns| by_ns.get(&ns)) {
            found[i].pids.push(pid);
        }
    }
    found
}

/// The members of namespace `ns` (of cluster `cluster` when given).
pub fn members_of(ns: &str, cluster: Option<&str>) -> Vec<Member> {
    members()
        .into_iter()
        .filter(|m| m.namespace == ns && cluster.is_none_or(|c| m.cluster == c))
        .collect()
}

/// What the processes of `member` use now.
pub fn usage(member: &Member) -> Usage {
    let mut u = Usage::default();
    for &pid in &member.pids {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status.is_empty() {
            continue;
        }
        u.processes += 1;
        u.rss_kib += kib(&status, "VmRSS");
        let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        u.pss_kib += kib(&rollup, "Pss");
        u.cpu_seconds += cpu_seconds_with_children(pid);
    }
    u
}

/// `/proc/loadavg`'s three averages, as text.
pub fn load_averages() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// MemAvailable in MiB.
pub fn mem_available_mib() -> f64 {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    kib(&meminfo, "MemAvailable") as f64 / 1024.0
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
