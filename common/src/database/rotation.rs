//! Password rotation as Zalando does it (`checkForPasswordRotation`, `rotatePasswordInSecret`,
//! `cleanupRotatedUsers`), as pure functions of the time, the configuration, the manifest's lists
//! and a user's Secret.
//!
//! The Secret is the source of truth: a rotation writes new credentials into it, and the role
//! sync then makes the database match. With `usersWithSecretRotation` (or the global switch) the
//! Secret is switched to a new login role `<user><YYMMDD>`, a member of the original that keeps
//! working with its old password, so pods holding the old credentials in memory are not cut off;
//! dated roles older than the retention are dropped when the next rotation happens. With
//! `usersWithInPlaceSecretRotation` only the password changes. The next date lives in the
//! Secret's `nextRotation` key (RFC 3339, UTC).
//!
//! Differences from Zalando, each on purpose:
//! - The system users (superuser, replication user) are never rotated. Zalando excludes the
//!   superuser only by comparing the name with the constant `superuser`, so a `postgres` listed
//!   in `usersWithSecretRotation` gets a dated user and the pods lose their login (Zalando issue
//!   #2780); it rotates the replication user in place and then replaces every pod, which this
//!   operator cannot do yet (no rolling update), so a listed system user is reported instead.
//! - A shortened interval is written into the Secret (`nextRotation` becomes now + interval).
//!   Zalando computes the earlier date but keeps the later one in the Secret, so the shorter
//!   interval only counts after the old date has passed, although its documentation says it is
//!   "reflected in the secrets".
//! - A Secret username is taken as a rotation user only when it is the user's name followed by
//!   six digits; any other name edited into the Secret is ignored (Zalando would create that
//!   role, whatever it is, with the user's flags and the Secret's password), and replaced at the
//!   next rotation.
//! - Cleanup considers exactly `<user>` + six digits. Zalando matches `LIKE '<user>%'`, which also
//!   catches the dated roles of every user whose name starts with this one.
//! - All dates are UTC; Zalando formats the suffix and computes the retention in the operator's
//!   local time zone.

use super::model::{Actual, Origin, Password, Role, Statement, Wanted};
use super::plan::MAINTENANCE_DATABASE;
use super::quote::ident;
use crate::config::Config;
use crate::crd::Postgresql;
use chrono::{DateTime, Days, NaiveDate, SecondsFormat, Utc};
use std::collections::BTreeSet;
use std::fmt;

/// The Secret key of the next rotation date.
pub const NEXT_ROTATION: &str = "nextRotation";
/// Length of the date suffix of a rotation user (`YYMMDD`, Zalando's `RotationUserDateFormat`).
pub const SUFFIX_LEN: usize = 6;

/// What a role is, as far as rotation cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A `spec.users` role.
    Manifest,
    /// A prepared database's default login user.
    PreparedDatabase,
    /// The superuser or the replication user.
    System,
    /// Anything else with a Secret (infrastructure roles, the pooler and stream users): only
    /// rotated when a manifest list names it.
    Other,
}

impl Kind {
    /// The kind of a role of that origin.
    pub fn of(origin: Origin) -> Kind {
        match origin {
            Origin::Manifest => Kind::Manifest,
            Origin::PreparedDatabase => Kind::PreparedDatabase,
            Origin::System => Kind::System,
            Origin::Infrastructure | Origin::Team => Kind::Other,
        }
    }
}

/// The rotation settings of one cluster: the configuration's and the manifest's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `enable_password_rotation`.
    pub enabled: bool,
    /// `password_rotation_interval`, in days (the configuration refuses 0).
    pub interval_days: u32,
    /// `password_rotation_user_retention`, in days, before it is raised to 2 × interval.
    pub retention_days: u32,
    /// `usersWithSecretRotation`.
    pub with_new_users: BTreeSet<String>,
    /// `usersWithInPlaceSecretRotation`.
    pub in_place: BTreeSet<String>,
    /// `usersIgnoringSecretRotation`.
    pub ignoring: BTreeSet<String>,
    /// A standby cluster: nothing is rotated or reset.
    pub standby: bool,
}

