//! `enable_team_member_deprecation`: a team member who is no longer wanted is not dropped but
//! loses LOGIN and is renamed with `role_deletion_suffix` (default `_deleted`), so a cleanup
//! script can find it; one who comes back is renamed back and gets LOGIN again (Zalando's
//! `syncRoles` and `ProduceSyncRequests`).
//!
//! "No longer wanted" means: a team role of the previous sync of this cluster (the caller
//! remembers them, as Zalando keeps them in memory) that no source wants now. Differences from
//! Zalando, on purpose:
//! - A suffixed role is renamed back whatever its LOGIN attribute (Zalando recognises only a
//!   NOLOGIN one, and would otherwise create a second role while deprecating the suffixed one
//!   again); the normal plan then gives it LOGIN and whatever else it lacks.
//! - When the suffixed name is taken, the member still loses LOGIN and the rename is skipped
//!   with a warning instead of failing.

use super::model::{Actual, Flag, Origin, Statement, Wanted};
use super::plan::MAINTENANCE_DATABASE;
use super::quote::ident;
use super::wanted::Warning;
use crate::config::Config;
use std::collections::BTreeSet;

/// The names to look up in the catalog besides the wanted roles: each wanted team role's
/// deprecated name, and the removed members with theirs.
pub fn lookups(config: &Config, wanted: &Wanted, removed: &BTreeSet<String>) -> Vec<String> {
    if !config.teams_api.enable_team_member_deprecation {
        return Vec::new();
    }
    let suffix = &config.teams_api.role_deletion_suffix;
    let team = wanted
        .roles
        .iter()
        .filter(|r| r.origin == Origin::Team)
        .map(|r| format!("{}{suffix}", r.name));
    let gone = removed
        .iter()
        .flat_map(|name| [name.clone(), format!("{name}{suffix}")]);
    team.chain(gone).collect()
}

/// The team roles of `wanted`: what the caller remembers for the next sync.
pub fn team_roles(wanted: &Wanted) -> BTreeSet<String> {
    wanted
        .roles
        .iter()
        .filter(|r| r.origin == Origin::Team)
        .map(|r| r.name.clone())
        .collect()
}

/// The team members to deprecate: the team roles of the previous sync (`remembered`) that no
/// source wants now, and none while some team's members are unknown ([`super::sources::Computed`]'s
/// `teams_complete`): a Teams API that does not answer must not deprecate its team.
pub fn removed(
    config: &Config,
    remembered: &BTreeSet<String>,
    wanted: &Wanted,
    teams_complete: bool,
) -> BTreeSet<String> {
    if !config.teams_api.enable_team_member_deprecation || !teams_complete {
        return BTreeSet::new();
    }
    let now: BTreeSet<&str> = wanted.roles.iter().map(|r| r.name.as_str()).collect();
    remembered
        .iter()
        .filter(|name| !now.contains(name.as_str()))
        .cloned()
        .collect()
}

fn statement(sql: String, what: String) -> Statement {
    Statement {
        database: MAINTENANCE_DATABASE.into(),
        sql,
        transactional: true,
        secret: false,
        what,
    }
}

/// The renames (and LOGIN removals) to run before the plan of `wanted`, with `actual` changed to
/// what it is after them, so that [`super::plan::plan`] then sees the renamed roles. `removed`:
/// the team roles of the previous sync that no source wants any more.
pub fn plan(
    config: &Config,
    wanted: &Wanted,
    actual: &mut Actual,
    removed: &BTreeSet<String>,
    warnings: &mut Vec<Warning>,
) -> Vec<Statement> {
    let t = &config.teams_api;
    let suffix = &t.role_deletion_suffix;
    let mut out = Vec::new();
    if !t.enable_team_member_deprecation {
        return out;
    }
    if suffix.is_empty() {
        if !removed.is_empty() {
            warnings.push(Warning {
                field: "role_deletion_suffix".into(),
                message: "is empty, so removed team members cannot be renamed; they keep their \
                          roles unchanged"
                    .into(),
            });
        }
        return out;
    }
    let wanted_names: BTreeSet<&str> = wanted.roles.iter().map(|r| r.name.as_str()).collect();
    for role in wanted.roles.iter().filter(|r| r.origin == Origin::Team) {
        let name = &role.name;
        let deprecated = format!("{name}{suffix}");
        if actual.roles.contains_key(name) {
            continue;
        }
        let Some(old) = actual.roles.remove(&deprecated) else {
            continue;
        };
        out.push(statement(
            format!(
                "ALTER ROLE {} RENAME TO {}",
                ident(&deprecated),
                ident(name)
            ),
            format!("rename the returning team member {deprecated:?} back to {name:?}"),
        ));
        actual.roles.insert(name.clone(), old);
    }
    for name in removed {
        if wanted_names.contains(name.as_str()) {
            continue;
        }
        let Some(mut current) = actual.roles.remove(name) else {
            continue;
        };
        if current.flags.remove(&Flag::Login) {
            out.push(statement(
                format!("ALTER ROLE {} NOLOGIN", ident(name)),
                format!("take LOGIN from {name:?}, no longer a team member"),
            ));
        }
        let deprecated = format!("{name}{suffix}");
        if actual.roles.contains_key(&deprecated) {
            warnings.push(Warning {
                field: "role_deletion_suffix".into(),
                message: format!(
                    "{name:?} is no longer a team member, but {deprecated:?} exists already; \
                     the role keeps its name (without LOGIN)"
                ),
            });
            actual.roles.insert(name.clone(), current);
            continue;
        }
        out.push(statement(
            format!(
                "ALTER ROLE {} RENAME TO {}",
                ident(name),
                ident(&deprecated)
            ),
            format!("rename {name:?}, no longer a team member, to {deprecated:?}"),
        ));
        actual.roles.insert(deprecated, current);
    }
    out
}
