//! Password rotation on real Patroni + PostgreSQL, one cluster for every check. Rotation is made
//! due the way Zalando's e2e does it: the test moves a Secret's `nextRotation` into the past.
//!
//! - A user in `usersWithSecretRotation` gets a `nextRotation` one interval ahead; once due, its
//!   Secret holds a new dated user `<user><YYMMDD>` with a new password, which logs in, is a
//!   member of the original, has its flags and the setting made on it by hand; the original still
//!   logs in with its old password; the dated user of an old rotation (older than the retention,
//!   raised to two intervals) is dropped, a recent one and another user's are kept.
//! - A user in `usersWithInPlaceSecretRotation` keeps its name and gets a new password; the old
//!   one no longer works.
//! - After the rotations a sync changes nothing: no Secret write, no catalog write.
//! - Rotation turned off: the Secret holds the user's own name again, with a new password that
//!   logs in, and no next date.
//! - The rotations are told in Events; no password reaches the controller's log, an Event or the
//!   status.

use anyhow::{Context, Result, bail};
use e2e::command::kubectl;
use e2e::eventually::{eventually, eventually_with};
use e2e::patch::{kubectl_apply, merge_patch, set_operator_config};
use e2e::patroni::{TIMEOUT, setup, sql, sql_as, start_controller, writable_master};
use e2e::secrets::{secret_field, secret_name, secret_resource_version};
use std::time::Duration;

const CLUSTER: &str = "acid-rotation";
/// `password_rotation_interval`; the retention (1 day) is raised to two intervals, 6 days.
const INTERVAL_DAYS: i64 = 3;

fn manifest(rotation_lists: &str) -> String {
    let base = e2e::patroni::manifest(CLUSTER, 1);
    format!(
        "{base}  users:
    foo_user: [createdb]
    flyway: []
    keep_user: []
{rotation_lists}"
    )
}

const LISTS: &str =
    "  usersWithSecretRotation: [foo_user]\n  usersWithInPlaceSecretRotation: [flyway]\n";

/// One key of a user's Secret, decoded ("" when the key is absent).
async fn field(ns: &str, user: &str, key: &str) -> Result<String> {
    secret_field(ns, &secret_name(user, CLUSTER), key).await
}

async fn resource_version(ns: &str, user: &str) -> Result<String> {
    secret_resource_version(ns, &secret_name(user, CLUSTER)).await
}

async fn set_next_rotation(ns: &str, user: &str, at: &str) -> Result<()> {
    let patch = serde_json::json!({"stringData": {"nextRotation": at}});
    merge_patch(ns, "secret", &secret_name(user, CLUSTER), &patch).await
}

/// Seconds from now until the instant `at`, as the server computes it.
async fn seconds_until(ip: &str, pw: &str, at: &str) -> Result<i64> {
    let q = format!("select extract(epoch from '{at}'::timestamptz - now())::bigint");
    sql(ip, pw, &q).await?.parse().context("seconds")
}

/// Checks that `at` is RFC 3339 in UTC, whole seconds, one interval from now.
async fn one_interval_ahead(ip: &str, pw: &str, at: &str) -> Result<()> {
    let shape = at.len() == 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T';
    if !shape {
        bail!("nextRotation {at:?} is not RFC 3339 UTC with whole seconds");
    }
    let left = seconds_until(ip, pw, at).await?;
    let interval = INTERVAL_DAYS * 86_400;
    if !(interval - 600..=interval + 5).contains(&left) {
        bail!("nextRotation {at} is {left} s away, not one interval ({interval} s)");
    }
    Ok(())
}

/// The server's UTC date `days` ago as a rotation suffix (YYMMDD).
async fn suffix(ip: &str, pw: &str, days: i64) -> Result<String> {
    let q =
        format!("select to_char((now() at time zone 'utc') - interval '{days} days', 'YYMMDD')");
    sql(ip, pw, &q).await
}

