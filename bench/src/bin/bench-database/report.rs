//! The compact table of the rounds, and the ratios of the last round to the first.

use std::time::Duration;

use crate::round::Round;

/// MemTotal in MiB.
pub fn mem_total_mib() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The `q` quantile (nearest rank) of sorted `v`.
fn quantile(v: &[Duration], q: f64) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()))
}

struct Summary {
    p50: Option<Duration>,
    p95: Option<Duration>,
    max: Option<Duration>,
    missing: usize,
}

fn summary(r: &Round) -> Summary {
    let mut v: Vec<Duration> = r.logins.iter().flatten().copied().collect();
    v.sort();
    Summary {
        p50: quantile(&v, 0.5),
        p95: quantile(&v, 0.95),
        max: v.last().copied(),
        missing: r.logins.len() - v.len(),
    }
}

fn per(x: f64, by: f64) -> String {
    if by > 0.0 {
        format!("{:.2}", x / by)
    } else {
        "-".into()
    }
}

fn row(label: &str, cells: impl Iterator<Item = String>) {
    let cells: Vec<String> = cells.collect();
    println!("| {label} | {} |", cells.join(" | "));
}

pub fn print(rounds: &[Round], every: Duration, window: Duration) {
    if rounds.is_empty() {
        return;
    }
    println!();
    row("clusters", rounds.iter().map(|r| r.clusters.to_string()));
    row("---", rounds.iter().map(|_| "---:".to_string()));
    row(
        "apply of the manifests",
        rounds
            .iter()
            .map(|r| format!("{:.2}s", r.apply.as_secs_f64())),
    );
    let sums: Vec<Summary> = rounds.iter().map(summary).collect();
    row(
        "apply → all roles log in, p50 / p95 / max per cluster",
        sums.iter()
            .map(|s| format!("{} / {} / {}", secs(s.p50), secs(s.p95), secs(s.max))),
    );
    row(
        "clusters not logged in within the bound",
        sums.iter().map(|s| s.missing.to_string()),
    );
    row(
        "first apply → last role logged in",
        rounds.iter().map(|r| secs(Some(r.all_logged_in))),
    );
    row(
        "… per cluster",
        rounds
            .iter()
            .map(|r| format!("{:.2}s", r.all_logged_in.as_secs_f64() / r.clusters as f64)),
    );
    let syncs = |r: &Round| r.noop.cluster_reads as f64;
    row(
        &format!(
            "no-op window ({}s): syncs (server) / reconciles (metric)",
            window.as_secs()
        ),
        rounds.iter().map(|r| {
            format!(
                "{} / {}",
                r.noop.cluster_reads,
                r.after.reconciles - r.before.reconciles
            )
        }),
    );
    row(
        "catalog read round-trips per sync (cluster + database reads)",
        rounds.iter().map(|r| {
            per(
                (r.noop.cluster_reads + r.noop.database_reads) as f64,
                syncs(r),
            )
        }),
    );
    row(
        "planned statements per sync (database_statements)",
        rounds
            .iter()
            .map(|r| per(r.after.planned - r.before.planned, syncs(r))),
    );
    row(
        "statements that are not reads, per sync (pg_stat_statements)",
        rounds.iter().map(|r| {
            let writes: i64 = r.noop.writes.values().sum();
            per(writes as f64, syncs(r))
        }),
    );
    row(
        "catalog rows rewritten in the window (all clusters)",
        rounds.iter().map(|r| r.noop.rows_changed.to_string()),
    );
    row(
        "API writes in the window",
        rounds
            .iter()
            .map(|r| format!("{}", r.after.api_writes - r.before.api_writes)),
    );
    row(
        &format!(
            "peak connections held (sampled every {} ms): converging / no-op",
            every.as_millis()
        ),
        rounds
            .iter()
            .map(|r| format!("{} / {}", r.peak_converging, r.peak_noop)),
    );
    row(
        "database_connections_peak metric",
        rounds.iter().map(|r| {
            r.peak_metric
                .map_or("not exported".into(), |v| v.to_string())
        }),
    );
    row(
        "load average before / after",
        rounds
            .iter()
            .map(|r| format!("{} / {}", r.load_before, r.load_after)),
    );
    for r in rounds {
        let measured = r.measured;
        if measured != r.clusters {
            println!(
                "({} clusters: {measured} measured in the no-op window)",
                r.clusters
            );
        }
        for (text, calls) in &r.noop.writes {
            println!("({} clusters) not a read, {calls}×: {text}", r.clusters);
        }
    }
    if let [first, .., last] = rounds {
        let (a, b) = (summary(first), summary(last));
        let ratio = |x: Option<Duration>, y: Option<Duration>| match (x, y) {
            (Some(x), Some(y)) if !x.is_zero() => {
                format!("{:.2}", y.as_secs_f64() / x.as_secs_f64())
            }
            _ => "-".into(),
        };
        let per_cluster = |r: &Round| r.all_logged_in.as_secs_f64() / r.clusters as f64;
        println!(
            "ratios {} vs {} clusters (same run): p50 login time {}, p95 {}, time per cluster {:.2}",
            last.clusters,
            first.clusters,
            ratio(a.p50, b.p50),
            ratio(a.p95, b.p95),
            per_cluster(last) / per_cluster(first)
        );
    }
}
