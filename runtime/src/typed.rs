//! Typed heap objects: the traits `#[derive(Object)]` implements, typed
//! handles ([`Gc`]), field keys ([`RefField`], [`RefSlots`],
//! [`DataField`]), typed arrays ([`RefArray`], [`DataArray`]) and the
//! [`Mutator`] calls that use them.
//!
//! A derived struct is a *schema and an initialiser*: its fields say which
//! slots are references (`Gc<T>`, `Option<Gc<T>>`, fixed arrays of them) and
//! which bytes are plain data ([`Data`]: integers, floats, bools, fixed
//! arrays of them); a value of the struct, with handles in its reference
//! fields, is what [`Mutator::alloc_init`] copies into a new object. The
//! object itself lives in the heap and is reached through a [`Gc`] handle
//! (or a [`Ref`](crate::Ref) inside a [`view`](Mutator::view)); its fields
//! through the keys the derive generates as associated constants
//! (`Node::LEFT`, `Node::VALUE`).
//!
//! **Why typed accesses need no checks, and why that is sound.** Objects of
//! derived types carry the header's *typed* flag ([`Layout::typed`]) and a
//! tag given to their Rust type once per process ([`Object::__type_tag`]),
//! so a header names exactly one Rust type. Their reference slots are
//! written only here: through a field key, whose value type is the field's
//! declared type, or by [`Mutator::alloc_init`]; the untyped API refuses to
//! allocate typed layouts ([`Error::TypedLayout`]) and to store references
//! into typed objects ([`Error::TypedObject`]). A typed handle is only made
//! by a typed allocation, by reading a typed slot, or by
//! [`Mutator::downcast`], which checks the header. So a `Gc<T>` always names
//! an object of `T`'s layout, and a key of `T` is always in bounds: field
//! reads and writes skip the bounds check (one load or store, plus the write
//! barrier for references). Non-null `Gc<T>` fields are never null: types
//! with one are not [`Zeroable`] and must be allocated initialised.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;

use movegc_gc::{FieldError, Header, Kind, Layout, MutatorContext, ObjRef};

use crate::mutator::{Local, Mutator};
use crate::{Error, Result};

const WORD: usize = 8;

/// Proof that a call comes from this crate: the hidden trait methods that
/// take or give raw references ask for one, and only this crate can make
/// it (its field is private), so a caller outside cannot reach them even
/// by naming the methods.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct Token(());

pub(crate) const TOKEN: Token = Token(());

/// A Rust type whose values live in the heap as records. Implemented by
/// `#[derive(Object)]`; see the [module docs](self) and docs/embedding.md
/// §6a.
///
/// # Safety
/// `REFS` and `DATA` are the record's reference slots and data bytes; the
/// keys the type hands out are in bounds of them, and each reference slot
/// only ever holds values of its key's type; `__tag_cell` returns a cell no
/// other type's returns; `__write_fields` writes every non-null (`Gc<T>`)
/// reference slot. The derive guarantees all of it.
pub unsafe trait Object: Sized + 'static {
    /// Reference slots of the record.
    const REFS: usize;
    /// Data bytes of the record.
    const DATA: usize;
    /// The type's name, for errors.
    const NAME: &'static str;
    /// The type's tag cell: a `static` of its own (the runtime assigns the
    /// tag in it once per process).
    #[doc(hidden)]
    fn __tag_cell() -> &'static __private::TagCell;
    /// The type's tag.
    #[doc(hidden)]
    #[inline(always)]
    fn __type_tag() -> u16 {
        Self::__tag_cell().get(Self::NAME)
    }
    #[doc(hidden)]
    fn __check_handles(&self, c: &__private::Check<'_>) -> Result<()>;
    #[doc(hidden)]
    fn __write_fields(self, w: &mut __private::Writer<'_, Self>);
}

/// Derived types whose reference fields are all nullable
/// (`Option<Gc<T>>`): they can be allocated zeroed
/// ([`Mutator::alloc_zeroed`]).
///
/// # Safety
/// Every reference field of the type is nullable.
pub unsafe trait Zeroable: Object {}

/// What a [`Gc`] can point at: derived records, [`RefArray`]s of them and
/// [`DataArray`]s. Sealed.
pub trait HeapType: sealed::HeapRepr + 'static {}

/// Plain data stored in objects: `u8`..`u64`, `i8`..`i64`, `usize`,
/// `isize`, `f32`, `f64`, `bool` and fixed arrays of them. Sealed: every
/// byte pattern decodes (a `bool` is any non-zero byte), so a value read
/// while another thread writes is some value of the type, never undefined
/// behaviour.
pub trait Data: sealed::DataRepr + Copy + Send + Sync + 'static {
    /// Bytes in the object.
    const SIZE: usize;
    /// Alignment in the object's data (at most 8).
    const ALIGN: usize;
}

