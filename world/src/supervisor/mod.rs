//! One container as a supervised group of local processes.
//!
//! The pod runner plays the kubelet, so a container must behave like one: it dies as a whole
//! (Patroni's postmaster calls `setsid()` and would survive its parent, leaving a writable old
//! primary behind), it is restarted with the kubelet's back-off, it is stopped with SIGTERM and
//! then SIGKILL after the grace period, and its output is kept with the previous run's.
//!
//! Containment ([`Isolation::PidNamespace`], as root): the program runs as PID 1 of a fresh PID
//! (and mount, for a private `/proc`) namespace. When PID 1 dies the kernel kills everything
//! else in the namespace, so killing the main process (or its exiting) takes the whole tree down,
//! whatever `setsid()`s happened inside. This is `unshare --pid --fork --mount-proc setpriv …`
//! done in-process: util-linux 2.38's `unshare` reports a SIGKILLed child as exit 1 and writes
//! an error into the container's log, and its `--kill-child` does not survive setpriv's UID
//! change. Here the parent-death signal is re-armed after the UID change, so a runner that dies
//! abruptly takes its containers with it (no orphaned Patroni re-labelling pods). As in a real
//! container, PID 1 only receives the SIGTERM it handles.
//! [`Isolation::ProcessGroup`] is the unprivileged fallback: a new session whose group is
//! killed, which a process that calls `setsid()` itself escapes.

mod process;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use process::find_executable;
use process::{Exit, StartError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// The pod's `spec.restartPolicy`; Kubernetes defaults it to Always.
    pub fn from_pod(policy: Option<&str>) -> Self {
        match policy {
            Some("OnFailure") => Self::OnFailure,
            Some("Never") => Self::Never,
            _ => Self::Always,
        }
    }

    fn restarts(self, exit_code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => exit_code != 0,
            Self::Never => false,
        }
    }
}

/// The kubelet's crash back-off. The first restart is immediate; each further one waits
/// `initial`, doubling up to `max`, measured from the exit. A run longer than `reset_after`
/// forgets the history. Tests shrink the times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Own PID namespace (needs root): the whole tree dies together.
    PidNamespace,
    /// Own session and process group: works unprivileged, but `setsid()` escapes it.
    ProcessGroup,
}

impl Isolation {
    /// The strongest containment this process can set up.
    pub fn best() -> Self {
        if nix::unistd::geteuid().is_root() {
            Self::PidNamespace
        } else {
            Self::ProcessGroup
        }
    }
}

/// The identity the container's processes run as (the pod's runAsUser/runAsGroup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (fsGroup, supplementalGroups); empty clears them.
    pub groups: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    /// `command` + `args`, already `$(VAR)`-expanded; the first element is the executable,
    /// looked up in the container's `PATH` when it has no `/`.
    pub argv: Vec<String>,
    /// The whole environment: nothing of the runner's own leaks in.
    pub env: Vec<(String, String)>,
    /// Created if missing, as container runtimes do.
    pub working_dir: Option<PathBuf>,
    pub user: Option<User>,
    /// Holds `current.log` and `previous.log`.
    pub log_dir: PathBuf,
    pub restart_policy: RestartPolicy,
    /// terminationGracePeriodSeconds.
    pub grace_period: Duration,
    pub backoff: Backoff,
    pub isolation: Isolation,
}

/// Why a container ended, as the kubelet reports it in `state.terminated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// The exit code, or 128 + the signal number, or 128 for a start error.
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// `Completed`, `Error` or `StartError`.
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<SystemTime>,
    pub finished_at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// `CrashLoopBackOff` between runs, `ContainerCreating` before the first.
    Waiting {
        reason: String,
        message: Option<String>,
    },
    /// `pid` is the main process as this machine sees it (PID 1 inside the namespace).
    Running {
        started_at: SystemTime,
        pid: Option<u32>,
    },
    Terminated(Termination),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    pub last_state: Option<Termination>,
    pub restart_count: u32,
}

impl Status {
    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    pub fn pid(&self) -> Option<u32> {
        match self.state {
            State::Running { pid, .. } => pid,
            _ => None,
        }
    }

    pub fn waiting_reason(&self) -> Option<&str> {
        match &self.state {
            State::Waiting { reason, .. } => Some(reason),
            _ => None,
        }
    }

