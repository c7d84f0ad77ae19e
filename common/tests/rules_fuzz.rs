//! A bounded property test of the admission rules: random perturbations of the manifests of the
//! case tables (`tests/rules/`) never panic, every verdict is well-formed, a DELETE is only
//! refused by delete protection, and `mutate` stays idempotent.

#[allow(dead_code)]
mod rule_cases;
mod support;

use common::config::Config;
use common::crd::Postgresql;
use common::rules::admission::{self, Context, Operation};
use common::rules::ownership::{CONTROLLER_ANNOTATION, HANDOVER_ANNOTATION};

/// xorshift64*: deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// A string from fragments that reach deep into the patterns, plus odd characters.
    fn text(&mut self) -> String {
        const FRAGMENTS: &[&str] = &[
            "", "0", "1", "9", "14", "17", "23", "24", "59", "60", "99", "100", "1000", ":", "-",
            "/", ".", "_", " ", "*", ",", "e", "e400", "m", "Mi", "Gi", "Ki", "G", "E", "Ei",
            "Mon", "Sun", "T", "+02:00", "Z", "no", "login", "acid", "ACID", "a", "x", "::",
            "10.0.0.0", "fe80", "é", "İ", "ß", "\u{0}", "\t", "\n", "🐘", "%", "\"", "'",
        ];
        let mut out = String::new();
        for _ in 0..self.below(8) {
            out.push_str(self.pick(FRAGMENTS));
        }
        out
    }

    fn maybe_text(&mut self) -> Option<String> {
        if self.chance(4) {
            None
        } else {
            Some(self.text())
        }
    }

    fn texts(&mut self) -> Vec<String> {
        (0..self.below(4)).map(|_| self.text()).collect()
    }
}

fn random_instances(rng: &mut Rng) -> i32 {
    match rng.below(6) {
        0 => i32::MIN,
        1 => i32::MAX,
        2 => -(rng.below(5) as i32),
        _ => rng.below(12) as i32,
    }
}

fn random_config(rng: &mut Rng) -> Config {
    let mut config = Config {
        min_instances: rng.below(8) as i32 - 2,
        max_instances: rng.below(8) as i32 - 2,
        enable_team_id_clustername_prefix: rng.chance(2),
        ..Config::default()
    };
    if rng.chance(3) {
        config.min_instances = random_instances(rng);
        config.max_instances = random_instances(rng);
    }
    config.ignore_instance_limits_annotation_key = match rng.below(3) {
        0 => String::new(),
        1 => "skip-limits".into(),
        _ => rng.text(),
    };
    config.kubernetes.enable_sidecars = rng.chance(2);
    config.kubernetes.enable_init_containers = rng.chance(2);
    config.kubernetes.delete_annotation_date_key = if rng.chance(2) {
        "delete-date".into()
    } else {
        String::new()
    };
    config.kubernetes.delete_annotation_name_key = if rng.chance(2) {
        rng.text()
    } else {
        String::new()
    };
    config.major_version_upgrade.major_version_upgrade_mode =
        rng.pick(&["off", "manual", "full", ""]).into();
    if rng.chance(2) {
        config.teams_api.protected_role_names.push(rng.text());
    }
    if rng.chance(4) {
        config.users.super_username = rng.text();
    }
    config
}

