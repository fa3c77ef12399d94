//! movegc: an embeddable managed heap whose collector compacts the heap
//! (concurrently, with Linux userfaultfd, where the kernel allows it).
//!
//! The API has four pieces:
//!
//! * [`Heap`], built with [`Heap::builder`]: the memory and the collector.
//!   Several heaps can coexist in one process.
//! * [`Mutator`]: one per thread that touches a heap ([`Heap::attach`]).
//!   It allocates, reads and writes fields, and stops at safepoints so the
//!   collector can run.
//! * Handles, the roots: [`Local`] (cheap, scoped to the mutator and to the
//!   enclosing [`Mutator::scope`]) and [`Persistent`] (owned, `Send`, lives
//!   until dropped). The collector updates them when objects move; user code
//!   never sees a raw heap address.
//! * [`Layout`]s: records (`n` references then `m` bytes), reference arrays,
//!   byte arrays, each with a 16-bit tag for the embedder.
//!
//! When object shapes are Rust types rather than an interpreter's data,
//! [`#[derive(Object)]`](derive@Object) makes a struct a heap type with
//! typed field keys and typed handles ([`Gc`]), and [`Mutator::view`] walks
//! objects through direct references ([`Ref`]) with no handles at all
//! (modules [`typed`] and [`view`]; docs/embedding.md §7a).
//!
//! ```
//! use movegc::{Heap, Layout};
//! let heap = Heap::builder().capacity(64 << 20).build()?;
//! let mut m = heap.attach()?;
//! let node = Layout::record(0, 1, 8)?;           // 1 reference, 8 data bytes
//! let head = m.alloc(&node)?;
//! let next = m.alloc(&node)?;
//! m.write_u64(next, 0, 42)?;
//! m.set_ref(head, 0, Some(next))?;
//! m.collect();                                   // objects may move ...
//! let next = m.get_ref(head, 0)?.unwrap();       // ... handles still work
//! assert_eq!(m.read_u64(next, 0)?, 42);
//! # Ok::<(), movegc::Error>(())
//! ```
//!
//! # Safety boundary
//!
//! This crate is the safe surface of movegc: no sequence of calls to it,
//! from any number of threads, can corrupt the heap or read freed memory.
//! The engine underneath (`movegc-gc`) makes raw object access `unsafe`;
//! the three modules here that call it (`mutator`, [`typed`], [`view`])
//! uphold its contract: every reference they dereference was read from a
//! root slot (which the collector keeps current) or from a field of such an
//! object, and is used before the mutator can reach a safepoint (it is
//! borrowed mutably throughout; a [`View`] holds it for its whole closure).
//! Typed accesses skip bounds checks because a typed handle always names an
//! object of its type (the [`typed`] module docs say why). No Rust reference
//! into the heap is ever handed out: object data is read and written a word
//! at a time with relaxed atomics, so threads sharing an object race at
//! worst on its values, never on memory safety ([`Mutator::with_bytes`]
//! works on a copy). The engine itself is not re-exported.
#![warn(missing_docs)]
#![deny(unsafe_code)]
/// The README's embedding example, compiled as a doctest.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
/// The embedding guide's examples, compiled as doctests.
#[doc = include_str!("../../docs/embedding.md")]
#[cfg(doctest)]
pub struct EmbeddingDoctests;

#[cfg(doctest)]
mod compile_fail;
mod error;
mod heap;
#[allow(unsafe_code)]
mod mutator;
#[allow(unsafe_code)]
pub mod typed;
#[allow(unsafe_code)]
pub mod view;

pub use error::{Error, Result};
pub use heap::{Heap, HeapBuilder};
pub use movegc_derive::Object;
pub use movegc_gc::concurrent::FaultMode;
pub use movegc_gc::uffd::OpenPath;
pub use movegc_gc::{
    ConfigError, CycleProgress, CycleStats, CycleThreadFaults, FieldError, FullReason, Header,
    HeapStats, Kind, LatencyHistogram, Layout, LayoutError, Pause, PauseKind, Phase, RememberedSet,
    SlowFault, StaleAccess, StaleHook, StaleObject, Strategy, ThreadFaults, ThreadStats, Trigger,
    FILLER_TAG, MAX_CAPACITY,
};
pub use mutator::{Local, Mutator, Persistent};
#[doc(hidden)]
pub use typed::__private;
pub use typed::{
    Data, DataArray, DataField, Gc, Handle, HeapType, Object, RefArray, RefField, RefSlots,
    RefValue, TypedArray, Untyped, Zeroable,
};
pub use view::{Ref, View};
