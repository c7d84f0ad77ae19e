//! The manifest rules Zalando applies in scattered places (CRD schema, unmarshalling, cluster
//! init), gathered as one check. Zalando skips a bad user or database with a log line; here each
//! is a violation naming the field, so the user learns at `kubectl apply` time.

use super::Verdict;
use crate::config::Config;
use crate::crd::Postgresql;
use crate::crd::postgresql::{Resources, StandbyDescription};
use crate::crd::schema::USER_FLAGS;
use crate::patterns::{
    CRON_RE, DATABASE_NAME_RE, DNS1035_LABEL_RE, MAINTENANCE_WINDOW_RE, TIMESTAMP_WITH_OFFSET_RE,
    USER_NAME_RE, UUID_RE,
};
use crate::quantity;

/// Longest cluster name: the replica service `<cluster>-repl` must stay a 63-character DNS label.
pub const MAX_CLUSTER_NAME_LENGTH: usize = 63 - "-repl".len();

/// Checks every manifest rule that needs no other object.
pub fn check_manifest(config: &Config, pg: &Postgresql) -> Verdict {
    let mut v = Verdict::default();
    cluster_name(config, pg, &mut v);
    users(config, pg, &mut v);
    rotation_lists(config, pg, &mut v);
    databases(config, pg, &mut v);
    maintenance_windows(pg, &mut v);
    clone_and_standby(pg, &mut v);
    patroni_timing(pg, &mut v);
    containers(config, pg, &mut v);
    resources(pg, &mut v);
    v
}

fn cluster_name(config: &Config, pg: &Postgresql, v: &mut Verdict) {
    let name = pg.cluster_name();
    if name.len() > MAX_CLUSTER_NAME_LENGTH {
        v.deny(
            "cluster-name",
            "metadata.name",
            format!(
                "{name:?} is {} characters long; at most {MAX_CLUSTER_NAME_LENGTH} fit, so that the replica service {name}-repl stays a valid DNS name",
                name.len()
            ),
        );
    }
    if !DNS1035_LABEL_RE.is_match(name) {
        v.deny(
            "cluster-name",
            "metadata.name",
            format!("{name:?} must consist of lower-case letters, digits and '-', start with a letter and end with a letter or digit"),
        );
    }
    if config.enable_team_id_clustername_prefix {
        let team = &pg.spec.team_id;
        let prefix = format!("{}-", team.to_lowercase());
        if team.is_empty() {
            v.deny(
                "team-prefix",
                "spec.teamId",
                "must be set because enable_team_id_clustername_prefix is on",
            );
        } else if name.len() < team.len() + 2 || !name.to_lowercase().starts_with(&prefix) {
            v.deny(
                "team-prefix",
                "metadata.name",
                format!("{name:?} must start with the team id and a dash ({prefix}...) because enable_team_id_clustername_prefix is on"),
            );
        }
    }
}

fn users(config: &Config, pg: &Postgresql, v: &mut Verdict) {
    let protected = &config.teams_api.protected_role_names;
    let system = [
        &config.users.super_username,
        &config.users.replication_username,
    ];
    for (user, flags) in pg.spec.users.iter().flatten() {
        let field = format!("spec.users.{user}");
        if !USER_NAME_RE.is_match(user) {
            v.deny(
                "user-name",
                &field,
                format!("{user:?} is not a valid role name: use lower-case letters, digits, '-' and '_', starting and ending with a letter or digit (namespace.user for a cross-namespace secret)"),
            );
        }
        if protected.iter().any(|p| p == user) {
            v.deny(
                "user-name",
                &field,
                format!(
                    "{user:?} is a protected role name (protected_role_names); choose another name"
                ),
            );
        }
        if system.contains(&user) {
            v.deny(
                "user-name",
                &field,
                format!(
                    "{user:?} is a system role the operator manages itself; choose another name"
                ),
            );
        }
        let flags: Vec<String> = flags.iter().flatten().map(|f| f.to_lowercase()).collect();
        for flag in &flags {
            if !USER_FLAGS.contains(&flag.as_str()) {
                v.deny(
                    "user-flags",
                    &field,
                    format!("unknown flag {flag:?}; allowed: {}", USER_FLAGS.join(", ")),
                );
            }
        }
        for flag in &flags {
            if let Some(positive) = flag.strip_prefix("no")
                && flags.iter().any(|f| f == positive)
            {
                v.deny(
                    "user-flags",
                    &field,
                    format!("flags {positive} and {flag} contradict each other; keep one"),
                );
            }
        }
    }
    if let Some(pooler) = &pg.spec.connection_pooler
        && let Some(user) = &pooler.user
        && (system.contains(&user) || protected.contains(user))
    {
        v.deny(
            "pooler-user",
            "spec.connectionPooler.user",
            format!("{user:?} is a system or protected role; the pooler needs a role of its own such as {:?}", config.connection_pooler.connection_pooler_user),
        );
    }
}

