//! The Computer Language Benchmarks Game's *binary-trees*, on movegc and on
//! `Box` (the system or global allocator), with the same rules and output.
//!
//! Rules: `min_depth = 4`, `max_depth = max(min_depth + 2, n)`. A *stretch*
//! tree of depth `max_depth + 1` is built, checked and dropped; then a
//! *long-lived* tree of depth `max_depth` is built and kept; then for every
//! depth `d = min_depth, min_depth + 2, ..= max_depth`,
//! `1 << (max_depth - d + min_depth)` trees of depth `d` are built, checked
//! and dropped; finally the long-lived tree is checked. A tree of depth `d`
//! is a perfect binary tree with `2^(d+1) - 1` nodes, and a tree's *check*
//! is its number of nodes. The output, exactly:
//!
//! ```text
//! stretch tree of depth {max_depth+1}\t check: {C}
//! {iterations}\t trees of depth {d}\t check: {C}       (one line per d)
//! long lived tree of depth {max_depth}\t check: {C}
//! ```
//!
//! On movegc a node is a record with two reference fields and no data
//! (24 bytes with its header). The fast scheme ([`Scheme::Batched`]) builds
//! trees top-down: each node is linked into its parent right after it is
//! allocated, so its local handle is only needed while its own children are
//! allocated, and handle scopes are opened only every few levels. Checking
//! walks the tree with [`Mutator::get_ref`] in the same batched scopes. The
//! textbook scheme ([`Scheme::ScopePerNode`]: recursive bottom-up
//! construction with one [`Mutator::scope_escape`] per node) is kept for
//! comparison. [`Scheme::Typed`] builds top-down against the typed API
//! (`#[derive(Object)]` nodes, field keys) with one handle per tree level,
//! reused for every node of that level (`alloc_zeroed_into`, no scope), and
//! checks in one no-safepoint view (no handles at all); [`engine::run`] is
//! the same algorithm against the collector engine directly (one root slot
//! per level, raw loads), the yardstick of the typed API's overhead.

use std::time::{Duration, Instant};

use movegc::FaultMode;
use movegc::{Gc, Heap, Layout, Local, Mutator, Object, Ref, Result, Strategy};

use crate::record::WorkloadOutput;

/// Smallest tree depth of the iterated phase (fixed by the benchmark).
pub const MIN_DEPTH: u32 = 4;

/// Embedder tag of tree nodes on movegc.
pub const NODE_TAG: u16 = 0xB7;

/// Scope batching used by [`run_movegc`]: one handle scope per this many
/// tree levels (at most `2^k` live handles per scope, a few hundred in all).
pub const DEFAULT_SCOPE_LEVELS: u32 = 4;

/// The largest `n` accepted: deeper trees would not fit any realistic heap
/// and would overflow the iteration count's shift.
pub const MAX_N: u32 = 40;

/// What one run printed, and how long it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The benchmark's output lines, without trailing newlines.
    pub lines: Vec<String>,
    /// Wall-clock time of the run (building, checking and dropping trees;
    /// on movegc including collections, excluding heap creation).
    pub elapsed: Duration,
}

/// How [`run_movegc_with`] builds and checks trees on movegc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Bottom-up recursion with one `scope_escape` per node: the direct
    /// translation of the benchmark's `bottom_up_tree`. Checking opens a
    /// scope per node.
    ScopePerNode,
    /// Top-down construction, linking each node into its parent as soon as
    /// it is allocated, with one plain `scope` per `levels` tree levels
    /// (building and checking). `levels` must be at least 1.
    Batched {
        /// Tree levels per handle scope.
        levels: u32,
    },
    /// Top-down through the typed API ([`TypedNode`]) with one handle per
    /// tree level, checking each tree in one [`Mutator::view`].
    Typed,
}

impl Default for Scheme {
    fn default() -> Self {
        Scheme::Batched {
            levels: DEFAULT_SCOPE_LEVELS,
        }
    }
}

