//! The object model: the 8-byte header, layouts, and [`ObjRef`], the only
//! way to read or write a heap object.
//!
//! Every object starts with one header word and is a whole number of 8-byte
//! words long. References are raw addresses stored in 8-byte slots (0 is
//! null). Three kinds of object exist:
//!
//! ```text
//! Record     | header | ref 0 | ref 1 | ... | ref n-1 | data bytes (m, padded to 8) |
//! RefArray   | header | elem 0 | elem 1 | ... | elem len-1 |
//! ByteArray  | header | bytes (len, padded to 8)            |
//!
//! header bits: 63 ............ 24 | 23 ..... 8 | 7 .. 2 | 1 0 |
//!              record: data(24) nrefs(16) | tag (16) | 0      | kind|
//!              arrays: length (40)         |
//! ```
//!
//! `kind == 0` is never a valid header, so a zero page never parses as an
//! object. The header never changes after allocation, and the collector never
//! writes forwarding information into objects.
//!
//! This module holds the raw loads and stores of object words (the `unsafe`
//! is here and in [`crate::mapping`]); they are relaxed atomics so that
//! racing mutators cannot cause undefined behaviour, and they compile to
//! plain moves on x86-64. Access through an [`ObjRef`] is `unsafe`: only a
//! caller that knows the reference is current (the `movegc` crate) may make
//! it; see [the access contract](ObjRef#the-access-contract).

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes in a heap word; objects are word aligned and word sized.
pub const WORD: usize = 8;
/// Largest number of reference fields in a record.
pub const MAX_RECORD_REFS: usize = (1 << 16) - 1;
/// Largest number of plain-data bytes in a record.
pub const MAX_RECORD_DATA: usize = (1 << 24) - 1;
/// Largest array length (elements or bytes).
pub const MAX_ARRAY_LEN: usize = (1 << 40) - 1;

/// The kind of an object, stored in the low two header bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `nrefs` reference fields followed by `data` plain bytes.
    Record,
    /// An array of references.
    RefArray,
    /// An array of bytes.
    ByteArray,
}

/// Why a layout was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// A record asked for more than [`MAX_RECORD_REFS`] reference fields.
    #[error("record with {0} reference fields (max {MAX_RECORD_REFS})")]
    TooManyFields(usize),
    /// A record asked for more than [`MAX_RECORD_DATA`] data bytes.
    #[error("record with {0} data bytes (max {MAX_RECORD_DATA})")]
    DataTooLarge(usize),
    /// An array longer than [`MAX_ARRAY_LEN`].
    #[error("array of length {0} (max {MAX_ARRAY_LEN})")]
    ArrayTooLong(usize),
    /// The object size does not fit the address space.
    #[error("object size overflows")]
    SizeOverflow,
}

/// A checked object shape: kind, user tag and size. Creating one validates
/// it, so allocation never sees a malformed layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    header: Header,
    size: usize,
}

impl Layout {
    /// A record with `nrefs` reference fields, then `data` bytes of plain
    /// data. `tag` is free for the embedder (e.g. a type id).
    #[inline]
    pub fn record(tag: u16, nrefs: usize, data: usize) -> Result<Layout, LayoutError> {
        if nrefs > MAX_RECORD_REFS {
            return Err(LayoutError::TooManyFields(nrefs));
        }
        if data > MAX_RECORD_DATA {
            return Err(LayoutError::DataTooLarge(data));
        }
        let header = Header::encode(Kind::Record, tag, ((data as u64) << 16) | nrefs as u64);
        Ok(Layout {
            header,
            size: header.size(),
        })
    }

    /// An array of `len` references, all null.
    pub fn ref_array(tag: u16, len: usize) -> Result<Layout, LayoutError> {
        if len > MAX_ARRAY_LEN {
            return Err(LayoutError::ArrayTooLong(len));
        }
        len.checked_mul(WORD)
            .and_then(|b| b.checked_add(WORD))
            .ok_or(LayoutError::SizeOverflow)?;
        let header = Header::encode(Kind::RefArray, tag, len as u64);
        Ok(Layout {
            header,
            size: header.size(),
        })
    }

