//! The upgrade's steps in Spilo's order, run in the primary's container as user postgres: the
//! checks, a twin of the old cluster made by the new major's initdb, `pg_upgrade --check` while
//! the old server runs, Patroni paused, the old server stopped, `pg_upgrade --link`, the data
//! directories switched (`data` → `data_old`, `data_new` → `data`), Patroni pointed at the new
//! binaries and restarted, the DCS's `initialize` key set to the new system identifier, the
//! primary started by Patroni, extensions updated and statistics rebuilt, each replica made
//! again from the new primary, Patroni resumed, the old data removed.
//!
//! Before the data directories are switched, a failure leaves the old cluster as it was: the old
//! data back in place (link mode renames the old `pg_control` once it starts linking; the name
//! is restored, as pg_upgrade's documentation says for a new cluster never started), the
//! primary started again by Patroni, Patroni resumed. After the switch there is no way back (as
//! in Spilo): a failure is reported and Patroni resumed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use super::decide::{self, InitdbSettings, UpgradeError};
use super::io::{self, Pg, log, poll};
use super::replicas;
use crate::majors;

/// A member's Patroni configuration as the pod runner wrote it (`<run dir>/patroni.yml`).
pub(super) struct Member {
    pub(super) name: String,
    pub(super) config_path: PathBuf,
    pub(super) config: Value,
    pub(super) data_dir: PathBuf,
    pub(super) bin_dir: PathBuf,
    /// `ip:port` of its REST API.
    pub(super) api: String,
    /// Its own server through its socket folder (the run dir).
    pub(super) pg: Pg,
}

fn text<'a>(config: &'a Value, pointer: &str) -> Result<&'a str, UpgradeError> {
    config
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| UpgradeError::step("patroni.yml", format!("{pointer} is not set")))
}

impl Member {
    pub(super) fn load(config_path: PathBuf) -> Result<Member, UpgradeError> {
        let yaml = std::fs::read_to_string(&config_path)
            .map_err(|e| UpgradeError::step(format!("reading {}", config_path.display()), e))?;
        let config: Value = serde_yaml::from_str(&yaml)
            .map_err(|e| UpgradeError::step(format!("parsing {}", config_path.display()), e))?;
        let listen = text(&config, "/postgresql/listen")?;
        let port = listen
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(5432);
        let pg = Pg {
            bin: text(&config, "/postgresql/bin_dir")?.into(),
            host: text(&config, "/postgresql/parameters/unix_socket_directories")?.into(),
            port,
            user: text(&config, "/postgresql/authentication/superuser/username")?.into(),
            password: None,
        };
        Ok(Member {
            name: text(&config, "/name")?.into(),
            data_dir: text(&config, "/postgresql/data_dir")?.into(),
            bin_dir: pg.bin.clone(),
            api: text(&config, "/restapi/connect_address")?.into(),
            config_path,
            config,
            pg,
        })
    }

    /// Writes the configuration with `bin_dir` pointing at `bin`.
    pub(super) fn point_at(&mut self, bin: &Path) -> Result<(), UpgradeError> {
        decide::set_bin_dir(&mut self.config, &bin.display().to_string())?;
        let yaml = serde_yaml::to_string(&self.config)
            .map_err(|e| UpgradeError::step("patroni.yml", e))?;
        io::write_private(&self.config_path, &yaml)
    }
}

