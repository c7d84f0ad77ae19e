//! Password rotation (`common::database::rotation`): who is rotated and how (a table here), what
//! each sync does to a Secret (`tests/rotation/secrets.yaml`), which dated users are dropped
//! (`tests/rotation/retention.yaml`), and the dated role the plan creates. Times are fixed, so
//! every date is checked to the second.

use chrono::{DateTime, Utc};
use common::config::Config;
use common::crd::Postgresql;
use common::database::model::{Actual, ActualRole, Flag, Origin};
use common::database::password::Method;
use common::database::plan::plan;
use common::database::rotation::{
    Credentials, Decision, Eligibility, Kind, Mode, Policy, Problem, add_rotation_roles,
    copy_settings, decide, drop_statements, eligibility, expired, owns_database,
};
use common::database::wanted::{Secrets, wanted};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

fn at(s: &str) -> DateTime<Utc> {
    common::database::rotation::parse_instant(s).expect("a test instant")
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn policy(enabled: bool, with: &[&str], in_place: &[&str], ignoring: &[&str]) -> Policy {
    Policy {
        enabled,
        interval_days: 30,
        retention_days: 180,
        with_new_users: set(with),
        in_place: set(in_place),
        ignoring: set(ignoring),
        standby: false,
    }
}

#[test]
fn who_is_rotated_and_how() {
    use Eligibility::{NotRotated, Rotated};
    use Kind::*;
    let refused = |e: &Eligibility| matches!(e, Eligibility::Refused(_));
    // (policy, user, kind, owns a database, expected)
    let on = policy(true, &[], &[], &[]);
    let off = policy(
        false,
        &["foo_user", "infra", "postgres", "owner"],
        &["flyway"],
        &[],
    );
    let both = policy(false, &["foo_user"], &["foo_user"], &[]);
    let ignored = policy(
        true,
        &["foo_user"],
        &["flyway"],
        &["foo_user", "flyway", "bar_reader_user"],
    );
    let cases: Vec<(&Policy, &str, Kind, bool, Eligibility)> = vec![
        // The global switch: manifest users and prepared default users that own no database.
        (&on, "foo_user", Manifest, false, Rotated(Mode::NewUser)),
        (&on, "zalando", Manifest, true, NotRotated),
        (
            &on,
            "bar_reader_user",
            PreparedDatabase,
            false,
            Rotated(Mode::NewUser),
        ),
        (&on, "bar_owner_user", PreparedDatabase, true, NotRotated),
        (&on, "infra", Other, false, NotRotated),
        (&on, "standby", System, false, NotRotated),
        // The lists name any user, owners too; in-place wins when both list it.
        (&off, "foo_user", Manifest, false, Rotated(Mode::NewUser)),
        (&off, "owner", Manifest, true, Rotated(Mode::NewUser)),
        (&off, "infra", Other, false, Rotated(Mode::NewUser)),
        (&off, "flyway", Manifest, false, Rotated(Mode::InPlace)),
        (&off, "other", Manifest, false, NotRotated),
        (&both, "foo_user", Manifest, false, Rotated(Mode::InPlace)),
        // usersIgnoringSecretRotation wins over the switch and both lists.
        (&ignored, "foo_user", Manifest, false, NotRotated),
        (&ignored, "flyway", Manifest, false, NotRotated),
        (
            &ignored,
            "bar_reader_user",
            PreparedDatabase,
            false,
            NotRotated,
        ),
        (&ignored, "other", Manifest, false, Rotated(Mode::NewUser)),
    ];
    for (p, user, kind, owner, expected) in cases {
        assert_eq!(
            eligibility(p, user, kind, owner),
            expected,
            "{user} ({kind:?})"
        );
    }
    // A listed system user is refused with a reason (Zalando issue #2780), unless ignored.
    assert!(refused(&eligibility(&off, "postgres", System, false)));
    let listed_but_ignored = policy(false, &["standby"], &[], &["standby"]);
    assert_eq!(
        eligibility(&listed_but_ignored, "standby", System, false),
        NotRotated
    );
}

fn creds(username: &str, password: &str, next: Option<&str>) -> Credentials {
    Credentials {
        username: username.into(),
        password: password.into(),
        next_rotation: next.map(str::to_string),
    }
}

fn cases<T: serde::de::DeserializeOwned>(file: &str) -> Vec<T> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/rotation")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let list: Vec<T> = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert!(list.len() >= 8, "{file}: only {} cases", list.len());
    list
}

