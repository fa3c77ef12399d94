//! movegc: an embeddable managed heap whose collector compacts concurrently
//! using Linux userfaultfd. See `docs/design.md` and `docs/embedding.md`.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub use movegc_gc as gc;
