//! Table cases of [`super::plan::plan`], one group per rule of Zalando's
//! `checkAndSetGlobalPostgreSQLConfiguration`.

use super::plan::{Desired, ParameterChange, PlanError, Slots, plan};
use common::config::Config;
use common::crd::Postgresql;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A DCS as Spilo bootstraps it (failsafe_mode false, as Zalando's first sync leaves it).
fn dcs() -> Value {
    json!({
        "ttl": 30, "loop_wait": 10, "retry_timeout": 10,
        "maximum_lag_on_failover": 33554432,
        "failsafe_mode": false,
        "postgresql": {"use_pg_rewind": true, "parameters": {
            "max_connections": 100, "wal_level": "hot_standby", "archive_mode": "on",
            "max_wal_senders": "10", "hot_standby": "on"
        }}
    })
}

fn with(mut base: Value, path: &[&str], value: Value) -> Value {
    let mut at = &mut base;
    for key in &path[..path.len() - 1] {
        at = &mut at[*key];
    }
    at[path[path.len() - 1]] = value;
    base
}

fn pg(spec: &str) -> Postgresql {
    let version = if spec.contains("  postgresql:") {
        ""
    } else {
        "  postgresql: {version: \"17\"}\n"
    };
    let yaml = format!(
        "apiVersion: acid.zalan.do/v1\nkind: postgresql\nmetadata: {{name: acid-a}}\nspec:\n  teamId: acid\n  numberOfInstances: 2\n  volume: {{size: 1Gi}}\n{version}{spec}"
    );
    serde_yaml::from_str(&yaml).unwrap()
}

fn desired(spec: &str) -> Desired {
    Desired::of(&Config::default(), &pg(spec))
}

/// The patch for `spec` against `current`, with nothing remembered.
fn patch(spec: &str, current: &Value) -> Option<Value> {
    plan(&desired(spec), current, &Slots::new()).unwrap().patch
}

fn slots(entries: &[(&str, &[(&str, &str)])]) -> Slots {
    entries
        .iter()
        .map(|(name, kv)| {
            (
                name.to_string(),
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            )
        })
        .collect()
}

#[test]
fn an_unchanged_cluster_needs_no_patch() {
    assert_eq!(patch("", &dcs()), None);
    let spec = "  patroni: {ttl: 30, loop_wait: 10, retry_timeout: 10, maximum_lag_on_failover: 33554432}\n  postgresql: {version: \"17\", parameters: {max_connections: \"100\", max_wal_senders: \"10\"}}";
    assert_eq!(patch(spec, &dcs()), None);
}

#[test]
fn timing_settings_only_when_positive() {
    // (manifest, DCS, expected patch)
    let cases = [
        ("  patroni: {ttl: 20}", dcs(), Some(json!({"ttl": 20}))),
        ("  patroni: {ttl: 0}", dcs(), None),
        (
            "  patroni: {loop_wait: 5}",
            dcs(),
            Some(json!({"loop_wait": 5})),
        ),
        ("  patroni: {loop_wait: 0}", dcs(), None),
        (
            "  patroni: {retry_timeout: 5}",
            dcs(),
            Some(json!({"retry_timeout": 5})),
        ),
        (
            "  patroni: {maximum_lag_on_failover: 1048576}",
            dcs(),
            Some(json!({"maximum_lag_on_failover": 1048576})),
        ),
        ("  patroni: {maximum_lag_on_failover: -1}", dcs(), None),
        // A value the DCS lacks is set; a numeric string in the DCS compares as its number.
        (
            "  patroni: {ttl: 30}",
            with(dcs(), &["ttl"], Value::Null),
            Some(json!({"ttl": 30})),
        ),
        (
            "  patroni: {ttl: 30}",
            with(dcs(), &["ttl"], json!("30")),
            None,
        ),
    ];
    for (i, (spec, current, want)) in cases.into_iter().enumerate() {
        assert_eq!(patch(spec, &current), want, "case {i}: {spec}");
    }
}

#[test]
fn pg_hba_when_given_under_zalandos_top_level_key() {
    let lines = json!(["local all all trust", "host all all 0.0.0.0/0 md5"]);
    let spec = "  patroni: {pg_hba: [\"local all all trust\", \"host all all 0.0.0.0/0 md5\"]}";
    assert_eq!(patch(spec, &dcs()), Some(json!({"pg_hba": lines})));
    assert_eq!(patch(spec, &with(dcs(), &["pg_hba"], lines.clone())), None);
    // Not given: whatever the DCS has stays.
    assert_eq!(patch("", &with(dcs(), &["pg_hba"], lines)), None);
}

#[test]
fn synchronous_settings_are_always_compared() {
    let sync_on = with(
        with(dcs(), &["synchronous_mode"], json!(true)),
        &["synchronous_node_count"],
        json!(2),
    );
    let cases = [
        (
            "  patroni: {synchronous_mode: true}",
            dcs(),
            Some(json!({"synchronous_mode": true})),
        ),
        (
            "  patroni: {synchronous_mode_strict: true}",
            dcs(),
            Some(json!({"synchronous_mode_strict": true})),
        ),
        (
            "  patroni: {synchronous_node_count: 2}",
            dcs(),
            Some(json!({"synchronous_node_count": 2})),
        ),
        // Unset in the manifest forces false/0.
        (
            "",
            sync_on.clone(),
            Some(json!({"synchronous_mode": false, "synchronous_node_count": 0})),
        ),
        (
            "  patroni: {synchronous_mode: true, synchronous_node_count: 2}",
            sync_on,
            None,
        ),
        (
            "",
            with(dcs(), &["synchronous_mode_strict"], json!(true)),
            Some(json!({"synchronous_mode_strict": false})),
        ),
    ];
    for (i, (spec, current, want)) in cases.into_iter().enumerate() {
        assert_eq!(patch(spec, &current), want, "case {i}: {spec}");
    }
}

#[test]
fn failsafe_from_the_manifest_else_the_operator_configuration() {
    let unset = with(dcs(), &["failsafe_mode"], Value::Null);
    let config_on = {
        let mut c = Config::default();
        c.patroni.enable_patroni_failsafe_mode = true;
        c
    };
    let for_config = |config: &Config, spec: &str, current: &Value| {
        plan(&Desired::of(config, &pg(spec)), current, &Slots::new())
            .unwrap()
            .patch
    };
    // (configuration, manifest, DCS, expected)
    let cases = [
        // Zalando's default false is patched onto a DCS without failsafe_mode.
        (
            Config::default(),
            "",
            unset.clone(),
            Some(json!({"failsafe_mode": false})),
        ),
        (Config::default(), "", dcs(), None),
        (
            config_on.clone(),
            "",
            dcs(),
            Some(json!({"failsafe_mode": true})),
        ),
        // The manifest wins over the configuration.
        (config_on, "  patroni: {failsafe_mode: false}", dcs(), None),
        (
            Config::default(),
            "  patroni: {failsafe_mode: true}",
            dcs(),
            Some(json!({"failsafe_mode": true})),
        ),
    ];
    for (i, (config, spec, current, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            for_config(&config, spec, &current),
            want,
            "case {i}: {spec}"
        );
    }
}

#[test]
fn slots_set_null_remembered_and_leave_foreign_ones() {
    let logical = [
        ("type", "logical"),
        ("database", "foo"),
        ("plugin", "pgoutput"),
    ];
    let physical: &[(&str, &str)] = &[("type", "physical")];
    let foreign = json!({"type": "physical"});
    let current_with = |s: Value| with(dcs(), &["slots"], s);
    let spec_one =
        "  patroni:\n    slots:\n      one: {type: logical, database: foo, plugin: pgoutput}";
    let spec_one_changed =
        "  patroni:\n    slots:\n      one: {type: logical, database: bar, plugin: pgoutput}";
    // (manifest, DCS slots, remembered, expected slots patch, expected remembered after)
    let cases: Vec<(&str, Value, Slots, Option<Value>, Slots)> = vec![
        // A new manifest slot is set, a foreign one untouched.
        (
            spec_one,
            json!({"other": foreign}),
            Slots::new(),
            Some(json!({"one": {"type": "logical", "database": "foo", "plugin": "pgoutput"}})),
            slots(&[("one", &logical)]),
        ),
        // Already there: nothing.
        (
            spec_one,
            json!({"one": {"type": "logical", "database": "foo", "plugin": "pgoutput"}, "other": foreign}),
            slots(&[("one", &logical)]),
            None,
            slots(&[("one", &logical)]),
        ),
        // Removed from the manifest: the remembered slot is nulled, the foreign one kept.
        (
            "",
            json!({"one": {"type": "logical", "database": "foo", "plugin": "pgoutput"}, "other": foreign}),
            slots(&[("one", &logical)]),
            Some(json!({"one": null})),
            Slots::new(),
        ),
        // Removed, but never remembered (e.g. Zalando after a restart): untouched.
        (
            "",
            json!({"one": {"type": "logical", "database": "foo", "plugin": "pgoutput"}}),
            Slots::new(),
            None,
            Slots::new(),
        ),
        // Changed: the null is overwritten by the new definition in the same patch.
        (
            spec_one_changed,
            json!({"one": {"type": "logical", "database": "foo", "plugin": "pgoutput"}}),
            slots(&[("one", &logical)]),
            Some(json!({"one": {"type": "logical", "database": "bar", "plugin": "pgoutput"}})),
            slots(&[(
                "one",
                &[
                    ("type", "logical"),
                    ("database", "bar"),
                    ("plugin", "pgoutput"),
                ],
            )]),
        ),
        // Changed in the manifest while the DCS already has the new one: Zalando nulls it (it
        // comes back with the next sync).
        (
            spec_one_changed,
            json!({"one": {"type": "logical", "database": "bar", "plugin": "pgoutput"}}),
            slots(&[("one", &logical)]),
            Some(json!({"one": null})),
            slots(&[(
                "one",
                &[
                    ("type", "logical"),
                    ("database", "bar"),
                    ("plugin", "pgoutput"),
                ],
            )]),
        ),
        // A DCS slot differing only in a non-string value compares by its string.
        (
            "  patroni:\n    slots:\n      p: {type: physical}",
            json!({"p": {"type": "physical"}}),
            slots(&[("p", physical)]),
            None,
            slots(&[("p", physical)]),
        ),
    ];
    for (i, (spec, current, remembered, want, remember)) in cases.into_iter().enumerate() {
        let plan = plan(&desired(spec), &current_with(current), &remembered).unwrap();
        assert_eq!(
            plan.patch.map(|p| p["slots"].clone()),
            want,
            "case {i}: {spec}"
        );
        assert_eq!(plan.remember, remember, "case {i}: remembered");
    }
}

#[test]
fn parameters_only_of_the_dcs_group_and_only_the_manifests_keys() {
    let params = |p: &str| format!("  postgresql: {{version: \"17\", parameters: {{{p}}}}}");
    let cases = [
        // A changed value, compared as a string against the DCS's number.
        (
            params("max_connections: \"150\""),
            Some(json!({"postgresql": {"parameters": {"max_connections": "150"}}})),
        ),
        (params("max_connections: \"100\""), None),
        // A new key.
        (
            params("work_mem: \"8MB\""),
            Some(json!({"postgresql": {"parameters": {"work_mem": "8MB"}}})),
        ),
        // A local-only parameter is never patched (it changes by recreating the pods).
        (params("shared_buffers: \"256MB\""), None),
        (params("ssl: \"off\""), None),
        // Keys the manifest does not have stay as they are (no removal).
        (params(""), None),
    ];
    for (i, (spec, want)) in cases.into_iter().enumerate() {
        assert_eq!(patch(&spec, &dcs()), want, "case {i}: {spec}");
    }
    let spec = params("max_connections: \"150\", archive_mode: \"on\", log_statement: all");
    let plan = plan(&desired(&spec), &dcs(), &Slots::new()).unwrap();
    assert_eq!(
        plan.parameters,
        [
            ParameterChange {
                name: "log_statement".into(),
                from: "".into(),
                to: "all".into()
            },
            ParameterChange {
                name: "max_connections".into(),
                from: "100".into(),
                to: "150".into()
            },
        ]
    );
    assert!(plan.settings.is_empty());
    assert_eq!(plan.loop_wait, 10);
}

#[test]
fn streams_force_logical_wal_level() {
    let spec = "  streams:\n  - applicationId: app\n    database: foo\n    tables: {data.t: {eventType: e}}";
    assert_eq!(
        patch(spec, &dcs()),
        Some(json!({"postgresql": {"parameters": {"wal_level": "logical"}}}))
    );
}

#[test]
fn every_rule_in_one_patch() {
    let spec = "  patroni: {ttl: 20, loop_wait: 5, synchronous_mode: true}\n  postgresql: {version: \"17\", parameters: {max_connections: \"50\"}}";
    let plan = plan(&desired(spec), &dcs(), &Slots::new()).unwrap();
    assert_eq!(
        plan.patch,
        Some(json!({"ttl": 20, "loop_wait": 5, "synchronous_mode": true,
            "postgresql": {"parameters": {"max_connections": "50"}}}))
    );
    assert_eq!(
        plan.summary(),
        "loop_wait 10 → 5, ttl 30 → 20, synchronous_mode unset → true, max_connections \"100\" → \"50\""
    );
    // The loop_wait in force before the patch decides the wait.
    assert_eq!(plan.loop_wait, 10);
}

#[test]
fn an_empty_configuration_is_skipped() {
    let cases = [
        json!({}),
        json!(null),
        with(dcs(), &["postgresql", "parameters"], json!({})),
        json!({"postgresql": {"parameters": {"max_connections": 100}}}),
    ];
    for (i, current) in cases.iter().enumerate() {
        let result = plan(&desired("  patroni: {ttl: 20}"), current, &Slots::new());
        assert!(
            matches!(result, Err(PlanError::Empty(_))),
            "case {i}: {result:?}"
        );
    }
}
