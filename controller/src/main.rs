//! The controller binary. For now it loads and prints its configuration; reconciliation arrives
//! with the controller issue.

use clap::Parser;
use common::config::{ConfigSource, Environment, WatchScope, fetch::fetch};

/// Kubernetes operator for PostgreSQL (Zalando-compatible): the controller.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Namespace the operator runs in (defaults to the service account's namespace).
    #[arg(long, env = "OPERATOR_NAMESPACE")]
    operator_namespace: Option<String>,
    /// Print the effective configuration as YAML and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let namespace = common::config::source::operator_namespace(args.operator_namespace);
    let env = Environment::from_lookup(|k| std::env::var(k).ok(), namespace);
    let source = ConfigSource::select(&env).map_err(anyhow::Error::msg)?;
    println!(
        "controller {} (configuration: {source:?})",
        env!("CARGO_PKG_VERSION")
    );
    let loaded = match source {
        ConfigSource::Defaults => common::config::load(common::config::Input::Defaults)?,
        _ => fetch(&kube::Client::try_default().await?, &source).await?,
    };
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    println!("watching: {:?}", WatchScope::resolve(&env, &loaded.config));
    if args.print_config {
        print!("{}", serde_yaml::to_string(&loaded.config)?);
    }
    Ok(())
}
