//! Roles from beyond the manifest on real Patroni + PostgreSQL, with one cluster: infrastructure
//! roles from a keyed Secret (ConfigMap string form), from the legacy numbered Secret and from a
//! ConfigMap of descriptions log in with their passwords and get their memberships and flags; an
//! infrastructure password changed in its Secret reaches the role and the cluster Secret; a
//! stand-in for the Teams API on 127.0.0.1 plus a PostgresTeam object yield their members with
//! Zalando's memberships; a member removed from the PostgresTeam is renamed with the deletion
//! suffix and loses LOGIN, and is renamed back when it returns.

use anyhow::{Result, bail};
use e2e::eventually::eventually_with;
use e2e::patch::kubectl_apply;
use e2e::patroni::{TIMEOUT, setup, sql, sql_as, writable_master};
use e2e::secrets::user_password;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const CLUSTER: &str = "acid-roles";
const TOKEN: &str = "e2e-teams-token";

/// The Teams API stand-in: `GET /api/teams/<team>` answers the team's members, 404 for an unknown
/// team; it records the Authorization headers it saw.
struct TeamsApi {
    port: u16,
    seen_tokens: Arc<Mutex<Vec<String>>>,
}

async fn teams_api(teams: BTreeMap<&'static str, Vec<&'static str>>) -> Result<TeamsApi> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let seen_tokens = Arc::new(Mutex::new(Vec::new()));
    let seen = seen_tokens.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let teams = teams.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).to_string();
                let path = text.split_whitespace().nth(1).unwrap_or_default();
                if let Some(auth) = text.lines().find_map(|l| {
                    l.strip_prefix("authorization: ")
                        .or(l.strip_prefix("Authorization: "))
                }) {
                    seen.lock().unwrap().push(auth.trim().to_string());
                }
                let team = path.strip_prefix("/api/teams/").unwrap_or_default();
                let (status, body) = match teams.get(team) {
                    Some(members) => ("200 OK", serde_json::json!({"id": team, "member": members})),
                    None => (
                        "404 Not Found",
                        serde_json::json!({"error": "no such team"}),
                    ),
                };
                let body = body.to_string();
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(TeamsApi { port, seen_tokens })
}

fn secret(name: &str, data: &[(&str, &str)]) -> String {
    let data: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
        "stringData": data})
    .to_string()
}

fn postgres_team(members: &[&str]) -> String {
    serde_json::json!({"apiVersion": "acid.zalan.do/v1", "kind": "PostgresTeam",
        "metadata": {"name": "custom-team-membership"},
        "spec": {"additionalTeams": {"acid": ["virtual-team"]},
                 "additionalMembers": {"virtual-team": members}}})
    .to_string()
}

async fn logs_in(ip: &str, user: &str, password: &str) -> Result<()> {
    eventually_with(
        &format!("{user} to log in with its infrastructure password"),
        TIMEOUT,
        Duration::from_millis(500),
        || async {
            let me = sql_as(ip, user, password, "postgres", "select current_user").await?;
            if me != user {
                bail!("logged in as {me}");
            }
            Ok(())
        },
    )
    .await
}

/// `rolname login superuser createdb password-set [groups]` of the named roles, by name.
async fn roles(ip: &str, pw: &str, names: &[&str]) -> Result<Vec<String>> {
    let list = names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(",");
    let out = sql(
        ip,
        pw,
        &format!(
            "select a.rolname || ' ' || left(a.rolcanlogin::text, 1) || left(a.rolsuper::text, 1) \
             || left(a.rolcreatedb::text, 1) || ' ' || (a.rolpassword is not null)::text || ' [' \
             || coalesce((select string_agg(g.rolname, ',' order by g.rolname) \
                 from pg_auth_members m join pg_roles g on g.oid = m.roleid \
                 where m.member = a.oid), '') || ']' \
             from pg_authid a where a.rolname in ({list}) order by a.rolname"
        ),
    )
    .await?;
    Ok(out.lines().map(str::to_string).collect())
}

