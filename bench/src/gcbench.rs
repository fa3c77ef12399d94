//! GCBench (John Ellis and Pete Kovac, modified by Hans Boehm) on movegc:
//! how fast the heap allocates, collects and compacts binary trees built
//! top-down and bottom-up next to a long-lived tree and a long-lived array.
//! It measures the wall time of the whole benchmark, every collection, and
//! the time of each tree construction.
//!
//! **The benchmark**, with the classic constants as [`Params::default`]
//! (`kStretchTreeDepth` 18, `kLongLivedTreeDepth` 16, `kArraySize` 500 000,
//! `kMinTreeDepth` 4, `kMaxTreeDepth` 16): a tree of depth `stretch_depth`
//! is built bottom-up and dropped (stretching the heap); a long-lived tree
//! of depth `long_lived_depth` is built top-down (`Populate`) and kept; a
//! long-lived array of `array_size` doubles is allocated and its first
//! half set to `a[i] = 1/i` (so `a[0]` is infinite); then for every depth
//! `d = min_depth, min_depth + 2, ..= max_depth`, [`num_iters`]`(d)` trees
//! of depth `d` are built top-down and dropped, then as many bottom-up. A
//! tree of depth `d` has [`tree_size`]`(d) = 2^(d+1) - 1` nodes.
//!
//! **On movegc** a node is a record with two references and 8 data bytes
//! (GCBench's two `int`s `i` and `j`, never set: zero), 32 bytes with its
//! header; the array is a byte array of `8 × array_size` bytes holding
//! little-endian `f64`s (a large object: it is never moved). Top-down
//! construction links each node into its parent as soon as it is allocated;
//! bottom-up construction returns each subtree's root to its parent with
//! one handle scope per [`SCOPE_LEVELS`] levels. [`run`] builds a heap with
//! the builder's growth factor, `min_free` = `min_free_mib` and the given
//! strategy, so collections start by the heap's policy while trees are
//! built (concurrent cycles compact while construction goes on).
//!
//! **Verification.** Every tree built is counted right after its
//! construction (the count must be `tree_size(d)`); at the end the
//! long-lived tree must still have `tree_size(long_lived_depth)` nodes, all
//! with zero data, and every element of the array must be what was stored
//! (`a[1000] == 1.0 / 1000.0` being GCBench's own check). `wall` is the
//! whole benchmark, counting included, until the last concurrent cycle has
//! ended; [`WorkloadOutput::op_latency_us`] holds the construction time of
//! each tree (stretch, long-lived and iterated ones; counting excluded).

use std::time::Instant;

use movegc::FaultMode;
use movegc::{Heap, Layout, Local, Mutator, Strategy};

use crate::fragmenter::{finish, latency_histogram, record_us, Fail, Res};
use crate::record::WorkloadOutput;
use crate::spec::Spec;

/// Embedder tag of tree nodes.
pub const NODE_TAG: u16 = 0x6CB0;
/// Embedder tag of the long-lived array.
pub const ARRAY_TAG: u16 = 0x6CB1;
/// Size of a node in bytes (header, two references, `i` and `j`).
pub const NODE_BYTES: usize = 32;
/// Tree levels per handle scope when building bottom-up and counting.
pub const SCOPE_LEVELS: u32 = 4;
/// The largest tree depth accepted.
pub const MAX_DEPTH: u32 = 26;

/// What to run. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// `kStretchTreeDepth`.
    pub stretch_depth: u32,
    /// `kLongLivedTreeDepth`.
    pub long_lived_depth: u32,
    /// `kArraySize`: elements (`f64`) of the long-lived array.
    pub array_size: usize,
    /// `kMinTreeDepth`.
    pub min_depth: u32,
    /// `kMaxTreeDepth`.
    pub max_depth: u32,
    /// Minimum MiB allocated between collections (the heap's `min_free`;
    /// growth factor 2).
    pub min_free_mib: usize,
}

impl Default for Params {
    /// GCBench's classic constants; a collection every 32 MiB (about 490 MiB
    /// of nodes are allocated: about 15 collections).
    fn default() -> Self {
        Params {
            stretch_depth: 18,
            long_lived_depth: 16,
            array_size: 500_000,
            min_depth: 4,
            max_depth: 16,
            min_free_mib: 32,
        }
    }
}

impl Params {
    /// The smoke size: depths 14 / 12 / 4..=12, 50 000 doubles, a
    /// collection every 4 MiB (about 22 MiB of nodes: about 5).
    pub fn quick() -> Params {
        Params {
            stretch_depth: 14,
            long_lived_depth: 12,
            array_size: 50_000,
            min_depth: 4,
            max_depth: 12,
            min_free_mib: 4,
        }
    }

