//! Admission webhook for `postgresql` objects; see the crate documentation.

use clap::Parser;

// Reviews are parse-heavy; mimalloc makes them markedly cheaper than the system allocator
// (`make bench-webhook`: about 40% more reviews per second).
#[global_allocator]
static GLOBAL: runtime::alloc::Allocator = runtime::alloc::Allocator;

fn main() -> anyhow::Result<()> {
    runtime::alloc::return_freed_memory_at_once();
    let args = webhook::Args::parse();
    runtime::http::init_logging(args.json_logs);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(webhook::app::run(args))
}
