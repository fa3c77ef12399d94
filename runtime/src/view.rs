//! No-safepoint views: [`Mutator::view`] lends a [`View`], inside which
//! objects are reached through [`Ref`]s, direct references with no handle
//! and no stamp check.
//!
//! **Why a `Ref` is sound.** An object moves only while every mutator of
//! its heap is stopped at a safepoint (the pauses; concurrent compaction
//! after the flip moves pages, not addresses). A thread reaches a
//! safepoint only through its [`Mutator`] (allocating, polling, collecting,
//! leaving `blocking`), and `view` holds the mutator mutably borrowed for
//! the whole closure: the `View` it lends exposes reads, barriered stores
//! and handle creation, nothing that can allocate, wait or poll. Another
//! mutator of the same heap on the same thread cannot exist
//! ([`Error::AlreadyAttached`](crate::Error::AlreadyAttached)), and
//! `Heap::wait_idle` refuses on a thread whose mutator runs. So every
//! address read inside the closure stays current until it returns. A `Ref`
//! cannot outlive the closure: `'v` is a fresh lifetime for each call (the
//! closure is `for<'v>`) and invariant, so neither a `Ref` nor anything
//! holding one can be returned or stored outside (compile-fail tests in
//! `compile_fail.rs`). Typed fields need no bounds checks for the reasons
//! given in [`typed`](crate::typed).
//!
//! **The trade-off.** While a view runs, this thread is not at a safepoint:
//! another thread's collection waits for the view to end (the time to
//! safepoint in the GC log and `CycleStats` names the slowest thread). Keep
//! views short, or end and reopen them in a long loop.

use std::marker::PhantomData;

use movegc_gc::ObjRef;

use crate::mutator::Mutator;
use crate::typed::{
    check_range, read_at, write_at, Data, DataArray, DataField, Gc, HeapType, Object, RefArray,
    RefField, RefValue, TypedArray, TOKEN,
};
use crate::Result;

/// Invariant in `'v`.
type Brand<'v> = PhantomData<fn(&'v ()) -> &'v ()>;

/// What a [`Ref`] holds besides the address: its view's brand, its type,
/// and `!Send + !Sync`.
type RefMarker<'v, T> = PhantomData<(Brand<'v>, fn() -> T, *const ())>;

/// A mutator lent to a [`Mutator::view`] closure: turns handles into
/// [`Ref`]s and stores references with the write barriers.
pub struct View<'v> {
    m: &'v mut Mutator,
    _brand: Brand<'v>,
}

/// A direct reference to an object of `T`, valid inside the view `'v` that
/// made it. `Copy`, one word; reading a field is one load. Neither `Send`
/// nor `Sync`: only the viewing thread reads through it (a scoped thread
/// inside the view is not a mutator of the heap).
pub struct Ref<'v, T> {
    obj: ObjRef,
    _t: RefMarker<'v, T>,
}

impl<T> Clone for Ref<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Ref<'_, T> {}
impl<T> PartialEq for Ref<'_, T> {
    /// Object identity.
    fn eq(&self, o: &Self) -> bool {
        self.obj == o.obj
    }
}
impl<T> Eq for Ref<'_, T> {}
impl<T> std::fmt::Debug for Ref<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Ref<{}>({:#x})",
            std::any::type_name::<T>(),
            self.obj.addr()
        )
    }
}

impl Mutator {
    /// Runs `f` with a [`View`]: inside it, objects are reached through
    /// [`Ref`]s (no handles, no checks) and this thread reaches no
    /// safepoint, so nothing inside can allocate or collect, and other
    /// threads' collections wait until `f` returns. See the
    /// [module docs](crate::view) for why this is sound and what it costs.
    #[inline]
    pub fn view<R>(&mut self, f: impl for<'v> FnOnce(&mut View<'v>) -> R) -> R {
        f(&mut View {
            m: self,
            _brand: PhantomData,
        })
    }
}

