//! Misuses the types reject at compile time, as `compile_fail` doctests
//! (run by `cargo test --doc -p movegc`). Each block names the error code it
//! must fail with, so a block that fails for another reason (a typo) does
//! not pass. The first block is the control: the same code, used rightly,
//! compiles.
//!
//! ```
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let mut m = heap.attach().unwrap();
//! let h = m.alloc(&movegc::Layout::byte_array(0, 4).unwrap()).unwrap();
//! let v: Vec<u8> = m.with_bytes(h, |b| b.to_vec()).unwrap();
//! assert_eq!(v, [0; 4]);
//! std::thread::spawn(move || drop(heap)).join().unwrap();
//! ```
//!
//! A `Mutator` belongs to the thread that attached it: it cannot be sent...
//!
//! ```compile_fail,E0277
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let m = heap.attach().unwrap();
//! std::thread::spawn(move || drop(m));
//! ```
//!
//! ... nor shared:
//!
//! ```compile_fail,E0277
//! fn shared<T: Sync>(_: &T) {}
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let m = heap.attach().unwrap();
//! shared(&m);
//! ```
//!
//! The slice `with_bytes` lends cannot outlive its closure:
//!
//! ```compile_fail
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let mut m = heap.attach().unwrap();
//! let h = m.alloc(&movegc::Layout::byte_array(0, 4).unwrap()).unwrap();
//! let s: &[u8] = m.with_bytes(h, |b| b).unwrap();
//! ```
//!
//! ```compile_fail
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let mut m = heap.attach().unwrap();
//! let h = m.alloc(&movegc::Layout::byte_array(0, 4).unwrap()).unwrap();
//! let mut keep: Option<&mut [u8]> = None;
//! m.with_bytes_mut(h, |b| keep = Some(b)).unwrap();
//! ```
//!
//! Nothing inside `with_bytes` (or `blocking`) can reach the mutator, so it
//! cannot allocate or reach a safepoint there:
//!
//! ```compile_fail,E0499
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let mut m = heap.attach().unwrap();
//! let l = movegc::Layout::byte_array(0, 4).unwrap();
//! let h = m.alloc(&l).unwrap();
//! m.with_bytes(h, |_| m.alloc(&l)).unwrap();
//! ```
//!
//! ```compile_fail,E0499
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let mut m = heap.attach().unwrap();
//! m.blocking(|| m.safepoint());
//! ```
//!
//! The engine is not reachable through this crate: there is no `gc`
//! module...
//!
//! ```compile_fail,E0433
//! let _ = movegc::gc::HeapConfig::default();
//! ```
//!
//! ... and no `Heap::gc()`:
//!
//! ```compile_fail,E0599
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let _engine = heap.gc();
//! ```