    /// An array of `len` bytes, all zero.
    pub fn byte_array(tag: u16, len: usize) -> Result<Layout, LayoutError> {
        if len > MAX_ARRAY_LEN {
            return Err(LayoutError::ArrayTooLong(len));
        }
        len.checked_add(2 * WORD).ok_or(LayoutError::SizeOverflow)?;
        let header = Header::encode(Kind::ByteArray, tag, len as u64);
        Ok(Layout {
            header,
            size: header.size(),
        })
    }

    /// Total size in bytes, header included (a multiple of 8).
    pub fn size(&self) -> usize {
        self.size
    }

    /// The header every object of this layout carries.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The same layout with the header's *typed* flag set
    /// ([`Header::is_typed`]). The collector ignores the flag; the embedding
    /// API sets it on objects of derived types, whose reference fields only
    /// its typed accessors may write, and refuses to allocate typed layouts
    /// or store references into typed objects through its untyped calls.
    #[inline]
    pub fn typed(self) -> Layout {
        Layout {
            header: Header(self.header.0 | Header::TYPED),
            size: self.size,
        }
    }
}

/// A decoded object header.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header(u64);

impl Header {
    const KIND_MASK: u64 = 0b11;
    /// Bit 2: the object is of a derived type ([`Layout::typed`]).
    const TYPED: u64 = 0b100;
    const TAG_SHIFT: u32 = 8;
    const PAYLOAD_SHIFT: u32 = 24;

    fn encode(kind: Kind, tag: u16, payload: u64) -> Header {
        let k = match kind {
            Kind::Record => 1,
            Kind::RefArray => 2,
            Kind::ByteArray => 3,
        };
        Header(k | ((tag as u64) << Self::TAG_SHIFT) | (payload << Self::PAYLOAD_SHIFT))
    }

    /// Interprets a raw word as a header; `None` if it cannot be one.
    pub fn from_raw(raw: u64) -> Option<Header> {
        if raw & Self::KIND_MASK == 0 || raw & 0xf8 != 0 {
            return None;
        }
        Some(Header(raw))
    }

    /// The raw header word.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// The object kind.
    pub fn kind(self) -> Kind {
        match self.0 & Self::KIND_MASK {
            1 => Kind::Record,
            2 => Kind::RefArray,
            _ => Kind::ByteArray,
        }
    }

    /// Whether the object is of a derived type ([`Layout::typed`]).
    #[inline(always)]
    pub fn is_typed(self) -> bool {
        self.0 & Self::TYPED != 0
    }

    /// The embedder's tag.
    pub fn tag(self) -> u16 {
        (self.0 >> Self::TAG_SHIFT) as u16
    }

    fn payload(self) -> u64 {
        self.0 >> Self::PAYLOAD_SHIFT
    }

    /// Number of reference slots (record fields or array elements).
    #[inline]
    pub fn ref_count(self) -> usize {
        match self.kind() {
            Kind::Record => (self.payload() & 0xffff) as usize,
            Kind::RefArray => self.payload() as usize,
            Kind::ByteArray => 0,
        }
    }

    /// Number of plain-data bytes (record data or byte-array length).
    pub fn data_len(self) -> usize {
        match self.kind() {
            Kind::Record => (self.payload() >> 16) as usize,
            Kind::RefArray => 0,
            Kind::ByteArray => self.payload() as usize,
        }
    }

    /// Array length (elements for reference arrays, bytes for byte arrays);
    /// for records the number of reference fields.
    pub fn len(self) -> usize {
        match self.kind() {
            Kind::Record | Kind::RefArray => self.ref_count(),
            Kind::ByteArray => self.data_len(),
        }
    }