/// A system user in a rotation list is accepted (Zalando accepts it) but never rotated: the pods
/// and the operator log in as it with its Secret's password (`common::database::rotation`).
fn rotation_lists(config: &Config, pg: &Postgresql, v: &mut Verdict) {
    let system = [
        &config.users.super_username,
        &config.users.replication_username,
    ];
    let lists = [
        (
            "usersWithSecretRotation",
            &pg.spec.users_with_secret_rotation,
        ),
        (
            "usersWithInPlaceSecretRotation",
            &pg.spec.users_with_in_place_secret_rotation,
        ),
    ];
    for (list, users) in lists {
        for user in users.iter().flatten().filter(|u| system.contains(u)) {
            v.warn(format!(
                "spec.{list}: {user:?} is a system user, whose password is never rotated: the pods and the operator log in as it with the password of its Secret"
            ));
        }
    }
}

fn databases(config: &Config, pg: &Postgresql, v: &mut Verdict) {
    let declared = pg.spec.users.as_ref();
    for (db, owner) in pg.spec.databases.iter().flatten() {
        let field = format!("spec.databases.{db}");
        if !DATABASE_NAME_RE.is_match(db) {
            v.deny("database-name", &field, format!("{db:?} is not a valid database name: use letters, digits and '_', not starting with a digit"));
        }
        if !declared.is_some_and(|users| users.contains_key(owner)) {
            v.deny("database-owner", &field, format!("owner {owner:?} is not declared under spec.users; add it there or choose a declared role"));
        }
    }
    for (db, prepared) in pg.spec.prepared_databases.iter().flatten() {
        let field = format!("spec.preparedDatabases.{db}");
        if !DATABASE_NAME_RE.is_match(db) {
            v.deny("database-name", &field, format!("{db:?} is not a valid database name: use letters, digits and '_', not starting with a digit"));
        }
        for schema in prepared
            .schemas
            .iter()
            .flatten()
            .map(|(s, _)| s)
            .chain(prepared.extensions.iter().flatten().map(|(_, s)| s))
        {
            if !DATABASE_NAME_RE.is_match(schema) {
                v.deny("schema-name", &field, format!("{schema:?} is not a valid schema name: use letters, digits and '_', not starting with a digit"));
            }
        }
    }
    // Accepted as Zalando accepts it, which ignores it with only a log line.
    for field in crate::database::secrets::ignored_secret_namespaces(config, pg) {
        v.warn(format!(
            "{field} is ignored because enable_cross_namespace_secret is off: the default users' Secrets are created in the cluster's namespace"
        ));
    }
}

fn maintenance_windows(pg: &Postgresql, v: &mut Verdict) {
    for (i, window) in pg.spec.maintenance_windows.iter().flatten().enumerate() {
        let field = format!("spec.maintenanceWindows[{i}]");
        if !MAINTENANCE_WINDOW_RE.is_match(window) {
            v.deny(
                "maintenance-window",
                field,
                format!(
                    "{window:?} must be HH:MM-HH:MM or Ddd:HH:MM-HH:MM with Ddd one of Mon..Sun"
                ),
            );
            continue;
        }
        let minutes = |hhmm: &str| -> u32 {
            let mut parts = hhmm.rsplitn(3, ':');
            let mm: u32 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
            let hh: u32 = parts.next().and_then(|h| h.parse().ok()).unwrap_or(0);
            hh * 60 + mm
        };
        if let Some((start, end)) = window.trim().split_once('-')
            && minutes(end) < minutes(start)
        {
            v.deny(
                "maintenance-window",
                field,
                format!("{window:?} ends before it starts"),
            );
        }
    }
    if let Some(schedule) = &pg.spec.logical_backup_schedule
        && !CRON_RE.is_match(schedule)
    {
        v.deny(
            "logical-backup-schedule",
            "spec.logicalBackupSchedule",
            format!("{schedule:?} must be a five-field cron schedule such as \"30 00 * * *\""),
        );
    }
}