/// The value type of a reference field: `Gc<T>` (never null) or
/// `Option<Gc<T>>`. Sealed.
pub trait RefValue: sealed::RefSealed + Copy + 'static {
    /// The type the reference points at.
    type Target: HeapType;
    /// The same value inside a [`view`](Mutator::view): `Ref<'v, T>` or
    /// `Option<Ref<'v, T>>`.
    type InView<'v>: Copy;
    #[doc(hidden)]
    fn local(self, t: Token) -> Option<Local>;
    /// `None` for a null slot of a non-null type (which the module's
    /// invariants exclude).
    #[doc(hidden)]
    fn from_local(l: Option<Local>, t: Token) -> Option<Self>;
    #[doc(hidden)]
    fn view<'v>(o: Option<ObjRef>, t: Token) -> Self::InView<'v>;
    #[doc(hidden)]
    fn unview(v: Self::InView<'_>, t: Token) -> Option<ObjRef>;
}

/// A local handle: a [`Local`] or a typed [`Gc`]. Sealed.
pub trait Handle: sealed::HandleSealed + Copy {
    /// The untyped handle.
    fn untyped(self) -> Local;
    /// A new handle of this kind to `o` (current, and of this kind's type).
    #[doc(hidden)]
    fn rehandle(m: &mut Mutator, o: ObjRef, t: Token) -> Self;
}

impl sealed::HandleSealed for Local {}
impl Handle for Local {
    fn untyped(self) -> Local {
        self
    }
    fn rehandle(m: &mut Mutator, o: ObjRef, _: Token) -> Local {
        m.push(o)
    }
}

impl<T> sealed::HandleSealed for Gc<T> {}
impl<T> Handle for Gc<T> {
    fn untyped(self) -> Local {
        self.local
    }
    fn rehandle(m: &mut Mutator, o: ObjRef, _: Token) -> Gc<T> {
        Gc::new(m.push_typed(o))
    }
}

/// A typed local handle: a [`Local`] known to name an object of `T`.
/// `Copy` and 16 bytes, valid in the mutator and scope that made it, like
/// the `Local` inside it ([`untyped`](Self::untyped)).
pub struct Gc<T> {
    local: Local,
    _t: PhantomData<fn() -> T>,
}

impl<T> Gc<T> {
    pub(crate) fn new(local: Local) -> Gc<T> {
        Gc {
            local,
            _t: PhantomData,
        }
    }

    /// The untyped handle (for the untyped API, [`Mutator::persist`], ...;
    /// [`Mutator::downcast`] goes back).
    pub fn untyped(self) -> Local {
        self.local
    }
}

impl<T> Clone for Gc<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Gc<T> {}
impl<T> PartialEq for Gc<T> {
    /// Handle identity (the same slot), not object identity: see
    /// [`Mutator::same`].
    fn eq(&self, o: &Self) -> bool {
        self.local == o.local
    }
}
impl<T> Eq for Gc<T> {}
impl<T> std::fmt::Debug for Gc<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gc<{}>({:?})", std::any::type_name::<T>(), self.local)
    }
}

/// Any object of the untyped API (made by [`Mutator::alloc`] from a
/// [`Layout`]): a derived type's field of type `Option<Gc<Untyped>>` holds
/// one, so typed objects can point into an interpreter's or a library's
/// untyped data. A marker type: `Gc<Untyped>` is made by
/// [`Mutator::downcast`] (which checks the object is not typed) and used
/// through [`Gc::untyped`] with the untyped API.
pub struct Untyped(());

/// A reference array whose elements are `Option<Gc<T>>`
/// ([`Mutator::alloc_array`]). A marker type: it only appears as
/// `Gc<RefArray<T>>` or `Ref<'v, RefArray<T>>`.
pub struct RefArray<T>(PhantomData<fn() -> T>);

/// An array of plain data ([`Mutator::alloc_data`]). A marker type, like
/// [`RefArray`]. The header names the element's scalar type, not a fixed
/// array's length: `downcast` does not tell `DataArray<[u8; 2]>` from
/// `DataArray<[u8; 3]>` (harmless: lengths come from the header and every
/// byte pattern decodes).
pub struct DataArray<D>(PhantomData<fn() -> D>);

/// The key of reference field `V` of `O` (generated by the derive, e.g.
/// `Node::LEFT`).
pub struct RefField<O, V> {
    index: usize,
    _t: PhantomData<fn() -> (O, V)>,
}

impl<O, V> RefField<O, V> {
    /// The key of slot `index`.
    ///
    /// # Safety
    /// `index < O::REFS`, and every store to that slot of an `O` is a `V`
    /// (no other key names the slot with another type).
    pub const unsafe fn new_unchecked(index: usize) -> Self {
        RefField {
            index,
            _t: PhantomData,
        }
    }

    /// The slot index.
    pub const fn index(self) -> usize {
        self.index
    }
}

impl<O, V> Clone for RefField<O, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<O, V> Copy for RefField<O, V> {}

/// The key of a fixed array of `N` reference fields `[V; N]` (e.g.
/// `Node::KIDS`); [`at`](Self::at) gives one element's key.
pub struct RefSlots<O, V, const N: usize> {
    first: usize,
    _t: PhantomData<fn() -> (O, V)>,
}

