//! Patroni's configuration from a Spilo container's environment (Spilo's `configure_spilo.py`),
//! adapted to a member that runs on loopback behind a kwok pod.
//!
//! [`patroni_config`] is pure: the runner resolves the container's environment (values, secret
//! and field references), picks the major ([`major`], then [`crate::majors::bin_dir`]) and the
//! member's directories, and gets the YAML (as JSON) to write, the small files to write next to
//! it, and the environment of the Patroni process. Order of work, as Spilo's:
//! 1. Spilo's defaults ([`defaults`]) and the values taken from the environment;
//! 2. `SPILO_CONFIGURATION` merged over them with Spilo's `deep_update` ([`merge`]): the
//!    manifest wins for scalars, its lists replace Spilo's, mappings merge key by key;
//! 3. what must hold in this world whatever the manifest says ([`pin_world`]): addresses,
//!    directories, binaries, the Kubernetes context and ConfigMaps mode.
//!
//! What a pod asks for that cannot work here is an error value ([`SpiloError`]), which the runner
//! turns into a pod condition: Endpoints mode, an etcd DCS, WAL storage, an unresolvable or
//! non-loopback source host. What Spilo does but this world leaves out is listed in the
//! result's `warnings` or documented in [`defaults`] (callbacks, PAM, WAL archiving, bg_mon).

mod bootstrap;
pub use bootstrap::{HOST_VARIABLES, service_of};
pub mod defaults;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A container's resolved environment.
pub type Env = BTreeMap<String, String>;

/// Spilo's default `KUBERNETES_LABELS`.
pub const DEFAULT_LABELS: &str = r#"{"application": "spilo"}"#;

/// A non-empty variable (Spilo treats empty values as unset).
pub(crate) fn get<'a>(env: &'a Env, name: &str) -> Option<&'a str> {
    env.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// Why a Spilo pod cannot run in this world. Every message says what was asked for and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiloError {
    /// Patroni would keep its leader lock in Endpoints.
    #[error(
        "KUBERNETES_USE_CONFIGMAPS is not set: Patroni would keep its leader in Endpoints, and the \
         API server refuses loopback pod IPs in Endpoints, so no leader could ever be elected \
         (set kubernetes_use_configmaps: true in the operator configuration)"
    )]
    EndpointsMode,
    /// The DCS is not the Kubernetes API.
    #[error(
        "this world runs Patroni only with the Kubernetes API as DCS (DCS_ENABLE_KUBERNETES_API), \
         not {0}"
    )]
    NotKubernetesDcs(String),
    /// A clone or standby that needs WAL storage.
    #[error("{what} is not supported in this world until WAL storage exists")]
    WalStorage {
        /// What was asked for, with the variable that asked.
        what: String,
    },
    /// `CLONE_METHOD=CLONE_WITH_BASEBACKUP` without all of its variables.
    #[error("CLONE_METHOD=CLONE_WITH_BASEBACKUP needs {}", missing.join(", "))]
    IncompleteClone {
        /// The variables missing or empty.
        missing: Vec<&'static str>,
    },
    /// A source host the runner could not resolve (yet: the source's Service may not exist).
    #[error(
        "{variable}={host:?}: not an IP and no Service of that name with a ClusterIP (there is no other DNS here)"
    )]
    UnresolvedHost {
        /// `CLONE_HOST` or `STANDBY_HOST`.
        variable: &'static str,
        /// The host as written.
        host: String,
    },
    /// A source host outside 127.0.0.0/8.
    #[error(
        "{variable}={host:?} resolves to {ip}, outside 127.0.0.0/8, which this world never dials"
    )]
    NonLoopbackHost {
        /// `CLONE_HOST` or `STANDBY_HOST`.
        variable: &'static str,
        /// The host as written.
        host: String,
        /// The address it stands for.
        ip: String,
    },
    /// The pod IP is not a loopback address.
    #[error("pod IP {0:?} is not in 127.0.0.0/8; members listen on loopback only")]
    PodIp(String),
    /// A variable Spilo requires (or that must parse) is wrong.
    #[error("{variable}: {reason}")]
    Invalid {
        /// The variable.
        variable: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The pod the member runs for.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    /// Pod name: Patroni's member `name`.
    pub name: &'a str,
    /// Pod namespace: Patroni's `kubernetes.namespace`.
    pub namespace: &'a str,
    /// `status.podIP`: PostgreSQL and the REST API listen there (ports 5432 and 8008).
    pub pod_ip: &'a str,
}

