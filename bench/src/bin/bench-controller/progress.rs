//! How far the benchmark's clusters have got, followed through a watch.
//!
//! Listing 1 000 `postgresql`s every 250 ms (as the first version did) costs the API server a
//! serialisation of every object four times a second: load the floors never carry, measured
//! against the controller. A watch costs one event per status change.

use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;

use common::crd::Postgresql;
use common::crd::postgresql::ClusterStatus;

/// Clusters whose status says Reconciled=True, and those Running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub reconciled: usize,
    pub running: usize,
}

pub struct Progress {
    counts: watch::Receiver<Counts>,
    _task: AbortOnDrop,
}

/// A background task that ends with its owner.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    pub fn new(task: tokio::task::JoinHandle<()>) -> AbortOnDrop {
        AbortOnDrop(task)
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn state(pg: &Postgresql) -> (bool, bool) {
    let Some(status) = pg.status.as_ref() else {
        return (false, false);
    };
    let reconciled = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Reconciled" && c.status == "True");
    (
        reconciled,
        status.postgres_cluster_status == ClusterStatus::Running,
    )
}

impl Progress {
    /// Starts following `api`; returns once the watch has listed, so nothing created after is
    /// missed.
    pub async fn follow(api: Api<Postgresql>) -> Progress {
        let (tx, mut counts) = watch::channel(Counts::default());
        let (listed_tx, listed) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut listed_tx = Some(listed_tx);
            let mut states: HashMap<String, (bool, bool)> = HashMap::new();
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Apply(pg) | watcher::Event::InitApply(pg)) => {
                        states.insert(kube::ResourceExt::name_any(&pg), state(&pg));
                    }
                    Ok(watcher::Event::Delete(pg)) => {
                        states.remove(&kube::ResourceExt::name_any(&pg));
                    }
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = listed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(watcher::Event::Init) | Err(_) => continue,
                }
                let counts = Counts {
                    reconciled: states.values().filter(|s| s.0).count(),
                    running: states.values().filter(|s| s.1).count(),
                };
                tx.send_if_modified(|c| std::mem::replace(c, counts) != counts);
            }
        });
        let _ = listed.await;
        counts.mark_unchanged();
        Progress {
            counts,
            _task: AbortOnDrop::new(task),
        }
    }

    /// The counts as they change, for a reader of its own.
    pub fn receiver(&self) -> watch::Receiver<Counts> {
        self.counts.clone()
    }

    pub fn now(&self) -> Counts {
        *self.counts.borrow()
    }

    /// Waits until `done` holds or `timeout` passes; returns the counts at that moment.
    pub async fn wait(&mut self, timeout: Duration, done: impl Fn(&Counts) -> bool) -> Counts {
        let _ = tokio::time::timeout(timeout, self.counts.wait_for(|c| done(c))).await;
        self.now()
    }
}