impl<O, V, const N: usize> RefSlots<O, V, N> {
    /// The key of slots `first..first + N`.
    ///
    /// # Safety
    /// As for [`RefField::new_unchecked`], for every slot of the range.
    pub const unsafe fn new_unchecked(first: usize) -> Self {
        RefSlots {
            first,
            _t: PhantomData,
        }
    }

    /// The key of element `i`, or a typed error if `i >= N`.
    pub fn at(self, i: usize) -> Result<RefField<O, V>> {
        if i >= N {
            return Err(Error::Field(FieldError::RefIndex { index: i, len: N }));
        }
        // SAFETY: `first + i` is one of the slots this key covers.
        Ok(unsafe { RefField::new_unchecked(self.first + i) })
    }

    /// `N`.
    pub const fn len(self) -> usize {
        N
    }

    /// Whether `N` is 0.
    pub const fn is_empty(self) -> bool {
        N == 0
    }
}

impl<O, V, const N: usize> Clone for RefSlots<O, V, N> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<O, V, const N: usize> Copy for RefSlots<O, V, N> {}

/// The key of data field `D` of `O` (e.g. `Node::VALUE`).
pub struct DataField<O, D> {
    offset: usize,
    _t: PhantomData<fn() -> (O, D)>,
}

impl<O: Object, D: Data> DataField<O, D> {
    /// The key of the data bytes `offset..offset + D::SIZE` of an `O`.
    /// Checked when evaluated (in a `const`: at compile time) against
    /// `O::DATA`, the size every `O` is allocated with; any type of plain
    /// data may overlay any bytes (every pattern decodes), so a key is sound
    /// wherever it lies inside the data.
    pub const fn new(offset: usize) -> Self {
        assert!(
            offset <= O::DATA && D::SIZE <= O::DATA - offset,
            "a data field key outside the object's data"
        );
        DataField {
            offset,
            _t: PhantomData,
        }
    }
}

impl<O, D> DataField<O, D> {
    /// The byte offset in the record's data.
    pub const fn offset(self) -> usize {
        self.offset
    }
}

impl<O, D> Clone for DataField<O, D> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<O, D> Copy for DataField<O, D> {}

pub(crate) mod sealed {
    use super::*;

    /// How a [`HeapType`](super::HeapType) is recognised in a header.
    pub trait HeapRepr {
        fn header_ok(h: Header) -> bool;
    }

    /// How a [`Data`](super::Data) value is encoded.
    pub trait DataRepr: Sized {
        /// Tag of `DataArray<Self>`.
        const ID: u16;
        fn encode(self, out: &mut [u8]);
        fn decode(b: &[u8]) -> Self;
    }

    /// Seals [`RefValue`](super::RefValue).
    pub trait RefSealed {}

    /// Seals [`Handle`](super::Handle).
    pub trait HandleSealed {}

    /// Seals [`TypedArray`](super::TypedArray).
    pub trait ArraySealed {}

    /// Reference value types whose all-zero slot (null) is a value: the
    /// derive checks every field it counts as nullable against this, so a
    /// shadowed `Option` cannot make a type zeroable.
    pub trait Nullable {}
    impl<T> Nullable for Option<super::Gc<T>> {}
}

impl<T: Object> sealed::HeapRepr for T {
    #[inline(always)]
    fn header_ok(h: Header) -> bool {
        h.is_typed()
            && h.kind() == Kind::Record
            && h.tag() == T::__type_tag()
            && h.ref_count() == T::REFS
            && h.data_len() == T::DATA
    }
}
impl<T: Object> HeapType for T {}

impl sealed::HeapRepr for Untyped {
    fn header_ok(h: Header) -> bool {
        !h.is_typed()
    }
}
impl HeapType for Untyped {}

impl<T: Object> sealed::HeapRepr for RefArray<T> {
    fn header_ok(h: Header) -> bool {
        h.is_typed() && h.kind() == Kind::RefArray && h.tag() == T::__type_tag()
    }
}
impl<T: Object> HeapType for RefArray<T> {}

impl<D: Data> sealed::HeapRepr for DataArray<D> {
    fn header_ok(h: Header) -> bool {
        h.is_typed()
            && h.kind() == Kind::ByteArray
            && h.tag() == <D as sealed::DataRepr>::ID
            && h.data_len() % D::SIZE == 0
    }
}
impl<D: Data> HeapType for DataArray<D> {}

macro_rules! data_prim {
    ($($t:ty = $id:expr),* $(,)?) => {$(
        impl sealed::DataRepr for $t {
            const ID: u16 = $id;
            #[inline(always)]
            fn encode(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
            #[inline(always)]
            fn decode(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().expect("SIZE bytes"))
            }
        }
        impl Data for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            const ALIGN: usize = std::mem::size_of::<$t>();
        }
    )*};
}
data_prim!(
    u8 = 1,
    u16 = 2,
    u32 = 3,
    u64 = 4,
    i8 = 5,
    i16 = 6,
    i32 = 7,
    i64 = 8,
    f32 = 9,
    f64 = 10,
    usize = 11,
    isize = 12
);