fn clone_and_standby(pg: &Postgresql, v: &mut Verdict) {
    if let Some(clone) = &pg.spec.clone {
        if clone.timestamp.is_none()
            && (!DNS1035_LABEL_RE.is_match(&clone.cluster) || clone.cluster.len() > 63)
        {
            v.deny(
                "clone",
                "spec.clone.cluster",
                format!(
                    "{:?} is not a valid cluster name to take a basebackup from",
                    clone.cluster
                ),
            );
        }
        if let Some(uid) = &clone.uid
            && !UUID_RE.is_match(uid)
        {
            v.deny(
                "clone",
                "spec.clone.uid",
                format!("{uid:?} must be the source cluster's UID (a UUID)"),
            );
        }
        if let Some(ts) = &clone.timestamp
            && !TIMESTAMP_WITH_OFFSET_RE.is_match(ts)
        {
            v.deny(
                "clone",
                "spec.clone.timestamp",
                format!(
                    "{ts:?} must be RFC 3339 with a numeric offset, e.g. 2026-08-31T12:00:00+02:00"
                ),
            );
        }
    }
    if let Some(standby) = &pg.spec.standby {
        let StandbyDescription {
            s3_wal_path,
            gs_wal_path,
            standby_host,
            ..
        } = standby;
        let set = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
        let sources = [s3_wal_path, gs_wal_path, standby_host]
            .iter()
            .filter(|s| set(s))
            .count();
        if set(s3_wal_path) && set(gs_wal_path) {
            v.deny("standby", "spec.standby", "s3_wal_path and gs_wal_path cannot both be set: a standby replays one WAL archive (standby_host may stream next to it)".to_string());
        } else if sources == 0 {
            v.deny("standby", "spec.standby", "set standby_host, s3_wal_path or gs_wal_path (standby_host may be combined with one archive), found none".to_string());
        }
    }
}

/// Spilo's values of Patroni's timing when the manifest leaves them out.
const SPILO_TTL: u32 = 30;
const SPILO_LOOP_WAIT: u32 = 10;
const SPILO_RETRY_TIMEOUT: u32 = 10;

/// Patroni needs `loop_wait + 2 × retry_timeout ≤ ttl`; otherwise it quietly lowers both (a ttl
/// of 20 with Spilo's other defaults makes its HA loop run every second). Zalando passes such a
/// manifest on without a word; the warning says what will happen.
fn patroni_timing(pg: &Postgresql, v: &mut Verdict) {
    let Some(patroni) = &pg.spec.patroni else {
        return;
    };
    if patroni.ttl.is_none() && patroni.loop_wait.is_none() && patroni.retry_timeout.is_none() {
        return;
    }
    let ttl = patroni.ttl.unwrap_or(SPILO_TTL);
    let loop_wait = patroni.loop_wait.unwrap_or(SPILO_LOOP_WAIT);
    let retry_timeout = patroni.retry_timeout.unwrap_or(SPILO_RETRY_TIMEOUT);
    if u64::from(loop_wait) + 2 * u64::from(retry_timeout) > u64::from(ttl) {
        v.warn(format!(
            "spec.patroni: loop_wait {loop_wait} + 2 × retry_timeout {retry_timeout} exceeds ttl {ttl} (omitted values are Spilo's: ttl 30, loop_wait 10, retry_timeout 10); Patroni will lower loop_wait and retry_timeout itself, and may run its HA loop every second — set them so that loop_wait + 2 × retry_timeout ≤ ttl"
        ));
    }
}

