//! The pod's status as the runner sees it: container statuses from the supervisors, readiness
//! from Patroni's REST API (`GET /readiness` on the pod IP), written as the kubelet writes them.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::supervisor::{State, Status, Termination};

/// What the runner knows of one container of the pod.
#[derive(Debug, Clone)]
pub enum Known {
    /// Not run by the runner (not a Spilo image): reported running and ready, as kwok did.
    Fake,
    /// Could not be prepared: waiting with this reason and message.
    Failed { reason: String, message: String },
    /// Supervised; `ready` is the last REST readiness answer.
    Run { status: Status, ready: bool },
}

fn time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn terminated(t: &Termination) -> Value {
    let mut v = json!({
        "exitCode": t.exit_code,
        "reason": t.reason,
        "finishedAt": time(t.finished_at),
    });
    if let Some(started) = t.started_at {
        v["startedAt"] = json!(time(started));
    }
    if let Some(signal) = t.signal {
        v["signal"] = json!(signal);
    }
    if let Some(message) = &t.message {
        v["message"] = json!(message);
    }
    json!({ "terminated": v })
}

fn state(status: &State) -> Value {
    match status {
        State::Waiting { reason, message } => {
            let mut w = json!({ "reason": reason });
            if let Some(m) = message {
                w["message"] = json!(m);
            }
            json!({ "waiting": w })
        }
        State::Running { started_at, .. } => json!({"running": {"startedAt": time(*started_at)}}),
        State::Terminated(t) => terminated(t),
    }
}

/// The status patch (merge patch of `status`) for `pod` given each container's state, in the
/// order of `spec.containers`.
pub fn pod_status(pod: &Pod, known: &[Known], now: SystemTime) -> Value {
    let spec = pod.spec.clone().unwrap_or_default();
    let previous = pod.status.clone().unwrap_or_default();
    let mut statuses = Vec::new();
    let mut all_ready = true;
    let mut any_started = false;
    let mut not_ready = Vec::new();
    let mut failure: Option<String> = None;
    for (container, known) in spec.containers.iter().zip(known) {
        let mut s = json!({
            "name": container.name,
            "image": container.image.clone().unwrap_or_default(),
            "imageID": "",
        });
        let (ready, started) = match known {
            Known::Fake => {
                s["state"] = json!({"running": {"startedAt": time(now)}});
                s["restartCount"] = json!(0);
                (true, true)
            }
            Known::Failed { reason, message } => {
                s["state"] = json!({"waiting": {"reason": reason, "message": message}});
                s["restartCount"] = json!(0);
                failure.get_or_insert_with(|| format!("{}: {reason}: {message}", container.name));
                (false, false)
            }
            Known::Run { status, ready } => {
                s["state"] = state(&status.state);
                s["restartCount"] = json!(status.restart_count);
                if let Some(last) = &status.last_state {
                    s["lastState"] = terminated(last);
                }
                let running = status.is_running();
                (running && *ready, running)
            }
        };
        s["ready"] = json!(ready);
        s["started"] = json!(started);
        any_started |= started;
        if !ready {
            all_ready = false;
            not_ready.push(container.name.clone());
        }
        statuses.push(s);
    }
    // Conditions keep their transition time while their status stays.
    let transition = |kind: &str, status: bool| {
        let status = if status { "True" } else { "False" };
        previous
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| json!(t))
            .unwrap_or_else(|| json!(time(now)))
    };
    let mut ready = json!({"type": "Ready", "status": if all_ready { "True" } else { "False" }, "lastTransitionTime": transition("Ready", all_ready)});
    let mut containers_ready = json!({"type": "ContainersReady", "status": if all_ready { "True" } else { "False" }, "lastTransitionTime": transition("ContainersReady", all_ready)});
    if !all_ready {
        let (reason, message) = match &failure {
            Some(f) => ("ContainerCreateFailed", f.clone()),
            None => (
                "ContainersNotReady",
                format!("containers with unready status: [{}]", not_ready.join(" ")),
            ),
        };
        for c in [&mut ready, &mut containers_ready] {
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
    }
    let phase = if any_started { "Running" } else { "Pending" };
    json!({
        "phase": phase,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": transition("PodScheduled", true)},
            {"type": "Initialized", "status": "True", "lastTransitionTime": transition("Initialized", true)},
            containers_ready,
            ready,
        ],
        "containerStatuses": statuses,
    })
}