    /// Nodes allocated by the whole run.
    pub fn total_nodes(&self) -> u64 {
        let iterated: u64 = (self.min_depth..=self.max_depth)
            .step_by(2)
            .map(|d| 2 * num_iters(self.stretch_depth, d) * tree_size(d))
            .sum();
        tree_size(self.stretch_depth) + tree_size(self.long_lived_depth) + iterated
    }

    /// Heap capacity: twice the largest tree, the long-lived data and four
    /// times `min_free`, plus 64 MiB.
    pub fn capacity(&self) -> usize {
        let biggest = tree_size(self.stretch_depth.max(self.max_depth)) as usize * NODE_BYTES;
        let long_lived =
            tree_size(self.long_lived_depth) as usize * NODE_BYTES + self.array_size * 8;
        let bytes = 2 * biggest + long_lived + ((4 * self.min_free_mib) << 20) + (64 << 20);
        bytes.next_multiple_of(2 << 20)
    }

    /// The parameters as a [`Spec`] (every key, in a fixed order).
    pub fn spec(&self) -> Spec {
        Spec::new()
            .with("stretch", self.stretch_depth)
            .with("long_lived", self.long_lived_depth)
            .with("array", self.array_size)
            .with("min_depth", self.min_depth)
            .with("max_depth", self.max_depth)
            .with("min_free_mib", self.min_free_mib)
    }

    /// The keys of a [`Spec`] read over `d`'s values (`from_spec`, made
    /// by `spec_io!`, checks the key names and validates).
    fn read_spec(s: &Spec, d: &Params) -> Result<Params, String> {
        Ok(Params {
            stretch_depth: s.value_or("stretch", d.stretch_depth)?,
            long_lived_depth: s.value_or("long_lived", d.long_lived_depth)?,
            array_size: s.value_or("array", d.array_size)?,
            min_depth: s.value_or("min_depth", d.min_depth)?,
            max_depth: s.value_or("max_depth", d.max_depth)?,
            min_free_mib: s.value_or("min_free_mib", d.min_free_mib)?,
        })
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), String> {
        for (name, d) in [
            ("stretch depth", self.stretch_depth),
            ("long-lived depth", self.long_lived_depth),
            ("max depth", self.max_depth),
        ] {
            if d > MAX_DEPTH {
                return Err(format!("{name} {d} is above {MAX_DEPTH}"));
            }
        }
        if self.min_depth > self.max_depth {
            return Err(format!(
                "min depth {} is above max depth {}",
                self.min_depth, self.max_depth
            ));
        }
        if self.max_depth > self.stretch_depth {
            return Err(format!(
                "max depth {} is above the stretch depth {} (no iterations)",
                self.max_depth, self.stretch_depth
            ));
        }
        if self.array_size / 2 <= 1000 {
            return Err(format!(
                "array size {} must be at least 2002 (element 1000, in the first half, is checked)",
                self.array_size
            ));
        }
        if !(1..=4096).contains(&self.min_free_mib) {
            return Err(format!(
                "min_free_mib {} must be in 1..=4096",
                self.min_free_mib
            ));
        }
        Ok(())
    }
}

/// `TreeSize(d)`: nodes of a perfect binary tree of depth `d`.
pub fn tree_size(d: u32) -> u64 {
    (1u64 << (d + 1)) - 1
}

/// `NumIters(d)`: trees of depth `d` built per direction, so that each
/// depth allocates about twice the stretch tree's nodes.
pub fn num_iters(stretch_depth: u32, d: u32) -> u64 {
    2 * tree_size(stretch_depth) / tree_size(d)
}

/// Element `i` of the long-lived array as GCBench leaves it: `1.0 / i` in
/// the first half (infinity at 0), zero in the second.
pub fn array_value(size: usize, i: usize) -> f64 {
    if i < size / 2 {
        1.0 / i as f64
    } else {
        0.0
    }
}

/// Runs GCBench (see the module docs) on a new heap with `strategy` and
/// `fault_mode` and verifies it. `Err` describes a failed check or a heap
/// error.
pub fn run(
    p: &Params,
    strategy: Strategy,
    fault_mode: FaultMode,
) -> Result<WorkloadOutput, String> {
    run_inner(p, strategy, fault_mode, false)
}

/// Like [`run`], but cuts a subtree off the long-lived tree just before the
/// final verification, which must then fail: a test of the verifier.
pub fn run_corrupted(
    p: &Params,
    strategy: Strategy,
    fault_mode: FaultMode,
) -> Result<WorkloadOutput, String> {
    run_inner(p, strategy, fault_mode, true)
}