impl Policy {
    /// The policy of `pg` under `config`.
    pub fn new(config: &Config, pg: &Postgresql) -> Policy {
        let list = |l: &Option<Vec<String>>| l.iter().flatten().cloned().collect();
        let users = &config.users;
        Policy {
            enabled: users.enable_password_rotation,
            interval_days: users.password_rotation_interval,
            retention_days: users.password_rotation_user_retention,
            with_new_users: list(&pg.spec.users_with_secret_rotation),
            in_place: list(&pg.spec.users_with_in_place_secret_rotation),
            ignoring: list(&pg.spec.users_ignoring_secret_rotation),
            standby: pg.spec.standby.is_some(),
        }
    }

    /// Days a rotation user is kept: the configured retention, but at least two intervals, so
    /// the user a Secret held until the last rotation is never dropped while pods may still use
    /// it (a retention shorter than the interval would drop it at once).
    pub fn effective_retention_days(&self) -> u64 {
        u64::from(self.retention_days).max(2 * u64::from(self.interval_days))
    }
}

/// The credentials a user's Secret holds. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// `nextRotation`, as stored (absent, empty or anything else count as unset).
    pub next_rotation: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("next_rotation", &self.next_rotation)
            .finish()
    }
}

/// How a user's password is rotated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A new dated login role each time (`usersWithSecretRotation`, the global switch).
    NewUser,
    /// The same role, a new password (`usersWithInPlaceSecretRotation`).
    InPlace,
}

/// Whether and how a user is rotated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Eligibility {
    Rotated(Mode),
    NotRotated,
    /// Asked for, but this operator does not rotate it; the reason is for the user.
    Refused(String),
}

/// Zalando's rule: the global switch covers manifest users and prepared databases' default users
/// that own no database (ownership cannot be inherited by a dated member); the manifest lists
/// name any user; `usersIgnoringSecretRotation` wins over both. System users never rotate here.
pub fn eligibility(policy: &Policy, user: &str, kind: Kind, owns_database: bool) -> Eligibility {
    let listed = policy.with_new_users.contains(user) || policy.in_place.contains(user);
    let global =
        policy.enabled && !owns_database && matches!(kind, Kind::Manifest | Kind::PreparedDatabase);
    if (!listed && !global) || policy.ignoring.contains(user) {
        return Eligibility::NotRotated;
    }
    if kind == Kind::System {
        return if listed {
            Eligibility::Refused(format!(
                "{user:?} is a system user: the pods and the operator log in as it with the \
                 password of its Secret, so its password is not rotated"
            ))
        } else {
            Eligibility::NotRotated
        };
    }
    if policy.in_place.contains(user) {
        Eligibility::Rotated(Mode::InPlace)
    } else {
        Eligibility::Rotated(Mode::NewUser)
    }
}

/// What a sync does to a user's Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to write.
    Keep,
    /// Rotation applies for the first time: `nextRotation` is set, nothing rotated yet.
    Schedule,
    /// The interval was shortened: `nextRotation` is pulled forward to now + interval.
    PullForward,
    /// Due: the Secret switches to a new dated user with a new password.
    NewUser,
    /// Due (or switched to in-place from a dated user): a new password for the same user.
    InPlace,
    /// Rotation no longer applies but the Secret holds a rotation user: back to the user itself,
    /// a new password, `nextRotation` emptied.
    Reset,
}

/// The outcome for one Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub decision: Decision,
    /// The Secret's credentials after the step (unchanged for [`Decision::Keep`]).
    pub credentials: Credentials,
    /// Whether the user's expired rotation roles are looked for afterwards (Zalando does so
    /// after a new dated user or a reset only).
    pub cleanup: bool,
}

