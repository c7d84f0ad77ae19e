//! Patroni's REST API (port 8008 of each member), the way the operator talks to a running
//! cluster: its members and their replication state, the dynamic configuration in the DCS,
//! restarts and switchovers (Zalando's `pkg/util/patroni`).
//!
//! Behind the [`Patroni`] trait so the rollout and configuration logic is tested without a
//! server ([`fake::Fake`] records the calls); [`http::Http`] is the real client, plain HTTP with
//! a timeout per call as Patroni serves it in Spilo.

pub mod fake;
pub mod http;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;

/// Patroni's REST port in Spilo.
pub const PORT: u16 = 8008;

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No answer: refused, reset or timed out.
    #[error("Patroni at {address} did not answer {call}: {reason}")]
    Unreachable {
        /// The member's address.
        address: String,
        /// The call, e.g. `GET /cluster`.
        call: &'static str,
        /// What the transport said.
        reason: String,
    },
    /// An answer with a status other than 2xx; Patroni's text says why (e.g. a switchover
    /// refused because the candidate is not healthy).
    #[error("Patroni at {address} refused {call} with status {status}: {message}")]
    Refused {
        /// The member's address.
        address: String,
        /// The call.
        call: &'static str,
        /// The HTTP status.
        status: u16,
        /// Patroni's answer, shortened.
        message: String,
    },
    /// A 2xx answer that is not what the call returns.
    #[error("Patroni at {address} answered {call} with something unexpected: {reason}")]
    Malformed {
        /// The member's address.
        address: String,
        /// The call.
        call: &'static str,
        /// What did not parse.
        reason: String,
    },
}

/// One member as `GET /cluster` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Member {
    /// The member's name: its pod's name.
    pub name: String,
    /// `leader`, `standby_leader`, `sync_standby`, `quorum_standby` or `replica`.
    #[serde(default)]
    pub role: String,
    /// `running`, `streaming`, `in archive recovery`, `starting`, `stopped`, `creating replica`…
    #[serde(default)]
    pub state: String,
    /// Bytes of WAL behind the leader; `None` when Patroni says `unknown` (or for the leader).
    #[serde(default, deserialize_with = "lag")]
    pub lag: Option<u64>,
    /// The member's timeline.
    #[serde(default)]
    pub timeline: Option<u64>,
    /// Whether a changed parameter waits for a restart.
    #[serde(default)]
    pub pending_restart: bool,
}

impl Member {
    /// Whether the member holds the leader lock.
    pub fn is_leader(&self) -> bool {
        matches!(self.role.as_str(), "leader" | "standby_leader")
    }

    /// Whether the member is a synchronous standby.
    pub fn is_sync_standby(&self) -> bool {
        matches!(self.role.as_str(), "sync_standby" | "quorum_standby")
    }

    /// Whether a replica replicates: Patroni runs its PostgreSQL and it streams or restores WAL.
    pub fn is_replicating(&self) -> bool {
        matches!(
            self.state.as_str(),
            "running" | "streaming" | "in archive recovery"
        )
    }
}

fn lag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64(),
        _ => None,
    })
}

/// `GET /cluster`: the members and whether the cluster is paused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Cluster {
    /// The members, sorted by name.
    #[serde(default)]
    pub members: Vec<Member>,
    /// Maintenance mode: Patroni takes no automatic action.
    #[serde(default)]
    pub pause: bool,
}

impl Cluster {
    /// The member holding the leader lock.
    pub fn leader(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.is_leader())
    }
}

/// `GET /patroni`: the member's own view.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Status {
    /// `running`, `starting`, `stopped`…
    #[serde(default)]
    pub state: String,
    /// `primary` (Patroni 4; `master` before), `replica`, `standby_leader`.
    #[serde(default)]
    pub role: String,
    /// The running server's version number, e.g. 170004.
    #[serde(default)]
    pub server_version: u32,
    /// Whether a changed parameter waits for a restart.
    #[serde(default)]
    pub pending_restart: bool,
}

impl Status {
    /// Whether the member runs as the primary.
    pub fn is_primary(&self) -> bool {
        matches!(self.role.as_str(), "primary" | "master")
    }
}

/// Patroni's REST API. `address` is the member's IP (the port is [`PORT`]).
pub trait Patroni: Send + Sync {
    /// `GET /cluster`.
    fn cluster<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<Cluster, Error>>;
    /// `GET /patroni`.
    fn status<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<Status, Error>>;
    /// `GET /config`: the dynamic configuration in the DCS.
    fn config<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<Value, Error>>;
    /// `PATCH /config` with the keys to change (`null` removes one).
    fn patch_config<'a>(
        &'a self,
        address: &'a str,
        patch: &'a Value,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// `POST /restart`, only when a restart is pending.
    fn restart<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<(), Error>>;
    /// `POST /switchover` from `leader` to `candidate`, now.
    fn switchover<'a>(
        &'a self,
        address: &'a str,
        leader: &'a str,
        candidate: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// `POST /switchover` from `leader` to `candidate` at `scheduled_at` (an ISO 8601 time with
    /// an offset, e.g. `2024-05-06T01:00+00`): Patroni keeps it in the DCS and its leader runs it
    /// then (answer 202), if the candidate is healthy at that time.
    fn scheduled_switchover<'a>(
        &'a self,
        address: &'a str,
        leader: &'a str,
        candidate: &'a str,
        scheduled_at: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_parses_patroni_4_answers() {
        let answer = serde_json::json!({
            "members": [
                {"name": "acid-0", "role": "leader", "state": "running", "timeline": 3},
                {"name": "acid-1", "role": "sync_standby", "state": "streaming", "lag": 0,
                 "receive_lag": 0, "pending_restart": true},
                {"name": "acid-2", "role": "replica", "state": "creating replica",
                 "lag": "unknown"}
            ],
            "scope": "acid"
        });
        let cluster: Cluster = serde_json::from_value(answer).unwrap();
        assert_eq!(cluster.leader().unwrap().name, "acid-0");
        assert_eq!(cluster.members[1].lag, Some(0));
        assert!(cluster.members[1].is_sync_standby() && cluster.members[1].pending_restart);
        assert!(cluster.members[1].is_replicating());
        assert_eq!(cluster.members[2].lag, None);
        assert!(!cluster.members[2].is_replicating());
        assert!(!cluster.pause);
    }

    #[test]
    fn status_knows_both_primary_names() {
        let status: Status =
            serde_json::from_value(serde_json::json!({"state": "running", "role": "master",
                "server_version": 150010}))
            .unwrap();
        assert!(status.is_primary() && status.server_version == 150010);
        let status: Status =
            serde_json::from_value(serde_json::json!({"role": "replica"})).unwrap();
        assert!(!status.is_primary() && !status.pending_restart);
    }
}
