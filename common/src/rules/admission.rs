//! What the admission webhook decides for a `postgresql`, as pure functions over the objects.
//!
//! The webhook's HTTP layer only decodes the review, calls [`mutate`] or [`validate`] and encodes
//! the answer; the controller calls [`validate`] too when it meets an object the webhook never saw.

use super::{
    Verdict, delete_protection, instances, manifest, ownership, source_ranges, versions, volume,
};
use crate::config::Config;
use crate::crd::Postgresql;
use crate::fields::{self, IgnoredField};
use serde_json::Value;
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
    /// `spec.volume.size` (`None`: unknown, nothing to compare with).
    pub volume_size: Option<&'a str>,
    /// The old spec, at least the subtrees of [`fields::NOT_YET_ON_CHANGE`], for the warnings
    /// about changes that will not take effect (`None`: not compared).
    pub spec: Option<&'a Value>,
}

impl<'a> From<&'a Postgresql> for Previous<'a> {
    fn from(pg: &'a Postgresql) -> Self {
        Self {
            name: pg.cluster_name(),
            annotations: pg.metadata.annotations.as_ref(),
            version: &pg.spec.postgresql.version,
            volume_size: Some(&pg.spec.volume.size),
            spec: None,
        }
    }
}

/// A manifest every rule accepts, with what the rules decided about it. The controller builds a
/// cluster's objects from this, never from an unchecked manifest, so the webhook and the
/// controller cannot disagree on a rule or a default.
#[derive(Clone, Debug)]
pub struct Validated<'a> {
    /// The manifest.
    pub pg: &'a Postgresql,
    /// `numberOfInstances` within `min_instances`/`max_instances` (a standby runs one pod).
    pub instances: i32,
    /// The source ranges a load balancer gets (`127.0.0.1/32` for an omitted or empty list).
    pub source_ranges: Vec<String>,
    /// Fields the manifest sets that the operator does not act on yet.
    pub ignored: Vec<IgnoredField>,
    /// What the user should be told (the webhook's kubectl warnings).
    pub warnings: Vec<String>,
}

impl<'a> Validated<'a> {
    /// The decisions for a manifest taken as it is, without checking it: for the builders' own
    /// tests (which feed them values the rules would refuse) and for tools that write objects
    /// from manifests they made themselves (the benchmarks' floors).
    pub fn trusted(config: &Config, pg: &'a Postgresql) -> Self {
        Validated {
            pg,
            instances: instances::effective_instances(config, pg).effective,
            source_ranges: source_ranges::effective_source_ranges(
                pg.spec.allowed_source_ranges.as_deref(),
            ),
            ignored: fields::ignored_fields(pg),
            warnings: Vec::new(),
        }
    }
}

/// Checks a stored manifest on its own, as the controller meets it (the webhook may have been
/// down or bypassed): every rule that needs no previous version. `Err` carries every violation.
pub fn check<'a>(ctx: &Context<'_>, pg: &'a Postgresql) -> Result<Validated<'a>, Verdict> {
    let mut v = check_exposure(ctx, pg);
    v.merge(versions::check_version_from(ctx.config, None, pg));
    v.merge(check_manifest(ctx, pg));
    if !v.allowed() {
        return Err(v);
    }
    Ok(Validated {
        pg,
        instances: instances::effective_instances(ctx.config, pg).effective,
        source_ranges: source_ranges::effective_source_ranges(
            pg.spec.allowed_source_ranges.as_deref(),
        ),
        ignored: fields::ignored_fields(pg),
        warnings: v.warnings,
    })
}

/// Source ranges and instance limits of one manifest (shared by [`check`] and
/// [`validate_change`], which report them before the version rules).
fn check_exposure(ctx: &Context<'_>, new: &Postgresql) -> Verdict {
    let mut v = Verdict::default();
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
    v
}

/// The manifest rules and the fields not acted on yet (shared by [`check`] and
/// [`validate_change`]).
fn check_manifest(ctx: &Context<'_>, new: &Postgresql) -> Verdict {
    let mut v = manifest::check_manifest(ctx.config, new);
    for warning in fields::warnings(new) {
        v.warn(warning);
    }
    v
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
    let old_spec = old.map(|o| serde_json::to_value(&o.spec).unwrap_or(Value::Null));
    let previous = old.map(|o| Previous {
        spec: old_spec.as_ref(),
        ..Previous::from(o)
    });
    validate_change(ctx, operation, previous, Some(new), clone_source_version)
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
    v.merge(check_exposure(ctx, new));
    v.merge(versions::check_version_from(
        ctx.config,
        old.map(|o| o.version),
        new,
    ));
    if operation == Operation::Update {
        v.merge(volume::check_size_change(
            old.and_then(|o| o.volume_size),
            &new.spec.volume.size,
        ));
    }
    if operation == Operation::Create && new.spec.clone.is_some() {
        v.merge(versions::check_clone_version(new, clone_source_version));
    }
    v.merge(check_manifest(ctx, new));
    if operation == Operation::Update
        && let Some(old_spec) = old.and_then(|o| o.spec)
    {
        for warning in fields::change_warnings_from(old_spec, new) {
            v.warn(warning);
        }
    }
    v
}
