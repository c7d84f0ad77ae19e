//! A scripted Patroni for tests: answers from a table and records every call in order.

use super::{Cluster, Error, Patroni, Status};
use futures::future::BoxFuture;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;

/// The answers and the calls made.
#[derive(Default)]
pub struct Fake {
    /// `GET /cluster` per address.
    pub clusters: Mutex<HashMap<String, Result<Cluster, Error>>>,
    /// `GET /patroni` per address.
    pub statuses: Mutex<HashMap<String, Result<Status, Error>>>,
    /// `GET /config` per address.
    pub configs: Mutex<HashMap<String, Result<Value, Error>>>,
    /// What a write call answers (default: success).
    pub write_result: Mutex<Option<Error>>,
    /// Every call, e.g. `POST /switchover 127.10.0.1 acid-0 -> acid-1`.
    pub calls: Mutex<Vec<String>>,
}

fn missing(address: &str, call: &'static str) -> Error {
    Error::Unreachable {
        address: address.to_string(),
        call,
        reason: "no scripted answer".into(),
    }
}

impl Fake {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn written(&self) -> Result<(), Error> {
        match self.write_result.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Patroni for Fake {
    fn cluster<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<Cluster, Error>> {
        self.record(format!("GET /cluster {address}"));
        let answer = self.clusters.lock().unwrap().get(address).cloned();
        Box::pin(async move { answer.unwrap_or_else(|| Err(missing(address, "GET /cluster"))) })
    }

    fn status<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<Status, Error>> {
        self.record(format!("GET /patroni {address}"));
        let answer = self.statuses.lock().unwrap().get(address).cloned();
        Box::pin(async move { answer.unwrap_or_else(|| Err(missing(address, "GET /patroni"))) })
    }

    fn config<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<Value, Error>> {
        self.record(format!("GET /config {address}"));
        let answer = self.configs.lock().unwrap().get(address).cloned();
        Box::pin(async move { answer.unwrap_or_else(|| Err(missing(address, "GET /config"))) })
    }

    fn patch_config<'a>(
        &'a self,
        address: &'a str,
        patch: &'a Value,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.record(format!("PATCH /config {address} {patch}"));
        let result = self.written();
        Box::pin(async move { result })
    }

    fn restart<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        self.record(format!("POST /restart {address}"));
        let result = self.written();
        Box::pin(async move { result })
    }

    fn switchover<'a>(
        &'a self,
        address: &'a str,
        leader: &'a str,
        candidate: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.record(format!(
            "POST /switchover {address} {leader} -> {candidate}"
        ));
        let result = self.written();
        Box::pin(async move { result })
    }

    fn scheduled_switchover<'a>(
        &'a self,
        address: &'a str,
        leader: &'a str,
        candidate: &'a str,
        scheduled_at: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.record(format!(
            "POST /switchover {address} {leader} -> {candidate} at {scheduled_at}"
        ));
        let result = self.written();
        Box::pin(async move { result })
    }
}
