//! [`Mutator`] (a thread's access to a heap) and the two kinds of handle.
//!
//! **Local handles** are slots in the mutator's root stack. A [`Local`] is
//! an index plus a *stamp*; the stamp is unique across all mutators of the
//! process, so a handle used after its [`scope`](Mutator::scope) ended, or
//! with another mutator, is detected and reported as
//! [`Error::StaleHandle`] rather than reading a wrong slot. Creating one is a
//! push onto a vector; using one is a bounds check, a compare and a load.
//!
//! **Persistent handles** live in a heap-wide table behind a mutex: they are
//! `Send + Sync`, outlive scopes and threads, and cost a lock per use.
//! Use them for roots held by non-heap data structures or other threads.
//!
//! **Why the `unsafe` here is sound.** This module is the only caller of
//! the engine's `unsafe` object access, and it keeps one rule: a raw
//! reference ([`ObjRef`]) is obtained from a root slot ([`Mutator::obj`]),
//! from a field of such an object, or from an allocation, *inside one
//! `&mut self` method*, and used before that method returns or makes any
//! call that can reach a safepoint ([`MutatorContext::alloc`] comes last, or
//! its result goes straight into a root slot). Root slots are rewritten by
//! the collector when objects move, so a reference read from one is
//! current; `&mut self` keeps the thread from reaching a safepoint
//! meanwhile (every such call needs the mutator), and a thread cannot leave
//! the running set behind the mutator's back (`Heap::wait_idle` refuses on
//! a running mutator's thread). No closure given by the caller ever runs
//! while a raw reference is live: [`with_bytes`](Mutator::with_bytes) hands
//! it a copy.

use std::sync::atomic::{AtomicU64, Ordering};

use movegc_gc::{CycleStats, Kind, Layout, MutatorContext, ObjRef, Strategy};

use crate::heap::Heap;
use crate::{Error, Result};

/// Stamps are handed to mutators in blocks so creating a handle needs no
/// atomic operation.
static NEXT_STAMP_BLOCK: AtomicU64 = AtomicU64::new(1);
const STAMP_BLOCK: u64 = 1 << 20;
/// Stamp bit of typed handles' slots ([`Mutator::push_typed`]); stamps
/// themselves never reach it (2^63 handles).
const TYPED_HANDLE: u64 = 1 << 63;

/// A handle to an object, valid in the mutator and scope that created it.
/// `Copy` and 16 bytes; the object it names may move, the handle follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Local {
    slot: u32,
    stamp: u64,
}

impl Local {
    /// The root slot's index.
    #[inline(always)]
    pub(crate) fn slot(self) -> usize {
        self.slot as usize
    }
}

/// A handle that lives until dropped, usable from any mutator of its heap
/// and sendable between threads.
#[derive(Debug)]
pub struct Persistent {
    heap: Heap,
    id: usize,
}

impl Drop for Persistent {
    fn drop(&mut self) {
        self.heap.gc.persistent_free(self.id);
    }
}

/// A thread's access to a heap: allocation, field access, handles,
/// safepoints and collections. Not `Send`: each thread attaches its own.
///
/// A collection can only happen inside calls that take `&mut self` and may
/// allocate or wait ([`alloc`](Self::alloc), [`safepoint`](Self::safepoint),
/// [`collect`](Self::collect), leaving [`blocking`](Self::blocking)); other
/// threads' collections wait until this thread reaches one of those, or is
/// inside `blocking`. A thread that runs for long without allocating should
/// call `safepoint()` now and then.
pub struct Mutator {
    pub(crate) ctx: MutatorContext,
    heap: Heap,
    stamps: Vec<u64>,
    next_stamp: u64,
    stamp_end: u64,
}

impl std::fmt::Debug for Mutator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutator")
            .field("handles", &self.stamps.len())
            .finish()
    }
}

impl Mutator {
    pub(crate) fn new(heap: Heap, ctx: MutatorContext) -> Mutator {
        Mutator {
            ctx,
            heap,
            stamps: Vec::new(),
            next_stamp: 0,
            stamp_end: 0,
        }
    }

    /// The heap this mutator belongs to.
    pub fn heap(&self) -> &Heap {
        &self.heap
    }

    /// Number of live local handles (the root stack depth).
    pub fn handle_count(&self) -> usize {
        self.stamps.len()
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, obj: ObjRef) -> Local {
        self.push_stamped(obj, 0)
    }

