//! `spec.volume.size`: volumes only grow.
//!
//! Kubernetes can grow a persistent volume claim but never shrink one. Zalando accepts a smaller
//! size and only logs "decreasing size of the volume is not allowed" on every sync, leaving a
//! manifest that says one thing and volumes that say another. Here the webhook refuses the
//! change at `kubectl apply` time, and the controller, which compares the manifest with the
//! claims themselves (it has no old manifest), warns when the webhook was bypassed and never
//! shrinks anything.
//!
//! Sizes are compared exactly (`1.5Gi` is more than `1Gi`), where Zalando truncates both to
//! whole GiB and so misses changes below a GiB; equal sizes compare equal either way.

use super::Verdict;
use crate::quantity;
use std::cmp::Ordering;

/// The field.
pub const FIELD: &str = "spec.volume.size";
/// The rule's name in violations.
pub const RULE: &str = "volume-size";

/// How a wanted size relates to a current one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizeChange {
    /// The same value (`1Gi` and `1024Mi` are the same).
    Same,
    /// Larger: the volume can grow.
    Grow,
    /// Smaller: refused.
    Shrink,
    /// One of them is not a quantity; nothing can be decided (the schema and the manifest rules
    /// report a bad manifest value).
    Unknown,
}

/// Compares `wanted` with `current`, exactly.
pub fn compare(current: &str, wanted: &str) -> SizeChange {
    match quantity::cmp(wanted, current) {
        Some(Ordering::Equal) => SizeChange::Same,
        Some(Ordering::Greater) => SizeChange::Grow,
        Some(Ordering::Less) => SizeChange::Shrink,
        None => SizeChange::Unknown,
    }
}

/// The message for a refused shrink from `current` to `wanted`.
pub fn shrink_message(current: &str, wanted: &str) -> String {
    format!(
        "cannot shrink the volume from {current} to {wanted}: Kubernetes can grow a persistent volume but never shrink one; keep {current} or more (to use less space, clone the cluster into a new one with the smaller size)"
    )
}

/// Checks an update's `spec.volume.size` against the stored one (`old`: `None` on create, or
/// when the stored object could not be read).
pub fn check_size_change(old: Option<&str>, new: &str) -> Verdict {
    let mut v = Verdict::default();
    if let Some(old) = old
        && compare(old, new) == SizeChange::Shrink
    {
        v.deny(RULE, FIELD, shrink_message(old.trim(), new.trim()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_compare_exactly_and_by_value() {
        assert_eq!(compare("1Gi", "1024Mi"), SizeChange::Same);
        assert_eq!(compare("1Gi", "2Gi"), SizeChange::Grow);
        // Zalando truncates to whole GiB and sees no change here.
        assert_eq!(compare("1Gi", "1536Mi"), SizeChange::Grow);
        assert_eq!(compare("1Gi", "1G"), SizeChange::Shrink);
        assert_eq!(compare("10Gi", "9.5Gi"), SizeChange::Shrink);
        assert_eq!(compare("1Gi", "lots"), SizeChange::Unknown);
        assert_eq!(compare("", "1Gi"), SizeChange::Unknown);
    }

    #[test]
    fn only_a_shrink_on_update_is_refused() {
        assert!(check_size_change(None, "1Gi").allowed());
        assert!(check_size_change(Some("1Gi"), "2Gi").allowed());
        assert!(check_size_change(Some("1Gi"), "1024Mi").allowed());
        assert!(check_size_change(Some("bad"), "1Gi").allowed());
        let v = check_size_change(Some("2Gi"), "1Gi");
        assert_eq!(v.violations.len(), 1);
        assert_eq!(v.violations[0].field, "spec.volume.size");
        assert_eq!(v.violations[0].rule, "volume-size");
        assert!(
            v.violations[0]
                .message
                .starts_with("cannot shrink the volume from 2Gi to 1Gi:"),
            "{}",
            v.violations[0].message
        );
    }
}