/// Host paths of the member's TLS files (the runner generates a self-signed pair, as Spilo does
/// without `SSL_*`, or maps the files `SSL_*_FILE` name through the pod's volumes: see
/// [`tls_files`]).
#[derive(Debug, Clone)]
pub struct Tls {
    /// Server certificate (`ssl_cert_file`).
    pub cert: PathBuf,
    /// Private key, mode 0600, owned by postgres (`ssl_key_file`).
    pub key: PathBuf,
    /// CA bundle (`ssl_ca_file`), if `SSL_CA_FILE` is set.
    pub ca: Option<PathBuf>,
    /// Revocation list (`ssl_crl_file`), if `SSL_CRL_FILE` is set.
    pub crl: Option<PathBuf>,
}

/// Where the runner keeps the member's things on this machine.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `$PGROOT/data` of the pod's volume, keyed by PVC so it survives pod recreation.
    pub data_dir: PathBuf,
    /// The member's own directory: unix socket, pgpass files, post_init.sql. Every member uses
    /// port 5432, so sockets in one shared directory would clash.
    pub run_dir: PathBuf,
    /// The major's `bin` ([`crate::majors::bin_dir`] of [`major`]).
    pub bin_dir: PathBuf,
    /// Kubeconfig with the pod's service-account token (Patroni reads `KUBECONFIG`).
    pub kubeconfig: PathBuf,
    /// Its context name: Patroni defaults to `kind-kind` and dies without it.
    pub context: String,
    /// The TLS files.
    pub tls: Tls,
    /// Source hosts (`CLONE_HOST`, `STANDBY_HOST` as written) to the IP of their current
    /// primary pod.
    pub hosts: BTreeMap<String, String>,
}

/// A file to write before Patroni starts (owner postgres).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Absolute path (inside [`Paths::run_dir`]).
    pub path: PathBuf,
    /// Contents.
    pub contents: String,
    /// Unix mode (0600 for anything with a password).
    pub mode: u32,
}

/// Everything needed to start the member's Patroni.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Patroni's configuration (write it as YAML).
    pub config: Value,
    /// Files the configuration refers to.
    pub files: Vec<File>,
    /// Environment of the Patroni process, on top of a clean one (the runner must also leave
    /// out `KUBERNETES_SERVICE_HOST`/`_PORT`, or Patroni ignores the kubeconfig).
    pub env: BTreeMap<String, String>,
    /// What Spilo would do from this environment that this world skips.
    pub warnings: Vec<String>,
}

/// The TLS files a pod names (`SSL_CERTIFICATE_FILE`, `SSL_PRIVATE_KEY_FILE`, `SSL_CA_FILE`,
/// `SSL_CRL_FILE`) as container paths, or `None` when Spilo would generate a self-signed pair.
pub fn tls_files(env: &Env) -> Option<(String, String, Option<String>, Option<String>)> {
    let cert = get(env, "SSL_CERTIFICATE_FILE")?;
    let key = get(env, "SSL_PRIVATE_KEY_FILE")?;
    Some((
        cert.into(),
        key.into(),
        get(env, "SSL_CA_FILE").map(Into::into),
        get(env, "SSL_CRL_FILE").map(Into::into),
    ))
}

