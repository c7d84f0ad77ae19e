//! Whole-configuration validation: every problem at once, each naming option, value and remedy.

use super::encoding::{parse_duration, parse_namespaced_name};
use super::{Config, ConfigProblem, ConfigWarning};
use crate::patterns;

/// Checks a configuration; `Err` holds every problem found.
pub fn validate(c: &Config) -> Result<(), Vec<ConfigProblem>> {
    let mut v = Validator::default();
    let k = &c.kubernetes;

    if c.min_instances >= 0 && c.max_instances >= 0 && c.min_instances > c.max_instances {
        v.fail(
            "min_instances",
            c.min_instances.to_string(),
            format!(
                "must not exceed max_instances ({}); use -1 to disable either bound",
                c.max_instances
            ),
        );
    }
    for (key, value) in [
        ("min_instances", c.min_instances),
        ("max_instances", c.max_instances),
    ] {
        if value < -1 {
            v.fail(
                key,
                value.to_string(),
                "expected -1 (no limit) or a number of instances >= 0",
            );
        }
    }
    if c.workers == 0 {
        v.fail("workers", "0", "expected at least 1 worker");
    }
    let pooler = &c.connection_pooler;
    if pooler.connection_pooler_number_of_instances < 1 {
        v.fail(
            "connection_pooler_number_of_instances",
            pooler.connection_pooler_number_of_instances.to_string(),
            "expected at least 1 pooler instance",
        );
    }
    if pooler.connection_pooler_user == c.users.super_username {
        v.fail(
            "connection_pooler_user",
            &pooler.connection_pooler_user,
            format!(
                "must differ from super_username ({})",
                c.users.super_username
            ),
        );
    }
    if c.users.super_username.is_empty() {
        v.fail("super_username", "", "expected a role name");
    }
    if c.users.replication_username.is_empty() {
        v.fail("replication_username", "", "expected a role name");
    }
    if c.users.password_rotation_interval == 0 {
        v.fail(
            "password_rotation_interval",
            "0",
            "expected a number of days >= 1",
        );
    }

    v.one_of(
        "major_version_upgrade_mode",
        &c.major_version_upgrade.major_version_upgrade_mode,
        &["off", "manual", "full"],
    );
    v.one_of(
        "node_readiness_label_merge",
        &k.node_readiness_label_merge,
        &["OR", "AND"],
    );
    v.one_of(
        "pod_management_policy",
        &k.pod_management_policy,
        &["ordered_ready", "parallel"],
    );
    v.one_of(
        "storage_resize_mode",
        &k.storage_resize_mode,
        &["pvc", "ebs", "mixed", "off"],
    );
    v.one_of(
        "external_traffic_policy",
        &c.load_balancer.external_traffic_policy,
        &["Cluster", "Local"],
    );
    v.one_of(
        "logical_backup_provider",
        &c.logical_backup.logical_backup_provider,
        &["s3", "gcs", "az"],
    );
    v.one_of(
        "connection_pooler_mode",
        &pooler.connection_pooler_mode,
        &["session", "transaction"],
    );
    v.one_of(
        "minimal_major_version",
        &c.major_version_upgrade.minimal_major_version,
        patterns::SUPPORTED_MAJOR_VERSIONS,
    );
    v.one_of(
        "target_major_version",
        &c.major_version_upgrade.target_major_version,
        patterns::SUPPORTED_MAJOR_VERSIONS,
    );

    let t = &c.timeouts;
    for (key, value, positive) in [
        ("resync_period", &c.resync_period, true),
        ("repair_period", &c.repair_period, true),
        (
            "pod_terminate_grace_period",
            &k.pod_terminate_grace_period,
            false,
        ),
        ("master_pod_move_timeout", &k.master_pod_move_timeout, true),
        (
            "patroni_api_check_interval",
            &t.patroni_api_check_interval,
            true,
        ),
        (
            "patroni_api_check_timeout",
            &t.patroni_api_check_timeout,
            true,
        ),
        ("resource_check_interval", &t.resource_check_interval, true),
        ("resource_check_timeout", &t.resource_check_timeout, true),
        ("pod_label_wait_timeout", &t.pod_label_wait_timeout, true),
        (
            "pod_deletion_wait_timeout",
            &t.pod_deletion_wait_timeout,
            true,
        ),
        ("ready_wait_interval", &t.ready_wait_interval, true),
        ("ready_wait_timeout", &t.ready_wait_timeout, true),
    ] {
        match parse_duration(value) {
            Err(expected) => v.fail(key, value, expected),
            Ok(d) if positive && d.is_zero() => {
                v.fail(key, value, "expected a duration greater than 0")
            }
            Ok(_) => {}
        }
    }

    let r = &c.postgres_pod_resources;
    let lb = &c.logical_backup;
    let sc = &c.scalyr;
    for (key, value) in [
        ("default_cpu_request", &r.default_cpu_request),
        ("default_cpu_limit", &r.default_cpu_limit),
        ("max_cpu_request", &r.max_cpu_request),
        ("min_cpu_limit", &r.min_cpu_limit),
        ("logical_backup_cpu_request", &lb.logical_backup_cpu_request),
        ("logical_backup_cpu_limit", &lb.logical_backup_cpu_limit),
        ("scalyr_cpu_request", &sc.scalyr_cpu_request),
        ("scalyr_cpu_limit", &sc.scalyr_cpu_limit),
        (
            "connection_pooler_default_cpu_request",
            &pooler.connection_pooler_default_cpu_request,
        ),
        (
            "connection_pooler_default_cpu_limit",
            &pooler.connection_pooler_default_cpu_limit,
        ),
    ] {
        v.quantity(
            key,
            value,
            &patterns::CPU_RE,
            "a CPU quantity such as 100m or 1",
        );
    }
    for (key, value) in [
        ("default_memory_request", &r.default_memory_request),
        ("default_memory_limit", &r.default_memory_limit),
        ("max_memory_request", &r.max_memory_request),
        ("min_memory_limit", &r.min_memory_limit),
        (
            "logical_backup_memory_request",
            &lb.logical_backup_memory_request,
        ),
        (
            "logical_backup_memory_limit",
            &lb.logical_backup_memory_limit,
        ),
        ("scalyr_memory_request", &sc.scalyr_memory_request),
        ("scalyr_memory_limit", &sc.scalyr_memory_limit),
        (
            "connection_pooler_default_memory_request",
            &pooler.connection_pooler_default_memory_request,
        ),
        (
            "connection_pooler_default_memory_limit",
            &pooler.connection_pooler_default_memory_limit,
        ),
    ] {
        v.quantity(
            key,
            value,
            &patterns::MEMORY_RE,
            "a memory quantity such as 100Mi or 1Gi",
        );
    }

    for window in &c.maintenance_windows {
        if !patterns::MAINTENANCE_WINDOW_RE.is_match(window) {
            v.fail(
                "maintenance_windows",
                window,
                "expected HH:MM-HH:MM or Ddd:HH:MM-HH:MM (Ddd = Mon..Sun)",
            );
        }
    }
    if !patterns::CRON_RE.is_match(&lb.logical_backup_schedule) {
        v.fail(
            "logical_backup_schedule",
            &lb.logical_backup_schedule,
            "expected a five-field cron schedule such as 30 00 * * *",
        );
    }
    for (policy, value) in &k.persistent_volume_claim_retention_policy {
        if !["when_deleted", "when_scaled"].contains(&policy.as_str()) {
            v.fail(
                "persistent_volume_claim_retention_policy",
                format!("{policy}:{value}"),
                "expected the keys when_deleted and when_scaled",
            );
        } else if !["retain", "delete"].contains(&value.as_str()) {
            v.fail(
                "persistent_volume_claim_retention_policy",
                format!("{policy}:{value}"),
                "expected retain or delete",
            );
        }
    }
    if let Err(expected) = super::effective_toleration(&k.toleration) {
        v.fail(
            "toleration",
            super::encoding::render_map(&k.toleration),
            expected,
        );
    }
    if !k.secret_name_template.contains("{username}")
        || !k.secret_name_template.contains("{cluster}")
    {
        v.fail("secret_name_template", &k.secret_name_template, "must contain {username} and {cluster} so every user of every cluster gets its own secret");
    } else if let Some(unknown) = unknown_placeholder(&k.secret_name_template) {
        v.fail(
            "secret_name_template",
            &k.secret_name_template,
            format!(
                "unknown placeholder {unknown}; only {} are substituted",
                crate::naming::SECRET_TEMPLATE_PLACEHOLDERS.join(", ")
            ),
        );
    }
    if !k.pdb_name_format.contains("{cluster}") {
        v.fail(
            "pdb_name_format",
            &k.pdb_name_format,
            "must contain {cluster}",
        );
    }
    for (key, value) in [
        ("docker_image", &c.docker_image),
        ("cluster_name_label", &k.cluster_name_label),
        ("pod_role_label", &k.pod_role_label),
        ("pod_service_account_name", &k.pod_service_account_name),
    ] {
        if value.trim().is_empty() {
            v.fail(key, value, "must not be empty");
        }
    }
    for (key, value) in [
        ("oauth_token_secret_name", &k.oauth_token_secret_name),
        ("pod_environment_configmap", &k.pod_environment_configmap),
        (
            "infrastructure_roles_secret_name",
            &k.infrastructure_roles_secret_name,
        ),
    ] {
        if !value.is_empty()
            && let Err(expected) = parse_namespaced_name(value, "default")
        {
            v.fail(key, value, expected);
        }
    }
    for (index, role) in k.infrastructure_roles_secrets.iter().enumerate() {
        if role.secretname.is_empty() {
            v.fail(
                format!("infrastructure_roles_secrets[{index}].secretname"),
                "",
                "must name a secret",
            );
        }
    }
    if !(0..=65535).contains(&c.logging_rest_api.api_port) {
        v.fail(
            "api_port",
            c.logging_rest_api.api_port.to_string(),
            "expected a port between 0 and 65535",
        );
    }
    for (index, sidecar) in c.sidecars.iter().enumerate() {
        if sidecar.name.is_empty() || sidecar.image.as_deref().unwrap_or_default().is_empty() {
            v.fail(
                format!("sidecars[{index}]"),
                &sidecar.name,
                "every global sidecar needs a name and an image",
            );
        }
    }
    v.finish()
}

