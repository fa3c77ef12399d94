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
#![warn(missing_docs)]
#![forbid(unsafe_code)]
/// The README's embedding example, compiled as a doctest.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
/// The embedding guide's examples, compiled as doctests.
#[doc = include_str!("../../docs/embedding.md")]
#[cfg(doctest)]
pub struct EmbeddingDoctests;

mod error;
mod heap;
mod mutator;

pub use error::{Error, Result};
pub use heap::{Heap, HeapBuilder};
pub use movegc_gc as gc;
pub use movegc_gc::concurrent::FaultMode;
pub use movegc_gc::uffd::OpenPath;
pub use movegc_gc::{
    CycleStats, FieldError, HeapStats, Kind, Layout, LayoutError, Strategy, Trigger,
};
pub use mutator::{Local, Mutator, Persistent};