/// `path` with `suffix` appended to its last component (`data` → `data_new`).
pub(super) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Runs the upgrade with the script's arguments; the message of its last line on success.
pub fn upgrade(args: &[String]) -> Result<String, UpgradeError> {
    let expected = decide::parse_args(args)?;
    let here = std::env::current_dir().map_err(|e| UpgradeError::step("working directory", e))?;
    let me = Member::load(here.join("patroni.yml"))?;
    let running = majors::data_major(&me.data_dir).ok_or_else(|| {
        UpgradeError::step(
            "the data directory",
            format!("{} has no PG_VERSION", me.data_dir.display()),
        )
    })?;
    let env: crate::spilo::Env = std::env::vars().collect();
    let wanted = crate::spilo::major(&env).map_err(|e| UpgradeError::step("PGVERSION", e))?;
    if !decide::upgrade_required(&running, &wanted)? {
        return Ok(format!(
            "the data is of {running} and PGVERSION asks for {wanted}: no upgrade is required"
        ));
    }
    let new_bin = majors::sibling_bin_dir(&me.bin_dir, &wanted)
        .map_err(|e| UpgradeError::step("PGVERSION", e))?;
    log(
        "INFO",
        &format!(
            "upgrading {} from PostgreSQL {running} to {wanted}",
            me.name
        ),
    );

    if me
        .pg
        .query("postgres", "SELECT pg_catalog.pg_is_in_recovery()")
        .ok()
        .as_deref()
        != Some("f")
    {
        return Err(UpgradeError::NotPrimary(me.name.clone()));
    }
    let scope = text(&me.config, "/scope")?.to_string();
    let namespace = text(&me.config, "/kubernetes/namespace")?.to_string();
    let view = decide::cluster_view(&io::get_json(&me.api, "/cluster")?)?;
    let initialized = io::initialize_key(&namespace, &scope)?.is_some();
    let replicas = decide::sanity(&view, &me.name, expected, initialized)?;
    let senders = decide::senders(&me.pg.query(
        "postgres",
        "SELECT application_name, state, pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), \
         COALESCE(replay_lsn, '0/0'))::bigint FROM pg_catalog.pg_stat_replication",
    )?);
    let password = text(&me.config, "/postgresql/authentication/superuser/password")?.to_string();
    let mut others = Vec::new();
    for replica in &replicas {
        decide::replica_streams(&replica.name, &senders)?;
        others.push(replicas::member(replica, &me, &password)?);
    }
    log(
        "INFO",
        &format!(
            "cluster {scope} is ready: {} members, the others stream",
            view.members.len()
        ),
    );

    let settings = initdb_settings(&me.pg, decide::major_number("PG_VERSION", &running)?)?;
    let new_data = suffixed(&me.data_dir, "_new");
    let work = suffixed(&me.data_dir, "_upgrade");
    io::remove_dir(&new_data)?;
    io::remove_dir(&work)?;
    std::fs::create_dir_all(&work)
        .map_err(|e| UpgradeError::step(format!("creating {}", work.display()), e))?;
    let new_major = decide::major_number("PGVERSION", &wanted)?;
    let initdb_args = decide::initdb_args(&settings, new_major);
    log(
        "INFO",
        &format!("initdb of {wanted} with {}", initdb_args.join(" ")),
    );
    io::run(
        "initdb",
        Command::new(new_bin.join("initdb"))
            .arg("-D")
            .arg(&new_data)
            .args(&initdb_args),
    )?;
    if let Err(output) = pg_upgrade(&me, &new_bin, &new_data, &work, true) {
        keep_logs(&new_data, &work);
        io::remove_dir(&new_data)?;
        return Err(UpgradeError::Check {
            from: running,
            to: wanted,
            reason: decide::pg_upgrade_reason(&output),
            dir: work.display().to_string(),
        });
    }

    if let Err(e) = set_pause(&me, true) {
        // The pause may have reached the DCS without every member confirming it in time.
        let _ = set_pause(&me, false);
        io::remove_dir(&new_data)?;
        return Err(e);
    }
    let outcome = paused(me, others, &running, &wanted, &new_bin, &scope, &namespace);
    let resumed = set_pause(&Member::load(here.join("patroni.yml"))?, false);
    let message = outcome?;
    resumed?;
    io::remove_dir(&work)?;
    Ok(message)
}

/// Encoding, locales, provider and checksums of the running old cluster.
fn initdb_settings(pg: &Pg, old_major: u32) -> Result<InitdbSettings, UpgradeError> {
    let provider = match old_major {
        ..=14 => "''",
        15 | 16 => "datlocprovider::text || '|' || COALESCE(daticulocale, '')",
        _ => "datlocprovider::text || '|' || COALESCE(datlocale, '')",
    };
    let row = pg.query(
        "postgres",
        &format!(
            "SELECT pg_catalog.pg_encoding_to_char(encoding), datcollate, datctype, \
             pg_catalog.current_setting('data_checksums'), {provider} \
             FROM pg_catalog.pg_database WHERE datname = 'template1'"
        ),
    )?;
    let f: Vec<&str> = row.split('|').collect();
    let field = |i: usize| f.get(i).map(|s| s.to_string()).unwrap_or_default();
    Ok(InitdbSettings {
        encoding: field(0),
        collate: field(1),
        ctype: field(2),
        checksums: field(3) == "on",
        provider: (f.len() >= 6).then(|| (field(4), field(5))),
    })
}

