//! The controller binary; see the crate documentation.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = controller::args::Args::parse();
    common::http::init_logging(args.json_logs);
    controller::app::run(args).await
}
