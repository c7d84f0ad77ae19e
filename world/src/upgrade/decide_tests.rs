use super::*;
use serde_json::json;

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn view(members: &[(&str, &str)], paused: bool) -> ClusterView {
    let members: Vec<Value> = members
        .iter()
        .enumerate()
        .map(|(i, (name, role))| {
            json!({"name": name, "role": role, "state": "running", "host": format!("127.0.0.{}", i + 1),
                   "port": 5432, "api_url": format!("http://127.0.0.{}:8008/patroni", i + 1)})
        })
        .collect();
    let mut cluster = json!({"members": members, "scope": "acid-a"});
    if paused {
        cluster["pause"] = json!(true);
    }
    cluster_view(&cluster).unwrap()
}

#[test]
fn the_one_argument_is_the_member_count() {
    assert_eq!(parse_args(&args(&["2"])), Ok(2));
    assert_eq!(
        parse_args(&args(&["two"])),
        Err(UpgradeError::NotACount("two".into()))
    );
    let usage = parse_args(&args(&[])).unwrap_err();
    assert_eq!(usage.exit_code(), 2);
    assert_eq!(
        parse_args(&args(&["15", "127.0.0.1", "77"]))
            .unwrap_err()
            .exit_code(),
        2
    );
    assert_eq!(UpgradeError::NotACount("x".into()).exit_code(), 1);
}

#[test]
fn only_a_newer_major_upgrades() {
    assert_eq!(upgrade_required("14", "15"), Ok(true));
    assert_eq!(upgrade_required("14", "18\n"), Ok(true));
    assert_eq!(upgrade_required("15", "15"), Ok(false));
    assert_eq!(upgrade_required("16", "15"), Ok(false), "never a downgrade");
    let err = upgrade_required("14", "latest").unwrap_err();
    assert!(err.to_string().contains("PGVERSION \"latest\""), "{err}");
    assert!(upgrade_required("", "15").is_err());
}

#[test]
fn checks_run_in_spilos_order() {
    let ok = view(&[("a-0", "leader"), ("a-1", "replica")], false);
    let replicas = sanity(&ok, "a-0", 2, true).unwrap();
    assert_eq!(replicas.len(), 1);
    assert_eq!(replicas[0].name, "a-1");
    assert_eq!(replicas[0].api_url, "http://127.0.0.2:8008/patroni");

    assert_eq!(
        sanity(&ok, "a-0", 2, false),
        Err(UpgradeError::NotInitialized)
    );
    let count = sanity(&ok, "a-0", 3, true).unwrap_err();
    assert!(
        count
            .to_string()
            .contains("says 3 members but Patroni knows 2 (a-0, a-1)"),
        "{count}"
    );
    let paused = view(&[("a-0", "leader"), ("a-1", "replica")], true);
    assert_eq!(sanity(&paused, "a-0", 2, true), Err(UpgradeError::Paused));
    let not_leader = sanity(&ok, "a-1", 2, true).unwrap_err();
    assert_eq!(
        not_leader.to_string(),
        "upgrade refused: a-1 does not hold the leader lock (leader: a-0)"
    );
    let leaderless = view(&[("a-0", "replica")], false);
    assert!(
        sanity(&leaderless, "a-0", 1, true)
            .unwrap_err()
            .to_string()
            .contains("leader: none")
    );
    // A single member has no replicas to check.
    assert_eq!(
        sanity(&view(&[("a-0", "leader")], false), "a-0", 1, true),
        Ok(vec![])
    );
}

#[test]
fn replicas_must_stream_within_the_lag_limit() {
    let rows = senders(
        "a-1|streaming|0\npg_basebackup|streaming|0\na-2|catchup|5\na-3|streaming|99999999\n",
    );
    assert_eq!(rows.len(), 4);
    assert_eq!(replica_streams("a-1", &rows), Ok(()));
    assert_eq!(
        replica_streams("a-2", &rows),
        Err(UpgradeError::NotStreaming("a-2".into()))
    );
    assert_eq!(
        replica_streams("a-9", &rows),
        Err(UpgradeError::NotStreaming("a-9".into()))
    );
    assert!(matches!(
        replica_streams("a-3", &rows),
        Err(UpgradeError::LagTooHigh { lag: 99999999, .. })
    ));
    assert_eq!(senders(""), vec![]);
}

