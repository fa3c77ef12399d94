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
//!
//! # Views and typed objects
//!
//! The control: a view reads and writes through `Ref`s, and a typed
//! object with a non-null field is allocated initialised.
//!
//! ```
//! use movegc::{Gc, Object};
//! #[derive(Object)]
//! struct N { next: Option<Gc<N>>, v: i64 }
//! #[derive(Object)]
//! struct P { head: Gc<N> }
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let mut m = heap.attach().unwrap();
//! let a = m.alloc_zeroed::<N>().unwrap();
//! let b = m.alloc_init(N { next: Some(a), v: 2 }).unwrap();
//! let _p = m.alloc_init(P { head: b }).unwrap();
//! let v = m.view(|v| {
//!     let r = v.get(b).unwrap();
//!     let n = r.get(N::NEXT).unwrap();
//!     v.set(n, N::NEXT, Some(r));
//!     r.read(N::V)
//! });
//! assert_eq!(v, 2);
//! ```
//!
//! A `Ref` cannot leave its view, by return...
//!
//! ```compile_fail
//! use movegc::{Gc, Object};
//! #[derive(Object)]
//! struct N { next: Option<Gc<N>>, v: i64 }
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let mut m = heap.attach().unwrap();
//! let a = m.alloc_zeroed::<N>().unwrap();
//! let r = m.view(|v| v.get(a).unwrap());
//! ```
//!
//! ... or through a variable outside:
//!
//! ```compile_fail,E0521
//! use movegc::{Gc, Object};
//! #[derive(Object)]
//! struct N { next: Option<Gc<N>>, v: i64 }
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let mut m = heap.attach().unwrap();
//! let a = m.alloc_zeroed::<N>().unwrap();
//! let mut keep = None;
//! m.view(|v| keep = Some(v.get(a).unwrap()));
//! ```
//!
//! Nothing inside a view can allocate (or reach a safepoint), so no `Ref`
//! survives an allocation:
//!
//! ```compile_fail,E0499
//! use movegc::{Gc, Object};
//! #[derive(Object)]
//! struct N { next: Option<Gc<N>>, v: i64 }
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let mut m = heap.attach().unwrap();
//! let a = m.alloc_zeroed::<N>().unwrap();
//! m.view(|v| {
//!     let r = v.get(a).unwrap();
//!     let _b = m.alloc_zeroed::<N>();
//!     r.read(N::V)
//! });
//! ```
//!
//! A `Ref` of one view cannot be stored through another (another heap's
//! mutator on the same thread): each view's lifetime is its own.
//!
//! ```compile_fail
//! use movegc::{Gc, Object};
//! #[derive(Object)]
//! struct N { next: Option<Gc<N>>, v: i64 }
//! let h1 = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let h2 = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let (mut m1, mut m2) = (h1.attach().unwrap(), h2.attach().unwrap());
//! let (a, b) = (m1.alloc_zeroed::<N>().unwrap(), m2.alloc_zeroed::<N>().unwrap());
//! m1.view(|v1| {
//!     let ra = v1.get(a).unwrap();
//!     m2.view(|v2| {
//!         let rb = v2.get(b).unwrap();
//!         v2.set(rb, N::NEXT, Some(ra));
//!     })
//! });
//! ```
//!
//! A `Ref` is not `Send` (only the viewing thread is a mutator):
//!
//! ```compile_fail,E0277
//! use movegc::{Gc, Object};
//! #[derive(Object)]
//! struct N { next: Option<Gc<N>>, v: i64 }
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let mut m = heap.attach().unwrap();
//! let a = m.alloc_zeroed::<N>().unwrap();
//! m.view(|v| {
//!     let r = v.get(a).unwrap();
//!     std::thread::scope(|s| { s.spawn(move || r.read(N::V)); });
//! });
//! ```
//!
//! A type with a non-null reference field cannot be allocated zeroed (its
//! field would be null):
//!
//! ```compile_fail,E0277
//! use movegc::{Gc, Object};
//! #[derive(Object)]
//! struct N { next: Option<Gc<N>>, v: i64 }
//! #[derive(Object)]
//! struct P { head: Gc<N> }
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let mut m = heap.attach().unwrap();
//! let _ = m.alloc_zeroed::<P>();
//! ```
//!
//! A field key belongs to its type: `N`'s key does not read a `P`...
//!
//! ```compile_fail,E0308
//! use movegc::{Gc, Object};
//! #[derive(Object)]
//! struct N { next: Option<Gc<N>>, v: i64 }
//! #[derive(Object)]
//! struct P { head: Gc<N>, w: i64 }
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let mut m = heap.attach().unwrap();
//! let a = m.alloc_zeroed::<N>().unwrap();
//! let p = m.alloc_init(P { head: a, w: 1 }).unwrap();
//! let _ = m.read(p, N::V);
//! ```
//!
//! ... and a field stores only its declared type:
//!
//! ```compile_fail,E0308
//! use movegc::{Gc, Object};
//! #[derive(Object)]
//! struct N { next: Option<Gc<N>>, v: i64 }
//! #[derive(Object)]
//! struct P { head: Gc<N>, w: i64 }
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let mut m = heap.attach().unwrap();
//! let a = m.alloc_zeroed::<N>().unwrap();
//! let p = m.alloc_init(P { head: a, w: 1 }).unwrap();
//! m.set(a, N::NEXT, Some(p)).unwrap();
//! ```
//!
//! Generic structs are refused by the derive (each heap type needs a tag
//! of its own):
//!
//! ```compile_fail
//! use movegc::{Gc, Object};
//! #[derive(Object)]
//! struct G<T: 'static> { x: Option<Gc<G<T>>> }
//! ```
//!
//! The hidden conversions between handles, `Ref`s and raw references
//! cannot be called from outside: they need a token only this crate makes.
//!
//! ```compile_fail,E0603
//! use movegc::{Gc, Object, RefValue};
//! #[derive(Object)]
//! struct N { next: Option<Gc<N>>, v: i64 }
//! let _ = <Gc<N> as RefValue>::from_local(None, movegc::typed::TOKEN);
//! ```
//!
//! A field whose written type says `Option` must really be one: a shadowed
//! `Option` cannot make a type with a non-null reference zeroable.
//!
//! ```compile_fail,E0277
//! use movegc::{Gc, Object};
//! type Option<T> = T;
//! #[derive(Object)]
//! struct S { next: Option<Gc<S>> }
//! ```
//!
//! A zero-length array is not plain data (a field of no bytes):
//!
//! ```compile_fail,E0080
//! use movegc::Object;
//! #[derive(Object)]
//! struct Z { bytes: [u8; 0] }
//! let heap = movegc::Heap::builder().capacity(16 << 20).build().unwrap();
//! let mut m = heap.attach().unwrap();
//! let _ = m.alloc_zeroed::<Z>();
//! ```
//!
//! A data field key is checked against the type's data size:
//!
//! ```compile_fail,E0080
//! use movegc::{DataField, Object};
//! #[derive(Object)]
//! struct D { x: u64 }
//! const OUTSIDE: DataField<D, u64> = DataField::new(1);
//! let _ = OUTSIDE;
//! ```
