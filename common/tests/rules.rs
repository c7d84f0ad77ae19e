//! Table-driven tests of the admission rules (`common::rules`) as the webhook and the controller
//! call them: `admission::mutate`, `admission::validate` and `manifest::check_manifest`, on
//! manifests written as YAML. Each denial is checked for its field, its rule and a helpful message.

use common::config::Config;
use common::crd::Postgresql;
use common::rules::admission::{self, Context, Operation};
use common::rules::manifest::{self, MAX_CLUSTER_NAME_LENGTH};
use common::rules::{Verdict, Violation};
use serde_json::Value;
use std::path::{Path, PathBuf};

const TODAY: &str = "2026-01-01";

/// The base of most cases: valid with the default configuration, no clone, no standby.
const BASE: &str = r#"
apiVersion: acid.zalan.do/v1
kind: postgresql
metadata:
  name: acid-minimal-cluster
spec:
  teamId: acid
  volume:
    size: 1Gi
  numberOfInstances: 2
  users:
    zalando: [superuser, createdb]
    foo_user: []
  databases:
    foo: zalando
  preparedDatabases:
    bar: {}
  allowedSourceRanges: [10.0.0.0/8]
  postgresql:
    version: "17"
"#;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn yaml_value(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("bad test YAML ({e}):\n{text}"))
}

/// RFC 7386 JSON merge patch: objects merge, `null` removes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn typed(value: Value) -> Postgresql {
    serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("not a postgresql ({e}): {value:#}"))
}

/// The base manifest with a YAML merge patch applied.
fn pg(patch: &str) -> Postgresql {
    let mut value = yaml_value(BASE);
    if !patch.trim().is_empty() {
        merge(&mut value, &yaml_value(patch));
    }
    typed(value)
}

/// A manifest of the repository.
fn sample(path: &str) -> Postgresql {
    let text = std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    typed(yaml_value(&text))
}

fn ctx(config: &Config) -> Context<'_> {
    Context {
        config,
        controller_id: "",
        today: TODAY,
    }
}

fn create(config: &Config, pg: &Postgresql) -> Verdict {
    admission::validate(&ctx(config), Operation::Create, None, pg, Some("17"))
}

fn update(config: &Config, old: &Postgresql, new: &Postgresql) -> Verdict {
    admission::validate(&ctx(config), Operation::Update, Some(old), new, None)
}

fn defaults(_: &mut Config) {}

type Tweak = fn(&mut Config);

fn config_with(tweak: Tweak) -> Config {
    let mut config = Config::default();
    tweak(&mut config);
    config
}

fn show(verdict: &Verdict) -> String {
    format!(
        "violations: {:#?}\nwarnings: {:#?}",
        verdict.violations, verdict.warnings
    )
}

/// Asserts exactly one violation, with this rule and field and a message containing `needle`.
fn assert_denied(case: &str, verdict: &Verdict, rule: &str, field: &str, needle: &str) {
    let [
        Violation {
            field: got_field,
            message,
            rule: got_rule,
        },
    ] = verdict.violations.as_slice()
    else {
        panic!(
            "{case}: expected exactly one violation ({rule} on {field})\n{}",
            show(verdict)
        );
    };
    assert_eq!(got_rule, &rule, "{case}: rule\n{}", show(verdict));
    assert_eq!(got_field, field, "{case}: field\n{}", show(verdict));
    assert!(
        message.contains(needle),
        "{case}: message {message:?} should contain {needle:?}"
    );
    assert!(!verdict.allowed(), "{case}");
    assert_eq!(verdict.message(), format!("{field}: {message}"), "{case}");
}

fn assert_allowed(case: &str, verdict: &Verdict) {
    assert!(
        verdict.allowed(),
        "{case}: expected no violation\n{}",
        show(verdict)
    );
    assert_eq!(verdict.message(), "", "{case}");
}

// ---------------------------------------------------------------------------------------------
// The manifest rules, through `validate` on CREATE (so every rule of the chain runs).
// ---------------------------------------------------------------------------------------------

