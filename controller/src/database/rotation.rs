//! Password rotation in the users' Secrets, before the role sync that makes the database follow
//! them, and the drop of expired dated users after it (the rules: `common::database::rotation`).
//!
//! A sync with nothing due reads only the Secret cache: no API call, no statement. When the cache
//! says something is due, the Secret is read from the API server and the decision made again on
//! that copy, then written by server-side apply with its resourceVersion as a precondition: a
//! cache that lags behind the previous rotation can never rotate twice, and the credentials the
//! role sync uses are always those the Secret now holds. Rotation only runs where the role sync
//! runs (not with `enable_database_access` off, not for standby clusters): a Secret switched to a
//! dated user whose role nobody creates would lock the application out.

use super::{SyncError, read_json};
use crate::apply::{self, Compare};
use crate::context::Context;
use crate::events::{Event, Kind as EventKind};
use common::config::Config;
use common::crd::Postgresql;
use common::database::model::Wanted;
use common::database::rotation::{
    self as rules, Credentials, Decision, Eligibility, Kind, NEXT_ROTATION, Policy, Step,
};
use common::database::secrets::secret_namespace;
use common::naming::secret_name;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};

/// The rotation users of the given base names, as a JSON array (only when a cleanup is due).
const ROTATION_USERS_QUERY: &str = "\
select coalesce(json_agg(rolname order by rolname), '[]'::json)::text
from pg_catalog.pg_roles
where length(rolname) > 6 and right(rolname, 6) ~ '^[0-9]{6}$' and left(rolname, -6) = any($1)";

/// What the Secrets say after this sync's rotation.
#[derive(Debug, Default)]
pub struct Rotation {
    /// Each user with a Secret and the credentials it holds now.
    pub secrets: Vec<(String, Credentials)>,
    /// Users whose expired dated roles are dropped after the role sync.
    pub cleanup: BTreeSet<String>,
}

impl Rotation {
    /// Puts the credentials the Secrets hold now into `passwords` (by username), where the cache
    /// may not show this sync's writes yet; returns whether anything changed.
    pub fn update(&self, passwords: &mut BTreeMap<String, String>) -> bool {
        let mut changed = false;
        for (_, c) in &self.secrets {
            let before = passwords.insert(c.username.clone(), c.password.clone());
            changed |= before.as_ref() != Some(&c.password);
        }
        changed
    }
}

/// The credentials of a Secret, if it has a username.
pub fn credentials(secret: &Secret) -> Option<Credentials> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    Some(Credentials {
        username: text("username")?,
        password: text("password").unwrap_or_default(),
        next_rotation: text(NEXT_ROTATION),
    })
}

/// Where a user's Secret lives.
fn secret_ref(config: &Config, pg: &Postgresql, user: &str) -> (String, String) {
    (
        secret_name(
            &config.kubernetes.secret_name_template,
            user,
            pg.cluster_name(),
        ),
        secret_namespace(config, pg, user),
    )
}

/// What a written step tells the user (never a password).
fn describe(step: &Step, secret: &str) -> String {
    let c = &step.credentials;
    let next = c.next_rotation.as_deref().unwrap_or_default();
    match step.decision {
        Decision::Keep => format!("Secret {secret} unchanged"),
        Decision::Schedule => {
            format!("password rotation applies to Secret {secret}: next rotation at {next}")
        }
        Decision::PullForward => format!(
            "the rotation interval was shortened: Secret {secret} is next rotated at {next}"
        ),
        Decision::NewUser => format!(
            "rotated Secret {secret}: it holds the new user {} now; next rotation at {next}",
            c.username
        ),
        Decision::InPlace => format!(
            "rotated the password of {} in Secret {secret}; next rotation at {next}",
            c.username
        ),
        Decision::Reset => format!(
            "password rotation no longer applies: Secret {secret} holds {} again, with a new password",
            c.username
        ),
    }
}

fn event(ctx: &Context, pg: &Postgresql, kind: EventKind, reason: &str, note: String) {
    let event = Event {
        kind,
        reason: reason.into(),
        note,
        action: "Sync".into(),
        related: None,
    };
    ctx.events.publish(pg.object_ref(&()), event);
}

