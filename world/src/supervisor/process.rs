//! Starting, signalling and reaping one run of a container.
//!
//! Each run is spawned and reaped by its own thread with `std::process`: the parent-death signal
//! the child arms fires when the *thread* that forked it ends, so that thread must live exactly as
//! long as the child, which a tokio worker (or blocking-pool thread) does not promise. Signals go
//! through pidfds, so a PID reused after the process was reaped is never hit.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::oneshot;

use super::{ContainerSpec, Isolation, log_path};

/// How long the namespace's PID 1 may take to appear, and a SIGKILLed tree to be reaped.
const SETTLE: Duration = Duration::from_secs(10);
/// How often [`Running::terminate`] repeats SIGTERM during the grace period.
const TERM_REPEAT: Duration = Duration::from_secs(2);
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The container could not be started; the message names the executable, as containerd's does.
#[derive(Debug)]
pub(super) struct StartError(pub String);

#[derive(Debug)]
pub(super) struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub message: Option<String>,
}

/// A process we may signal: by pidfd when the kernel has them, else by PID.
struct ProcRef {
    pid: u32,
    fd: Option<OwnedFd>,
}

impl ProcRef {
    fn open(pid: u32) -> ProcRef {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let fd = (fd >= 0).then(|| {
            // SAFETY: the descriptor was just returned to us and is owned by nobody else.
            unsafe { OwnedFd::from_raw_fd(fd as i32) }
        });
        ProcRef { pid, fd }
    }

    fn signal(&self, signal: Signal) {
        match &self.fd {
            Some(fd) => {
                // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
                unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        signal as libc::c_int,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    );
                }
            }
            None => {
                let _ = nix::sys::signal::kill(Pid::from_raw(self.pid as i32), signal);
            }
        }
    }
}

/// One run. Dropping it before it was reaped kills the whole tree.
pub(super) struct Running {
    exit: oneshot::Receiver<Exit>,
    early_exit: Option<Exit>,
    /// The process that was spawned: the namespace's outside reaper, or the program itself.
    child: ProcRef,
    /// The container's main process: the namespace's PID 1, or the program itself.
    main: Option<ProcRef>,
    isolation: Isolation,
    reaped: bool,
}

impl Running {
    pub fn main_pid(&self) -> Option<u32> {
        self.main.as_ref().map(|m| m.pid)
    }

    /// Waits for the run to end (cancel-safe), then kills what the main process left behind.
    pub async fn wait(&mut self) -> Exit {
        let exit = match self.early_exit.take() {
            Some(exit) => exit,
            None => (&mut self.exit).await.unwrap_or(Exit {
                code: None,
                signal: None,
                message: Some("the reaper thread ended without an exit status".into()),
            }),
        };
        self.reaped = true;
        if self.isolation == Isolation::ProcessGroup {
            let _ = killpg(Pid::from_raw(self.child.pid as i32), Signal::SIGKILL);
        }
        exit
    }

    pub fn signal(&self, signal: Signal) {
        if let Some(main) = &self.main {
            main.signal(signal);
        }
    }

    /// SIGTERM to the main process, SIGKILL to all of it once `grace` has passed. SIGTERM is
    /// repeated every [`TERM_REPEAT`]: as PID 1 of its namespace the main process ignores a
    /// SIGTERM that arrives before it installs its handler (Patroni still starting when a pod is
    /// deleted), where a container's init (Spilo's dumb-init) would have passed it on later.
    pub async fn terminate(&mut self, grace: Duration) -> Exit {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            self.signal(Signal::SIGTERM);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            if let Ok(exit) = tokio::time::timeout(left.min(TERM_REPEAT), self.wait()).await {
                return exit;
            }
        }
        self.kill();
        match tokio::time::timeout(SETTLE, self.wait()).await {
            Ok(exit) => exit,
            Err(_) => Exit {
                code: None,
                signal: Some(Signal::SIGKILL as i32),
                message: Some(format!("still not reaped {SETTLE:?} after SIGKILL")),
            },
        }
    }

    fn kill(&self) {
        self.signal(Signal::SIGKILL);
        // Without a known PID 1, killing the reaper kills it by its parent-death signal.
        self.child.signal(Signal::SIGKILL);
        if self.isolation == Isolation::ProcessGroup {
            let _ = killpg(Pid::from_raw(self.child.pid as i32), Signal::SIGKILL);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
        }
    }
}

/// Resolves `argv0` like `execvp` with the container's `PATH` (or the runtime default), so a
/// missing executable is reported before anything starts, in containerd's words.
pub fn find_executable(argv0: &str, path: Option<&str>) -> Result<PathBuf, String> {
    let check = |p: &Path| -> Result<(), String> {
        let meta = fs::metadata(p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => format!("stat {}: no such file or directory", p.display()),
            _ => format!("stat {}: {e}", p.display()),
        })?;
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            Ok(())
        } else {
            Err("permission denied".into())
        }
    };
    if argv0.is_empty() {
        return Err("no command specified".into());
    }
    if argv0.contains('/') {
        let p = PathBuf::from(argv0);
        return check(&p)
            .map(|()| p)
            .map_err(|e| format!("exec: {argv0:?}: {e}"));
    }
    for dir in path
        .unwrap_or(DEFAULT_PATH)
        .split(':')
        .filter(|d| !d.is_empty())
    {
        let p = Path::new(dir).join(argv0);
        if check(&p).is_ok() {
            return Ok(p);
        }
    }
    Err(format!(
        "exec: {argv0:?}: executable file not found in $PATH"
    ))
}