/// `pg_upgrade --link` (with `--check`: only its checks, the old server running); its output,
/// also printed, as `Err` when it fails.
fn pg_upgrade(
    me: &Member,
    new_bin: &Path,
    new_data: &Path,
    work: &Path,
    check: bool,
) -> Result<(), String> {
    let mut command = Command::new(new_bin.join("pg_upgrade"));
    command
        .current_dir(work)
        .arg("--link")
        .arg("-b")
        .arg(&me.bin_dir)
        .arg("-B")
        .arg(new_bin)
        .arg("-d")
        .arg(&me.data_dir)
        .arg("-D")
        .arg(new_data)
        .args(["-U", &me.pg.user])
        .arg(format!("--socketdir={}", me.pg.host));
    if check {
        command.arg("--check");
    }
    log(
        "INFO",
        &format!("pg_upgrade{}", if check { " --check" } else { "" }),
    );
    let out = command.output().map_err(|e| format!("pg_upgrade: {e}"))?;
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    for line in output.lines() {
        println!("  {line}");
    }
    if out.status.success() {
        Ok(())
    } else {
        Err(output)
    }
}

/// Moves pg_upgrade's log folder out of the new data directory before it is removed.
fn keep_logs(new_data: &Path, work: &Path) {
    let logs = new_data.join("pg_upgrade_output.d");
    if logs.exists() {
        let _ = std::fs::rename(&logs, work.join("pg_upgrade_output.d"));
    }
}

/// Pauses or resumes Patroni (`PATCH /config`) and waits until every member says so.
fn set_pause(me: &Member, pause: bool) -> Result<(), UpgradeError> {
    let step = if pause {
        "pausing Patroni"
    } else {
        "resuming Patroni"
    };
    let (status, body) = io::http(
        &me.api,
        "PATCH",
        "/config",
        Some(&json!({"pause": pause})),
        Duration::from_secs(5),
    )
    .map_err(|e| UpgradeError::step(step, e))?;
    if status != 200 {
        return Err(UpgradeError::step(
            step,
            format!("PATCH /config answered {status}: {}", body.trim()),
        ));
    }
    let ttl = io::get_json(&me.api, "/config")
        .ok()
        .and_then(|c| c["ttl"].as_u64())
        .unwrap_or(30);
    let members = decide::cluster_view(&io::get_json(&me.api, "/cluster")?)?.members;
    let all_agree = || {
        members.iter().all(|m| {
            io::api_address(&m.api_url)
                .and_then(|a| io::get_json(&a, "/patroni").ok())
                .is_some_and(|s| s["pause"].as_bool().unwrap_or(false) == pause)
        })
    };
    poll(
        Duration::from_secs(ttl + 1),
        Duration::from_millis(500),
        || all_agree().then_some(()),
    )
    .ok_or_else(|| {
        UpgradeError::step(
            step,
            format!("not every member saw it within {} s", ttl + 1),
        )
    })?;
    log(
        "INFO",
        if pause {
            "Patroni paused"
        } else {
            "Patroni resumed"
        },
    );
    Ok(())
}

/// Stops a member's server (fast) and makes sure it shut down cleanly.
pub(super) fn stop_server(member: &Member) -> Result<(), UpgradeError> {
    let step = format!("stopping PostgreSQL of {}", member.name);
    io::stop_postmaster(&member.data_dir, Duration::from_secs(600))?;
    let control = io::run(
        &step,
        Command::new(member.bin_dir.join("pg_controldata"))
            .arg(&member.data_dir)
            .env("LC_ALL", "C"),
    )?;
    match decide::controldata_field(&control, "Database cluster state").as_deref() {
        Some("shut down") | Some("shut down in recovery") => Ok(()),
        other => Err(UpgradeError::step(
            step,
            format!("the cluster state is {other:?}, not shut down"),
        )),
    }
}

/// Asks Patroni to start (restart) the member's server, as Spilo does after its upgrade, and
/// waits until it is the primary holding the leader lock.
fn start_primary(me: &Member, bin: &Path) -> Result<(), UpgradeError> {
    let step = format!("starting PostgreSQL on {} through Patroni", me.name);
    poll(Duration::from_secs(90), Duration::from_millis(500), || {
        io::get_json(&me.api, "/patroni").ok()
    })
    .ok_or_else(|| UpgradeError::step(&step, "Patroni's REST API did not answer within 90 s"))?;
    poll(Duration::from_secs(30), Duration::from_secs(1), || {
        io::http(
            &me.api,
            "POST",
            "/restart",
            Some(&json!({})),
            Duration::from_secs(120),
        )
        .ok()
        .filter(|(status, _)| *status < 300)
    })
    .ok_or_else(|| UpgradeError::step(&step, "POST /restart did not succeed within 30 s"))?;
    let pg = Pg {
        bin: bin.to_path_buf(),
        ..me.pg.clone()
    };
    poll(Duration::from_secs(90), Duration::from_secs(1), || {
        let primary = pg
            .query("postgres", "SELECT pg_catalog.pg_is_in_recovery()")
            .ok()?
            == "f";
        let view = decide::cluster_view(&io::get_json(&me.api, "/cluster").ok()?).ok()?;
        let leader = view
            .members
            .iter()
            .any(|m| m.name == me.name && m.role == "leader");
        (primary && leader).then_some(())
    })
    .ok_or_else(|| {
        UpgradeError::step(
            &step,
            "no running primary holding the leader lock within 90 s",
        )
    })
}

