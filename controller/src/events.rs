//! Kubernetes Events about clusters, published by a background task so that a reconcile never
//! waits for them.
//!
//! kube's `Recorder` keeps every event it sent for six minutes (to fold repeats into a series)
//! and scans that cache on every publish: at 1 000 clusters that is about 10 000 events, tens of
//! MiB and a quadratic scan while the clusters are created. Events about children are never
//! repeated (each names its own child), so only warnings are remembered here, for folding.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How many events may wait to be sent; more are dropped (and counted) rather than letting a
/// slow API server grow the controller's memory.
const QUEUE: usize = 4096;
/// How long a warning is remembered so that its repeats become a series.
const SERIES_TTL: Duration = Duration::from_secs(600);
/// The most warnings remembered at once.
const SERIES_MAX: usize = 4096;

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Something the user may want to know happened.
    Normal,
    /// Something went wrong.
    Warning,
}

/// One event about a cluster.
#[derive(Clone, Debug)]
pub struct Event {
    /// Normal or Warning.
    pub kind: Kind,
    /// A short UpperCamelCase reason (`Created`, `SyncFailed`, ...).
    pub reason: String,
    /// What happened, for people.
    pub note: String,
    /// What the controller was doing (`Create`, `Reconcile`, `Delete`, ...).
    pub action: String,
    /// The child the event is about, if any.
    pub related: Option<ObjectReference>,
}

struct Pending {
    event: Event,
    regarding: ObjectReference,
}

/// Sends events through a bounded queue to a background task.
#[derive(Clone)]
pub struct Events {
    queue: mpsc::Sender<Pending>,
    dropped: prometheus_client::metrics::counter::Counter,
}

/// Who reports the events.
#[derive(Clone, Debug)]
pub struct Reporter {
    /// `reportingController`.
    pub controller: String,
    /// `reportingInstance` (the pod or host name).
    pub instance: String,
}

impl Events {
    /// Starts the publishing task; `dropped` counts events lost to a full queue.
    pub fn start(
        client: Client,
        reporter: Reporter,
        dropped: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(run(client, reporter, pending));
        Events { queue, dropped }
    }

    /// Queues an event about `regarding`; never waits.
    pub fn publish(&self, regarding: ObjectReference, event: Event) {
        if self.queue.try_send(Pending { event, regarding }).is_err() {
            self.dropped.inc();
        }
    }
}

/// The API server's limit on an event's note, in bytes.
pub const NOTE_MAX: usize = 1024;

/// `"{verb} Kind name, Kind name, ..."`, cut (with how many were left out) to fit an event note.
pub fn summary(verb: &str, children: &[String]) -> String {
    let mut note = verb.to_string();
    for (i, child) in children.iter().enumerate() {
        let separator = if i == 0 { " " } else { ", " };
        let rest = children.len() - i - 1;
        // Room for the longest possible tail, so whatever is cut can still be counted.
        let tail = format!(" and {} more", rest + 1);
        if note.len() + separator.len() + child.len() + if rest > 0 { tail.len() } else { 0 }
            > NOTE_MAX
        {
            note.push_str(&format!(" and {} more", rest + 1));
            return note;
        }
        note.push_str(separator);
        note.push_str(child);
    }
    note
}

/// Identity of a warning for folding repeats.
type SeriesKey = (Option<String>, String, String);

struct Series {
    name: String,
    namespace: String,
    count: i32,
    first_seen: Instant,
}

