//! The controller binary; see the crate documentation.

use clap::Parser;

// Caches of thousands of objects churn through small allocations; mimalloc keeps their resident
// memory close to what is live (`make bench-controller`: about 20% less than the system
// allocator at 1 000 clusters).
#[global_allocator]
static GLOBAL: runtime::alloc::Allocator = runtime::alloc::Allocator;

fn main() -> anyhow::Result<()> {
    runtime::alloc::return_freed_memory_at_once();
    let args = controller::args::Args::parse();
    runtime::http::init_logging(args.json_logs);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(controller::app::run(args))
}
