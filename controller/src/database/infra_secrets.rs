//! The cluster Secrets of the infrastructure roles. Zalando writes every login role a Secret; for
//! an infrastructure role it copies the password of the infrastructure definition, and replaces
//! the Secret's credentials whenever they differ from it (`updateSecret`): here the definition is
//! the source of truth, not the Secret. The Secret lives in the cluster's namespace whatever the
//! role's name, as Zalando sets the namespace of infrastructure roles.
//!
//! Written before the database sync and whatever the state of the database (Zalando's
//! `syncSecrets` runs for standby clusters too); a Secret that already holds the credentials
//! costs no API call (the Secret cache keeps `username` and `password`). The roles are those of
//! the manifest, the configuration and the infrastructure definitions; a team member of the same
//! name, which would win over the infrastructure role in the database, does not stop the copy.

use crate::context::Context;
use crate::events::{Event, Kind};
use common::config::Config;
use common::crd::Postgresql;
use common::database::model::{Origin, Password};
use common::database::sources::{self, Sources};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

/// The Secret of infrastructure role `name` with `password`, in the cluster's namespace.
pub fn secret(
    config: &Config,
    pg: &Postgresql,
    name: &str,
    password: &str,
    owner: Option<&OwnerReference>,
) -> Secret {
    let namespace = pg.namespace().unwrap_or_default();
    let mut secret = crate::desired::secrets::user_secret(config, pg, name, owner);
    secret.metadata.namespace = Some(namespace);
    secret.metadata.owner_references = owner.map(|o| vec![o.clone()]);
    secret.data = Some(credentials(name, password));
    secret
}

fn credentials(name: &str, password: &str) -> std::collections::BTreeMap<String, ByteString> {
    [
        ("username".to_string(), ByteString(name.as_bytes().to_vec())),
        (
            "password".to_string(),
            ByteString(password.as_bytes().to_vec()),
        ),
    ]
    .into()
}

/// Whether a cached Secret already holds these credentials.
fn holds(secret: &Secret, name: &str, password: &str) -> bool {
    let data = secret.data.as_ref();
    let get = |key: &str| data.and_then(|d| d.get(key)).map(|v| v.0.as_slice());
    get("username") == Some(name.as_bytes()) && get("password") == Some(password.as_bytes())
}

/// Creates or corrects the Secret of every infrastructure role of `pg`; a failure is a Warning
/// Event naming the Secret (never its contents), and the other Secrets are still written.
pub async fn sync(ctx: &Context, config: &Config, pg: &Postgresql, owner: Option<&OwnerReference>) {
    let (infrastructure, _) = ctx.roles.infrastructure(config);
    if infrastructure.is_empty() {
        return;
    }
    let none = Default::default();
    let computed = sources::wanted(
        config,
        pg,
        Sources {
            secrets: &none,
            infrastructure: &infrastructure,
            team_map: &Default::default(),
            answers: &Default::default(),
        },
    );
    for role in computed.wanted.roles {
        let (Origin::Infrastructure, Password::Clear(password)) = (role.origin, &role.password)
        else {
            continue;
        };
        let desired = secret(config, pg, &role.name, password, owner);
        if let Err(error) = ensure(ctx, &desired, &role.name, password).await {
            let name = desired.name_any();
            tracing::warn!(cluster = %pg.name_any(), secret = %name, %error, "writing an infrastructure role's Secret");
            let event = Event {
                kind: Kind::Warning,
                reason: "SecretSyncFailed".into(),
                note: format!("the Secret {name} of an infrastructure role: {error}"),
                action: "Sync".into(),
                related: None,
            };
            ctx.events.publish(pg.object_ref(&()), event);
        }
    }
}

async fn ensure(ctx: &Context, desired: &Secret, user: &str, password: &str) -> kube::Result<()> {
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let cached = ctx
        .stores
        .secrets
        .get(&ObjectRef::new(&name).within(&namespace));
    if cached.as_deref().is_some_and(|s| holds(s, user, password)) {
        return Ok(());
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    if cached.is_none() {
        let params = PostParams {
            field_manager: Some(crate::apply::FIELD_MANAGER.into()),
            ..Default::default()
        };
        match api.create(&params, desired).await {
            Ok(created) => {
                crate::apply::written(&created);
                ctx.metrics.wrote("secrets");
                tracing::info!(secret = %name, "created an infrastructure role's Secret");
                return Ok(());
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(error),
        }
    }
    let patch = serde_json::json!({ "data": credentials(user, password) });
    let params = PatchParams {
        field_manager: Some(crate::apply::FIELD_MANAGER.into()),
        ..Default::default()
    };
    let patched = api.patch(&name, &params, &Patch::Merge(&patch)).await?;
    crate::apply::written(&patched);
    ctx.metrics.wrote("secrets");
    tracing::info!(secret = %name, "copied an infrastructure role's password into its Secret");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_carries_the_infrastructure_password_in_the_cluster_namespace() {
        let pg: Postgresql = serde_yaml::from_str(
            "apiVersion: acid.zalan.do/v1\nkind: postgresql\nmetadata: {name: acid-a, namespace: prod}\n\
             spec: {teamId: acid, numberOfInstances: 1, postgresql: {version: '17'}, volume: {size: 1Gi}}",
        )
        .unwrap();
        let mut config = Config::default();
        config.kubernetes.enable_cross_namespace_secret = true;
        let s = secret(&config, &pg, "other.robot", "pw", None);
        assert_eq!(s.metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(
            s.metadata.name.as_deref(),
            Some("other.robot.acid-a.credentials.postgresql.acid.zalan.do")
        );
        assert!(holds(&s, "other.robot", "pw"));
        assert!(!holds(&s, "other.robot", "new"));
        assert_eq!(
            s.metadata.labels.as_ref().unwrap()["cluster-name"],
            "acid-a"
        );
    }
}