/// `max(MIN_DEPTH + 2, n)`: the depth of the long-lived tree.
pub fn max_depth(n: u32) -> u32 {
    (MIN_DEPTH + 2).max(n)
}

/// Nodes of a perfect binary tree of depth `d`: `2^(d+1) - 1`.
pub fn tree_nodes(d: u32) -> u64 {
    (1u64 << (d + 1)) - 1
}

/// The depths of the iterated phase with their iteration counts.
pub fn iteration_plan(n: u32) -> Vec<(u32, u64)> {
    let max = max_depth(n);
    (MIN_DEPTH..=max)
        .step_by(2)
        .map(|d| (d, 1u64 << (max - d + MIN_DEPTH)))
        .collect()
}

/// Total nodes one run allocates (stretch, long-lived and iterated trees).
pub fn total_nodes(n: u32) -> u64 {
    let max = max_depth(n);
    tree_nodes(max + 1)
        + tree_nodes(max)
        + iteration_plan(n)
            .iter()
            .map(|&(d, it)| it * tree_nodes(d))
            .sum::<u64>()
}

fn stretch_line(max: u32, check: u64) -> String {
    format!("stretch tree of depth {}\t check: {}", max + 1, check)
}

fn iteration_line(iterations: u64, d: u32, check: u64) -> String {
    format!("{iterations}\t trees of depth {d}\t check: {check}")
}

fn long_lived_line(max: u32, check: u64) -> String {
    format!("long lived tree of depth {max}\t check: {check}")
}

/// The output lines of a correct run, computed arithmetically.
pub fn expected_checks(n: u32) -> Vec<String> {
    check_n(n);
    let max = max_depth(n);
    let mut lines = vec![stretch_line(max, tree_nodes(max + 1))];
    for (d, it) in iteration_plan(n) {
        lines.push(iteration_line(it, d, it * tree_nodes(d)));
    }
    lines.push(long_lived_line(max, tree_nodes(max)));
    lines
}

fn check_n(n: u32) {
    assert!(
        n <= MAX_N,
        "binary-trees depth {n} is above the supported maximum {MAX_N}"
    );
}

/// The benchmark's driver, generic over the tree representation: `build`
/// makes a tree and `check` counts its nodes; dropping a tree frees it.
fn drive<T, E>(
    n: u32,
    mut build: impl FnMut(u32) -> std::result::Result<T, E>,
    mut check: impl FnMut(&T) -> std::result::Result<u64, E>,
) -> std::result::Result<Output, E> {
    check_n(n);
    let start = Instant::now();
    let max = max_depth(n);
    let mut lines = Vec::new();
    {
        let stretch = build(max + 1)?;
        lines.push(stretch_line(max, check(&stretch)?));
    }
    let long_lived = build(max)?;
    for (d, iterations) in iteration_plan(n) {
        let mut total = 0;
        for _ in 0..iterations {
            let t = build(d)?;
            total += check(&t)?;
        }
        lines.push(iteration_line(iterations, d, total));
    }
    lines.push(long_lived_line(max, check(&long_lived)?));
    drop(long_lived);
    Ok(Output {
        lines,
        elapsed: start.elapsed(),
    })
}

// ---------------------------------------------------------------------------
// Box

/// A tree node of the `Box` implementation.
#[derive(Debug)]
pub struct Node {
    /// Left subtree.
    pub left: Option<Box<Node>>,
    /// Right subtree.
    pub right: Option<Box<Node>>,
}

impl Node {
    /// A perfect tree of depth `depth`, built bottom-up.
    pub fn bottom_up(depth: u32) -> Box<Node> {
        if depth == 0 {
            Box::new(Node {
                left: None,
                right: None,
            })
        } else {
            Box::new(Node {
                left: Some(Node::bottom_up(depth - 1)),
                right: Some(Node::bottom_up(depth - 1)),
            })
        }
    }

    /// Number of nodes.
    pub fn check(&self) -> u64 {
        1 + self.left.as_ref().map_or(0, |l| l.check())
            + self.right.as_ref().map_or(0, |r| r.check())
    }
}

