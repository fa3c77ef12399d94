//! Placeholder replaced by the uffd micro-benchmarks.
fn main() {}
