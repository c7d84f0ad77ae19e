//! What the upgrade does to the world, in small pieces: Patroni's REST API (plain HTTP/1.0 on a
//! pod IP), a member's Patroni process (found by its configuration file, as Spilo finds it by
//! name in its container), SQL through the running major's `psql`, local commands, and the
//! DCS's `initialize` key (the `<scope>-config` ConfigMap, through the pod's kubeconfig).
//! Passwords travel only in a child's `PGPASSWORD`, never in an argument or a log line.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::decide::UpgradeError;

/// One line of the upgrade's log, with a UTC timestamp (the output is the operator's record).
pub fn log(level: &str, message: &str) {
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.3f");
    println!("{now} UTC inplace_upgrade {level}: {message}");
}

/// `host:port` of a Patroni API URL (`http://127.1.2.3:8008/patroni` → `127.1.2.3:8008`).
pub fn api_address(api_url: &str) -> Option<String> {
    let rest = api_url.strip_prefix("http://")?;
    let address = rest.split('/').next()?;
    (!address.is_empty()).then(|| address.to_string())
}

/// `method path` on Patroni's API at `address` (`ip:port`); the status and the body.
pub fn http(
    address: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let addr = address
        .parse()
        .map_err(|e| std::io::Error::other(format!("{address}: {e}")))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer from {address}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// `GET path` as JSON (status 200 and 503 both carry Patroni's JSON).
pub fn get_json(address: &str, path: &str) -> Result<Value, UpgradeError> {
    let (status, body) = http(address, "GET", path, None, Duration::from_secs(3))
        .map_err(|e| UpgradeError::step(format!("GET http://{address}{path}"), e))?;
    serde_json::from_str(&body).map_err(|e| {
        UpgradeError::step(
            format!("GET http://{address}{path}"),
            format!("status {status}, not JSON: {e}"),
        )
    })
}

/// Polls `check` every `every` until it returns `Some` or `timeout` passes.
pub fn poll<T>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// The PIDs of Patroni processes started with `config` (the runner starts each member as
/// `patroni <run dir>/patroni.yml`; the supervisor's PID namespace is visible from here).
pub fn patroni_pids(config: &Path) -> Vec<i32> {
    let wanted = config.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.contains(&wanted) && args.iter().any(|a| a.ends_with(b"/patroni"))
        })
        .collect()
}

/// Restarts a member's Patroni so it reads its changed configuration (Patroni 4.1.5 takes
/// `bin_dir` only when it starts; a reload keeps the old one). Spilo kills Patroni and runit
/// starts it again inside the container; here Patroni is the container's process, so SIGTERM
/// ends the container's run and the pod runner restarts it (the container's restart count goes
/// up by one). Waits until the old process is gone.
pub fn restart_patroni(config: &Path) -> Result<(), UpgradeError> {
    let step = format!("restarting Patroni of {}", config.display());
    let pids = patroni_pids(config);
    if pids.is_empty() {
        return Err(UpgradeError::step(
            step,
            "no Patroni process runs with that configuration",
        ));
    }
    for pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let alive = |pid: &i32| Path::new(&format!("/proc/{pid}")).exists();
    let gone = poll(Duration::from_secs(30), Duration::from_millis(200), || {
        (!pids.iter().any(alive)).then_some(())
    });
    if gone.is_none() {
        for pid in pids.iter().filter(|p| alive(p)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    Ok(())
}

/// The host PID of the postmaster of `data_dir`. `postmaster.pid` holds the PID inside the
/// container's PID namespace, which means another process out here (so `pg_ctl` cannot stop a
/// member from outside its container): the postmaster is the process whose innermost PID
/// (`NSpid`) is that one and whose command line names the data directory.
pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let inner: i32 = pid_file.lines().next()?.trim().parse().ok()?;
    let data = data_dir.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let innermost = status
                .lines()
                .find(|l| l.starts_with("NSpid:"))
                .and_then(|l| l.split_whitespace().last()?.parse::<i32>().ok());
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            innermost == Some(inner) && cmdline.split(|b| *b == 0).any(|a| a == data)
        })
}

/// Stops the server of `data_dir` with a fast shutdown (SIGINT to its postmaster) and waits
/// until it is gone (`postmaster.pid` removed); nothing to do when none runs.
pub fn stop_postmaster(data_dir: &Path, timeout: Duration) -> Result<(), UpgradeError> {
    let step = format!("stopping the server of {}", data_dir.display());
    let Some(pid) = postmaster_pid(data_dir) else {
        return Ok(());
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .map_err(|e| UpgradeError::step(&step, e))?;
    poll(timeout, Duration::from_millis(200), || {
        (!data_dir.join("postmaster.pid").exists()).then_some(())
    })
    .ok_or_else(|| UpgradeError::step(step, format!("still running after {timeout:?}")))
}

/// Runs `program` (stdout and stderr together, as text); `Err` names the step and the output's
/// last line when it fails.
pub fn run(step: &str, command: &mut Command) -> Result<String, UpgradeError> {
    let out = command.output().map_err(|e| {
        UpgradeError::step(
            step,
            format!("{}: {e}", command.get_program().to_string_lossy()),
        )
    })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        Err(UpgradeError::step(
            step,
            format!("{} ({})", last.trim(), out.status),
        ))
    }
}

