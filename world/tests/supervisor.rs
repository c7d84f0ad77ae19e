//! The supervisor with real short processes. Every wait is bounded; nothing sleeps blindly.
//! Tests that need root (PID namespaces, changing user) say so and pass vacuously otherwise.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use world::supervisor::{
    Backoff, ContainerSpec, Isolation, RestartPolicy, State, Supervisor, User, find_executable,
    log_path,
};

const WAIT: Duration = Duration::from_secs(20);

fn root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("SKIPPED: needs root (PID namespaces, setpriv)");
    }
    root
}

fn spec(dir: &Path, script: &str, isolation: Isolation) -> ContainerSpec {
    ContainerSpec {
        name: "c".into(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("FOO".into(), "bar baz".into()),
        ],
        working_dir: Some(dir.join("work")),
        user: None,
        log_dir: dir.join("logs"),
        restart_policy: RestartPolicy::Never,
        grace_period: Duration::from_secs(5),
        backoff: Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_millis(400),
            reset_after: Duration::from_secs(60),
        },
        isolation,
    }
}

/// Polls `f` until it holds, at most `WAIT`.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn children(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = stat[stat.find('(').unwrap() + 1..close].to_string();
        let mut fields = stat[close + 1..].split_whitespace();
        let state = fields.next().unwrap_or("");
        if fields.next().and_then(|s| s.parse().ok()) == Some(pid) && state != "Z" {
            out.push((p, comm));
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .is_some_and(|i| !s[i + 1..].trim_start().starts_with('Z'))
    })
}

async fn killing_main_process_kills_the_tree(isolation: Isolation) {
    let tmp = tempfile::tempdir().unwrap();
    let sup = Supervisor::start(spec(
        tmp.path(),
        "sleep 1000 & sleep 1000 & wait",
        isolation,
    ));
    let status = sup.wait_for(WAIT, |s| s.is_running()).await.unwrap();
    let main = status.pid().expect("main pid known");
    let mut sleeps = Vec::new();
    eventually("two sleeps", || {
        sleeps = children(main)
            .into_iter()
            .filter(|(_, c)| c == "sleep")
            .map(|(p, _)| p)
            .collect();
        sleeps.len() == 2
    })
    .await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(main as i32), Signal::SIGKILL).unwrap();
    let status = sup
        .wait_for(WAIT, |s| s.terminated().is_some())
        .await
        .unwrap();
    let t = status.terminated().unwrap();
    assert_eq!(
        (t.exit_code, t.signal, t.reason.as_str()),
        (137, Some(9), "Error")
    );
    eventually("no sleep of the container left", || {
        sleeps.iter().all(|p| !alive(*p))
    })
    .await;
    sup.stop().await;
}

#[tokio::test]
async fn pid_namespace_dies_as_a_whole() {
    if root() {
        killing_main_process_kills_the_tree(Isolation::PidNamespace).await;
    }
}

#[tokio::test]
async fn process_group_dies_as_a_whole() {
    killing_main_process_kills_the_tree(Isolation::ProcessGroup).await;
}

#[tokio::test]
async fn main_process_is_pid_1_and_escapees_die_too() {
    if !root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // setsid: what the postmaster does, and what a process group cannot hold.
    let script = "echo pid=$$; setsid sleep 1000 & exit 3";
    let sup = Supervisor::start(spec(tmp.path(), script, Isolation::PidNamespace));
    let status = sup
        .wait_for(WAIT, |s| s.terminated().is_some())
        .await
        .unwrap();
    assert_eq!(status.terminated().unwrap().exit_code, 3);
    assert_eq!(fs::read_to_string(sup.log_path(false)).unwrap(), "pid=1\n");
    let leftovers = || {
        fs::read_dir("/proc").unwrap().flatten().any(|e| {
            fs::read_to_string(e.path().join("cmdline")).is_ok_and(|c| c == "sleep\u{0}1000\u{0}")
                && fs::read_link(e.path().join("cwd")).is_ok_and(|d| d.starts_with(tmp.path()))
        })
    };
    eventually("the setsid'd sleep to die", || !leftovers()).await;
}