async fn run(client: Client, reporter: Reporter, mut pending: mpsc::Receiver<Pending>) {
    let mut series: HashMap<SeriesKey, Series> = HashMap::new();
    while let Some(Pending { event, regarding }) = pending.recv().await {
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<K8sEvent> = Api::namespaced(client.clone(), &namespace);
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let result = if event.kind == Kind::Warning {
            series.retain(|_, s| s.first_seen.elapsed() < SERIES_TTL);
            let key = (
                regarding.uid.clone(),
                event.reason.clone(),
                event.note.clone(),
            );
            match series.get_mut(&key) {
                Some(known) => {
                    known.count += 1;
                    let patch = serde_json::json!({"series": EventSeries {
                        count: known.count,
                        last_observed_time: now,
                    }});
                    Api::<K8sEvent>::namespaced(client.clone(), &known.namespace)
                        .patch(&known.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                }
                None => {
                    let created = api
                        .create(
                            &PostParams::default(),
                            &build(&reporter, &event, regarding, now),
                        )
                        .await;
                    if let Ok(created) = &created
                        && series.len() < SERIES_MAX
                    {
                        series.insert(
                            key,
                            Series {
                                name: created.metadata.name.clone().unwrap_or_default(),
                                namespace,
                                count: 1,
                                first_seen: Instant::now(),
                            },
                        );
                    }
                    created.map(|_| ())
                }
            }
        } else {
            api.create(
                &PostParams::default(),
                &build(&reporter, &event, regarding, now),
            )
            .await
            .map(|_| ())
        };
        if let Err(error) = result {
            tracing::warn!(%error, reason = %event.reason, "cannot publish an event");
        }
    }
}

/// `note` cut to the API server's limit ([`NOTE_MAX`] bytes, on a character boundary, ending in
/// "…"): a longer note makes the API server refuse the whole Event.
pub fn fit_note(note: &str) -> String {
    if note.len() <= NOTE_MAX {
        return note.to_string();
    }
    const MORE: &str = "…";
    let mut end = NOTE_MAX - MORE.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MORE}", &note[..end])
}

/// The `events.k8s.io/v1` object of one event.
pub fn build(
    reporter: &Reporter,
    event: &Event,
    regarding: ObjectReference,
    now: MicroTime,
) -> K8sEvent {
    K8sEvent {
        metadata: ObjectMeta {
            // `<object>.<time in hex>`, as client-go names events (a generateName ending in a dot
            // is refused).
            name: Some(format!(
                "{}.{:x}",
                regarding.name.as_deref().unwrap_or("event"),
                now.0.as_nanosecond()
            )),
            namespace: regarding.namespace.clone(),
            ..Default::default()
        },
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        note: Some(fit_note(&event.note)),
        type_: Some(
            match event.kind {
                Kind::Normal => "Normal",
                Kind::Warning => "Warning",
            }
            .into(),
        ),
        event_time: Some(now),
        regarding: Some(regarding),
        related: event.related.clone(),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_names_every_child_or_counts_what_does_not_fit() {
        let children = vec![
            "StatefulSet acid-a".to_string(),
            "Service acid-a".to_string(),
        ];
        assert_eq!(
            summary("Created", &children),
            "Created StatefulSet acid-a, Service acid-a"
        );
        let many: Vec<String> = (0..100)
            .map(|i| format!("Secret user-{i}.acid-a.credentials.postgresql.acid.zalan.do"))
            .collect();
        let long = "é".repeat(NOTE_MAX);
        let fitted = fit_note(&long);
        assert!(
            fitted.len() <= NOTE_MAX && fitted.ends_with('…'),
            "{}",
            fitted.len()
        );
        assert_eq!(fit_note("short"), "short");
        let note = summary("Created", &many);
        assert!(note.len() <= NOTE_MAX, "{}", note.len());
        let shown = note.matches("Secret ").count();
        assert!(shown > 10);
        assert!(
            note.ends_with(&format!(" and {} more", 100 - shown)),
            "{note}"
        );
    }

    #[test]
    fn an_event_names_its_object_reporter_and_child() {
        let reporter = Reporter {
            controller: "postgres-operator".into(),
            instance: "pod-1".into(),
        };
        let regarding = ObjectReference {
            kind: Some("postgresql".into()),
            name: Some("acid-a".into()),
            namespace: Some("ns".into()),
            uid: Some("u".into()),
            ..Default::default()
        };
        let child = ObjectReference {
            kind: Some("Service".into()),
            name: Some("acid-a-repl".into()),
            ..Default::default()
        };
        let event = Event {
            kind: Kind::Normal,
            reason: "Created".into(),
            note: "Service acid-a-repl created".into(),
            action: "Create".into(),
            related: Some(child.clone()),
        };
        let now = MicroTime(k8s_openapi::jiff::Timestamp::from_second(1).unwrap());
        let built = build(&reporter, &event, regarding.clone(), now.clone());
        assert_eq!(built.metadata.name.as_deref(), Some("acid-a.3b9aca00"));
        assert_eq!(built.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(built.type_.as_deref(), Some("Normal"));
        assert_eq!(built.regarding, Some(regarding));
        assert_eq!(built.related, Some(child));
        assert_eq!(
            built.reporting_controller.as_deref(),
            Some("postgres-operator")
        );
        assert_eq!(built.reporting_instance.as_deref(), Some("pod-1"));
        assert_eq!(built.event_time, Some(now));
    }
}