/// Runs binary-trees with `Box`ed nodes (whatever the process's global
/// allocator is). Panics if `n > MAX_N`.
pub fn run_boxed(n: u32) -> Output {
    let r = drive(
        n,
        |d| Ok::<_, std::convert::Infallible>(Node::bottom_up(d)),
        |t| Ok(t.check()),
    );
    match r {
        Ok(o) => o,
        Err(e) => match e {},
    }
}

// ---------------------------------------------------------------------------
// movegc

/// The layout of a tree node on movegc: two references, no data.
pub fn node_layout() -> Layout {
    Layout::record(NODE_TAG, 2, 0).expect("a 2-reference record is a valid layout")
}

/// Runs binary-trees on `heap` with the fastest scheme, the typed API's
/// ([`Scheme::Typed`]). The calling thread must not already have a mutator
/// for `heap`. Panics if `n > MAX_N`.
pub fn run_movegc(heap: &Heap, n: u32) -> Result<Output> {
    let mut m = heap.attach()?;
    run_movegc_with(&mut m, n, Scheme::Typed)
}

/// Runs binary-trees with an existing mutator and a chosen [`Scheme`]. The
/// mutator's handle stack is left as it was found.
pub fn run_movegc_with(m: &mut Mutator, n: u32, scheme: Scheme) -> Result<Output> {
    if scheme == Scheme::Typed {
        return run_typed(m, n);
    }
    let layout = node_layout();
    let trees = Trees {
        layout: &layout,
        scheme,
    };
    m.scope(|m| {
        // Each tree is built into a handle of the caller's scope; a scope
        // around every `build` + `check` pair releases them again.
        let build_and_check = |m: &mut Mutator, d: u32| {
            m.scope(|m| trees.build(m, d).and_then(|t| trees.check(m, t)))
        };
        check_n(n);
        let start = Instant::now();
        let max = max_depth(n);
        let mut lines = vec![stretch_line(max, build_and_check(m, max + 1)?)];
        let long_lived = trees.build(m, max)?;
        for (d, iterations) in iteration_plan(n) {
            let mut total = 0;
            for _ in 0..iterations {
                total += build_and_check(m, d)?;
            }
            lines.push(iteration_line(iterations, d, total));
        }
        lines.push(long_lived_line(max, trees.check(m, long_lived)?));
        Ok(Output {
            lines,
            elapsed: start.elapsed(),
        })
    })
}

struct Trees<'a> {
    layout: &'a Layout,
    scheme: Scheme,
}

