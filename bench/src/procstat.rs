//! What Linux's `/proc` says about a process, for the benchmarks (`make bench-*`).

/// CPU seconds (user and system) process `pid` has used so far; 0 when it cannot be read.
pub fn cpu_seconds(pid: u32) -> f64 {
    cpu_seconds_of(&stat(pid), false)
}

/// As [`cpu_seconds`], with the CPU seconds of the children it has already reaped (cutime and
/// cstime): a process tree's total, counted once when its short-lived children are gone.
pub fn cpu_seconds_with_children(pid: u32) -> f64 {
    cpu_seconds_of(&stat(pid), true)
}

fn stat(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default()
}

/// The CPU seconds in one `/proc/<pid>/stat` line: utime and stime are its fields 14 and 15,
/// cutime and cstime 16 and 17, in clock ticks (100 per second on Linux). The fields are
/// counted after the command name, which may itself hold spaces and parentheses.
fn cpu_seconds_of(stat: &str, children: bool) -> f64 {
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let own = ticks(11) + ticks(12);
    let reaped = if children { ticks(13) + ticks(14) } else { 0.0 };
    (own + reaped) / 100.0
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, ...); 0 when it cannot be read.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status_field(&status, field)
}

/// A `kB` field (`name: <number> kB`) of a `/proc` text such as `status`, `smaps_rollup` or
/// `/proc/meminfo`; 0 when it is not there.
pub fn status_field(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A child process that is killed (and reaped) when dropped, so a benchmark that fails half
/// way leaves no server behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_utime_and_stime_after_an_odd_command_name() {
        let stat = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(super::cpu_seconds_of(stat, false), 3.0);
        assert_eq!(super::cpu_seconds_of("garbage", false), 0.0);
        let reaped = "42 (a) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 3 0";
        assert_eq!(super::cpu_seconds_of(reaped, true), 3.5);
    }

    #[test]
    fn reads_a_kib_field_by_its_exact_name() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(super::status_field(status, "VmRSS"), 1024);
        assert_eq!(super::status_field(status, "VmHWM"), 2048);
        assert_eq!(super::status_field(status, "Vm"), 0);
        assert_eq!(super::status_field(status, "VmSwap"), 0);
    }
}
