//! How a member comes into being besides initdb: a clone of a running cluster by basebackup
//! (`CLONE_*`) and a streaming standby cluster (`STANDBY_*`), as Spilo's `get_placeholders`
//! reads them; and the WAL-storage variants this world cannot serve yet.
//!
//! Hosts: the operator names the source by its master Service (`CLONE_HOST` = the source
//! cluster's name) or by whatever the manifest says (`STANDBY_HOST`). There is no cluster DNS,
//! so the runner resolves a Service's DNS name ([`service_of`]) to its ClusterIP, which it
//! serves itself, and passes that map in; a literal IP must be in 127.0.0.0/8 (nothing in this
//! world may dial anywhere else).

use super::{Env, SpiloError, get};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// Variables that ask for WAL storage (Spilo's `set_extended_wale_placeholders` and
/// `AUTO_ENABLE_WALG_RESTORE` names) for a clone or a standby, `prefix` being `CLONE_` or
/// `STANDBY_`.
fn wal_storage_variable(env: &Env, prefix: &str) -> Option<String> {
    let mut names = Vec::new();
    for store in ["S3", "GS", "GCS", "SWIFT", "AZ"] {
        names.push(format!("{prefix}WALE_{store}_PREFIX"));
        names.push(format!("{prefix}WALG_{store}_PREFIX"));
        names.push(format!("{prefix}WAL_{store}_BUCKET"));
    }
    names.push(format!("{prefix}AZURE_STORAGE_ACCOUNT"));
    names.into_iter().find(|n| get(env, n).is_some())
}

/// The Service (namespace, name) a host name means inside a pod of `namespace`, as cluster DNS
/// would answer it: `name`, `name.ns`, `name.ns.svc` and `name.ns.svc.cluster.local`. `None` for
/// an IP or any other name.
pub fn service_of(host: &str, namespace: &str) -> Option<(String, String)> {
    if host.parse::<IpAddr>().is_ok() {
        return None;
    }
    let host = host.trim_end_matches('.');
    let host = host.strip_suffix(".cluster.local").unwrap_or(host);
    let host = host.strip_suffix(".svc").unwrap_or(host);
    let label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    match host.split('.').collect::<Vec<_>>().as_slice() {
        [name] if label(name) => Some((namespace.to_string(), name.to_string())),
        [name, ns] if label(name) && label(ns) => Some((ns.to_string(), name.to_string())),
        _ => None,
    }
}

/// The variables naming a host the runner resolves.
pub const HOST_VARIABLES: [&str; 2] = ["CLONE_HOST", "STANDBY_HOST"];

/// The runner's answer for a host name: the IP to dial, or why not.
pub(super) fn resolve(
    variable: &'static str,
    host: &str,
    hosts: &BTreeMap<String, String>,
) -> Result<String, SpiloError> {
    let ip = match host.parse::<IpAddr>() {
        Ok(_) => host.to_string(),
        Err(_) => hosts
            .get(host)
            .cloned()
            .ok_or_else(|| SpiloError::UnresolvedHost {
                variable,
                host: host.to_string(),
            })?,
    };
    match ip.parse::<IpAddr>() {
        Ok(addr) if addr.is_loopback() => Ok(ip),
        _ => Err(SpiloError::NonLoopbackHost {
            variable,
            host: host.to_string(),
            ip,
        }),
    }
}

