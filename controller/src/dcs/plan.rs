//! What to `PATCH /config` so that Patroni's dynamic configuration matches the manifest: Zalando's
//! `checkAndSetGlobalPostgreSQLConfiguration`, pure. Only what Zalando compares is compared, in
//! Zalando's way, so a cluster taken over from Zalando is patched exactly as Zalando would.
//!
//! - `ttl`, `loop_wait`, `retry_timeout`, `maximum_lag_on_failover`: only when the manifest value
//!   is positive (0 or unset leaves the DCS alone).
//! - `pg_hba`: when the manifest gives one, under the top-level key `pg_hba` as Zalando sends it.
//!   Patroni reads `postgresql.pg_hba`, so, as in Zalando, this patch changes no pod: a
//!   changed `pg_hba` reaches the pods through their local configuration when they are recreated.
//! - `synchronous_mode`, `synchronous_mode_strict`, `synchronous_node_count`: always compared; an
//!   unset manifest value means false/0.
//! - `failsafe_mode`: the manifest's, else the operator's `enable_patroni_failsafe_mode` (which
//!   Zalando defaults to false, so an absent DCS value is patched to false once).
//! - `slots`: manifest slots missing or different in the DCS are set; slots the operator
//!   remembers from the manifest (see [`Slots`]) that were removed or changed are nulled (a
//!   changed one is then set again in the same patch); slots made by anyone else are untouched.
//! - `postgresql.parameters`: only the DCS group (not [`crate::desired::spilo::LOCAL_PARAMETERS`])
//!   and only the keys the manifest has: a key removed from the manifest stays in the DCS. Values
//!   compare as strings, an absent key as `""`. With streams, `wal_level` is `logical`.

use crate::desired::spilo;
use common::config::Config;
use common::crd::Postgresql;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Replication slots: name → settings (`type`, `plugin`, `database`, ...).
pub type Slots = BTreeMap<String, BTreeMap<String, String>>;

/// Spilo's `loop_wait` when the DCS has none.
pub const DEFAULT_LOOP_WAIT: u64 = 10;

/// What the manifest and the operator configuration want in the DCS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Desired {
    pub ttl: Option<u32>,
    pub loop_wait: Option<u32>,
    pub retry_timeout: Option<u32>,
    pub maximum_lag_on_failover: Option<i64>,
    pub pg_hba: Option<Vec<String>>,
    pub synchronous_mode: bool,
    pub synchronous_mode_strict: bool,
    pub synchronous_node_count: u32,
    pub failsafe_mode: bool,
    /// The manifest's slots.
    pub slots: Slots,
    /// The manifest's parameters of the DCS group.
    pub parameters: BTreeMap<String, String>,
}

impl Desired {
    /// What `pg` asks for under `config`.
    pub fn of(config: &Config, pg: &Postgresql) -> Self {
        let patroni = pg.spec.patroni.clone().unwrap_or_default();
        let mut parameters: BTreeMap<String, String> = pg
            .spec
            .postgresql
            .parameters
            .iter()
            .flatten()
            .filter(|(name, _)| !spilo::is_local(name))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if pg.spec.streams.as_ref().is_some_and(|s| !s.is_empty()) {
            parameters.insert("wal_level".into(), "logical".into());
        }
        Desired {
            ttl: patroni.ttl,
            loop_wait: patroni.loop_wait,
            retry_timeout: patroni.retry_timeout,
            maximum_lag_on_failover: patroni.maximum_lag_on_failover,
            pg_hba: patroni.pg_hba,
            synchronous_mode: patroni.synchronous_mode.unwrap_or(false),
            synchronous_mode_strict: patroni.synchronous_mode_strict.unwrap_or(false),
            synchronous_node_count: patroni.synchronous_node_count.unwrap_or(0),
            failsafe_mode: patroni
                .failsafe_mode
                .unwrap_or(config.patroni.enable_patroni_failsafe_mode),
            slots: patroni.slots.unwrap_or_default(),
            parameters,
        }
    }
}

/// One parameter of the DCS group that changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterChange {
    pub name: String,
    /// The DCS value as a string; `""` when the DCS has none.
    pub from: String,
    pub to: String,
}

/// The patch and what it changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The body of `PATCH /config`; `None` when the DCS matches.
    pub patch: Option<Value>,
    /// The parameters it changes.
    pub parameters: Vec<ParameterChange>,
    /// The Patroni settings it changes (`ttl`, `slots`, ...), as `key old → new` notes.
    pub settings: Vec<String>,
    /// The manifest's slots, to remember for the next plan.
    pub remember: Slots,
    /// The DCS's `loop_wait` before the patch: how long Patroni may take to apply it.
    pub loop_wait: u64,
}

impl Plan {
    /// A short account of the changes, for an Event.
    pub fn summary(&self) -> String {
        self.settings
            .iter()
            .cloned()
            .chain(
                self.parameters
                    .iter()
                    .map(|p| format!("{} {:?} → {:?}", p.name, p.from, p.to)),
            )
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why no plan was made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Zalando's skip: a DCS without Patroni settings or without parameters is a cluster not
    /// initialised yet (restoring from a backup, say).
    #[error(
        "Patroni's dynamic configuration is empty ({0}): the cluster is probably still initialising; not patched"
    )]
    Empty(&'static str),
}