fn run_inner(
    p: &Params,
    strategy: Strategy,
    fault_mode: FaultMode,
    corrupt: bool,
) -> Result<WorkloadOutput, String> {
    p.validate()?;
    let heap = Heap::builder()
        .capacity(p.capacity())
        .min_free(p.min_free_mib << 20)
        .strategy(strategy)
        .fault_mode(fault_mode)
        .verify(false)
        .build()
        .map_err(|e| format!("creating the heap: {e}"))?;
    run_on_heap(p, &heap, corrupt)
}

/// Runs GCBench (see the module docs) on an existing `heap`, configured by
/// the caller (`p.min_free_mib` is not applied: e.g. the builder's
/// defaults), and verifies it. The calling thread must not already have a
/// mutator for `heap`.
pub fn run_on(p: &Params, heap: &Heap) -> Result<WorkloadOutput, String> {
    p.validate()?;
    run_on_heap(p, heap, false)
}

fn run_on_heap(p: &Params, heap: &Heap, corrupt: bool) -> Result<WorkloadOutput, String> {
    let mut m = heap.attach().map_err(|e| e.to_string())?;
    let node = Layout::record(NODE_TAG, 2, 8).map_err(|e| e.to_string())?;
    debug_assert_eq!(node.size(), NODE_BYTES);
    let r = m.scope(|m| -> Res<WorkloadOutput> {
        let t = Trees { node: &node };
        let mut hist = latency_histogram();
        let start = Instant::now();
        // Stretch the heap.
        m.scope(|m| -> Res<()> {
            let c = Instant::now();
            let tree = t.bottom_up(m, p.stretch_depth)?;
            record_us(&mut hist, c.elapsed());
            t.expect_count(m, tree, p.stretch_depth, "stretch tree")
        })?;
        // The long-lived tree and array.
        let c = Instant::now();
        let long_lived = t.top_down(m, p.long_lived_depth)?;
        record_us(&mut hist, c.elapsed());
        t.expect_count(m, long_lived, p.long_lived_depth, "long-lived tree")?;
        let array = m.alloc(&Layout::byte_array(ARRAY_TAG, p.array_size * 8)?)?;
        m.with_bytes_mut(array, |d| {
            for (i, w) in d.chunks_exact_mut(8).take(p.array_size / 2).enumerate() {
                w.copy_from_slice(&array_value(p.array_size, i).to_le_bytes());
            }
        })?;
        let mut per_depth = Vec::new();
        for d in (p.min_depth..=p.max_depth).step_by(2) {
            let iters = num_iters(p.stretch_depth, d);
            for top_down in [true, false] {
                for _ in 0..iters {
                    m.scope(|m| -> Res<()> {
                        let c = Instant::now();
                        let tree = if top_down {
                            t.top_down(m, d)?
                        } else {
                            t.bottom_up(m, d)?
                        };
                        record_us(&mut hist, c.elapsed());
                        let what = if top_down { "top-down" } else { "bottom-up" };
                        t.expect_count(m, tree, d, &format!("{what} tree of depth {d}"))
                    })?;
                }
            }
            per_depth.push(format!("{}x{d}", 2 * iters));
        }
        if corrupt {
            m.scope(|m| -> Res<()> {
                let left = m
                    .get_ref(long_lived, 0)?
                    .ok_or_else(|| Fail::Check("the long-lived tree has no left subtree".into()))?;
                m.set_ref(left, 1, None)?;
                Ok(())
            })?;
        }
        // GCBench's final check, and then some.
        let (nodes, nonzero) = m.scope(|m| t.count(m, long_lived, SCOPE_LEVELS))?;
        if nodes != tree_size(p.long_lived_depth) || nonzero != 0 {
            return Err(Fail::Check(format!(
                "the long-lived tree has {nodes} nodes ({nonzero} with data), expected {}",
                tree_size(p.long_lived_depth)
            )));
        }
        let bad = m.with_bytes(array, |d| {
            d.chunks_exact(8)
                .enumerate()
                .find(|&(i, w)| {
                    let v = f64::from_le_bytes(w.try_into().expect("8 bytes"));
                    v.to_bits() != array_value(p.array_size, i).to_bits()
                })
                .map(|(i, _)| i)
        })?;
        let a1000 = m.with_bytes(array, |d| {
            f64::from_le_bytes(d[8000..8008].try_into().expect("8 bytes"))
        })?;
        if let Some(i) = bad {
            return Err(Fail::Check(format!(
                "long-lived array element {i} is wrong"
            )));
        }
        if a1000 != 1.0 / 1000.0 {
            return Err(Fail::Check(format!("array[1000] is {a1000}, not 1/1000")));
        }
        let stats = finish(m)?;
        let cycles = stats.recent.clone();
        let wall = start.elapsed();
        Ok(WorkloadOutput {
            wall,
            cycles,
            op_latency_us: Some(hist),
            check: format!(
                "{} nodes; trees {} checked; long-lived tree {nodes} nodes; array[1000] = {a1000}",
                p.total_nodes(),
                per_depth.join(",")
            ),
            heap: Some(stats),
        })
    });
    Ok(r?)
}

