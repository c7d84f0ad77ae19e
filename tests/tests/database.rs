//! The inside of a cluster on real Patroni + PostgreSQL: the manifest's users log in with the
//! passwords of their Secrets and have exactly the flags asked, own their databases; the
//! prepared database has its schemas, extension, default roles and users, and default
//! privileges that let the reader role read and the writer role write what the owner creates;
//! a password edited in a Secret works at the next login; a user removed from the manifest stays;
//! a restarted controller writes nothing (the catalog rows keep their xmin); a statement that
//! fails (an extension that does not exist) is reported and does not stop the others; with
//! `enable_cross_namespace_secret`, a prepared database's `secretNamespace` holds its default
//! users' Secrets.

use anyhow::{Context, Result, bail};
use e2e::command::kubectl;
use e2e::events::events;
use e2e::eventually::{eventually, eventually_with};
use e2e::patch::{kubectl_apply, merge_patch, set_operator_config};
use e2e::patroni::{TIMEOUT, json, setup, sql, sql_as, start_controller, writable_master};
use e2e::secrets::{secret_field, secret_name, user_password};
use e2e::status::condition;
use std::time::Duration;

const CLUSTER: &str = "acid-inside";

/// The cluster; `extra_prepared` is appended to `preparedDatabases` (indented by 4).
fn manifest(extra_users: &str, extra_extensions: &str, extra_prepared: &str) -> String {
    let base = e2e::patroni::manifest(CLUSTER, 1);
    format!(
        "{base}  users:
    zalando: [superuser, createdb]
    foo_user: []
    flow_user: [LOGIN, NOCREATEDB]
{extra_users}  databases:
    foo: zalando
  preparedDatabases:
    bar:
      defaultUsers: true
      extensions:
        pgcrypto: public
{extra_extensions}      schemas:
        data: {{}}
        history:
          defaultRoles: false
{extra_prepared}"
    )
}

/// Waits until `user` logs in with the password of its Secret; returns that password.
async fn logs_in(ip: &str, ns: &str, user: &str) -> Result<String> {
    eventually_with(
        &format!("{user} to log in with its Secret's password"),
        TIMEOUT,
        Duration::from_millis(500),
        || async {
            let pw = user_password(ns, user, CLUSTER).await?;
            let me = sql_as(ip, user, &pw, "postgres", "select current_user").await?;
            if me != user {
                bail!("logged in as {me}");
            }
            Ok(pw)
        },
    )
    .await
}

/// The xmin of every role and database row: a write to any of them changes it.
async fn catalog_versions(ip: &str, pw: &str) -> Result<String> {
    sql(
        ip,
        pw,
        "select string_agg(rolname || ':' || xmin, ',' order by rolname) from pg_authid \
         union all select string_agg(datname || ':' || xmin, ',' order by datname) from pg_database",
    )
    .await
}