#[test]
fn the_new_cluster_is_initialised_like_the_old_one() {
    let libc = InitdbSettings {
        encoding: "UTF8".into(),
        collate: "en_US.UTF-8".into(),
        ctype: "en_US.UTF-8".into(),
        provider: None,
        checksums: true,
    };
    assert_eq!(
        initdb_args(&libc, 15),
        [
            "--encoding=UTF8",
            "--lc-collate=en_US.UTF-8",
            "--lc-ctype=en_US.UTF-8",
            "--locale-provider=libc",
            "--data-checksums"
        ]
    );
    let plain = InitdbSettings {
        checksums: false,
        ..libc.clone()
    };
    assert!(
        !initdb_args(&plain, 17)
            .iter()
            .any(|a| a.contains("checksums"))
    );
    assert!(
        initdb_args(&plain, 18).contains(&"--no-data-checksums".to_string()),
        "18 turns them on by default"
    );
    let icu = InitdbSettings {
        provider: Some(("i".into(), "de-DE".into())),
        ..libc.clone()
    };
    let a = initdb_args(&icu, 16);
    assert!(
        a.contains(&"--locale-provider=icu".to_string())
            && a.contains(&"--icu-locale=de-DE".to_string())
    );
    let builtin = InitdbSettings {
        provider: Some(("b".into(), "C.UTF-8".into())),
        ..libc
    };
    assert!(initdb_args(&builtin, 18).contains(&"--builtin-locale=C.UTF-8".to_string()));
}

#[test]
fn pg_upgrades_refusal_becomes_one_line() {
    let output = "Performing Consistency Checks on Old Live Server\n\
        ------------------------------------------------\n\
        Checking cluster versions                                     ok\n\
        Checking for reg* data types in user tables                   fatal\n\
        \n\
        Your installation contains one of the reg* data types in user tables.\n\
        These data types reference system OIDs that are not preserved by\n\
        pg_upgrade, so this cluster cannot currently be upgraded.  You can\n\
        drop the problem columns and restart the upgrade.\n\
        A list of the problem columns is in the file:\n\
            /d/data_new/pg_upgrade_output.d/x/tables_using_reg.txt\n\
        \n\
        Failure, exiting\n";
    assert_eq!(
        pg_upgrade_reason(output),
        "Checking for reg* data types in user tables: Your installation contains one of the reg* data types in user tables."
    );
    assert_eq!(
        pg_upgrade_reason("could not connect to source postmaster\nFailure, exiting\n"),
        "could not connect to source postmaster"
    );
    assert_eq!(pg_upgrade_reason(""), "no output");
}

#[test]
fn controldata_fields_and_bin_dir() {
    let text = "pg_control version number:            1300\nDatabase system identifier:           7441\nDatabase cluster state:               shut down\n";
    assert_eq!(
        controldata_field(text, "Database system identifier").as_deref(),
        Some("7441")
    );
    assert_eq!(
        controldata_field(text, "Database cluster state").as_deref(),
        Some("shut down")
    );
    assert_eq!(controldata_field(text, "missing"), None);

    let mut config =
        json!({"postgresql": {"bin_dir": "/c/world/pg/14/bin", "data_dir": "/d"}, "name": "a-0"});
    assert_eq!(
        set_bin_dir(&mut config, "/c/world/pg/15/bin"),
        Ok("/c/world/pg/14/bin".into())
    );
    assert_eq!(config["postgresql"]["bin_dir"], "/c/world/pg/15/bin");
    assert_eq!(config["postgresql"]["data_dir"], "/d");
    assert!(set_bin_dir(&mut json!({"name": "x"}), "/b").is_err());
}
