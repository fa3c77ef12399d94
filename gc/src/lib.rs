//! movegc-gc: the collector half of movegc.
//!
//! This crate owns everything that touches raw memory or the kernel: the
//! userfaultfd layer ([`uffd`]), the heap spaces ([`space`]), the object
//! model ([`object`]), marking ([`mark`]), the bitmap forwarding math
//! ([`forwarding`]), page compaction ([`compact`]) and the collection cycle
//! ([`cycle`]). The safe embedding API lives in the `movegc` crate
//! (`runtime/`), which is built on top of this one.
//!
//! `unsafe` lives in four small modules: [`uffd`] (syscalls and ioctls),
//! [`mapping`] (mmap/mremap/madvise and typed views of mapped memory),
//! [`object`] (word loads and stores of heap objects) and [`safepoint`]
//! (handing a stopped mutator's state to the collector), plus one block in
//! [`cycle`] and [`compact`] each where pages are written in parallel.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod compact;
pub mod concurrent;
pub mod cycle;
mod fork;
pub mod forwarding;
pub mod heap;
pub mod mapping;
pub mod mark;
pub mod object;
pub mod probe;
pub mod safepoint;
pub mod satb;
pub mod space;
pub mod stats;
pub mod uffd;
pub mod verify;

pub use heap::{AllocError, ConfigError, GcHeap, HeapConfig, HeapError, MutatorContext};
pub use object::{FieldError, Header, Kind, Layout, LayoutError, ObjRef};
pub use stats::{CycleStats, HeapStats, Strategy, Trigger};