/// The user's `SPILO_CONFIGURATION` (YAML or JSON, a mapping; empty when unset).
fn user_configuration(env: &Env) -> Result<Value, SpiloError> {
    let Some(text) = get(env, "SPILO_CONFIGURATION").or_else(|| get(env, "PATRONI_CONFIGURATION"))
    else {
        return Ok(json!({}));
    };
    let value: Value = serde_yaml::from_str(text).map_err(|e| SpiloError::Invalid {
        variable: "SPILO_CONFIGURATION",
        reason: format!("not YAML/JSON: {e}"),
    })?;
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(json!({})),
        other => Err(SpiloError::Invalid {
            variable: "SPILO_CONFIGURATION",
            reason: format!("should contain a mapping, yet it is {other}"),
        }),
    }
}

/// The PostgreSQL major the pod runs: `PGVERSION`, or the major in a `postgresql.bin_dir` of
/// `SPILO_CONFIGURATION` (`/usr/lib/postgresql/<major>/bin`, what the operator writes without
/// `enable_pgversion_env_var`).
pub fn major(env: &Env) -> Result<String, SpiloError> {
    if let Some(version) = get(env, "PGVERSION") {
        return Ok(version.trim().to_string());
    }
    let config = user_configuration(env)?;
    let bin_dir = config["postgresql"]["bin_dir"].as_str().unwrap_or_default();
    bin_dir
        .strip_prefix("/usr/lib/postgresql/")
        .and_then(|rest| rest.trim_end_matches('/').strip_suffix("/bin"))
        .map(str::to_string)
        .ok_or_else(|| SpiloError::Invalid {
            variable: "PGVERSION",
            reason: "not set, and SPILO_CONFIGURATION has no postgresql.bin_dir naming a major"
                .into(),
        })
}

/// Spilo's `deep_update(a, b)`: mappings merge recursively, for anything else `a` wins unless it
/// is null (so two lists give `a`'s). Spilo calls it with the user's configuration as `a`.
pub fn merge(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Object(mut a), Value::Object(b)) => {
            for (key, b_value) in b {
                let merged = match a.remove(&key) {
                    Some(a_value) => merge(a_value, b_value),
                    None => b_value,
                };
                a.insert(key, merged);
            }
            Value::Object(a)
        }
        (Value::Null, b) => b,
        (a, _) => a,
    }
}

/// A JSON object from a variable holding one (`KUBERNETES_LABELS`, `..._BOOTSTRAP_LABELS`).
fn json_object(env: &Env, name: &str) -> Option<Result<Value, String>> {
    let text = get(env, name)?;
    Some(match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => Err(format!("{name} is not a JSON object: {other}")),
        Err(e) => Err(format!("{name} is not JSON: {e}")),
    })
}

/// The `kubernetes` section: every `KUBERNETES_*` variable as a lower-cased key, labels parsed
/// as JSON, Spilo's defaults for the scope label, role label and role values.
fn kubernetes(env: &Env, warnings: &mut Vec<String>) -> Result<Value, SpiloError> {
    if get(env, "DCS_ENABLE_KUBERNETES_API").is_none() {
        let dcs = match get(env, "ETCD_HOST") {
            Some(host) => format!("etcd (ETCD_HOST={host})"),
            None => "another DCS (DCS_ENABLE_KUBERNETES_API is not set)".into(),
        };
        return Err(SpiloError::NotKubernetesDcs(dcs));
    }
    // Spilo tests the variable for non-emptiness only: any value means ConfigMaps.
    if get(env, "KUBERNETES_USE_CONFIGMAPS").is_none() {
        return Err(SpiloError::EndpointsMode);
    }
    let mut k8s = Map::new();
    k8s.insert("scope_label".into(), json!("version"));
    k8s.insert("role_label".into(), json!("spilo-role"));
    k8s.insert("leader_label_value".into(), json!("master"));
    k8s.insert("follower_label_value".into(), json!("replica"));
    k8s.insert("standby_leader_label_value".into(), json!("master"));
    let labels = match json_object(env, "KUBERNETES_LABELS") {
        Some(Ok(labels)) => labels,
        Some(Err(reason)) => {
            warnings.push(format!("{reason}; using Spilo's default {DEFAULT_LABELS}"));
            serde_json::from_str(DEFAULT_LABELS).expect("valid default")
        }
        None => serde_json::from_str(DEFAULT_LABELS).expect("valid default"),
    };
    k8s.insert("labels".into(), labels);
    const SKIP: &[&str] = &[
        "LABELS",
        "BOOTSTRAP_LABELS",
        "USE_CONFIGMAPS",
        "BYPASS_API_SERVICE",
        "SERVICE_HOST",
        "SERVICE_PORT",
    ];
    for (name, value) in env {
        let Some(key) = name.strip_prefix("KUBERNETES_") else {
            continue;
        };
        if value.is_empty()
            || SKIP.contains(&key)
            || key.starts_with("SERVICE_PORT")
            || key.starts_with("PORT")
        {
            continue;
        }
        k8s.insert(key.to_ascii_lowercase(), json!(value));
    }
    match json_object(env, "KUBERNETES_BOOTSTRAP_LABELS") {
        Some(Ok(labels)) => {
            k8s.insert("bootstrap_labels".into(), labels);
        }
        Some(Err(reason)) => warnings.push(format!("{reason}; no bootstrap labels")),
        None => {}
    }
    Ok(Value::Object(k8s))
}

