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
}