/// GCBench on `Box` (the global allocator: jemalloc in the
/// `binary_trees` bench), the same program as [`run`]: the same trees,
/// built in the same order and directions, counted the same way, and the
/// same array. Returns the wall time of the whole run and the same check
/// line as the movegc run's; `Err` describes a failed check.
pub fn run_boxed(p: &Params) -> Result<(std::time::Duration, String), String> {
    p.validate()?;
    let start = Instant::now();
    let stretch = BoxNode::bottom_up(p.stretch_depth);
    BoxNode::expect_count(&stretch, p.stretch_depth, "stretch tree")?;
    drop(stretch);
    let long_lived = BoxNode::top_down(p.long_lived_depth);
    BoxNode::expect_count(&long_lived, p.long_lived_depth, "long-lived tree")?;
    let mut array = vec![0f64; p.array_size];
    for (i, v) in array.iter_mut().take(p.array_size / 2).enumerate() {
        *v = array_value(p.array_size, i);
    }
    let mut per_depth = Vec::new();
    for d in (p.min_depth..=p.max_depth).step_by(2) {
        let iters = num_iters(p.stretch_depth, d);
        for top_down in [true, false] {
            for _ in 0..iters {
                let tree = if top_down {
                    BoxNode::top_down(d)
                } else {
                    BoxNode::bottom_up(d)
                };
                let what = if top_down { "top-down" } else { "bottom-up" };
                BoxNode::expect_count(&tree, d, &format!("{what} tree of depth {d}"))?;
            }
        }
        per_depth.push(format!("{}x{d}", 2 * iters));
    }
    let (nodes, nonzero) = long_lived.count();
    if nodes != tree_size(p.long_lived_depth) || nonzero != 0 {
        return Err(format!("the long-lived tree has {nodes} nodes"));
    }
    if let Some(i) =
        (0..p.array_size).find(|&i| array[i].to_bits() != array_value(p.array_size, i).to_bits())
    {
        return Err(format!("long-lived array element {i} is wrong"));
    }
    let a1000 = array[1000];
    Ok((
        start.elapsed(),
        format!(
            "{} nodes; trees {} checked; long-lived tree {nodes} nodes; array[1000] = {a1000}",
            p.total_nodes(),
            per_depth.join(",")
        ),
    ))
}

/// GCBench's `Node` on `Box`: two children and the two `int`s.
#[derive(Default)]
struct BoxNode {
    left: Option<Box<BoxNode>>,
    right: Option<Box<BoxNode>>,
    i: i32,
    j: i32,
}

impl BoxNode {
    /// `new Node(); Populate(depth, node)`.
    fn top_down(depth: u32) -> Box<BoxNode> {
        let mut root = Box::<BoxNode>::default();
        root.populate(depth);
        root
    }

    fn populate(&mut self, depth: u32) {
        if depth == 0 {
            return;
        }
        // Each child is linked into its parent before its own children are
        // built, as on movegc.
        self.left = Some(Box::default());
        self.right = Some(Box::default());
        for c in [&mut self.left, &mut self.right].into_iter().flatten() {
            c.populate(depth - 1);
        }
    }

    /// `MakeTree(depth)`.
    fn bottom_up(depth: u32) -> Box<BoxNode> {
        if depth == 0 {
            return Box::default();
        }
        let left = Self::bottom_up(depth - 1);
        let right = Self::bottom_up(depth - 1);
        Box::new(BoxNode {
            left: Some(left),
            right: Some(right),
            ..Default::default()
        })
    }

    /// Nodes and how many of them have non-zero data.
    fn count(&self) -> (u64, u64) {
        let mut n = (1, u64::from(self.i != 0 || self.j != 0));
        for c in [&self.left, &self.right].into_iter().flatten() {
            let (a, b) = c.count();
            n.0 += a;
            n.1 += b;
        }
        n
    }

    fn expect_count(tree: &BoxNode, d: u32, what: &str) -> Result<(), String> {
        let (n, nonzero) = tree.count();
        if n != tree_size(d) || nonzero != 0 {
            return Err(format!(
                "{what} has {n} nodes ({nonzero} with data), expected {}",
                tree_size(d)
            ));
        }
        Ok(())
    }
}