/// Why a Secret is left alone although something would be due.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Eligibility refused.
    #[error("{0}")]
    Refused(String),
    /// The Secret belongs to another role whose name differs only in `-` and `_` (a manifest
    /// user and a prepared database's user share the Secret name).
    #[error(
        "the Secret holds the user {found:?} instead of {user:?}: two roles whose names differ \
         only in '-' and '_' share one Secret; it is left unchanged"
    )]
    SharedSecret { user: String, found: String },
}

/// The instant as Zalando writes `nextRotation`: RFC 3339, whole seconds, `Z`.
pub fn format_instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A stored `nextRotation`, if it is an RFC 3339 instant (any offset).
pub fn parse_instant(stored: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(stored.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `days` calendar days after `at` (UTC days are 24 hours); saturates instead of overflowing.
pub fn days_after(at: DateTime<Utc>, days: u64) -> DateTime<Utc> {
    at.checked_add_days(Days::new(days))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `days` calendar days before `at`; saturates instead of overflowing.
pub fn days_before(at: DateTime<Utc>, days: u64) -> DateTime<Utc> {
    at.checked_sub_days(Days::new(days))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The next rotation date from `now`.
pub fn next_date(now: DateTime<Utc>, policy: &Policy) -> DateTime<Utc> {
    days_after(now, u64::from(policy.interval_days))
}

/// The rotation user of `user` created at `now`: `<user><YYMMDD>`, the UTC date.
pub fn rotation_user(user: &str, now: DateTime<Utc>) -> String {
    format!("{user}{}", now.format("%y%m%d"))
}

/// The date of a rotation user of `user`: `name` is `user` followed by exactly six digits that
/// form a valid `YYMMDD` date (two-digit years as Go reads them: 69–99 are 19xx, the rest 20xx).
pub fn rotation_date(name: &str, user: &str) -> Option<NaiveDate> {
    let suffix = name.strip_prefix(user)?;
    if suffix.len() != SUFFIX_LEN || !suffix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| suffix[range].parse::<u32>().ok();
    let yy = number(0..2)?;
    let year = if yy >= 69 { 1900 + yy } else { 2000 + yy };
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, number(2..4)?, number(4..6)?)
}

/// Whether `name` is a rotation user of `user` (see [`rotation_date`]).
pub fn is_rotation_of(name: &str, user: &str) -> bool {
    rotation_date(name, user).is_some()
}

/// What to do with `user`'s Secret at `now`. `new_password` is called only when the Secret gets
/// a new password.
pub fn decide(
    now: DateTime<Utc>,
    policy: &Policy,
    user: &str,
    eligibility: &Eligibility,
    current: &Credentials,
    new_password: &mut dyn FnMut() -> String,
) -> Result<Step, Problem> {
    let keep = Step {
        decision: Decision::Keep,
        credentials: current.clone(),
        cleanup: false,
    };
    if policy.standby {
        return Ok(keep);
    }
    let mode = match eligibility {
        Eligibility::Rotated(mode) => *mode,
        Eligibility::Refused(reason) => return Err(Problem::Refused(reason.clone())),
        Eligibility::NotRotated if current.username == user => return Ok(keep),
        Eligibility::NotRotated => {
            let same = |s: &str| s.replace('-', "_");
            if same(&current.username) == same(user) {
                return Err(Problem::SharedSecret {
                    user: user.to_string(),
                    found: current.username.clone(),
                });
            }
            return Ok(Step {
                decision: Decision::Reset,
                credentials: Credentials {
                    username: user.to_string(),
                    password: new_password(),
                    next_rotation: Some(String::new()),
                },
                cleanup: true,
            });
        }
    };
    let mut next = current.clone();
    let mut decision = Decision::Keep;
    let latest = next_date(now, policy);
    let stored = current.next_rotation.as_deref().and_then(parse_instant);
    let due_at = match stored {
        None => {
            decision = Decision::Schedule;
            latest
        }
        Some(at) if at > latest => {
            decision = Decision::PullForward;
            latest
        }
        Some(at) => at,
    };
    if matches!(decision, Decision::Schedule | Decision::PullForward) {
        next.next_rotation = Some(format_instant(latest));
    }
    let expected = match mode {
        Mode::NewUser => rotation_user(user, now),
        Mode::InPlace => user.to_string(),
    };
    // A Secret still holding a dated user switches to in-place at once (Zalando compares the
    // lengths: the dated name is the longer one).
    let mode_changed = current.username.len() > expected.len();
    if now > due_at || mode_changed {
        next.username = expected;
        next.password = new_password();
        next.next_rotation = Some(format_instant(latest));
        decision = match mode {
            Mode::NewUser => Decision::NewUser,
            Mode::InPlace => Decision::InPlace,
        };
    }
    Ok(Step {
        decision,
        cleanup: decision == Decision::NewUser,
        credentials: next,
    })
}

/// Whether `role` owns a database, as Zalando's `IsDbOwner`: a manifest user named as the owner
/// of a `spec.databases` entry, or a prepared database's owner-type role.
pub fn owns_database(pg: &Postgresql, role: &Role) -> bool {
    match role.origin {
        Origin::Manifest => pg
            .spec
            .databases
            .iter()
            .flatten()
            .any(|(_, owner)| *owner == role.name),
        Origin::PreparedDatabase => {
            role.name.ends_with("_owner") || role.name.ends_with("_owner_user")
        }
        _ => false,
    }
}

/// A user's rotation role: the name the Secret holds, if it is a rotation user of `original`,
/// with the original's flags, admin and settings, a member of the original only (everything else
/// it inherits), and the Secret's password.
pub fn rotation_role(original: &Role, credentials: &Credentials) -> Option<Role> {
    if !is_rotation_of(&credentials.username, &original.name) {
        return None;
    }
    Some(Role {
        name: credentials.username.clone(),
        flags: original.flags.clone(),
        no_flags: original.no_flags.clone(),
        password: if credentials.password.is_empty() {
            Password::None
        } else {
            Password::Clear(credentials.password.clone())
        },
        member_of: BTreeSet::from([original.name.clone()]),
        admin: original.admin.clone(),
        settings: original.settings.clone(),
        origin: original.origin,
    })
}

/// Adds the rotation role of each `(user, credentials)` whose user is wanted and whose Secret
/// holds a rotation user not otherwise wanted. Returns the (original, rotation role) pairs.
pub fn add_rotation_roles(
    wanted: &mut Wanted,
    secrets: &[(String, Credentials)],
) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for (user, credentials) in secrets {
        let taken = wanted.roles.iter().any(|r| r.name == credentials.username);
        let Some(original) = wanted.roles.iter().find(|r| r.name == *user) else {
            continue;
        };
        if taken {
            continue;
        }
        if let Some(role) = rotation_role(original, credentials) {
            pairs.push((user.clone(), role.name.clone()));
            wanted.roles.push(role);
        }
    }
    pairs
}

/// Gives each rotation role the original's settings: those the original is to have, or, when it
/// is to have none, those the catalog shows it with (set by hand, say), as Zalando copies the
/// original's `rolconfig`: PostgreSQL does not inherit role settings.
pub fn copy_settings(wanted: &mut Wanted, actual: &Actual, pairs: &[(String, String)]) {
    for (original, rotated) in pairs {
        let Some(from) = wanted.roles.iter().find(|r| r.name == *original) else {
            continue;
        };
        let settings = if from.settings.is_empty() {
            match actual.roles.get(original) {
                Some(current) => current.settings.clone(),
                None => continue,
            }
        } else {
            from.settings.clone()
        };
        if let Some(role) = wanted.roles.iter_mut().find(|r| r.name == *rotated) {
            role.settings = settings;
        }
    }
}

/// The rotation users among `existing` to drop at `now`: a rotation user of one of `users` whose
/// date is more than the effective retention before `now` (Zalando compares the suffix date at
/// midnight with now − retention), and that no Secret or manifest still wants (`keep`).
pub fn expired(
    now: DateTime<Utc>,
    policy: &Policy,
    users: &BTreeSet<String>,
    existing: &[String],
    keep: &BTreeSet<String>,
) -> Vec<String> {
    let limit = days_before(now, policy.effective_retention_days());
    let mut out: Vec<String> = existing
        .iter()
        .filter(|name| !keep.contains(*name))
        .filter(|name| {
            users.iter().any(|user| {
                rotation_date(name, user)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .is_some_and(|d| d.and_utc() < limit)
            })
        })
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `DROP ROLE` for each expired rotation user.
pub fn drop_statements(names: &[String], policy: &Policy) -> Vec<Statement> {
    let days = policy.effective_retention_days();
    names
        .iter()
        .map(|name| Statement {
            database: MAINTENANCE_DATABASE.to_string(),
            sql: format!("DROP ROLE {}", ident(name)),
            transactional: true,
            secret: false,
            what: format!(
                "drop the rotation user {name:?}, older than the retention of {days} days"
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        parse_instant(s).expect("a test instant")
    }

    #[test]
    fn dates_across_month_year_and_leap_days() {
        let cases = [
            ("2025-01-31T10:00:00Z", 30, "2025-03-02T10:00:00Z"),
            ("2024-01-31T10:00:00Z", 30, "2024-03-01T10:00:00Z"),
            ("2024-02-28T23:59:59Z", 1, "2024-02-29T23:59:59Z"),
            ("2023-02-28T23:59:59Z", 1, "2023-03-01T23:59:59Z"),
            ("2024-12-31T23:59:59Z", 1, "2025-01-01T23:59:59Z"),
            ("2024-10-03T08:00:00Z", 90, "2025-01-01T08:00:00Z"),
            ("2024-02-29T12:00:00Z", 365, "2025-02-28T12:00:00Z"),
            ("2023-03-01T00:00:00Z", 366, "2024-03-01T00:00:00Z"),
        ];
        for (from, days, to) in cases {
            assert_eq!(
                format_instant(days_after(at(from), days)),
                to,
                "{from} + {days}"
            );
            assert_eq!(days_before(at(to), days), at(from), "{to} - {days}");
        }
        assert_eq!(
            days_after(at("2025-01-01T00:00:00Z"), u64::MAX),
            DateTime::<Utc>::MAX_UTC
        );
    }

    #[test]
    fn instants_are_written_as_zalando_writes_them_and_read_with_any_offset() {
        let now = at("2025-06-30T23:15:42.987Z");
        assert_eq!(format_instant(now), "2025-06-30T23:15:42Z");
        assert_eq!(at("2025-07-01T01:15:42+02:00"), at("2025-06-30T23:15:42Z"));
        for bad in ["", "2025-06-30", "tomorrow", "2025-13-01T00:00:00Z"] {
            assert_eq!(parse_instant(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rotation_users_carry_the_utc_date() {
        assert_eq!(
            rotation_user("foo_user", at("2024-02-29T23:59:59Z")),
            "foo_user240229"
        );
        assert_eq!(
            rotation_user("foo_user", at("2025-01-01T00:30:00+02:00")),
            "foo_user241231"
        );
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
        assert_eq!(
            rotation_date("foo_user240229", "foo_user"),
            date(2024, 2, 29)
        );
        assert_eq!(
            rotation_date("foo_user230229", "foo_user"),
            None,
            "no such day"
        );
        assert_eq!(
            rotation_date("foo_user681231", "foo_user"),
            date(2068, 12, 31)
        );
        assert_eq!(
            rotation_date("foo_user690101", "foo_user"),
            date(1969, 1, 1)
        );
        for not in [
            "foo_user",
            "foo_user24022",
            "foo_user2402290",
            "foo_user_240229",
            "foo_userab0229",
            "bar240229",
        ] {
            assert_eq!(rotation_date(not, "foo_user"), None, "{not}");
        }
    }
}
