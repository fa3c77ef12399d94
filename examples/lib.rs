//! Shared helpers for the example programs in this directory.
#![warn(missing_docs)]
