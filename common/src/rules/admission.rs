//! What the admission webhook decides for a `postgresql`, as pure functions over the objects.
//!
//! The webhook's HTTP layer only decodes the review, calls [`mutate`] or [`validate`] and encodes
//! the answer; the controller calls [`validate`] too when it meets an object the webhook never saw.

use super::{Verdict, delete_protection, instances, manifest, ownership, source_ranges, versions};
use crate::config::Config;
use crate::crd::Postgresql;

/// The admission operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A new object.
    Create,
    /// A changed object.
    Update,
    /// An object being deleted.
    Delete,
}

/// Everything a decision depends on besides the objects.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The operator configuration.
    pub config: &'a Config,
    /// `CONTROLLER_ID` of this operator ("" when unset).
    pub controller_id: &'a str,
    /// Today's date in UTC, `YYYY-MM-DD`, for delete protection.
    pub today: &'a str,
}

/// Whether this operator is responsible for the request: it owns the new or the old object.
pub fn is_responsible(
    ctx: &Context<'_>,
    old: Option<&Postgresql>,
    new: Option<&Postgresql>,
) -> bool {
    [old, new]
        .into_iter()
        .flatten()
        .any(|pg| ownership::is_owned_by(pg.metadata.annotations.as_ref(), ctx.controller_id))
}

/// The defaults and limits the mutating webhook applies, with a warning for each change.
///
/// Idempotent: applying it to its own output changes nothing and warns about nothing.
pub fn mutate(
    ctx: &Context<'_>,
    operation: Operation,
    pg: &Postgresql,
) -> (Postgresql, Vec<String>) {
    let mut out = pg.clone();
    let mut warnings = Vec::new();
    if operation == Operation::Delete {
        return (out, warnings);
    }
    let decided = instances::effective_instances(ctx.config, pg);
    if decided.effective != pg.spec.number_of_instances {
        out.spec.number_of_instances = decided.effective;
        // Only a change is reported here, so that a reinvocation warns about nothing; a note
        // about a value that stays (a standby with several pods) comes from `validate`.
        warnings.extend(decided.note);
    }
    if operation == Operation::Create && pg.spec.allowed_source_ranges.is_none() {
        out.spec.allowed_source_ranges =
            Some(vec![source_ranges::DEFAULT_SOURCE_RANGE.to_string()]);
        warnings.push(format!(
            "spec.allowedSourceRanges was not set and defaults to [{}]: load balancers only accept connections from the node itself; set it to the networks that need access",
            source_ranges::DEFAULT_SOURCE_RANGE
        ));
    }
    (out, warnings)
}

/// Every rule for a request. `clone_source_version` is the source cluster's version when the
/// manifest clones one and it could be looked up (`None`: not found or not looked up).
pub fn validate(
    ctx: &Context<'_>,
    operation: Operation,
    old: Option<&Postgresql>,
    new: &Postgresql,
    clone_source_version: Option<&str>,
) -> Verdict {
    let mut v = Verdict::default();
    if operation == Operation::Delete {
        if let Err(denied) = delete_protection::check_delete(
            ctx.config,
            new.cluster_name(),
            new.metadata.annotations.as_ref(),
            ctx.today,
        ) {
            v.deny(
                "delete-protection",
                "metadata.annotations",
                denied.to_string(),
            );
        }
        return v;
    }
    if operation == Operation::Update
        && let Err(message) = ownership::check_ownership_change(
            old.and_then(|o| o.metadata.annotations.as_ref()),
            new.metadata.annotations.as_ref(),
        )
    {
        v.deny(
            "ownership",
            format!("metadata.annotations.{}", ownership::CONTROLLER_ANNOTATION),
            message,
        );
    }
    for (field, message) in source_ranges::invalid_ranges(
        new.spec
            .allowed_source_ranges
            .as_deref()
            .unwrap_or_default(),
    ) {
        v.deny("source-ranges", field, message);
    }
    let decided = instances::effective_instances(ctx.config, new);
    if decided.effective == new.spec.number_of_instances
        && let Some(note) = decided.note
    {
        v.warn(note);
    }
    v.merge(versions::check_version(ctx.config, old, new));
    if operation == Operation::Create && new.spec.clone.is_some() {
        v.merge(versions::check_clone_version(new, clone_source_version));
    }
    v.merge(manifest::check_manifest(ctx.config, new));
    v
}