    /// Whether [`len`](Self::len) is zero.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Object size in bytes, header included.
    #[inline]
    pub fn size(self) -> usize {
        WORD + self.ref_count() * WORD + self.data_len().div_ceil(WORD) * WORD
    }

    /// Object size in words.
    #[inline]
    pub fn size_words(self) -> usize {
        self.size() / WORD
    }
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Header")
            .field("kind", &self.kind())
            .field("tag", &self.tag())
            .field("typed", &self.is_typed())
            .field("refs", &self.ref_count())
            .field("data", &self.data_len())
            .finish()
    }
}

/// An out-of-range field or element access.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// Reference index past the object's reference slots.
    #[error("reference index {index} out of range (object has {len})")]
    RefIndex {
        /// Requested index.
        index: usize,
        /// Number of reference slots.
        len: usize,
    },
    /// Byte range past the object's data.
    #[error("data range {offset}..{end} out of range (object has {len} data bytes)")]
    DataRange {
        /// Requested start.
        offset: usize,
        /// Requested end.
        end: usize,
        /// Number of data bytes.
        len: usize,
    },
}

/// A reference to a heap object: its current address.
///
/// An `ObjRef` is only ever produced by the engine (allocation, loading a
/// reference field, a root slot), and code outside this crate cannot forge
/// one. It is a plain address: it stays valid only while the object does
/// not move, i.e. until the thread that holds it next reaches a safepoint
/// (or leaves the running set), unless it lives in a root slot, which the
/// collector rewrites when objects move. That is why every access through
/// it is `unsafe`: the engine cannot tell a current reference from a stale
/// one. The `movegc` crate is the safe layer that establishes the contract
/// (its handles are root slots; its accessors hold the mutator borrowed).
///
/// # The access contract
/// A call `o.f(..)` of an `unsafe` method below is sound when:
/// 1. `o` is *current*: it was obtained by the calling thread from this
///    heap (allocated, loaded from a field or read from a root slot) and the
///    thread has not reached a safepoint, waited, or left the running set
///    since; or it was just read from a root slot;
/// 2. the calling thread is a running mutator of `o`'s heap (so no
///    collection can run, and the object cannot move, during the call), and
///    the heap is alive.
///
/// **Memory model.** Heap objects are shared memory: any number of threads
/// may access the same object at the same time. Every access is a relaxed
/// atomic access of an aligned 8-byte word (a plain `mov` on x86-64), so
/// concurrent accesses are never undefined behaviour; writes to different
/// bytes never lose one another (a partial-word write is a compare-and-swap
/// of the word), and a word is never torn. Ordering between threads comes
/// from the embedder's own synchronisation, as with any relaxed atomic.
/// No API hands out a Rust reference (`&[u8]`) into the heap.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct ObjRef(NonZeroUsize);

impl fmt::Debug for ObjRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjRef({:#x})", self.0)
    }
}

#[inline(always)]
fn word(addr: usize) -> &'static AtomicU64 {
    debug_assert!(addr % WORD == 0 && addr != 0);
    // SAFETY: every caller passes a word inside a live heap object (a header
    // or a slot bounds-checked against the header) or collector-owned
    // memory, per the contract of `load_word`/`store_word` and of the
    // `ObjRef` methods; that memory stays mapped for the call. All heap
    // accesses are aligned 8-byte atomics, so concurrent ones cannot race.
    unsafe { &*(addr as *const AtomicU64) }
}

/// Loads the word at `addr` (relaxed). Crate-internal: `addr` must be a word
/// of a live object or of collector-owned memory.
#[inline(always)]
pub(crate) fn load_word(addr: usize) -> u64 {
    word(addr).load(Ordering::Relaxed)
}

/// Stores the word at `addr` (relaxed). Same contract as [`load_word`].
#[inline(always)]
pub(crate) fn store_word(addr: usize, v: u64) {
    word(addr).store(v, Ordering::Relaxed)
}