/// Patroni's configuration for `member` of the Spilo pod whose container has `env`.
pub fn patroni_config(env: &Env, member: &Member, paths: &Paths) -> Result<Launch, SpiloError> {
    match member.pod_ip.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_loopback() => {}
        _ => return Err(SpiloError::PodIp(member.pod_ip.to_string())),
    }
    let scope = get(env, "SCOPE").ok_or(SpiloError::Invalid {
        variable: "SCOPE",
        reason: "not set: the operator always sets the cluster name".into(),
    })?;
    let mut warnings = Vec::new();
    let kubernetes = kubernetes(env, &mut warnings)?;
    let user = user_configuration(env)?;
    let boot = bootstrap::bootstrap(
        env,
        &paths.hosts,
        &paths.bin_dir,
        &paths.data_dir,
        &paths.run_dir,
    )?;
    warnings.extend(boot.warnings);
    for name in [
        "WAL_S3_BUCKET",
        "WAL_GS_BUCKET",
        "WAL_GCS_BUCKET",
        "WAL_SWIFT_BUCKET",
        "WALE_S3_PREFIX",
        "WALG_S3_PREFIX",
        "WALE_GS_PREFIX",
        "WALG_GS_PREFIX",
        "WALG_AZ_PREFIX",
        "AZURE_STORAGE_ACCOUNT",
    ] {
        if let Some(value) = get(env, name) {
            warnings.push(format!(
                "{name}={value}: WAL archiving and backups are off in this world (no WAL storage)"
            ));
        }
    }
    if get(env, "PAM_OAUTH2").is_some() {
        warnings.push("PAM_OAUTH2: no PAM authentication in this world (no pam lines)".into());
    }

    let standby_user = get(env, "PGUSER_STANDBY").unwrap_or("standby");
    let human_role = get(env, "HUMAN_ROLE").unwrap_or("zalandos");
    let post_init = paths.run_dir.join("post_init.sql");
    let mut dcs = defaults::dcs();
    if let Some(standby) = boot.standby_cluster {
        dcs["standby_cluster"] = standby;
    }
    let mut bootstrap = Map::new();
    bootstrap.insert(
        "post_init".into(),
        json!(format!(
            "{} -X -q -f {}",
            bootstrap::shell_word(&paths.bin_dir.join("psql").to_string_lossy()),
            bootstrap::shell_word(&post_init.to_string_lossy())
        )),
    );
    bootstrap.insert("dcs".into(), dcs);
    bootstrap.insert("initdb".into(), defaults::initdb());
    bootstrap.extend(boot.bootstrap);

    let spilo = json!({
        "scope": scope,
        "name": member.name,
        "bootstrap": Value::Object(bootstrap),
        "restapi": {},
        "postgresql": {
            "use_unix_socket": true,
            "parameters": defaults::local_parameters(),
            "pg_hba": defaults::pg_hba(standby_user, get(env, "ALLOW_NOSSL").is_some()),
            "authentication": {
                "superuser": {
                    "username": get(env, "PGUSER_SUPERUSER").unwrap_or("postgres"),
                    "password": get(env, "PGPASSWORD_SUPERUSER").unwrap_or("zalando"),
                },
                "replication": {
                    "username": standby_user,
                    "password": get(env, "PGPASSWORD_STANDBY").unwrap_or("standby"),
                },
            },
            "create_replica_methods": ["basebackup"],
            "basebackup": [{"checkpoint": "fast"}],
        },
        "kubernetes": kubernetes,
    });
    let mut config = merge(user, spilo);
    pin_world(&mut config, env, member, paths);

    let mut files = vec![File {
        path: post_init,
        contents: defaults::post_init_sql(human_role),
        mode: 0o600,
    }];
    files.extend(boot.files.into_iter().map(|(name, contents)| File {
        path: paths.run_dir.join(name),
        contents,
        mode: 0o600,
    }));
    let env_out = BTreeMap::from([
        ("KUBECONFIG".into(), paths.kubeconfig.display().to_string()),
        // Spilo's image runs with an en_US.UTF-8 locale (inferred); initdb without a locale
        // option (the operator's usual list) takes the environment's.
        ("LANG".into(), "en_US.UTF-8".into()),
        ("LC_ALL".into(), "en_US.UTF-8".into()),
        ("PGVERSION".into(), major(env).unwrap_or_default()),
    ]);
    Ok(Launch {
        config,
        files,
        env: env_out,
        warnings,
    })
}

