//! The synchronisation primitives of the lock-free protocols of a
//! concurrent cycle ([`PageStates`](super::page_state::PageStates),
//! [`FreeRange`](super::FreeRange), the SIGBUS registry's
//! [`SlotUse`](super::fault::SlotUse)): std's atomics, or loom's in the
//! crate's test build with the `loom` feature, so that loom model-checks
//! exactly the production code (`cargo test -p movegc-gc --features loom
//! --lib loom`). Only those types use this module; everything else keeps
//! std's atomics, and a build without the feature is unaffected.

#[cfg(all(test, feature = "loom"))]
pub(crate) use loom::{
    hint::spin_loop,
    sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    thread::yield_now,
};

#[cfg(not(all(test, feature = "loom")))]
pub(crate) use std::{
    hint::spin_loop,
    sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    thread::yield_now,
};

/// Sleeps for `d` (a back-off while waiting for another thread). Under
/// loom, a yield: loom has no time, and a yield lets it schedule the
/// thread being waited for.
#[inline]
pub(crate) fn sleep(d: std::time::Duration) {
    #[cfg(all(test, feature = "loom"))]
    {
        let _ = d;
        yield_now();
    }
    #[cfg(not(all(test, feature = "loom")))]
    std::thread::sleep(d);
}