/// Swaps the word at `addr` (relaxed), returning the old value. Same
/// contract as [`load_word`].
#[inline(always)]
pub(crate) fn swap_word(addr: usize, v: u64) -> u64 {
    word(addr).swap(v, Ordering::Relaxed)
}

/// Replaces the bytes `lo..lo + bytes.len()` of the word at `addr` by
/// `bytes`, leaving the others as they are even if another thread writes
/// them at the same time (a compare-and-swap loop). Same contract as
/// [`load_word`].
fn merge_word(addr: usize, lo: usize, bytes: &[u8]) {
    let w = word(addr);
    let mut cur = w.load(Ordering::Relaxed);
    loop {
        let mut b = cur.to_le_bytes();
        b[lo..lo + bytes.len()].copy_from_slice(bytes);
        match w.compare_exchange_weak(
            cur,
            u64::from_le_bytes(b),
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(now) => cur = now,
        }
    }
}

impl ObjRef {
    /// Wraps an address the collector knows to be an object start.
    #[inline(always)]
    pub(crate) fn from_addr(addr: usize) -> ObjRef {
        debug_assert!(addr % WORD == 0);
        ObjRef(NonZeroUsize::new(addr).expect("null object address"))
    }

    /// Wraps a raw slot value (0 is null).
    #[inline(always)]
    pub(crate) fn from_slot(v: u64) -> Option<ObjRef> {
        NonZeroUsize::new(v as usize).map(ObjRef)
    }

    /// The object's current address. Useful for diagnostics and hashing
    /// within one GC epoch; it changes when the object moves.
    #[inline(always)]
    pub fn addr(self) -> usize {
        self.0.get()
    }

    /// The object's header.
    ///
    /// # Safety
    /// `self` is current and the caller a running mutator of its heap (see
    /// [the access contract](ObjRef#the-access-contract)).
    #[inline(always)]
    pub unsafe fn header(self) -> Header {
        Header(load_word(self.addr()))
    }

    /// The address of reference slot `index`, bounds-checked.
    ///
    /// # Safety
    /// As for [`header`](Self::header).
    #[inline(always)]
    pub(crate) unsafe fn ref_slot(self, index: usize) -> Result<usize, FieldError> {
        // SAFETY: the caller's contract.
        let len = unsafe { self.header() }.ref_count();
        if index >= len {
            return Err(FieldError::RefIndex { index, len });
        }
        Ok(self.addr() + WORD + index * WORD)
    }

    /// Loads reference field / element `index`.
    ///
    /// # Safety
    /// As for [`header`](Self::header). The result is current under the
    /// same conditions as `self`.
    #[inline]
    pub unsafe fn load_ref(self, index: usize) -> Result<Option<ObjRef>, FieldError> {
        // SAFETY: the caller's contract.
        Ok(ObjRef::from_slot(load_word(unsafe {
            self.ref_slot(index)
        }?)))
    }

    /// Loads reference slot `index` without a bounds check.
    ///
    /// # Safety
    /// As for [`header`](Self::header), and `index` is below the object's
    /// [`ref_count`](Header::ref_count).
    #[inline(always)]
    pub unsafe fn load_slot(self, index: usize) -> Option<ObjRef> {
        ObjRef::from_slot(load_word(self.addr() + WORD + index * WORD))
    }

    /// Loads the word `offset` bytes from the object's start (the header is
    /// at 0), without a bounds check.
    ///
    /// # Safety
    /// As for [`header`](Self::header); `offset` is a multiple of 8 and
    /// `offset + 8` at most the object's [`size`](Header::size).
    #[inline(always)]
    pub unsafe fn load_word_at(self, offset: usize) -> u64 {
        load_word(self.addr() + offset)
    }

