//! What the admission webhook decides for a `postgresql`, as pure functions over the objects.
//!
//! The webhook's HTTP layer only decodes the review, calls [`mutate`] or [`validate`] and encodes
//! the answer; the controller calls [`validate`] too when it meets an object the webhook never saw.

use super::{Verdict, delete_protection, instances, manifest, ownership, source_ranges, versions};
use crate::config::Config;
use crate::crd::Postgresql;
use std::collections::BTreeMap;

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

/// What the rules read from the object as it was before the request: the webhook parses no more
/// of `oldObject` than this.
#[derive(Clone, Copy, Debug)]
pub struct Previous<'a> {
    /// `metadata.name`.
    pub name: &'a str,
    /// `metadata.annotations`.
    pub annotations: Option<&'a BTreeMap<String, String>>,
    /// `spec.postgresql.version`.
    pub version: &'a str,
}

impl<'a> From<&'a Postgresql> for Previous<'a> {
    fn from(pg: &'a Postgresql) -> Self {
        Self {
            name: pg.cluster_name(),
            annotations: pg.metadata.annotations.as_ref(),
            version: &pg.spec.postgresql.version,
        }
    }
}

/// Whether this operator is responsible for the request: it owns the new or the old object.
pub fn is_responsible(
    ctx: &Context<'_>,
    old: Option<&Postgresql>,
    new: Option<&Postgresql>,
) -> bool {
    is_responsible_for(ctx, old.map(Previous::from), new)
}

/// [`is_responsible`] with the old object as a [`Previous`].
pub fn is_responsible_for(
    ctx: &Context<'_>,
    old: Option<Previous<'_>>,
    new: Option<&Postgresql>,
) -> bool {
    old.map(|o| o.annotations)
        .into_iter()
        .chain(new.map(|n| n.metadata.annotations.as_ref()))
        .any(|annotations| ownership::is_owned_by(annotations, ctx.controller_id))
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
    if operation == Operation::Create
        && source_ranges::uses_default(pg.spec.allowed_source_ranges.as_deref())
    {
        out.spec.allowed_source_ranges = Some(source_ranges::effective_source_ranges(None));
        warnings.push(format!(
            "spec.allowedSourceRanges was not set (or empty) and defaults to [{}]: load balancers only accept connections from the node itself; set it to the networks that need access",
            source_ranges::DEFAULT_SOURCE_RANGE
        ));
    }
    (out, warnings)
}

/// Every rule for a request. On DELETE, `new` is the object being deleted.
/// `clone_source_version` is the source cluster's version when the manifest clones one and it
/// could be looked up (`None`: not found or not looked up).
pub fn validate(
    ctx: &Context<'_>,
    operation: Operation,
    old: Option<&Postgresql>,
    new: &Postgresql,
    clone_source_version: Option<&str>,
) -> Verdict {
    if operation == Operation::Delete {
        return validate_change(
            ctx,
            operation,
            Some(Previous::from(new)),
            None,
            clone_source_version,
        );
    }
    validate_change(
        ctx,
        operation,
        old.map(Previous::from),
        Some(new),
        clone_source_version,
    )
}

/// [`validate`] with the old object as a [`Previous`]; on DELETE only `old` is needed.
pub fn validate_change(
    ctx: &Context<'_>,
    operation: Operation,
    old: Option<Previous<'_>>,
    new: Option<&Postgresql>,
    clone_source_version: Option<&str>,
) -> Verdict {
    let mut v = Verdict::default();
    if operation == Operation::Delete {
        let Some(old) = old else {
            v.deny(
                "delete-protection",
                "oldObject",
                "the request carries no object to delete",
            );
            return v;
        };
        if let Err(denied) =
            delete_protection::check_delete(ctx.config, old.name, old.annotations, ctx.today)
        {
            v.deny(
                "delete-protection",
                "metadata.annotations",
                denied.to_string(),
            );
        }
        return v;
    }
    let Some(new) = new else {
        v.deny("object", "object", "the request carries no object");
        return v;
    };
    if operation == Operation::Update
        && let Err(message) = ownership::check_ownership_change(
            old.and_then(|o| o.annotations),
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
    v.merge(versions::check_version_from(
        ctx.config,
        old.map(|o| o.version),
        new,
    ));
    if operation == Operation::Create && new.spec.clone.is_some() {
        v.merge(versions::check_clone_version(new, clone_source_version));
    }
    v.merge(manifest::check_manifest(ctx.config, new));
    v
}
