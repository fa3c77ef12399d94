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
use movegc::{DataArray, Gc, Heap, HeapStats, Layout, Local, Mutator, Object, Ref, Strategy};
use movegc_gc::{MutatorContext, ObjRef};

use crate::fragmenter::{all_cycles_kept, finish, latency_histogram, record_us, Fail, Res};
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
    /// KiB of garbage allocated before the run (default 0): shifts every
    /// collection's phase against the trees (the suite's phases, see
    /// `Options::phases`).
    pub skew_kib: usize,
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
            skew_kib: 0,
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
            skew_kib: 0,
        }
    }

    /// A run of milliseconds for tests: depths 10 / 8 / 4..=8, 4 000
    /// doubles, a collection every MiB.
    pub fn tiny() -> Params {
        Params {
            stretch_depth: 10,
            long_lived_depth: 8,
            array_size: 4000,
            min_depth: 4,
            max_depth: 8,
            min_free_mib: 1,
            skew_kib: 0,
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

    /// The parameters as a [`Spec`] (every key, in a fixed order; the
    /// skew only when there is one, so unskewed runs keep the spec they
    /// had before it existed).
    pub fn spec(&self) -> Spec {
        Spec::new()
            .with("stretch", self.stretch_depth)
            .with("long_lived", self.long_lived_depth)
            .with("array", self.array_size)
            .with("min_depth", self.min_depth)
            .with("max_depth", self.max_depth)
            .with("min_free_mib", self.min_free_mib)
            .with_nonzero("skew_kib", self.skew_kib)
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
            skew_kib: s.value_or("skew_kib", d.skew_kib)?,
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
    run_api(p, Api::Untyped, strategy, fault_mode, corrupt)
}

/// Runs GCBench against `api` (see [`run`]); the engine's heap has the
/// same configuration as the others'.
pub fn run_api(
    p: &Params,
    api: Api,
    strategy: Strategy,
    fault_mode: FaultMode,
    corrupt: bool,
) -> Result<WorkloadOutput, String> {
    p.validate()?;
    let setup = crate::HeapSetup {
        capacity: Some(p.capacity()),
        min_free: Some(p.min_free_mib << 20),
        skew: p.skew_kib << 10,
        ..crate::HeapSetup::new(strategy, fault_mode)
    };
    if api == Api::Engine {
        return engine_on_heap(p, &setup.engine_heap()?, corrupt);
    }
    let heap = setup.heap()?;
    run_on_heap(p, &heap, api, corrupt)
}

/// Runs GCBench (see the module docs) on an existing `heap`, configured by
/// the caller (`p.min_free_mib` is not applied: e.g. the builder's
/// defaults), and verifies it. The calling thread must not already have a
/// mutator for `heap`.
pub fn run_on(p: &Params, heap: &Heap) -> Result<WorkloadOutput, String> {
    run_on_with(p, heap, Api::Untyped)
}

/// [`run_on`] against the typed or the untyped API.
pub fn run_on_with(p: &Params, heap: &Heap, api: Api) -> Result<WorkloadOutput, String> {
    p.validate()?;
    if api == Api::Engine {
        return Err("the engine version runs on an engine heap (run_on_engine)".into());
    }
    run_on_heap(p, heap, api, false)
}

/// [`run_on`] against the collector engine directly, on its `heap`.
pub fn run_on_engine(p: &Params, heap: &movegc_gc::GcHeap) -> Result<WorkloadOutput, String> {
    p.validate()?;
    engine_on_heap(p, heap, false)
}

fn engine_on_heap(
    p: &Params,
    heap: &movegc_gc::GcHeap,
    corrupt: bool,
) -> Result<WorkloadOutput, String> {
    let mut ctx = heap
        .attach()
        .map_err(|_| "this thread already has a mutator".to_string())?;
    Ok(drive(p, &Engine::new(heap), &mut ctx, corrupt)?)
}

fn run_on_heap(p: &Params, heap: &Heap, api: Api, corrupt: bool) -> Result<WorkloadOutput, String> {
    let mut m = heap.attach().map_err(|e| e.to_string())?;
    let r = m.scope(|m| match api {
        Api::Typed => drive(p, &Typed, m, corrupt),
        _ => drive(p, &Untyped::new()?, m, corrupt),
    });
    Ok(r?)
}

/// Which API GCBench is written against (the suite's `api` key).
pub use crate::binary_trees::Api;

/// GCBench's operations against one API; [`drive`] is the benchmark.
/// Trees and arrays are handles (root slots) of the current scope.
trait Bench {
    /// The mutator: [`Mutator`] or the engine's context.
    type M;
    /// A tree's root.
    type Tree: Copy;
    /// The long-lived array.
    type Array: Copy;
    /// Runs `f` in a handle scope: handles made inside are released after.
    fn scope<R>(m: &mut Self::M, f: impl FnOnce(&mut Self::M) -> Res<R>) -> Res<R>;
    /// `new Node(); Populate(depth, node)`, linking each node into its
    /// parent at once; a new scope every [`SCOPE_LEVELS`] levels.
    fn top_down(&self, m: &mut Self::M, depth: u32) -> Res<Self::Tree>;
    /// `MakeTree(depth)`, a scope every [`SCOPE_LEVELS`] levels.
    fn bottom_up(&self, m: &mut Self::M, depth: u32) -> Res<Self::Tree>;
    /// Nodes of the tree and how many of them have non-zero data.
    fn count(&self, m: &mut Self::M, t: Self::Tree) -> Res<(u64, u64)>;
    /// The long-lived array, its first half set as GCBench does.
    fn array(&self, m: &mut Self::M, size: usize) -> Res<Self::Array>;
    /// The first element that is not [`array_value`], and element 1000.
    fn check_array(
        &self,
        m: &mut Self::M,
        a: Self::Array,
        size: usize,
    ) -> Res<(Option<usize>, f64)>;
    /// Cuts the right subtree of the root's left child off `t`.
    fn cut(&self, m: &mut Self::M, t: Self::Tree) -> Res<()>;
    /// Waits for the last cycle; the heap's statistics.
    fn finish(&self, m: &mut Self::M) -> Res<HeapStats>;
}

/// GCBench itself, against any [`Bench`]; verified as the module docs say.
fn drive<A: Bench>(p: &Params, a: &A, m: &mut A::M, corrupt: bool) -> Res<WorkloadOutput> {
    let expect_count = |m: &mut A::M, tree: A::Tree, d: u32, what: &str| -> Res<()> {
        let (n, nonzero) = A::scope(m, |m| a.count(m, tree))?;
        if n != tree_size(d) || nonzero != 0 {
            return Err(Fail::Check(format!(
                "{what} has {n} nodes ({nonzero} with data), expected {}",
                tree_size(d)
            )));
        }
        Ok(())
    };
    let mut hist = latency_histogram();
    let start = Instant::now();
    // Stretch the heap.
    A::scope(m, |m| {
        let c = Instant::now();
        let tree = a.bottom_up(m, p.stretch_depth)?;
        record_us(&mut hist, c.elapsed());
        expect_count(m, tree, p.stretch_depth, "stretch tree")
    })?;
    // The long-lived tree and array.
    let c = Instant::now();
    let long_lived = a.top_down(m, p.long_lived_depth)?;
    record_us(&mut hist, c.elapsed());
    expect_count(m, long_lived, p.long_lived_depth, "long-lived tree")?;
    let array = a.array(m, p.array_size)?;
    let mut per_depth = Vec::new();
    for d in (p.min_depth..=p.max_depth).step_by(2) {
        let iters = num_iters(p.stretch_depth, d);
        for top_down in [true, false] {
            for _ in 0..iters {
                A::scope(m, |m| {
                    let c = Instant::now();
                    let tree = if top_down {
                        a.top_down(m, d)?
                    } else {
                        a.bottom_up(m, d)?
                    };
                    record_us(&mut hist, c.elapsed());
                    let what = if top_down { "top-down" } else { "bottom-up" };
                    expect_count(m, tree, d, &format!("{what} tree of depth {d}"))
                })?;
            }
        }
        per_depth.push(format!("{}x{d}", 2 * iters));
    }
    if corrupt {
        A::scope(m, |m| a.cut(m, long_lived))?;
    }
    // GCBench's final check, and then some.
    let (nodes, nonzero) = A::scope(m, |m| a.count(m, long_lived))?;
    if nodes != tree_size(p.long_lived_depth) || nonzero != 0 {
        return Err(Fail::Check(format!(
            "the long-lived tree has {nodes} nodes ({nonzero} with data), expected {}",
            tree_size(p.long_lived_depth)
        )));
    }
    let (bad, a1000) = a.check_array(m, array, p.array_size)?;
    if let Some(i) = bad {
        return Err(Fail::Check(format!(
            "long-lived array element {i} is wrong"
        )));
    }
    if a1000 != 1.0 / 1000.0 {
        return Err(Fail::Check(format!("array[1000] is {a1000}, not 1/1000")));
    }
    let stats = a.finish(m)?;
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

/// GCBench against the untyped API (layouts, handles).
struct Untyped {
    node: Layout,
}

impl Untyped {
    fn new() -> Res<Untyped> {
        let node = Layout::record(NODE_TAG, 2, 8)?;
        debug_assert_eq!(node.size(), NODE_BYTES);
        Ok(Untyped { node })
    }

    fn populate(&self, m: &mut Mutator, node: Local, depth: u32, budget: u32) -> Res<()> {
        if depth == 0 {
            return Ok(());
        }
        if budget == 0 {
            return m.scope(|m| self.populate(m, node, depth, SCOPE_LEVELS));
        }
        for i in 0..2 {
            let child = m.alloc(&self.node)?;
            m.set_ref(node, i, Some(child))?;
            self.populate(m, child, depth - 1, budget - 1)?;
        }
        Ok(())
    }

    fn make_tree(&self, m: &mut Mutator, depth: u32, budget: u32) -> movegc::Result<Local> {
        if budget == 0 {
            return m.scope_escape(|m| self.make_tree(m, depth, SCOPE_LEVELS));
        }
        if depth == 0 {
            return m.alloc(&self.node);
        }
        let left = self.make_tree(m, depth - 1, budget - 1)?;
        let right = self.make_tree(m, depth - 1, budget - 1)?;
        let node = m.alloc(&self.node)?;
        m.set_ref(node, 0, Some(left))?;
        m.set_ref(node, 1, Some(right))?;
        Ok(node)
    }

    fn count_in(&self, m: &mut Mutator, node: Local, budget: u32) -> Res<(u64, u64)> {
        if budget == 0 {
            return m.scope(|m| self.count_in(m, node, SCOPE_LEVELS));
        }
        let mut n = (1, u64::from(m.read_u64(node, 0)? != 0));
        for i in 0..2 {
            if let Some(c) = m.get_ref(node, i)? {
                let (a, b) = self.count_in(m, c, budget - 1)?;
                n.0 += a;
                n.1 += b;
            }
        }
        Ok(n)
    }
}

impl Bench for Untyped {
    type M = Mutator;
    type Tree = Local;
    type Array = Local;

    fn scope<R>(m: &mut Mutator, f: impl FnOnce(&mut Mutator) -> Res<R>) -> Res<R> {
        m.scope(f)
    }

    fn top_down(&self, m: &mut Mutator, depth: u32) -> Res<Local> {
        let root = m.alloc(&self.node)?;
        m.scope(|m| self.populate(m, root, depth, SCOPE_LEVELS))?;
        Ok(root)
    }

    fn bottom_up(&self, m: &mut Mutator, depth: u32) -> Res<Local> {
        Ok(m.scope_escape(|m| self.make_tree(m, depth, SCOPE_LEVELS))?)
    }

    fn count(&self, m: &mut Mutator, t: Local) -> Res<(u64, u64)> {
        self.count_in(m, t, SCOPE_LEVELS)
    }

    fn array(&self, m: &mut Mutator, size: usize) -> Res<Local> {
        let array = m.alloc(&Layout::byte_array(ARRAY_TAG, size * 8)?)?;
        m.with_bytes_mut(array, |d| {
            for (i, w) in d.chunks_exact_mut(8).take(size / 2).enumerate() {
                w.copy_from_slice(&array_value(size, i).to_le_bytes());
            }
        })?;
        Ok(array)
    }

    fn check_array(&self, m: &mut Mutator, a: Local, size: usize) -> Res<(Option<usize>, f64)> {
        let bad = m.with_bytes(a, |d| {
            d.chunks_exact(8)
                .enumerate()
                .find(|&(i, w)| {
                    let v = f64::from_le_bytes(w.try_into().expect("8 bytes"));
                    v.to_bits() != array_value(size, i).to_bits()
                })
                .map(|(i, _)| i)
        })?;
        let mut b = [0u8; 8];
        m.read_bytes(a, 8000, &mut b)?;
        Ok((bad, f64::from_le_bytes(b)))
    }

    fn cut(&self, m: &mut Mutator, t: Local) -> Res<()> {
        let left = m
            .get_ref(t, 0)?
            .ok_or_else(|| Fail::Check("the long-lived tree has no left subtree".into()))?;
        m.set_ref(left, 1, None)?;
        Ok(())
    }

    fn finish(&self, m: &mut Mutator) -> Res<HeapStats> {
        finish(m)
    }
}

/// GCBench's node on the typed API: two children and GCBench's two `int`s
/// (never set), 32 bytes with the header like the untyped node.
#[derive(Object)]
struct GcNode {
    left: Option<Gc<GcNode>>,
    right: Option<Gc<GcNode>>,
    i: i32,
    j: i32,
}

/// GCBench against the typed API: derived nodes, counting in one view.
struct Typed;

impl Typed {
    fn populate(m: &mut Mutator, node: Gc<GcNode>, depth: u32, budget: u32) -> Res<()> {
        if depth == 0 {
            return Ok(());
        }
        if budget == 0 {
            return m.scope(|m| Self::populate(m, node, depth, SCOPE_LEVELS));
        }
        for field in [GcNode::LEFT, GcNode::RIGHT] {
            let child = m.alloc_zeroed::<GcNode>()?;
            m.set(node, field, Some(child))?;
            Self::populate(m, child, depth - 1, budget - 1)?;
        }
        Ok(())
    }

    fn make_tree(m: &mut Mutator, depth: u32, budget: u32) -> Res<Gc<GcNode>> {
        if budget == 0 {
            let t = m.scope_escape(|m| {
                Self::make_tree(m, depth, SCOPE_LEVELS)
                    .map(Gc::untyped)
                    .map_err(|e| match e {
                        Fail::Heap(e) => e,
                        Fail::Check(c) => unreachable!("building checks nothing: {c}"),
                    })
            })?;
            return Ok(m.downcast(t)?);
        }
        if depth == 0 {
            return Ok(m.alloc_zeroed::<GcNode>()?);
        }
        let left = Self::make_tree(m, depth - 1, budget - 1)?;
        let right = Self::make_tree(m, depth - 1, budget - 1)?;
        Ok(m.alloc_init(GcNode {
            left: Some(left),
            right: Some(right),
            i: 0,
            j: 0,
        })?)
    }
}

impl Bench for Typed {
    type M = Mutator;
    type Tree = Gc<GcNode>;
    type Array = Gc<DataArray<f64>>;

    fn scope<R>(m: &mut Mutator, f: impl FnOnce(&mut Mutator) -> Res<R>) -> Res<R> {
        m.scope(f)
    }

    fn top_down(&self, m: &mut Mutator, depth: u32) -> Res<Gc<GcNode>> {
        let root = m.alloc_zeroed::<GcNode>()?;
        m.scope(|m| Self::populate(m, root, depth, SCOPE_LEVELS))?;
        Ok(root)
    }

    fn bottom_up(&self, m: &mut Mutator, depth: u32) -> Res<Gc<GcNode>> {
        Self::make_tree(m, depth, SCOPE_LEVELS)
    }

    fn count(&self, m: &mut Mutator, t: Gc<GcNode>) -> Res<(u64, u64)> {
        fn count(r: Ref<'_, GcNode>) -> (u64, u64) {
            let mut n = (
                1,
                u64::from(r.read(GcNode::I) != 0 || r.read(GcNode::J) != 0),
            );
            for c in [r.get(GcNode::LEFT), r.get(GcNode::RIGHT)]
                .into_iter()
                .flatten()
            {
                let (a, b) = count(c);
                n.0 += a;
                n.1 += b;
            }
            n
        }
        Ok(m.view(|v| v.get(t).map(count))?)
    }

    fn array(&self, m: &mut Mutator, size: usize) -> Res<Gc<DataArray<f64>>> {
        let a = m.alloc_data::<f64>(size)?;
        let half: Vec<f64> = (0..size / 2).map(|i| array_value(size, i)).collect();
        m.data_write(a, 0, &half)?;
        Ok(a)
    }

    fn check_array(
        &self,
        m: &mut Mutator,
        a: Gc<DataArray<f64>>,
        size: usize,
    ) -> Res<(Option<usize>, f64)> {
        let mut all = vec![0.0; size];
        m.data_read(a, 0, &mut all)?;
        let bad = (0..size).find(|&i| all[i].to_bits() != array_value(size, i).to_bits());
        Ok((bad, all[1000]))
    }

    fn cut(&self, m: &mut Mutator, t: Gc<GcNode>) -> Res<()> {
        let left = m
            .get(t, GcNode::LEFT)?
            .ok_or_else(|| Fail::Check("the long-lived tree has no left subtree".into()))?;
        m.set(left, GcNode::RIGHT, None)?;
        Ok(())
    }

    fn finish(&self, m: &mut Mutator) -> Res<HeapStats> {
        finish(m)
    }
}

/// GCBench against the collector engine directly: root slots pushed and
/// truncated by hand, raw loads and stores (the yardstick of the two
/// APIs' overhead, like `binary_trees::engine`).
struct Engine<'h> {
    heap: &'h movegc_gc::GcHeap,
    node: Layout,
}

/// A root slot index.
type Slot = usize;

impl<'h> Engine<'h> {
    fn new(heap: &'h movegc_gc::GcHeap) -> Engine<'h> {
        Engine {
            heap,
            node: Layout::record(NODE_TAG, 2, 8).expect("a valid layout"),
        }
    }

    fn alloc(&self, ctx: &mut MutatorContext, layout: &Layout) -> Res<Slot> {
        let o = ctx.alloc(layout).map_err(movegc::Error::from)?;
        // SAFETY: `o` was just allocated (current).
        let roots = unsafe { ctx.roots() };
        roots.push(Some(o));
        Ok(roots.len() - 1)
    }

    fn get(ctx: &MutatorContext, slot: Slot) -> ObjRef {
        ctx.root(slot)
            .expect("the engine version's root slots are set")
    }

    fn populate(&self, ctx: &mut MutatorContext, node: Slot, depth: u32, budget: u32) -> Res<()> {
        if depth == 0 {
            return Ok(());
        }
        if budget == 0 {
            return Self::scope(ctx, |ctx| self.populate(ctx, node, depth, SCOPE_LEVELS));
        }
        for i in 0..2 {
            let child = self.alloc(ctx, &self.node)?;
            let (parent, c) = (Self::get(ctx, node), Self::get(ctx, child));
            // SAFETY: both were read from root slots since the last
            // allocation; a node has two reference slots.
            unsafe { ctx.store_slot(parent, i, Some(c)) };
            self.populate(ctx, child, depth - 1, budget - 1)?;
        }
        Ok(())
    }

    /// Builds a tree; its root is `ObjRef`-current only until the next
    /// allocation, so it is returned in a root slot of the caller's scope.
    fn make_tree(&self, ctx: &mut MutatorContext, depth: u32, budget: u32) -> Res<Slot> {
        if budget == 0 {
            let mark = depth_of(ctx);
            let t = self.make_tree(ctx, depth, SCOPE_LEVELS);
            let o = t.map(|t| Self::get(ctx, t));
            truncate(ctx, mark);
            // SAFETY: `o` was read from a root slot just now.
            let roots = unsafe { ctx.roots() };
            roots.push(Some(o?));
            return Ok(roots.len() - 1);
        }
        if depth == 0 {
            return self.alloc(ctx, &self.node);
        }
        let left = self.make_tree(ctx, depth - 1, budget - 1)?;
        let right = self.make_tree(ctx, depth - 1, budget - 1)?;
        let node = self.alloc(ctx, &self.node)?;
        let (n, l, r) = (
            Self::get(ctx, node),
            Self::get(ctx, left),
            Self::get(ctx, right),
        );
        // SAFETY: all three were read from root slots after the allocation.
        unsafe {
            ctx.store_slot(n, 0, Some(l));
            ctx.store_slot(n, 1, Some(r));
        }
        Ok(node)
    }
}

fn depth_of(ctx: &mut MutatorContext) -> usize {
    // SAFETY: reading the length stores nothing.
    unsafe { ctx.roots() }.len()
}

fn truncate(ctx: &mut MutatorContext, mark: usize) {
    // SAFETY: truncating stores nothing.
    unsafe { ctx.roots() }.truncate(mark)
}

impl Bench for Engine<'_> {
    type M = MutatorContext;
    type Tree = Slot;
    type Array = Slot;

    fn scope<R>(ctx: &mut MutatorContext, f: impl FnOnce(&mut MutatorContext) -> Res<R>) -> Res<R> {
        let mark = depth_of(ctx);
        let r = f(ctx);
        truncate(ctx, mark);
        r
    }

    fn top_down(&self, ctx: &mut MutatorContext, depth: u32) -> Res<Slot> {
        let root = self.alloc(ctx, &self.node)?;
        Self::scope(ctx, |ctx| self.populate(ctx, root, depth, SCOPE_LEVELS))?;
        Ok(root)
    }

    fn bottom_up(&self, ctx: &mut MutatorContext, depth: u32) -> Res<Slot> {
        self.make_tree(ctx, depth, SCOPE_LEVELS)
    }

    fn count(&self, ctx: &mut MutatorContext, t: Slot) -> Res<(u64, u64)> {
        /// # Safety
        /// `o` is current and a node.
        unsafe fn count(o: ObjRef) -> (u64, u64) {
            // SAFETY: nodes have two slots and 8 data bytes (one word at
            // byte 24 from the start); children are current nodes.
            unsafe {
                let mut n = (1, u64::from(o.load_word_at(24) != 0));
                for i in 0..2 {
                    if let Some(c) = o.load_slot(i) {
                        let (a, b) = count(c);
                        n.0 += a;
                        n.1 += b;
                    }
                }
                n
            }
        }
        // SAFETY: read from a root slot; the walk reaches no safepoint.
        Ok(unsafe { count(Self::get(ctx, t)) })
    }

    fn array(&self, ctx: &mut MutatorContext, size: usize) -> Res<Slot> {
        let a = self.alloc(ctx, &Layout::byte_array(ARRAY_TAG, size * 8)?)?;
        let o = Self::get(ctx, a);
        let half: Vec<u8> = (0..size / 2)
            .flat_map(|i| array_value(size, i).to_le_bytes())
            .collect();
        // SAFETY: `o` is current; `write_data` checks the range.
        unsafe { o.write_data(0, &half) }.map_err(movegc::Error::from)?;
        Ok(a)
    }

    fn check_array(
        &self,
        ctx: &mut MutatorContext,
        a: Slot,
        size: usize,
    ) -> Res<(Option<usize>, f64)> {
        let mut d = vec![0u8; size * 8];
        // SAFETY: read from a root slot; `read_data` checks the range.
        unsafe { Self::get(ctx, a).read_data(0, &mut d) }.map_err(movegc::Error::from)?;
        let at = |i: usize| f64::from_le_bytes(d[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let bad = (0..size).find(|&i| at(i).to_bits() != array_value(size, i).to_bits());
        Ok((bad, at(1000)))
    }

    fn cut(&self, ctx: &mut MutatorContext, t: Slot) -> Res<()> {
        let root = Self::get(ctx, t);
        // SAFETY: `root` is current and a node; so is its child.
        unsafe {
            let left = root
                .load_slot(0)
                .ok_or_else(|| Fail::Check("the long-lived tree has no left subtree".into()))?;
            ctx.store_slot(left, 1, None);
        }
        Ok(())
    }

    fn finish(&self, ctx: &mut MutatorContext) -> Res<HeapStats> {
        ctx.wait_idle();
        all_cycles_kept(self.heap.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_and_movegc_runs_check_the_same_things() {
        let p = Params::tiny();
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
    fn every_api_fails_the_cut_tree_check() {
        let p = Params::tiny();
        for api in Api::ALL {
            let e = run_api(&p, api, Strategy::StopTheWorld, FaultMode::Sigbus, true)
                .expect_err("a cut tree");
            assert!(e.contains("the long-lived tree has"), "{api:?}: {e}");
            run_api(&p, api, Strategy::ConcurrentMove, FaultMode::Sigbus, false)
                .unwrap_or_else(|e| panic!("{api:?}: {e}"));
        }
    }

    #[test]
    fn the_skew_is_written_only_when_set_and_read_back() {
        let d = Params::default();
        assert!(!d.to_spec().contains("skew_kib"));
        let p = Params {
            skew_kib: 3072,
            ..Params::default()
        };
        assert!(p.to_spec().ends_with(",min_free_mib=32,skew_kib=3072"));
        assert_eq!(Params::parse_spec(&p.to_spec()), Ok(p));
        assert!(Params::parse_spec("skew_kib=x").is_err());
        assert!(
            Params::parse_spec("skew=1").is_err(),
            "other keys still fail"
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

crate::spec::spec_io!(Params, optional["skew_kib"]);