/// One pgpass field: `\` and `:` escaped (Spilo's `escape_pgpass_value`).
pub(super) fn pgpass_field(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == '\\' || c == ':' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What the bootstrap section gains, and the files it needs.
#[derive(Debug, Default)]
pub(super) struct Bootstrap {
    /// Keys for `bootstrap` (`method` and the method's section).
    pub bootstrap: serde_json::Map<String, Value>,
    /// `bootstrap.dcs.standby_cluster`, if a standby.
    pub standby_cluster: Option<Value>,
    /// (file name in the run dir, contents) to write with mode 0600.
    pub files: Vec<(String, String)>,
    /// Things Spilo would do that this world skips.
    pub warnings: Vec<String>,
}

/// Clone and standby settings from the environment.
///
/// `run_dir` holds the clone's pgpass, `bin_dir` the pg_basebackup to run, `data_dir` where it
/// writes.
pub(super) fn bootstrap(
    env: &Env,
    hosts: &BTreeMap<String, String>,
    bin_dir: &Path,
    data_dir: &Path,
    run_dir: &Path,
) -> Result<Bootstrap, SpiloError> {
    let mut out = Bootstrap::default();
    match get(env, "CLONE_METHOD").unwrap_or("") {
        "CLONE_WITH_WALE" => {
            return Err(SpiloError::WalStorage {
                what: "a clone from a WAL archive (CLONE_METHOD=CLONE_WITH_WALE)".into(),
            });
        }
        "CLONE_WITH_BASEBACKUP" => {
            clone_with_basebackup(env, hosts, bin_dir, data_dir, run_dir, &mut out)?;
            return Ok(out);
        }
        "" => {}
        other => out.warnings.push(format!(
            "CLONE_METHOD={other:?} is not a method Spilo knows; bootstrapping with initdb as Spilo does"
        )),
    }
    // Spilo only looks at the standby variables when not cloning.
    if get(env, "STANDBY_METHOD") == Some("STANDBY_WITH_WALE") {
        return Err(SpiloError::WalStorage {
            what: "a standby fed from a WAL archive (STANDBY_METHOD=STANDBY_WITH_WALE)".into(),
        });
    }
    if let Some(variable) = wal_storage_variable(env, "STANDBY_") {
        return Err(SpiloError::WalStorage {
            what: format!("a standby fed from a WAL archive ({variable})"),
        });
    }
    if let Some(host) = get(env, "STANDBY_HOST") {
        let ip = resolve("STANDBY_HOST", host, hosts)?;
        let mut standby = serde_json::Map::new();
        // Patroni's own basebackup method: Spilo's `basebackup_fast_xlog` is a script that runs
        // pg_basebackup the same way.
        standby.insert("create_replica_methods".into(), json!(["basebackup"]));
        standby.insert("host".into(), json!(ip));
        if let Some(port) = get(env, "STANDBY_PORT") {
            standby.insert("port".into(), port_value(port));
        }
        if let Some(slot) = get(env, "STANDBY_PRIMARY_SLOT_NAME") {
            standby.insert("primary_slot_name".into(), json!(slot));
        }
        out.standby_cluster = Some(Value::Object(standby));
    }
    Ok(out)
}

/// A port as Spilo's YAML template renders it: a number when it is one.
fn port_value(port: &str) -> Value {
    port.trim()
        .parse::<u16>()
        .map(Value::from)
        .unwrap_or_else(|_| json!(port))
}

/// Spilo's `clone_with_basebackup`: pg_basebackup of the source's primary into the data dir,
/// which Patroni then starts as a new primary. Spilo's script runs
/// `pg_basebackup -X stream` with a pgpass file; here Patroni runs pg_basebackup itself
/// (`no_params`, so Patroni adds no `--scope`/`--datadir` of its own).
fn clone_with_basebackup(
    env: &Env,
    hosts: &BTreeMap<String, String>,
    bin_dir: &Path,
    data_dir: &Path,
    run_dir: &Path,
    out: &mut Bootstrap,
) -> Result<(), SpiloError> {
    // Spilo only logs a warning and runs initdb when one is missing; an empty cluster where a
    // clone was asked for is worse than a clear error, so this world refuses.
    let missing: Vec<&'static str> = ["CLONE_SCOPE", "CLONE_HOST", "CLONE_USER", "CLONE_PASSWORD"]
        .into_iter()
        .filter(|n| get(env, n).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(SpiloError::IncompleteClone { missing });
    }
    let (scope, host, user, password) = (
        get(env, "CLONE_SCOPE").unwrap_or_default(),
        get(env, "CLONE_HOST").unwrap_or_default(),
        get(env, "CLONE_USER").unwrap_or_default(),
        get(env, "CLONE_PASSWORD").unwrap_or_default(),
    );
    let port = get(env, "CLONE_PORT").unwrap_or("5432");
    let ip = resolve("CLONE_HOST", host, hosts)?;
    let pgpass_name = format!("pgpass-clone-{}", scope.replace(['/', ' '], "_"));
    let pgpass = run_dir.join(&pgpass_name);
    out.files.push((
        pgpass_name,
        format!(
            "{}:{}:*:{}:{}\n",
            pgpass_field(&ip),
            pgpass_field(port),
            pgpass_field(user),
            pgpass_field(password)
        ),
    ));
    let dsn = format!(
        "host={ip} port={port} user={} passfile={} sslmode=prefer",
        conninfo_value(user),
        conninfo_value(&pgpass.to_string_lossy()),
    );
    let command = format!(
        "{} --pgdata={} -X stream --checkpoint=fast --no-password --dbname={}",
        shell_word(&bin_dir.join("pg_basebackup").to_string_lossy()),
        shell_word(&data_dir.to_string_lossy()),
        shell_word(&dsn),
    );
    out.bootstrap
        .insert("method".into(), json!("clone_with_basebackup"));
    out.bootstrap.insert(
        "clone_with_basebackup".into(),
        json!({"command": command, "no_params": true}),
    );
    Ok(())
}

/// A libpq conninfo value: single-quoted with `\` and `'` escaped.
fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// One word for Patroni's `shlex.split` (POSIX rules): single-quoted, `'` as `'"'"'`.
pub(super) fn shell_word(value: &str) -> String {
    if !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=+,:@%".contains(&b))
    {
        return value.to_string();
    }
    format!("'{}'", value.replace('\'', "'\"'\"'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn hosts_resolve_to_loopback_only() {
        let hosts = BTreeMap::from([
            ("acid-source".to_string(), "127.10.0.7".to_string()),
            ("evil".to_string(), "10.1.2.3".to_string()),
        ]);
        assert_eq!(
            resolve("CLONE_HOST", "acid-source", &hosts).unwrap(),
            "127.10.0.7"
        );
        assert_eq!(
            resolve("CLONE_HOST", "127.10.0.9", &hosts).unwrap(),
            "127.10.0.9"
        );
        assert!(matches!(
            resolve("CLONE_HOST", "other", &hosts),
            Err(SpiloError::UnresolvedHost { .. })
        ));
        assert_eq!(
            service_of("acid-source", "ns"),
            Some(("ns".into(), "acid-source".into()))
        );
        for host in [
            "acid-source.other",
            "acid-source.other.svc",
            "acid-source.other.svc.cluster.local",
            "acid-source.other.svc.cluster.local.",
        ] {
            assert_eq!(
                service_of(host, "ns"),
                Some(("other".into(), "acid-source".into())),
                "{host}"
            );
        }
        for host in ["127.0.0.5", "db.example.com", "Acid", ""] {
            assert_eq!(service_of(host, "ns"), None, "{host}");
        }
        assert!(matches!(
            resolve("CLONE_HOST", "other", &hosts),
            Err(SpiloError::UnresolvedHost { .. })
        ));
        for bad in ["evil", "192.168.1.1", "8.8.8.8"] {
            assert!(
                matches!(
                    resolve("STANDBY_HOST", bad, &hosts),
                    Err(SpiloError::NonLoopbackHost { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn shell_words_and_pgpass_fields_escape() {
        assert_eq!(shell_word("/a/b-1"), "/a/b-1");
        assert_eq!(shell_word("host=x port=1"), "'host=x port=1'");
        assert_eq!(shell_word("it's"), "'it'\"'\"'s'");
        assert_eq!(pgpass_field(r"a:b\c"), r"a\:b\\c");
        assert_eq!(conninfo_value(r"p'w\"), r"'p\'w\\'");
    }

    #[test]
    fn wal_variants_are_refused() {
        let hosts = BTreeMap::new();
        let p = Path::new("/x");
        for vars in [
            vec![("CLONE_METHOD", "CLONE_WITH_WALE")],
            vec![("STANDBY_METHOD", "STANDBY_WITH_WALE")],
            vec![("STANDBY_WALE_GS_PREFIX", "gs://b/p")],
            vec![
                ("STANDBY_WAL_S3_BUCKET", "b"),
                ("STANDBY_HOST", "127.0.0.5"),
            ],
        ] {
            let err = bootstrap(&env(&vars), &hosts, p, p, p).unwrap_err();
            assert!(matches!(err, SpiloError::WalStorage { .. }), "{vars:?}");
            assert!(
                err.to_string().contains("until WAL storage exists"),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_clone_method_falls_back_to_initdb_with_a_warning() {
        let out = bootstrap(
            &env(&[("CLONE_METHOD", "CLONE_WITH_MAGIC")]),
            &BTreeMap::new(),
            Path::new("/b"),
            Path::new("/d"),
            Path::new("/r"),
        )
        .unwrap();
        assert!(out.bootstrap.is_empty() && out.standby_cluster.is_none());
        assert_eq!(out.warnings.len(), 1);
    }
}