/// Whether `status` already holds what `patch` would write (ignoring volatile times).
pub fn unchanged(pod: &Pod, patch: &Value) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    let current = serde_json::to_value(status).unwrap_or_default();
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(list) = v.get_mut("containerStatuses").and_then(Value::as_array_mut) {
            for s in list {
                if let Some(running) = s.pointer_mut("/state/running") {
                    *running = json!({});
                }
                if let Some(o) = s.as_object_mut() {
                    o.remove("imageID");
                    o.remove("allocatedResources");
                    o.remove("resources");
                    o.remove("volumeMounts");
                    o.remove("user");
                }
            }
        }
        json!({"phase": v["phase"], "conditions": v["conditions"], "containerStatuses": v["containerStatuses"]})
    };
    strip(&current) == strip(patch)
}

/// How the runner tells a running container is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Spilo: Patroni's REST API on port 8008 ([`patroni_ready`]).
    Patroni,
    /// The container's `readinessProbe.httpGet` on the pod IP: a 2xx or 3xx answer.
    HttpGet { port: u16, path: String },
    /// No probe: ready while running, as the kubelet does.
    Running,
}

impl Readiness {
    pub async fn ready(&self, ip: &str) -> bool {
        match self {
            Readiness::Patroni => patroni_ready(ip, 8008).await,
            Readiness::HttpGet { port, path } => http_ready(ip, *port, path).await,
            Readiness::Running => true,
        }
    }
}

/// Patroni's readiness: `GET http://ip:port/readiness` answers 200 (running and, on a replica,
/// streaming within the lag limit).
pub async fn patroni_ready(ip: &str, port: u16) -> bool {
    http_status(ip, port, "/readiness").await == Some(200)
}

/// A kubelet's HTTP probe: `GET http://ip:port/path` answers 200 to 399.
pub async fn http_ready(ip: &str, port: u16, path: &str) -> bool {
    http_status(ip, port, path)
        .await
        .is_some_and(|code| (200..400).contains(&code))
}

/// The status code of `GET http://ip:port/path` (2 s at most), `None` without an answer.
async fn http_status(ip: &str, port: u16, path: &str) -> Option<u16> {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 16];
        let mut read = 0;
        while read < 12 {
            let n = stream.read(&mut head[read..]).await.ok()?;
            if n == 0 {
                break;
            }
            read += n;
        }
        let line = String::from_utf8_lossy(&head[..read]).to_string();
        if !line.starts_with("HTTP/1.") {
            return None;
        }
        line.get(9..12)?.parse::<u16>().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), probe)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod(names: &[&str]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: names
                    .iter()
                    .map(|n| Container {
                        name: n.to_string(),
                        image: Some(format!("img/{n}")),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running(ready: bool) -> Known {
        Known::Run {
            status: Status {
                state: State::Running {
                    started_at: SystemTime::now(),
                    pid: Some(1),
                },
                last_state: None,
                restart_count: 2,
            },
            ready,
        }
    }

    #[test]
    fn ready_only_when_every_container_is() {
        let p = pod(&["postgres", "sidecar"]);
        let s = pod_status(&p, &[running(true), Known::Fake], SystemTime::now());
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["conditions"][3]["type"], "Ready");
        assert_eq!(s["conditions"][3]["status"], "True");
        assert_eq!(s["containerStatuses"][0]["restartCount"], 2);

        let s = pod_status(&p, &[running(false), Known::Fake], SystemTime::now());
        assert_eq!(s["conditions"][3]["status"], "False");
        assert_eq!(
            s["conditions"][3]["message"],
            "containers with unready status: [postgres]"
        );
    }

    #[test]
    fn a_failed_container_is_a_condition_naming_the_reason() {
        let p = pod(&["postgres"]);
        let failed = Known::Failed {
            reason: "CreateContainerConfigError".into(),
            message: "KUBERNETES_USE_CONFIGMAPS is not set".into(),
        };
        let s = pod_status(&p, &[failed], SystemTime::now());
        assert_eq!(s["phase"], "Pending");
        assert_eq!(s["conditions"][3]["reason"], "ContainerCreateFailed");
        assert!(
            s["conditions"][3]["message"]
                .as_str()
                .unwrap()
                .contains("KUBERNETES_USE_CONFIGMAPS")
        );
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "CreateContainerConfigError"
        );
    }
}