/// A DCS value as Zalando compares it: strings as they are, numbers in decimal, booleans as
/// `true`/`false`, anything else as JSON. (Zalando formats JSON numbers with Go's `%v`, which
/// writes 1000000 as `1e+06` and so re-patches such a value once as a string; here it compares
/// equal to "1000000".)
pub fn stringify(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// A DCS number (Patroni stores them as JSON numbers; a numeric string is read too).
fn number(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn boolean(value: Option<&Value>) -> Option<bool> {
    match value? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Some(true),
            "false" | "off" | "no" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn slot_of(value: &Value) -> Option<BTreeMap<String, String>> {
    Some(
        value
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), stringify(v)))
            .collect(),
    )
}

/// Whether the DCS holds nothing Zalando would call a configuration (its `acidv1.Patroni{}`).
fn no_patroni_settings(current: &Map<String, Value>) -> bool {
    let zero = |key: &str| match current.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => !b,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
    };
    [
        "ttl",
        "loop_wait",
        "retry_timeout",
        "maximum_lag_on_failover",
        "pg_hba",
        "slots",
        "synchronous_mode",
        "synchronous_mode_strict",
        "synchronous_node_count",
        "initdb",
    ]
    .iter()
    .all(|k| zero(k))
        && current.get("failsafe_mode").is_none_or(Value::is_null)
}

/// The patch that brings `current` (the answer of `GET /config`) to `desired`; `remembered` are
/// the manifest slots of the previous plan.
pub fn plan(desired: &Desired, current: &Value, remembered: &Slots) -> Result<Plan, PlanError> {
    let empty = Map::new();
    let current = current.as_object().unwrap_or(&empty);
    let effective_parameters = current
        .get("postgresql")
        .and_then(|p| p.get("parameters"))
        .and_then(Value::as_object)
        .filter(|p| !p.is_empty())
        .ok_or(PlanError::Empty("no postgresql.parameters"))?;
    if no_patroni_settings(current) {
        return Err(PlanError::Empty("no Patroni settings"));
    }
    let mut patch = Map::new();
    let mut settings = Vec::new();
    let mut set = |key: &str, from: Option<&Value>, to: Value| {
        let from = from.map_or_else(|| "unset".to_string(), Value::to_string);
        settings.push(format!("{key} {from} → {to}"));
        patch.insert(key.to_string(), to);
    };

    // Zalando's order: loop_wait, maximum_lag_on_failover, pg_hba, retry_timeout, the
    // synchronous settings, ttl, failsafe_mode, slots (the order of a JSON object is irrelevant
    // to Patroni; it only orders the Event's notes).
    let positive = [
        ("loop_wait", desired.loop_wait.map(i64::from)),
        ("maximum_lag_on_failover", desired.maximum_lag_on_failover),
        ("retry_timeout", desired.retry_timeout.map(i64::from)),
        ("ttl", desired.ttl.map(i64::from)),
    ];
    for (key, want) in positive {
        if let Some(want) = want.filter(|v| *v > 0)
            && number(current.get(key)) != Some(want)
        {
            set(key, current.get(key), json!(want));
        }
    }
    if let Some(pg_hba) = &desired.pg_hba {
        let effective: Option<Vec<String>> = current
            .get("pg_hba")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(stringify).collect());
        if effective.as_ref() != Some(pg_hba) {
            set("pg_hba", current.get("pg_hba"), json!(pg_hba));
        }
    }
    let flags = [
        ("synchronous_mode", desired.synchronous_mode),
        ("synchronous_mode_strict", desired.synchronous_mode_strict),
    ];
    for (key, want) in flags {
        if boolean(current.get(key)).unwrap_or(false) != want {
            set(key, current.get(key), json!(want));
        }
    }
    let count = i64::from(desired.synchronous_node_count);
    if number(current.get("synchronous_node_count")).unwrap_or(0) != count {
        set(
            "synchronous_node_count",
            current.get("synchronous_node_count"),
            json!(count),
        );
    }
    if boolean(current.get("failsafe_mode")) != Some(desired.failsafe_mode) {
        set(
            "failsafe_mode",
            current.get("failsafe_mode"),
            json!(desired.failsafe_mode),
        );
    }

    let effective_slots: Slots = current
        .get("slots")
        .and_then(Value::as_object)
        .map(|s| {
            s.iter()
                .filter_map(|(name, slot)| Some((name.clone(), slot_of(slot)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut slots = Map::new();
    for (name, old) in remembered {
        if desired.slots.get(name) != Some(old) {
            slots.insert(name.clone(), Value::Null);
        }
    }
    for (name, want) in &desired.slots {
        if effective_slots.get(name) != Some(want) {
            slots.insert(name.clone(), json!(want));
        }
    }
    if !slots.is_empty() {
        let notes: Vec<String> = slots
            .iter()
            .map(|(name, v)| format!("{name} {}", if v.is_null() { "removed" } else { "set" }))
            .collect();
        settings.push(format!("slots: {}", notes.join(", ")));
        patch.insert("slots".into(), Value::Object(slots));
    }

    let mut parameters = Vec::new();
    for (name, want) in &desired.parameters {
        let from = effective_parameters
            .get(name)
            .map(stringify)
            .unwrap_or_default();
        if &from != want {
            parameters.push(ParameterChange {
                name: name.clone(),
                from,
                to: want.clone(),
            });
        }
    }
    if !parameters.is_empty() {
        let values: Map<String, Value> = parameters
            .iter()
            .map(|p| (p.name.clone(), json!(p.to)))
            .collect();
        patch.insert("postgresql".into(), json!({ "parameters": values }));
    }

    Ok(Plan {
        patch: (!patch.is_empty()).then_some(Value::Object(patch)),
        parameters,
        settings,
        remember: desired.slots.clone(),
        loop_wait: number(current.get("loop_wait"))
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(DEFAULT_LOOP_WAIT),
    })
}
