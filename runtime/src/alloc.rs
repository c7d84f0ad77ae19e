//! The allocator both binaries use: mimalloc, tuned to hand freed memory back to the system.
//!
//! Each binary still declares `#[global_allocator] static GLOBAL: runtime::alloc::Allocator =
//! runtime::alloc::Allocator;` itself (a library cannot choose the allocator of its users), then
//! calls [`return_freed_memory_at_once`] first thing in `main`.

/// mimalloc's allocator type.
pub use mimalloc::MiMalloc as Allocator;

/// `mi_option_purge_delay` of mimalloc v2's `mi_option_e` (include/mimalloc.h); libmimalloc-sys
/// does not export it, so its version is pinned.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Returns freed pages to the system at once instead of after mimalloc's default delay (the
/// option is read at each purge, so setting it at start works; lazy arena commit is set at build
/// time in `.cargo/config.toml`). Together they halve the resident memory of mimalloc's defaults
/// at the same throughput (`make bench-webhook`, `make bench-controller`).
pub fn return_freed_memory_at_once() {
    // SAFETY: a plain option setter of the allocator, with no memory handed over.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}