/// Tree construction and counting.
struct Trees<'a> {
    node: &'a Layout,
}

impl Trees<'_> {
    /// `new Node(); Populate(depth, node)`: a tree built top-down, as a
    /// handle in the current scope.
    fn top_down(&self, m: &mut Mutator, depth: u32) -> Res<Local> {
        let root = m.alloc(self.node)?;
        m.scope(|m| self.populate(m, root, depth, SCOPE_LEVELS))?;
        Ok(root)
    }

    /// Allocates the `depth` levels below `node`, each node linked into its
    /// parent at once; a new scope every [`SCOPE_LEVELS`] levels.
    fn populate(&self, m: &mut Mutator, node: Local, depth: u32, budget: u32) -> Res<()> {
        if depth == 0 {
            return Ok(());
        }
        if budget == 0 {
            return m.scope(|m| self.populate(m, node, depth, SCOPE_LEVELS));
        }
        for i in 0..2 {
            let child = m.alloc(self.node)?;
            m.set_ref(node, i, Some(child))?;
            self.populate(m, child, depth - 1, budget - 1)?;
        }
        Ok(())
    }

    /// `MakeTree(depth)`: a tree built bottom-up, as a handle in the current
    /// scope.
    fn bottom_up(&self, m: &mut Mutator, depth: u32) -> Res<Local> {
        Ok(m.scope_escape(|m| self.make_tree(m, depth, SCOPE_LEVELS))?)
    }

    fn make_tree(&self, m: &mut Mutator, depth: u32, budget: u32) -> movegc::Result<Local> {
        if budget == 0 {
            return m.scope_escape(|m| self.make_tree(m, depth, SCOPE_LEVELS));
        }
        if depth == 0 {
            return m.alloc(self.node);
        }
        let left = self.make_tree(m, depth - 1, budget - 1)?;
        let right = self.make_tree(m, depth - 1, budget - 1)?;
        let node = m.alloc(self.node)?;
        m.set_ref(node, 0, Some(left))?;
        m.set_ref(node, 1, Some(right))?;
        Ok(node)
    }

    /// Nodes of the tree `node` and how many of them have non-zero data.
    fn count(&self, m: &mut Mutator, node: Local, budget: u32) -> Res<(u64, u64)> {
        if budget == 0 {
            return m.scope(|m| self.count(m, node, SCOPE_LEVELS));
        }
        let mut n = (1, u64::from(m.read_u64(node, 0)? != 0));
        for i in 0..2 {
            if let Some(c) = m.get_ref(node, i)? {
                let (a, b) = self.count(m, c, budget - 1)?;
                n.0 += a;
                n.1 += b;
            }
        }
        Ok(n)
    }

    /// Checks that `tree` is a perfect tree of depth `d` with zero data.
    fn expect_count(&self, m: &mut Mutator, tree: Local, d: u32, what: &str) -> Res<()> {
        let (n, nonzero) = m.scope(|m| self.count(m, tree, SCOPE_LEVELS))?;
        if n != tree_size(d) || nonzero != 0 {
            return Err(Fail::Check(format!(
                "{what} has {n} nodes ({nonzero} with data), expected {}",
                tree_size(d)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_and_movegc_runs_check_the_same_things() {
        let p = Params {
            stretch_depth: 10,
            long_lived_depth: 8,
            array_size: 4000,
            min_depth: 4,
            max_depth: 8,
            min_free_mib: 1,
        };
        let (_, boxed) = run_boxed(&p).unwrap();
        let heap = Heap::builder()
            .capacity(p.capacity())
            .strategy(Strategy::StopTheWorld)
            .build()
            .unwrap();
        let on_heap = run_on(&p, &heap).unwrap();
        assert_eq!(boxed, on_heap.check);
        assert!(
            boxed.starts_with(&format!("{} nodes; trees ", p.total_nodes())),
            "{boxed}"
        );
        assert!(
            boxed.ends_with("long-lived tree 511 nodes; array[1000] = 0.001"),
            "{boxed}"
        );
    }

    #[test]
    fn classic_counts() {
        assert_eq!(tree_size(4), 31);
        assert_eq!(num_iters(18, 4), 2 * 524_287 / 31);
        assert_eq!(num_iters(18, 16), 8);
        assert!(array_value(10, 0).is_infinite());
        assert_eq!(array_value(2000, 1000), 0.0);
        assert_eq!(array_value(500_000, 1000), 1.0 / 1000.0);
    }
}

crate::spec::spec_io!(Params);
