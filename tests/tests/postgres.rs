//! A real PostgreSQL, started by the helper on a pod's IP, accepts the superuser password.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use e2e::{PgInstance, TestNamespace, apply_yaml, cluster, eventually_with};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

#[tokio::test]
async fn postgres_on_a_pod_ip_accepts_the_superuser_password() -> Result<()> {
    let c = cluster().await?;
    let ns = TestNamespace::new(&c, "pg").await?;
    apply_yaml(
        &c.client,
        Some(&ns.name),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: db-0}\nspec:\n  containers:\n  - {name: postgres, image: example.invalid/spilo:1}\n",
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &ns.name);
    let ip: Ipv4Addr = eventually_with(
        "pod db-0 to get an IP",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            match pods.get("db-0").await?.status.and_then(|s| s.pod_ip) {
                Some(ip) => Ok(ip.parse::<Ipv4Addr>()?),
                None => bail!("no podIP yet"),
            }
        },
    )
    .await?;
    ensure!(ip.is_loopback(), "pod IP {ip} is outside 127.0.0.0/8");
    let pods_range = e2e::paths::network().pod_cidr;
    ensure!(
        pods_range.contains(ip),
        "pod IP {ip} is outside this checkout's pod range {pods_range}"
    );

    let pg = PgInstance::start(ip, 0, "s3cret-superuser").await?;
    let (client, conn) =
        tokio_postgres::connect(&pg.connection_string("postgres"), tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to {ip}:{}", pg.port))?;
    let conn = tokio::spawn(conn);
    let row = client
        .query_one("select current_user::text, inet_server_addr()::text", &[])
        .await?;
    let user: String = row.get(0);
    let addr: String = row.get(1);
    ensure!(user == "postgres", "connected as {user}");
    ensure!(
        addr.starts_with(&ip.to_string()),
        "server address {addr}, expected {ip}"
    );
    drop(client);
    let _ = conn.await;

    // A wrong password is refused.
    let bad = format!(
        "host={ip} port={} user=postgres password=wrong dbname=postgres connect_timeout=10",
        pg.port
    );
    let err = match tokio_postgres::connect(&bad, tokio_postgres::NoTls).await {
        Ok(_) => bail!("a wrong password was accepted"),
        Err(e) => e,
    };
    let text = format!("{err:?}");
    ensure!(
        text.contains("password authentication failed"),
        "unexpected error: {text}"
    );
    Ok(())
}
