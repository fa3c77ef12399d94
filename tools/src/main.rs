//! The `movegc` command line.
fn main() {}