impl Trees<'_> {
    /// A tree of depth `depth`, as a handle in the current scope.
    fn build(&self, m: &mut Mutator, depth: u32) -> Result<Local> {
        match self.scheme {
            Scheme::ScopePerNode => self.bottom_up(m, depth),
            Scheme::Typed => unreachable!("run_movegc_with runs the typed scheme on its own"),
            Scheme::Batched { levels } => {
                let levels = levels.max(1);
                let root = m.alloc(self.layout)?;
                m.scope(|m| self.fill(m, root, depth, levels))?;
                Ok(root)
            }
        }
    }

    /// Number of nodes of the tree `root`.
    fn check(&self, m: &mut Mutator, root: Local) -> Result<u64> {
        match self.scheme {
            Scheme::ScopePerNode => self.check_per_node(m, root),
            Scheme::Typed => unreachable!("run_movegc_with runs the typed scheme on its own"),
            Scheme::Batched { levels } => {
                let levels = levels.max(1);
                m.scope(|m| self.check_batched(m, root, levels, levels))
            }
        }
    }

    fn bottom_up(&self, m: &mut Mutator, depth: u32) -> Result<Local> {
        m.scope_escape(|m| {
            if depth == 0 {
                return m.alloc(self.layout);
            }
            let left = self.bottom_up(m, depth - 1)?;
            let right = self.bottom_up(m, depth - 1)?;
            let node = m.alloc(self.layout)?;
            m.set_ref(node, 0, Some(left))?;
            m.set_ref(node, 1, Some(right))?;
            Ok(node)
        })
    }

    fn check_per_node(&self, m: &mut Mutator, node: Local) -> Result<u64> {
        m.safepoint(); // see `check_batched`
        m.scope(|m| {
            let mut n = 1;
            for i in 0..2 {
                if let Some(c) = m.get_ref(node, i)? {
                    n += self.check_per_node(m, c)?;
                }
            }
            Ok(n)
        })
    }

    /// Allocates the `depth` levels below `node` (already allocated and
    /// reachable). `budget` levels remain before a new scope is opened.
    fn fill(&self, m: &mut Mutator, node: Local, depth: u32, budget: u32) -> Result<()> {
        if depth == 0 {
            return Ok(());
        }
        if budget == 0 {
            return m.scope(|m| self.fill(m, node, depth, self.levels()));
        }
        for i in 0..2 {
            // `node` is a handle, so it is found at its new address even if
            // this allocation collected; the child is reachable from it at
            // once and needs its own handle only while its subtree is made.
            let child = m.alloc(self.layout)?;
            m.set_ref(node, i, Some(child))?;
            self.fill(m, child, depth - 1, budget - 1)?;
        }
        Ok(())
    }

    fn check_batched(&self, m: &mut Mutator, node: Local, budget: u32, levels: u32) -> Result<u64> {
        if budget == 0 {
            // The walk does not allocate, so it would never reach a
            // safepoint: poll once per batch (one relaxed load), or another
            // thread's collection waits for the whole walk (docs/embedding.md
            // §8).
            m.safepoint();
            return m.scope(|m| self.check_batched(m, node, levels, levels));
        }
        let mut n = 1;
        for i in 0..2 {
            if let Some(c) = m.get_ref(node, i)? {
                n += self.check_batched(m, c, budget - 1, levels)?;
            }
        }
        Ok(n)
    }

    fn levels(&self) -> u32 {
        match self.scheme {
            Scheme::Batched { levels } => levels.max(1),
            Scheme::ScopePerNode | Scheme::Typed => 1,
        }
    }
}

// ---------------------------------------------------------------------------
// movegc, typed API

/// A tree node of the typed scheme.
#[derive(Object)]
pub struct TypedNode {
    left: Option<Gc<TypedNode>>,
    right: Option<Gc<TypedNode>>,
}

/// [`Scheme::Typed`]: typed nodes, one handle per level; each check is one
/// view (a single mutator: no other thread waits for its safepoint).
fn run_typed(m: &mut Mutator, n: u32) -> Result<Output> {
    m.scope(|m| {
        let build_and_check = |m: &mut Mutator, d: u32| {
            m.scope(|m| {
                let t = typed_build(m, d)?;
                typed_check(m, t)
            })
        };
        check_n(n);
        let start = Instant::now();
        let max = max_depth(n);
        let mut lines = vec![stretch_line(max, build_and_check(m, max + 1)?)];
        let long_lived = typed_build(m, max)?;
        for (d, iterations) in iteration_plan(n) {
            let mut total = 0;
            for _ in 0..iterations {
                total += build_and_check(m, d)?;
            }
            lines.push(iteration_line(iterations, d, total));
        }
        lines.push(long_lived_line(max, typed_check(m, long_lived)?));
        Ok(Output {
            lines,
            elapsed: start.elapsed(),
        })
    })
}

/// A tree of depth `depth`, built top-down with one handle per level
/// (`alloc_zeroed_into` reuses it for every node of that level: a node's
/// subtree is finished, and reachable from its parent, before its sibling
/// takes the handle); no scope is needed.
fn typed_build(m: &mut Mutator, depth: u32) -> Result<Gc<TypedNode>> {
    let root = m.alloc_zeroed::<TypedNode>()?;
    m.scope(|m| typed_fill(m, root, depth, 0, &mut Vec::with_capacity(depth as usize)))?;
    Ok(root)
}