/// Everything done while Patroni is paused; the message of success.
fn paused(
    mut me: Member,
    others: Vec<Member>,
    running: &str,
    wanted: &str,
    new_bin: &Path,
    scope: &str,
    namespace: &str,
) -> Result<String, UpgradeError> {
    let old_bin = me.bin_dir.clone();
    let new_data = suffixed(&me.data_dir, "_new");
    let old_data = suffixed(&me.data_dir, "_old");
    let work = suffixed(&me.data_dir, "_upgrade");
    stop_server(&me)?;
    if let Err(output) = pg_upgrade(&me, new_bin, &new_data, &work, false) {
        let control = me.data_dir.join("global/pg_control");
        let disabled = me.data_dir.join("global/pg_control.old");
        if !control.exists() && disabled.exists() {
            io::rename(&disabled, &control)?;
        }
        keep_logs(&new_data, &work);
        io::remove_dir(&new_data)?;
        start_primary(&me, &old_bin)?;
        return Err(UpgradeError::Upgrade {
            from: running.into(),
            to: wanted.into(),
            reason: decide::pg_upgrade_reason(&output),
            dir: work.display().to_string(),
        });
    }

    io::remove_dir(&old_data)?;
    io::rename(&me.data_dir, &old_data)?;
    io::rename(&new_data, &me.data_dir)?;
    let _ = std::fs::copy(
        old_data.join("patroni.dynamic.json"),
        me.data_dir.join("patroni.dynamic.json"),
    );
    let control = io::run(
        "pg_controldata of the new data",
        Command::new(new_bin.join("pg_controldata"))
            .arg(&me.data_dir)
            .env("LC_ALL", "C"),
    )?;
    let sysid =
        decide::controldata_field(&control, "Database system identifier").ok_or_else(|| {
            UpgradeError::step("pg_controldata of the new data", "no system identifier")
        })?;
    me.point_at(new_bin)?;
    io::set_initialize_key(namespace, scope, &sysid)?;
    log(
        "INFO",
        &format!("the data is of {wanted} now (system identifier {sysid}); restarting Patroni"),
    );
    io::restart_patroni(&me.config_path)?;
    me.bin_dir = new_bin.to_path_buf();
    me.pg.bin = new_bin.to_path_buf();
    start_primary(&me, new_bin)?;
    log(
        "INFO",
        &format!("{} runs PostgreSQL {wanted} as the primary", me.name),
    );

    let mut problems = Vec::new();
    if let Err(e) = update_extensions(&me.pg) {
        problems.push(e.to_string());
    }
    let analyze = Command::new(new_bin.join("vacuumdb"))
        .args([
            "--all",
            "--analyze-in-stages",
            "-h",
            &me.pg.host,
            "-p",
            &me.pg.port.to_string(),
            "-U",
            &me.pg.user,
        ])
        .output();
    if !analyze.as_ref().is_ok_and(|o| o.status.success()) {
        problems.push("vacuumdb --analyze-in-stages failed".into());
    }
    for mut replica in others {
        match replicas::recreate(&me, &mut replica, new_bin, &sysid) {
            Ok(()) => log(
                "INFO",
                &format!(
                    "{} runs {wanted} and streams from {}",
                    replica.name, me.name
                ),
            ),
            Err(e) => problems.push(e.to_string()),
        }
    }
    io::remove_dir(&old_data)?;
    if problems.is_empty() {
        Ok(format!(
            "upgrade of cluster {scope} from {running} to {wanted} complete"
        ))
    } else {
        Err(UpgradeError::step(
            format!("upgrade of {scope} to {wanted} finished with problems"),
            problems.join("; "),
        ))
    }
}

/// `ALTER EXTENSION ... UPDATE` of every extension in every database (the new major may ship
/// newer versions of them).
fn update_extensions(pg: &Pg) -> Result<(), UpgradeError> {
    let databases = pg.query(
        "postgres",
        "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn",
    )?;
    for database in databases.lines().filter(|d| !d.is_empty()) {
        let extensions = pg.query(
            database,
            "SELECT quote_ident(extname) FROM pg_catalog.pg_extension",
        )?;
        for extension in extensions.lines().filter(|e| !e.is_empty()) {
            pg.query(database, &format!("ALTER EXTENSION {extension} UPDATE"))?;
        }
    }
    Ok(())
}