    /// [`push`](Self::push) for a typed handle ([`Gc`](crate::Gc)): its
    /// stamp carries [`TYPED_HANDLE`], so the untyped calls that rewrite a
    /// handle's slot ([`assign`](Self::assign),
    /// [`get_ref_into`](Self::get_ref_into)) refuse it and it keeps naming
    /// an object of its type.
    #[inline(always)]
    pub(crate) fn push_typed(&mut self, obj: ObjRef) -> Local {
        self.push_stamped(obj, TYPED_HANDLE)
    }

    #[inline(always)]
    fn push_stamped(&mut self, obj: ObjRef, flag: u64) -> Local {
        if self.next_stamp == self.stamp_end {
            self.next_stamp = NEXT_STAMP_BLOCK.fetch_add(1, Ordering::Relaxed) * STAMP_BLOCK;
            self.stamp_end = self.next_stamp + STAMP_BLOCK;
        }
        let stamp = self.next_stamp | flag;
        self.next_stamp += 1;
        let slot = self.stamps.len();
        self.stamps.push(stamp);
        // SAFETY: `obj` is current (the module rule): the caller got it in
        // this `&mut self` method and reached no safepoint since.
        unsafe { self.ctx.roots() }.push(Some(obj));
        Local {
            slot: slot as u32,
            stamp,
        }
    }

    /// The current address of `h`'s object, read from its root slot: valid
    /// until this thread next reaches a safepoint (see the module docs).
    #[inline(always)]
    pub(crate) fn obj(&mut self, h: Local) -> Result<ObjRef> {
        self.obj_of(h)
    }

    /// [`obj`](Self::obj) through a shared borrow.
    #[inline(always)]
    pub(crate) fn obj_of(&self, h: Local) -> Result<ObjRef> {
        self.check(h)?;
        Ok(self
            .ctx
            .root(h.slot as usize)
            .expect("local slots are never null"))
    }

    /// Whether `h` is a live handle of this mutator.
    #[inline(always)]
    pub(crate) fn check(&self, h: Local) -> Result<()> {
        if self.stamps.get(h.slot as usize) != Some(&h.stamp) {
            return Err(Error::StaleHandle);
        }
        Ok(())
    }

    /// Points the live handle `h` at `obj`.
    pub(crate) fn set_root(&mut self, h: Local, obj: ObjRef) -> Result<()> {
        self.check(h)?;
        // SAFETY: the caller's `obj` is current (it holds a `Ref`).
        unsafe { self.ctx.roots()[h.slot as usize] = Some(obj) };
        Ok(())
    }

    /// `h` unless it is a typed handle's (whose slot the untyped calls may
    /// not rewrite).
    fn untyped_handle(h: Local) -> Result<Local> {
        if h.stamp & TYPED_HANDLE != 0 {
            return Err(Error::TypedHandle);
        }
        Ok(h)
    }

    /// `o` unless it is an object of a derived type (whose references the
    /// untyped calls may not write).
    #[inline(always)]
    fn untyped_object(o: ObjRef) -> Result<ObjRef> {
        // SAFETY: the callers pass a reference just read from a root slot.
        if unsafe { o.header() }.is_typed() {
            return Err(Error::TypedObject);
        }
        Ok(o)
    }

    /// Allocates a zeroed object (null references, zero bytes). May
    /// collect. Typed layouts ([`Layout::typed`]) are refused
    /// ([`Error::TypedLayout`]): objects of derived types are allocated
    /// with [`alloc_init`](Self::alloc_init) and friends.
    #[inline(always)]
    pub fn alloc(&mut self, layout: &Layout) -> Result<Local> {
        if layout.header().is_typed() {
            return Err(Error::TypedLayout);
        }
        let obj = self.ctx.alloc(layout)?;
        Ok(self.push(obj))
    }

    /// A new handle to the same object as `h`, of the same kind (a
    /// [`Local`] or a typed [`Gc`](crate::Gc)): e.g. a cursor to advance
    /// with [`get_into`](Self::get_into) while `h` stays, or a handle to
    /// keep past a scope via [`scope_escape`](Self::scope_escape).
    #[inline]
    pub fn dup<H: crate::typed::Handle>(&mut self, h: H) -> Result<H> {
        let o = self.obj(h.untyped())?;
        Ok(H::rehandle(self, o, crate::typed::TOKEN))
    }