impl sealed::DataRepr for bool {
    const ID: u16 = 13;
    fn encode(self, out: &mut [u8]) {
        out[0] = self as u8;
    }
    fn decode(b: &[u8]) -> Self {
        b[0] != 0
    }
}
impl Data for bool {
    const SIZE: usize = 1;
    const ALIGN: usize = 1;
}

impl<D: Data, const N: usize> sealed::DataRepr for [D; N] {
    const ID: u16 = 0x100 + <D as sealed::DataRepr>::ID;
    fn encode(self, out: &mut [u8]) {
        for (x, o) in self.into_iter().zip(out.chunks_exact_mut(D::SIZE)) {
            x.encode(o);
        }
    }
    fn decode(b: &[u8]) -> Self {
        std::array::from_fn(|i| D::decode(&b[i * D::SIZE..(i + 1) * D::SIZE]))
    }
}
impl<D: Data, const N: usize> Data for [D; N] {
    /// Zero-length arrays are refused when the size is used (a compile
    /// error in a derived type): a field of no bytes has no word to read.
    const SIZE: usize = {
        assert!(N > 0, "a zero-length array is not plain data");
        D::SIZE * N
    };
    const ALIGN: usize = D::ALIGN;
}

impl<T: HeapType> sealed::RefSealed for Gc<T> {}
impl<T: HeapType> RefValue for Gc<T> {
    type Target = T;
    type InView<'v> = crate::Ref<'v, T>;
    fn local(self, _: Token) -> Option<Local> {
        Some(self.local)
    }
    fn from_local(l: Option<Local>, _: Token) -> Option<Self> {
        l.map(Gc::new)
    }
    #[inline(always)]
    fn view<'v>(o: Option<ObjRef>, _: Token) -> crate::Ref<'v, T> {
        crate::Ref::new(o.expect("a non-null (Gc<T>) field is never null"))
    }
    #[inline(always)]
    fn unview(v: crate::Ref<'_, T>, _: Token) -> Option<ObjRef> {
        Some(v.obj())
    }
}

impl<T: HeapType> sealed::RefSealed for Option<Gc<T>> {}
impl<T: HeapType> RefValue for Option<Gc<T>> {
    type Target = T;
    type InView<'v> = Option<crate::Ref<'v, T>>;
    fn local(self, _: Token) -> Option<Local> {
        self.map(|g| g.local)
    }
    fn from_local(l: Option<Local>, _: Token) -> Option<Self> {
        Some(l.map(Gc::new))
    }
    #[inline(always)]
    fn view<'v>(o: Option<ObjRef>, _: Token) -> Option<crate::Ref<'v, T>> {
        o.map(crate::Ref::new)
    }
    #[inline(always)]
    fn unview(v: Option<crate::Ref<'_, T>>, _: Token) -> Option<ObjRef> {
        v.map(|r| r.obj())
    }
}

/// The typed layout of `T`'s records.
#[inline(always)]
fn record_layout<T: Object>() -> Result<Layout> {
    Ok(Layout::record(T::__type_tag(), T::REFS, T::DATA)?.typed())
}

/// Byte offset, from the object's start, of data offset `off` of an object
/// with `refs` reference slots.
#[inline(always)]
const fn data_at(refs: usize, off: usize) -> usize {
    WORD * (1 + refs) + off
}

/// Reads a `D` at data offset `off` of `o`, which has `refs` reference
/// slots: one load when it lies within a word (every scalar: they are
/// aligned), else the engine's word-by-word `read_data`.
///
/// # Safety
/// `o` is current (the mutator module's rule) and has `refs` reference
/// slots, and `off..off + D::SIZE` is inside its data.
#[inline(always)]
pub(crate) unsafe fn read_at<D: Data>(o: ObjRef, refs: usize, off: usize) -> D {
    let at = data_at(refs, off);
    let lo = at % WORD;
    if lo + D::SIZE <= WORD {
        // SAFETY: the word holding `at` is inside the data (the caller).
        let w = unsafe { o.load_word_at(at - lo) }.to_le_bytes();
        return D::decode(&w[lo..lo + D::SIZE]);
    }
    with_buf(D::SIZE, |buf| {
        // SAFETY: `o` is current (the caller); `read_data` checks the range.
        unsafe { o.read_data(off, buf) }.expect("a typed field is inside the data");
        D::decode(buf)
    })
}

/// Writes `v` at data offset `off` of `o` (see [`read_at`]): one store
/// for an aligned word, else the engine's `write_data`, which merges
/// partial words without losing concurrent writers' neighbouring bytes.
///
/// # Safety
/// As for [`read_at`].
#[inline(always)]
pub(crate) unsafe fn write_at<D: Data>(o: ObjRef, refs: usize, off: usize, v: D) {
    let at = data_at(refs, off);
    if D::SIZE == WORD && at % WORD == 0 {
        let mut b = [0u8; WORD];
        v.encode(&mut b);
        // SAFETY: a data word of `o` (the caller).
        unsafe { o.store_word_at(at, u64::from_le_bytes(b)) };
        return;
    }
    with_buf(D::SIZE, |buf| {
        v.encode(buf);
        // SAFETY: `o` is current (the caller); `write_data` checks the range.
        unsafe { o.write_data(off, buf) }.expect("a typed field is inside the data");
    })
}