/// The first `{...}` in a template that is not one of the secret name placeholders.
fn unknown_placeholder(template: &str) -> Option<&str> {
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = start + rest[start..].find('}')? + 1;
        let candidate = &rest[start..end];
        if !crate::naming::SECRET_TEMPLATE_PLACEHOLDERS.contains(&candidate) {
            return Some(candidate);
        }
        rest = &rest[end..];
    }
    None
}

#[derive(Default)]
struct Validator(Vec<ConfigProblem>);

impl Validator {
    fn fail(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
        expected: impl Into<String>,
    ) {
        self.0.push(ConfigProblem::new(key, value, expected));
    }

    fn one_of(&mut self, key: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.fail(
                key,
                value,
                format!("expected one of {}", allowed.join(", ")),
            );
        }
    }

    /// Empty means unset; `0` is accepted for limits as Zalando does ("", 0 and null = unset).
    fn quantity(&mut self, key: &str, value: &str, re: &regex::Regex, what: &str) {
        if !value.is_empty() && !re.is_match(value) {
            self.fail(key, value, format!("expected {what}"));
        }
    }

    fn finish(self) -> Result<(), Vec<ConfigProblem>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// Options that are valid but do not do here what they do in Zalando's operator: the
/// administrator is told at load time (and in `--print-config`), never left to find out.
pub fn warnings(c: &Config) -> Vec<ConfigWarning> {
    let mut warnings = Vec::new();
    let mode = &c.kubernetes.storage_resize_mode;
    let message = match mode.as_str() {
        "ebs" => Some(
            "resizing EBS volumes needs the AWS API, which this operator does not call: volumes are not resized at all (use pvc with a StorageClass that allows volume expansion)",
        ),
        "mixed" => Some(
            "changing EBS volume type, IOPS or throughput needs the AWS API, which this operator does not call: only the persistent volume claims are grown, as with pvc",
        ),
        _ => None,
    };
    if let Some(message) = message {
        warnings.push(ConfigWarning::new(
            "storage_resize_mode",
            format!("storage_resize_mode {mode:?}: {message}"),
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(edit: impl FnOnce(&mut Config)) -> Vec<String> {
        let mut c = Config::default();
        edit(&mut c);
        match validate(&c) {
            Ok(()) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(problems(|_| {}), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let found = problems(|c| {
            c.min_instances = 5;
            c.max_instances = 3;
            c.connection_pooler.connection_pooler_user = "postgres".into();
            c.major_version_upgrade.major_version_upgrade_mode = "auto".into();
            c.resync_period = "10 minutes".into();
            c.postgres_pod_resources.default_memory_request = "lots".into();
            c.workers = 0;
        });
        assert_eq!(
            found,
            vec![
                r#"min_instances: "5" is invalid: must not exceed max_instances (3); use -1 to disable either bound"#,
                r#"workers: "0" is invalid: expected at least 1 worker"#,
                r#"connection_pooler_user: "postgres" is invalid: must differ from super_username (postgres)"#,
                r#"major_version_upgrade_mode: "auto" is invalid: expected one of off, manual, full"#,
                r#"resync_period: "10 minutes" is invalid: expected a Go duration such as 30s, 5m or 1h30m"#,
                r#"default_memory_request: "lots" is invalid: expected a memory quantity such as 100Mi or 1Gi"#,
            ]
        );
    }

    #[test]
    fn table_of_single_problems() {
        type Edit = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("min_instances", Box::new(|c| c.min_instances = -2)),
            (
                "connection_pooler_number_of_instances",
                Box::new(|c| c.connection_pooler.connection_pooler_number_of_instances = 0),
            ),
            (
                "pod_management_policy",
                Box::new(|c| c.kubernetes.pod_management_policy = "Parallel".into()),
            ),
            (
                "storage_resize_mode",
                Box::new(|c| c.kubernetes.storage_resize_mode = "auto".into()),
            ),
            (
                "target_major_version",
                Box::new(|c| c.major_version_upgrade.target_major_version = "13".into()),
            ),
            ("repair_period", Box::new(|c| c.repair_period = "0".into())),
            (
                "default_cpu_limit",
                Box::new(|c| c.postgres_pod_resources.default_cpu_limit = "1 core".into()),
            ),
            (
                "maintenance_windows",
                Box::new(|c| c.maintenance_windows = vec!["Someday:01:00-02:00".into()]),
            ),
            (
                "logical_backup_schedule",
                Box::new(|c| c.logical_backup.logical_backup_schedule = "daily".into()),
            ),
            (
                "persistent_volume_claim_retention_policy",
                Box::new(|c| {
                    c.kubernetes
                        .persistent_volume_claim_retention_policy
                        .insert("when_scaled".into(), "keep".into());
                }),
            ),
            (
                "toleration",
                Box::new(|c| {
                    c.kubernetes
                        .toleration
                        .insert("tolerationSeconds".into(), "5".into());
                }),
            ),
            (
                "secret_name_template",
                Box::new(|c| c.kubernetes.secret_name_template = "{cluster}.credentials".into()),
            ),
            (
                "secret_name_template",
                Box::new(|c| {
                    c.kubernetes.secret_name_template = "{namespace}.{username}.{cluster}".into()
                }),
            ),
            (
                "pdb_name_format",
                Box::new(|c| c.kubernetes.pdb_name_format = "pdb".into()),
            ),
            (
                "pod_environment_configmap",
                Box::new(|c| c.kubernetes.pod_environment_configmap = "a/b/c".into()),
            ),
            (
                "api_port",
                Box::new(|c| c.logging_rest_api.api_port = 70000),
            ),
            ("docker_image", Box::new(|c| c.docker_image = " ".into())),
        ];
        for (key, edit) in cases {
            let found = problems(edit);
            assert_eq!(found.len(), 1, "{key}: {found:?}");
            assert!(
                found[0].starts_with(&format!("{key}: ")),
                "{key}: {found:?}"
            );
        }
    }

    #[test]
    fn zero_limits_and_empty_values_mean_unset() {
        assert!(
            problems(|c| {
                c.postgres_pod_resources.default_cpu_limit = "0".into();
                c.postgres_pod_resources.default_memory_limit = String::new();
                c.min_instances = 0;
                c.max_instances = 0;
            })
            .is_empty()
        );
    }

    #[test]
    fn resize_modes_needing_a_cloud_api_are_warned_about() {
        let warned = |mode: &str| {
            let mut c = Config::default();
            c.kubernetes.storage_resize_mode = mode.into();
            warnings(&c)
        };
        assert_eq!(warned("pvc"), []);
        assert_eq!(warned("off"), []);
        let ebs = warned("ebs");
        assert_eq!(ebs.len(), 1);
        assert_eq!(ebs[0].key, "storage_resize_mode");
        assert!(
            ebs[0]
                .message
                .starts_with("storage_resize_mode \"ebs\": resizing EBS volumes needs the AWS API"),
            "{}",
            ebs[0].message
        );
        let mixed = warned("mixed");
        assert!(
            mixed[0]
                .message
                .contains("only the persistent volume claims are grown"),
            "{}",
            mixed[0].message
        );
    }
}