fn path(p: &Path) -> Value {
    json!(p.display().to_string())
}

/// What holds whatever the manifest says: a container path or an all-interfaces listen address
/// means nothing (or something dangerous) on this machine.
fn pin_world(config: &mut Value, env: &Env, member: &Member, paths: &Paths) {
    let api_port = get(env, "APIPORT").unwrap_or("8008");
    let pg_port = get(env, "PGPORT").unwrap_or("5432");
    let ip = member.pod_ip;
    config["restapi"]["listen"] = json!(format!("{ip}:{api_port}"));
    config["restapi"]["connect_address"] = json!(format!("{ip}:{api_port}"));

    let pg = &mut config["postgresql"];
    pg["listen"] = json!(format!("{ip}:{pg_port}"));
    pg["connect_address"] = json!(format!("{ip}:{pg_port}"));
    pg["data_dir"] = path(&paths.data_dir);
    pg["bin_dir"] = path(&paths.bin_dir);
    pg["pgpass"] = path(&paths.run_dir.join("pgpass"));
    let params = &mut pg["parameters"];
    params["unix_socket_directories"] = path(&paths.run_dir);
    params["ssl_cert_file"] = path(&paths.tls.cert);
    params["ssl_key_file"] = path(&paths.tls.key);
    for (key, file) in [
        ("ssl_ca_file", &paths.tls.ca),
        ("ssl_crl_file", &paths.tls.crl),
    ] {
        match file {
            Some(file) => params[key] = path(file),
            None => {
                if let Some(map) = params.as_object_mut() {
                    map.remove(key);
                }
            }
        }
    }

    let k8s = &mut config["kubernetes"];
    k8s["namespace"] = json!(member.namespace);
    k8s["context"] = json!(paths.context);
    k8s["use_endpoints"] = json!(false);
    // The API server's own endpoints may be anything; only the kubeconfig's loopback address
    // is dialled.
    k8s["bypass_api_service"] = json!(false);
    if let Some(map) = k8s.as_object_mut() {
        for key in ["pod_ip", "ports"] {
            map.remove(key);
        }
    }
}