/// A Secret as the tables write it: `[username, password]` or `[username, password, nextRotation]`.
fn secret(list: &[String]) -> Credentials {
    match list {
        [u, p] => creds(u, p, None),
        [u, p, n] => creds(u, p, Some(n)),
        other => panic!("a Secret is [username, password, nextRotation?], not {other:?}"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretCase {
    name: String,
    now: String,
    #[serde(default = "foo_user")]
    user: String,
    interval: Option<u32>,
    rotation: String,
    secret: Vec<String>,
    expect: String,
    /// The Secret afterwards; omitted: unchanged.
    after: Option<Vec<String>>,
    #[serde(default)]
    cleanup: bool,
}

fn foo_user() -> String {
    "foo_user".into()
}

#[test]
fn what_a_sync_does_to_a_secret() {
    for case in cases::<SecretCase>("secrets.yaml") {
        let name = &case.name;
        let mut p = policy(false, &[], &[], &[]);
        p.interval_days = case.interval.unwrap_or(30);
        let eligibility = match case.rotation.as_str() {
            "newUser" => Eligibility::Rotated(Mode::NewUser),
            "inPlace" => Eligibility::Rotated(Mode::InPlace),
            "no" => Eligibility::NotRotated,
            other => panic!("{name}: rotation {other:?}"),
        };
        let decision = match case.expect.as_str() {
            "keep" => Decision::Keep,
            "schedule" => Decision::Schedule,
            "pullForward" => Decision::PullForward,
            "newUser" => Decision::NewUser,
            "inPlace" => Decision::InPlace,
            "reset" => Decision::Reset,
            other => panic!("{name}: expect {other:?}"),
        };
        let current = secret(&case.secret);
        let after = case.after.as_deref().map_or(current.clone(), secret);
        let mut drawn = 0;
        let mut draw = || {
            drawn += 1;
            "NEW".to_string()
        };
        let step = decide(
            at(&case.now),
            &p,
            &case.user,
            &eligibility,
            &current,
            &mut draw,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(step.decision, decision, "{name}");
        assert_eq!(step.credentials, after, "{name}");
        assert_eq!(step.cleanup, case.cleanup, "{name}");
        let new = usize::from(after.password == "NEW");
        assert_eq!(drawn, new, "{name}: passwords drawn");
    }
}

#[test]
fn secrets_left_alone() {
    let now = at("2025-03-01T12:00:00Z");
    let due = creds("foo_user250101", "old", Some("2025-02-01T00:00:00Z"));
    let never = &mut || -> String { panic!("no password is drawn") };
    // A standby cluster: neither rotated nor reset.
    let mut standby = policy(true, &[], &[], &[]);
    standby.standby = true;
    for e in [Eligibility::Rotated(Mode::NewUser), Eligibility::NotRotated] {
        let step = decide(now, &standby, "foo_user", &e, &due, never).expect("no problem");
        assert_eq!(
            (step.decision, step.credentials),
            (Decision::Keep, due.clone())
        );
    }
    let p = policy(false, &[], &[], &[]);
    // Two roles whose names differ only in '-' and '_' share a Secret: no reset, an error.
    let shared = creds("foo-user", "old", None);
    let problem = decide(
        now,
        &p,
        "foo_user",
        &Eligibility::NotRotated,
        &shared,
        never,
    );
    assert!(
        matches!(problem, Err(Problem::SharedSecret { .. })),
        "{problem:?}"
    );
    // A refused system user.
    let refused = Eligibility::Refused("system user".into());
    let problem = decide(
        now,
        &p,
        "postgres",
        &refused,
        &creds("postgres", "x", None),
        never,
    );
    assert_eq!(problem, Err(Problem::Refused("system user".into())));
    // The password never shows in debug output.
    assert!(!format!("{due:?}").contains("old"));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionCase {
    name: String,
    now: String,
    users: Option<Vec<String>>,
    interval: Option<u32>,
    retention: Option<u32>,
    roles: Vec<String>,
    #[serde(default)]
    keep: Vec<String>,
    dropped: Vec<String>,
}

#[test]
fn expired_rotation_users_are_dropped_after_the_retention() {
    for case in cases::<RetentionCase>("retention.yaml") {
        let mut p = policy(true, &[], &[], &[]);
        p.interval_days = case.interval.unwrap_or(30);
        p.retention_days = case.retention.unwrap_or(180);
        let users = case.users.unwrap_or_else(|| vec![foo_user()]);
        let keep = case.keep.iter().cloned().collect();
        let got = expired(
            at(&case.now),
            &p,
            &users.into_iter().collect(),
            &case.roles,
            &keep,
        );
        assert_eq!(got, case.dropped, "{}", case.name);
    }
    let p = policy(true, &[], &[], &[]);
    let drops = drop_statements(&["foo_user240101".into()], &p);
    assert_eq!(drops[0].sql, r#"DROP ROLE "foo_user240101""#);
    assert_eq!(
        drops[0].what,
        r#"drop the rotation user "foo_user240101", older than the retention of 180 days"#
    );
}

fn pg(yaml: &str) -> Postgresql {
    serde_yaml::from_str(yaml).expect("a test manifest")
}

const MANIFEST: &str = r#"
apiVersion: acid.zalan.do/v1
kind: postgresql
metadata: {name: acid-rotation, namespace: default}
spec:
  teamId: acid
  numberOfInstances: 1
  postgresql: {version: "17"}
  volume: {size: 1Gi}
  users:
    foo_user: [createdb]
    zalando: []
  databases: {foo: zalando}
  preparedDatabases:
    bar:
      defaultUsers: true
  usersWithSecretRotation: [foo_user, bar_reader_user]
  usersIgnoringSecretRotation: [zalando]
"#;

#[test]
fn owners_and_the_policy_from_the_manifest() {
    let pg = pg(MANIFEST);
    let mut config = Config::default();
    config.users.enable_password_rotation = true;
    config.users.password_rotation_interval = 7;
    let p = Policy::new(&config, &pg);
    assert!(p.enabled && !p.standby);
    assert_eq!(
        (
            p.interval_days,
            p.retention_days,
            p.effective_retention_days()
        ),
        (7, 180, 180)
    );
    assert_eq!(p.with_new_users, set(&["bar_reader_user", "foo_user"]));
    assert_eq!(p.ignoring, set(&["zalando"]));
    let (w, _) = wanted(&config, &pg, &Secrets::new());
    let owners: BTreeSet<String> = w
        .roles
        .iter()
        .filter(|r| owns_database(&pg, r))
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(
        owners,
        set(&["bar_data_owner", "bar_owner", "bar_owner_user", "zalando"])
    );
    assert!(!owners.contains("foo_user") && !owners.contains("bar_reader_user"));
    assert_eq!(Kind::of(Origin::Team), Kind::Other);
}

#[test]
fn the_dated_role_is_created_as_a_member_of_the_original() {
    let pg = pg(MANIFEST);
    let config = Config::default();
    // The Secrets hold the dated users: the originals get no password from them.
    let secrets: Secrets = [("foo_user250301".to_string(), "NEW".to_string())].into();
    let (mut w, _) = wanted(&config, &pg, &secrets);
    let rotated = vec![
        (
            "foo_user".to_string(),
            creds("foo_user250301", "NEW", Some("2025-03-31T12:00:00Z")),
        ),
        (
            "bar_reader_user".to_string(),
            creds("bar_reader_user250301", "NEW2", None),
        ),
        // A name that is not <user> + a date is not a rotation user: nothing is created.
        ("zalando".to_string(), creds("postgres", "hijack", None)),
        // A user that is not wanted gets no rotation role.
        ("gone_user".to_string(), creds("gone_user250301", "x", None)),
    ];
    let pairs = add_rotation_roles(&mut w, &rotated);
    assert_eq!(
        pairs,
        [
            ("foo_user".to_string(), "foo_user250301".to_string()),
            (
                "bar_reader_user".to_string(),
                "bar_reader_user250301".to_string()
            )
        ]
    );
    // Added twice (a second pass), it is not duplicated.
    assert!(add_rotation_roles(&mut w, &rotated[..1]).is_empty());
    let mut actual = Actual::default();
    let spilo = |flags: &[Flag]| ActualRole {
        flags: flags.iter().copied().collect(),
        ..Default::default()
    };
    actual
        .roles
        .insert("postgres".into(), spilo(&[Flag::Superuser, Flag::Login]));
    actual
        .roles
        .insert("admin".into(), spilo(&[Flag::CreateDb]));
    // The original exists with a setting made by hand: the dated role gets it too.
    let mut foo = spilo(&[Flag::Login, Flag::CreateDb, Flag::Inherit]);
    foo.settings = BTreeMap::from([("statement_timeout".to_string(), "5s".to_string())]);
    actual.roles.insert("foo_user".into(), foo);
    copy_settings(&mut w, &actual, &pairs);
    let statements = plan(&w, &actual, Method::ScramSha256);
    let sql: Vec<&str> = statements.iter().map(|s| s.sql.as_str()).collect();
    let create = sql
        .iter()
        .find(|s| s.starts_with(r#"CREATE ROLE "foo_user250301""#))
        .expect("the dated role is created");
    assert!(
        create.starts_with(r#"CREATE ROLE "foo_user250301" LOGIN CREATEDB IN ROLE "foo_user" ADMIN "admin" PASSWORD 'SCRAM-SHA-256$"#),
        "{create}"
    );
    assert!(sql.contains(&r#"ALTER ROLE "foo_user250301" SET "statement_timeout" TO '5s'"#));
    // The prepared reader's dated user joins the reader user and keeps its search_path.
    let reader = sql
        .iter()
        .find(|s| s.starts_with(r#"CREATE ROLE "bar_reader_user250301""#))
        .expect("the dated reader user is created");
    assert!(reader.contains(r#"IN ROLE "bar_reader_user""#), "{reader}");
    assert!(
        sql.iter()
            .any(|s| s.starts_with(r#"ALTER ROLE "bar_reader_user250301" SET "search_path""#))
    );
    // The original keeps its password: no statement changes it; nothing is created for the
    // hijacking name.
    assert!(
        !sql.iter()
            .any(|s| s.starts_with(r#"ALTER ROLE "foo_user" PASSWORD"#))
    );
    assert!(
        !sql.iter()
            .any(|s| s.contains("hijack") || s.starts_with(r#"ALTER ROLE "postgres""#))
    );
    let secret = statements
        .iter()
        .find(|s| s.sql.starts_with(r#"CREATE ROLE "foo_user250301""#));
    assert!(secret.is_some_and(|s| s.secret && !s.what.contains("SCRAM")));
}