    /// Stores the word `offset` bytes from the object's start. The header
    /// and the reference slots must not be written this way (references
    /// need the barriers of `MutatorContext::store_ref`).
    ///
    /// # Safety
    /// As for [`load_word_at`](Self::load_word_at), and the word is plain
    /// data (past the reference slots).
    #[inline(always)]
    pub unsafe fn store_word_at(self, offset: usize, v: u64) {
        store_word(self.addr() + offset, v)
    }

    fn data_start(self, h: Header) -> usize {
        self.addr() + WORD + h.ref_count() * WORD
    }

    /// # Safety
    /// As for [`header`](Self::header).
    unsafe fn data_range(self, offset: usize, len: usize) -> Result<(Header, usize), FieldError> {
        // SAFETY: the caller's contract.
        let h = unsafe { self.header() };
        let dl = h.data_len();
        match offset.checked_add(len) {
            Some(end) if end <= dl => Ok((h, self.data_start(h) + offset)),
            _ => Err(FieldError::DataRange {
                offset,
                end: offset.saturating_add(len),
                len: dl,
            }),
        }
    }

    /// Reads `buf.len()` data bytes starting at `offset`, a word at a time.
    ///
    /// # Safety
    /// As for [`header`](Self::header).
    pub unsafe fn read_data(self, offset: usize, buf: &mut [u8]) -> Result<(), FieldError> {
        // SAFETY: the caller's contract.
        let (_, start) = unsafe { self.data_range(offset, buf.len()) }?;
        let mut i = 0;
        while i < buf.len() {
            let a = start + i;
            let base = a & !(WORD - 1);
            let lo = a - base;
            let n = (WORD - lo).min(buf.len() - i);
            let w = load_word(base).to_le_bytes();
            buf[i..i + n].copy_from_slice(&w[lo..lo + n]);
            i += n;
        }
        Ok(())
    }

    /// Writes `bytes` into the data starting at `offset`: whole words are
    /// stored, partial words merged (see [the memory
    /// model](ObjRef#the-access-contract)).
    ///
    /// # Safety
    /// As for [`header`](Self::header).
    pub unsafe fn write_data(self, offset: usize, bytes: &[u8]) -> Result<(), FieldError> {
        // SAFETY: the caller's contract.
        let (_, start) = unsafe { self.data_range(offset, bytes.len()) }?;
        let mut i = 0;
        while i < bytes.len() {
            let a = start + i;
            let base = a & !(WORD - 1);
            let lo = a - base;
            let n = (WORD - lo).min(bytes.len() - i);
            if n == WORD {
                let v = u64::from_le_bytes(bytes[i..i + WORD].try_into().expect("8 bytes"));
                store_word(base, v);
            } else {
                merge_word(base, lo, &bytes[i..i + n]);
            }
            i += n;
        }
        Ok(())
    }