    pub fn terminated(&self) -> Option<&Termination> {
        match &self.state {
            State::Terminated(t) => Some(t),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the container's status did not reach the awaited state within {0:?}")]
pub struct Timeout(pub Duration);

enum Command {
    Stop(Duration),
    Signal(Signal),
}

/// A running container. Dropping it kills the container at once; [`Supervisor::stop`] stops it
/// gracefully.
pub struct Supervisor {
    status: watch::Receiver<Status>,
    commands: mpsc::UnboundedSender<Command>,
    task: Option<JoinHandle<()>>,
    log_dir: PathBuf,
    grace_period: Duration,
}

impl Supervisor {
    /// Starts the container; must be called within a tokio runtime.
    pub fn start(spec: ContainerSpec) -> Supervisor {
        let initial = Status {
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last_state: None,
            restart_count: 0,
        };
        let (status_tx, status) = watch::channel(initial);
        let (commands, rx) = mpsc::unbounded_channel();
        let log_dir = spec.log_dir.clone();
        let grace_period = spec.grace_period;
        let task = tokio::spawn(supervise(spec, status_tx, rx));
        Supervisor {
            status,
            commands,
            task: Some(task),
            log_dir,
            grace_period,
        }
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change, for the runner's pod status writer.
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Waits until the status satisfies `pred`, at most `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl FnMut(&Status) -> bool,
    ) -> Result<Status, Timeout> {
        let mut rx = self.status.clone();
        match tokio::time::timeout(timeout, rx.wait_for(pred)).await {
            Ok(Ok(status)) => Ok(status.clone()),
            Ok(Err(_)) => {
                // The task ended: the last status is final.
                Err(Timeout(timeout))
            }
            Err(_) => Err(Timeout(timeout)),
        }
    }

    /// Sends `signal` to the main process; SIGKILL simulates the container's sudden death.
    pub fn signal(&self, signal: Signal) {
        let _ = self.commands.send(Command::Signal(signal));
    }

    /// SIGTERM, then SIGKILL after the grace period; returns the final status.
    pub async fn stop(self) -> Status {
        let grace = self.grace_period;
        self.stop_with(grace).await
    }

    /// As [`Supervisor::stop`], with another grace period (a deletion's own `gracePeriodSeconds`).
    pub async fn stop_with(mut self, grace: Duration) -> Status {
        let _ = self.commands.send(Command::Stop(grace));
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.status()
    }

    /// The log of the current (or last) run, or of the one before (`kubectl logs --previous`).
    pub fn log_path(&self, previous: bool) -> PathBuf {
        log_path(&self.log_dir, previous)
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // The task's guard kills the process tree when the task is dropped.
            task.abort();
        }
    }
}

pub fn log_path(log_dir: &Path, previous: bool) -> PathBuf {
    log_dir.join(if previous {
        "previous.log"
    } else {
        "current.log"
    })
}

/// The kubelet's per-container back-off entry.
#[derive(Default)]
struct BackoffState {
    /// The delay the next crash waits, and when it was last set (at a restart).
    entry: Option<(Duration, Instant)>,
}

impl BackoffState {
    /// The wait before restarting after an exit at `finished`, updating the entry for the next.
    fn next(&mut self, finished: Instant, cfg: &Backoff) -> Duration {
        match self.entry {
            Some((delay, set_at))
                if finished.saturating_duration_since(set_at) <= cfg.reset_after =>
            {
                self.entry = Some(((delay * 2).min(cfg.max), set_at));
                delay
            }
            _ => {
                self.entry = Some((cfg.initial.min(cfg.max), finished));
                Duration::ZERO
            }
        }
    }

    fn restarted(&mut self, now: Instant) {
        if let Some((delay, _)) = self.entry {
            self.entry = Some((delay, now));
        }
    }
}

async fn supervise(
    spec: ContainerSpec,
    status: watch::Sender<Status>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut backoff = BackoffState::default();
    let mut restart_count = 0u32;
    let mut last_state: Option<Termination> = None;
    let publish = |state: State, last_state: &Option<Termination>, restart_count: u32| {
        status.send_replace(Status {
            state,
            last_state: last_state.clone(),
            restart_count,
        });
    };
    loop {
        let started_at = SystemTime::now();
        let termination = match process::launch(&spec).await {
            Err(StartError(message)) => Termination {
                exit_code: 128,
                signal: None,
                reason: "StartError".into(),
                message: Some(message),
                started_at: None,
                finished_at: SystemTime::now(),
            },
            Ok(mut running) => {
                publish(
                    State::Running {
                        started_at,
                        pid: running.main_pid(),
                    },
                    &last_state,
                    restart_count,
                );
                let exit = loop {
                    tokio::select! {
                        exit = running.wait() => break exit,
                        command = commands.recv() => match command {
                            Some(Command::Signal(signal)) => running.signal(signal),
                            Some(Command::Stop(grace)) => {
                                let exit = running.terminate(grace).await;
                                let t = termination(exit, Some(started_at));
                                publish(State::Terminated(t), &last_state, restart_count);
                                return;
                            }
                            None => {
                                running.terminate(Duration::ZERO).await;
                                return;
                            }
                        },
                    }
                };
                termination(exit, Some(started_at))
            }
        };
        tracing::debug!(container = %spec.name, exit_code = termination.exit_code, reason = %termination.reason, "container exited");
        if !spec.restart_policy.restarts(termination.exit_code) {
            publish(State::Terminated(termination), &last_state, restart_count);
            // Stays terminated until stopped; signals have nothing to reach.
            while let Some(command) = commands.recv().await {
                if let Command::Stop(_) = command {
                    return;
                }
            }
            return;
        }
        let delay = backoff.next(Instant::now(), &spec.backoff);
        last_state = Some(termination.clone());
        if !delay.is_zero() {
            let message = format!(
                "back-off {}s restarting failed container={}",
                delay.as_secs_f64(),
                spec.name
            );
            let state = State::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some(message),
            };
            publish(state, &last_state, restart_count);
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    command = commands.recv() => match command {
                        Some(Command::Signal(_)) => {}
                        Some(Command::Stop(_)) | None => {
                            publish(State::Terminated(termination), &last_state, restart_count);
                            return;
                        }
                    },
                }
            }
        }
        backoff.restarted(Instant::now());
        restart_count += 1;
    }
}

fn termination(exit: Exit, started_at: Option<SystemTime>) -> Termination {
    let (exit_code, signal) = match exit.signal {
        Some(sig) => (128 + sig, Some(sig)),
        None => (exit.code.unwrap_or(-1), None),
    };
    Termination {
        exit_code,
        signal,
        reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
        message: exit.message,
        started_at,
        finished_at: SystemTime::now(),
    }
}