/// [`write_at`] into an object no other thread can reach yet (just
/// allocated, not stored anywhere): a value within one word is or-ed into
/// it with a plain load and store, without the compare-and-swap merge that
/// keeps concurrent writers' neighbouring bytes, and zeros are skipped
/// (the object is zeroed). Wider values go through [`write_at`].
///
/// # Safety
/// As for [`read_at`], and `o` is unreachable by other threads.
#[inline(always)]
unsafe fn write_fresh_at<D: Data>(o: ObjRef, refs: usize, off: usize, v: D) {
    let at = data_at(refs, off);
    let lo = at % WORD;
    if lo + D::SIZE > WORD {
        // SAFETY: the caller's contract.
        return unsafe { write_at(o, refs, off, v) };
    }
    let mut w = [0u8; WORD];
    v.encode(&mut w[lo..lo + D::SIZE]);
    let bits = u64::from_le_bytes(w);
    if bits != 0 {
        // SAFETY: a data word of `o` holding the field; nobody else writes
        // it (the caller), and the field's bytes are still zero.
        unsafe { o.store_word_at(at - lo, o.load_word_at(at - lo) | bits) };
    }
}

/// Calls `f` with a zeroed scratch buffer of `len` bytes (on the stack up
/// to 64).
#[inline(always)]
fn with_buf<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    if len <= 64 {
        let mut b = [0u8; 64];
        f(&mut b[..len])
    } else {
        f(&mut vec![0u8; len])
    }
}

#[doc(hidden)]
/// What the derive's generated code calls. Not a public API.
pub mod __private {
    use super::*;

    /// A type's process-wide tag, assigned on first use.
    pub struct TagCell(AtomicU16);

    /// Tags handed out so far (the last one).
    static LAST_TAG: Mutex<u16> = Mutex::new(0);

    /// Each field the derive counts as nullable names its type here: a
    /// compile error unless it is an `Option<Gc<T>>`.
    pub const fn assert_nullable<T: sealed::Nullable>() {}

    impl TagCell {
        /// An unassigned cell.
        #[allow(clippy::new_without_default)]
        pub const fn new() -> TagCell {
            TagCell(AtomicU16::new(0))
        }

        /// The tag, assigned on the first call. Panics after 65,535 types.
        #[inline(always)]
        pub fn get(&'static self, name: &str) -> u16 {
            match self.0.load(Ordering::Acquire) {
                0 => self.assign(name),
                t => t,
            }
        }

        #[cold]
        fn assign(&'static self, name: &str) -> u16 {
            let mut last = LAST_TAG.lock().unwrap_or_else(|p| p.into_inner());
            match self.0.load(Ordering::Acquire) {
                0 => {
                    let t = last
                        .checked_add(1)
                        .unwrap_or_else(|| panic!("more than 65535 derived heap types ({name})"));
                    *last = t;
                    self.0.store(t, Ordering::Release);
                    t
                }
                t => t,
            }
        }
    }

    /// Offsets of data fields `(size, align)` laid out in order, each at
    /// its alignment; and the end.
    pub const fn data_offsets<const N: usize>(fields: [(usize, usize); N]) -> ([usize; N], usize) {
        let mut out = [0; N];
        let mut end: usize = 0;
        let mut i = 0;
        while i < N {
            let (size, align) = fields[i];
            end = end.next_multiple_of(align);
            out[i] = end;
            end += size;
            i += 1;
        }
        (out, end)
    }

    /// Checks the handles of a value given to [`Mutator::alloc_init`]
    /// before anything is allocated.
    pub struct Check<'a> {
        pub(crate) m: &'a Mutator,
    }

    impl Check<'_> {
        /// A reference field's handle is live.
        pub fn check_ref<V: RefValue>(&self, v: &V) -> Result<()> {
            match v.local(TOKEN) {
                Some(l) => self.m.check(l),
                None => Ok(()),
            }
        }

        /// Every handle of a fixed array of reference fields is live.
        pub fn check_refs<V: RefValue, const N: usize>(&self, v: &[V; N]) -> Result<()> {
            v.iter().try_for_each(|x| self.check_ref(x))
        }
    }

    /// Writes the fields of a new `O` in [`Mutator::alloc_init`], through
    /// `O`'s own field keys (so every write is in bounds and of the
    /// field's type whatever the caller passes).
    pub struct Writer<'a, O> {
        pub(crate) ctx: &'a mut MutatorContext,
        pub(crate) obj: ObjRef,
        pub(crate) _o: PhantomData<fn() -> O>,
    }

    impl<O: Object> Writer<'_, O> {
        /// Stores a reference field (its handle was checked).
        #[inline(always)]
        pub fn set<V: RefValue>(&mut self, key: RefField<O, V>, v: V) {
            if let Some(l) = v.local(TOKEN) {
                // SAFETY: the handle was checked before the allocation and
                // nothing since released it, so its root slot is current,
                // as is `obj`, an `O`; the key's slot is in bounds and
                // holds `V`s.
                unsafe {
                    let o = self.ctx.roots()[l.slot()];
                    self.ctx.store_slot(self.obj, key.index(), o);
                }
            }
        }

        /// Stores a fixed array of reference fields.
        pub fn set_slots<V: RefValue, const N: usize>(
            &mut self,
            key: RefSlots<O, V, N>,
            v: [V; N],
        ) {
            for (i, x) in v.into_iter().enumerate() {
                self.set(key.at(i).expect("i < N"), x);
            }
        }

        /// Writes a data field.
        #[inline(always)]
        pub fn write<D: Data>(&mut self, key: DataField<O, D>, v: D) {
            // SAFETY: `obj` is current and an `O`, the key inside its data
            // (checked when the key was made), and the object is not stored
            // anywhere yet: its data bytes are zero and each is written
            // once (fields do not overlap), so or-ing the bytes in is a
            // store.
            unsafe { write_fresh_at(self.obj, O::REFS, key.offset, v) }
        }
    }
}