/// Builds the `depth` levels below `node`, which is at `level`; `path[l]`
/// is the handle of level `l + 1`, made on first use.
fn typed_fill(
    m: &mut Mutator,
    node: Gc<TypedNode>,
    depth: u32,
    level: usize,
    path: &mut Vec<Gc<TypedNode>>,
) -> Result<()> {
    if depth == 0 {
        return Ok(());
    }
    for field in [TypedNode::LEFT, TypedNode::RIGHT] {
        let child = match path.get(level) {
            Some(&h) => {
                m.alloc_zeroed_into(h)?;
                h
            }
            None => {
                let h = m.alloc_zeroed::<TypedNode>()?;
                path.push(h);
                h
            }
        };
        m.set(node, field, Some(child))?;
        typed_fill(m, child, depth - 1, level + 1, path)?;
    }
    Ok(())
}

fn typed_check(m: &mut Mutator, root: Gc<TypedNode>) -> Result<u64> {
    fn count(r: Ref<'_, TypedNode>) -> u64 {
        1 + r.get(TypedNode::LEFT).map_or(0, count) + r.get(TypedNode::RIGHT).map_or(0, count)
    }
    m.view(|v| Ok(count(v.get(root)?)))
}

// ---------------------------------------------------------------------------
// The collector engine directly

/// binary-trees on the collector engine (`movegc-gc`), with no embedding
/// API in between: the batched scheme's algorithm, with root slots pushed
/// and truncated by hand instead of handles and scopes, and the check walk
/// as raw loads. What the typed API costs is its time over this one's.
pub mod engine {
    use std::time::Instant;

    use movegc_gc::{AllocError, GcHeap, Layout, MutatorContext, ObjRef};

    use super::{
        check_n, iteration_line, iteration_plan, long_lived_line, max_depth, node_layout,
        stretch_line, Output,
    };

    /// Runs binary-trees(`n`) on `heap`, one root slot per tree level. The
    /// calling thread must not have a mutator of `heap`.
    pub fn run(heap: &GcHeap, n: u32) -> Result<Output, AllocError> {
        let mut ctx = heap
            .attach()
            .expect("the thread has no mutator of this heap");
        let t = Trees {
            layout: node_layout(),
        };
        check_n(n);
        let start = Instant::now();
        let max = max_depth(n);
        let build_and_check = |ctx: &mut MutatorContext, d: u32| {
            let mark = depth(ctx);
            let r = t.build(ctx, d).map(|root| t.check(ctx, root));
            truncate(ctx, mark);
            r
        };
        let mut lines = vec![stretch_line(max, build_and_check(&mut ctx, max + 1)?)];
        let long_lived = t.build(&mut ctx, max)?;
        for (d, iterations) in iteration_plan(n) {
            let mut total = 0;
            for _ in 0..iterations {
                total += build_and_check(&mut ctx, d)?;
            }
            lines.push(iteration_line(iterations, d, total));
        }
        lines.push(long_lived_line(max, t.check(&mut ctx, long_lived)));
        Ok(Output {
            lines,
            elapsed: start.elapsed(),
        })
    }

    struct Trees {
        layout: Layout,
    }

    fn depth(ctx: &mut MutatorContext) -> usize {
        // SAFETY: reading the length stores nothing.
        unsafe { ctx.roots() }.len()
    }

    fn truncate(ctx: &mut MutatorContext, mark: usize) {
        // SAFETY: truncating stores nothing.
        unsafe { ctx.roots() }.truncate(mark)
    }

    /// Pushes `o` as a root; returns its slot.
    fn push(ctx: &mut MutatorContext, o: ObjRef) -> usize {
        // SAFETY: `o` was just allocated (current).
        let roots = unsafe { ctx.roots() };
        roots.push(Some(o));
        roots.len() - 1
    }

