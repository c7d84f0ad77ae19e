//! `SPILO_CONFIGURATION` (Zalando's `generateSpiloJSONConfiguration`).
//!
//! Shape: `{"postgresql": {local settings}, "bootstrap": {"initdb": [...], "dcs": {...}}}`.
//! Parameters Spilo must own locally (see [`LOCAL_PARAMETERS`]) stay under `postgresql.parameters`;
//! every other parameter goes to `bootstrap.dcs.postgresql.parameters`. Patroni settings go
//! to `bootstrap.dcs`, initdb options (sorted by name) to `bootstrap.initdb`, `pg_hba` to
//! `postgresql.pg_hba`, and without `enable_pgversion_env_var` the binaries directory to
//! `postgresql.bin_dir`.

use common::config::Config;
use common::crd::Postgresql;
use serde_json::{Map, Value, json};

/// Parameters that are not bootstrap-only: Spilo sets them in its local configuration.
pub const LOCAL_PARAMETERS: &[&str] = &[
    "archive_command",
    "shared_buffers",
    "logging_collector",
    "log_destination",
    "log_directory",
    "log_filename",
    "log_file_mode",
    "log_rotation_age",
    "log_truncate_on_rotation",
    "ssl",
    "ssl_ca_file",
    "ssl_crl_file",
    "ssl_cert_file",
    "ssl_key_file",
    "shared_preload_libraries",
    "bg_mon.listen_address",
    "bg_mon.history_buckets",
    "pg_stat_statements.track_utility",
    "extwlist.extensions",
    "extwlist.custom_path",
];

/// Whether `name` belongs to the local-only group ([`LOCAL_PARAMETERS`]): it goes into Spilo's
/// local configuration (a change needs the pods recreated); every other parameter goes into
/// `bootstrap.dcs` and is patched live through Patroni's API (`crate::dcs`).
pub fn is_local(name: &str) -> bool {
    LOCAL_PARAMETERS.contains(&name)
}

/// Default initdb options; a manifest option of the same name replaces the value.
const DEFAULT_INITDB: &[(&str, &str)] = &[("auth-host", "scram-sha-256"), ("auth-local", "trust")];

fn initdb(pg: &Postgresql) -> Vec<Value> {
    let mut entries: Vec<(String, Option<String>)> = DEFAULT_INITDB
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect();
    let options = pg.spec.patroni.as_ref().and_then(|p| p.initdb.as_ref());
    // BTreeMap iteration is sorted by option name.
    for (key, value) in options.into_iter().flatten() {
        if let Some(entry) = entries.iter_mut().find(|(k, _)| k == key) {
            entry.1 = Some(value.clone());
        } else if value.eq_ignore_ascii_case("true") {
            entries.push((key.clone(), None));
        } else {
            entries.push((key.clone(), Some(value.clone())));
        }
    }
    entries
        .into_iter()
        .map(|(key, value)| match value {
            None => Value::String(key),
            Some(value) => json!({ key: value }),
        })
        .collect()
}

