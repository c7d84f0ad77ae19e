//! `pod-runner`: plays the kubelet of this checkout's kwok nodes for Spilo containers (a real
//! Patroni + PostgreSQL each, see `world::runner`).
//!
//! Usage: `pod-runner [--kubeconfig FILE] [--state-dir DIR] [--run-dir SHORT_DIR]
//! [--kubelet-server ADDR] [--exec-path DIR] [--operator-bin DIR]`; defaults: `$KUBECONFIG`, `.local/state/world` and
//! its `run` (members' sockets: keep the path short). `$PGOP_CACHE` (default `~/.cache/pgop`)
//! holds the world's majors and Patroni (`scripts/world-install.sh`). Runs as root (PID
//! namespaces, user postgres).
//!
//! `--kubelet-server` is kwok's kubelet server (`--server-address` of kwok): the other kwok
//! nodes' kubelet endpoints are forwarded to it. `--exec-path` is the folder at the head of
//! kwok's `PATH`: the runner fills it with the shims that run `kubectl exec` commands from the
//! pod's `PATH` (see `world::runner::kubelet_io`). `--operator-bin` is where the operator's
//! `controller` and `webhook` are built (`$CARGO_TARGET_DIR/debug`): containers of the operator's
//! images run them (see `world::runner::operator`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use world::runner::{self, Context, api::ApiServer, kubelet_io};

const USAGE: &str = "usage: pod-runner [--kubeconfig FILE] [--state-dir DIR] [--run-dir SHORT_DIR] [--kubelet-server ADDR] [--exec-path DIR] [--operator-bin DIR]";

/// Fills `dir` with a shim per tool of the world's majors and `patronictl`.
fn exec_shims(cache: &Path, dir: &Path) -> anyhow::Result<()> {
    let bins: Vec<PathBuf> = world::majors::available(cache)
        .iter()
        .filter_map(|m| world::majors::bin_dir(cache, m).ok())
        .collect();
    let mut names = kubelet_io::executables(&bins);
    let patroni = world::majors::patroni(cache);
    if patroni.with_file_name("patronictl").exists() {
        names.insert("patronictl".into());
    }
    let n = kubelet_io::write_exec_shims(dir, &names)
        .with_context(|| format!("writing exec shims in {}", dir.display()))?;
    tracing::info!(dir = %dir.display(), names = n, "exec shims written");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // Run by the hook of `kubectl exec … python3 /scripts/inplace_upgrade.py` in a Spilo
    // container, as the container's user (see `world::upgrade`).
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(world::upgrade::SUBCOMMAND) {
        std::process::exit(world::upgrade::main(&argv[2..]));
    }
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut kubeconfig = std::env::var_os("KUBECONFIG").map(PathBuf::from);
    let mut state_dir = PathBuf::from(".local/state/world");
    let mut run_root: Option<PathBuf> = None;
    let mut kubelet_server: Option<SocketAddr> = None;
    let mut exec_path: Option<PathBuf> = None;
    let mut operator_bin: Option<PathBuf> = None;
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
            "--kubelet-server" => {
                let value = args.next().context("--kubelet-server ADDR")?;
                kubelet_server = Some(
                    value
                        .parse()
                        .with_context(|| format!("--kubelet-server {value:?}: not IP:PORT"))?,
                );
            }
            "--exec-path" => {
                exec_path = Some(args.next().map(PathBuf::from).context("--exec-path DIR")?)
            }
            "--operator-bin" => {
                operator_bin = Some(
                    args.next()
                        .map(PathBuf::from)
                        .context("--operator-bin DIR")?,
                )
            }
            "-h" | "--help" => {
                println!("{USAGE}");
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
    if let Some(dir) = &exec_path {
        exec_shims(&cache, dir)?;
    }
    let hook = world::upgrade::hook_dir(&state_dir);
    let me = std::env::current_exe().context("the pod runner's own path")?;
    world::upgrade::install_hook(&hook, &me)
        .with_context(|| format!("writing the in-place upgrade hook in {}", hook.display()))?;

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
                operator_bin,
            });
            tracing::info!(state = %ctx.state_dir.display(), cache = %ctx.cache.display(), "pod runner started");
            let services = tokio::spawn(runner::services::serve(ctx.client.clone()));
            let claims = tokio::spawn(runner::claims::collect(
                ctx.client.clone(),
                ctx.state_dir.join("pvcs"),
            ));
            let kubelets = tokio::spawn({
                let client = ctx.client.clone();
                async move {
                    match kubelet_server {
                        Some(server) => runner::kubelet_proxy::serve(client, server).await,
                        None => std::future::pending().await,
                    }
                }
            });
            tokio::select! {
                result = runner::run(ctx) => result,
                result = services => result?,
                result = kubelets => result?,
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