    impl Trees {
        /// A tree of depth `d`, its root in a new root slot; one root slot
        /// per level, reused for every node of that level (as the typed
        /// scheme reuses one handle per level).
        fn build(&self, ctx: &mut MutatorContext, d: u32) -> Result<usize, AllocError> {
            let root = ctx.alloc(&self.layout)?;
            let slot = push(ctx, root);
            let mark = depth(ctx);
            let r = self.fill(ctx, slot, d, 0, &mut Vec::with_capacity(d as usize));
            truncate(ctx, mark);
            r.map(|()| slot)
        }

        fn fill(
            &self,
            ctx: &mut MutatorContext,
            slot: usize,
            d: u32,
            level: usize,
            path: &mut Vec<usize>,
        ) -> Result<(), AllocError> {
            if d == 0 {
                return Ok(());
            }
            for i in 0..2 {
                let child = ctx.alloc(&self.layout)?;
                let c = match path.get(level) {
                    Some(&c) => {
                        // SAFETY: `child` was just allocated (current).
                        unsafe { ctx.roots()[c] = Some(child) };
                        c
                    }
                    None => {
                        let c = push(ctx, child);
                        path.push(c);
                        c
                    }
                };
                let parent = ctx.root(slot).expect("a tree's root slots are set");
                // SAFETY: `parent` was read from its root slot after the
                // allocation (current), `child` was just allocated, and a
                // node has two reference slots.
                unsafe { ctx.store_slot(parent, i, Some(child)) };
                self.fill(ctx, c, d - 1, level + 1, path)?;
            }
            Ok(())
        }

        fn check(&self, ctx: &mut MutatorContext, slot: usize) -> u64 {
            /// # Safety
            /// `o` is current (no safepoint since it was read) and a node.
            unsafe fn count(o: ObjRef) -> u64 {
                // SAFETY: nodes have two slots; their values are current
                // nodes like `o`.
                unsafe {
                    1 + o.load_slot(0).map_or(0, |c| count(c))
                        + o.load_slot(1).map_or(0, |c| count(c))
                }
            }
            let root = ctx.root(slot).expect("a tree's root slots are set");
            // SAFETY: read from a root slot; the walk reaches no safepoint.
            unsafe { count(root) }
        }
    }
}

// ---------------------------------------------------------------------------
// As a workload of the `movegc bench` suite

/// `n` of the suite's default binary-trees run: about 30 M nodes (720 MB)
/// allocated, about 20 collections with the builder's 32 MiB `min_free`
/// (n = 18 allocates 2.2 times as much: about 48 collections, 6-8 s).
pub const WORKLOAD_N: u32 = 17;

/// `n` of the suite's smoke run: about 6.4 M nodes (150 MB), about 4
/// collections with the builder's defaults (n = 14 allocates 65 MB: one
/// or two).
pub const WORKLOAD_QUICK_N: u32 = 15;

/// Checks a run's output `lines` against [`expected_checks`]`(n)`; `Err`
/// names the first line that differs.
pub fn check_lines(n: u32, lines: &[String]) -> std::result::Result<(), String> {
    if n > MAX_N {
        return Err(format!(
            "binary-trees depth {n} is above the maximum {MAX_N}"
        ));
    }
    let expected = expected_checks(n);
    let longest = expected.len().max(lines.len());
    if let Some(i) = (0..longest).find(|&i| lines.get(i) != expected.get(i)) {
        return Err(format!(
            "binary-trees({n}) line {i} is {:?}, expected {:?}",
            lines.get(i),
            expected.get(i)
        ));
    }
    Ok(())
}

/// Which API a suite run of binary-trees is written against: the same
/// algorithm three ways, side by side in one run (`movegc bench --api`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    /// Untyped handles and layouts ([`Scheme::Batched`]).
    Untyped,
    /// The typed API with the check in a view ([`Scheme::Typed`]).
    Typed,
    /// The collector engine directly ([`engine::run`]): what the two
    /// embedding APIs cost is their time over this one's.
    Engine,
}

impl Api {
    /// Every API, in report order.
    pub const ALL: [Api; 3] = [Api::Untyped, Api::Typed, Api::Engine];

