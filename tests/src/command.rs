//! Running the built `kubectl` and `helm` (and other commands) with captured output.

use std::ffi::OsStr;
use std::fmt;
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;

use crate::paths;

/// Captured result of a finished command.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// The command line, for messages.
    pub command: String,
    pub stdout: String,
    pub stderr: String,
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Fails with the full output unless the command exited with 0.
    pub fn ok(self) -> Result<Self> {
        if self.success() {
            Ok(self)
        } else {
            bail!("{self}")
        }
    }

    /// Fails with the full output unless the command exited with a non-zero code.
    pub fn failed(self) -> Result<Self> {
        if self.success() {
            bail!("expected failure, but it succeeded:\n{self}")
        } else {
            Ok(self)
        }
    }
}

impl fmt::Display for CommandOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "a signal".into()),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `program args…` with optional stdin and extra environment; captures everything.
pub async fn run<I, S>(
    program: &Path,
    args: I,
    stdin: Option<&str>,
    env: &[(&str, &OsStr)],
) -> Result<CommandOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let command = std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{command}`"))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes())
            .await
            .with_context(|| format!("writing stdin of `{command}`"))?;
        drop(pipe);
    }
    let out = child
        .wait_with_output()
        .await
        .with_context(|| format!("waiting for `{command}`"))?;
    Ok(CommandOutput {
        command,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    })
}

fn kube_env() -> Vec<(&'static str, std::ffi::OsString)> {
    let kc = paths::kubeconfig().into_os_string();
    vec![("KUBECONFIG", kc)]
}

/// Runs the built `kubectl` against the local control plane (admin identity).
/// A non-zero exit is not an error here: check [`CommandOutput::ok`].
pub async fn kubectl<I, S>(args: I) -> Result<CommandOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let env = kube_env();
    let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    run(&paths::tools().kubectl, args, None, &env).await
}

/// Like [`kubectl`] with `input` on stdin (e.g. `kubectl apply -f -`).
pub async fn kubectl_with_stdin<I, S>(args: I, input: &str) -> Result<CommandOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let env = kube_env();
    let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    run(&paths::tools().kubectl, args, Some(input), &env).await
}

/// Runs the built `helm` against the local control plane. Helm's cache, config and data
/// directories live under `.local/helm` so nothing in `$HOME` is touched.
pub async fn helm<I, S>(args: I) -> Result<CommandOutput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let base = paths::local_dir().join("helm");
    let mut env = kube_env();
    for (k, sub) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        env.push((k, base.join(sub).into_os_string()));
    }
    let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    run(&paths::tools().helm, args, None, &env).await
}
