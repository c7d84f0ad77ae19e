//! `numberOfInstances` limits (Zalando's `getNumberOfInstances`).

use crate::config::Config;
use crate::crd::Postgresql;
use regex::Regex;
use std::sync::LazyLock;

/// The effective number of instances and why it differs from the manifest, if it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instances {
    /// What the StatefulSet gets.
    pub effective: i32,
    /// A message for the user when the manifest value is changed or cannot be honoured.
    pub note: Option<String>,
}

static STANDBY_ENV: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^STANDBY_WALE_(S3|GS|GSC|SWIFT)_PREFIX$").expect("valid regex"));

/// A standby cluster: a `standby` section, or Spilo's standby WAL-E prefix in `env`.
pub fn is_standby(pg: &Postgresql) -> bool {
    pg.spec.standby.is_some()
        || pg.spec.env.iter().flatten().any(|var| {
            STANDBY_ENV.is_match(&var.name) && var.value.as_deref().is_some_and(|v| !v.is_empty())
        })
}

/// Applies `min_instances` / `max_instances` to the manifest's `numberOfInstances`.
///
/// Order as in Zalando: the ignore annotation (value `"true"`) bypasses everything; a standby
/// with one instance stays at one; then `max` is applied and `min` last, `-1` disabling either.
pub fn effective_instances(config: &Config, pg: &Postgresql) -> Instances {
    let requested = pg.spec.number_of_instances;
    let ignore_key = &config.ignore_instance_limits_annotation_key;
    if !ignore_key.is_empty() && pg.annotation(ignore_key) == Some("true") {
        return Instances {
            effective: requested,
            note: None,
        };
    }
    let (mut min, mut max) = (config.min_instances, config.max_instances);
    let mut note = None;
    if is_standby(pg) {
        if requested == 1 {
            (min, max) = (1, 1);
        } else {
            note = Some(format!(
                "spec.numberOfInstances is {requested} but a standby cluster runs with 1 pod only; \
                 the extra pods will not stream from the source"
            ));
        }
    }
    let mut effective = requested;
    if max >= 0 && effective > max {
        effective = max;
    }
    if min >= 0 && effective < min {
        effective = min;
    }
    if effective != requested {
        let limit = if effective == max {
            format!("max_instances is {max}")
        } else {
            format!("min_instances is {min}")
        };
        let bypass = if ignore_key.is_empty() {
            String::new()
        } else {
            format!(" (set annotation {ignore_key}: \"true\" to bypass the limits)")
        };
        note = Some(format!(
            "spec.numberOfInstances was changed from {requested} to {effective} because {limit}{bypass}"
        ));
    }
    Instances { effective, note }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(instances: i32, extra: &str) -> Postgresql {
        serde_yaml::from_str(&format!(
            "apiVersion: acid.zalan.do/v1\nkind: postgresql\nmetadata:\n  name: acid-x\n  annotations: {{skip-limits: \"true\"}}\nspec:\n  teamId: acid\n  numberOfInstances: {instances}\n  postgresql: {{version: \"17\"}}\n  volume: {{size: 1Gi}}\n{extra}"
        ))
        .unwrap()
    }

    fn config(min: i32, max: i32) -> Config {
        Config {
            min_instances: min,
            max_instances: max,
            ..Config::default()
        }
    }

    #[test]
    fn table() {
        // (min, max, requested, effective)
        let cases = [
            (-1, -1, 3, 3),
            (-1, 5, 7, 5),
            (2, -1, 1, 2),
            (2, 5, 3, 3),
            (2, 5, 0, 2),
            (2, 5, 9, 5),
            (-1, 0, 2, 0),
            (3, 2, 5, 3), // invalid config still applies min last, like Zalando
        ];
        for (min, max, requested, want) in cases {
            let got = effective_instances(&config(min, max), &pg(requested, ""));
            assert_eq!(
                got.effective, want,
                "min {min} max {max} requested {requested}"
            );
            assert_eq!(got.note.is_some(), want != requested);
        }
    }

    #[test]
    fn note_names_the_limit_and_the_bypass() {
        let mut c = config(-1, 2);
        let got = effective_instances(&c, &pg(4, ""));
        assert_eq!(
            got.note.unwrap(),
            "spec.numberOfInstances was changed from 4 to 2 because max_instances is 2"
        );
        c.ignore_instance_limits_annotation_key = "other-key".into();
        let got = effective_instances(&c, &pg(4, ""));
        assert!(
            got.note
                .unwrap()
                .ends_with("(set annotation other-key: \"true\" to bypass the limits)")
        );
    }

    #[test]
    fn annotation_bypasses() {
        let mut c = config(2, 3);
        c.ignore_instance_limits_annotation_key = "skip-limits".into();
        assert_eq!(
            effective_instances(&c, &pg(7, "")),
            Instances {
                effective: 7,
                note: None
            }
        );
    }

    #[test]
    fn standby_stays_at_one() {
        let standby = "  standby: {s3_wal_path: \"s3://bucket/x\"}\n";
        assert_eq!(
            effective_instances(&config(2, 5), &pg(1, standby)).effective,
            1
        );
        let many = effective_instances(&config(-1, -1), &pg(3, standby));
        assert_eq!(many.effective, 3);
        assert!(
            many.note
                .unwrap()
                .contains("standby cluster runs with 1 pod")
        );
        let env = "  env:\n  - {name: STANDBY_WALE_S3_PREFIX, value: \"s3://b\"}\n";
        assert!(is_standby(&pg(1, env)));
        let empty = "  env:\n  - {name: STANDBY_WALE_S3_PREFIX, value: \"\"}\n";
        assert!(!is_standby(&pg(1, empty)));
    }
}