    /// Stable name (the `api` key of the workload's spec).
    pub fn name(self) -> &'static str {
        match self {
            Api::Untyped => "untyped",
            Api::Typed => "typed",
            Api::Engine => "engine",
        }
    }

    /// Parses a [`name`](Self::name).
    pub fn parse(s: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|a| a.name() == s)
    }
}

/// Runs binary-trees(`n`) against `api` as a workload of the `movegc
/// bench` suite: on a new heap with the builder's defaults (capacity a
/// quarter of RAM, growth factor 2, `min_free` 32 MiB) except `strategy`,
/// `fault_mode` and the verifier (off), so collections start by the heap's
/// policy while trees are built ([`Api::Engine`]: the engine's heap with the
/// same configuration). The output lines are checked with [`check_lines`].
/// `wall` is the run plus waiting for the last concurrent cycle; no
/// per-operation latency; `check` is the line count and [`lines_hash`].
/// `skew_kib` KiB of garbage are allocated first (0: none), which shifts
/// every collection's phase against the trees.
pub fn run_workload(
    n: u32,
    api: Api,
    skew_kib: usize,
    strategy: Strategy,
    fault_mode: FaultMode,
) -> std::result::Result<WorkloadOutput, String> {
    if n > MAX_N {
        return Err(format!(
            "binary-trees depth {n} is above the maximum {MAX_N}"
        ));
    }
    let failed = |e: &dyn std::fmt::Display| format!("binary-trees({n}) failed: {e}");
    let waiting = |e: &dyn std::fmt::Display| format!("waiting for the last cycle: {e}");
    let setup = crate::HeapSetup {
        skew: skew_kib << 10,
        ..crate::HeapSetup::new(strategy, fault_mode)
    };
    // The run, the wait for its last concurrent cycle (part of the wall
    // time; no mutator is left on this thread), the statistics.
    let (out, waited, stats) = if api == Api::Engine {
        let heap = setup.engine_heap()?;
        let out = engine::run(&heap, n).map_err(|e| failed(&e))?;
        let t = Instant::now();
        heap.wait_idle().map_err(|e| waiting(&e))?;
        (out, t.elapsed(), heap.stats())
    } else {
        let heap = setup.heap()?;
        let scheme = match api {
            Api::Typed => Scheme::Typed,
            _ => Scheme::default(),
        };
        let out = {
            let mut m = heap.attach().map_err(|e| failed(&e))?;
            run_movegc_with(&mut m, n, scheme).map_err(|e| failed(&e))?
        };
        let t = Instant::now();
        heap.wait_idle().map_err(|e| waiting(&e))?;
        (out, t.elapsed(), heap.stats())
    };
    let stats = crate::fragmenter::all_cycles_kept(stats)?;
    let wall = out.elapsed + waited;
    check_lines(n, &out.lines)?;
    let cycles = stats.recent.clone();
    Ok(WorkloadOutput {
        wall,
        cycles,
        op_latency_us: None,
        check: format!(
            "{} lines as expected, hash {:016x}",
            out.lines.len(),
            lines_hash(&out.lines)
        ),
        heap: Some(stats),
    })
}

/// FNV-1a hash of the lines joined by newlines: a short fingerprint of an
/// output for reports.
pub fn lines_hash(lines: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            h = (h ^ u64::from(b'\n')).wrapping_mul(0x100_0000_01b3);
        }
        for b in l.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_and_expected_lines() {
        assert_eq!(max_depth(0), 6);
        assert_eq!(iteration_plan(6), vec![(4, 64), (6, 16)]);
        assert_eq!(
            expected_checks(6),
            vec![
                "stretch tree of depth 7\t check: 255",
                "64\t trees of depth 4\t check: 1984",
                "16\t trees of depth 6\t check: 2032",
                "long lived tree of depth 6\t check: 127",
            ]
        );
        assert_eq!(total_nodes(6), 255 + 127 + 1984 + 2032);
    }

    #[test]
    fn boxed_matches_arithmetic() {
        assert_eq!(run_boxed(7).lines, expected_checks(7));
    }
}