#[tokio::test]
async fn infrastructure_and_team_roles_exist_inside_postgresql() -> Result<()> {
    let api = teams_api(BTreeMap::from([
        ("acid", vec!["alice"]),
        ("virtual-team", vec!["bert"]),
    ]))
    .await?;
    let (ns, _controller) = setup("roles").await?;
    let n = ns.name.as_str();

    kubectl_apply(
        n,
        &secret(
            "infra-new",
            &[
                ("user", "robot_keyed"),
                ("password", "keyed-1"),
                ("memberof", "robot_zmon"),
            ],
        ),
    )
    .await?;
    kubectl_apply(
        n,
        &secret(
            "infra-legacy",
            &[
                ("user1", "robot_legacy"),
                ("password1", "legacy-1"),
                ("inrole1", "robot_zmon"),
                ("robot_described", "described-1"),
            ],
        ),
    )
    .await?;
    let descriptions = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "infra-legacy"},
        "data": {"robot_described": "user_flags: [createdb]\ninrole: [robot_zmon, admin]\n"}});
    kubectl_apply(n, &descriptions.to_string()).await?;
    kubectl_apply(
        n,
        &secret(
            "teams-token",
            &[
                ("read-only-token-type", "Bearer"),
                ("read-only-token-secret", TOKEN),
            ],
        ),
    )
    .await?;
    kubectl_apply(n, &postgres_team(&["tia", "flynch"])).await?;
    let config = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "postgres-operator"},
        "data": {"enable_crd_registration": "false", "resync_period": "5s", "repair_period": "5s",
            "infrastructure_roles_secrets": format!("secretname:{n}/infra-new,userkey:user,passwordkey:password,rolekey:memberof"),
            "infrastructure_roles_secret_name": "infra-legacy",
            "enable_teams_api": "true",
            "teams_api_url": format!("http://127.0.0.1:{}/api/", api.port),
            "oauth_token_secret_name": "teams-token",
            "enable_postgres_team_crd": "true",
            "enable_team_member_deprecation": "true",
            "role_deletion_suffix": "_gone"}});
    kubectl_apply(n, &config.to_string()).await?;
    let manifest = e2e::patroni::manifest(CLUSTER, 1);
    kubectl_apply(n, &manifest).await?;
    let (_, ip, pw) = writable_master(n, CLUSTER).await?;

    // Infrastructure roles of every source log in with the passwords of their definitions.
    logs_in(&ip, "robot_keyed", "keyed-1").await?;
    logs_in(&ip, "robot_legacy", "legacy-1").await?;
    logs_in(&ip, "robot_described", "described-1").await?;
    // Team members: alice from the Teams API (the owning team), bert from the API for the
    // additional team, tia and flynch from the PostgresTeam: LOGIN, no password, members of the
    // PAM role and the admin role.
    let team = ["alice", "bert", "flynch", "tia"];
    eventually_with(
        "the team members to exist",
        TIMEOUT,
        Duration::from_millis(500),
        || async {
            let found = roles(&ip, &pw, &team).await?;
            if found.len() < team.len() {
                bail!("only {found:?}");
            }
            Ok(())
        },
    )
    .await?;
    let infra = ["robot_described", "robot_keyed", "robot_legacy"];
    assert_eq!(
        roles(&ip, &pw, &infra).await?,
        [
            "robot_described tft true [admin,robot_zmon]",
            "robot_keyed tff true [robot_zmon]",
            "robot_legacy tff true [robot_zmon]",
        ],
        "infrastructure roles: login, superuser, createdb, password set, groups"
    );
    assert_eq!(
        roles(&ip, &pw, &team).await?,
        [
            "alice tff false [admin,zalandos]",
            "bert tff false [admin,zalandos]",
            "flynch tff false [admin,zalandos]",
            "tia tff false [admin,zalandos]",
        ],
        "team members: login, superuser, createdb, password set, groups"
    );
    assert_eq!(
        sql(&ip, &pw, "select array_to_string(setconfig, ',') from pg_db_role_setting s join pg_roles r on r.oid = s.setrole where r.rolname = 'alice'").await?,
        "log_statement=all"
    );
    let tokens = api.seen_tokens.lock().unwrap().clone();
    assert!(
        !tokens.is_empty() && tokens.iter().all(|t| *t == format!("Bearer {TOKEN}")),
        "{tokens:?}"
    );
    // The infrastructure password is copied into the cluster's Secret of the role.
    assert_eq!(user_password(n, "robot_keyed", CLUSTER).await?, "keyed-1");

    // A password changed in the infrastructure Secret reaches the role and the cluster Secret.
    kubectl_apply(
        n,
        &secret(
            "infra-new",
            &[
                ("user", "robot_keyed"),
                ("password", "keyed-2"),
                ("memberof", "robot_zmon"),
            ],
        ),
    )
    .await?;
    logs_in(&ip, "robot_keyed", "keyed-2").await?;
    eventually_with(
        "the cluster Secret to follow",
        TIMEOUT,
        Duration::from_millis(500),
        || async {
            match user_password(n, "robot_keyed", CLUSTER).await?.as_str() {
                "keyed-2" => Ok(()),
                _ => bail!("still the old password"),
            }
        },
    )
    .await?;

    // A member removed from the PostgresTeam loses LOGIN and is renamed; nothing is dropped.
    kubectl_apply(n, &postgres_team(&["tia"])).await?;
    eventually_with(
        "flynch to be deprecated",
        TIMEOUT,
        Duration::from_millis(500),
        || async {
            let found = roles(&ip, &pw, &["flynch", "flynch_gone"]).await?;
            if found != ["flynch_gone fff false [admin,zalandos]"] {
                bail!("{found:?}");
            }
            Ok(())
        },
    )
    .await?;
    // Back in the team: renamed back, LOGIN again.
    kubectl_apply(n, &postgres_team(&["tia", "flynch"])).await?;
    eventually_with(
        "flynch to return",
        TIMEOUT,
        Duration::from_millis(500),
        || async {
            let found = roles(&ip, &pw, &["flynch", "flynch_gone"]).await?;
            if found != ["flynch tff false [admin,zalandos]"] {
                bail!("{found:?}");
            }
            Ok(())
        },
    )
    .await?;
    Ok(())
}