/// The JSON of `SPILO_CONFIGURATION`, `version` being the major version Spilo runs.
pub fn configuration(config: &Config, pg: &Postgresql, version: &str) -> String {
    let mut local = Map::new();
    let mut local_parameters = Map::new();
    let mut dcs_parameters = Map::new();
    for (name, value) in pg.spec.postgresql.parameters.iter().flatten() {
        let target = if is_local(name) {
            &mut local_parameters
        } else {
            &mut dcs_parameters
        };
        target.insert(name.clone(), Value::String(value.clone()));
    }
    if !local_parameters.is_empty() {
        local.insert("parameters".into(), Value::Object(local_parameters));
    }
    let patroni = pg.spec.patroni.clone().unwrap_or_default();
    if let Some(pg_hba) = patroni.pg_hba.filter(|h| !h.is_empty()) {
        local.insert("pg_hba".into(), json!(pg_hba));
    }
    if !config.enable_pgversion_env_var {
        local.insert(
            "bin_dir".into(),
            json!(format!("/usr/lib/postgresql/{version}/bin")),
        );
    }

    let mut dcs = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            dcs.insert(key.to_string(), value);
        }
    };
    put("ttl", patroni.ttl.filter(|v| *v > 0).map(Value::from));
    put(
        "loop_wait",
        patroni.loop_wait.filter(|v| *v > 0).map(Value::from),
    );
    put(
        "retry_timeout",
        patroni.retry_timeout.filter(|v| *v > 0).map(Value::from),
    );
    put(
        "maximum_lag_on_failover",
        patroni
            .maximum_lag_on_failover
            .filter(|v| *v > 0)
            .map(Value::from),
    );
    put(
        "synchronous_mode",
        patroni.synchronous_mode.filter(|v| *v).map(Value::from),
    );
    put(
        "synchronous_mode_strict",
        patroni
            .synchronous_mode_strict
            .filter(|v| *v)
            .map(Value::from),
    );
    put(
        "synchronous_node_count",
        patroni
            .synchronous_node_count
            .filter(|v| *v > 0)
            .map(Value::from),
    );
    let failsafe = patroni
        .failsafe_mode
        .or(config.patroni.enable_patroni_failsafe_mode.then_some(true));
    put("failsafe_mode", failsafe.map(Value::from));
    if let Some(slots) = patroni.slots.filter(|s| !s.is_empty()) {
        put("slots", Some(json!(slots)));
    }
    if !dcs_parameters.is_empty() {
        put("postgresql", Some(json!({ "parameters": dcs_parameters })));
    }

    let mut bootstrap = Map::new();
    bootstrap.insert("initdb".into(), Value::Array(initdb(pg)));
    if !dcs.is_empty() {
        bootstrap.insert("dcs".into(), Value::Object(dcs));
    }
    let mut root = Map::new();
    root.insert("postgresql".into(), Value::Object(local));
    root.insert("bootstrap".into(), Value::Object(bootstrap));
    Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn parsed(config: &Config, pg: &Postgresql) -> Value {
        serde_json::from_str(&configuration(config, pg, "17")).unwrap()
    }

    #[test]
    fn minimal_has_default_initdb_only() {
        let v = parsed(&config(), &minimal());
        assert_eq!(
            v,
            json!({
                "postgresql": {},
                "bootstrap": {"initdb": [{"auth-host": "scram-sha-256"}, {"auth-local": "trust"}]}
            })
        );
    }

    #[test]
    fn complete_splits_parameters_and_patroni_settings() {
        let v = parsed(&config(), &complete());
        assert_eq!(
            v["postgresql"]["parameters"],
            json!({"shared_buffers": "32MB"})
        );
        assert_eq!(
            v["bootstrap"]["dcs"]["postgresql"]["parameters"],
            json!({"max_connections": "10", "log_statement": "all"})
        );
        assert_eq!(
            v["postgresql"]["pg_hba"],
            json!([
                "hostssl all all 0.0.0.0/0 md5",
                "host    all all 0.0.0.0/0 md5"
            ])
        );
        // Options sorted by name; flag options given as "true" become bare strings.
        assert_eq!(
            v["bootstrap"]["initdb"],
            json!([
                {"auth-host": "scram-sha-256"},
                {"auth-local": "trust"},
                "data-checksums",
                {"encoding": "UTF8"},
                {"locale": "en_US.UTF-8"}
            ])
        );
        let dcs = &v["bootstrap"]["dcs"];
        assert_eq!(dcs["ttl"], 30);
        assert_eq!(dcs["loop_wait"], 10);
        assert_eq!(dcs["retry_timeout"], 10);
        assert_eq!(dcs["maximum_lag_on_failover"], 33554432);
        assert_eq!(dcs["synchronous_node_count"], 1);
        assert_eq!(dcs["failsafe_mode"], false);
        assert!(dcs.get("synchronous_mode").is_none());
        assert_eq!(dcs["slots"]["permanent_logical_1"]["plugin"], "pgoutput");
        assert!(v["postgresql"].get("bin_dir").is_none());
    }

    #[test]
    fn bin_dir_and_failsafe_fallback() {
        let mut config = config();
        config.enable_pgversion_env_var = false;
        config.patroni.enable_patroni_failsafe_mode = true;
        let v = parsed(&config, &minimal());
        assert_eq!(v["postgresql"]["bin_dir"], "/usr/lib/postgresql/17/bin");
        assert_eq!(v["bootstrap"]["dcs"]["failsafe_mode"], true);
    }
}