/// The xmin of every role and database row, and the role settings: a write changes it.
async fn catalog_versions(ip: &str, pw: &str) -> Result<String> {
    sql(
        ip,
        pw,
        "select string_agg(rolname || ':' || xmin, ',' order by rolname) from pg_authid \
         union all select string_agg(datname || ':' || xmin, ',' order by datname) from pg_database \
         union all select count(*)::text || ':' || coalesce(max(xmin::text), '') from pg_db_role_setting",
    )
    .await
}

#[tokio::test]
async fn passwords_rotate_with_dated_users_and_in_place() -> Result<()> {
    let (ns, controller) = setup("rotation").await?;
    let n = ns.name.as_str();
    set_operator_config(
        n,
        &[
            ("password_rotation_interval", &INTERVAL_DAYS.to_string()),
            ("password_rotation_user_retention", "1"),
        ],
    )
    .await?;
    drop(controller);
    let controller = start_controller(n)?;
    kubectl_apply(n, &manifest(LISTS)).await?;
    let (_, ip, pw) = writable_master(n, CLUSTER).await?;

    // Both listed users get a next date one interval ahead; the other user none.
    let mut passwords = Vec::new();
    for user in ["foo_user", "flyway"] {
        let (next, old) = eventually_with(
            &format!("{user}'s Secret to get a nextRotation and to log in"),
            TIMEOUT,
            Duration::from_millis(500),
            || async {
                let next = field(n, user, "nextRotation").await?;
                if next.is_empty() {
                    bail!("no nextRotation yet");
                }
                let pw = field(n, user, "password").await?;
                sql_as(&ip, user, &pw, "postgres", "select 1").await?;
                Ok((next, pw))
            },
        )
        .await?;
        one_interval_ahead(&ip, &pw, &next).await?;
        assert_eq!(field(n, user, "username").await?, user, "not rotated yet");
        passwords.push(old);
    }
    let [foo_old, flyway_old] = [passwords[0].clone(), passwords[1].clone()];
    assert_eq!(field(n, "keep_user", "nextRotation").await?, "");

    // Dated users of earlier rotations: one past the retention, one within, and another user's.
    let (old_day, recent_day) = (suffix(&ip, &pw, 40).await?, suffix(&ip, &pw, 2).await?);
    let stale = format!("foo_user{old_day}");
    let recent = format!("foo_user{recent_day}");
    let other = format!("keep_user{old_day}");
    sql(
        &ip,
        &pw,
        &format!(
            "create role {stale} login; create role {recent} login; create role {other} login; \
             alter role foo_user set statement_timeout = '5s'"
        ),
    )
    .await?;

    // Due: the Secret switches to a new dated user.
    set_next_rotation(n, "foo_user", "2020-01-01T00:00:00Z").await?;
    let (dated, dated_pw) = eventually("foo_user's Secret to hold a dated user", || async {
        let user = field(n, "foo_user", "username").await?;
        if user == "foo_user" {
            bail!("still foo_user");
        }
        Ok((user, field(n, "foo_user", "password").await?))
    })
    .await?;
    let today = suffix(&ip, &pw, 0).await?;
    assert_eq!(dated, format!("foo_user{today}"));
    assert_ne!(dated_pw, foo_old);
    one_interval_ahead(&ip, &pw, &field(n, "foo_user", "nextRotation").await?).await?;
    let me = eventually(
        "the dated user to log in with the Secret's password",
        || async { sql_as(&ip, &dated, &dated_pw, "postgres", "select current_user").await },
    )
    .await?;
    assert_eq!(me, dated);
    let role = sql(
        &ip,
        &pw,
        &format!(
            "select r.rolcanlogin::text || ' ' || r.rolcreatedb::text || ' ' || \
             pg_has_role(r.oid, 'foo_user', 'member')::text || ' ' || \
             coalesce((select array_to_string(setconfig, ',') from pg_db_role_setting \
                       where setrole = r.oid and setdatabase = 0), '') \
             from pg_roles r where rolname = '{dated}'"
        ),
    )
    .await?;
    assert_eq!(
        role, "true true true statement_timeout=5s",
        "login, createdb, member of foo_user, its setting"
    );
    sql_as(&ip, "foo_user", &foo_old, "postgres", "select 1")
        .await
        .context("the original still logs in with its old password")?;
    let left = eventually("the stale dated user to be dropped", || async {
        let q = format!(
            "select string_agg(rolname, ',' order by rolname) from pg_roles \
             where rolname in ('{stale}', '{recent}', '{other}')"
        );
        let left = sql(&ip, &pw, &q).await?;
        if left.contains(&stale) {
            bail!("still there: {left}");
        }
        Ok(left)
    })
    .await?;
    assert_eq!(
        left,
        format!("{recent},{other}"),
        "kept: within the retention, another user's"
    );

    // In place: the same user, a new password; the old one is refused.
    set_next_rotation(n, "flyway", "2020-01-01T00:00:00Z").await?;
    let flyway_new = eventually("flyway's Secret to get a new password", || async {
        let pw = field(n, "flyway", "password").await?;
        if pw == flyway_old {
            bail!("the same password");
        }
        Ok(pw)
    })
    .await?;
    assert_eq!(field(n, "flyway", "username").await?, "flyway");
    one_interval_ahead(&ip, &pw, &field(n, "flyway", "nextRotation").await?).await?;
    eventually("flyway to log in with its new password", || async {
        sql_as(&ip, "flyway", &flyway_new, "postgres", "select 1").await
    })
    .await?;
    assert!(
        sql_as(&ip, "flyway", &flyway_old, "postgres", "select 1")
            .await
            .is_err(),
        "the old password of an in-place rotation is refused"
    );

    // Nothing more is due: later syncs write neither the Secrets nor the catalog.
    let versions = (
        resource_version(n, "foo_user").await?,
        resource_version(n, "flyway").await?,
        catalog_versions(&ip, &pw).await?,
    );
    tokio::time::sleep(Duration::from_secs(15)).await; // three resyncs of 5 s
    let after = (
        resource_version(n, "foo_user").await?,
        resource_version(n, "flyway").await?,
        catalog_versions(&ip, &pw).await?,
    );
    assert_eq!(after, versions, "a sync with nothing due wrote something");

    // Rotation turned off: foo_user's Secret holds foo_user again, with a new password.
    kubectl_apply(n, &manifest("")).await?;
    let reset = eventually("foo_user's Secret to be reset", || async {
        if field(n, "foo_user", "username").await? != "foo_user" {
            bail!("still the dated user");
        }
        field(n, "foo_user", "password").await
    })
    .await?;
    assert!(reset != foo_old && reset != dated_pw, "a new password");
    assert_eq!(field(n, "foo_user", "nextRotation").await?, "");
    eventually("foo_user to log in with the reset password", || async {
        sql_as(&ip, "foo_user", &reset, "postgres", "select 1").await
    })
    .await?;
    drop(controller);

    // The rotations are told in Events, and no Event or status carries a password.
    let events = kubectl(["get", "events", "-n", n, "-o", "json"])
        .await?
        .ok()?
        .stdout;
    let status = kubectl(["get", "postgresql", CLUSTER, "-n", n, "-o", "json"])
        .await?
        .ok()?
        .stdout;
    assert!(events.contains("PasswordRotation") && events.contains(&dated));
    let log = std::fs::read_to_string(
        e2e::paths::local_dir()
            .join("logs")
            .join(format!("controller-{n}.log")),
    )?;
    for secret in [&foo_old, &dated_pw, &flyway_old, &flyway_new, &reset] {
        assert!(
            !log.contains(secret.as_str()),
            "a password is in the controller's log"
        );
        assert!(
            !events.contains(secret.as_str()),
            "a password is in an Event"
        );
        assert!(
            !status.contains(secret.as_str()),
            "a password is in the status"
        );
    }
    assert!(
        log.contains(&dated),
        "the rotation is logged by the new user's name"
    );
    Ok(())
}
