//! The per-database part of the catalog read (schemas, extensions, default privileges), reused
//! while nothing that decides it changed.
//!
//! Those objects live in each database's own catalog, so reading them costs one connection and
//! one round-trip per database with prepared objects, on every sync. Zalando touches them only
//! when `preparedDatabases` changes. Here a read that found everything in place (the whole plan
//! was empty) is remembered and stands in for the next reads, so a no-op sync costs the one
//! cluster-wide read — until the wanted objects, the databases, or the leader change, a sync has
//! to act, the operator restarts, or [`MAX_AGE`] has passed since the real read (which repairs
//! what someone changed by hand behind the operator's back, where Zalando never looks again).

use common::database::model::{Actual, Wanted};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a remembered read stands in: a hand-made change inside a database (a dropped schema)
/// is put back within this time. Not a configuration option: short resync periods (tests,
/// benchmarks) must not turn it off.
pub const MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// What the per-database reads found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parts {
    pub schemas: BTreeMap<(String, String), String>,
    pub extensions: BTreeMap<(String, String), String>,
    pub default_privileges: BTreeSet<(String, String, String)>,
}

impl Parts {
    /// The per-database part of `actual`.
    pub fn of(actual: &Actual) -> Self {
        Self {
            schemas: actual.schemas.clone(),
            extensions: actual.extensions.clone(),
            default_privileges: actual.default_privileges.clone(),
        }
    }

    /// Puts these parts into `actual`, as if they had been read.
    pub fn into_actual(self, actual: &mut Actual) {
        actual.schemas = self.schemas;
        actual.extensions = self.extensions;
        actual.default_privileges = self.default_privileges;
    }
}

/// Everything a remembered read depends on: the wanted per-database objects, the databases they
/// live in with their owners (a database dropped and made again is another one), and the server.
pub fn key(wanted: &Wanted, databases: &BTreeMap<String, String>, host: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    format!(
        "{:?}|{:?}|{:?}|{databases:?}|{host}",
        wanted.schemas, wanted.extensions, wanted.default_privileges
    )
    .hash(&mut hasher);
    hasher.finish()
}

struct Entry {
    key: u64,
    read_at: Instant,
    parts: Parts,
}

/// Remembered reads, by cluster.
#[derive(Default)]
pub struct Memo {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Memo {
    /// The parts read for `cluster` under `key`, unless older than `max_age`.
    pub fn get(&self, cluster: &str, key: u64, max_age: Duration) -> Option<Parts> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(cluster)
            .filter(|e| e.key == key && e.read_at.elapsed() < max_age)
            .map(|e| e.parts.clone())
    }

    /// Remembers a real read that found nothing to do.
    pub fn put(&self, cluster: &str, key: u64, parts: Parts) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(
            cluster.to_string(),
            Entry {
                key,
                read_at: Instant::now(),
                parts,
            },
        );
    }

    /// Forgets `cluster`'s read: the next sync reads again.
    pub fn forget(&self, cluster: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(cluster);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::database::model::Schema;

    fn parts() -> Parts {
        let mut p = Parts::default();
        p.schemas
            .insert(("bar".into(), "data".into()), "bar_owner".into());
        p
    }

    #[test]
    fn a_read_stands_in_only_under_the_same_key_and_while_fresh() {
        let memo = Memo::default();
        let minute = Duration::from_secs(60);
        assert_eq!(memo.get("uid", 1, minute), None);
        memo.put("uid", 1, parts());
        assert_eq!(memo.get("uid", 1, minute), Some(parts()));
        assert_eq!(memo.get("uid", 2, minute), None, "another key");
        assert_eq!(memo.get("other", 1, minute), None, "another cluster");
        assert_eq!(memo.get("uid", 1, Duration::ZERO), None, "too old");
        memo.forget("uid");
        assert_eq!(memo.get("uid", 1, minute), None);
    }

    #[test]
    fn the_key_follows_the_wanted_objects_the_databases_and_the_leader() {
        let mut wanted = Wanted::default();
        let databases = BTreeMap::from([("bar".to_string(), "bar_owner".to_string())]);
        let base = key(&wanted, &databases, "127.0.0.1");
        assert_eq!(base, key(&wanted, &databases, "127.0.0.1"));
        assert_ne!(base, key(&wanted, &databases, "127.0.0.2"), "a new leader");
        let recreated = BTreeMap::from([("bar".to_string(), "someone".to_string())]);
        assert_ne!(base, key(&wanted, &recreated, "127.0.0.1"));
        wanted.schemas.push(Schema {
            database: "bar".into(),
            name: "data".into(),
            owner: "bar_owner".into(),
        });
        assert_ne!(base, key(&wanted, &databases, "127.0.0.1"), "a new schema");
    }

    #[test]
    fn parts_round_trip_through_an_actual() {
        let mut actual = Actual::default();
        parts().into_actual(&mut actual);
        assert_eq!(Parts::of(&actual), parts());
    }
}