fn perturb(rng: &mut Rng, base: &Postgresql) -> Postgresql {
    use common::crd::postgresql::{
        CloneDescription, ConnectionPooler, ResourceDescription, Resources, Sidecar,
        StandbyDescription,
    };
    let mut pg = base.clone();
    let spec = &mut pg.spec;
    if rng.chance(2) {
        spec.number_of_instances = random_instances(rng);
    }
    if rng.chance(3) {
        pg.metadata.name = rng.maybe_text();
    }
    if rng.chance(3) {
        spec.team_id = rng.text();
    }
    if rng.chance(3) {
        spec.postgresql.version = match rng.below(3) {
            0 => rng.text(),
            _ => rng
                .pick(&["9", "13", "14", "15", "16", "17", "18", "19", " 17", "017"])
                .into(),
        };
    }
    if rng.chance(3) {
        let users = spec.users.get_or_insert_with(Default::default);
        for _ in 0..rng.below(3) {
            let flags = if rng.chance(4) {
                None
            } else {
                Some(
                    (0..rng.below(4))
                        .map(|_| {
                            if rng.chance(2) {
                                rng.pick(&[
                                    "login",
                                    "NOLOGIN",
                                    "nosuperuser",
                                    "superuser",
                                    "no",
                                    "inherit",
                                ])
                                .to_string()
                            } else {
                                rng.text()
                            }
                        })
                        .collect(),
                )
            };
            users.insert(rng.text(), flags);
        }
    }
    if rng.chance(5) {
        spec.users = None;
    }
    if rng.chance(3) {
        let databases = spec.databases.get_or_insert_with(Default::default);
        databases.insert(rng.text(), rng.text());
    }
    if rng.chance(4) {
        let prepared = spec.prepared_databases.get_or_insert_with(Default::default);
        let mut db: common::crd::postgresql::PreparedDatabase =
            serde_json::from_value(serde_json::json!({})).unwrap();
        db.schemas = Some([(rng.text(), Default::default())].into());
        db.extensions = Some([(rng.text(), rng.text())].into());
        prepared.insert(rng.text(), db);
    }
    if rng.chance(3) {
        spec.maintenance_windows = Some(rng.texts());
    }
    if rng.chance(4) {
        spec.logical_backup_schedule = rng.maybe_text();
    }
    if rng.chance(3) {
        spec.allowed_source_ranges = if rng.chance(3) {
            None
        } else {
            Some(rng.texts())
        };
    }
    if rng.chance(3) {
        spec.volume.size = rng.text();
    }
    let random_resources = |rng: &mut Rng| -> Resources {
        let set = |rng: &mut Rng| ResourceDescription {
            cpu: rng.maybe_text(),
            memory: rng.maybe_text(),
            hugepages_2mi: rng.maybe_text(),
            hugepages_1gi: rng.maybe_text(),
        };
        Resources {
            requests: if rng.chance(4) { None } else { Some(set(rng)) },
            limits: if rng.chance(4) { None } else { Some(set(rng)) },
        }
    };
    if rng.chance(3) {
        spec.resources = Some(random_resources(rng));
    }
    if rng.chance(4) {
        let mut pooler: ConnectionPooler = serde_json::from_value(serde_json::json!({})).unwrap();
        pooler.user = rng.maybe_text();
        pooler.resources = Some(random_resources(rng));
        spec.connection_pooler = Some(pooler);
    }
    if rng.chance(4) {
        let mut clone: CloneDescription =
            serde_json::from_value(serde_json::json!({"cluster": ""})).unwrap();
        clone.cluster = rng.text();
        clone.uid = rng.maybe_text();
        clone.timestamp = rng.maybe_text();
        spec.clone = Some(clone);
    }
    if rng.chance(4) {
        let mut standby: StandbyDescription =
            serde_json::from_value(serde_json::json!({})).unwrap();
        standby.s3_wal_path = rng.maybe_text();
        standby.gs_wal_path = rng.maybe_text();
        standby.standby_host = rng.maybe_text();
        spec.standby = Some(standby);
    }
    if rng.chance(4) {
        let mut sidecar: Sidecar = serde_json::from_value(serde_json::json!({})).unwrap();
        sidecar.name = rng.maybe_text();
        sidecar.image = rng.maybe_text();
        if rng.chance(2) {
            sidecar.resources = Some(random_resources(rng));
        }
        spec.sidecars = Some(vec![sidecar]);
    }
    if rng.chance(5) {
        let container = serde_json::json!({"name": rng.text(), "image": rng.maybe_text()});
        let list = Some(vec![serde_json::from_value(container).unwrap()]);
        if rng.chance(2) {
            spec.init_containers = list;
        } else {
            spec.init_containers_old = list;
        }
    }
    if rng.chance(3) {
        let annotations = pg.metadata.annotations.get_or_insert_with(Default::default);
        let key = rng
            .pick(&[
                CONTROLLER_ANNOTATION,
                HANDOVER_ANNOTATION,
                "skip-limits",
                "delete-date",
            ])
            .to_string();
        let value = if rng.chance(2) {
            "true".to_string()
        } else {
            rng.text()
        };
        annotations.insert(key, value);
    }
    pg
}

#[test]
fn random_manifests_never_panic_and_mutate_is_idempotent() {
    // The manifests of the allowed cases (the samples among them): mostly valid starting points.
    let cases = rule_cases::load_all();
    let mut bases: Vec<&Postgresql> = Vec::new();
    for case in cases.iter().filter(|c| c.case.allowed) {
        if !bases.contains(&&case.manifest) {
            bases.push(&case.manifest);
        }
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut allowed, mut rules_seen) = (0, std::collections::BTreeSet::new());
    for i in 0..2000 {
        let config = random_config(&mut rng);
        let base = bases[rng.below(bases.len())];
        let old = perturb(&mut rng, base);
        let from_old = rng.chance(2);
        let new = perturb(&mut rng, if from_old { &old } else { base });
        let controller_id = if rng.chance(3) { "mine" } else { "" };
        let c = Context {
            config: &config,
            controller_id,
            today: rule_cases::DEFAULT_TODAY,
        };
        let source = match rng.below(3) {
            0 => None,
            1 => Some("17".to_string()),
            _ => Some(rng.text()),
        };
        for op in [Operation::Create, Operation::Update, Operation::Delete] {
            let case = format!("iteration {i} {op:?}");
            let (once, _) = admission::mutate(&c, op, &new);
            let (twice, warnings) = admission::mutate(&c, op, &once);
            assert_eq!(twice, once, "{case}: mutate is not idempotent");
            assert!(
                warnings.is_empty(),
                "{case}: second mutation warned: {warnings:?}"
            );
            let old = (op != Operation::Create).then_some(&old);
            let _ = admission::is_responsible(&c, old, Some(&new));
            for object in [&new, &once] {
                let verdict = admission::validate(&c, op, old, object, source.as_deref());
                allowed += usize::from(verdict.allowed());
                rules_seen.extend(verdict.violations.iter().map(|v| v.rule));
                for violation in &verdict.violations {
                    assert!(!violation.field.is_empty(), "{case}: {violation:?}");
                    assert!(!violation.message.is_empty(), "{case}: {violation:?}");
                }
                let message = verdict.message();
                match verdict.violations.len() {
                    0 => assert!(message.is_empty()),
                    1 => assert!(!message.contains("problems:\n")),
                    n => assert!(message.starts_with(&format!("{n} problems:\n")), "{case}"),
                }
                if op == Operation::Delete {
                    assert!(
                        verdict
                            .violations
                            .iter()
                            .all(|v| v.rule == "delete-protection"),
                        "{case}: {}",
                        verdict.message()
                    );
                }
            }
            if op == Operation::Create && new.spec.allowed_source_ranges.is_none() {
                assert!(once.spec.allowed_source_ranges.is_some(), "{case}");
            }
        }
    }
    // The generator reaches both outcomes and most rules, so the test exercises real paths.
    println!("allowed {allowed} of 12000; rules seen: {rules_seen:?}");
    assert!(allowed > 500, "only {allowed} verdicts allowed");
    assert!(rules_seen.len() >= 18, "rules seen: {rules_seen:?}");
}
