//! The test world: what runs behind the kwok nodes' pods on this machine.
//!
//! kwok marks pods Running and Ready but runs nothing. The pod runner built from this crate
//! plays the kubelet for the containers it knows how to run: Spilo images become a real Patroni
//! and PostgreSQL, the operator's own images the locally built binaries. Everything stays on
//! loopback (pod IPs are in 127.10.0.0/16 or the checkout's own range).
//!
//! The modules are pure where they can be (environment resolution, volume plans, Patroni's
//! configuration from a Spilo environment) and unit-tested; the supervisor runs processes.

pub mod env;
pub mod majors;
pub mod runner;
pub mod spilo;
pub mod supervisor;
pub mod upgrade;
pub mod volumes;

/// For tests that write an executable and run it: another test thread that forks while the file
/// is still open for writing makes the kernel refuse to run it ("Text file busy", until the
/// forked child execs); such a run is tried again.
#[cfg(test)]
pub(crate) fn output_retrying(
    mut command: impl FnMut() -> std::process::Command,
) -> std::process::Output {
    let busy = |e: &std::io::Error| e.kind() == std::io::ErrorKind::ExecutableFileBusy;
    for _ in 0..50 {
        match command().output() {
            Err(e) if busy(&e) => {}
            Ok(out) if String::from_utf8_lossy(&out.stderr).contains("Text file busy") => {}
            result => return result.expect("the command runs"),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    command().output().expect("the command runs")
}
