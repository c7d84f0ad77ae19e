//! `--tls-mode=self-managed`: the webhook makes, stores and renews its own CA and serving
//! certificate, and puts the CA into its webhook configurations.
//!
//! Why not Helm's `genCA` + `lookup`: it renders a new CA on every `helm template` (GitOps tools
//! never see a stable output) and nothing renews it. Here the material lives in one Secret that
//! every replica reads and, when [`certs::renew::decide`] says so, rewrites with optimistic
//! concurrency (a create or a replace at the read resourceVersion), so two replicas racing agree
//! on one result. The `caBundle` is injected at run time and re-injected whenever a configuration
//! is recreated or loses it; the chart never renders one, so `helm upgrade` cannot wipe it.

use crate::tls::ReloadingCert;
use certs::renew::{Decision, Lifetimes, Stored, decide};
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The field manager of the webhook's writes.
const MANAGER: &str = "postgres-operator-webhook";

/// What to manage and where.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace of the webhook, its Service and the Secret.
    pub namespace: String,
    /// The `kubernetes.io/tls` Secret holding `ca.crt`, `ca.key`, `tls.crt`, `tls.key`.
    pub secret: String,
    /// The webhook Service the certificate names.
    pub service: String,
    /// Name of the Mutating- and ValidatingWebhookConfiguration to inject the CA into.
    pub configuration: String,
    /// Validity of new certificates.
    pub lifetimes: Lifetimes,
    /// Time between checks when nothing changes.
    pub check_every: Duration,
}

/// Keeps the certificate current until the task is dropped; errors are logged and retried with
/// back-off, the last good certificate stays served meanwhile.
pub async fn run(client: Client, settings: Settings, certs: Arc<ReloadingCert>) {
    let changes = futures::stream::select_all([
        changes_of(
            Api::<Secret>::namespaced(client.clone(), &settings.namespace),
            &settings.secret,
        ),
        changes_of(
            Api::<MutatingWebhookConfiguration>::all(client.clone()),
            &settings.configuration,
        ),
        changes_of(
            Api::<ValidatingWebhookConfiguration>::all(client.clone()),
            &settings.configuration,
        ),
    ]);
    let mut changes = std::pin::pin!(changes);
    let mut failures = 0u32;
    loop {
        let wait = match round(&client, &settings, &certs).await {
            Ok(()) => {
                failures = 0;
                settings.check_every
            }
            Err(error) => {
                failures += 1;
                let wait = Duration::from_secs(1 << failures.min(6));
                tracing::warn!(%error, retry_in = ?wait, "webhook certificate not in place");
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = changes.next() => {}
        }
    }
}

/// A tick for every change of the one object `name` (errors included: the watcher retries).
fn changes_of<K>(api: Api<K>, name: &str) -> futures::stream::BoxStream<'static, ()>
where
    K: kube::Resource + Clone + std::fmt::Debug + DeserializeOwned + Send + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watcher(api, config).default_backoff().map(|_| ()).boxed()
}

/// One pass: the Secret is current, its pair is served, and the CA bundle is injected.
async fn round(client: &Client, settings: &Settings, certs: &ReloadingCert) -> anyhow::Result<()> {
    let stored = ensure_secret(client, settings).await?;
    let origin = format!("Secret {}/{}", settings.namespace, settings.secret);
    if certs.install(
        stored.tls_cert.clone().into_bytes(),
        stored.tls_key.clone().into_bytes(),
        &origin,
    )? {
        tracing::info!(secret = %origin, "serving the certificate from the Secret");
    }
    let bundle = ByteString(stored.ca_bundle.into_bytes());
    inject(
        Api::<MutatingWebhookConfiguration>::all(client.clone()),
        settings,
        &bundle,
        |c| {
            c.webhooks
                .iter_mut()
                .flatten()
                .map(|w| &mut w.client_config)
                .collect()
        },
    )
    .await?;
    inject(
        Api::<ValidatingWebhookConfiguration>::all(client.clone()),
        settings,
        &bundle,
        |c| {
            c.webhooks
                .iter_mut()
                .flatten()
                .map(|w| &mut w.client_config)
                .collect()
        },
    )
    .await
}