#[tokio::test]
async fn environment_working_dir_and_user() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(
        tmp.path(),
        "echo \"$FOO|$HOME|$(pwd)|$(id -u):$(id -g):$(id -G)\"",
        Isolation::best(),
    );
    let as_nobody = root();
    if as_nobody {
        s.user = Some(User {
            uid: 65534,
            gid: 65534,
            groups: vec![],
        });
        fs::create_dir_all(&s.log_dir).unwrap();
    }
    let sup = Supervisor::start(s);
    let status = sup
        .wait_for(WAIT, |s| s.terminated().is_some())
        .await
        .unwrap();
    assert_eq!(status.terminated().unwrap().reason, "Completed");
    let log = fs::read_to_string(sup.log_path(false)).unwrap();
    let work = tmp.path().join("work");
    let who = if as_nobody {
        "65534:65534:65534".to_string()
    } else {
        log.rsplit('|').next().unwrap().trim().to_string()
    };
    // The runner's own environment (HOME) does not leak in.
    assert_eq!(log, format!("bar baz||{}|{who}\n", work.display()));
}

#[tokio::test]
async fn restarts_with_backoff_and_keeps_previous_log() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(
        tmp.path(),
        "n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; echo run $n; exit 1",
        Isolation::best(),
    );
    s.restart_policy = RestartPolicy::Always;
    let sup = Supervisor::start(s);
    // Run 1 exits, run 2 starts at once, run 2 exits, then back-off.
    let status = sup
        .wait_for(WAIT, |s| s.waiting_reason() == Some("CrashLoopBackOff"))
        .await
        .unwrap();
    assert_eq!(status.restart_count, 1);
    assert_eq!(status.last_state.as_ref().map(|t| t.exit_code), Some(1));
    let State::Waiting {
        message: Some(message),
        ..
    } = &status.state
    else {
        panic!("{status:?}")
    };
    assert!(
        message.contains("back-off 0.2s restarting failed container=c"),
        "{message}"
    );
    let started = Instant::now();
    let status = sup.wait_for(WAIT, |s| s.restart_count == 2).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "restarted before the back-off"
    );
    assert!(status.last_state.is_some());
    // The delay doubles (0.4s is the max here).
    let status = sup
        .wait_for(WAIT, |s| {
            s.restart_count == 2 && s.waiting_reason().is_some()
        })
        .await
        .unwrap();
    let State::Waiting {
        message: Some(message),
        ..
    } = &status.state
    else {
        panic!("{status:?}")
    };
    assert!(message.contains("back-off 0.4s"), "{message}");
    assert_eq!(fs::read_to_string(sup.log_path(true)).unwrap(), "run 2\n");
    assert_eq!(fs::read_to_string(sup.log_path(false)).unwrap(), "run 3\n");
    let status = sup.stop().await;
    assert!(status.terminated().is_some(), "{status:?}");
}

#[tokio::test]
async fn on_failure_stops_after_success() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(
        tmp.path(),
        "if [ -e ran ]; then echo second; exit 0; fi; touch ran; echo first; exit 2",
        Isolation::best(),
    );
    s.restart_policy = RestartPolicy::OnFailure;
    let sup = Supervisor::start(s);
    let status = sup
        .wait_for(WAIT, |s| s.terminated().is_some())
        .await
        .unwrap();
    assert_eq!(status.restart_count, 1);
    assert_eq!(status.terminated().unwrap().reason, "Completed");
    assert_eq!(status.last_state.as_ref().unwrap().exit_code, 2);
    assert_eq!(fs::read_to_string(sup.log_path(true)).unwrap(), "first\n");
    assert_eq!(
        fs::read_to_string(log_path(&tmp.path().join("logs"), false)).unwrap(),
        "second\n"
    );
}

#[tokio::test]
async fn graceful_stop_delivers_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let script = "trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.05; done";
    let sup = Supervisor::start(spec(tmp.path(), script, Isolation::best()));
    sup.wait_for(WAIT, |s| s.is_running()).await.unwrap();
    let log = sup.log_path(false);
    eventually("the trap to be set", || {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("ready"))
    })
    .await;
    let started = Instant::now();
    let status = sup.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "SIGTERM was not delivered"
    );
    assert_eq!(status.terminated().unwrap().exit_code, 0);
    assert!(fs::read_to_string(&log).unwrap().contains("got TERM"));
}

