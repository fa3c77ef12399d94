//! The one error type of the embedding API.

use movegc_gc::{AllocError, ConfigError, FieldError, HeapError, Kind, LayoutError};

/// Everything that can go wrong when using a heap. Bad input is always an
/// error, never a panic or a corrupted heap.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A layout was rejected when created.
    #[error("bad layout: {0}")]
    Layout(#[from] LayoutError),
    /// A field index or data range was out of bounds.
    #[error("bad field access: {0}")]
    Field(#[from] FieldError),
    /// An object was used as the wrong kind (e.g. bytes of a record array).
    #[error("expected a {expected:?} object, found a {found:?}")]
    WrongKind {
        /// The kind the operation needs.
        expected: Kind,
        /// The object's kind.
        found: Kind,
    },
    /// Not enough memory even after a full collection. The heap is still
    /// usable: free some objects and retry.
    #[error(
        "heap exhausted: {requested} bytes requested, {live} bytes live of {capacity} capacity"
    )]
    HeapExhausted {
        /// Bytes requested.
        requested: usize,
        /// Heap capacity.
        capacity: usize,
        /// Live bytes after the last collection.
        live: usize,
    },
    /// A [`Local`](crate::Local) used after its scope ended, or with another
    /// mutator than the one that created it.
    #[error("stale handle: its scope has ended or it belongs to another mutator")]
    StaleHandle,
    /// A [`Persistent`](crate::Persistent) used with a mutator of another heap.
    #[error("handle belongs to a different heap")]
    WrongHeap,
    /// The thread already has a mutator for this heap.
    #[error("this thread is already attached to this heap")]
    AlreadyAttached,
    /// [`Heap::wait_idle`](crate::Heap::wait_idle) was called on a thread
    /// whose mutator of that heap is running: wait through the mutator
    /// ([`Mutator::wait_idle`](crate::Mutator::wait_idle)) instead.
    #[error("this thread has a running mutator of this heap: wait with Mutator::wait_idle")]
    RunningMutator,
    /// The heap could not be created.
    #[error("cannot create heap: {0}")]
    Config(#[from] ConfigError),
    /// Creating the heap failed in the kernel or thread pool.
    #[error("cannot create heap: {0}")]
    Create(#[from] HeapError),
    /// The kernel refused memory.
    #[error("out of memory: errno {0}")]
    Os(i32),
    /// [`Mutator::downcast`](crate::Mutator::downcast): the object is not
    /// of the asked type.
    #[error("expected an object of type {expected}, found {found:?}")]
    WrongType {
        /// The type asked for.
        expected: &'static str,
        /// The object's header.
        found: movegc_gc::Header,
    },
    /// An untyped call tried to store a reference into an object of a
    /// derived type, whose reference fields only its typed field keys may
    /// write (they keep each field's declared type).
    #[error("references of an object of a derived type are written through its typed fields")]
    TypedObject,
    /// An untyped call tried to rewrite a typed handle's slot
    /// ([`Gc::untyped`](crate::Gc::untyped)), which must keep naming an
    /// object of its type.
    #[error("a typed handle cannot be reassigned through the untyped API")]
    TypedHandle,
    /// [`Mutator::alloc`](crate::Mutator::alloc) was given a typed layout
    /// ([`Layout::typed`](crate::Layout::typed)): objects of derived types
    /// are allocated with `alloc_init` or `alloc_zeroed`.
    #[error("typed layouts are allocated through the typed API")]
    TypedLayout,
    /// A collection failed part-way; the heap can no longer be used.
    #[error("the heap is poisoned: a collection failed part-way")]
    Poisoned,
}

impl From<AllocError> for Error {
    fn from(e: AllocError) -> Self {
        match e {
            AllocError::HeapExhausted {
                requested,
                capacity,
                live,
            } => Error::HeapExhausted {
                requested,
                capacity,
                live,
            },
            AllocError::Os(errno) => Error::Os(errno),
            AllocError::Poisoned => Error::Poisoned,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
