//! The configuration `world::spilo` builds, checked against the real programs of the installed
//! world (`scripts/world-install.sh`), for every major:
//! - `patroni --validate-config` accepts the YAML (run as user `postgres`);
//! - PostgreSQL starts with Spilo's parameters (DCS and local), its pg_hba and TLS on, listening
//!   on a 127.0.9.x address with the member's own socket directory;
//! - the post_init SQL runs through psql as Patroni runs it and leaves the roles the operator
//!   relies on and pg_stat_statements.
//!
//! Skipped (with a note on stderr) unless run as root with the world installed: it needs to
//! switch to `postgres`. No API server is involved; Patroni's DCS side is the runner's test.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use world::majors;
use world::spilo::{self, Env, Member, Paths, Tls};

fn cache() -> PathBuf {
    std::env::var_os("PGOP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/pgop"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a program as `postgres` from `/`, failing the test with its output if it fails.
fn as_postgres(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(program)
        .args(args)
        .current_dir("/")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("HOME", "/var/lib/postgresql");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("setpriv runs");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}\n{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().expect("runs");
    assert!(status.success(), "{program} {args:?}");
}

/// A Spilo environment as the operator writes it for a minimal cluster.
fn env(major: &str) -> Env {
    let pairs = [
        ("SCOPE", "acid-world"),
        ("PGROOT", "/home/postgres/pgdata/pgroot"),
        ("POD_NAMESPACE", "default"),
        ("PGUSER_SUPERUSER", "postgres"),
        ("PGPASSWORD_SUPERUSER", "super'secret"),
        ("PGUSER_STANDBY", "standby"),
        ("PGPASSWORD_STANDBY", "standby-secret"),
        ("KUBERNETES_SCOPE_LABEL", "cluster-name"),
        ("KUBERNETES_ROLE_LABEL", "spilo-role"),
        ("HUMAN_ROLE", "zalandos"),
        ("PGVERSION", major),
        ("KUBERNETES_LABELS", r#"{"application":"spilo"}"#),
        (
            "SPILO_CONFIGURATION",
            r#"{"postgresql":{},"bootstrap":{"initdb":[{"auth-host":"scram-sha-256"},{"auth-local":"trust"}]}}"#,
        ),
        ("DCS_ENABLE_KUBERNETES_API", "true"),
        ("KUBERNETES_USE_CONFIGMAPS", "true"),
    ];
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A postgresql.conf line (`'` doubled).
fn conf_line(name: &str, value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!("{name} = '{}'\n", text.replace('\'', "''"))
}

fn check_major(major: &str, index: usize) {
    let cache = cache();
    let bin = majors::bin_dir(&cache, major).expect("installed");
    let root = std::env::temp_dir().join(format!("pgop-world-test-{}-{major}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let run_dir = root.join("run");
    let data_dir = root.join("pgroot/data");
    std::fs::create_dir_all(&run_dir).unwrap();
    run("chown", &["-R", "postgres:", &root.display().to_string()]);
    let ip = format!("127.0.9.{}", 20 + index);
    let tls = Tls {
        cert: run_dir.join("server.crt"),
        key: run_dir.join("server.key"),
        ca: None,
        crl: None,
    };
    let paths = Paths {
        data_dir: data_dir.clone(),
        run_dir: run_dir.clone(),
        bin_dir: bin.clone(),
        kubeconfig: root.join("kubeconfig"),
        context: "local".into(),
        tls: tls.clone(),
        hosts: BTreeMap::new(),
    };
    let member = Member {
        name: "acid-world-0",
        namespace: "default",
        pod_ip: &ip,
    };
    let launch = spilo::patroni_config(&env(major), &member, &paths).expect("config");
    let config = &launch.config;
    for file in &launch.files {
        std::fs::write(&file.path, &file.contents).unwrap();
    }
    let yaml = root.join("patroni.yml");
    std::fs::write(&yaml, serde_yaml::to_string(config).unwrap()).unwrap();
    run("chown", &["-R", "postgres:", &root.display().to_string()]);

    // A self-signed pair, as Spilo makes without SSL_* files.
    as_postgres(
        Path::new("/usr/bin/openssl"),
        &[
            "req",
            "-nodes",
            "-new",
            "-x509",
            "-subj",
            "/CN=spilo.dummy.org",
            "-days",
            "1",
            "-keyout",
            &tls.key.display().to_string(),
            "-out",
            &tls.cert.display().to_string(),
        ],
        &[],
    );

    as_postgres(
        &majors::patroni(&cache),
        &["--validate-config", &yaml.display().to_string()],
        &[],
    );

    // initdb with the bootstrap options, as Patroni passes them.
    let mut initdb = vec![
        format!("--pgdata={}", data_dir.display()),
        "--username=postgres".into(),
    ];
    for option in config["bootstrap"]["initdb"].as_array().unwrap() {
        match option {
            Value::String(flag) => initdb.push(format!("--{flag}")),
            Value::Object(map) => {
                for (k, v) in map {
                    initdb.push(format!("--{k}={}", v.as_str().unwrap()));
                }
            }
            other => panic!("initdb option {other}"),
        }
    }
    let initdb: Vec<&str> = initdb.iter().map(String::as_str).collect();
    as_postgres(&bin.join("initdb"), &initdb, &[]);

    // Parameters: DCS ones, then local ones (Patroni's order of precedence), then the address.
    let mut conf = String::new();
    let pg = &config["postgresql"];
    for section in [
        &config["bootstrap"]["dcs"]["postgresql"]["parameters"],
        &pg["parameters"],
    ] {
        for (name, value) in section.as_object().unwrap() {
            conf += &conf_line(name, value);
        }
    }
    conf += &conf_line("listen_addresses", &Value::String(ip.clone()));
    conf += "port = 5432\n";
    let conf_path = data_dir.join("postgresql.conf");
    let mut base = std::fs::read_to_string(&conf_path).unwrap();
    base += &conf;
    std::fs::write(&conf_path, base).unwrap();
    let hba: String = pg["pg_hba"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("{}\n", l.as_str().unwrap()))
        .collect();
    std::fs::write(data_dir.join("pg_hba.conf"), hba).unwrap();

    let data = data_dir.display().to_string();
    let log = root.join("server.log").display().to_string();
    run("chown", &["-R", "postgres:", &root.display().to_string()]);
    as_postgres(
        &bin.join("pg_ctl"),
        &["-D", &data, "-l", &log, "-w", "-t", "60", "start"],
        &[],
    );
    let stop = || {
        let _ = as_postgres(
            &bin.join("pg_ctl"),
            &["-D", &data, "-m", "fast", "-w", "stop"],
            &[],
        );
    };
    let result = std::panic::catch_unwind(|| {
        // The post_init command as Patroni runs it: its words plus a DSN.
        let command = config["bootstrap"]["post_init"].as_str().unwrap();
        let words: Vec<&str> = command.split(' ').collect();
        let dsn = format!(
            "dbname=postgres user=postgres host={} port=5432",
            run_dir.display()
        );
        let mut args: Vec<&str> = words[1..].to_vec();
        args.push(&dsn);
        as_postgres(
            Path::new(words[0]),
            &args,
            &[(
                "PGOPTIONS",
                "-c synchronous_commit=local -c statement_timeout=0",
            )],
        );
        let query = |db: &str, sql: &str| -> String {
            let out = as_postgres(
                &bin.join("psql"),
                &[
                    "-X", "-At", "-h", &ip, "-U", "postgres", "-d", db, "-c", sql,
                ],
                &[("PGPASSWORD", "unused"), ("PGSSLMODE", "require")],
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        // Over TCP with TLS: local trust via hba is not involved (md5 from 127/8 needs a
        // password the superuser has none of yet), so set one first through the socket.
        as_postgres(
            &bin.join("psql"),
            &[
                "-X",
                "-q",
                "-h",
                &run_dir.display().to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                "ALTER ROLE postgres PASSWORD 'unused'",
            ],
            &[],
        );
        assert_eq!(
            query(
                "postgres",
                "select string_agg(rolname, ',' order by rolname) from pg_roles \
                   where rolname in ('admin','cron_admin','zalandos','robot_zmon')"
            ),
            "admin,cron_admin,robot_zmon,zalandos"
        );
        assert_eq!(
            query(
                "postgres",
                "select ssl from pg_stat_ssl where pid = pg_backend_pid()"
            ),
            "t"
        );
        assert_eq!(
            query(
                "template1",
                "select count(*) from pg_extension where extname = 'pg_stat_statements'"
            ),
            "1"
        );
        assert_eq!(
            query("postgres", "show unix_socket_directories"),
            run_dir.display().to_string()
        );
        assert!(query("postgres", "select version()").starts_with(&format!("PostgreSQL {major}")));
    });
    stop();
    if let Err(panic) = result {
        eprintln!("{major}: server log in {}", root.display());
        std::panic::resume_unwind(panic);
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn every_major_runs_spilos_configuration() {
    if !is_root() {
        eprintln!("skipped: needs root (runs the server as postgres)");
        return;
    }
    let available = majors::available(&cache());
    if available.is_empty() || !majors::patroni(&cache()).exists() {
        eprintln!("skipped: no world installed (scripts/world-install.sh)");
        return;
    }
    for (index, major) in majors::INSTALLED.iter().enumerate() {
        assert!(
            available.iter().any(|a| a == major),
            "major {major} missing: {available:?}"
        );
        let started = std::time::Instant::now();
        check_major(major, index);
        eprintln!("{major}: ok in {:.1?}", started.elapsed());
    }
}