impl<'v> View<'v> {
    /// The object of handle `h`.
    #[inline(always)]
    pub fn get<T: HeapType>(&self, h: Gc<T>) -> Result<Ref<'v, T>> {
        Ok(Ref::new(self.m.obj_of(h.untyped())?))
    }

    /// A handle to `r`'s object in the mutator's current scope, usable
    /// after the view.
    pub fn root<T: HeapType>(&mut self, r: Ref<'v, T>) -> Gc<T> {
        Gc::new(self.m.push_typed(r.obj))
    }

    /// Makes the existing handle `h` name `r`'s object (no new handle).
    pub fn root_into<T: HeapType>(&mut self, r: Ref<'v, T>, h: Gc<T>) -> Result<()> {
        self.m.set_root(h.untyped(), r.obj)
    }

    /// Stores `value` into reference field `field` of `r` (with the write
    /// barriers).
    #[inline(always)]
    pub fn set<O: Object, V: RefValue>(
        &mut self,
        r: Ref<'v, O>,
        field: RefField<O, V>,
        value: V::InView<'v>,
    ) {
        // SAFETY: `r` and `value` are current (module docs); `r` is an `O`,
        // so the slot is in bounds, and `value` a `V`.
        unsafe {
            self.m
                .ctx
                .store_slot(r.obj, field.index(), V::unview(value, TOKEN))
        }
    }

    /// Stores element `i` of a reference array.
    pub fn set_at<T: Object>(
        &mut self,
        array: Ref<'v, RefArray<T>>,
        i: usize,
        value: Option<Ref<'v, T>>,
    ) -> Result<()> {
        // SAFETY: both are current (module docs).
        unsafe { self.m.ctx.store_ref(array.obj, i, value.map(|r| r.obj)) }?;
        Ok(())
    }

    /// Stores the values of `values` into elements `start..` of a
    /// reference array, 256 at a time; returns how many were stored.
    pub fn fill<T: Object>(
        &mut self,
        array: Ref<'v, RefArray<T>>,
        start: usize,
        values: impl IntoIterator<Item = Option<Ref<'v, T>>>,
    ) -> Result<usize> {
        self.m.fill_batches(
            |_| Ok(array.obj),
            start,
            values,
            |_, v| Ok(v.map(|r| r.obj)),
        )
    }
}

impl<'v, T> Ref<'v, T> {
    #[inline(always)]
    pub(crate) fn new(obj: ObjRef) -> Ref<'v, T> {
        Ref {
            obj,
            _t: PhantomData,
        }
    }

    #[inline(always)]
    pub(crate) fn obj(self) -> ObjRef {
        self.obj
    }
}

impl<'v, T: Object> Ref<'v, T> {
    /// Reference field `field`: a `Ref` (or `Option<Ref>` for a nullable
    /// field). One load.
    #[inline(always)]
    pub fn get<V: RefValue>(self, field: RefField<T, V>) -> V::InView<'v> {
        // SAFETY: `self` is current and a `T`, so the slot is in bounds.
        V::view(unsafe { self.obj.load_slot(field.index()) }, TOKEN)
    }

    /// Data field `field`.
    #[inline(always)]
    pub fn read<D: Data>(self, field: DataField<T, D>) -> D {
        // SAFETY: `self` is current and a `T`, so the field is in its data.
        unsafe { read_at(self.obj, T::REFS, field.offset()) }
    }

    /// Writes data field `field` (plain data needs no barrier).
    #[inline(always)]
    pub fn write<D: Data>(self, field: DataField<T, D>, value: D) {
        // SAFETY: as in `read`.
        unsafe { write_at(self.obj, T::REFS, field.offset(), value) }
    }
}

impl<'v, A: TypedArray> Ref<'v, A> {
    /// Elements of the array.
    #[inline]
    pub fn len(self) -> usize {
        // SAFETY: `self` is current.
        A::len_of(unsafe { self.obj.header() })
    }

    /// Whether the array has no elements.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

impl<'v, T: Object> Ref<'v, RefArray<T>> {
    /// Element `i`, or a typed error past the end.
    #[inline]
    pub fn at(self, i: usize) -> Result<Option<Ref<'v, T>>> {
        // SAFETY: `self` is current; `load_ref` checks the index.
        Ok(unsafe { self.obj.load_ref(i) }?.map(Ref::new))
    }

    /// The elements in order.
    pub fn iter(self) -> impl Iterator<Item = Option<Ref<'v, T>>> {
        // SAFETY (each load): `self` is current and `i < len`.
        (0..self.len()).map(move |i| unsafe { self.obj.load_slot(i) }.map(Ref::new))
    }
}

impl<'v, D: Data> Ref<'v, DataArray<D>> {
    /// Element `i`, or a typed error past the end.
    #[inline]
    pub fn read_at(self, i: usize) -> Result<D> {
        check_range(i, 1, self.len())?;
        // SAFETY: `self` is current and element `i` inside its data.
        Ok(unsafe { read_at(self.obj, 0, i * D::SIZE) })
    }

    /// Writes element `i`, or a typed error past the end.
    #[inline]
    pub fn write_at(self, i: usize, value: D) -> Result<()> {
        check_range(i, 1, self.len())?;
        // SAFETY: as in `read_at`.
        unsafe { write_at(self.obj, 0, i * D::SIZE, value) };
        Ok(())
    }

    /// Reads elements `start..start + out.len()` into `out`.
    pub fn read_range(self, start: usize, out: &mut [D]) -> Result<()> {
        check_range(start, out.len(), self.len())?;
        for (i, x) in out.iter_mut().enumerate() {
            // SAFETY: inside the data (checked).
            *x = unsafe { read_at(self.obj, 0, (start + i) * D::SIZE) };
        }
        Ok(())
    }

    /// Writes `values` into elements `start..`.
    pub fn write_range(self, start: usize, values: &[D]) -> Result<()> {
        check_range(start, values.len(), self.len())?;
        for (i, x) in values.iter().enumerate() {
            // SAFETY: inside the data (checked).
            unsafe { write_at(self.obj, 0, (start + i) * D::SIZE, *x) };
        }
        Ok(())
    }
}
