//! The bookkeeping of the operator's database connections: how many it holds at once, per
//! cluster and in all, and which idle ones it keeps for reuse.
//!
//! Without a limit per cluster, one cluster with many databases (one connection each) could take
//! every slot of the global limit while the others wait; with at most [`PER_CLUSTER`] slots each,
//! the global slots are shared by at least `total / per_cluster` clusters at once. A sync opens a
//! connection to `postgres` several times (catalog read, plan, rotation), so a connection that
//! is done is kept idle for a short while ([`IDLE`]) and reused for the same cluster, host,
//! port, database and user. Idle connections count as held — they are open on the server — but
//! never make anyone wait: a slot that is needed closes the oldest idle connection first. An idle
//! connection to another host of the same cluster (the leader moved) is closed, never reused.
//!
//! This module decides and counts; it does not dial (`connect.rs` does), so the limits are
//! tested without a database.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Connections the operator holds at once, over all clusters.
pub const TOTAL: usize = 16;
/// Connections the operator holds at once to one cluster.
pub const PER_CLUSTER: usize = 2;
/// How long a connection that is done stays open for reuse.
pub const IDLE: Duration = Duration::from_secs(60);

/// The limits of a [`Slots`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub total: usize,
    pub per_cluster: usize,
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            total: TOTAL,
            per_cluster: PER_CLUSTER,
            idle: IDLE,
        }
    }
}

/// What a connection is to: only an idle connection with an equal key is reused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The cluster's uid: the unit of [`Limits::per_cluster`].
    pub cluster: String,
    /// The leader's IP when the connection was made.
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
}

/// The answer to a request for a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Grant<T> {
    /// An idle connection with the same key, now checked out.
    Reuse(T),
    /// A slot is reserved: open a new connection (and give the slot back if that fails).
    Open,
    /// No slot now; ask again after a connection is given back.
    Wait,
}

struct Idle<T> {
    key: Key,
    since: Instant,
    item: T,
}

/// Connections held, by state, and the most ever held at once.
pub struct Slots<T> {
    limits: Limits,
    /// Checked out or being opened, by cluster.
    busy: HashMap<String, usize>,
    busy_total: usize,
    /// Oldest first.
    idle: Vec<Idle<T>>,
    peak: usize,
}

impl<T> Slots<T> {
    pub fn new(limits: Limits) -> Self {
        Slots {
            limits,
            busy: HashMap::new(),
            busy_total: 0,
            idle: Vec::new(),
            peak: 0,
        }
    }

    /// Connections open or being opened now.
    pub fn held(&self) -> usize {
        self.busy_total + self.idle.len()
    }

    /// The most connections held at once so far.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// Idle connections now.
    pub fn idle(&self) -> usize {
        self.idle.len()
    }

    fn held_by(&self, cluster: &str) -> usize {
        self.busy.get(cluster).copied().unwrap_or(0)
            + self
                .idle
                .iter()
                .filter(|i| i.key.cluster == cluster)
                .count()
    }

