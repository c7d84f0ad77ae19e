//! The database connections the controller holds, counted from `/proc`: its established TCP
//! sockets to port 5432 (the socket inodes of `/proc/<pid>/fd` found in `/proc/<pid>/net/tcp`),
//! sampled every [`EVERY`] on a thread of its own. The operator's connections are short (one
//! catalog read), so a sample can miss one: the peak is a lower bound of the true peak.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const EVERY: Duration = Duration::from_millis(20);

/// Port 5432 as `/proc/net/tcp` writes it.
const PG_PORT_HEX: &str = ":1538";
/// TCP_ESTABLISHED.
const ESTABLISHED: &str = "01";

/// The controller's established connections to port 5432 now.
pub fn count(pid: u32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let inodes: HashSet<String> = fds
        .flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            let t = target.to_str()?;
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    if inodes.is_empty() {
        return 0;
    }
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).ok())
        .map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|line| {
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    cols.len() > 9
                        && cols[2].ends_with(PG_PORT_HEX)
                        && cols[3] == ESTABLISHED
                        && inodes.contains(cols[9])
                })
                .count()
        })
        .sum()
}

/// A running sampler: the highest count seen since the last [`Sampler::take_peak`].
pub struct Sampler {
    peak: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Sampler {
    pub fn start(pid: u32) -> Sampler {
        let peak = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut samples = 0u64;
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(count(pid), Ordering::Relaxed);
                samples += 1;
                std::thread::sleep(EVERY);
            }
            samples
        });
        Sampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// The peak since the last call (or the start), and a new period begins.
    pub fn take_peak(&self) -> usize {
        self.peak.swap(0, Ordering::Relaxed)
    }

    /// Stops sampling; how many samples were taken.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The sampling period, for the report.
pub fn every() -> Duration {
    EVERY
}
