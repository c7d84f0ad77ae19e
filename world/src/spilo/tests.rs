//! Environments built the way the operator builds them (the postgres container of the real
//! StatefulSet for the minimal and complete manifests), resolved by hand as the runner will.

use super::*;
use common::config::Config;
use common::crd::Postgresql;
use common::rules::admission::Validated;
use k8s_openapi::api::core::v1::EnvVar;

const MINIMAL: &str = include_str!("../../../manifests/minimal-postgres-manifest.yaml");
const COMPLETE: &str = include_str!("../../../manifests/complete-postgres-manifest.yaml");
const IP: &str = "127.10.0.5";

fn manifest(yaml: &str) -> Postgresql {
    let mut pg: Postgresql = serde_yaml::from_str(yaml).expect("manifest parses");
    pg.metadata.namespace.get_or_insert_with(|| "team-a".into());
    pg.metadata.uid.get_or_insert_with(|| "uid-1".into());
    pg
}

/// Resolves the container's env as the runner will: values, pod fields, secrets (a fake
/// password named after the secret).
fn resolve(vars: &[EnvVar], namespace: &str) -> Env {
    let mut env = Env::new();
    for var in vars {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    match field.field_path.as_str() {
                        "status.podIP" => IP.into(),
                        "metadata.namespace" => namespace.into(),
                        other => panic!("unexpected field {other}"),
                    }
                } else if let Some(secret) = &from.secret_key_ref {
                    format!("pw:{}", secret.name.split('.').next().unwrap())
                } else {
                    panic!("unexpected source for {}", var.name)
                }
            }
            (None, None) => String::new(),
        };
        env.insert(var.name.clone(), value);
    }
    env
}

fn operator_env(config: &Config, pg: &Postgresql) -> Env {
    let desired = controller::desired::build(config, &Validated::trusted(config, pg), None)
        .expect("desired objects build");
    let spec = desired.statefulsets[0].spec.as_ref().unwrap();
    let pod = spec.template.spec.as_ref().unwrap();
    let postgres = pod
        .containers
        .iter()
        .find(|c| c.name == "postgres")
        .unwrap();
    resolve(postgres.env.as_deref().unwrap(), "team-a")
}

fn paths() -> Paths {
    Paths {
        data_dir: "/w/data/pgdata-acid-0/pgroot/data".into(),
        run_dir: "/w/run/acid-0".into(),
        bin_dir: "/c/world/pg/17/bin".into(),
        kubeconfig: "/w/cfg/acid-0/kubeconfig".into(),
        context: "local".into(),
        tls: Tls {
            cert: "/w/run/acid-0/server.crt".into(),
            key: "/w/run/acid-0/server.key".into(),
            ca: None,
            crl: None,
        },
        hosts: BTreeMap::from([("acid-source".to_string(), "127.10.0.9".to_string())]),
    }
}

fn member(name: &str) -> Member<'_> {
    Member {
        name,
        namespace: "team-a",
        pod_ip: IP,
    }
}

fn launch(env: &Env) -> Launch {
    patroni_config(env, &member("acid-minimal-cluster-0"), &paths()).expect("config builds")
}

