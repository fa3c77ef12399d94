//! binary-trees on the movegc heap.
fn main() {}