/// Starts one run: rotates the log, resolves the executable, spawns, and finds the main process.
pub(super) async fn launch(spec: &ContainerSpec) -> Result<Running, StartError> {
    let argv0 = spec.argv.first().map(String::as_str).unwrap_or("");
    let path_env = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let exe = find_executable(argv0, path_env).map_err(StartError)?;
    let log = open_log(&spec.log_dir)
        .map_err(|e| StartError(format!("log {}: {e}", spec.log_dir.display())))?;
    if let Some(dir) = &spec.working_dir {
        fs::create_dir_all(dir)
            .map_err(|e| StartError(format!("working dir {}: {e}", dir.display())))?;
    }
    let mut cmd = command(spec, &exe);
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| StartError(e.to_string()))?)
        .stderr(log)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }

    let (started_tx, started_rx) = oneshot::channel::<io::Result<ProcRef>>();
    let (exit_tx, exit) = oneshot::channel::<Exit>();
    std::thread::Builder::new()
        .name(format!("container-{}", spec.name))
        .spawn(move || match cmd.spawn() {
            Err(e) => {
                let _ = started_tx.send(Err(e));
            }
            Ok(mut child) => {
                // Opened before the child can be reaped, so it names this very process.
                let _ = started_tx.send(Ok(ProcRef::open(child.id())));
                let exit = match child.wait() {
                    Ok(status) => Exit {
                        code: status.code(),
                        signal: status.signal(),
                        message: None,
                    },
                    Err(e) => Exit {
                        code: None,
                        signal: None,
                        message: Some(format!("wait: {e}")),
                    },
                };
                let _ = exit_tx.send(exit);
            }
        })
        .map_err(|e| StartError(format!("reaper thread: {e}")))?;
    let child = match started_rx.await {
        Ok(Ok(child)) => child,
        Ok(Err(e)) => return Err(StartError(format!("exec: {argv0:?}: {e}"))),
        Err(_) => return Err(StartError("the reaper thread died".into())),
    };
    let mut running = Running {
        exit,
        early_exit: None,
        child,
        main: None,
        isolation: spec.isolation,
        reaped: false,
    };
    match spec.isolation {
        Isolation::ProcessGroup => running.main = Some(ProcRef::open(running.child.pid)),
        Isolation::PidNamespace => find_namespace_init(&mut running).await,
    }
    Ok(running)
}

fn command(spec: &ContainerSpec, exe: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(exe);
    cmd.args(spec.argv.iter().skip(1));
    // Prepared here: nothing may allocate between fork and exec.
    let user = spec.user.as_ref().map(|u| {
        let groups: Vec<libc::gid_t> = u.groups.clone();
        (u.uid, u.gid, groups)
    });
    let namespace = spec.isolation == Isolation::PidNamespace;
    // SAFETY: between fork and exec only async-signal-safe system calls are made; no allocation.
    unsafe {
        cmd.pre_exec(move || {
            check(libc::setsid())?;
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
            if namespace {
                enter_namespace()?;
            }
            if let Some((uid, gid, groups)) = &user {
                check(libc::setgroups(groups.len(), groups.as_ptr()))?;
                check(libc::setgid(*gid))?;
                check(libc::setuid(*uid))?;
            }
            // Re-armed after the UID change, which clears it.
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
            Ok(())
        });
    }
    cmd
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Runs in the forked child: creates the PID and mount namespaces and forks again. The
/// grandchild returns (and goes on to exec the program as PID 1 with a private /proc); the
/// child stays behind as the reaper thread's direct child, waits for it and exits the same way,
/// so the supervisor sees the program's own exit status (util-linux 2.38's `unshare --fork`
/// turns a SIGKILLed child into exit 1 and a line of its own in the container's log).
///
/// SAFETY: call only between fork and exec.
unsafe fn enter_namespace() -> io::Result<()> {
    unsafe {
        check(libc::unshare(libc::CLONE_NEWPID | libc::CLONE_NEWNS))?;
        // Our /proc mount must not propagate back to the host's mount namespace.
        check(libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        let pid = libc::fork();
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            check(libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                flags,
                std::ptr::null(),
            ))?;
            return Ok(());
        }
        // The exec-status pipe std holds open would keep spawn() waiting until the container ends;
        // the grandchild keeps its own copy, closed by its exec.
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        let mut status = 0;
        loop {
            if libc::waitpid(pid, &mut status, 0) == pid {
                break;
            }
            if *libc::__errno_location() != libc::EINTR {
                libc::_exit(126);
            }
        }
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, sig);
                libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            }
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(libc::WEXITSTATUS(status));
    }
}

/// Keeps the last run's log as `previous.log` and opens a fresh `current.log`.
fn open_log(dir: &Path) -> io::Result<fs::File> {
    fs::create_dir_all(dir)?;
    let current = log_path(dir, false);
    if current.exists() {
        fs::rename(&current, log_path(dir, true))?;
    }
    OpenOptions::new().create(true).append(true).open(current)
}

/// Finds the namespace's PID 1: the spawned reaper's only child. It appears right after the
/// reaper forks; if the run ends first, the exit is kept for [`Running::wait`].
async fn find_namespace_init(running: &mut Running) {
    let pid = running.child.pid;
    let children = format!("/proc/{pid}/task/{pid}/children");
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        if let Ok(exit) = running.exit.try_recv() {
            running.early_exit = Some(exit);
            return;
        }
        let first = fs::read_to_string(&children).ok().and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u32>().ok())
        });
        if let Some(init) = first {
            let proc_ref = ProcRef::open(init);
            // With the pidfd open, the PID cannot be reused; check it is still the reaper's child.
            if parent_of(init) == Some(pid) {
                running.main = Some(proc_ref);
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tracing::warn!(
        pid,
        "the PID namespace's init did not appear; signals will go to its reaper"
    );
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields restart after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}