#[test]
fn minimal_manifest_gives_a_configmaps_member_on_its_pod_ip() {
    let env = operator_env(&Config::default(), &manifest(MINIMAL));
    let launch = launch(&env);
    let c = &launch.config;
    assert_eq!(c["scope"], "acid-minimal-cluster");
    assert_eq!(c["name"], "acid-minimal-cluster-0");
    assert_eq!(c["restapi"]["listen"], "127.10.0.5:8008");
    assert_eq!(c["restapi"]["connect_address"], "127.10.0.5:8008");

    let k8s = &c["kubernetes"];
    assert_eq!(k8s["namespace"], "team-a");
    assert_eq!(k8s["context"], "local");
    assert_eq!(k8s["use_endpoints"], false);
    assert_eq!(k8s["bypass_api_service"], false);
    assert_eq!(k8s["scope_label"], "cluster-name");
    assert_eq!(k8s["role_label"], "spilo-role");
    assert_eq!(k8s["leader_label_value"], "master");
    assert_eq!(k8s["standby_leader_label_value"], "master");
    assert_eq!(k8s["follower_label_value"], "replica");
    assert_eq!(k8s["labels"], json!({"application": "spilo"}));
    assert_eq!(
        k8s["bootstrap_labels"],
        json!({"critical-operation": "true"})
    );
    assert!(k8s.get("use_configmaps").is_none() && k8s.get("pod_ip").is_none());

    let pg = &c["postgresql"];
    assert_eq!(pg["listen"], "127.10.0.5:5432");
    assert_eq!(pg["connect_address"], "127.10.0.5:5432");
    assert_eq!(pg["data_dir"], "/w/data/pgdata-acid-0/pgroot/data");
    assert_eq!(pg["bin_dir"], "/c/world/pg/17/bin");
    assert_eq!(pg["pgpass"], "/w/run/acid-0/pgpass");
    assert_eq!(pg["use_unix_socket"], true);
    let params = &pg["parameters"];
    assert_eq!(params["unix_socket_directories"], "/w/run/acid-0");
    assert_eq!(params["ssl"], "on");
    assert_eq!(params["ssl_cert_file"], "/w/run/acid-0/server.crt");
    assert_eq!(params["ssl_key_file"], "/w/run/acid-0/server.key");
    assert_eq!(params["shared_preload_libraries"], "pg_stat_statements");
    assert!(params.get("ssl_ca_file").is_none());
    let auth = &pg["authentication"];
    assert_eq!(
        auth["superuser"],
        json!({"username": "postgres", "password": "pw:postgres"})
    );
    assert_eq!(
        auth["replication"],
        json!({"username": "standby", "password": "pw:standby"})
    );
    let hba: Vec<&str> = pg["pg_hba"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(hba[0].starts_with("local"));
    assert!(hba.iter().any(|l| l.contains("127.0.0.0/8")));
    assert!(
        hba.iter()
            .any(|l| l.starts_with("hostssl replication     standby"))
    );

    let boot = &c["bootstrap"];
    let dcs = &boot["dcs"];
    assert_eq!(
        (&dcs["ttl"], &dcs["loop_wait"], &dcs["retry_timeout"]),
        (&json!(30), &json!(10), &json!(10))
    );
    assert_eq!(dcs["maximum_lag_on_failover"], 33554432);
    assert_eq!(dcs["postgresql"]["use_pg_rewind"], true);
    assert_eq!(dcs["postgresql"]["use_slots"], true);
    assert_eq!(dcs["postgresql"]["parameters"]["wal_level"], "hot_standby");
    assert!(dcs.get("standby_cluster").is_none());
    // The operator's initdb list replaces Spilo's (lists are not merged).
    assert_eq!(
        boot["initdb"],
        json!([{"auth-host": "scram-sha-256"}, {"auth-local": "trust"}])
    );
    assert!(boot.get("method").is_none());
    assert_eq!(
        boot["post_init"],
        "/c/world/pg/17/bin/psql -X -q -f /w/run/acid-0/post_init.sql"
    );
    assert_eq!(launch.files.len(), 1);
    assert_eq!(
        launch.files[0].path,
        Path::new("/w/run/acid-0/post_init.sql")
    );
    assert!(
        launch.files[0]
            .contents
            .contains("CREATE ROLE \"zalandos\"")
    );
    assert_eq!(launch.env["KUBECONFIG"], "/w/cfg/acid-0/kubeconfig");
    assert_eq!(launch.env["PGVERSION"], "17");
    assert_eq!(major(&env).unwrap(), "17");
    // The default PAM_OAUTH2 of the operator is noted, nothing else.
    assert_eq!(launch.warnings.len(), 1, "{:?}", launch.warnings);
    // It is writable as YAML.
    let yaml = serde_yaml::to_string(&launch.config).unwrap();
    assert!(yaml.contains("scope: acid-minimal-cluster"));
}

#[test]
fn the_complete_manifests_archive_clone_is_refused_by_name() {
    let env = operator_env(&Config::default(), &manifest(COMPLETE));
    let refused = patroni_config(&env, &member("acid-test-cluster-0"), &paths());
    assert!(
        matches!(&refused, Err(SpiloError::WalStorage { what }) if what.contains("CLONE_WITH_WALE")),
        "{refused:?}"
    );
}

#[test]
fn complete_manifest_merges_over_spilo_defaults() {
    let mut pg = manifest(COMPLETE);
    // Its clone restores from a WAL archive and its standby replays one: refused here (below).
    pg.spec.clone = None;
    pg.spec.standby = None;
    let env = operator_env(&Config::default(), &pg);
    let c = launch(&env).config;
    let dcs = &c["bootstrap"]["dcs"];
    let dcs_params = &dcs["postgresql"]["parameters"];
    // The manifest wins per key, Spilo's other keys stay.
    assert_eq!(dcs_params["max_connections"], "10");
    assert_eq!(dcs_params["log_statement"], "all");
    assert_eq!(dcs_params["wal_level"], "hot_standby");
    assert_eq!(dcs_params["max_wal_senders"], 10);
    assert_eq!(dcs["postgresql"]["use_pg_rewind"], true);
    assert_eq!(dcs["synchronous_node_count"], 1);
    assert_eq!(dcs["failsafe_mode"], false);
    assert_eq!(dcs["slots"]["permanent_logical_1"]["plugin"], "pgoutput");
    let params = &c["postgresql"]["parameters"];
    assert_eq!(params["shared_buffers"], "32MB");
    assert_eq!(params["logging_collector"], "on");
    assert_eq!(params["unix_socket_directories"], "/w/run/acid-0");
    // A manifest pg_hba replaces Spilo's list entirely.
    assert_eq!(
        c["postgresql"]["pg_hba"],
        json!([
            "hostssl all all 0.0.0.0/0 md5",
            "host    all all 0.0.0.0/0 md5"
        ])
    );
    assert_eq!(
        c["bootstrap"]["initdb"],
        json!([
            {"auth-host": "scram-sha-256"},
            {"auth-local": "trust"},
            "data-checksums",
            {"encoding": "UTF8"},
            {"locale": "en_US.UTF-8"}
        ])
    );
    assert_eq!(c["kubernetes"]["labels"], json!({"application": "spilo"}));
}

#[test]
fn world_settings_win_over_the_manifest() {
    let mut env = operator_env(&Config::default(), &manifest(MINIMAL));
    env.insert(
        "SPILO_CONFIGURATION".into(),
        json!({
            "restapi": {"listen": "0.0.0.0:8008"},
            "postgresql": {"bin_dir": "/usr/lib/postgresql/16/bin", "listen": "*:5432",
                           "parameters": {"unix_socket_directories": "/run/postgresql"}},
            "kubernetes": {"use_endpoints": true, "bypass_api_service": true}
        })
        .to_string(),
    );
    let c = launch(&env).config;
    assert_eq!(c["restapi"]["listen"], "127.10.0.5:8008");
    assert_eq!(c["postgresql"]["listen"], "127.10.0.5:5432");
    assert_eq!(c["postgresql"]["bin_dir"], "/c/world/pg/17/bin");
    assert_eq!(
        c["postgresql"]["parameters"]["unix_socket_directories"],
        "/w/run/acid-0"
    );
    assert_eq!(c["kubernetes"]["use_endpoints"], false);
    assert_eq!(c["kubernetes"]["bypass_api_service"], false);
}

#[test]
fn endpoints_mode_and_etcd_are_clear_errors() {
    let config = Config {
        kubernetes_use_configmaps: false,
        ..Config::default()
    };
    let env = operator_env(&config, &manifest(MINIMAL));
    let err = patroni_config(&env, &member("m-0"), &paths()).unwrap_err();
    assert_eq!(err, SpiloError::EndpointsMode);
    assert!(err.to_string().contains("loopback"));

    let config = Config {
        etcd_host: "etcd:2379".into(),
        ..Config::default()
    };
    let env = operator_env(&config, &manifest(MINIMAL));
    let err = patroni_config(&env, &member("m-0"), &paths()).unwrap_err();
    assert!(matches!(err, SpiloError::NotKubernetesDcs(ref s) if s.contains("etcd:2379")));
}

#[test]
fn major_from_bin_dir_without_pgversion() {
    let config = Config {
        enable_pgversion_env_var: false,
        ..Config::default()
    };
    let env = operator_env(&config, &manifest(MINIMAL));
    assert!(!env.contains_key("PGVERSION"));
    assert_eq!(major(&env).unwrap(), "17");
    let mut bare = Env::new();
    assert!(matches!(
        major(&bare),
        Err(SpiloError::Invalid {
            variable: "PGVERSION",
            ..
        })
    ));
    bare.insert("SPILO_CONFIGURATION".into(), "[1, 2]".into());
    assert!(matches!(
        major(&bare),
        Err(SpiloError::Invalid {
            variable: "SPILO_CONFIGURATION",
            ..
        })
    ));
}

/// POSIX shell word splitting for quoted words without backslashes (Python's `shlex.split`).
fn split(command: &str) -> Vec<String> {
    let (mut words, mut word, mut any) = (Vec::new(), String::new(), false);
    let mut quote: Option<char> = None;
    for c in command.chars() {
        match (quote, c) {
            (None, '\'' | '"') => (quote, any) = (Some(c), true),
            (Some(q), c) if c == q => quote = None,
            (None, ' ') => {
                if any {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            (_, c) => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}

#[test]
fn clone_with_basebackup_runs_pg_basebackup_from_the_source_primary() {
    let mut env = operator_env(&Config::default(), &manifest(MINIMAL));
    for (k, v) in [
        ("CLONE_SCOPE", "acid-source"),
        ("CLONE_METHOD", "CLONE_WITH_BASEBACKUP"),
        ("CLONE_HOST", "acid-source"),
        ("CLONE_PORT", "5432"),
        ("CLONE_USER", "standby"),
        ("CLONE_PASSWORD", "se:cr'et"),
    ] {
        env.insert(k.into(), v.into());
    }
    let launch = launch(&env);
    let boot = &launch.config["bootstrap"];
    assert_eq!(boot["method"], "clone_with_basebackup");
    let method = &boot["clone_with_basebackup"];
    assert_eq!(method["no_params"], true);
    let command = method["command"].as_str().unwrap();
    assert!(
        command.starts_with(
            "/c/world/pg/17/bin/pg_basebackup --pgdata=/w/data/pgdata-acid-0/pgroot/data -X stream"
        ),
        "{command}"
    );
    // As Patroni's shlex.split sees it.
    let words = split(command);
    assert_eq!(
        words.last().unwrap(),
        "--dbname=host=127.10.0.9 port=5432 user='standby' \
         passfile='/w/run/acid-0/pgpass-clone-acid-source' sslmode=prefer"
    );
    let pgpass = &launch.files[1];
    assert_eq!(
        pgpass.path,
        Path::new("/w/run/acid-0/pgpass-clone-acid-source")
    );
    assert_eq!(pgpass.contents, "127.10.0.9:5432:*:standby:se\\:cr'et\n");
    assert_eq!(pgpass.mode, 0o600);
    // The initdb settings stay for Patroni to ignore; no standby section.
    assert!(boot["dcs"].get("standby_cluster").is_none());

    env.remove("CLONE_PASSWORD");
    let err = patroni_config(&env, &member("m-0"), &paths()).unwrap_err();
    assert_eq!(
        err,
        SpiloError::IncompleteClone {
            missing: vec!["CLONE_PASSWORD"]
        }
    );
    env.insert("CLONE_PASSWORD".into(), "x".into());
    env.insert("CLONE_HOST".into(), "acid-elsewhere".into());
    let err = patroni_config(&env, &member("m-0"), &paths()).unwrap_err();
    assert!(matches!(
        err,
        SpiloError::UnresolvedHost {
            variable: "CLONE_HOST",
            ..
        }
    ));
}

#[test]
fn streaming_standby_becomes_a_standby_cluster() {
    let mut env = operator_env(&Config::default(), &manifest(MINIMAL));
    env.insert("STANDBY_HOST".into(), "acid-source".into());
    env.insert("STANDBY_PORT".into(), "5433".into());
    env.insert("STANDBY_PRIMARY_SLOT_NAME".into(), "standby_slot".into());
    let c = launch(&env).config;
    assert_eq!(
        c["bootstrap"]["dcs"]["standby_cluster"],
        json!({
            "host": "127.10.0.9",
            "port": 5433,
            "primary_slot_name": "standby_slot",
            "create_replica_methods": ["basebackup"]
        })
    );
    env.insert("STANDBY_HOST".into(), "10.0.0.7".into());
    let err = patroni_config(&env, &member("m-0"), &paths()).unwrap_err();
    assert!(matches!(err, SpiloError::NonLoopbackHost { .. }), "{err}");
}

#[test]
fn pod_ip_and_scope_are_checked() {
    let env = operator_env(&Config::default(), &manifest(MINIMAL));
    let far = Member {
        name: "m-0",
        namespace: "team-a",
        pod_ip: "10.244.0.3",
    };
    assert_eq!(
        patroni_config(&env, &far, &paths()).unwrap_err(),
        SpiloError::PodIp("10.244.0.3".into())
    );
    let mut env = env;
    env.remove("SCOPE");
    assert!(matches!(
        patroni_config(&env, &member("m-0"), &paths()),
        Err(SpiloError::Invalid {
            variable: "SCOPE",
            ..
        })
    ));
}

#[test]
fn bad_labels_fall_back_to_spilo_default_with_a_warning() {
    let mut env = operator_env(&Config::default(), &manifest(MINIMAL));
    env.insert("KUBERNETES_LABELS".into(), "not json".into());
    env.insert("KUBERNETES_TMP_ROLE_LABEL".into(), "tmp-role".into());
    env.insert("KUBERNETES_SERVICE_HOST".into(), "10.96.0.1".into());
    let launch = launch(&env);
    assert_eq!(
        launch.config["kubernetes"]["labels"],
        json!({"application": "spilo"})
    );
    assert_eq!(launch.config["kubernetes"]["tmp_role_label"], "tmp-role");
    assert!(launch.config["kubernetes"].get("service_host").is_none());
    assert!(
        launch
            .warnings
            .iter()
            .any(|w| w.contains("KUBERNETES_LABELS"))
    );
}

#[test]
fn merge_is_spilos_deep_update() {
    let user = json!({"a": {"x": 1, "l": [1]}, "s": "user", "n": null});
    let spilo = json!({"a": {"x": 2, "y": 3, "l": [2, 3]}, "s": "spilo", "n": 5, "t": true});
    assert_eq!(
        merge(user, spilo),
        json!({"a": {"x": 1, "y": 3, "l": [1]}, "s": "user", "n": 5, "t": true})
    );
}

#[test]
fn tls_files_come_from_ssl_variables() {
    let mut env = Env::new();
    assert!(tls_files(&env).is_none());
    env.insert("SSL_CERTIFICATE_FILE".into(), "/tls/tls.crt".into());
    env.insert("SSL_PRIVATE_KEY_FILE".into(), "/tls/tls.key".into());
    env.insert("SSL_CA_FILE".into(), "/tlsca/ca.crt".into());
    let (cert, key, ca, crl) = tls_files(&env).unwrap();
    assert_eq!(
        (cert.as_str(), key.as_str()),
        ("/tls/tls.crt", "/tls/tls.key")
    );
    assert_eq!(ca.as_deref(), Some("/tlsca/ca.crt"));
    assert!(crl.is_none());
}
