//! The replicas' part of the upgrade: each is checked before anything changes (Patroni's API
//! answers, its server is a replica, its run dir holds its configuration) and, once the primary
//! runs the new major, made again from it. Spilo reaches a replica through `COPY ... TO PROGRAM`
//! and rsyncs its data against the primary's hard links; here every member is on this machine,
//! so the primary's exec process does it in the folders the replica reports over SQL.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::decide::{self, MemberView, UpgradeError};
use super::io::{self, Pg, poll};
use super::run::{Member, stop_server, suffixed};

/// The members other than this one, with their configuration found through their own answer
/// (`unix_socket_directories` is the run dir that holds their `patroni.yml`).
pub(super) fn member(
    view: &MemberView,
    me: &Member,
    password: &str,
) -> Result<Member, UpgradeError> {
    let refuse = |reason: String| UpgradeError::Replica {
        member: view.name.clone(),
        reason,
    };
    let address = io::api_address(&view.api_url)
        .ok_or_else(|| refuse(format!("api_url {:?}", view.api_url)))?;
    io::http(&address, "GET", "/patroni", None, Duration::from_secs(2))
        .ok()
        .filter(|(status, _)| *status == 200)
        .ok_or_else(|| refuse("Patroni's REST API does not answer 200".into()))?;
    // The primary's own psql reads these.
    let remote = Pg {
        bin: me.bin_dir.clone(),
        host: view.host.clone(),
        port: view.port,
        user: me.pg.user.clone(),
        password: Some(password.to_string()),
    };
    let answer = remote
        .query(
            "postgres",
            "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.current_setting('unix_socket_directories')",
        )
        .map_err(|e| refuse(e.to_string()))?;
    let (recovery, socket_dir) = answer.split_once('|').unwrap_or((answer.as_str(), ""));
    if recovery != "t" {
        return Err(refuse("PostgreSQL is not running as a replica".into()));
    }
    let member = Member::load(Path::new(socket_dir).join("patroni.yml"))
        .map_err(|e| refuse(e.to_string()))?;
    if member.name != view.name {
        return Err(refuse(format!(
            "its run dir holds the configuration of {}",
            member.name
        )));
    }
    Ok(member)
}

/// Makes a replica again from the upgraded primary (where Spilo rsyncs the replica's data
/// against the primary's hard links): its server stopped, its data moved aside, its Patroni
/// pointed at the new binaries and restarted, then Patroni's own reinitialize from the leader
/// (`pg_basebackup` of the new major); done once it streams with the new system identifier.
pub(super) fn recreate(
    primary: &Member,
    replica: &mut Member,
    new_bin: &Path,
    sysid: &str,
) -> Result<(), UpgradeError> {
    let step = format!("making replica {} again", replica.name);
    stop_server(replica)?;
    let old_data = suffixed(&replica.data_dir, "_old");
    io::remove_dir(&old_data)?;
    io::rename(&replica.data_dir, &old_data)?;
    replica.point_at(new_bin)?;
    io::restart_patroni(&replica.config_path)?;
    poll(Duration::from_secs(90), Duration::from_millis(500), || {
        io::get_json(&replica.api, "/patroni").ok()
    })
    .ok_or_else(|| UpgradeError::step(&step, "Patroni's REST API did not answer within 90 s"))?;
    poll(Duration::from_secs(30), Duration::from_secs(1), || {
        io::http(
            &replica.api,
            "POST",
            "/reinitialize",
            Some(&json!({"from_leader": true})),
            Duration::from_secs(10),
        )
        .ok()
        .filter(|(status, _)| *status == 200)
    })
    .ok_or_else(|| UpgradeError::step(&step, "POST /reinitialize was refused for 30 s"))?;
    poll(Duration::from_secs(120), Duration::from_secs(1), || {
        let status = io::get_json(&replica.api, "/patroni").ok()?;
        let same = status["database_system_identifier"].as_str() == Some(sysid);
        let senders = decide::senders(
            &primary
                .pg
                .query(
                    "postgres",
                    "SELECT application_name, state, 0 FROM pg_catalog.pg_stat_replication",
                )
                .ok()?,
        );
        (same && decide::replica_streams(&replica.name, &senders).is_ok()).then_some(())
    })
    .ok_or_else(|| {
        UpgradeError::step(&step, "it did not stream from the new primary within 120 s")
    })?;
    io::remove_dir(&old_data)
}