    /// Removes and returns the idle connections older than [`Limits::idle`] (to be closed by
    /// dropping them, outside any lock).
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        let idle = self.limits.idle;
        self.remove_idle(|i| now.saturating_duration_since(i.since) >= idle)
    }

    fn remove_idle(&mut self, mut gone: impl FnMut(&Idle<T>) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        let mut kept = Vec::with_capacity(self.idle.len());
        for i in self.idle.drain(..) {
            if gone(&i) {
                removed.push(i.item);
            } else {
                kept.push(i);
            }
        }
        self.idle = kept;
        removed
    }

    /// Asks for a connection for `key`; also returns the idle connections to close.
    pub fn take(&mut self, key: &Key, now: Instant) -> (Grant<T>, Vec<T>) {
        let mut closed = self.expire(now);
        // The cluster's leader is elsewhere now: its old connections are of no use.
        closed.extend(self.remove_idle(|i| {
            i.key.cluster == key.cluster && (i.key.host != key.host || i.key.port != key.port)
        }));
        if let Some(at) = self.idle.iter().rposition(|i| i.key == *key) {
            let reused = self.idle.remove(at);
            self.checked_out(&key.cluster);
            return (Grant::Reuse(reused.item), closed);
        }
        if self.held_by(&key.cluster) >= self.limits.per_cluster {
            match self.idle.iter().position(|i| i.key.cluster == key.cluster) {
                Some(at) => closed.push(self.idle.remove(at).item),
                None => return (Grant::Wait, closed),
            }
        }
        if self.held() >= self.limits.total {
            if self.idle.is_empty() {
                return (Grant::Wait, closed);
            }
            closed.push(self.idle.remove(0).item);
        }
        self.checked_out(&key.cluster);
        self.peak = self.peak.max(self.held());
        (Grant::Open, closed)
    }

    fn checked_out(&mut self, cluster: &str) {
        *self.busy.entry(cluster.to_string()).or_default() += 1;
        self.busy_total += 1;
    }

    /// A connection granted for `key` is done: kept idle for reuse when `back` holds it, gone
    /// otherwise (it failed to open, broke, or its session state is not clean).
    pub fn give_back(&mut self, key: &Key, back: Option<T>, now: Instant) {
        if let Some(busy) = self.busy.get_mut(&key.cluster) {
            *busy = busy.saturating_sub(1);
            if *busy == 0 {
                self.busy.remove(&key.cluster);
            }
            self.busy_total = self.busy_total.saturating_sub(1);
        }
        if let Some(item) = back.filter(|_| !self.limits.idle.is_zero()) {
            self.idle.push(Idle {
                key: key.clone(),
                since: now,
                item,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(cluster: &str, host: &str, database: &str) -> Key {
        Key {
            cluster: cluster.into(),
            host: host.into(),
            port: 5432,
            database: database.into(),
            user: "postgres".into(),
        }
    }

    fn limits(total: usize, per_cluster: usize) -> Limits {
        Limits {
            total,
            per_cluster,
            idle: Duration::from_secs(60),
        }
    }

    #[test]
    fn one_cluster_never_holds_more_than_its_share() {
        let now = Instant::now();
        let mut slots: Slots<u32> = Slots::new(limits(4, 2));
        let a = key("a", "10.0.0.1", "postgres");
        assert_eq!(slots.take(&a, now).0, Grant::Open);
        assert_eq!(slots.take(&key("a", "10.0.0.1", "foo"), now).0, Grant::Open);
        assert_eq!(
            slots.take(&key("a", "10.0.0.1", "bar"), now).0,
            Grant::Wait,
            "a third database of the same cluster waits"
        );
        let b = key("b", "10.0.0.2", "postgres");
        assert_eq!(
            slots.take(&b, now).0,
            Grant::Open,
            "another cluster does not"
        );
        assert_eq!(slots.take(&b, now).0, Grant::Open);
        assert_eq!(
            slots.take(&key("c", "10.0.0.3", "postgres"), now).0,
            Grant::Wait,
            "the global limit holds"
        );
        assert_eq!((slots.held(), slots.peak()), (4, 4));
        slots.give_back(&a, None, now);
        assert_eq!(
            slots.take(&key("c", "10.0.0.3", "postgres"), now).0,
            Grant::Open,
            "a slot given back is free for anyone"
        );
        assert_eq!(slots.peak(), 4);
    }

    #[test]
    fn an_idle_connection_is_reused_for_the_same_key_only() {
        let now = Instant::now();
        let mut slots: Slots<u32> = Slots::new(limits(16, 2));
        let a = key("a", "10.0.0.1", "postgres");
        assert_eq!(slots.take(&a, now).0, Grant::Open);
        slots.give_back(&a, Some(7), now);
        assert_eq!((slots.held(), slots.idle()), (1, 1), "idle is still held");
        assert_eq!(slots.take(&key("a", "10.0.0.1", "foo"), now).0, Grant::Open);
        let (grant, closed) = slots.take(&a, now + Duration::from_secs(59));
        assert_eq!((grant, closed), (Grant::Reuse(7), vec![]));
        assert_eq!((slots.held(), slots.idle()), (2, 0));
        assert_eq!(slots.peak(), 2);
    }

    #[test]
    fn a_connection_to_a_former_leader_is_closed_not_reused() {
        let now = Instant::now();
        let mut slots: Slots<u32> = Slots::new(limits(16, 2));
        let old = key("a", "10.0.0.1", "postgres");
        slots.take(&old, now);
        slots.give_back(&old, Some(1), now);
        let new = key("a", "10.0.0.9", "postgres");
        assert_eq!(slots.take(&new, now), (Grant::Open, vec![1]));
        assert_eq!(slots.held(), 1);
    }

    #[test]
    fn idle_connections_expire_and_never_make_anyone_wait() {
        let now = Instant::now();
        let mut slots: Slots<u32> = Slots::new(limits(2, 2));
        let a = key("a", "10.0.0.1", "postgres");
        let a_foo = key("a", "10.0.0.1", "foo");
        slots.take(&a, now);
        slots.take(&a_foo, now);
        slots.give_back(&a, Some(1), now);
        slots.give_back(&a_foo, Some(2), now + Duration::from_secs(1));
        // Another cluster needs a slot: the oldest idle connection goes.
        let b = key("b", "10.0.0.2", "postgres");
        assert_eq!(slots.take(&b, now), (Grant::Open, vec![1]));
        // The same cluster, another database: its own idle connection makes room.
        let a_bar = key("a", "10.0.0.1", "bar");
        assert_eq!(slots.take(&a_bar, now), (Grant::Open, vec![2]));
        slots.give_back(&a_bar, Some(3), now);
        assert_eq!(
            slots.expire(now + Duration::from_secs(59)),
            Vec::<u32>::new()
        );
        assert_eq!(slots.expire(now + Duration::from_secs(60)), vec![3]);
        assert_eq!((slots.held(), slots.peak()), (1, 2));
    }

    #[test]
    fn a_broken_or_failed_connection_frees_its_slot() {
        let now = Instant::now();
        let mut slots: Slots<u32> = Slots::new(limits(1, 1));
        let a = key("a", "10.0.0.1", "postgres");
        assert_eq!(slots.take(&a, now).0, Grant::Open);
        slots.give_back(&a, None, now);
        assert_eq!(slots.held(), 0);
        assert_eq!(slots.take(&a, now).0, Grant::Open);
    }
}