    /// Reads the 8 data bytes at `offset` as a little-endian `u64`.
    /// Word-aligned offsets take a single load.
    ///
    /// # Safety
    /// As for [`header`](Self::header).
    #[inline]
    pub unsafe fn read_u64(self, offset: usize) -> Result<u64, FieldError> {
        // SAFETY: the caller's contract (both calls).
        let (_, start) = unsafe { self.data_range(offset, WORD) }?;
        if start % WORD == 0 {
            return Ok(load_word(start));
        }
        let mut b = [0u8; 8];
        unsafe { self.read_data(offset, &mut b) }?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian `u64` at data `offset`.
    ///
    /// # Safety
    /// As for [`header`](Self::header).
    #[inline]
    pub unsafe fn write_u64(self, offset: usize, v: u64) -> Result<(), FieldError> {
        // SAFETY: the caller's contract (both calls).
        let (_, start) = unsafe { self.data_range(offset, WORD) }?;
        if start % WORD == 0 {
            store_word(start, v);
            return Ok(());
        }
        unsafe { self.write_data(offset, &v.to_le_bytes()) }
    }
}

/// Writes `header` at `addr` (fresh, zeroed allocation) and returns the
/// object. Crate-internal: `addr..addr+size` must be zeroed heap memory
/// reserved for this object.
#[inline(always)]
pub(crate) fn init_object(addr: usize, header: Header) -> ObjRef {
    store_word(addr, header.raw());
    ObjRef::from_addr(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_encode_and_size() {
        let r = Layout::record(7, 3, 13).unwrap();
        assert_eq!(r.size(), 8 + 24 + 16);
        let h = r.header();
        assert_eq!(
            (h.kind(), h.tag(), h.ref_count(), h.data_len()),
            (Kind::Record, 7, 3, 13)
        );
        assert_eq!(Header::from_raw(h.raw()), Some(h));
        let a = Layout::ref_array(1, 1000).unwrap();
        assert_eq!(a.size(), 8 + 8000);
        assert_eq!(a.header().len(), 1000);
        let b = Layout::byte_array(2, 9).unwrap();
        assert_eq!(b.size(), 24);
        assert_eq!(b.header().data_len(), 9);
        assert_eq!(Layout::record(0, 0, 0).unwrap().size(), 8);
        assert_eq!(Header::from_raw(0), None);
        // The typed flag changes nothing else and survives a round trip;
        // the other spare bits still make a word no header.
        let t = r.typed();
        assert!(t.header().is_typed() && !h.is_typed());
        assert_eq!(t.size(), r.size());
        let th = t.header();
        assert_eq!(
            (th.kind(), th.tag(), th.ref_count(), th.data_len()),
            (Kind::Record, 7, 3, 13)
        );
        assert_eq!(Header::from_raw(th.raw()), Some(th));
        assert_eq!(Header::from_raw(h.raw() | 0b1000), None);
    }

    #[test]
    fn bad_layouts_are_errors() {
        assert_eq!(
            Layout::record(0, 70_000, 0),
            Err(LayoutError::TooManyFields(70_000))
        );
        assert_eq!(
            Layout::record(0, 1, 1 << 24),
            Err(LayoutError::DataTooLarge(1 << 24))
        );
        assert_eq!(
            Layout::ref_array(0, 1 << 40),
            Err(LayoutError::ArrayTooLong(1 << 40))
        );
        assert_eq!(
            Layout::byte_array(0, usize::MAX),
            Err(LayoutError::ArrayTooLong(usize::MAX))
        );
    }

    #[test]
    fn field_access_is_bounds_checked() {
        let mut mem = vec![0u64; 8];
        let addr = mem.as_mut_ptr() as usize;
        let o = init_object(addr, Layout::record(0, 2, 12).unwrap().header());
        // SAFETY: `o` lives in `mem`, which outlives every access; one thread.
        unsafe {
            assert_eq!(o.load_ref(0), Ok(None));
            store_word(o.ref_slot(1).unwrap(), o.addr() as u64);
            assert_eq!(o.load_ref(1), Ok(Some(o)));
            assert_eq!(
                o.load_ref(2),
                Err(FieldError::RefIndex { index: 2, len: 2 })
            );
            o.write_u64(4, 0x1122334455667788).unwrap();
            assert_eq!(o.read_u64(4), Ok(0x1122334455667788));
            assert!(matches!(
                o.write_u64(5, 1),
                Err(FieldError::DataRange { .. })
            ));
            o.write_data(0, b"hi").unwrap();
            let mut b = [0u8; 2];
            o.read_data(0, &mut b).unwrap();
            assert_eq!(&b, b"hi");
            // A partial-word write leaves the word's other bytes alone.
            o.write_data(9, b"z").unwrap();
            let mut all = [0u8; 12];
            o.read_data(0, &mut all).unwrap();
            assert_eq!(&all[..2], b"hi");
            assert_eq!(all[9], b'z');
            assert_eq!(o.read_u64(4), Ok(0x1122_7a44_5566_7788));
        }
        drop(mem);
    }
}
