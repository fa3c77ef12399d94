//! movegc-bench: workloads shared by the `movegc bench` command and the
//! criterion benches.
#![warn(missing_docs)]

pub mod binary_trees;
pub mod child;
pub mod compact;
