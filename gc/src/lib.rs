//! movegc-gc: the collector half of movegc.
//!
//! This crate owns everything that touches raw memory or the kernel: the
//! userfaultfd layer ([`uffd`]), the heap spaces (`space`), the object
//! model ([`object`]), marking (`mark`), the bitmap forwarding math
//! ([`forwarding`]), page compaction ([`compact`]) and the collection cycle
//! (`cycle`). The safe embedding API lives in the `movegc` crate
//! (`runtime/`), which is built on top of this one.
//!
//! **Safety boundary.** This crate is the engine, not the safe API: every
//! access to an object through an [`ObjRef`] (and the root slots, reference
//! stores and persistent roots of [`MutatorContext`] and [`GcHeap`]) is an
//! `unsafe fn` whose contract is written on [`ObjRef`]. The `movegc` crate
//! establishes that contract and is the only safe surface. The modules that
//! read raw memory for the collector (marking, verification, the cycle,
//! safepoints, the SATB log, the spaces) are crate-private.
//!
//! Inside, `unsafe` lives in small modules: [`uffd`] (syscalls and ioctls),
//! [`mapping`] (mmap/mremap/madvise and typed views of mapped memory),
//! [`object`] (word loads and stores of heap objects), `safepoint` (handing
//! a stopped mutator's state to the collector), [`concurrent`] (the SIGBUS
//! handler, and writing recycled from-space pages), [`probe`] and
//! [`poison`] (the stale-reference mode: poisoning, its report), plus one
//! block each in `cycle`, `space` and [`compact`] where pages are written;
//! each block states its invariant.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub(crate) mod clean;
pub mod compact;
pub mod concurrent;
pub(crate) mod cputime;
pub(crate) mod cycle;
pub(crate) mod dirty;
mod fork;
pub mod forwarding;
pub(crate) mod generation;
pub mod heap;
pub mod mapping;
pub(crate) mod mark;
pub mod object;
pub(crate) mod pacing;
pub mod poison;
pub mod probe;
pub(crate) mod safepoint;
pub(crate) mod satb;
pub(crate) mod space;
pub mod stats;
pub mod uffd;
pub(crate) mod verify;

pub use compact::FILLER_TAG;
pub use generation::RememberedSet;
pub use heap::{
    AllocError, ConfigError, GcHeap, HeapConfig, HeapError, MutatorContext, WaitError, MAX_CAPACITY,
};
pub use object::{FieldError, Header, Kind, Layout, LayoutError, ObjRef};
pub use poison::{PoisonError, StaleAccess, StaleHook, StaleObject};
pub use safepoint::AlreadyAttached;
pub use stats::{
    CycleProgress, CycleStats, CycleThreadFaults, FullReason, HeapStats, LatencyHistogram, Pause,
    PauseKind, Phase, SlowFault, Strategy, ThreadFaults, ThreadStats, Trigger, FAULT_BUCKETS,
    WORST_FAULTS,
};