#[tokio::test]
async fn the_manifests_users_and_databases_exist_inside_postgresql() -> Result<()> {
    let (ns, controller) = setup("inside").await?;
    let n = ns.name.as_str();
    // A second namespace for the Secrets of a prepared database's default users; the controller
    // restarts so that it starts with cross-namespace Secrets on.
    let apps =
        e2e::namespace::TestNamespace::new(&e2e::cluster::cluster().await?, "inside-apps").await?;
    drop(controller);
    set_operator_config(n, &[("enable_cross_namespace_secret", "true")]).await?;
    let controller = start_controller(n)?;
    let baz = format!(
        "    baz:\n      defaultUsers: true\n      secretNamespace: {}\n",
        apps.name
    );
    kubectl_apply(n, &manifest("", "", &baz)).await?;
    let (_, ip, pw) = writable_master(n, CLUSTER).await?;

    // Users log in with their Secrets' passwords, with the flags asked.
    for user in [
        "zalando",
        "foo_user",
        "flow_user",
        "bar_owner_user",
        "bar_reader_user",
        "bar_writer_user",
    ] {
        logs_in(&ip, n, user).await?;
    }
    // baz's default users: their Secrets in the other namespace, under their usual names, and
    // their roles without a namespace in the name.
    for user in ["baz_owner_user", "baz_reader_user", "baz_writer_user"] {
        let username = eventually(&format!("{user}'s Secret in {}", apps.name), || async {
            secret_field(&apps.name, &secret_name(user, CLUSTER), "username").await
        })
        .await?;
        assert_eq!(username, user);
        let here = kubectl(["get", "secret", &secret_name(user, CLUSTER), "-n", n]).await?;
        assert!(
            here.ok().is_err(),
            "{user}'s Secret is not in the cluster's namespace"
        );
    }
    let baz_roles = eventually("baz's default users", || async {
        let roles = sql(
            &ip,
            &pw,
            "select string_agg(rolname, ',' order by rolname) from pg_roles where rolname like 'baz%user'",
        )
        .await?;
        if roles.split(',').count() < 3 {
            bail!("roles: {roles}");
        }
        Ok(roles)
    })
    .await?;
    assert_eq!(baz_roles, "baz_owner_user,baz_reader_user,baz_writer_user");
    // …and they log in with the passwords of those Secrets: the controller's Secret cache spans
    // the cluster when cross-namespace Secrets are on, so it reads them back from there.
    for user in ["baz_owner_user", "baz_reader_user", "baz_writer_user"] {
        logs_in(&ip, &apps.name, user).await?;
    }
    let flags = sql(
        &ip,
        &pw,
        "select string_agg(rolname || ' ' || left(rolsuper::text, 1) || left(rolcreatedb::text, 1) || left(rolcanlogin::text, 1), ',' order by rolname) \
         from pg_roles where rolname in ('zalando', 'foo_user', 'flow_user', 'bar_owner', 'bar_reader')",
    )
    .await?;
    assert_eq!(
        flags, "bar_owner fff,bar_reader fff,flow_user fft,foo_user fft,zalando ttt",
        "role flags (super, createdb, login)"
    );
    let owners = sql(
        &ip,
        &pw,
        "select string_agg(datname || ' ' || pg_get_userbyid(datdba), ',' order by datname) \
         from pg_database where datname in ('foo', 'bar')",
    )
    .await?;
    assert_eq!(owners, "bar bar_owner,foo zalando");

    // The prepared database: schemas, extension, default privileges at work.
    let su_bar = |q: &'static str| {
        let (ip, pw) = (ip.clone(), pw.clone());
        async move { sql_as(&ip, "postgres", &pw, "bar", q).await }
    };
    let schemas = eventually("bar's schemas and extension", || async {
        let s = su_bar(
            "select string_agg(nspname || ' ' || pg_get_userbyid(nspowner), ',' order by nspname) \
             from pg_namespace where nspname in ('data', 'history')",
        )
        .await?;
        let e = su_bar("select extname from pg_extension where extname = 'pgcrypto'").await?;
        if e != "pgcrypto" {
            bail!("extensions: {e:?}, schemas {s:?}");
        }
        Ok(s)
    })
    .await?;
    assert_eq!(schemas, "data bar_data_owner,history bar_owner");
    let owner_pw = user_password(n, "bar_owner_user", CLUSTER).await?;
    sql_as(
        &ip,
        "bar_owner_user",
        &owner_pw,
        "bar",
        "set role bar_owner; create table public.probe(x int); insert into public.probe values (1)",
    )
    .await?;
    let reader_pw = user_password(n, "bar_reader_user", CLUSTER).await?;
    assert_eq!(
        sql_as(
            &ip,
            "bar_reader_user",
            &reader_pw,
            "bar",
            "select x from public.probe"
        )
        .await?,
        "1",
        "the reader role reads what the owner created"
    );
    assert!(
        sql_as(
            &ip,
            "bar_reader_user",
            &reader_pw,
            "bar",
            "insert into public.probe values (2)"
        )
        .await
        .is_err(),
        "the reader role cannot write"
    );
    let writer_pw = user_password(n, "bar_writer_user", CLUSTER).await?;
    sql_as(
        &ip,
        "bar_writer_user",
        &writer_pw,
        "bar",
        "insert into public.probe values (3)",
    )
    .await
    .context("the writer role writes what the owner created")?;

    // A restarted controller with nothing changed writes nothing inside PostgreSQL.
    let before = catalog_versions(&ip, &pw).await?;
    drop(controller);
    let controller = start_controller(n)?;
    tokio::time::sleep(Duration::from_secs(15)).await; // three resyncs of 5 s
    assert_eq!(
        catalog_versions(&ip, &pw).await?,
        before,
        "a sync of an unchanged cluster changed a role or database"
    );

    // A password edited in the Secret is the role's password at the next login.
    merge_patch(
        n,
        "secret",
        &secret_name("foo_user", CLUSTER),
        &serde_json::json!({"stringData": {"password": "edited-by-hand-1"}}),
    )
    .await?;
    eventually("foo_user to log in with the edited password", || async {
        sql_as(&ip, "foo_user", "edited-by-hand-1", "postgres", "select 1").await
    })
    .await?;

    // A removed user stays; a failing statement is reported and the others are applied.
    kubectl_apply(
        n,
        &manifest(
            "    late_user: []\n",
            "        no_such_extension: public\n",
            &baz,
        )
        .replace("    flow_user: [LOGIN, NOCREATEDB]\n", ""),
    )
    .await?;
    logs_in(&ip, n, "late_user").await?;
    assert_eq!(
        sql(
            &ip,
            &pw,
            "select count(*) from pg_roles where rolname = 'flow_user'"
        )
        .await?,
        "1",
        "a user removed from the manifest is never dropped"
    );
    let pg = eventually("the failed statement in the status", || async {
        let pg = json(&["get", "postgresql", CLUSTER, "-n", n]).await?;
        let ready = condition(&pg, "Ready");
        if ready["reason"] != "DatabaseSyncFailed" {
            bail!("Ready is {ready}");
        }
        Ok(ready)
    })
    .await?;
    let message = pg["message"].as_str().unwrap_or_default();
    assert!(message.contains("no_such_extension"), "{message}");
    assert!(
        !message.contains("SCRAM"),
        "no password hash in the status: {message}"
    );
    assert!(
        !events(n, "reason=DatabaseSyncFailed").await?.is_empty(),
        "a DatabaseSyncFailed Event"
    );
    drop(controller);

    // No password reached the controller's log.
    let log = std::fs::read_to_string(
        e2e::paths::local_dir()
            .join("logs")
            .join(format!("controller-{n}.log")),
    )?;
    for secret in [
        &pw,
        &owner_pw,
        &reader_pw,
        &writer_pw,
        &"edited-by-hand-1".to_string(),
    ] {
        assert!(
            !log.contains(secret.as_str()),
            "a password is in the controller's log"
        );
    }
    assert!(
        !log.contains("SCRAM-SHA-256$"),
        "a password hash is in the controller's log"
    );
    Ok(())
}