impl Mutator {
    /// Allocates an object of a derived type `T`, initialised from `value`
    /// (its reference fields are handles, checked before anything is
    /// allocated). May collect.
    #[inline]
    pub fn alloc_init<T: Object>(&mut self, value: T) -> Result<Gc<T>> {
        value.__check_handles(&__private::Check { m: self })?;
        let layout = record_layout::<T>()?;
        let obj = self.ctx.alloc(&layout)?;
        value.__write_fields(&mut __private::Writer {
            ctx: &mut self.ctx,
            obj,
            _o: PhantomData,
        });
        Ok(Gc::new(self.push_typed(obj)))
    }

    /// Allocates a zeroed object of a derived type whose reference fields
    /// are all nullable (null references, zero data). May collect.
    #[inline]
    pub fn alloc_zeroed<T: Zeroable>(&mut self) -> Result<Gc<T>> {
        let layout = record_layout::<T>()?;
        let obj = self.ctx.alloc(&layout)?;
        Ok(Gc::new(self.push_typed(obj)))
    }

    /// [`alloc_zeroed`](Self::alloc_zeroed) into the existing handle
    /// `into` (no new handle): e.g. one handle per tree level, reused for
    /// every node built at that level. `into` is checked before anything
    /// is allocated.
    #[inline]
    pub fn alloc_zeroed_into<T: Zeroable>(&mut self, into: Gc<T>) -> Result<()> {
        self.check(into.local)?;
        let layout = record_layout::<T>()?;
        let obj = self.ctx.alloc(&layout)?;
        // SAFETY: storing a current reference (just allocated, a `T`) into
        // the root slot of a live `Gc<T>`.
        unsafe { self.ctx.roots()[into.local.slot()] = Some(obj) };
        Ok(())
    }

    /// Allocates a reference array of `len` null elements.
    pub fn alloc_array<T: Object>(&mut self, len: usize) -> Result<Gc<RefArray<T>>> {
        let layout = Layout::ref_array(T::__type_tag(), len)?.typed();
        let obj = self.ctx.alloc(&layout)?;
        Ok(Gc::new(self.push_typed(obj)))
    }

    /// Allocates a data array of `len` zero elements.
    pub fn alloc_data<D: Data>(&mut self, len: usize) -> Result<Gc<DataArray<D>>> {
        let bytes = len
            .checked_mul(D::SIZE)
            .ok_or(Error::Layout(movegc_gc::LayoutError::SizeOverflow))?;
        let layout = Layout::byte_array(<D as sealed::DataRepr>::ID, bytes)?.typed();
        let obj = self.ctx.alloc(&layout)?;
        Ok(Gc::new(self.push_typed(obj)))
    }

    /// A typed handle to `obj`'s object if it is a `T` (checked against its
    /// header), else [`Error::WrongType`].
    pub fn downcast<T: HeapType>(&mut self, obj: Local) -> Result<Gc<T>> {
        let o = self.obj(obj)?;
        // SAFETY: `o` was just read from a root slot.
        let h = unsafe { o.header() };
        if !T::header_ok(h) {
            return Err(Error::WrongType {
                expected: std::any::type_name::<T>(),
                found: h,
            });
        }
        Ok(Gc::new(self.push_typed(o)))
    }

    /// Reference field `field` of `obj`, as a new handle.
    #[inline(always)]
    pub fn get<O: Object, V: RefValue>(&mut self, obj: Gc<O>, field: RefField<O, V>) -> Result<V> {
        let o = self.obj(obj.local)?;
        // SAFETY: `o` was just read from a root slot and is an `O` (module
        // docs), so the slot is in bounds; the loaded reference goes
        // straight into a root slot.
        let r = unsafe { o.load_slot(field.index) };
        let l = r.map(|r| self.push_typed(r));
        Ok(V::from_local(l, TOKEN).expect("a non-null (Gc<T>) field is never null"))
    }