fn containers(config: &Config, pg: &Postgresql, v: &mut Verdict) {
    let sidecars = pg.spec.sidecars.as_deref().unwrap_or_default();
    if !sidecars.is_empty() && !config.kubernetes.enable_sidecars {
        v.deny(
            "sidecars",
            "spec.sidecars",
            "sidecars are disabled in the operator configuration (enable_sidecars: false)",
        );
    }
    for (i, sidecar) in sidecars.iter().enumerate() {
        for (what, article, value) in [
            ("name", "a", &sidecar.name),
            ("image", "an", &sidecar.image),
        ] {
            if value.as_deref().is_none_or(str::is_empty) {
                v.deny(
                    "sidecars",
                    format!("spec.sidecars[{i}].{what}"),
                    format!("every sidecar needs {article} {what}"),
                );
            }
        }
    }
    for (field, list) in [
        ("spec.initContainers", &pg.spec.init_containers),
        ("spec.init_containers", &pg.spec.init_containers_old),
    ] {
        let list = list.as_deref().unwrap_or_default();
        if !list.is_empty() && !config.kubernetes.enable_init_containers {
            v.deny("init-containers", field, "init containers are disabled in the operator configuration (enable_init_containers: false)");
        }
        for (i, container) in list.iter().enumerate() {
            if container.name.is_empty() {
                v.deny(
                    "init-containers",
                    format!("{field}[{i}].name"),
                    "every init container needs a name",
                );
            }
            if container.image.as_deref().is_none_or(str::is_empty) {
                v.deny(
                    "init-containers",
                    format!("{field}[{i}].image"),
                    "every init container needs an image",
                );
            }
        }
    }
}

fn resources(pg: &Postgresql, v: &mut Verdict) {
    if quantity::memory(&pg.spec.volume.size).is_none() {
        v.deny(
            "quantity",
            "spec.volume.size",
            format!(
                "{:?} is not a storage quantity such as 10Gi",
                pg.spec.volume.size
            ),
        );
    }
    let mut sets: Vec<(String, &Resources)> = Vec::new();
    if let Some(r) = &pg.spec.resources {
        sets.push(("spec.resources".into(), r));
    }
    if let Some(r) = pg
        .spec
        .connection_pooler
        .as_ref()
        .and_then(|p| p.resources.as_ref())
    {
        sets.push(("spec.connectionPooler.resources".into(), r));
    }
    for (i, sidecar) in pg.spec.sidecars.iter().flatten().enumerate() {
        if let Some(r) = &sidecar.resources {
            sets.push((format!("spec.sidecars[{i}].resources"), r));
        }
    }
    for (path, r) in sets {
        let (req, lim) = (
            r.requests.clone().unwrap_or_default(),
            r.limits.clone().unwrap_or_default(),
        );
        let pairs = [
            Quantities {
                name: "cpu",
                request: &req.cpu,
                limit: &lim.cpu,
                parse: quantity::cpu,
                what: "a CPU quantity such as 100m or 1",
            },
            Quantities {
                name: "memory",
                request: &req.memory,
                limit: &lim.memory,
                parse: quantity::memory,
                what: "a memory quantity such as 100Mi",
            },
            Quantities {
                name: "hugepages-2Mi",
                request: &req.hugepages_2mi,
                limit: &lim.hugepages_2mi,
                parse: quantity::memory,
                what: "a memory quantity",
            },
            Quantities {
                name: "hugepages-1Gi",
                request: &req.hugepages_1gi,
                limit: &lim.hugepages_1gi,
                parse: quantity::memory,
                what: "a memory quantity",
            },
        ];
        for Quantities {
            name,
            request,
            limit,
            parse,
            what,
        } in pairs
        {
            let mut parsed = [None, None];
            for (slot, (kind, value)) in [("requests", request), ("limits", limit)]
                .into_iter()
                .enumerate()
            {
                if let Some(value) = value.as_deref().filter(|s| !s.is_empty()) {
                    parsed[slot] = parse(value);
                    if parsed[slot].is_none() {
                        v.deny(
                            "quantity",
                            format!("{path}.{kind}.{name}"),
                            format!("{value:?} is not {what}"),
                        );
                    }
                }
            }
            if let [Some(request), Some(limit)] = parsed
                && limit > quantity::Quantity::ZERO
                && request > limit
            {
                v.deny(
                    "requests-limits",
                    format!("{path}.requests.{name}"),
                    format!(
                        "request {:?} exceeds limit {:?}; lower the request or raise the limit",
                        request_text(&req, name),
                        request_text(&lim, name)
                    ),
                );
            }
        }
    }
}

/// One resource's request and limit with how to parse and describe them.
struct Quantities<'a> {
    name: &'static str,
    request: &'a Option<String>,
    limit: &'a Option<String>,
    parse: fn(&str) -> Option<quantity::Quantity>,
    what: &'static str,
}

fn request_text(set: &crate::crd::postgresql::ResourceDescription, name: &str) -> String {
    match name {
        "cpu" => set.cpu.clone(),
        "memory" => set.memory.clone(),
        "hugepages-2Mi" => set.hugepages_2mi.clone(),
        _ => set.hugepages_1gi.clone(),
    }
    .unwrap_or_default()
}
