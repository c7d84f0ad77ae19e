//! Wiring: configuration, certificates, servers, background tasks and shutdown.

use crate::args::{Args, TlsMode};
use crate::metrics::Metrics;
use crate::self_tls;
use crate::state::State;
use crate::tls::{self, ReloadingCert};
use arc_swap::ArcSwap;
use common::config::{self, ConfigSource, Environment, Input};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::net::TcpListener;

/// Runs the webhook until SIGTERM or Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let namespace = config::source::operator_namespace(args.operator_namespace.clone());
    let env = Environment::from_lookup(|k| std::env::var(k).ok(), namespace.clone());
    let source = ConfigSource::select(&env).map_err(anyhow::Error::msg)?;
    let client = match kube::Client::try_default().await {
        Ok(client) => Some(client),
        Err(error) if source == ConfigSource::Defaults => {
            tracing::warn!(%error, "no Kubernetes client: clone sources cannot be looked up");
            None
        }
        Err(error) => {
            anyhow::bail!("cannot reach the Kubernetes API to read the configuration: {error}")
        }
    };
    if args.print_config {
        let loaded = match &client {
            Some(client) => runtime::config_fetch::fetch(client, &source).await?,
            None => config::load(Input::Defaults)?,
        };
        print!("{}", serde_yaml::to_string(&loaded.config)?);
        return Ok(());
    }

    let certs = match args.tls_mode {
        TlsMode::Files => ReloadingCert::load(&args.tls_cert, &args.tls_key)?,
        TlsMode::SelfManaged => ReloadingCert::empty(&args.tls_cert, &args.tls_key),
    };
    let state = Arc::new(State {
        config: ArcSwap::from_pointee(config::load(Input::Defaults)?),
        config_loaded: AtomicBool::new(false),
        controller_id: env.controller_id().to_string(),
        certs: certs.clone(),
        metrics: Metrics::default(),
        client: client.clone(),
        max_body_bytes: args.max_body_bytes,
        request_timeout: Duration::from_secs(args.request_timeout_seconds),
    });
    tracing::info!(?source, controller_id = %state.controller_id, "starting");

    let mut background = tokio::task::JoinSet::new();
    match &client {
        Some(client) => {
            background.spawn(crate::config_watch::follow(
                client.clone(),
                source,
                state.clone(),
            ));
        }
        None => state
            .config_loaded
            .store(true, std::sync::atomic::Ordering::Release),
    }
    match (args.tls_mode, &client) {
        (TlsMode::Files, _) => {
            background.spawn(
                certs
                    .clone()
                    .watch(Duration::from_secs(args.cert_reload_seconds.max(1))),
            );
        }
        (TlsMode::SelfManaged, Some(client)) => {
            background.spawn(self_tls::run(
                client.clone(),
                self_managed(&args, &namespace)?,
                certs.clone(),
            ));
        }
        (TlsMode::SelfManaged, None) => {
            anyhow::bail!("--tls-mode=self-managed needs the Kubernetes API (no client)")
        }
    }

    let admission = TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let admin = TcpListener::bind(args.admin_listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.admin_listen))?;
    tracing::info!(admission = %admission.local_addr()?, admin = %admin.local_addr()?, "listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let servers = tokio::spawn({
        let (state, tls) = (state.clone(), tls::server_config(certs));
        let (a, b) = (stopped(stop_rx.clone()), stopped(stop_rx));
        async move {
            tokio::join!(
                crate::server::serve_admission(admission, state.clone(), tls, a),
                runtime::http::serve_admin(admin, state, b),
            )
        }
    });
    runtime::http::shutdown_signal().await;
    tracing::info!("shutting down: draining connections");
    let _ = stop_tx.send(true);
    let _ = servers.await;
    background.shutdown().await;
    Ok(())
}

/// The self-managed certificate's settings from the command line.
fn self_managed(args: &Args, namespace: &str) -> anyhow::Result<self_tls::Settings> {
    let named = |value: &Option<String>, flag: &str| {
        value
            .clone()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| anyhow::anyhow!("--tls-mode=self-managed needs {flag}"))
    };
    if args.tls_cert_validity_seconds < 60 {
        anyhow::bail!("--tls-cert-validity-seconds must be at least 60");
    }
    Ok(self_tls::Settings {
        namespace: namespace.to_string(),
        secret: named(&args.tls_secret, "--tls-secret")?,
        service: named(&args.service_name, "--service-name")?,
        configuration: named(&args.webhook_configuration, "--webhook-configuration")?,
        lifetimes: certs::renew::Lifetimes {
            ca: time::Duration::seconds(args.tls_ca_validity_seconds.try_into()?),
            serving: time::Duration::seconds(args.tls_cert_validity_seconds.try_into()?),
        },
        check_every: Duration::from_secs(args.tls_check_seconds.max(1)),
    })
}
