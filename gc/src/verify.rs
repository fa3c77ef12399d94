//! The heap verifier: after a collection the moving space is a packed
//! sequence of valid objects (live objects and dense-prefix fillers) from
//! its start to its top, and every reference, in the heap, in large objects
//! and in the roots, is null or points at the start of an object in the
//! moving space or of a live large object.
//!
//! It runs after every collection in debug and test builds (and with the
//! `verify` feature); it walks the heap iteratively, never recursing on the
//! object graph.

use std::collections::BTreeMap;
use std::fmt;

use crate::object::{load_word, Header, WORD};
use crate::space::LargeObject;

/// The first inconsistency found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    /// Address of the offending object or slot.
    pub addr: usize,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {:#x}: {}", self.addr, self.what)
    }
}

impl std::error::Error for VerifyError {}

/// What the verifier saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VerifyReport {
    /// Objects in the moving space (fillers included).
    pub objects: usize,
    /// Reference slots checked (heap, large objects, roots).
    pub references: usize,
}

fn err(addr: usize, what: impl Into<String>) -> VerifyError {
    VerifyError {
        addr,
        what: what.into(),
    }
}

/// Verifies the heap `[start, top)` plus the large objects `los` and the
/// root values `roots`. `[start, packed_end)` must be packed objects (what
/// a collection produced); `[packed_end, top)` is the allocation region
/// since then, where unused TLAB tails are zero words between objects. The
/// world must be stopped.
pub fn verify_heap(
    start: usize,
    packed_end: usize,
    top: usize,
    los: &BTreeMap<usize, LargeObject>,
    roots: &[usize],
) -> Result<VerifyReport, VerifyError> {
    let words = (top - start) / WORD;
    let mut starts = vec![0u64; words.div_ceil(64) + 1];
    let mut report = VerifyReport::default();

    // Pass 1: walk headers, record object starts, check nothing overlaps
    // the top.
    let mut a = start;
    while a < top {
        let raw = load_word(a);
        if raw == 0 && a >= packed_end {
            a += WORD; // unused TLAB space
            continue;
        }
        let h = Header::from_raw(raw).ok_or_else(|| err(a, format!("invalid header {raw:#x}")))?;
        let size = h.size();
        if a + size > top {
            return Err(err(
                a,
                format!("object of {size} bytes runs past the top {top:#x}"),
            ));
        }
        let w = (a - start) / WORD;
        starts[w / 64] |= 1 << (w % 64);
        report.objects += 1;
        a += size;
    }

    let is_valid = |v: usize| -> bool {
        if v == 0 {
            return true;
        }
        if v >= start && v < top {
            let w = (v - start) / WORD;
            return v % WORD == 0 && starts[w / 64] & (1 << (w % 64)) != 0;
        }
        los.contains_key(&v)
    };
    let check_object = |a: usize, report: &mut VerifyReport| -> Result<(), VerifyError> {
        let h = Header::from_raw(load_word(a)).ok_or_else(|| err(a, "invalid header"))?;
        for i in 0..h.ref_count() {
            let slot = a + WORD + i * WORD;
            let v = load_word(slot) as usize;
            report.references += 1;
            if !is_valid(v) {
                return Err(err(
                    slot,
                    format!("field {i} of {h:?} holds {v:#x}, not an object"),
                ));
            }
        }
        Ok(())
    };

    // Pass 2: every reference slot in the moving space and in large objects.
    let mut a = start;
    while a < top {
        if a >= packed_end && load_word(a) == 0 {
            a += WORD;
            continue;
        }
        check_object(a, &mut report)?;
        a += Header::from_raw(load_word(a))
            .expect("checked in pass 1")
            .size();
    }
    for &addr in los.keys() {
        check_object(addr, &mut report)?;
    }
    for &r in roots {
        report.references += 1;
        if !is_valid(r) {
            return Err(err(r, "root does not point at an object"));
        }
    }
    Ok(report)
}