#[tokio::test]
async fn sigkill_after_the_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(
        tmp.path(),
        "trap '' TERM; echo ready; while :; do sleep 0.05; done",
        Isolation::best(),
    );
    s.grace_period = Duration::from_millis(300);
    let sup = Supervisor::start(s);
    sup.wait_for(WAIT, |s| s.is_running()).await.unwrap();
    let log = sup.log_path(false);
    eventually("the trap to be set", || {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("ready"))
    })
    .await;
    let started = Instant::now();
    let status = sup.stop().await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "killed before the grace period"
    );
    let t = status.terminated().unwrap();
    assert_eq!((t.exit_code, t.signal), (137, Some(9)));
}

#[tokio::test]
async fn signal_reaches_the_main_process() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(
        tmp.path(),
        "trap 'exit 7' USR1; while :; do sleep 0.05; done",
        Isolation::best(),
    );
    s.restart_policy = RestartPolicy::OnFailure;
    let sup = Supervisor::start(s);
    sup.wait_for(WAIT, |s| s.is_running()).await.unwrap();
    // The trap may not be set yet: resend until the run ends.
    let deadline = Instant::now() + WAIT;
    while sup.status().restart_count == 0 {
        assert!(Instant::now() < deadline);
        sup.signal(Signal::SIGUSR1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = sup.wait_for(WAIT, |s| s.restart_count == 1).await.unwrap();
    assert_eq!(status.last_state.unwrap().exit_code, 7);
    sup.stop_with(Duration::ZERO).await;
}

#[tokio::test]
async fn start_errors_name_the_executable() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(tmp.path(), "", Isolation::best());
    s.argv = vec!["no-such-program".into()];
    let sup = Supervisor::start(s.clone());
    let status = sup
        .wait_for(WAIT, |s| s.terminated().is_some())
        .await
        .unwrap();
    let t = status.terminated().unwrap();
    assert_eq!((t.exit_code, t.reason.as_str()), (128, "StartError"));
    assert_eq!(
        t.message.as_deref(),
        Some("exec: \"no-such-program\": executable file not found in $PATH")
    );

    s.argv = vec!["/nonexistent/postgres".into()];
    s.restart_policy = RestartPolicy::Always;
    let sup = Supervisor::start(s);
    let status = sup
        .wait_for(WAIT, |s| s.waiting_reason() == Some("CrashLoopBackOff"))
        .await
        .unwrap();
    let last = status.last_state.unwrap();
    assert_eq!(last.reason, "StartError");
    assert!(last.message.unwrap().contains("/nonexistent/postgres"));
    sup.stop().await;
}

#[test]
fn executable_lookup() {
    assert_eq!(
        find_executable("sh", Some("/nonexistent:/bin")).unwrap(),
        Path::new("/bin/sh")
    );
    assert_eq!(
        find_executable("/bin/sh", None).unwrap(),
        Path::new("/bin/sh")
    );
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    fs::write(&plain, "x").unwrap();
    assert!(
        find_executable(plain.to_str().unwrap(), None)
            .unwrap_err()
            .contains("permission denied")
    );
    assert_eq!(
        find_executable("", None).unwrap_err(),
        "no command specified"
    );
}

#[tokio::test]
async fn dropping_the_supervisor_kills_the_container() {
    let tmp = tempfile::tempdir().unwrap();
    let sup = Supervisor::start(spec(tmp.path(), "sleep 1000", Isolation::best()));
    let pid = sup
        .wait_for(WAIT, |s| s.is_running())
        .await
        .unwrap()
        .pid()
        .unwrap();
    drop(sup);
    eventually("the container to die with its supervisor", || !alive(pid)).await;
}

#[test]
fn restart_policy_from_pod() {
    assert_eq!(RestartPolicy::from_pod(None), RestartPolicy::Always);
    assert_eq!(
        RestartPolicy::from_pod(Some("OnFailure")),
        RestartPolicy::OnFailure
    );
    assert_eq!(RestartPolicy::from_pod(Some("Never")), RestartPolicy::Never);
    assert_eq!(Backoff::default().max, Duration::from_secs(300));
}