/// (case, configuration, merge patch on BASE, rule, field, part of the message)
type Denied = (
    &'static str,
    Tweak,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

fn long_name(len: usize) -> String {
    let mut name = "acid-".to_string();
    while name.len() < len {
        name.push('x');
    }
    name
}

#[test]
fn cluster_name_length_boundary() {
    assert_eq!(MAX_CLUSTER_NAME_LENGTH, 58);
    let config = Config::default();
    let ok = long_name(58);
    assert_allowed(
        "58 characters",
        &create(&config, &pg(&format!("metadata: {{name: {ok}}}"))),
    );
    let long = long_name(59);
    let verdict = create(&config, &pg(&format!("metadata: {{name: {long}}}")));
    assert_denied(
        "59 characters",
        &verdict,
        "cluster-name",
        "metadata.name",
        "is 59 characters long; at most 58 fit",
    );
    assert!(
        verdict.violations[0]
            .message
            .contains(&format!("{long}-repl"))
    );
}

const DENIED: &[Denied] = &[
    // Cluster name form.
    (
        "upper-case name",
        defaults,
        "metadata: {name: Acid-Cluster}",
        "cluster-name",
        "metadata.name",
        "lower-case letters, digits and '-'",
    ),
    (
        "name ending in a dash",
        defaults,
        "metadata: {name: acid-cluster-}",
        "cluster-name",
        "metadata.name",
        "end with a letter or digit",
    ),
    (
        "name starting with a digit",
        defaults,
        "metadata: {name: 1-acid}",
        "cluster-name",
        "metadata.name",
        "start with a letter",
    ),
    (
        "name with an underscore",
        defaults,
        "metadata: {name: acid_cluster}",
        "cluster-name",
        "metadata.name",
        "\"acid_cluster\"",
    ),
    // Team-id prefix.
    (
        "name without the team prefix",
        |c| c.enable_team_id_clustername_prefix = true,
        "metadata: {name: other-cluster}",
        "team-prefix",
        "metadata.name",
        "must start with the team id and a dash (acid-...)",
    ),
    (
        "name equal to the team id",
        |c| c.enable_team_id_clustername_prefix = true,
        "metadata: {name: acid}",
        "team-prefix",
        "metadata.name",
        "enable_team_id_clustername_prefix is on",
    ),
    (
        "team prefix without the dash",
        |c| c.enable_team_id_clustername_prefix = true,
        "metadata: {name: acidcluster}",
        "team-prefix",
        "metadata.name",
        "(acid-...)",
    ),
    (
        "empty team id",
        |c| c.enable_team_id_clustername_prefix = true,
        "spec: {teamId: ''}",
        "team-prefix",
        "spec.teamId",
        "must be set because enable_team_id_clustername_prefix is on",
    ),
    // User names.
    (
        "upper-case user",
        defaults,
        "spec: {users: {Foo: []}}",
        "user-name",
        "spec.users.Foo",
        "\"Foo\" is not a valid role name",
    ),
    (
        "user ending in an underscore",
        defaults,
        "spec: {users: {foo_: []}}",
        "user-name",
        "spec.users.foo_",
        "starting and ending with a letter or digit",
    ),
    (
        "user with an empty namespace part",
        defaults,
        "spec: {users: {'ns..user': []}}",
        "user-name",
        "spec.users.ns..user",
        "namespace.user",
    ),
    (
        "protected role",
        defaults,
        "spec: {users: {admin: []}}",
        "user-name",
        "spec.users.admin",
        "\"admin\" is a protected role name (protected_role_names)",
    ),
    (
        "configured protected role",
        |c| c.teams_api.protected_role_names = vec!["ops".into()],
        "spec: {users: {ops: [login]}}",
        "user-name",
        "spec.users.ops",
        "protected role name",
    ),
    (
        "superuser role",
        defaults,
        "spec: {users: {postgres: []}}",
        "user-name",
        "spec.users.postgres",
        "\"postgres\" is a system role the operator manages itself",
    ),
    (
        "replication role",
        defaults,
        "spec: {users: {standby: []}}",
        "user-name",
        "spec.users.standby",
        "system role",
    ),
    (
        "configured superuser role",
        |c| c.users.super_username = "root".into(),
        "spec: {users: {root: []}}",
        "user-name",
        "spec.users.root",
        "system role",
    ),
    // User flags.
    (
        "unknown flag",
        defaults,
        "spec: {users: {zalando: [superpower]}}",
        "user-flags",
        "spec.users.zalando",
        "unknown flag \"superpower\"; allowed: bypassrls, createdb",
    ),
    (
        "login and nologin",
        defaults,
        "spec: {users: {foo_user: [login, nologin]}}",
        "user-flags",
        "spec.users.foo_user",
        "flags login and nologin contradict each other; keep one",
    ),
    (
        "contradiction across letter case",
        defaults,
        "spec: {users: {foo_user: [NOCREATEDB, createdb]}}",
        "user-flags",
        "spec.users.foo_user",
        "createdb and nocreatedb contradict",
    ),
    (
        "superuser and nosuperuser",
        defaults,
        "spec: {users: {zalando: [superuser, nosuperuser]}}",
        "user-flags",
        "spec.users.zalando",
        "superuser and nosuperuser",
    ),
    // Pooler user.
    (
        "pooler as superuser",
        defaults,
        "spec: {connectionPooler: {user: postgres}}",
        "pooler-user",
        "spec.connectionPooler.user",
        "the pooler needs a role of its own such as \"pooler\"",
    ),
    (
        "pooler as replication user",
        defaults,
        "spec: {connectionPooler: {user: standby}}",
        "pooler-user",
        "spec.connectionPooler.user",
        "system or protected role",
    ),
    (
        "pooler as protected role",
        defaults,
        "spec: {connectionPooler: {user: cron_admin}}",
        "pooler-user",
        "spec.connectionPooler.user",
        "\"cron_admin\"",
    ),
    // Databases.
    (
        "database name with a dash",
        defaults,
        "spec: {databases: {foo-db: zalando}}",
        "database-name",
        "spec.databases.foo-db",
        "\"foo-db\" is not a valid database name",
    ),
    (
        "database name starting with a digit",
        defaults,
        "spec: {databases: {1db: zalando}}",
        "database-name",
        "spec.databases.1db",
        "not starting with a digit",
    ),
    (
        "undeclared owner",
        defaults,
        "spec: {databases: {foo: ghost}}",
        "database-owner",
        "spec.databases.foo",
        "owner \"ghost\" is not declared under spec.users",
    ),
    (
        "owner without any users",
        defaults,
        "spec: {users: null}",
        "database-owner",
        "spec.databases.foo",
        "owner \"zalando\" is not declared",
    ),
    (
        "system role as owner",
        defaults,
        "spec: {databases: {foo: postgres}}",
        "database-owner",
        "spec.databases.foo",
        "add it there or choose a declared role",
    ),
    // Prepared databases and schemas.
    (
        "prepared database name",
        defaults,
        "spec: {preparedDatabases: {bad-db: {}}}",
        "database-name",
        "spec.preparedDatabases.bad-db",
        "\"bad-db\" is not a valid database name",
    ),
    (
        "prepared schema name",
        defaults,
        "spec: {preparedDatabases: {bar: {schemas: {1data: {}}}}}",
        "schema-name",
        "spec.preparedDatabases.bar",
        "\"1data\" is not a valid schema name",
    ),
    (
        "extension schema name",
        defaults,
        "spec: {preparedDatabases: {bar: {extensions: {pgcrypto: my-schema}}}}",
        "schema-name",
        "spec.preparedDatabases.bar",
        "\"my-schema\"",
    ),
    // Maintenance windows.
    (
        "hour out of range",
        defaults,
        "spec: {maintenanceWindows: ['24:00-25:00']}",
        "maintenance-window",
        "spec.maintenanceWindows[0]",
        "must be HH:MM-HH:MM or Ddd:HH:MM-HH:MM with Ddd one of Mon..Sun",
    ),
    (
        "unknown weekday",
        defaults,
        "spec: {maintenanceWindows: ['Funday:01:00-02:00']}",
        "maintenance-window",
        "spec.maintenanceWindows[0]",
        "\"Funday:01:00-02:00\"",
    ),
    (
        "weekday on the end time",
        defaults,
        "spec: {maintenanceWindows: ['Mon:01:00-Tue:02:00']}",
        "maintenance-window",
        "spec.maintenanceWindows[0]",
        "Ddd:HH:MM-HH:MM",
    ),
    (
        "no end time",
        defaults,
        "spec: {maintenanceWindows: ['01:00']}",
        "maintenance-window",
        "spec.maintenanceWindows[0]",
        "HH:MM-HH:MM",
    ),
    (
        "end before start, second window",
        defaults,
        "spec: {maintenanceWindows: ['01:00-06:00', '06:00-01:00']}",
        "maintenance-window",
        "spec.maintenanceWindows[1]",
        "\"06:00-01:00\" ends before it starts",
    ),
    (
        "end before start by a minute, with weekday",
        defaults,
        "spec: {maintenanceWindows: ['Sat:10:31-10:30']}",
        "maintenance-window",
        "spec.maintenanceWindows[0]",
        "ends before it starts",
    ),
    // Logical backup schedule.
    (
        "schedule in words",
        defaults,
        "spec: {logicalBackupSchedule: every day}",
        "logical-backup-schedule",
        "spec.logicalBackupSchedule",
        "must be a five-field cron schedule such as \"30 00 * * *\"",
    ),
    (
        "four-field schedule",
        defaults,
        "spec: {logicalBackupSchedule: '30 00 * *'}",
        "logical-backup-schedule",
        "spec.logicalBackupSchedule",
        "\"30 00 * *\"",
    ),
    // Clone.
    (
        "clone uid",
        defaults,
        "spec: {clone: {cluster: acid-source, uid: not-a-uuid}}",
        "clone",
        "spec.clone.uid",
        "\"not-a-uuid\" must be the source cluster's UID (a UUID)",
    ),
    (
        "clone timestamp without offset",
        defaults,
        "spec: {clone: {cluster: acid-source, timestamp: '2026-08-31T12:00:00'}}",
        "clone",
        "spec.clone.timestamp",
        "must be RFC 3339 with a numeric offset",
    ),
    (
        "clone timestamp in UTC 'Z' form",
        defaults,
        "spec: {clone: {cluster: acid-source, timestamp: '2026-08-31T12:00:00Z'}}",
        "clone",
        "spec.clone.timestamp",
        "e.g. 2026-08-31T12:00:00+02:00",
    ),
    (
        "clone timestamp with month 13",
        defaults,
        "spec: {clone: {cluster: acid-source, timestamp: '2026-13-01T12:00:00+00:00'}}",
        "clone",
        "spec.clone.timestamp",
        "RFC 3339",
    ),
    (
        "basebackup clone of an invalid name",
        defaults,
        "spec: {clone: {cluster: Acid_Source}}",
        "clone",
        "spec.clone.cluster",
        "\"Acid_Source\" is not a valid cluster name to take a basebackup from",
    ),
    // Standby.
    (
        "standby without a source",
        defaults,
        "spec: {numberOfInstances: 1, standby: {standby_port: '5432'}}",
        "standby",
        "spec.standby",
        "exactly one of s3_wal_path, gs_wal_path and standby_host must be set, found 0",
    ),
    (
        "standby with only empty sources",
        defaults,
        "spec: {numberOfInstances: 1, standby: {s3_wal_path: '', standby_host: ''}}",
        "standby",
        "spec.standby",
        "found 0",
    ),
    (
        "standby with two sources",
        defaults,
        "spec: {numberOfInstances: 1, standby: {s3_wal_path: 's3://b/w', standby_host: acid-source}}",
        "standby",
        "spec.standby",
        "found 2",
    ),
    (
        "standby with three sources",
        defaults,
        "spec: {numberOfInstances: 1, standby: {s3_wal_path: 's3://b/w', gs_wal_path: 'gs://b/w', standby_host: h}}",
        "standby",
        "spec.standby",
        "found 3",
    ),
    // Sidecars.
    (
        "sidecar without image",
        defaults,
        "spec: {sidecars: [{name: exporter}]}",
        "sidecars",
        "spec.sidecars[0].image",
        "every sidecar needs an image",
    ),
    (
        "second sidecar without name",
        defaults,
        "spec: {sidecars: [{name: a, image: busybox}, {image: busybox}]}",
        "sidecars",
        "spec.sidecars[1].name",
        "every sidecar needs a name",
    ),
    (
        "sidecar with an empty image",
        defaults,
        "spec: {sidecars: [{name: a, image: ''}]}",
        "sidecars",
        "spec.sidecars[0].image",
        "needs an image",
    ),
    (
        "sidecars disabled",
        |c| c.kubernetes.enable_sidecars = false,
        "spec: {sidecars: [{name: exporter, image: busybox}]}",
        "sidecars",
        "spec.sidecars",
        "sidecars are disabled in the operator configuration (enable_sidecars: false)",
    ),
    // Init containers, both spellings.
    (
        "init container without image",
        defaults,
        "spec: {initContainers: [{name: date}]}",
        "init-containers",
        "spec.initContainers[0].image",
        "every init container needs an image",
    ),
    (
        "init container with an empty name",
        defaults,
        "spec: {initContainers: [{name: '', image: busybox}]}",
        "init-containers",
        "spec.initContainers[0].name",
        "every init container needs a name",
    ),
    (
        "legacy init container without image",
        defaults,
        "spec: {init_containers: [{name: date}]}",
        "init-containers",
        "spec.init_containers[0].image",
        "needs an image",
    ),
    (
        "init containers disabled",
        |c| c.kubernetes.enable_init_containers = false,
        "spec: {initContainers: [{name: date, image: busybox}]}",
        "init-containers",
        "spec.initContainers",
        "enable_init_containers: false",
    ),
    (
        "legacy init containers disabled",
        |c| c.kubernetes.enable_init_containers = false,
        "spec: {init_containers: [{name: date, image: busybox}]}",
        "init-containers",
        "spec.init_containers",
        "init containers are disabled",
    ),
    // Quantities.
    (
        "volume size with a space",
        defaults,
        "spec: {volume: {size: 1 GB}}",
        "quantity",
        "spec.volume.size",
        "\"1 GB\" is not a storage quantity such as 10Gi",
    ),
    (
        "empty volume size",
        defaults,
        "spec: {volume: {size: ''}}",
        "quantity",
        "spec.volume.size",
        "\"\" is not a storage quantity",
    ),
    (
        "cpu request in words",
        defaults,
        "spec: {resources: {requests: {cpu: 1 core}}}",
        "quantity",
        "spec.resources.requests.cpu",
        "\"1 core\" is not a CPU quantity such as 100m or 1",
    ),
    (
        "memory limit in words",
        defaults,
        "spec: {resources: {limits: {memory: lots}}}",
        "quantity",
        "spec.resources.limits.memory",
        "\"lots\" is not a memory quantity such as 100Mi",
    ),
    (
        "hugepages request",
        defaults,
        "spec: {resources: {requests: {hugepages-2Mi: 2 Mi}}}",
        "quantity",
        "spec.resources.requests.hugepages-2Mi",
        "is not a memory quantity",
    ),
    (
        "hugepages-1Gi limit",
        defaults,
        "spec: {resources: {limits: {hugepages-1Gi: 1gb}}}",
        "quantity",
        "spec.resources.limits.hugepages-1Gi",
        "\"1gb\"",
    ),
    (
        "pooler cpu limit",
        defaults,
        "spec: {connectionPooler: {resources: {limits: {cpu: fast}}}}",
        "quantity",
        "spec.connectionPooler.resources.limits.cpu",
        "\"fast\"",
    ),
    // Requests <= limits.
    (
        "cpu request above limit",
        defaults,
        "spec: {resources: {requests: {cpu: '2'}, limits: {cpu: 500m}}}",
        "requests-limits",
        "spec.resources.requests.cpu",
        "request \"2\" exceeds limit \"500m\"; lower the request or raise the limit",
    ),
    (
        "memory request above limit across units",
        defaults,
        "spec: {resources: {requests: {memory: 1Gi}, limits: {memory: 1000Mi}}}",
        "requests-limits",
        "spec.resources.requests.memory",
        "request \"1Gi\" exceeds limit \"1000Mi\"",
    ),
    (
        "memory request above limit, decimal vs binary",
        defaults,
        "spec: {resources: {requests: {memory: 1.1G}, limits: {memory: 1Gi}}}",
        "requests-limits",
        "spec.resources.requests.memory",
        "exceeds limit",
    ),
    (
        "hugepages request above limit",
        defaults,
        "spec: {resources: {requests: {hugepages-1Gi: 2Gi}, limits: {hugepages-1Gi: 1Gi}}}",
        "requests-limits",
        "spec.resources.requests.hugepages-1Gi",
        "request \"2Gi\" exceeds limit \"1Gi\"",
    ),
    (
        "pooler request above limit",
        defaults,
        "spec: {connectionPooler: {resources: {requests: {memory: 200Mi}, limits: {memory: 100Mi}}}}",
        "requests-limits",
        "spec.connectionPooler.resources.requests.memory",
        "exceeds limit \"100Mi\"",
    ),
    (
        "sidecar request above limit",
        defaults,
        "spec: {sidecars: [{name: a, image: b, resources: {requests: {cpu: 200m}, limits: {cpu: 100m}}}]}",
        "requests-limits",
        "spec.sidecars[0].resources.requests.cpu",
        "request \"200m\" exceeds limit \"100m\"",
    ),
    // Source ranges.
    (
        "CIDR prefix too long",
        defaults,
        "spec: {allowedSourceRanges: [10.0.0.0/8, 10.0.0.0/33]}",
        "source-ranges",
        "spec.allowedSourceRanges[1]",
        "\"10.0.0.0/33\" has an invalid prefix length (0 to 32)",
    ),
    (
        "address without prefix",
        defaults,
        "spec: {allowedSourceRanges: [192.168.1.1]}",
        "source-ranges",
        "spec.allowedSourceRanges[0]",
        "has no /prefix",
    ),
    (
        "host name instead of a network",
        defaults,
        "spec: {allowedSourceRanges: [example.com/24]}",
        "source-ranges",
        "spec.allowedSourceRanges[0]",
        "is not a valid address: expected an IPv4 or IPv6 network in CIDR notation",
    ),
    // Versions.
    (
        "version below the supported range",
        defaults,
        "spec: {postgresql: {version: '13'}}",
        "version",
        "spec.postgresql.version",
        "\"13\" is not a supported major version; use one of 14, 15, 16, 17, 18",
    ),
    (
        "version above the supported range",
        defaults,
        "spec: {postgresql: {version: '19'}}",
        "version",
        "spec.postgresql.version",
        "not a supported major version",
    ),
    (
        "minor version",
        defaults,
        "spec: {postgresql: {version: '17.2'}}",
        "version",
        "spec.postgresql.version",
        "\"17.2\"",
    ),
    (
        "empty version",
        defaults,
        "spec: {postgresql: {version: ''}}",
        "version",
        "spec.postgresql.version",
        "use one of",
    ),
];

#[test]
fn each_rule_denies_with_its_field_and_message() {
    for (case, tweak, patch, rule, field, needle) in DENIED {
        let config = config_with(*tweak);
        let manifest = pg(patch);
        let verdict = create(&config, &manifest);
        assert_denied(case, &verdict, rule, field, needle);
        // The same violation shows on UPDATE, and the manifest rules alone find it too (except
        // the version and source-range rules, which live outside check_manifest).
        let verdict = update(&config, &pg(""), &manifest);
        assert_denied(&format!("{case} (update)"), &verdict, rule, field, needle);
        if !matches!(*rule, "version" | "source-ranges") {
            let verdict = manifest::check_manifest(&config, &manifest);
            assert_denied(
                &format!("{case} (check_manifest)"),
                &verdict,
                rule,
                field,
                needle,
            );
        }
    }
}

#[test]
fn every_rule_of_check_manifest_has_a_denied_case() {
    let rules: Vec<&str> = DENIED.iter().map(|d| d.3).collect();
    for rule in [
        "cluster-name",
        "team-prefix",
        "user-name",
        "user-flags",
        "pooler-user",
        "database-name",
        "database-owner",
        "schema-name",
        "maintenance-window",
        "logical-backup-schedule",
        "clone",
        "standby",
        "sidecars",
        "init-containers",
        "quantity",
        "requests-limits",
        "source-ranges",
        "version",
    ] {
        assert!(rules.contains(&rule), "no denied case for {rule}");
    }
}

/// (case, configuration, merge patch on BASE)
const ACCEPTED: &[(&str, Tweak, &str)] = &[
    ("the base manifest", defaults, ""),
    ("single-letter name", defaults, "metadata: {name: a}"),
    ("name with digits", defaults, "metadata: {name: a1-2b}"),
    (
        "team prefix",
        |c| c.enable_team_id_clustername_prefix = true,
        "metadata: {name: acid-x}",
    ),
    (
        "team prefix, team id in upper case",
        |c| c.enable_team_id_clustername_prefix = true,
        "metadata: {name: acid-x}\nspec: {teamId: ACID}",
    ),
    (
        "no prefix needed when disabled",
        defaults,
        "metadata: {name: other-cluster}\nspec: {teamId: ''}",
    ),
    (
        "user names",
        defaults,
        "spec: {users: {a: [], robot-1: [], app_user: null, ns.app-user: [LOGIN]}}",
    ),
    (
        "every known flag in either case",
        defaults,
        "spec: {users: {foo_user: [BYPASSRLS, createdb, CreateRole, inherit, login, REPLICATION, superuser]}}",
    ),
    (
        "only negative flags",
        defaults,
        "spec: {users: {foo_user: [nobypassrls, nocreatedb, nocreaterole, noinherit, nologin, noreplication, nosuperuser]}}",
    ),
    (
        "a flag twice",
        defaults,
        "spec: {users: {foo_user: [login, LOGIN]}}",
    ),
    (
        "protected names are configurable",
        |c| c.teams_api.protected_role_names = vec!["ops".into()],
        "spec: {users: {admin: [], cron_admin: []}}",
    ),
    (
        "system names are configurable",
        |c| {
            c.users.super_username = "root".into();
            c.users.replication_username = "replicator".into();
        },
        "spec: {users: {postgres: [], standby: []}}",
    ),
    (
        "pooler with its own user",
        defaults,
        "spec: {connectionPooler: {user: pooler}}",
    ),
    (
        "pooler without a user",
        defaults,
        "spec: {connectionPooler: {mode: session}}",
    ),
    (
        "database names",
        defaults,
        "spec: {databases: {Foo_Bar: zalando, _x: foo_user, db2: zalando}}",
    ),
    ("no databases", defaults, "spec: {databases: null}"),
    (
        "prepared database with schemas and extensions",
        defaults,
        "spec: {preparedDatabases: {bar: {defaultUsers: true, schemas: {data: {defaultRoles: true}, History: {}}, extensions: {pgcrypto: public, pg_partman: data}}}}",
    ),
    (
        "maintenance windows",
        defaults,
        "spec: {maintenanceWindows: ['01:00-06:00', 'Sat:00:00-04:00', 'Sun:23:00-23:59', '1:5-2:05', '00:00-23:59']}",
    ),
    (
        "maintenance window of no length",
        defaults,
        "spec: {maintenanceWindows: ['Mon:03:00-03:00']}",
    ),
    (
        "maintenance window with spaces around",
        defaults,
        "spec: {maintenanceWindows: [' 01:00-02:00 ']}",
    ),
    (
        "logical backup schedules",
        defaults,
        "spec: {logicalBackupSchedule: '30 00 * * *'}",
    ),
    (
        "logical backup schedule with steps, ranges and lists",
        defaults,
        "spec: {logicalBackupSchedule: '*/15 1-5 1,15 * 0-6/2'}",
    ),
    (
        "basebackup clone",
        defaults,
        "spec: {clone: {cluster: acid-source, uid: efd12e58-5786-11e8-b5a7-06148230260c}}",
    ),
    (
        "point-in-time clone (the cluster name is not used as a host)",
        defaults,
        "spec: {clone: {cluster: Any_Name, timestamp: '2026-08-31T12:00:00.123-05:30', s3_wal_path: 's3://b/w'}}",
    ),
    (
        "standby from S3",
        defaults,
        "spec: {numberOfInstances: 1, standby: {s3_wal_path: 's3://b/w'}}",
    ),
    (
        "standby from GCS",
        defaults,
        "spec: {numberOfInstances: 1, standby: {gs_wal_path: 'gs://b/w'}}",
    ),
    (
        "standby from a host, empty other sources",
        defaults,
        "spec: {numberOfInstances: 1, standby: {standby_host: acid-source, standby_port: '5433', s3_wal_path: ''}}",
    ),
    (
        "sidecars with name and image",
        defaults,
        "spec: {sidecars: [{name: a, image: busybox}, {name: b, image: busybox, resources: {requests: {cpu: 10m}, limits: {cpu: 10m}}}]}",
    ),
    (
        "empty sidecar list",
        |c| c.kubernetes.enable_sidecars = false,
        "spec: {sidecars: []}",
    ),
    (
        "init containers, both spellings",
        defaults,
        "spec: {initContainers: [{name: a, image: busybox}], init_containers: [{name: b, image: busybox}]}",
    ),
    (
        "empty init containers when disabled",
        |c| c.kubernetes.enable_init_containers = false,
        "spec: {initContainers: []}",
    ),
    (
        "quantities of every form",
        defaults,
        "spec: {volume: {size: 10G}, resources: {requests: {cpu: '0.5', memory: '1e3', hugepages-2Mi: 0Mi}, limits: {cpu: '1', memory: 1.5Ki, hugepages-2Mi: 0Mi}}}",
    ),
    (
        "requests equal to limits",
        defaults,
        "spec: {resources: {requests: {cpu: '1', memory: 1Gi}, limits: {cpu: 1000m, memory: 1024Mi}}}",
    ),
    (
        "requests without limits and limits without requests",
        defaults,
        "spec: {resources: {requests: {cpu: '64'}}, connectionPooler: {resources: {limits: {memory: 1Mi}}}}",
    ),
    (
        "empty quantities count as unset",
        defaults,
        "spec: {resources: {requests: {cpu: ''}, limits: {cpu: ''}}}",
    ),
    (
        "IPv4 and IPv6 source ranges",
        defaults,
        "spec: {allowedSourceRanges: [0.0.0.0/0, 127.0.0.1/32, '::1/128', '2001:db8::/32']}",
    ),
    (
        "empty source ranges",
        defaults,
        "spec: {allowedSourceRanges: []}",
    ),
    (
        "lowest version",
        defaults,
        "spec: {postgresql: {version: '14'}}",
    ),
    (
        "highest version",
        defaults,
        "spec: {postgresql: {version: '18'}}",
    ),
];

#[test]
fn valid_manifests_pass() {
    for (case, tweak, patch) in ACCEPTED {
        let config = config_with(*tweak);
        let manifest = pg(patch);
        assert_allowed(case, &create(&config, &manifest));
        assert_allowed(
            &format!("{case} (update)"),
            &update(&config, &manifest, &manifest),
        );
        assert_allowed(
            &format!("{case} (check_manifest)"),
            &manifest::check_manifest(&config, &manifest),
        );
    }
}

#[test]
fn violations_of_several_rules_are_all_reported_in_order() {
    let config = Config::default();
    let manifest = pg(r#"
metadata: {name: Bad_Name}
spec:
  users: {admin: [login, nologin]}
  databases: {foo: ghost}
  allowedSourceRanges: [nope]
  postgresql: {version: '12'}
"#);
    let verdict = create(&config, &manifest);
    let found: Vec<(&str, &str)> = verdict
        .violations
        .iter()
        .map(|v| (v.rule, v.field.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("source-ranges", "spec.allowedSourceRanges[0]"),
            ("version", "spec.postgresql.version"),
            ("cluster-name", "metadata.name"),
            ("user-name", "spec.users.admin"),
            ("user-flags", "spec.users.admin"),
            ("database-owner", "spec.databases.foo"),
        ],
        "{}",
        show(&verdict)
    );
    let message = verdict.message();
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines[0], "6 problems:");
    assert_eq!(lines.len(), 7, "{message}");
    for (line, violation) in lines[1..].iter().zip(&verdict.violations) {
        assert_eq!(
            *line,
            format!("- {}: {}", violation.field, violation.message)
        );
    }
    assert!(lines[1].starts_with("- spec.allowedSourceRanges[0]: \"nope\" has no /prefix"));
}

#[test]
fn verdict_message_formats() {
    let mut verdict = Verdict::default();
    assert_eq!(verdict.message(), "");
    assert!(verdict.allowed());
    verdict.warn("just so you know");
    assert!(verdict.allowed(), "warnings do not refuse");
    verdict.deny("a", "spec.a", "is wrong");
    assert_eq!(verdict.message(), "spec.a: is wrong");
    verdict.deny("b", "spec.b", "is wrong too");
    assert_eq!(
        verdict.message(),
        "2 problems:\n- spec.a: is wrong\n- spec.b: is wrong too"
    );
    let mut other = Verdict::default();
    other.deny("c", "spec.c", "third");
    other.warn("second warning");
    verdict.merge(other);
    assert_eq!(verdict.violations.len(), 3);
    assert_eq!(verdict.warnings, ["just so you know", "second warning"]);
    assert!(verdict.message().starts_with("3 problems:\n"));
    assert_eq!(verdict.violations[2].to_string(), "spec.c: third");
}

// ---------------------------------------------------------------------------------------------
// Versions.
// ---------------------------------------------------------------------------------------------

fn with_version(version: &str) -> Postgresql {
    pg(&format!("spec: {{postgresql: {{version: '{version}'}}}}"))
}

#[test]
fn version_changes_on_update() {
    let off: Tweak = |c| c.major_version_upgrade.major_version_upgrade_mode = "off".into();
    let off_allowed: Tweak = |c| {
        c.major_version_upgrade.major_version_upgrade_mode = "off".into();
        c.major_version_upgrade
            .major_version_upgrade_team_allow_list = vec!["acid".into()];
    };
    let full: Tweak = |c| c.major_version_upgrade.major_version_upgrade_mode = "full".into();
    /// (case, configuration, old version, new version, denial, warning)
    type Case = (
        &'static str,
        Tweak,
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    );
    let cases: &[Case] = &[
        ("unchanged", defaults, "17", "17", None, None),
        ("unchanged, upgrades off", off, "17", "17", None, None),
        (
            "lowered",
            defaults,
            "17",
            "16",
            Some(
                "cannot lower the major version from 17 to 16; PostgreSQL data cannot be downgraded in place (clone into a new cluster instead)",
            ),
            None,
        ),
        (
            "lowered by four",
            full,
            "18",
            "14",
            Some("from 18 to 14"),
            None,
        ),
        (
            "lowered, upgrades off",
            off,
            "15",
            "14",
            Some("cannot lower"),
            None,
        ),
        ("raised, manual mode", defaults, "16", "17", None, None),
        ("raised, full mode", full, "14", "18", None, None),
        (
            "raised, upgrades off",
            off,
            "16",
            "17",
            None,
            Some(
                "spec.postgresql.version raised from 16 to 17, but major_version_upgrade_mode is off and team \"acid\" is not in major_version_upgrade_team_allow_list: no upgrade will run and the cluster keeps running 16",
            ),
        ),
        (
            "raised, upgrades off, team allowed",
            off_allowed,
            "16",
            "17",
            None,
            None,
        ),
        // Numeric, not lexicographic: "9" < "14" although "14" < "9" as text.
        (
            "raised from an old single-digit major",
            defaults,
            "9",
            "14",
            None,
            None,
        ),
        (
            "raised from an old single-digit major, upgrades off",
            off,
            "9",
            "14",
            None,
            Some("raised from 9 to 14"),
        ),
        (
            "old version not a number",
            defaults,
            "9.6",
            "14",
            None,
            None,
        ),
    ];
    for (case, tweak, old, new, denied, warned) in cases {
        let config = config_with(*tweak);
        let verdict = update(&config, &with_version(old), &with_version(new));
        match denied {
            Some(needle) => {
                assert_denied(case, &verdict, "version", "spec.postgresql.version", needle)
            }
            None => assert_allowed(case, &verdict),
        }
        match warned {
            Some(needle) => {
                assert_eq!(verdict.warnings.len(), 1, "{case}: {:?}", verdict.warnings);
                assert!(
                    verdict.warnings[0].contains(needle),
                    "{case}: {:?}",
                    verdict.warnings
                );
            }
            None => assert!(
                verdict.warnings.is_empty(),
                "{case}: {:?}",
                verdict.warnings
            ),
        }
        // A CREATE never compares with anything.
        let created = create(&config, &with_version(new));
        assert_allowed(&format!("{case} (create)"), &created);
        assert!(
            created.warnings.is_empty(),
            "{case} (create): {:?}",
            created.warnings
        );
    }
}

#[test]
fn clone_versions_on_create() {
    let config = Config::default();
    let clone = |version: &str| {
        pg(&format!(
            "spec: {{postgresql: {{version: '{version}'}}, clone: {{cluster: acid-source}}}}"
        ))
    };
    let check = |version: &str, source: Option<&str>| {
        admission::validate(
            &ctx(&config),
            Operation::Create,
            None,
            &clone(version),
            source,
        )
    };
    let verdict = check("17", Some("18"));
    assert_denied(
        "older than the source",
        &verdict,
        "clone-version",
        "spec.postgresql.version",
        "17 is older than version 18 of the clone source \"acid-source\"; a clone must run the same or a newer major version",
    );
    for (version, source) in [
        ("17", "17"),
        ("18", "16"),
        ("14", "9"),
        ("14", "not-a-number"),
    ] {
        let verdict = check(version, Some(source));
        assert_allowed(&format!("clone {version} of {source}"), &verdict);
        assert!(verdict.warnings.is_empty(), "{:?}", verdict.warnings);
    }
    let verdict = check("17", None);
    assert_allowed("unknown source version", &verdict);
    assert_eq!(verdict.warnings.len(), 1);
    assert!(
        verdict.warnings[0].contains(
            "could not look up the clone source \"acid-source\" to compare versions; make sure spec.postgresql.version 17 is not older than the source's"
        ),
        "{:?}",
        verdict.warnings
    );
    // Only a new clone is compared: on UPDATE the data was copied long ago.
    let old = clone("17");
    let verdict = admission::validate(
        &ctx(&config),
        Operation::Update,
        Some(&old),
        &old,
        Some("18"),
    );
    assert_allowed("update of a clone", &verdict);
    assert!(verdict.warnings.is_empty(), "{:?}", verdict.warnings);
    // Without a clone, the source version is irrelevant.
    let verdict = admission::validate(&ctx(&config), Operation::Create, None, &pg(""), Some("18"));
    assert_allowed("no clone", &verdict);
    assert!(verdict.warnings.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Ownership.
// ---------------------------------------------------------------------------------------------

const CONTROLLER: &str = "acid.zalan.do/controller";
const HANDOVER: &str = "acid.zalan.do/controller-handover";

type Annotations = &'static [(&'static str, &'static str)];

fn owned(annotations: &[(&str, &str)]) -> Postgresql {
    let mut manifest = pg("");
    if !annotations.is_empty() {
        manifest.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
    }
    manifest
}

#[test]
fn ownership_changes_on_update() {
    let config = Config::default();
    let field = "metadata.annotations.acid.zalan.do/controller";
    /// (case, old annotations, new annotations, denial)
    type Case = (&'static str, Annotations, Annotations, Option<&'static str>);
    let cases: &[Case] = &[
        ("no annotation", &[], &[], None),
        (
            "same owner",
            &[(CONTROLLER, "a")],
            &[(CONTROLLER, "a")],
            None,
        ),
        (
            "unrelated annotation added",
            &[(CONTROLLER, "a")],
            &[(CONTROLLER, "a"), ("x", "y")],
            None,
        ),
        (
            "annotation added",
            &[],
            &[(CONTROLLER, "b")],
            Some(
                "cannot be changed from none (the operator without CONTROLLER_ID) to \"b\" by accident",
            ),
        ),
        (
            "annotation changed",
            &[(CONTROLLER, "a")],
            &[(CONTROLLER, "b")],
            Some(
                "kubectl annotate postgresql <name> acid.zalan.do/controller=b acid.zalan.do/controller-handover=b --overwrite",
            ),
        ),
        (
            "annotation removed",
            &[(CONTROLLER, "a")],
            &[],
            Some("from \"a\" to none (the operator without CONTROLLER_ID)"),
        ),
        (
            "handover to another id",
            &[(CONTROLLER, "a")],
            &[(CONTROLLER, "b"), (HANDOVER, "b")],
            None,
        ),
        (
            "handover naming the wrong id",
            &[(CONTROLLER, "a")],
            &[(CONTROLLER, "b"), (HANDOVER, "c")],
            Some("set acid.zalan.do/controller-handover: \"b\" in the same change"),
        ),
        (
            "handover to the operator without id",
            &[(CONTROLLER, "a")],
            &[(HANDOVER, "")],
            None,
        ),
    ];
    for (case, before, after, denied) in cases {
        let verdict = update(&config, &owned(before), &owned(after));
        match denied {
            Some(needle) => assert_denied(case, &verdict, "ownership", field, needle),
            None => assert_allowed(case, &verdict),
        }
        // CREATE never checks a change of owner.
        assert_allowed(&format!("{case} (create)"), &create(&config, &owned(after)));
    }
}

#[test]
fn responsibility() {
    let config = Config::default();
    let none = owned(&[]);
    let mine = owned(&[(CONTROLLER, "mine")]);
    let other = owned(&[(CONTROLLER, "other")]);
    let with_id = |id: &'static str| Context {
        config: &config,
        controller_id: id,
        today: TODAY,
    };
    /// (case, CONTROLLER_ID, old, new, responsible)
    type Case<'a> = (
        &'static str,
        &'static str,
        Option<&'a Postgresql>,
        Option<&'a Postgresql>,
        bool,
    );
    let cases: &[Case] = &[
        ("no id, no annotation", "", None, Some(&none), true),
        ("no id, annotated", "", None, Some(&mine), false),
        ("id, no annotation", "mine", None, Some(&none), false),
        ("id, own annotation", "mine", None, Some(&mine), true),
        ("id, other annotation", "mine", None, Some(&other), false),
        (
            "update away from us",
            "mine",
            Some(&mine),
            Some(&other),
            true,
        ),
        ("update towards us", "mine", Some(&other), Some(&mine), true),
        (
            "update between others",
            "mine",
            Some(&other),
            Some(&none),
            false,
        ),
        ("delete of ours", "mine", Some(&mine), None, true),
        ("nothing", "", None, None, false),
    ];
    for (case, id, old, new, want) in cases {
        assert_eq!(
            admission::is_responsible(&with_id(id), *old, *new),
            *want,
            "{case}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// DELETE: only delete protection.
// ---------------------------------------------------------------------------------------------

fn protected_config(date: bool, name: bool) -> Config {
    let mut config = Config::default();
    if date {
        config.kubernetes.delete_annotation_date_key = "delete-date".into();
    }
    if name {
        config.kubernetes.delete_annotation_name_key = "delete-clustername".into();
    }
    config
}

fn delete(config: &Config, pg: &Postgresql) -> Verdict {
    admission::validate(&ctx(config), Operation::Delete, None, pg, None)
}

#[test]
fn delete_is_checked_for_delete_protection_only() {
    let field = "metadata.annotations";
    let both = protected_config(true, true);
    let verdict = delete(&both, &owned(&[]));
    assert_denied(
        "no annotations",
        &verdict,
        "delete-protection",
        field,
        "deletion of postgresql acid-minimal-cluster is protected: annotation delete-date must be set to today's date \"2026-01-01\"; annotation delete-clustername must be set to the cluster name \"acid-minimal-cluster\". To delete it, run: kubectl annotate postgresql acid-minimal-cluster delete-date=2026-01-01 delete-clustername=acid-minimal-cluster --overwrite",
    );
    /// (case, configuration, annotations, denial)
    type Case = (&'static str, Config, Annotations, Option<&'static str>);
    let cases: &[Case] = &[
        ("not configured", Config::default(), &[], None),
        (
            "both right",
            protected_config(true, true),
            &[
                ("delete-date", TODAY),
                ("delete-clustername", "acid-minimal-cluster"),
            ],
            None,
        ),
        (
            "yesterday's date",
            protected_config(true, true),
            &[
                ("delete-date", "2025-12-31"),
                ("delete-clustername", "acid-minimal-cluster"),
            ],
            Some(
                "annotation delete-date is \"2025-12-31\" but must be today's date \"2026-01-01\". To delete it, run: kubectl annotate postgresql acid-minimal-cluster delete-date=2026-01-01 --overwrite",
            ),
        ),
        (
            "wrong name",
            protected_config(false, true),
            &[("delete-clustername", "acid-other")],
            Some(
                "annotation delete-clustername is \"acid-other\" but must be the cluster name \"acid-minimal-cluster\"",
            ),
        ),
        (
            "only the date key, set",
            protected_config(true, false),
            &[("delete-date", TODAY)],
            None,
        ),
        (
            "only the name key, unset",
            protected_config(false, true),
            &[("delete-date", TODAY)],
            Some(
                "kubectl annotate postgresql acid-minimal-cluster delete-clustername=acid-minimal-cluster --overwrite",
            ),
        ),
    ];
    for (case, config, annotations, denied) in cases {
        let verdict = delete(config, &owned(annotations));
        match denied {
            Some(needle) => assert_denied(case, &verdict, "delete-protection", field, needle),
            None => assert_allowed(case, &verdict),
        }
        assert!(
            verdict.warnings.is_empty(),
            "{case}: {:?}",
            verdict.warnings
        );
    }

    // A manifest that breaks every other rule can still be deleted.
    let broken = pg(r#"
metadata: {name: Bad_Name, annotations: {acid.zalan.do/controller: other}}
spec:
  numberOfInstances: -4
  users: {admin: [login, nologin, bogus]}
  databases: {1x: ghost}
  allowedSourceRanges: [nope]
  maintenanceWindows: [never]
  standby: {}
  clone: {cluster: Bad_Name}
  sidecars: [{}]
  volume: {size: huge}
  postgresql: {version: '9'}
"#);
    assert!(create(&Config::default(), &broken).violations.len() >= 10);
    let verdict = delete(&Config::default(), &broken);
    assert_allowed("broken manifest", &verdict);
    assert!(verdict.warnings.is_empty());
    let verdict = admission::validate(
        &ctx(&Config::default()),
        Operation::Delete,
        Some(&pg("")),
        &broken,
        Some("18"),
    );
    assert_allowed("broken manifest with an old object", &verdict);
    // ... but not past delete protection: only that one rule speaks.
    let verdict = delete(&both, &broken);
    assert_denied(
        "broken and protected",
        &verdict,
        "delete-protection",
        field,
        "deletion of postgresql Bad_Name is protected",
    );
    // And mutate leaves a DELETE alone.
    let config = Config {
        min_instances: 2,
        max_instances: 3,
        ..Config::default()
    };
    let (out, warnings) = admission::mutate(&ctx(&config), Operation::Delete, &broken);
    assert_eq!(out, broken);
    assert!(warnings.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Mutation.
// ---------------------------------------------------------------------------------------------

fn limits(min: i32, max: i32) -> Config {
    Config {
        min_instances: min,
        max_instances: max,
        ignore_instance_limits_annotation_key: "skip-limits".into(),
        ..Config::default()
    }
}

#[test]
fn mutate_clamps_instances() {
    /// (case, min_instances, max_instances, patch, effective, warning)
    type Case = (
        &'static str,
        i32,
        i32,
        &'static str,
        i32,
        Option<&'static str>,
    );
    let cases: &[Case] = &[
        ("no limits", -1, -1, "spec: {numberOfInstances: 7}", 7, None),
        (
            "above max",
            -1,
            3,
            "spec: {numberOfInstances: 7}",
            3,
            Some(
                "spec.numberOfInstances was changed from 7 to 3 because max_instances is 3 (set annotation skip-limits: \"true\" to bypass the limits)",
            ),
        ),
        (
            "below min",
            2,
            -1,
            "spec: {numberOfInstances: 1}",
            2,
            Some("changed from 1 to 2 because min_instances is 2"),
        ),
        (
            "negative below min",
            1,
            5,
            "spec: {numberOfInstances: -3}",
            1,
            Some("from -3 to 1"),
        ),
        ("within", 1, 5, "spec: {numberOfInstances: 3}", 3, None),
        (
            "max zero",
            -1,
            0,
            "spec: {numberOfInstances: 2}",
            0,
            Some("max_instances is 0"),
        ),
        (
            "annotation bypasses",
            2,
            3,
            "metadata: {annotations: {skip-limits: 'true'}}\nspec: {numberOfInstances: 9}",
            9,
            None,
        ),
        (
            "annotation must say true",
            2,
            3,
            "metadata: {annotations: {skip-limits: 'yes'}}\nspec: {numberOfInstances: 9}",
            3,
            Some("from 9 to 3"),
        ),
        (
            "standby stays at one",
            2,
            5,
            "spec: {numberOfInstances: 1, standby: {s3_wal_path: 's3://b/w'}}",
            1,
            None,
        ),
        (
            "standby above max",
            -1,
            2,
            "spec: {numberOfInstances: 4, standby: {s3_wal_path: 's3://b/w'}}",
            2,
            Some("from 4 to 2"),
        ),
    ];
    for op in [Operation::Create, Operation::Update] {
        for (case, min, max, patch, want, warned) in cases {
            let config = limits(*min, *max);
            let input = pg(patch);
            let (out, warnings) = admission::mutate(&ctx(&config), op, &input);
            assert_eq!(out.spec.number_of_instances, *want, "{case} {op:?}");
            let mut expected = input.clone();
            expected.spec.number_of_instances = *want;
            assert_eq!(out, expected, "{case} {op:?}: nothing else changes");
            match warned {
                Some(needle) => {
                    assert_eq!(warnings.len(), 1, "{case} {op:?}: {warnings:?}");
                    assert!(warnings[0].contains(needle), "{case} {op:?}: {warnings:?}");
                }
                None => assert!(warnings.is_empty(), "{case} {op:?}: {warnings:?}"),
            }
        }
    }
}

#[test]
fn mutate_defaults_source_ranges_on_create_only() {
    let config = Config::default();
    /// (case, patch, operation, resulting ranges, warns)
    type Case = (
        &'static str,
        &'static str,
        Operation,
        Option<&'static [&'static str]>,
        bool,
    );
    let cases: &[Case] = &[
        (
            "missing, create",
            "spec: {allowedSourceRanges: null}",
            Operation::Create,
            Some(&["127.0.0.1/32"]),
            true,
        ),
        (
            "missing, update",
            "spec: {allowedSourceRanges: null}",
            Operation::Update,
            None,
            false,
        ),
        (
            "set, create",
            "",
            Operation::Create,
            Some(&["10.0.0.0/8"]),
            false,
        ),
        (
            "empty, create (Zalando treats it like an omitted list)",
            "spec: {allowedSourceRanges: []}",
            Operation::Create,
            Some(&["127.0.0.1/32"]),
            true,
        ),
        (
            "invalid, create (validate refuses it)",
            "spec: {allowedSourceRanges: [x]}",
            Operation::Create,
            Some(&["x"]),
            false,
        ),
    ];
    for (case, patch, op, want, warns) in cases {
        let input = pg(patch);
        let (out, warnings) = admission::mutate(&ctx(&config), *op, &input);
        let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(out.spec.allowed_source_ranges, want, "{case}");
        assert_eq!(warnings.len(), usize::from(*warns), "{case}: {warnings:?}");
        if *warns {
            assert_eq!(
                warnings[0],
                "spec.allowedSourceRanges was not set (or empty) and defaults to [127.0.0.1/32]: load balancers only accept connections from the node itself; set it to the networks that need access"
            );
        }
    }
    // An explicit YAML null is the same as a missing field.
    let mut value = yaml_value(BASE);
    value["spec"]["allowedSourceRanges"] = Value::Null;
    let (out, warnings) = admission::mutate(&ctx(&config), Operation::Create, &typed(value));
    assert_eq!(
        out.spec.allowed_source_ranges,
        Some(vec!["127.0.0.1/32".to_string()])
    );
    assert_eq!(warnings.len(), 1);
}

/// mutate(mutate(x)) == mutate(x), and the second pass has nothing to warn about.
fn assert_idempotent(case: &str, config: &Config, op: Operation, input: &Postgresql) {
    let c = ctx(config);
    let (once, _) = admission::mutate(&c, op, input);
    let (twice, warnings) = admission::mutate(&c, op, &once);
    assert_eq!(
        twice, once,
        "{case} {op:?}: second mutation changed the object"
    );
    assert!(
        warnings.is_empty(),
        "{case} {op:?}: second mutation warned: {warnings:?}"
    );
}

#[test]
fn mutate_is_idempotent() {
    let configs = [
        ("no limits", limits(-1, -1)),
        ("max 1", limits(-1, 1)),
        ("min 3", limits(3, -1)),
        ("min 2 max 4", limits(2, 4)),
        ("max 0", limits(-1, 0)),
        ("min above max", limits(5, 2)),
        ("defaults", Config::default()),
    ];
    let manifests = [
        ("base", pg("")),
        ("no source ranges", pg("spec: {allowedSourceRanges: null}")),
        (
            "one instance",
            pg("spec: {numberOfInstances: 1, allowedSourceRanges: null}"),
        ),
        ("many instances", pg("spec: {numberOfInstances: 12}")),
        ("negative instances", pg("spec: {numberOfInstances: -2}")),
        (
            "bypass annotation",
            pg("metadata: {annotations: {skip-limits: 'true'}}\nspec: {numberOfInstances: 12}"),
        ),
        (
            "standby of one",
            pg("spec: {numberOfInstances: 1, standby: {standby_host: h}}"),
        ),
        (
            "standby of three",
            pg("spec: {numberOfInstances: 3, standby: {standby_host: h}}"),
        ),
        (
            "standby of zero",
            pg("spec: {numberOfInstances: 0, standby: {standby_host: h}}"),
        ),
        (
            "standby through env",
            pg(
                "spec: {numberOfInstances: 3, env: [{name: STANDBY_WALE_GS_PREFIX, value: 'gs://b'}]}",
            ),
        ),
        (
            "minimal sample",
            sample("manifests/minimal-postgres-manifest.yaml"),
        ),
        (
            "complete sample",
            sample("manifests/complete-postgres-manifest.yaml"),
        ),
    ];
    for (config_name, config) in &configs {
        for (manifest_name, manifest) in &manifests {
            for op in [Operation::Create, Operation::Update, Operation::Delete] {
                assert_idempotent(
                    &format!("{manifest_name} with {config_name}"),
                    config,
                    op,
                    manifest,
                );
            }
        }
    }
}

#[test]
fn standby_with_several_pods_is_warned_about_but_kept() {
    let config = Config::default();
    let c = ctx(&config);
    for op in [Operation::Create, Operation::Update] {
        let standby = pg("spec: {numberOfInstances: 3, standby: {standby_host: h}}");
        // The mutating webhook changes nothing, so it has nothing to say (and stays idempotent).
        let (out, warnings) = admission::mutate(&c, op, &standby);
        assert_eq!(out.spec.number_of_instances, 3, "{op:?}");
        assert!(warnings.is_empty(), "{op:?}: {warnings:?}");
        // The validating webhook allows it and tells the user on every review.
        let verdict = admission::validate(&c, op, Some(&standby), &standby, Some("17"));
        assert_allowed("standby of three", &verdict);
        assert_eq!(
            verdict.warnings,
            [
                "spec.numberOfInstances is 3 but a standby cluster runs with 1 pod only; the extra pods will not stream from the source"
            ],
            "{op:?}"
        );
        // A standby of one, a clamped standby and a clamped primary: no such warning.
        for patch in [
            "spec: {numberOfInstances: 1, standby: {standby_host: h}}",
            "spec: {numberOfInstances: 3}",
        ] {
            let manifest = pg(patch);
            let verdict = admission::validate(&c, op, Some(&manifest), &manifest, Some("17"));
            assert!(
                verdict.warnings.is_empty(),
                "{patch}: {:?}",
                verdict.warnings
            );
        }
        let clamping = limits(-1, 2);
        let clamped = pg("spec: {numberOfInstances: 4, standby: {standby_host: h}}");
        let verdict =
            admission::validate(&ctx(&clamping), op, Some(&clamped), &clamped, Some("17"));
        assert!(verdict.warnings.is_empty(), "{:?}", verdict.warnings);
    }
}

// ---------------------------------------------------------------------------------------------
// The sample manifests.
// ---------------------------------------------------------------------------------------------

#[test]
fn sample_manifests_pass_with_the_default_configuration() {
    let config = Config::default();
    let with_prefix = config_with(|c| c.enable_team_id_clustername_prefix = true);
    let minimal = sample("manifests/minimal-postgres-manifest.yaml");
    let complete = sample("manifests/complete-postgres-manifest.yaml");
    for (name, manifest) in [("minimal", &minimal), ("complete", &complete)] {
        for config in [&config, &with_prefix] {
            for source in [None, Some("17"), Some("14")] {
                let c = ctx(config);
                let (mutated, _) = admission::mutate(&c, Operation::Create, manifest);
                let verdict = admission::validate(&c, Operation::Create, None, &mutated, source);
                assert_allowed(&format!("{name} create"), &verdict);
                let verdict = admission::validate(&c, Operation::Create, None, manifest, source);
                assert_allowed(&format!("{name} create unmutated"), &verdict);
            }
            let verdict = update(config, manifest, manifest);
            assert_allowed(&format!("{name} update"), &verdict);
            let verdict = delete(config, manifest);
            assert_allowed(&format!("{name} delete"), &verdict);
        }
    }
    // The complete manifest both clones and follows a standby source. No rule forbids the pair
    // (Zalando starts it as a standby and ignores the clone), and its standby has exactly one
    // source, so it passes; with an unknown source version the clone gets its warning.
    let verdict = admission::validate(&ctx(&config), Operation::Create, None, &complete, None);
    assert!(
        verdict
            .warnings
            .iter()
            .any(|w| w.contains("could not look up the clone source \"acid-minimal-cluster\"")),
        "{:?}",
        verdict.warnings
    );
    let verdict = admission::validate(
        &ctx(&config),
        Operation::Create,
        None,
        &complete,
        Some("18"),
    );
    assert_denied(
        "complete manifest cloning a newer source",
        &verdict,
        "clone-version",
        "spec.postgresql.version",
        "17 is older than version 18",
    );
    // The complete manifest's delete annotations hold a fixed date, so only that date deletes it.
    let protected = protected_config(true, true);
    let on = |today: &'static str| Context {
        config: &protected,
        controller_id: "",
        today,
    };
    let verdict = admission::validate(&on("2026-11-23"), Operation::Delete, None, &complete, None);
    assert_allowed("complete delete on its date", &verdict);
    let verdict = admission::validate(&on("2026-11-24"), Operation::Delete, None, &complete, None);
    assert!(!verdict.allowed());
}

// ---------------------------------------------------------------------------------------------
// A bounded property test: random perturbations never panic, and mutate stays idempotent.
// ---------------------------------------------------------------------------------------------

/// xorshift64*: deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// A string from fragments that reach deep into the patterns, plus odd characters.
    fn text(&mut self) -> String {
        const FRAGMENTS: &[&str] = &[
            "", "0", "1", "9", "14", "17", "23", "24", "59", "60", "99", "100", "1000", ":", "-",
            "/", ".", "_", " ", "*", ",", "e", "e400", "m", "Mi", "Gi", "Ki", "G", "E", "Ei",
            "Mon", "Sun", "T", "+02:00", "Z", "no", "login", "acid", "ACID", "a", "x", "::",
            "10.0.0.0", "fe80", "é", "İ", "ß", "\u{0}", "\t", "\n", "🐘", "%", "\"", "'",
        ];
        let mut out = String::new();
        for _ in 0..self.below(8) {
            out.push_str(self.pick(FRAGMENTS));
        }
        out
    }

    fn maybe_text(&mut self) -> Option<String> {
        if self.chance(4) {
            None
        } else {
            Some(self.text())
        }
    }

    fn texts(&mut self) -> Vec<String> {
        (0..self.below(4)).map(|_| self.text()).collect()
    }
}

fn random_instances(rng: &mut Rng) -> i32 {
    match rng.below(6) {
        0 => i32::MIN,
        1 => i32::MAX,
        2 => -(rng.below(5) as i32),
        _ => rng.below(12) as i32,
    }
}

fn random_config(rng: &mut Rng) -> Config {
    let mut config = Config {
        min_instances: rng.below(8) as i32 - 2,
        max_instances: rng.below(8) as i32 - 2,
        enable_team_id_clustername_prefix: rng.chance(2),
        ..Config::default()
    };
    if rng.chance(3) {
        config.min_instances = random_instances(rng);
        config.max_instances = random_instances(rng);
    }
    config.ignore_instance_limits_annotation_key = match rng.below(3) {
        0 => String::new(),
        1 => "skip-limits".into(),
        _ => rng.text(),
    };
    config.kubernetes.enable_sidecars = rng.chance(2);
    config.kubernetes.enable_init_containers = rng.chance(2);
    config.kubernetes.delete_annotation_date_key = if rng.chance(2) {
        "delete-date".into()
    } else {
        String::new()
    };
    config.kubernetes.delete_annotation_name_key = if rng.chance(2) {
        rng.text()
    } else {
        String::new()
    };
    config.major_version_upgrade.major_version_upgrade_mode =
        rng.pick(&["off", "manual", "full", ""]).into();
    if rng.chance(2) {
        config.teams_api.protected_role_names.push(rng.text());
    }
    if rng.chance(4) {
        config.users.super_username = rng.text();
    }
    config
}

fn perturb(rng: &mut Rng, base: &Postgresql) -> Postgresql {
    use common::crd::postgresql::{
        CloneDescription, ConnectionPooler, ResourceDescription, Resources, Sidecar,
        StandbyDescription,
    };
    let mut pg = base.clone();
    let spec = &mut pg.spec;
    if rng.chance(2) {
        spec.number_of_instances = random_instances(rng);
    }
    if rng.chance(3) {
        pg.metadata.name = rng.maybe_text();
    }
    if rng.chance(3) {
        spec.team_id = rng.text();
    }
    if rng.chance(3) {
        spec.postgresql.version = match rng.below(3) {
            0 => rng.text(),
            _ => rng
                .pick(&["9", "13", "14", "15", "16", "17", "18", "19", " 17", "017"])
                .into(),
        };
    }
    if rng.chance(3) {
        let users = spec.users.get_or_insert_with(Default::default);
        for _ in 0..rng.below(3) {
            let flags = if rng.chance(4) {
                None
            } else {
                Some(
                    (0..rng.below(4))
                        .map(|_| {
                            if rng.chance(2) {
                                rng.pick(&[
                                    "login",
                                    "NOLOGIN",
                                    "nosuperuser",
                                    "superuser",
                                    "no",
                                    "inherit",
                                ])
                                .to_string()
                            } else {
                                rng.text()
                            }
                        })
                        .collect(),
                )
            };
            users.insert(rng.text(), flags);
        }
    }
    if rng.chance(5) {
        spec.users = None;
    }
    if rng.chance(3) {
        let databases = spec.databases.get_or_insert_with(Default::default);
        databases.insert(rng.text(), rng.text());
    }
    if rng.chance(4) {
        let prepared = spec.prepared_databases.get_or_insert_with(Default::default);
        let mut db: common::crd::postgresql::PreparedDatabase =
            serde_json::from_value(serde_json::json!({})).unwrap();
        db.schemas = Some([(rng.text(), Default::default())].into());
        db.extensions = Some([(rng.text(), rng.text())].into());
        prepared.insert(rng.text(), db);
    }
    if rng.chance(3) {
        spec.maintenance_windows = Some(rng.texts());
    }
    if rng.chance(4) {
        spec.logical_backup_schedule = rng.maybe_text();
    }
    if rng.chance(3) {
        spec.allowed_source_ranges = if rng.chance(3) {
            None
        } else {
            Some(rng.texts())
        };
    }
    if rng.chance(3) {
        spec.volume.size = rng.text();
    }
    let random_resources = |rng: &mut Rng| -> Resources {
        let set = |rng: &mut Rng| ResourceDescription {
            cpu: rng.maybe_text(),
            memory: rng.maybe_text(),
            hugepages_2mi: rng.maybe_text(),
            hugepages_1gi: rng.maybe_text(),
        };
        Resources {
            requests: if rng.chance(4) { None } else { Some(set(rng)) },
            limits: if rng.chance(4) { None } else { Some(set(rng)) },
        }
    };
    if rng.chance(3) {
        spec.resources = Some(random_resources(rng));
    }
    if rng.chance(4) {
        let mut pooler: ConnectionPooler = serde_json::from_value(serde_json::json!({})).unwrap();
        pooler.user = rng.maybe_text();
        pooler.resources = Some(random_resources(rng));
        spec.connection_pooler = Some(pooler);
    }
    if rng.chance(4) {
        let mut clone: CloneDescription =
            serde_json::from_value(serde_json::json!({"cluster": ""})).unwrap();
        clone.cluster = rng.text();
        clone.uid = rng.maybe_text();
        clone.timestamp = rng.maybe_text();
        spec.clone = Some(clone);
    }
    if rng.chance(4) {
        let mut standby: StandbyDescription =
            serde_json::from_value(serde_json::json!({})).unwrap();
        standby.s3_wal_path = rng.maybe_text();
        standby.gs_wal_path = rng.maybe_text();
        standby.standby_host = rng.maybe_text();
        spec.standby = Some(standby);
    }
    if rng.chance(4) {
        let mut sidecar: Sidecar = serde_json::from_value(serde_json::json!({})).unwrap();
        sidecar.name = rng.maybe_text();
        sidecar.image = rng.maybe_text();
        if rng.chance(2) {
            sidecar.resources = Some(random_resources(rng));
        }
        spec.sidecars = Some(vec![sidecar]);
    }
    if rng.chance(5) {
        let container = serde_json::json!({"name": rng.text(), "image": rng.maybe_text()});
        let list = Some(vec![serde_json::from_value(container).unwrap()]);
        if rng.chance(2) {
            spec.init_containers = list;
        } else {
            spec.init_containers_old = list;
        }
    }
    if rng.chance(3) {
        let annotations = pg.metadata.annotations.get_or_insert_with(Default::default);
        let key = rng
            .pick(&[CONTROLLER, HANDOVER, "skip-limits", "delete-date"])
            .to_string();
        let value = if rng.chance(2) {
            "true".to_string()
        } else {
            rng.text()
        };
        annotations.insert(key, value);
    }
    pg
}

#[test]
fn random_manifests_never_panic_and_mutate_is_idempotent() {
    let bases = [
        pg(""),
        sample("manifests/minimal-postgres-manifest.yaml"),
        sample("manifests/complete-postgres-manifest.yaml"),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut allowed, mut rules_seen) = (0, std::collections::BTreeSet::new());
    for i in 0..2000 {
        let config = random_config(&mut rng);
        let base = &bases[rng.below(bases.len())];
        let old = perturb(&mut rng, base);
        let from_old = rng.chance(2);
        let new = perturb(&mut rng, if from_old { &old } else { base });
        let controller_id = if rng.chance(3) { "mine" } else { "" };
        let c = Context {
            config: &config,
            controller_id,
            today: TODAY,
        };
        let source = match rng.below(3) {
            0 => None,
            1 => Some("17".to_string()),
            _ => Some(rng.text()),
        };
        for op in [Operation::Create, Operation::Update, Operation::Delete] {
            let case = format!("iteration {i} {op:?}");
            let (once, _) = admission::mutate(&c, op, &new);
            let (twice, warnings) = admission::mutate(&c, op, &once);
            assert_eq!(twice, once, "{case}: mutate is not idempotent");
            assert!(
                warnings.is_empty(),
                "{case}: second mutation warned: {warnings:?}"
            );
            let old = (op != Operation::Create).then_some(&old);
            let _ = admission::is_responsible(&c, old, Some(&new));
            for object in [&new, &once] {
                let verdict = admission::validate(&c, op, old, object, source.as_deref());
                allowed += usize::from(verdict.allowed());
                rules_seen.extend(verdict.violations.iter().map(|v| v.rule));
                for violation in &verdict.violations {
                    assert!(!violation.field.is_empty(), "{case}: {violation:?}");
                    assert!(!violation.message.is_empty(), "{case}: {violation:?}");
                }
                let message = verdict.message();
                match verdict.violations.len() {
                    0 => assert!(message.is_empty()),
                    1 => assert!(!message.contains("problems:\n")),
                    n => assert!(message.starts_with(&format!("{n} problems:\n")), "{case}"),
                }
                if op == Operation::Delete {
                    assert!(
                        verdict
                            .violations
                            .iter()
                            .all(|v| v.rule == "delete-protection"),
                        "{case}: {}",
                        show(&verdict)
                    );
                }
            }
            if op == Operation::Create && new.spec.allowed_source_ranges.is_none() {
                assert!(once.spec.allowed_source_ranges.is_some(), "{case}");
            }
        }
    }
    // The generator reaches both outcomes and most rules, so the test exercises real paths.
    println!("allowed {allowed} of 12000; rules seen: {rules_seen:?}");
    assert!(allowed > 500, "only {allowed} verdicts allowed");
    assert!(rules_seen.len() >= 18, "rules seen: {rules_seen:?}");
}

#[test]
fn an_unchanged_unsupported_version_does_not_block_other_updates() {
    let config = Config::default();
    let mut old: Postgresql = serde_yaml::from_str(
        "apiVersion: acid.zalan.do/v1\nkind: postgresql\nmetadata: {name: acid-old}\nspec: {teamId: acid, numberOfInstances: 1, postgresql: {version: \"13\"}, volume: {size: 1Gi}}\n",
    )
    .unwrap();
    let mut new = old.clone();
    new.metadata.annotations = Some([("delete-date".to_string(), "2026-11-23".to_string())].into());
    let verdict = common::rules::versions::check_version(&config, Some(&old), &new);
    assert!(verdict.allowed(), "{verdict:?}");
    assert!(verdict.warnings[0].contains("no longer supported"));
    old.spec.postgresql.version = "17".into();
    let lowered = common::rules::versions::check_version(&config, Some(&old), &new);
    assert!(!lowered.allowed());
}
