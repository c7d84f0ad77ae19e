//! Running a command in a pod's container (`pods/exec`), behind a trait so the upgrade's
//! executor is tested without a kubelet ([`Recorded`]).

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::AttachParams;
use kube::{Api, Client};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// What a finished command left.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// It exited with 0.
    pub success: bool,
    /// What the API server said of a failure (e.g. the exit code).
    pub failure: Option<String>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Why a command could not be run or followed to its end.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The exec request failed (no such pod or container, forbidden, no connection).
    #[error("exec in pod {pod}: {reason}")]
    Start {
        /// The pod.
        pod: String,
        /// What failed.
        reason: String,
    },
    /// The command did not end in time; it may still run in the pod.
    #[error("exec in pod {pod}: no end after {after:?}")]
    Timeout {
        /// The pod.
        pod: String,
        /// How long it was waited for.
        after: Duration,
    },
}

/// Runs commands in containers.
pub trait Exec: Send + Sync {
    /// Runs `command` in `container` of `namespace/pod` and waits at most `timeout` for its end.
    fn run<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        container: &'a str,
        command: Vec<String>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Output, Error>>;
}

/// The real one: the API server's `pods/exec` over a WebSocket.
pub struct Kube(pub Client);

impl Exec for Kube {
    fn run<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        container: &'a str,
        command: Vec<String>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Output, Error>> {
        Box::pin(async move {
            let api: Api<Pod> = Api::namespaced(self.0.clone(), namespace);
            let params = AttachParams::default()
                .container(container)
                .stdin(false)
                .stdout(true)
                .stderr(true);
            let start = |e: kube::Error| Error::Start {
                pod: pod.to_string(),
                reason: e.to_string(),
            };
            let mut process = api.exec(pod, command, &params).await.map_err(start)?;
            let (mut out, mut err) = (process.stdout(), process.stderr());
            let status = process.take_status();
            let run = async {
                let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
                // Both drained together: a full stderr pipe must not stall stdout.
                let read_out = async {
                    if let Some(r) = out.as_mut() {
                        let _ = r.read_to_end(&mut stdout).await;
                    }
                };
                let read_err = async {
                    if let Some(r) = err.as_mut() {
                        let _ = r.read_to_end(&mut stderr).await;
                    }
                };
                tokio::join!(read_out, read_err);
                let status = match status {
                    Some(s) => s.await,
                    None => None,
                };
                (stdout, stderr, status)
            };
            let (stdout, stderr, status) = match tokio::time::timeout(timeout, run).await {
                Ok(done) => done,
                Err(_) => {
                    process.abort();
                    return Err(Error::Timeout {
                        pod: pod.to_string(),
                        after: timeout,
                    });
                }
            };
            let success = status
                .as_ref()
                .is_some_and(|s| s.status.as_deref() == Some("Success"));
            let failure = (!success).then(|| {
                status
                    .as_ref()
                    .and_then(|s| s.message.clone())
                    .unwrap_or_else(|| "the exec ended without a status".to_string())
            });
            Ok(Output {
                success,
                failure,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            })
        })
    }
}

/// For tests: answers from a queue and records the commands.
#[derive(Default)]
pub struct Recorded {
    /// The answers, first in first out; an empty queue answers success with no output.
    pub answers: Mutex<Vec<Result<Output, Error>>>,
    /// `(pod, container, command)` of every call.
    pub calls: Mutex<Vec<(String, String, Vec<String>)>>,
}

impl Exec for Recorded {
    fn run<'a>(
        &'a self,
        _namespace: &'a str,
        pod: &'a str,
        container: &'a str,
        command: Vec<String>,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Output, Error>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push((
            pod.to_string(),
            container.to_string(),
            command,
        ));
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        let answer = if answers.is_empty() {
            Ok(Output {
                success: true,
                ..Default::default()
            })
        } else {
            answers.remove(0)
        };
        Box::pin(async move { answer })
    }
}
