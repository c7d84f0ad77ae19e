//! Admission webhook for `postgresql` objects; see the crate documentation.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = webhook::Args::parse();
    webhook::app::init_logging(args.json_logs);
    webhook::app::run(args).await
}