/// Decides again on the Secret as the API server has it and writes the outcome. Returns the
/// credentials the Secret holds afterwards and whether a cleanup follows.
async fn rotate_fresh(
    ctx: &Context,
    pg: &Postgresql,
    policy: &Policy,
    user: &str,
    eligibility: &Eligibility,
    (name, namespace): (&str, &str),
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(Credentials, bool), String> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let fresh = api
        .get(name)
        .await
        .map_err(|e| format!("reading Secret {name}: {e}"))?;
    let current = credentials(&fresh).ok_or_else(|| format!("Secret {name} has no username"))?;
    let mut draw = crate::desired::password;
    let step = rules::decide(now, policy, user, eligibility, &current, &mut draw)
        .map_err(|problem| format!("Secret {name}: {problem}"))?;
    if step.decision == Decision::Keep {
        return Ok((current, false));
    }
    let c = &step.credentials;
    let value = |s: &str| ByteString(s.as_bytes().to_vec());
    let desired = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            // A precondition: had anything changed the Secret since the read, the apply fails
            // and the next sync decides again.
            resource_version: fresh.metadata.resource_version.clone(),
            ..ObjectMeta::default()
        },
        data: Some(
            [
                ("username".to_string(), value(&c.username)),
                ("password".to_string(), value(&c.password)),
                (
                    NEXT_ROTATION.to_string(),
                    value(c.next_rotation.as_deref().unwrap_or_default()),
                ),
            ]
            .into(),
        ),
        ..Secret::default()
    };
    apply::ensure(&api, &ctx.stores.secrets, &desired, Compare::Contents)
        .await
        .map_err(|e| format!("writing Secret {name}: {e}"))?;
    ctx.metrics.wrote("secrets");
    let note = describe(&step, name);
    tracing::info!(cluster = %pg.name_any(), "{note}");
    event(ctx, pg, EventKind::Normal, "PasswordRotation", note);
    Ok((step.credentials, step.cleanup))
}

/// Rotates what is due in the Secrets of the users of `wanted` that have one.
pub async fn rotate(
    ctx: &Context,
    config: &Config,
    pg: &Postgresql,
    wanted: &Wanted,
    now: chrono::DateTime<chrono::Utc>,
) -> Rotation {
    let policy = Policy::new(config, pg);
    let mut out = Rotation::default();
    for user in crate::desired::secrets::secret_users(config, pg) {
        let Some(role) = wanted.roles.iter().find(|r| r.name == user) else {
            continue;
        };
        let (name, namespace) = secret_ref(config, pg, &user);
        let cached = ctx
            .stores
            .secrets
            .get(&ObjectRef::new(&name).within(&namespace));
        let Some(current) = cached.as_deref().and_then(credentials) else {
            continue;
        };
        let kind = Kind::of(role.origin);
        let eligibility = rules::eligibility(&policy, &user, kind, rules::owns_database(pg, role));
        // The cache only tells whether to look: no password is drawn for this first decision.
        let due = match rules::decide(
            now,
            &policy,
            &user,
            &eligibility,
            &current,
            &mut String::new,
        ) {
            Ok(step) => step.decision != Decision::Keep,
            Err(problem) => {
                tracing::warn!(cluster = %pg.name_any(), secret = %name, "{problem}");
                false
            }
        };
        if !due {
            out.secrets.push((user, current));
            continue;
        }
        let at = (name.as_str(), namespace.as_str());
        match rotate_fresh(ctx, pg, &policy, &user, &eligibility, at, now).await {
            Ok((credentials, cleanup)) => {
                if cleanup {
                    out.cleanup.insert(user.clone());
                }
                out.secrets.push((user, credentials));
            }
            Err(problem) => {
                tracing::warn!(cluster = %pg.name_any(), "password rotation: {problem}");
                event(
                    ctx,
                    pg,
                    EventKind::Warning,
                    "PasswordRotationFailed",
                    problem,
                );
                out.secrets.push((user, current));
            }
        }
    }
    out
}