    /// Makes the handle `dst` name the object of `src`: reuse one handle in
    /// a loop instead of creating a new one per iteration.
    #[inline]
    pub fn assign(&mut self, dst: Local, src: Local) -> Result<()> {
        let o = self.obj(src)?;
        self.obj(Self::untyped_handle(dst)?)?;
        // SAFETY: `o` was just read from a root slot.
        let roots = unsafe { self.ctx.roots() };
        roots[dst.slot as usize] = Some(o);
        Ok(())
    }

    /// Whether two handles name the same object.
    #[inline]
    pub fn same(&mut self, a: Local, b: Local) -> Result<bool> {
        Ok(self.obj(a)? == self.obj(b)?)
    }

    /// Reference field / element `index` of `obj`, as a new handle (`None`
    /// for null).
    #[inline(always)]
    pub fn get_ref(&mut self, obj: Local, index: usize) -> Result<Option<Local>> {
        let o = self.obj(obj)?;
        // SAFETY: `o` was just read from a root slot; the loaded reference
        // goes straight into one.
        let r = unsafe { o.load_ref(index) }?;
        Ok(r.map(|r| self.push(r)))
    }

    /// Loads reference field / element `index` of `obj` into the existing
    /// handle `into` (no new handle: reuse one in a loop, e.g. to walk a
    /// list). Returns `false`, leaving `into` as it was, if the field is
    /// null. `into` may be `obj` itself (`next = next.field`).
    #[inline(always)]
    pub fn get_ref_into(&mut self, obj: Local, index: usize, into: Local) -> Result<bool> {
        let o = self.obj(obj)?;
        self.obj(Self::untyped_handle(into)?)?;
        // SAFETY: `o` was just read from a root slot; the loaded reference
        // goes straight into one.
        match unsafe { o.load_ref(index) }? {
            Some(r) => {
                // SAFETY: storing a current reference into a root slot.
                let roots = unsafe { self.ctx.roots() };
                roots[into.slot as usize] = Some(r);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Stores `values` into reference fields / elements `start..` of `obj`
    /// (e.g. filling a reference array from a slice): one bounds check and
    /// one barrier decision per 256 values instead of one per value. Every
    /// handle is checked first; on an error nothing of that batch is
    /// stored.
    pub fn fill_refs(&mut self, obj: Local, start: usize, values: &[Option<Local>]) -> Result<()> {
        const BATCH: usize = 256;
        let o = Self::untyped_object(self.obj(obj)?)?;
        if values.is_empty() {
            // SAFETY: `o` was just read from a root slot.
            return Ok(unsafe { self.ctx.store_refs(o, start, &[]) }?);
        }
        let mut buf = [None; BATCH];
        for (k, chunk) in values.chunks(BATCH).enumerate() {
            for (b, v) in buf.iter_mut().zip(chunk) {
                *b = match v {
                    Some(h) => Some(self.obj(*h)?),
                    None => None,
                };
            }
            // SAFETY: `o` and the values were just read from root slots and
            // nothing since could reach a safepoint (no allocation).
            unsafe {
                self.ctx
                    .store_refs(o, start + k * BATCH, &buf[..chunk.len()])
            }?;
        }
        Ok(())
    }

    /// Stores `value` (or null) into reference field / element `index`.
    #[inline(always)]
    pub fn set_ref(&mut self, obj: Local, index: usize, value: Option<Local>) -> Result<()> {
        let o = Self::untyped_object(self.obj(obj)?)?;
        let v = match value {
            Some(v) => Some(self.obj(v)?),
            None => None,
        };
        // SAFETY: `o` and `v` were just read from root slots.
        unsafe { self.ctx.store_ref(o, index, v) }?;
        Ok(())
    }

    /// Whether reference `index` of `obj` is null (no handle created).
    #[inline]
    pub fn is_null(&mut self, obj: Local, index: usize) -> Result<bool> {
        let o = self.obj(obj)?;
        // SAFETY: `o` was just read from a root slot.
        Ok(unsafe { o.load_ref(index) }?.is_none())
    }

    /// Reads the 8 data bytes at `offset` as a little-endian `u64`.
    #[inline(always)]
    pub fn read_u64(&mut self, obj: Local, offset: usize) -> Result<u64> {
        let o = self.obj(obj)?;
        // SAFETY: `o` was just read from a root slot.
        Ok(unsafe { o.read_u64(offset) }?)
    }

    /// Writes a little-endian `u64` at data `offset`.
    #[inline(always)]
    pub fn write_u64(&mut self, obj: Local, offset: usize, value: u64) -> Result<()> {
        let o = self.obj(obj)?;
        // SAFETY: `o` was just read from a root slot.
        Ok(unsafe { o.write_u64(offset, value) }?)
    }

    /// Copies data bytes starting at `offset` into `buf`.
    pub fn read_bytes(&mut self, obj: Local, offset: usize, buf: &mut [u8]) -> Result<()> {
        let o = self.obj(obj)?;
        // SAFETY: `o` was just read from a root slot.
        Ok(unsafe { o.read_data(offset, buf) }?)
    }

    /// Copies `bytes` into the data starting at `offset`.
    pub fn write_bytes(&mut self, obj: Local, offset: usize, bytes: &[u8]) -> Result<()> {
        let o = self.obj(obj)?;
        // SAFETY: `o` was just read from a root slot.
        Ok(unsafe { o.write_data(offset, bytes) }?)
    }

    /// Calls `f` with a copy of the object's data bytes (a byte array's
    /// contents, or a record's data).
    ///
    /// A copy, because heap memory is shared: another thread may write the
    /// same object at any time (through a [`Persistent`]), and a Rust
    /// reference into the heap would then be a data race. Small objects
    /// are copied to the stack.
    pub fn with_bytes<R>(&mut self, obj: Local, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let o = self.obj(obj)?;
        // SAFETY: `o` was just read from a root slot; both calls complete
        // before `f` runs.
        let len = unsafe { o.header() }.data_len();
        with_scratch(len, |buf| {
            unsafe { o.read_data(0, buf) }.expect("the whole data range");
            Ok(f(buf))
        })
    }

    /// Like [`with_bytes`](Self::with_bytes), mutably: `f` edits a copy,
    /// and exactly the bytes it changed are written back (so concurrent
    /// writes by other threads to other bytes are kept).
    pub fn with_bytes_mut<R>(&mut self, obj: Local, f: impl FnOnce(&mut [u8]) -> R) -> Result<R> {
        let len = self.data_len(obj)?;
        let mut before = [0u8; SCRATCH];
        let mut before_heap = Vec::new();
        let before: &mut [u8] = if len <= SCRATCH {
            &mut before[..len]
        } else {
            before_heap.resize(len, 0);
            &mut before_heap
        };
        self.read_bytes(obj, 0, before)?;
        with_scratch(len, |buf| {
            buf.copy_from_slice(before);
            let r = f(buf);
            // The closure ran with no raw reference live; re-read the
            // object's address (no safepoint was possible meanwhile, but
            // this keeps the rule local).
            let mut i = 0;
            while i < len {
                if buf[i] == before[i] {
                    i += 1;
                    continue;
                }
                let mut j = i + 1;
                while j < len && buf[j] != before[j] {
                    j += 1;
                }
                self.write_bytes(obj, i, &buf[i..j])?;
                i = j;
            }
            Ok(r)
        })
    }

    /// The header of `obj`'s object.
    #[inline(always)]
    fn header(&mut self, obj: Local) -> Result<movegc_gc::Header> {
        let o = self.obj(obj)?;
        // SAFETY: `o` was just read from a root slot.
        Ok(unsafe { o.header() })
    }

    /// The object's kind.
    #[inline]
    pub fn kind(&mut self, obj: Local) -> Result<Kind> {
        Ok(self.header(obj)?.kind())
    }

    /// The embedder tag given in the object's layout.
    #[inline(always)]
    pub fn tag(&mut self, obj: Local) -> Result<u16> {
        Ok(self.header(obj)?.tag())
    }

    /// Length: elements of a reference array, bytes of a byte array,
    /// reference fields of a record.
    #[inline]
    pub fn len(&mut self, obj: Local) -> Result<usize> {
        Ok(self.header(obj)?.len())
    }

    /// Data bytes of a record or byte array.
    #[inline]
    pub fn data_len(&mut self, obj: Local) -> Result<usize> {
        Ok(self.header(obj)?.data_len())
    }

    /// Size of the object in bytes, header included.
    pub fn size_of(&mut self, obj: Local) -> Result<usize> {
        Ok(self.header(obj)?.size())
    }

    /// Checks that `obj` is of kind `kind`.
    pub fn expect_kind(&mut self, obj: Local, kind: Kind) -> Result<()> {
        let found = self.kind(obj)?;
        if found != kind {
            return Err(Error::WrongKind {
                expected: kind,
                found,
            });
        }
        Ok(())
    }

    /// Runs `f` in a new handle scope: handles created inside are released
    /// when it returns (and become stale).
    #[inline]
    pub fn scope<R>(&mut self, f: impl FnOnce(&mut Mutator) -> R) -> R {
        let depth = self.stamps.len();
        let r = f(self);
        self.truncate(depth);
        r
    }

    /// Like [`scope`](Self::scope), but the handle `f` returns survives: it
    /// is re-created in the enclosing scope.
    pub fn scope_escape(&mut self, f: impl FnOnce(&mut Mutator) -> Result<Local>) -> Result<Local> {
        let depth = self.stamps.len();
        let r = f(self).and_then(|h| self.obj(h));
        self.truncate(depth);
        Ok(self.push(r?))
    }

    fn truncate(&mut self, depth: usize) {
        self.stamps.truncate(depth);
        // SAFETY: truncating stores nothing.
        unsafe { self.ctx.roots() }.truncate(depth);
    }

    /// A persistent handle to `obj`.
    pub fn persist(&mut self, obj: Local) -> Result<Persistent> {
        let o = self.obj(obj)?;
        Ok(Persistent {
            heap: self.heap.clone(),
            // SAFETY: `o` was just read from a root slot.
            id: unsafe { self.heap.gc.persistent_new(Some(o)) },
        })
    }

    /// A local handle to the object of a persistent one.
    pub fn local(&mut self, p: &Persistent) -> Result<Local> {
        if !self.heap.same(&p.heap) {
            return Err(Error::WrongHeap);
        }
        let o = self
            .heap
            .gc
            .persistent_get(p.id)
            .expect("persistent slots are never null");
        Ok(self.push(o))
    }

    /// Points a persistent handle at another object.
    pub fn set_persistent(&mut self, p: &Persistent, obj: Local) -> Result<()> {
        if !self.heap.same(&p.heap) {
            return Err(Error::WrongHeap);
        }
        let o = self.obj(obj)?;
        // SAFETY: `o` was just read from a root slot.
        unsafe { self.heap.gc.persistent_set(p.id, Some(o)) };
        Ok(())
    }

    /// Stops here if another thread's collection is waiting for this one.
    #[inline]
    pub fn safepoint(&mut self) {
        self.ctx.safepoint();
    }

    /// Runs `f` (blocking I/O, foreign code, waiting on a lock or channel)
    /// without holding up collections. `f` cannot touch the heap.
    pub fn blocking<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.ctx.blocking(f)
    }

    /// Waits until no concurrent collection is running, without holding
    /// up that collection's final pause.
    pub fn wait_idle(&mut self) {
        self.ctx.wait_idle()
    }

    /// Collects now with the heap's strategy and waits for the cycle to
    /// finish (concurrent cycles: until every page is compacted, while other
    /// threads run). Returns the cycle's statistics, or `None` if another
    /// thread's collection ran instead while this one waited.
    pub fn collect(&mut self) -> Option<CycleStats> {
        self.ctx.collect()
    }

    /// Like [`collect`](Self::collect) with a given strategy (subject to the
    /// heap's fallbacks).
    pub fn collect_with(&mut self, strategy: Strategy) -> Option<CycleStats> {
        self.ctx.collect_with(strategy)
    }

    /// Runs the collection the heap-size policy would start now and waits
    /// for it: young when young collections are on (`HeapBuilder::
    /// generational`) and no full cycle is due (`CycleStats::full_reason`
    /// says why one was), else full like [`collect`](Self::collect).
    pub fn collect_young(&mut self) -> Option<CycleStats> {
        self.ctx.collect_young()
    }
}

/// Data bytes copied on the stack by [`Mutator::with_bytes`] (larger
/// objects use a heap buffer).
const SCRATCH: usize = 256;

/// Calls `f` with a zeroed buffer of `len` bytes: on the stack when small.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    if len <= SCRATCH {
        let mut b = [0u8; SCRATCH];
        f(&mut b[..len])
    } else {
        f(&mut vec![0u8; len])
    }
}
