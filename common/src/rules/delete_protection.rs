//! Delete protection by annotations (`delete_annotation_date_key`, `delete_annotation_name_key`).

use crate::config::Config;
use std::collections::BTreeMap;

/// Why a delete is refused, with the exact annotations that would allow it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "deletion of postgresql {cluster} is protected: {reasons}. To delete it, run: kubectl annotate postgresql {cluster} {fix} --overwrite"
)]
pub struct DeleteDenied {
    /// The cluster.
    pub cluster: String,
    /// What is missing or wrong, joined by "; ".
    pub reasons: String,
    /// `key=value` pairs to set.
    pub fix: String,
}

/// Today in UTC as `YYYY-MM-DD`, the form the delete-date annotation must hold. The one clock
/// read of the rules: the webhook, the controller and the tests all take "today" from here.
pub fn today_utc() -> String {
    date_of(chrono::Utc::now())
}

/// The UTC date of `at` as `YYYY-MM-DD`.
pub fn date_of(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// Checks the delete annotations. `today` is `YYYY-MM-DD` in UTC, passed in so the rule stays pure.
///
/// Both checks are independent and an empty key disables its check, as in Zalando; the date must
/// equal today exactly (not "today or earlier").
pub fn check_delete(
    config: &Config,
    cluster: &str,
    annotations: Option<&BTreeMap<String, String>>,
    today: &str,
) -> Result<(), DeleteDenied> {
    let k = &config.kubernetes;
    let mut reasons = Vec::new();
    let mut fix = Vec::new();
    for (key, want, what) in [
        (&k.delete_annotation_date_key, today, "today's date"),
        (&k.delete_annotation_name_key, cluster, "the cluster name"),
    ] {
        if key.is_empty() {
            continue;
        }
        match annotations.and_then(|a| a.get(key.as_str())) {
            Some(value) if value == want => continue,
            Some(value) => reasons.push(format!(
                "annotation {key} is {value:?} but must be {what} {want:?}"
            )),
            None => reasons.push(format!("annotation {key} must be set to {what} {want:?}")),
        }
        fix.push(format!("{key}={want}"));
    }
    if reasons.is_empty() {
        return Ok(());
    }
    Err(DeleteDenied {
        cluster: cluster.to_string(),
        reasons: reasons.join("; "),
        fix: fix.join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(date_key: &str, name_key: &str) -> Config {
        let mut c = Config::default();
        c.kubernetes.delete_annotation_date_key = date_key.into();
        c.kubernetes.delete_annotation_name_key = name_key.into();
        c
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const TODAY: &str = "2026-11-23";

    #[test]
    fn unprotected_when_no_keys() {
        assert_eq!(check_delete(&config("", ""), "demo", None, TODAY), Ok(()));
    }

    #[test]
    fn both_annotations_allow() {
        let a = annotations(&[("delete-date", TODAY), ("delete-clustername", "demo")]);
        assert_eq!(
            check_delete(
                &config("delete-date", "delete-clustername"),
                "demo",
                Some(&a),
                TODAY
            ),
            Ok(())
        );
    }

    #[test]
    fn missing_annotations_name_the_fix() {
        let err = check_delete(
            &config("delete-date", "delete-clustername"),
            "demo",
            None,
            TODAY,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "deletion of postgresql demo is protected: annotation delete-date must be set to today's date \"2026-11-23\"; \
             annotation delete-clustername must be set to the cluster name \"demo\". To delete it, run: \
             kubectl annotate postgresql demo delete-date=2026-11-23 delete-clustername=demo --overwrite"
        );
    }

    #[test]
    fn wrong_values_and_single_checks() {
        let stale = annotations(&[
            ("delete-date", "2020-08-31"),
            ("delete-clustername", "demo"),
        ]);
        let err = check_delete(
            &config("delete-date", "delete-clustername"),
            "demo",
            Some(&stale),
            TODAY,
        )
        .unwrap_err();
        assert_eq!(
            err.reasons,
            "annotation delete-date is \"2020-08-31\" but must be today's date \"2026-11-23\""
        );
        assert_eq!(err.fix, "delete-date=2026-11-23");
        let other = annotations(&[("delete-clustername", "other")]);
        assert!(
            check_delete(
                &config("", "delete-clustername"),
                "demo",
                Some(&other),
                TODAY
            )
            .is_err()
        );
        assert_eq!(
            check_delete(
                &config("delete-date", ""),
                "demo",
                Some(&annotations(&[("delete-date", TODAY)])),
                TODAY
            ),
            Ok(())
        );
    }
}