    /// Loads reference field `field` of `obj` into the existing handle
    /// `into` (see [`get_ref_into`](Self::get_ref_into)); `false`, leaving
    /// `into` as it was, if the field is null.
    #[inline(always)]
    pub fn get_into<O: Object, V: RefValue>(
        &mut self,
        obj: Gc<O>,
        field: RefField<O, V>,
        into: Gc<V::Target>,
    ) -> Result<bool> {
        let o = self.obj(obj.local)?;
        self.obj(into.local)?;
        // SAFETY: as in `get`.
        match unsafe { o.load_slot(field.index) } {
            Some(r) => {
                // SAFETY: storing a current reference into a root slot.
                unsafe { self.ctx.roots()[into.local.slot()] = Some(r) };
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Stores `value` into reference field `field` of `obj` (with the write
    /// barriers).
    #[inline(always)]
    pub fn set<O: Object, V: RefValue>(
        &mut self,
        obj: Gc<O>,
        field: RefField<O, V>,
        value: V,
    ) -> Result<()> {
        let o = self.obj(obj.local)?;
        let v = match value.local(TOKEN) {
            Some(l) => Some(self.obj(l)?),
            None => None,
        };
        // SAFETY: `o` and `v` were just read from root slots; the slot is
        // in bounds (`o` is an `O`) and `v` is a `V`.
        unsafe { self.ctx.store_slot(o, field.index, v) };
        Ok(())
    }

    /// Data field `field` of `obj`.
    #[inline(always)]
    pub fn read<O: Object, D: Data>(&mut self, obj: Gc<O>, field: DataField<O, D>) -> Result<D> {
        let o = self.obj(obj.local)?;
        // SAFETY: `o` is current and an `O`, so the field is in its data.
        Ok(unsafe { read_at(o, O::REFS, field.offset) })
    }

    /// Writes data field `field` of `obj`.
    #[inline(always)]
    pub fn write<O: Object, D: Data>(
        &mut self,
        obj: Gc<O>,
        field: DataField<O, D>,
        value: D,
    ) -> Result<()> {
        let o = self.obj(obj.local)?;
        // SAFETY: as in `read`.
        unsafe { write_at(o, O::REFS, field.offset, value) };
        Ok(())
    }

    /// Elements of a typed array.
    pub fn array_len<A: TypedArray>(&mut self, array: Gc<A>) -> Result<usize> {
        let o = self.obj(array.local)?;
        // SAFETY: `o` was just read from a root slot.
        Ok(A::len_of(unsafe { o.header() }))
    }

    /// Element `i` of a reference array, as a new handle.
    pub fn array_get<T: Object>(
        &mut self,
        array: Gc<RefArray<T>>,
        i: usize,
    ) -> Result<Option<Gc<T>>> {
        let o = self.obj(array.local)?;
        // SAFETY: `o` was just read from a root slot; the loaded reference
        // goes straight into one.
        let r = unsafe { o.load_ref(i) }?;
        Ok(r.map(|r| Gc::new(self.push_typed(r))))
    }

    /// Stores element `i` of a reference array.
    pub fn array_set<T: Object>(
        &mut self,
        array: Gc<RefArray<T>>,
        i: usize,
        value: Option<Gc<T>>,
    ) -> Result<()> {
        let o = self.obj(array.local)?;
        let v = match value {
            Some(g) => Some(self.obj(g.local)?),
            None => None,
        };
        // SAFETY: `o` and `v` were just read from root slots.
        unsafe { self.ctx.store_ref(o, i, v) }?;
        Ok(())
    }

    /// Stores the values of `values` into elements `start..` of a reference
    /// array, 256 at a time (one bounds check and one barrier decision per
    /// batch); returns how many were stored. Each batch's handles are
    /// checked before it is stored; on an error the earlier batches stay
    /// stored.
    pub fn array_fill<T: Object>(
        &mut self,
        array: Gc<RefArray<T>>,
        start: usize,
        values: impl IntoIterator<Item = Option<Gc<T>>>,
    ) -> Result<usize> {
        self.fill_batches(
            |m| m.obj_of(array.local),
            start,
            values,
            |m, v| v.map(|g| m.obj_of(g.local)).transpose(),
        )
    }

    /// The loop of [`array_fill`](Self::array_fill) and `View::fill`: takes
    /// up to 256 values at a time, turns each into a raw reference with
    /// `raw`, reads the array with `array`, and stores the batch with one
    /// bounds check and one barrier decision; returns how many were stored.
    /// `raw` and `array` see the mutator shared, so the iterator (user code,
    /// run between them) cannot reach a safepoint: everything read stays
    /// current until its batch is stored.
    pub(crate) fn fill_batches<X>(
        &mut self,
        array: impl Fn(&Mutator) -> Result<ObjRef>,
        start: usize,
        values: impl IntoIterator<Item = X>,
        raw: impl Fn(&Mutator, X) -> Result<Option<ObjRef>>,
    ) -> Result<usize> {
        const BATCH: usize = 256;
        let mut it = values.into_iter();
        let mut buf = [None; BATCH];
        let mut done = 0;
        loop {
            let mut n = 0;
            for v in it.by_ref().take(BATCH) {
                buf[n] = raw(self, v)?;
                n += 1;
            }
            if n == 0 {
                return Ok(done);
            }
            let o = array(self)?;
            // No object has `usize::MAX` slots: past the end, typed.
            let at = start
                .checked_add(done)
                .ok_or(Error::Field(FieldError::RefIndex {
                    index: usize::MAX,
                    len: 0,
                }))?;
            // SAFETY: `o` and the values are current (above), and the
            // values are of the array's element type (the callers' types).
            unsafe { self.ctx.store_refs(o, at, &buf[..n]) }?;
            done += n;
        }
    }

    /// Copies `len` elements of reference array `src` from `src_start` into
    /// `dst` from `dst_start` (the same array may overlap, as `memmove`),
    /// with the barriers of a store, 256 at a time.
    pub fn array_copy<T: Object>(
        &mut self,
        dst: Gc<RefArray<T>>,
        dst_start: usize,
        src: Gc<RefArray<T>>,
        src_start: usize,
        len: usize,
    ) -> Result<()> {
        const BATCH: usize = 256;
        let (d, s) = (self.obj(dst.local)?, self.obj(src.local)?);
        // SAFETY: both were just read from root slots.
        let (dl, sl) = unsafe { (d.header().ref_count(), s.header().ref_count()) };
        for (start, l) in [(dst_start, dl), (src_start, sl)] {
            if start.checked_add(len).is_none_or(|e| e > l) {
                return Err(Error::Field(FieldError::RefIndex {
                    index: start.saturating_add(len).saturating_sub(1),
                    len: l,
                }));
            }
        }
        let backwards = d == s && dst_start > src_start;
        let mut buf = [None; BATCH];
        let mut k = 0;
        while k < len {
            let n = BATCH.min(len - k);
            let off = if backwards { len - k - n } else { k };
            for (j, b) in buf[..n].iter_mut().enumerate() {
                // SAFETY: in bounds (checked above); `s` is current.
                *b = unsafe { s.load_slot(src_start + off + j) };
            }
            // SAFETY: `d` and the values are current (no safepoint since).
            unsafe { self.ctx.store_refs(d, dst_start + off, &buf[..n]) }?;
            k += n;
        }
        Ok(())
    }

    /// Reads elements `start..start + out.len()` of a data array into `out`.
    pub fn data_read<D: Data>(
        &mut self,
        array: Gc<DataArray<D>>,
        start: usize,
        out: &mut [D],
    ) -> Result<()> {
        let o = self.obj(array.local)?;
        // SAFETY: `o` was just read from a root slot.
        let len = DataArray::<D>::len_of(unsafe { o.header() });
        check_range(start, out.len(), len)?;
        for (i, x) in out.iter_mut().enumerate() {
            // SAFETY: element `start + i` is inside the data (checked).
            *x = unsafe { read_at(o, 0, (start + i) * D::SIZE) };
        }
        Ok(())
    }

    /// Writes `values` into elements `start..` of a data array.
    pub fn data_write<D: Data>(
        &mut self,
        array: Gc<DataArray<D>>,
        start: usize,
        values: &[D],
    ) -> Result<()> {
        let o = self.obj(array.local)?;
        // SAFETY: `o` was just read from a root slot.
        let len = DataArray::<D>::len_of(unsafe { o.header() });
        check_range(start, values.len(), len)?;
        for (i, x) in values.iter().enumerate() {
            // SAFETY: element `start + i` is inside the data (checked).
            unsafe { write_at(o, 0, (start + i) * D::SIZE, *x) };
        }
        Ok(())
    }
}

/// `start..start + n` within `len` elements, else a typed error.
pub(crate) fn check_range(start: usize, n: usize, len: usize) -> Result<()> {
    match start.checked_add(n) {
        Some(end) if end <= len => Ok(()),
        _ => Err(Error::Field(FieldError::DataRange {
            offset: start,
            end: start.saturating_add(n),
            len,
        })),
    }
}

/// The typed arrays: [`RefArray`] and [`DataArray`]. Sealed.
pub trait TypedArray: HeapType + sealed::ArraySealed {
    /// Elements of an array with header `h`.
    #[doc(hidden)]
    fn len_of(h: Header) -> usize;
}
impl<T: Object> sealed::ArraySealed for RefArray<T> {}
impl<D: Data> sealed::ArraySealed for DataArray<D> {}
impl<T: Object> TypedArray for RefArray<T> {
    fn len_of(h: Header) -> usize {
        h.ref_count()
    }
}
impl<D: Data> TypedArray for DataArray<D> {
    fn len_of(h: Header) -> usize {
        h.data_len() / D::SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::__private::data_offsets;

    #[test]
    fn data_fields_are_laid_out_in_order_at_their_alignment() {
        assert_eq!(data_offsets::<0>([]), ([], 0));
        // u8, u64, u16, [u8; 3], u32
        let (o, end) = data_offsets([(1, 1), (8, 8), (2, 2), (3, 1), (4, 4)]);
        assert_eq!(o, [0, 8, 16, 18, 24]);
        assert_eq!(end, 28);
    }
}
