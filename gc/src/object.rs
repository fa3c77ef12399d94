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
//! plain moves on x86-64.

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
}

/// A decoded object header.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header(u64);

impl Header {
    const KIND_MASK: u64 = 0b11;
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
        if raw & Self::KIND_MASK == 0 || raw & 0xfc != 0 {
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
/// An `ObjRef` is only ever produced by the collector (allocation, loading a
/// reference field), and the collector rewrites every `ObjRef` held in a root
/// slot when objects move, so a value that lives in a root slot is always
/// valid. Code outside this crate cannot forge one. Holding an `ObjRef`
/// outside a root slot across a safepoint is a bug the embedding API
/// prevents by construction.
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
    // SAFETY: every address passed here is a word inside a live heap object
    // (a header or a slot whose index was bounds-checked against the header),
    // and heap memory stays mapped while any ObjRef into it can be used: the
    // mapping is owned by the heap, which outlives its mutators. AtomicU64
    // accesses make concurrent mutator accesses data-race free.
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
    #[inline(always)]
    pub fn header(self) -> Header {
        Header(load_word(self.addr()))
    }

    #[inline(always)]
    fn ref_slot(self, index: usize) -> Result<usize, FieldError> {
        let len = self.header().ref_count();
        if index >= len {
            return Err(FieldError::RefIndex { index, len });
        }
        Ok(self.addr() + WORD + index * WORD)
    }

    /// Loads reference field / element `index`.
    #[inline]
    pub fn load_ref(self, index: usize) -> Result<Option<ObjRef>, FieldError> {
        Ok(ObjRef::from_slot(load_word(self.ref_slot(index)?)))
    }

    /// Stores `value` into reference field / element `index`.
    #[inline]
    pub fn store_ref(self, index: usize, value: Option<ObjRef>) -> Result<(), FieldError> {
        let slot = self.ref_slot(index)?;
        let v = value.map_or(0, |r| r.addr() as u64);
        if crate::satb::active() {
            // Concurrent marking: log what this store overwrites.
            let old = swap_word(slot, v);
            if old != 0 {
                crate::satb::log(self.addr(), old as usize);
            }
        } else {
            store_word(slot, v);
        }
        Ok(())
    }

    fn data_start(self, h: Header) -> usize {
        self.addr() + WORD + h.ref_count() * WORD
    }

    fn data_range(self, offset: usize, len: usize) -> Result<(Header, usize), FieldError> {
        let h = self.header();
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

    /// Reads `buf.len()` data bytes starting at `offset`.
    pub fn read_data(self, offset: usize, buf: &mut [u8]) -> Result<(), FieldError> {
        let (_, start) = self.data_range(offset, buf.len())?;
        for (i, b) in buf.iter_mut().enumerate() {
            let a = start + i;
            let w = load_word(a & !(WORD - 1)).to_le_bytes();
            *b = w[a % WORD];
        }
        Ok(())
    }

    /// Writes `bytes` into the data starting at `offset`.
    pub fn write_data(self, offset: usize, bytes: &[u8]) -> Result<(), FieldError> {
        let (_, start) = self.data_range(offset, bytes.len())?;
        let mut i = 0;
        while i < bytes.len() {
            let a = start + i;
            let base = a & !(WORD - 1);
            let lo = a - base;
            let n = (WORD - lo).min(bytes.len() - i);
            let v = if lo == 0 && n == WORD {
                u64::from_le_bytes(bytes[i..i + WORD].try_into().expect("8 bytes"))
            } else {
                let mut w = load_word(base).to_le_bytes();
                w[lo..lo + n].copy_from_slice(&bytes[i..i + n]);
                u64::from_le_bytes(w)
            };
            store_word(base, v);
            i += n;
        }
        Ok(())
    }

    /// Reads the 8 data bytes at `offset` as a little-endian `u64`.
    /// Word-aligned offsets take a single load.
    #[inline]
    pub fn read_u64(self, offset: usize) -> Result<u64, FieldError> {
        let (_, start) = self.data_range(offset, WORD)?;
        if start % WORD == 0 {
            return Ok(load_word(start));
        }
        let mut b = [0u8; 8];
        self.read_data(offset, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian `u64` at data `offset`.
    #[inline]
    pub fn write_u64(self, offset: usize, v: u64) -> Result<(), FieldError> {
        let (_, start) = self.data_range(offset, WORD)?;
        if start % WORD == 0 {
            store_word(start, v);
            return Ok(());
        }
        self.write_data(offset, &v.to_le_bytes())
    }

    /// Calls `f` with the object's data bytes as a slice.
    ///
    /// The slice is valid only inside `f`, which cannot reach a safepoint
    /// (it has no access to a mutator), so the object cannot move meanwhile.
    /// Another mutator writing the same object at the same time is a data
    /// race, exactly as with any shared memory: synchronise such access.
    pub fn with_data<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        let h = self.header();
        let start = self.data_start(h);
        touch_pages(start, h.data_len());
        // SAFETY: [start, start+data_len) is inside the live object (from its
        // header); the heap memory stays mapped for the call; `f` cannot run
        // a collection (no mutator access) so the object does not move.
        let s = unsafe { std::slice::from_raw_parts(start as *const u8, h.data_len()) };
        f(s)
    }

    /// Calls `f` with the object's data bytes as a mutable slice; same
    /// rules as [`with_data`](Self::with_data).
    pub fn with_data_mut<R>(self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let h = self.header();
        let start = self.data_start(h);
        touch_pages(start, h.data_len());
        // SAFETY: as in `with_data`; the embedding API hands the slice to a
        // closure that cannot reach another handle to this object's memory
        // through this crate while it runs.
        let s = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, h.data_len()) };
        f(s)
    }
}

/// Touches every page of `[start, start+len)` from user space (one load per
/// page). During a concurrent cycle a page may still be missing; a user
/// access faults and is resolved, but with `UFFD_USER_MODE_ONLY` (and in
/// SIGBUS mode) a *kernel* access — a `write(2)` from the slice, a `read(2)`
/// into it — would fail with `EFAULT` instead. Slices handed to foreign
/// code are therefore made resident first.
fn touch_pages(start: usize, len: usize) {
    if len == 0 {
        return;
    }
    let page = crate::mapping::PAGE_SIZE;
    let mut a = start & !(WORD - 1);
    let end = start + len;
    while a < end {
        let _ = load_word(a);
        a = (a & !(page - 1)) + page;
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
        assert_eq!(o.load_ref(0), Ok(None));
        o.store_ref(1, Some(o)).unwrap();
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
        assert_eq!(o.with_data(|d| d.len()), 12);
        drop(mem);
    }
}
