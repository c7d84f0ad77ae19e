//! Admission webhook for `postgresql` objects; see the crate documentation.

use clap::Parser;

// Reviews are parse-heavy; mimalloc makes them markedly cheaper than the system allocator
// (`make bench-webhook`: about 40% more reviews per second).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of mimalloc v2's `mi_option_e` (include/mimalloc.h); libmimalloc-sys
/// does not export it, so its version is pinned.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> anyhow::Result<()> {
    // Return freed pages at once (the option is read at each purge, so setting it here works;
    // lazy arena commit is set at build time in .cargo/config.toml). Together they halve the
    // resident memory of mimalloc's defaults at the same throughput.
    // SAFETY: a plain option setter of the allocator, called before any other thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
    let args = webhook::Args::parse();
    common::http::init_logging(args.json_logs);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(webhook::app::run(args))
}
