//! A new cluster's data from another cluster, on real Patroni + PostgreSQL: `spec.clone`
//! (a basebackup of the running source through its master Service) and `spec.standby` with
//! `standby_host` (a standby cluster streaming from the source). One source serves both, so the
//! test costs three single-member clusters.

use anyhow::{Result, bail};
use e2e::command::kubectl_with_stdin;
use e2e::patroni::{MAJOR, TIMEOUT, password, setup, sql};
use e2e::secrets::secret_name;
use serde_json::{Value, json};
use std::time::Duration;

async fn get(ns: &str, args: &[&str]) -> Result<Value> {
    let mut all = vec!["get", "-n", ns];
    all.extend(args);
    e2e::patroni::json(&all).await
}

/// Applies a 1-member cluster with `extra` spec fields (JSON) and waits until its status is
/// Running — which the controller reports only once Patroni has a running leader.
async fn running(ns: &str, name: &str, extra: Value) -> Result<String> {
    let mut spec = json!({"teamId": "acid", "numberOfInstances": 1,
        "postgresql": {"version": MAJOR}, "volume": {"size": "1Gi"}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    let pg = json!({"apiVersion": "acid.zalan.do/v1", "kind": "postgresql",
        "metadata": {"name": name, "namespace": ns}, "spec": spec});
    kubectl_with_stdin(["apply", "-f", "-"], &pg.to_string())
        .await?
        .ok()?;
    e2e::eventually::eventually_with(
        &format!("{name} Running with a leader"),
        TIMEOUT,
        Duration::from_millis(500),
        || async {
            let pg = get(ns, &["postgresql", name]).await?;
            if pg["status"]["PostgresClusterStatus"] != "Running" {
                bail!("status {}", pg["status"]);
            }
            let pod = get(ns, &["pod", &format!("{name}-0")]).await?;
            match pod["status"]["podIP"].as_str() {
                Some(ip) => Ok(ip.to_string()),
                None => bail!("no pod IP"),
            }
        },
    )
    .await
}

/// Copies the source's `postgres` and `standby` Secrets to the names the standby cluster uses,
/// as Zalando's standby test does: a standby replicates with the source's credentials.
async fn copy_credentials(ns: &str, source: &str, target: &str) -> Result<()> {
    for user in ["postgres", "standby"] {
        let secret = get(ns, &["secret", &secret_name(user, source)]).await?;
        let copy = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": secret_name(user, target), "namespace": ns},
            "type": secret["type"], "data": secret["data"]});
        kubectl_with_stdin(["apply", "-f", "-"], &copy.to_string())
            .await?
            .ok()?;
    }
    Ok(())
}

#[tokio::test]
async fn a_clone_copies_the_source_and_a_standby_follows_it() -> Result<()> {
    let (ns, _controller) = setup("sources").await?;
    let n = ns.name.as_str();
    let source_ip = running(n, "acid-source", json!({})).await?;
    let pw = password(n, "acid-source").await?;
    let write = |ip: String, value: &'static str| {
        let pw = pw.clone();
        async move {
            sql(
                &ip,
                &pw,
                &format!(
                    "create table if not exists probe(t text); insert into probe values ('{value}')"
                ),
            )
            .await
        }
    };
    e2e::eventually::eventually("a write on the source", || {
        write(source_ip.clone(), "before")
    })
    .await?;

    // The clone: a basebackup of the running source, then a primary of its own.
    let clone_ip = running(
        n,
        "acid-clone",
        json!({"clone": {"cluster": "acid-source"}}),
    )
    .await?;
    let clone_pw = password(n, "acid-clone").await?;
    let rows = e2e::eventually::eventually("the source's row in the clone", || async {
        sql(&clone_ip, &clone_pw, "select string_agg(t, ',') from probe").await
    })
    .await?;
    assert_eq!(rows, "before", "the clone holds the source's data");
    // The clone's superuser is the clone's own Secret's: Spilo resets it after the copy.
    assert_eq!(
        sql(&clone_ip, &clone_pw, "select pg_is_in_recovery()").await?,
        "f",
        "a clone is an independent primary"
    );
    sql(
        &clone_ip,
        &clone_pw,
        "insert into probe values ('clone only')",
    )
    .await?;

    // The standby: streams from the source's master Service with the source's credentials.
    copy_credentials(n, "acid-source", "acid-standby").await?;
    let standby_ip = running(
        n,
        "acid-standby",
        json!({"standby": {"standby_host": "acid-source"}}),
    )
    .await?;
    e2e::eventually::eventually("the source's later row on the standby", || async {
        write(source_ip.clone(), "after").await.ok();
        let rows = sql(
            &standby_ip,
            &pw,
            "select count(*) from probe where t = 'after'",
        )
        .await?;
        if rows == "0" {
            bail!("the standby has no 'after' row yet");
        }
        Ok(())
    })
    .await?;
    assert_eq!(
        sql(&standby_ip, &pw, "select pg_is_in_recovery()").await?,
        "t",
        "a standby cluster's leader replays, it does not accept writes"
    );
    let refused = sql(&standby_ip, &pw, "insert into probe values ('x')").await;
    assert!(
        refused.is_err_and(|e| e.to_string().contains("read-only")),
        "a write on the standby is refused"
    );
    // The clone's own row never reached the source.
    assert_eq!(
        sql(
            &source_ip,
            &pw,
            "select count(*) from probe where t = 'clone only'"
        )
        .await?,
        "0"
    );
    Ok(())
}
