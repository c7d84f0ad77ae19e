//! Apply → every role able to log in: every 500 ms the masters' pod IPs and the clusters'
//! Secrets are listed, and each role that has not logged in yet tries once with its Secret's
//! user name and password (at most [`PARALLEL`] attempts at once). A cluster is done when all
//! its roles have logged in once. Only loopback addresses are dialled.

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

use crate::manifest::secret_name;

/// Login attempts in flight at once, over all clusters.
const PARALLEL: usize = 8;

/// Connects as `user` to `database` on `ip`:5432 (a loopback address only) within 3 s.
pub async fn connect(ip: &str, user: &str, password: &str, database: &str) -> Result<Client> {
    let timeout = Duration::from_secs(3);
    e2e::writer::connect_as(
        ip,
        user,
        password,
        database,
        Some("bench-database"),
        timeout,
    )
    .await
}

/// One login and `select 1`.
async fn logs_in(ip: &str, user: &str, password: &str) -> bool {
    match connect(ip, user, password, "postgres").await {
        Ok(c) => c.simple_query("select 1").await.is_ok(),
        Err(_) => false,
    }
}

/// The master pod's IP of every cluster that has one.
pub async fn masters(pods: &Api<Pod>) -> Result<BTreeMap<String, String>> {
    let list = pods
        .list(&ListParams::default().labels("spilo-role=master"))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|p| {
            let cluster = p.metadata.labels.as_ref()?.get("cluster-name")?.clone();
            let ip = p.status?.pod_ip.filter(|ip| !ip.is_empty())?;
            Some((cluster, ip))
        })
        .collect())
}

/// (user name, password) of every credentials Secret by its name.
pub async fn credentials(secrets: &Api<Secret>) -> Result<BTreeMap<String, (String, String)>> {
    let list = secrets.list(&ListParams::default()).await?;
    let text = |s: &Secret, key: &str| {
        s.data
            .as_ref()?
            .get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    Ok(list
        .items
        .iter()
        .filter_map(|s| {
            let name = s.metadata.name.clone()?;
            Some((name, (text(s, "username")?, text(s, "password")?)))
        })
        .collect())
}

/// Polls until every role of every cluster has logged in or `bound` passed; the time from each
/// cluster's creation to its last role's first login (`None`: not within the bound).
pub async fn until_all_log_in(
    client: &kube::Client,
    ns: &str,
    created: &BTreeMap<String, Instant>,
    roles: &[String],
    bound: Duration,
) -> Result<BTreeMap<String, Option<Duration>>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut pending: BTreeMap<String, BTreeSet<String>> = created
        .keys()
        .map(|c| (c.clone(), roles.iter().cloned().collect()))
        .collect();
    let mut done: BTreeMap<String, Option<Duration>> = BTreeMap::new();
    let start = Instant::now();
    while !pending.is_empty() && start.elapsed() < bound {
        let round = Instant::now();
        let (ips, creds) = match tokio::try_join!(masters(&pods), credentials(&secrets)) {
            Ok(both) => both,
            Err(e) => {
                eprintln!("  listing pods and Secrets: {e:#}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut attempts = Vec::new();
        for (cluster, left) in &pending {
            let Some(ip) = ips.get(cluster) else { continue };
            for role in left {
                if let Some((user, pw)) = creds.get(&secret_name(role, cluster)) {
                    attempts.push((
                        cluster.clone(),
                        role.clone(),
                        ip.clone(),
                        user.clone(),
                        pw.clone(),
                    ));
                }
            }
        }
        let results: Vec<(String, String, bool)> = futures::stream::iter(attempts)
            .map(|(cluster, role, ip, user, pw)| async move {
                let ok = logs_in(&ip, &user, &pw).await;
                (cluster, role, ok)
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let now = Instant::now();
        for (cluster, role, ok) in results {
            if !ok {
                continue;
            }
            let left = pending.get_mut(&cluster).expect("pending cluster");
            left.remove(&role);
            if left.is_empty() {
                pending.remove(&cluster);
                done.insert(cluster.clone(), Some(now - created[&cluster]));
            }
        }
        let pause = Duration::from_millis(500).saturating_sub(round.elapsed());
        tokio::time::sleep(pause).await;
    }
    for (cluster, left) in pending {
        eprintln!(
            "  {cluster}: {} not logged in after {bound:?}: {}",
            left.len(),
            left.into_iter().collect::<Vec<_>>().join(", ")
        );
        done.insert(cluster, None);
    }
    Ok(done)
}
