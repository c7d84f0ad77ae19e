//! Keys of Zalando's older charts that this chart accepts and ignores, so a values file kept
//! since then installs without edits. Found in the values files of Zalando's chart releases 1.5
//! to 2.0 (the first with one values file for both targets is 1.7); keys gone before 1.5 are not
//! listed, as such files also predate `configTarget`.

use crate::keys::{Key, Shape};
use serde_json::json;

/// Options Zalando's chart once set that the operator no longer reads: group, option, JSON type,
/// and which charts had it. Zalando's newer charts pass them on and the operator ignores them;
/// here the schema lets them through and they do the same.
pub const OPTIONS: &[(&str, &str, &str, &str)] = &[
    (
        "configGeneral",
        "enable_crd_validation",
        "boolean",
        "Zalando's chart up to 1.7: the CRDs are always validated now.",
    ),
    (
        "configAwsOrGcp",
        "enable_ebs_gp3_migration",
        "boolean",
        "Zalando's chart up to 1.15: this operator does not migrate gp2 volumes.",
    ),
    (
        "configAwsOrGcp",
        "enable_ebs_gp3_migration_max_size",
        "integer",
        "Zalando's chart up to 1.15: this operator does not migrate gp2 volumes.",
    ),
    (
        "configPatroni",
        "failsafe_mode",
        "boolean",
        "Zalando's chart 1.9 only: renamed enable_patroni_failsafe_mode in 1.10; set that instead.",
    ),
];

/// Top-level keys of Zalando's older charts: `crd.create` (up to 1.7), which chose whether the
/// chart created the CRDs. The CRDs are in this chart's `crds/` folder, which Helm installs on the
/// first install (skip them with `--skip-crds`).
pub fn top_level() -> Vec<Key> {
    let create = Key::leaf(
        "create",
        "Ignored. Zalando's chart up to 1.7: use helm install --skip-crds instead of false.",
        None,
        json!({"type": "boolean"}),
    );
    vec![Key {
        name: "crd".into(),
        description: "Ignored. Zalando's chart up to 1.7 created the CRDs from templates; this \
                      chart ships them in crds/."
            .into(),
        default: None,
        legacy: true,
        shape: Shape::Block(vec![Key {
            legacy: true,
            ..create
        }]),
    }]
}
