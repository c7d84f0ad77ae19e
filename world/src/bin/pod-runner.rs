//! `pod-runner`: plays the kubelet of this checkout's kwok nodes for Spilo containers (a real
//! Patroni + PostgreSQL each, see `world::runner`).
//!
//! Usage: `pod-runner [--kubeconfig FILE] [--state-dir DIR] [--run-dir SHORT_DIR]`; defaults:
//! `$KUBECONFIG`, `.local/state/world` and its `run` (members' sockets: keep the path short). `$PGOP_CACHE` (default `~/.cache/pgop`) holds the world's majors and
//! Patroni (`scripts/world-install.sh`). Runs as root (PID namespaces, user postgres).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use world::runner::{self, Context, api::ApiServer};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut kubeconfig = std::env::var_os("KUBECONFIG").map(PathBuf::from);
    let mut state_dir = PathBuf::from(".local/state/world");
    let mut run_root: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--kubeconfig" => kubeconfig = args.next().map(PathBuf::from),
            "--state-dir" => {
                state_dir = args.next().map(PathBuf::from).context("--state-dir DIR")?
            }
            "--run-dir" => {
                run_root = Some(args.next().map(PathBuf::from).context("--run-dir DIR")?)
            }
            "-h" | "--help" => {
                println!(
                    "usage: pod-runner [--kubeconfig FILE] [--state-dir DIR] [--run-dir SHORT_DIR]"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    let kubeconfig = kubeconfig.context("no --kubeconfig and no KUBECONFIG")?;
    let cache = std::env::var_os("PGOP_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/pgop")))
        .context("no PGOP_CACHE and no HOME")?;
    std::fs::create_dir_all(&state_dir)?;
    let state_dir = std::fs::canonicalize(&state_dir)?;
    let run_root = run_root.unwrap_or_else(|| state_dir.join("run"));
    std::fs::create_dir_all(&run_root)?;

    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let options = kube::config::KubeConfigOptions::default();
            let config = kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(&kubeconfig)?,
                &options,
            )
            .await?;
            let client = kube::Client::try_from(config)?;
            let ctx = Arc::new(Context {
                client,
                api: ApiServer::from_kubeconfig(&kubeconfig)?,
                state_dir,
                run_root,
                cache,
            });
            tracing::info!(state = %ctx.state_dir.display(), cache = %ctx.cache.display(), "pod runner started");
            let services = tokio::spawn(runner::services::serve(ctx.client.clone()));
            let claims = tokio::spawn(runner::claims::collect(
                ctx.client.clone(),
                ctx.state_dir.join("pvcs"),
            ));
            tokio::select! {
                result = runner::run(ctx) => result,
                result = services => result?,
                result = claims => result?,
                _ = tokio::signal::ctrl_c() => Ok(()),
                _ = sigterm() => Ok(()),
            }
        })
}

async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