fn key(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .unwrap_or_default()
}

fn stored_in(secret: &Secret) -> Stored {
    Stored {
        ca_bundle: key(secret, "ca.crt"),
        ca_key: key(secret, "ca.key"),
        tls_cert: key(secret, "tls.crt"),
        tls_key: key(secret, "tls.key"),
    }
}

/// Reads the Secret and rewrites it when the decision says so; a lost race re-reads.
async fn ensure_secret(client: &Client, settings: &Settings) -> anyhow::Result<Stored> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
    let request = certs::Request {
        service: settings.service.clone(),
        namespace: settings.namespace.clone(),
        dns_names: vec![],
        ip_addresses: vec![],
        days: 0,
    };
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    for _ in 0..5 {
        let existing = api.get_opt(&settings.secret).await?;
        let current = existing.as_ref().map(stored_in);
        let now = time::OffsetDateTime::now_utc();
        let (stored, why) = match decide(now, current.as_ref(), &request, settings.lifetimes)? {
            Decision::Keep => return Ok(current.unwrap_or_default()),
            Decision::Write { stored, why } => (stored, why),
        };
        let data: BTreeMap<String, ByteString> = [
            ("ca.crt", &stored.ca_bundle),
            ("ca.key", &stored.ca_key),
            ("tls.crt", &stored.tls_cert),
            ("tls.key", &stored.tls_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
        .collect();
        let written = match existing {
            Some(mut secret) => {
                secret.data = Some(data);
                api.replace(&settings.secret, &params, &secret).await
            }
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(settings.secret.clone()),
                        namespace: Some(settings.namespace.clone()),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".to_string(),
                            MANAGER.to_string(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    type_: Some("kubernetes.io/tls".into()),
                    data: Some(data),
                    ..Secret::default()
                };
                api.create(&params, &secret).await
            }
        };
        match written {
            Ok(_) => {
                tracing::info!(secret = %settings.secret, %why, "webhook certificate written");
                return Ok(stored);
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!(secret = %settings.secret, "another replica wrote first; re-reading");
            }
            Err(error) => {
                return Err(anyhow::anyhow!(
                    "cannot write Secret {}/{}: {error}",
                    settings.namespace,
                    settings.secret
                ));
            }
        }
    }
    anyhow::bail!(
        "Secret {}/{} kept changing under five attempts to write it",
        settings.namespace,
        settings.secret
    )
}

/// Sets `caBundle` on the entries of the named configuration that call this webhook's Service;
/// writes only when one differs. A missing configuration is fine (`webhook.enabled` with the
/// configurations managed elsewhere, or not created yet: its creation wakes the loop).
async fn inject<K>(
    api: Api<K>,
    settings: &Settings,
    bundle: &ByteString,
    client_configs: impl Fn(&mut K) -> Vec<&mut WebhookClientConfig>,
) -> anyhow::Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
{
    let Some(mut configuration) = api.get_opt(&settings.configuration).await? else {
        return Ok(());
    };
    let mut changed = false;
    for config in client_configs(&mut configuration) {
        let ours = config
            .service
            .as_ref()
            .is_some_and(|s| s.name == settings.service && s.namespace == settings.namespace);
        if ours && config.ca_bundle.as_ref() != Some(bundle) {
            config.ca_bundle = Some(bundle.clone());
            changed = true;
        }
    }
    if !changed {
        return Ok(());
    }
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    api.replace(&settings.configuration, &params, &configuration)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot put the CA into {} {}: {e}",
                K::kind(&()),
                settings.configuration
            )
        })?;
    tracing::info!(kind = %K::kind(&()), name = %settings.configuration, "CA bundle injected");
    Ok(())
}