/// A PostgreSQL server reached with one major's `psql`.
#[derive(Clone)]
pub struct Pg {
    pub bin: PathBuf,
    /// A socket folder or an IP.
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Only for TCP; passed in the child's environment.
    pub password: Option<String>,
}

impl Pg {
    /// `sql` on `database`, unaligned and tuples only (`|` between fields).
    pub fn query(&self, database: &str, sql: &str) -> Result<String, UpgradeError> {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                &self.host,
                "-p",
                &self.port.to_string(),
                "-U",
                &self.user,
                "-d",
                database,
            ])
            .args(["-c", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .env("PGAPPNAME", "inplace_upgrade")
            .env_remove("PGPASSWORD");
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password);
        }
        let step = format!("SQL on {}", self.host);
        run(&step, &mut command).map(|out| out.trim().to_string())
    }
}

/// The `initialize` annotation of `<scope>-config` (Patroni's system identifier of the cluster).
pub fn initialize_key(namespace: &str, scope: &str) -> Result<Option<String>, UpgradeError> {
    kube_call(namespace, scope, None)
}

/// Writes the `initialize` annotation of `<scope>-config`.
pub fn set_initialize_key(namespace: &str, scope: &str, sysid: &str) -> Result<(), UpgradeError> {
    kube_call(namespace, scope, Some(sysid)).map(|_| ())
}

fn kube_call(
    namespace: &str,
    scope: &str,
    set: Option<&str>,
) -> Result<Option<String>, UpgradeError> {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams};
    let name = format!("{scope}-config");
    let step = format!("ConfigMap {namespace}/{name}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| UpgradeError::step(&step, e))?;
    runtime.block_on(async {
        // The pod's kubeconfig (KUBECONFIG), never the in-cluster variables the pod may carry.
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| UpgradeError::step(&step, e))?;
        let client = kube::Client::try_from(config).map_err(|e| UpgradeError::step(&step, e))?;
        let api: Api<ConfigMap> = Api::namespaced(client, namespace);
        let map = match set {
            Some(sysid) => {
                let patch = serde_json::json!({"metadata": {"annotations": {"initialize": sysid}}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            }
            None => api.get(&name).await,
        }
        .map_err(|e| UpgradeError::step(&step, e))?;
        Ok(map
            .metadata
            .annotations
            .and_then(|a| a.get("initialize").cloned())
            .filter(|v| !v.is_empty()))
    })
}

/// Replaces `path` with `contents` (mode 0600, by rename: Patroni never reads half a file).
pub fn write_private(path: &Path, contents: &str) -> Result<(), UpgradeError> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("upgrade-tmp");
    let fail = |e: std::io::Error| UpgradeError::step(format!("writing {}", path.display()), e);
    std::fs::write(&tmp, contents).map_err(fail)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Removes a directory tree if it exists.
pub fn remove_dir(path: &Path) -> Result<(), UpgradeError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(UpgradeError::step(
            format!("removing {}", path.display()),
            e,
        )),
    }
}

/// Renames `from` to `to`.
pub fn rename(from: &Path, to: &Path) -> Result<(), UpgradeError> {
    std::fs::rename(from, to).map_err(|e| {
        UpgradeError::step(
            format!("renaming {} to {}", from.display(), to.display()),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_give_their_address() {
        assert_eq!(
            api_address("http://127.1.0.5:8008/patroni").as_deref(),
            Some("127.1.0.5:8008")
        );
        assert_eq!(
            api_address("http://127.1.0.5:8008").as_deref(),
            Some("127.1.0.5:8008")
        );
        assert_eq!(api_address("https://x/patroni"), None);
        assert_eq!(api_address("http:///patroni"), None);
    }

    #[test]
    fn poll_returns_the_first_answer_or_gives_up() {
        let mut n = 0;
        assert_eq!(
            poll(Duration::from_secs(1), Duration::ZERO, || {
                n += 1;
                (n == 3).then_some(n)
            }),
            Some(3)
        );
        assert_eq!(poll(Duration::ZERO, Duration::ZERO, || None::<()>), None);
    }

    #[test]
    fn no_patroni_runs_with_a_config_that_does_not_exist() {
        assert!(patroni_pids(Path::new("/nonexistent/patroni.yml")).is_empty());
        assert!(restart_patroni(Path::new("/nonexistent/patroni.yml")).is_err());
    }
}
