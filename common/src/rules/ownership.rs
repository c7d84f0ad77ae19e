//! Which operator instance owns a cluster (`CONTROLLER_ID` against `acid.zalan.do/controller`).

use std::collections::BTreeMap;

/// The annotation naming the controller that owns a cluster.
pub const CONTROLLER_ANNOTATION: &str = "acid.zalan.do/controller";

/// Zalando's `hasOwnership`: an annotated cluster belongs to the controller with exactly that id
/// (an operator without id ignores annotated clusters); an unannotated one belongs to the
/// operator without id.
pub fn is_owned_by(annotations: Option<&BTreeMap<String, String>>, controller_id: &str) -> bool {
    match annotations.and_then(|a| a.get(CONTROLLER_ANNOTATION)) {
        Some(owner) => owner == controller_id,
        None => controller_id.is_empty(),
    }
}

/// Annotation that makes a change of [`CONTROLLER_ANNOTATION`] deliberate: its value must name the
/// new owner (empty when the owner annotation is removed).
pub const HANDOVER_ANNOTATION: &str = "acid.zalan.do/controller-handover";

/// On UPDATE, the owner annotation may only change together with a matching
/// [`HANDOVER_ANNOTATION`]; otherwise two operators could end up fighting over a cluster, or none
/// would manage it, because of a stray edit.
pub fn check_ownership_change(
    old: Option<&BTreeMap<String, String>>,
    new: Option<&BTreeMap<String, String>>,
) -> Result<(), String> {
    let get = |a: Option<&BTreeMap<String, String>>, key: &str| a.and_then(|a| a.get(key)).cloned();
    let (before, after) = (
        get(old, CONTROLLER_ANNOTATION),
        get(new, CONTROLLER_ANNOTATION),
    );
    if before == after {
        return Ok(());
    }
    let target = after.clone().unwrap_or_default();
    if get(new, HANDOVER_ANNOTATION).as_deref() == Some(target.as_str()) {
        return Ok(());
    }
    let show = |o: &Option<String>| {
        o.as_deref().map_or(
            "none (the operator without CONTROLLER_ID)".to_string(),
            |o| format!("{o:?}"),
        )
    };
    Err(format!(
        "annotation {CONTROLLER_ANNOTATION} cannot be changed from {} to {} by accident: that moves the cluster to another operator. \
         To hand it over deliberately, set {HANDOVER_ANNOTATION}: {target:?} in the same change, e.g. \
         kubectl annotate postgresql <name> {CONTROLLER_ANNOTATION}{} {HANDOVER_ANNOTATION}={target} --overwrite",
        show(&before),
        show(&after),
        if after.is_some() {
            format!("={target}")
        } else {
            "-".to_string()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(owner: &str) -> BTreeMap<String, String> {
        [(CONTROLLER_ANNOTATION.to_string(), owner.to_string())].into()
    }

    #[test]
    fn table() {
        let second = annotated("second-operator");
        let unrelated: BTreeMap<String, String> = [("x".to_string(), "y".to_string())].into();
        assert!(is_owned_by(None, ""));
        assert!(is_owned_by(Some(&unrelated), ""));
        assert!(!is_owned_by(None, "second-operator"));
        assert!(is_owned_by(Some(&second), "second-operator"));
        assert!(!is_owned_by(Some(&second), "third-operator"));
        assert!(!is_owned_by(Some(&second), ""));
        assert!(!is_owned_by(Some(&annotated("")), "x"));
        assert!(is_owned_by(Some(&annotated("")), ""));
    }

    #[test]
    fn ownership_changes() {
        let a = annotated("a");
        let b = annotated("b");
        assert_eq!(check_ownership_change(None, None), Ok(()));
        assert_eq!(check_ownership_change(Some(&a), Some(&a)), Ok(()));
        let err = check_ownership_change(Some(&a), Some(&b)).unwrap_err();
        assert!(
            err.starts_with(
                "annotation acid.zalan.do/controller cannot be changed from \"a\" to \"b\""
            ),
            "{err}"
        );
        assert!(
            err.ends_with(
                "acid.zalan.do/controller=b acid.zalan.do/controller-handover=b --overwrite"
            ),
            "{err}"
        );
        assert!(
            check_ownership_change(None, Some(&b))
                .unwrap_err()
                .contains("from none")
        );
        assert!(check_ownership_change(Some(&a), None).is_err());
        let mut handed = b.clone();
        handed.insert(HANDOVER_ANNOTATION.into(), "b".into());
        assert_eq!(check_ownership_change(Some(&a), Some(&handed)), Ok(()));
        handed.insert(HANDOVER_ANNOTATION.into(), "c".into());
        assert!(check_ownership_change(Some(&a), Some(&handed)).is_err());
        let released: BTreeMap<String, String> =
            [(HANDOVER_ANNOTATION.to_string(), String::new())].into();
        assert_eq!(check_ownership_change(Some(&a), Some(&released)), Ok(()));
    }
}