/// Drops the expired rotation users of `rotation.cleanup`; a role that cannot be dropped (it
/// owns objects, say) is logged and left for the next rotation. Returns how many were dropped.
pub async fn cleanup(
    ctx: &Context,
    config: &Config,
    pg: &Postgresql,
    target: &super::connect::Target,
    rotation: &Rotation,
    wanted: &Wanted,
    now: chrono::DateTime<chrono::Utc>,
) -> usize {
    if rotation.cleanup.is_empty() {
        return 0;
    }
    let cluster = pg.name_any();
    let found = async {
        let connection = ctx.connector.connect(target, "postgres").await?;
        let users: Vec<String> = rotation.cleanup.iter().cloned().collect();
        let param: &(dyn tokio_postgres::types::ToSql + Sync) = &users;
        let doc = read_json(
            connection.client(),
            "postgres",
            ROTATION_USERS_QUERY,
            &[(param, tokio_postgres::types::Type::TEXT_ARRAY)],
        )
        .await?;
        serde_json::from_str::<Vec<String>>(&doc).map_err(|e| SyncError::Catalog {
            database: "postgres".into(),
            message: e.to_string(),
        })
    }
    .await;
    let existing = match found {
        Ok(names) => names,
        Err(error) => {
            tracing::warn!(%cluster, "looking for expired rotation users: {error}");
            return 0;
        }
    };
    let keep: BTreeSet<String> = wanted
        .roles
        .iter()
        .map(|r| r.name.clone())
        .chain(rotation.secrets.iter().map(|(_, c)| c.username.clone()))
        .collect();
    let policy = Policy::new(config, pg);
    let expired = rules::expired(now, &policy, &rotation.cleanup, &existing, &keep);
    if expired.is_empty() {
        return 0;
    }
    let statements = rules::drop_statements(&expired, &policy);
    match super::execute::run(&ctx.connector, target, &statements).await {
        Ok(report) => {
            for failure in &report.failed {
                tracing::warn!(%cluster, "could not {}: {}", failure.what, failure.error);
            }
            report.applied
        }
        Err(error) => {
            tracing::warn!(%cluster, "dropping expired rotation users: {error}");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_secret_data() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s"},
            "data": {"username": "Zm9vX3VzZXIyNTAzMDE=", "password": "eHl6",
                     "nextRotation": "MjAyNS0wMy0zMVQxMjowMDowMFo="}}))
        .unwrap();
        let c = credentials(&secret).unwrap();
        assert_eq!(c.username, "foo_user250301");
        assert_eq!(c.password, "xyz");
        assert_eq!(c.next_rotation.as_deref(), Some("2025-03-31T12:00:00Z"));
        let bare: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s"}, "data": {"password": "eHl6"}}))
        .unwrap();
        assert_eq!(credentials(&bare), None);
    }

    #[test]
    fn the_secrets_after_rotation_override_the_cache() {
        let creds = |u: &str, p: &str| Credentials {
            username: u.into(),
            password: p.into(),
            next_rotation: None,
        };
        let mut passwords = BTreeMap::from([
            ("foo_user".to_string(), "old".to_string()),
            ("flyway".to_string(), "same".to_string()),
        ]);
        let unchanged = Rotation {
            secrets: vec![("flyway".into(), creds("flyway", "same"))],
            cleanup: BTreeSet::new(),
        };
        assert!(!unchanged.update(&mut passwords));
        let rotated = Rotation {
            secrets: vec![("foo_user".into(), creds("foo_user250301", "new"))],
            cleanup: BTreeSet::new(),
        };
        assert!(rotated.update(&mut passwords));
        assert_eq!(passwords["foo_user250301"], "new");
        // The original keeps the password it has in the database.
        assert_eq!(passwords["foo_user"], "old");
    }

    #[test]
    fn notes_never_carry_the_password() {
        let step = Step {
            decision: Decision::NewUser,
            credentials: Credentials {
                username: "foo_user250301".into(),
                password: "hunter2".into(),
                next_rotation: Some("2025-03-31T12:00:00Z".into()),
            },
            cleanup: true,
        };
        let note = describe(&step, "foo-user.acid.credentials");
        assert!(note.contains("foo_user250301") && note.contains("2025-03-31T12:00:00Z"));
        assert!(!note.contains("hunter2"));
    }
}
