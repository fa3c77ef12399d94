//! The large-refs workload: how the collector's pauses grow with the
//! references held in one large object. A single reference array of
//! `entries` slots (a large object: never moved, but every reference in it
//! must be rewritten when the objects it points to move) indexes as many
//! small nodes, most of them long-lived. It is the measuring stick for a
//! final pause that does not depend on the references in large objects
//! (today the final pause rewrites every reference of every live large
//! object, see `update_roots` in `gc/src/cycle.rs`) and for a dense prefix
//! of long-lived data that is not recompacted each cycle.
//!
//! **Data.** The array (tag [`ARRAY_TAG`]) has `entries` slots; slot `i`
//! points to a node of its own, a record with no reference and one data
//! word (16 bytes with its header, tag [`NODE_TAG`]) holding
//! [`check_value`]`(seed, i, generation)`. A fixed, hash-chosen fraction
//! `replace` of the slots is *transient* ([`is_transient`]); the others
//! are *long-lived*: their node, of generation 0, lives for the whole run.
//!
//! **Run.** [`run`] builds a heap with room for everything (capacity
//! [`Params::capacity`], `min_free` = the capacity: the heap's policy never
//! starts a collection), fills the array in slot order (so long-lived and
//! transient nodes are interleaved), then runs `rounds` rounds. Round `r`
//! replaces the node of every transient slot, in a new random order each
//! round, by a node of generation `r` (checking the old node's value first:
//! about `replace × entries` nodes become garbage, scattered through the
//! heap after the first round, then in the region of the previous round),
//! checks 1 024 random slots, and collects explicitly (`Mutator::collect`,
//! which waits for a concurrent cycle to finish), so every round is exactly
//! one cycle, measured alone: the mutator runs no code during the cycle.
//! From the second round on the long-lived nodes form a fully live prefix
//! of the heap. `wall` covers the fill, the rounds and their collections.
//!
//! **Verification.** At the end every slot must point to a node with tag
//! [`NODE_TAG`], 16 bytes and no reference whose value is the slot's
//! expected check value (generation 0 for long-lived slots, `rounds` for
//! transient ones: a reference left unrewritten or rewritten to another
//! node is caught, because the value encodes the slot), and the digest of
//! every value read from the heap must equal the digest computed without
//! the heap ([`expected_digest`]). An unexpected collection (one the run
//! did not ask for) fails the run: it would blur the per-cycle measure.

use std::time::Instant;

use fastrand::Rng;
use movegc::FaultMode;
use movegc::{Gc, HeapStats, Layout, Local, Mutator, Object, RefArray, Strategy, Trigger};
use movegc_gc::MutatorContext;

use crate::compact::mix;
use crate::fragmenter::{all_cycles_kept, finish, Fail, Res};
use crate::record::WorkloadOutput;
use crate::spec::Spec;

/// Embedder tag of the nodes.
pub const NODE_TAG: u16 = 0x1A20;
/// Embedder tag of the reference array.
pub const ARRAY_TAG: u16 = 0x1A21;
/// Size of a node in bytes: header and one data word.
pub const NODE_BYTES: usize = 16;
/// Slots handled per handle scope when filling, replacing and verifying.
const BATCH: usize = 1024;
/// Random slots checked after each round's replacements.
const SPOT_CHECKS: usize = 1024;
/// Most entries accepted (the array is at most 2 GiB).
pub const MAX_ENTRIES: usize = 1 << 28;
/// Most rounds accepted (the generation is 20 bits of the check value).
pub const MAX_ROUNDS: usize = (1 << 20) - 1;
/// Array sizes of the sweep (`movegc bench --large-refs-sweep`).
pub const SWEEP_ENTRIES: [usize; 5] = [1_000_000, 2_000_000, 4_000_000, 8_000_000, 12_000_000];
/// Array sizes of the sweep at `--quick` sizes.
pub const SWEEP_ENTRIES_QUICK: [usize; 3] = [250_000, 500_000, 1_000_000];

/// What to run. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Slots of the reference array (and nodes it holds).
    pub entries: usize,
    /// Rounds, each replacing the transient nodes and collecting once.
    pub rounds: usize,
    /// Fraction of the slots that are transient, in `(0, 1)`.
    pub replace: f64,
    /// Seed of the check values, the transient slots and the orders.
    pub seed: u64,
}

impl Default for Params {
    /// The default-suite size: 12 million entries (a 92 MiB array
    /// indexing 183 MiB of nodes), 2 rounds of 30 % (about 55 MiB of
    /// garbage each; the second cycle finds the long-lived nodes packed
    /// at the bottom of the heap). About 10 s a run on two cores, mostly
    /// marking.
    fn default() -> Self {
        Params {
            entries: 12_000_000,
            rounds: 2,
            replace: 0.3,
            seed: 0x1A2E,
        }
    }
}

impl Params {
    /// The smoke size: a million entries (an 8 MiB array, 15 MiB of
    /// nodes), 3 rounds of 30 %.
    pub fn quick() -> Params {
        Params {
            entries: 1_000_000,
            rounds: 3,
            ..Params::default()
        }
    }

    /// Heap capacity: the array, twice the nodes (live ones plus a round's
    /// garbage, with room to spare) and 64 MiB.
    pub fn capacity(&self) -> usize {
        let bytes = self.entries * 8 + 2 * self.entries * NODE_BYTES + (64 << 20);
        bytes.next_multiple_of(2 << 20)
    }

    /// The parameters as a [`Spec`] (every key, in a fixed order).
    pub fn spec(&self) -> Spec {
        Spec::new()
            .with("entries", self.entries)
            .with("rounds", self.rounds)
            .with("replace", self.replace)
            .with("seed", self.seed)
    }

    /// The keys of a [`Spec`] read over `d`'s values (`from_spec`, made
    /// by `spec_io!`, checks the key names and validates). `entries` also takes a `k` or `M`
    /// suffix (thousands, millions).
    fn read_spec(s: &Spec, d: &Params) -> Result<Params, String> {
        Ok(Params {
            entries: s.read_or("entries", d.entries, |v| parse_count(v).ok())?,
            rounds: s.value_or("rounds", d.rounds)?,
            replace: s.value_or("replace", d.replace)?,
            seed: s.value_or("seed", d.seed)?,
        })
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=MAX_ENTRIES).contains(&self.entries) {
            return Err(format!(
                "entries {} must be in 2..={MAX_ENTRIES}",
                self.entries
            ));
        }
        if !(1..=MAX_ROUNDS).contains(&self.rounds) {
            return Err(format!(
                "rounds {} must be in 1..={MAX_ROUNDS}",
                self.rounds
            ));
        }
        if !(self.replace > 0.0 && self.replace < 1.0) {
            return Err(format!("replace {} must be in (0, 1)", self.replace));
        }
        Ok(())
    }
}

/// Parses a count: digits with an optional `k` (thousands) or `M`
/// (millions) suffix, e.g. `12M`, `500k`, `1000000`.
pub fn parse_count(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (digits, scale) = match t.as_bytes().last() {
        Some(b'k' | b'K') => (&t[..t.len() - 1], 1_000),
        Some(b'M' | b'm') => (&t[..t.len() - 1], 1_000_000),
        _ => (t, 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("bad count {s:?} (digits, optionally followed by k or M)"))
}

/// The value of the node of slot `slot` at generation `generation`
/// (distinct for distinct `(slot, generation)`: `mix` is a bijection).
pub fn check_value(seed: u64, slot: usize, generation: usize) -> u64 {
    let key = ((slot as u64) << 20) | generation as u64;
    mix(key.wrapping_add(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
}

/// Whether slot `slot` is transient (replaced every round): a hash of the
/// slot below the fraction `replace`.
pub fn is_transient(seed: u64, slot: usize, replace: f64) -> bool {
    let h = mix((slot as u64) ^ seed.rotate_left(32) ^ 0x6c72_6566_7321);
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64) < replace
}

/// The generation slot `slot` holds after `rounds` rounds.
pub fn generation(p: &Params, slot: usize, rounds: usize) -> usize {
    if is_transient(p.seed, slot, p.replace) {
        rounds
    } else {
        0
    }
}

/// The digest [`run`] must find in the heap after `p.rounds` rounds,
/// computed from the parameters alone.
pub fn expected_digest(p: &Params) -> u64 {
    (0..p.entries).fold(0, |h, i| {
        fold(h, check_value(p.seed, i, generation(p, i, p.rounds)))
    })
}

/// One step of the digest: order-sensitive mixing.
fn fold(h: u64, x: u64) -> u64 {
    mix(h ^ x).wrapping_add(0x9e37_79b9_7f4a_7c15)
}

/// Runs the workload (see the module docs) on a new heap with `strategy`
/// and `fault_mode`, verifies the array, and returns the measurements.
/// `Err` describes a failed check or a heap error.
pub fn run(
    p: &Params,
    strategy: Strategy,
    fault_mode: FaultMode,
) -> Result<WorkloadOutput, String> {
    run_inner(p, strategy, fault_mode, false)
}

/// Like [`run`], but makes one slot in the middle of the array point to
/// its neighbour's node just before the verification (what an update of
/// the array's references gone wrong would leave), which must then fail:
/// a test of the verifier.
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

/// Which API the workload is written against (the suite's `api` key).
pub use crate::binary_trees::Api;

/// Runs the workload against `api` (see [`run`] and [`run_corrupted`]);
/// the engine's heap has the same configuration as the others'.
pub fn run_api(
    p: &Params,
    api: Api,
    strategy: Strategy,
    fault_mode: FaultMode,
    corrupt: bool,
) -> Result<WorkloadOutput, String> {
    p.validate()?;
    let capacity = p.capacity();
    // The policy never starts a cycle: every one is the run's `collect`.
    let setup = crate::HeapSetup {
        capacity: Some(capacity),
        min_free: Some(capacity),
        growth_factor: Some(1.0),
        ..crate::HeapSetup::new(strategy, fault_mode)
    };
    if api == Api::Engine {
        let heap = setup.engine_heap()?;
        let mut ctx = heap
            .attach()
            .map_err(|_| "this thread already has a mutator".to_string())?;
        let e = Engine {
            heap: &heap,
            node: Layout::record(NODE_TAG, 0, 8).map_err(|e| e.to_string())?,
        };
        return Ok(drive(p, &e, &mut ctx, corrupt)?);
    }
    let heap = setup.heap()?;
    let mut m = heap.attach().map_err(|e| e.to_string())?;
    let r = m.scope(|m| match api {
        Api::Typed => drive(p, &Typed, m, corrupt),
        _ => {
            let node = Layout::record(NODE_TAG, 0, 8)?;
            debug_assert_eq!(node.size(), NODE_BYTES);
            drive(p, &Untyped { node }, m, corrupt)
        }
    });
    Ok(r?)
}

/// The workload's operations against one API; [`drive`] is the workload.
trait Slots {
    /// The mutator: [`Mutator`] or the engine's context.
    type M;
    /// The reference array (a handle of the current scope).
    type Array: Copy;
    /// Runs `f` in a handle scope.
    fn scope<R>(m: &mut Self::M, f: impl FnOnce(&mut Self::M) -> Res<R>) -> Res<R>;
    /// The array of `entries` null slots.
    fn array(&self, m: &mut Self::M, entries: usize) -> Res<Self::Array>;
    /// Its length, or an error if it is not the workload's array.
    fn len(&self, m: &mut Self::M, a: Self::Array) -> Res<usize>;
    /// A new node holding `value`, stored into slot `i`.
    fn put(&self, m: &mut Self::M, a: Self::Array, i: usize, value: u64) -> Res<()>;
    /// Checks that each slot `i` of `want` holds a node whose value is its
    /// `u64`; returns the values found, in order.
    fn expect(&self, m: &mut Self::M, a: Self::Array, want: &[(usize, u64)]) -> Res<Vec<u64>>;
    /// Makes slot `i` point to slot `i + 1`'s node (the corruption).
    fn alias(&self, m: &mut Self::M, a: Self::Array, i: usize) -> Res<()>;
    /// Collects; whether this call's cycle ran.
    fn collect(&self, m: &mut Self::M) -> bool;
    /// Waits for the last cycle; the heap's statistics.
    fn finish(&self, m: &mut Self::M) -> Res<HeapStats>;
}

/// The error of slot `i` found not to hold what it should.
fn bad_slot(i: usize, what: String) -> Fail {
    Fail::Check(format!("slot {i} {what}"))
}

/// The workload itself (see the module docs), against any [`Slots`].
fn drive<A: Slots>(p: &Params, a: &A, m: &mut A::M, corrupt: bool) -> Res<WorkloadOutput> {
    let start = Instant::now();
    let array = a.array(m, p.entries)?;
    for lo in (0..p.entries).step_by(BATCH) {
        let hi = (lo + BATCH).min(p.entries);
        A::scope(m, |m| {
            (lo..hi).try_for_each(|i| a.put(m, array, i, check_value(p.seed, i, 0)))
        })?;
    }
    let mut transient: Vec<u32> = (0..p.entries)
        .filter(|&i| is_transient(p.seed, i, p.replace))
        .map(|i| i as u32)
        .collect();
    let mut rng = Rng::with_seed(p.seed ^ 0x5eed);
    for round in 1..=p.rounds {
        shuffle(&mut transient, &mut rng);
        for batch in transient.chunks(BATCH) {
            A::scope(m, |m| {
                let old: Vec<_> = batch
                    .iter()
                    .map(|&i| (i as usize, check_value(p.seed, i as usize, round - 1)))
                    .collect();
                a.expect(m, array, &old)?;
                old.iter()
                    .try_for_each(|&(i, _)| a.put(m, array, i, check_value(p.seed, i, round)))
            })?;
        }
        let spots: Vec<_> = (0..SPOT_CHECKS)
            .map(|_| rng.usize(..p.entries))
            .map(|i| (i, check_value(p.seed, i, generation(p, i, round))))
            .collect();
        A::scope(m, |m| a.expect(m, array, &spots).map(drop))?;
        if !a.collect(m) {
            return Err(Fail::Check(format!(
                "round {round}: another collection ran instead of the one asked for"
            )));
        }
    }
    let stats = a.finish(m)?;
    let cycles = stats.recent.clone();
    let wall = start.elapsed();
    if let Some(c) = cycles.iter().find(|c| c.trigger != Some(Trigger::Explicit)) {
        return Err(Fail::Check(format!(
            "cycle {} was started by {:?}, not by the run (capacity {} too small?)",
            c.cycle,
            c.trigger,
            p.capacity()
        )));
    }
    if cycles.len() != p.rounds {
        return Err(Fail::Check(format!(
            "{} collections for {} rounds",
            cycles.len(),
            p.rounds
        )));
    }
    if corrupt {
        A::scope(m, |m| a.alias(m, array, (p.entries - 1) / 2))?;
    }
    // Every slot checked, the values folded into the digest.
    let len = a.len(m, array)?;
    if len != p.entries {
        return Err(Fail::Check(format!(
            "the array has {len} slots, expected {}",
            p.entries
        )));
    }
    let mut digest = 0;
    for lo in (0..p.entries).step_by(BATCH) {
        let hi = (lo + BATCH).min(p.entries);
        let want: Vec<_> = (lo..hi)
            .map(|i| (i, check_value(p.seed, i, generation(p, i, p.rounds))))
            .collect();
        let found = A::scope(m, |m| a.expect(m, array, &want))?;
        digest = found.into_iter().fold(digest, fold);
    }
    let expected = expected_digest(p);
    if digest != expected {
        return Err(Fail::Check(format!(
            "digest of the heap {digest:016x} != expected {expected:016x}"
        )));
    }
    Ok(WorkloadOutput {
        wall,
        cycles,
        op_latency_us: None,
        check: format!(
            "{} entries, {} transient, {} rounds; every slot's node checked, digest {digest:016x}",
            p.entries,
            transient.len(),
            p.rounds
        ),
        heap: Some(stats),
    })
}

/// Against the untyped API: layouts, handles, field indexes.
struct Untyped {
    node: Layout,
}

impl Slots for Untyped {
    type M = Mutator;
    type Array = Local;

    fn scope<R>(m: &mut Mutator, f: impl FnOnce(&mut Mutator) -> Res<R>) -> Res<R> {
        m.scope(f)
    }

    fn array(&self, m: &mut Mutator, entries: usize) -> Res<Local> {
        Ok(m.alloc(&Layout::ref_array(ARRAY_TAG, entries)?)?)
    }

    fn len(&self, m: &mut Mutator, a: Local) -> Res<usize> {
        if m.tag(a)? != ARRAY_TAG {
            return Err(Fail::Check("the array's tag changed".into()));
        }
        Ok(m.len(a)?)
    }

    fn put(&self, m: &mut Mutator, a: Local, i: usize, value: u64) -> Res<()> {
        let o = m.alloc(&self.node)?;
        m.write_u64(o, 0, value)?;
        m.set_ref(a, i, Some(o))?;
        Ok(())
    }

    fn expect(&self, m: &mut Mutator, a: Local, want: &[(usize, u64)]) -> Res<Vec<u64>> {
        let mut out = Vec::with_capacity(want.len());
        for &(i, want) in want {
            let o = m
                .get_ref(a, i)?
                .ok_or_else(|| bad_slot(i, "is null".into()))?;
            let (tag, size, refs) = (m.tag(o)?, m.size_of(o)?, m.len(o)?);
            if tag != NODE_TAG || size != NODE_BYTES || refs != 0 {
                return Err(bad_slot(
                    i,
                    format!("holds an object with tag {tag:#x}, {size} bytes, {refs} references"),
                ));
            }
            let found = m.read_u64(o, 0)?;
            if found != want {
                return Err(bad_slot(
                    i,
                    format!("holds value {found:016x}, expected {want:016x}"),
                ));
            }
            out.push(found);
        }
        Ok(out)
    }

    fn alias(&self, m: &mut Mutator, a: Local, i: usize) -> Res<()> {
        let next = m
            .get_ref(a, i + 1)?
            .ok_or_else(|| bad_slot(i + 1, "is null".into()))?;
        m.set_ref(a, i, Some(next))?;
        Ok(())
    }

    fn collect(&self, m: &mut Mutator) -> bool {
        m.collect().is_some()
    }

    fn finish(&self, m: &mut Mutator) -> Res<HeapStats> {
        finish(m)
    }
}

/// A node on the typed API: one data word, 16 bytes with its header.
#[derive(Object)]
struct LNode {
    value: u64,
}

/// Against the typed API: derived nodes, a `RefArray`, checks in views.
struct Typed;

impl Slots for Typed {
    type M = Mutator;
    type Array = Gc<RefArray<LNode>>;

    fn scope<R>(m: &mut Mutator, f: impl FnOnce(&mut Mutator) -> Res<R>) -> Res<R> {
        m.scope(f)
    }

    fn array(&self, m: &mut Mutator, entries: usize) -> Res<Gc<RefArray<LNode>>> {
        Ok(m.alloc_array::<LNode>(entries)?)
    }

    fn len(&self, m: &mut Mutator, a: Gc<RefArray<LNode>>) -> Res<usize> {
        Ok(m.array_len(a)?)
    }

    fn put(&self, m: &mut Mutator, a: Gc<RefArray<LNode>>, i: usize, value: u64) -> Res<()> {
        let o = m.alloc_init(LNode { value })?;
        m.array_set(a, i, Some(o))?;
        Ok(())
    }

    fn expect(
        &self,
        m: &mut Mutator,
        a: Gc<RefArray<LNode>>,
        want: &[(usize, u64)],
    ) -> Res<Vec<u64>> {
        // The element type is checked by construction: a typed array holds
        // nothing but `LNode`s.
        m.view(|v| {
            let a = v.get(a)?;
            want.iter()
                .map(|&(i, want)| {
                    let o = a.at(i)?.ok_or_else(|| bad_slot(i, "is null".into()))?;
                    let found = o.read(LNode::VALUE);
                    if found != want {
                        return Err(bad_slot(
                            i,
                            format!("holds value {found:016x}, expected {want:016x}"),
                        ));
                    }
                    Ok(found)
                })
                .collect()
        })
    }

    fn alias(&self, m: &mut Mutator, a: Gc<RefArray<LNode>>, i: usize) -> Res<()> {
        let next = m
            .array_get(a, i + 1)?
            .ok_or_else(|| bad_slot(i + 1, "is null".into()))?;
        m.array_set(a, i, Some(next))?;
        Ok(())
    }

    fn collect(&self, m: &mut Mutator) -> bool {
        m.collect().is_some()
    }

    fn finish(&self, m: &mut Mutator) -> Res<HeapStats> {
        finish(m)
    }
}

/// Against the collector engine directly: root slots by hand, raw loads.
struct Engine<'h> {
    heap: &'h movegc_gc::GcHeap,
    node: Layout,
}

impl Slots for Engine<'_> {
    type M = MutatorContext;
    type Array = usize;

    fn scope<R>(ctx: &mut MutatorContext, f: impl FnOnce(&mut MutatorContext) -> Res<R>) -> Res<R> {
        // SAFETY (both): the length is read and cut, nothing stored.
        let mark = unsafe { ctx.roots() }.len();
        let r = f(ctx);
        unsafe { ctx.roots() }.truncate(mark);
        r
    }

    fn array(&self, ctx: &mut MutatorContext, entries: usize) -> Res<usize> {
        let layout = Layout::ref_array(ARRAY_TAG, entries)?;
        let a = ctx.alloc(&layout).map_err(movegc::Error::from)?;
        // SAFETY: `a` was just allocated (current).
        let roots = unsafe { ctx.roots() };
        roots.push(Some(a));
        Ok(roots.len() - 1)
    }

    fn len(&self, ctx: &mut MutatorContext, a: usize) -> Res<usize> {
        let o = ctx.root(a).expect("the array's root slot is set");
        // SAFETY: read from a root slot.
        let h = unsafe { o.header() };
        if h.tag() != ARRAY_TAG {
            return Err(Fail::Check("the array's tag changed".into()));
        }
        Ok(h.len())
    }

    fn put(&self, ctx: &mut MutatorContext, a: usize, i: usize, value: u64) -> Res<()> {
        let o = ctx.alloc(&self.node).map_err(movegc::Error::from)?;
        let arr = ctx.root(a).expect("the array's root slot is set");
        // SAFETY: `o` was just allocated and `arr` read from its root slot
        // after the allocation; a node has one data word; `store_ref`
        // checks the index.
        unsafe {
            o.store_word_at(8, value);
            ctx.store_ref(arr, i, Some(o))
                .map_err(movegc::Error::from)?;
        }
        Ok(())
    }

    fn expect(&self, ctx: &mut MutatorContext, a: usize, want: &[(usize, u64)]) -> Res<Vec<u64>> {
        let arr = ctx.root(a).expect("the array's root slot is set");
        want.iter()
            .map(|&(i, want)| {
                // SAFETY: `arr` and what it holds are current (no
                // safepoint in this loop); `load_ref` checks the index.
                let o = unsafe { arr.load_ref(i) }
                    .map_err(movegc::Error::from)?
                    .ok_or_else(|| bad_slot(i, "is null".into()))?;
                // SAFETY: as above.
                let h = unsafe { o.header() };
                if h.tag() != NODE_TAG || h.size() != NODE_BYTES || h.ref_count() != 0 {
                    return Err(bad_slot(i, format!("holds an object {h:?}")));
                }
                // SAFETY: a node's one data word, checked just above.
                let found = unsafe { o.load_word_at(8) };
                if found != want {
                    return Err(bad_slot(
                        i,
                        format!("holds value {found:016x}, expected {want:016x}"),
                    ));
                }
                Ok(found)
            })
            .collect()
    }

    fn alias(&self, ctx: &mut MutatorContext, a: usize, i: usize) -> Res<()> {
        let arr = ctx.root(a).expect("the array's root slot is set");
        // SAFETY: `arr` and its elements are current; indexes are checked.
        unsafe {
            let next = arr
                .load_ref(i + 1)
                .map_err(movegc::Error::from)?
                .ok_or_else(|| bad_slot(i + 1, "is null".into()))?;
            ctx.store_ref(arr, i, Some(next))
                .map_err(movegc::Error::from)?;
        }
        Ok(())
    }

    fn collect(&self, ctx: &mut MutatorContext) -> bool {
        ctx.collect().is_some()
    }

    fn finish(&self, ctx: &mut MutatorContext) -> Res<HeapStats> {
        ctx.wait_idle();
        all_cycles_kept(self.heap.stats())
    }
}

/// Fisher-Yates shuffle of `v`.
fn shuffle(v: &mut [u32], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.usize(..i + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values_are_distinct_per_slot_and_generation() {
        let mut seen = std::collections::HashSet::new();
        for slot in 0..200 {
            for generation in 0..5 {
                assert!(seen.insert(check_value(7, slot, generation)));
            }
        }
    }

    #[test]
    fn about_the_asked_fraction_is_transient() {
        let n = 100_000;
        let t = (0..n).filter(|&i| is_transient(3, i, 0.3)).count();
        assert!((29_000..31_000).contains(&t), "{t}");
    }

    #[test]
    fn counts_parse_with_suffixes() {
        assert_eq!(parse_count("12M"), Ok(12_000_000));
        assert_eq!(parse_count("500k"), Ok(500_000));
        assert_eq!(parse_count("1000"), Ok(1000));
        assert!(parse_count("M").is_err());
        assert!(parse_count("1.5M").is_err());
        assert!(parse_count("").is_err());
    }

    #[test]
    fn every_api_checks_the_same_heap_and_catches_the_alias() {
        let p = Params {
            entries: 20_000,
            rounds: 2,
            ..Params::default()
        };
        let mut checks = vec![];
        for api in Api::ALL {
            for strategy in [Strategy::StopTheWorld, Strategy::ConcurrentMove] {
                let out = run_api(&p, api, strategy, FaultMode::Sigbus, false)
                    .unwrap_or_else(|e| panic!("{api:?} {strategy:?}: {e}"));
                assert_eq!(out.cycles.len(), 2);
                checks.push(out.check);
            }
            let e = run_api(&p, api, Strategy::StopTheWorld, FaultMode::Sigbus, true)
                .expect_err("an aliased slot");
            assert!(
                e.contains(&format!("slot {}", (p.entries - 1) / 2)),
                "{api:?}: {e}"
            );
        }
        assert!(checks.iter().all(|c| *c == checks[0]), "{checks:?}");
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<u32> = (0..1000).collect();
        shuffle(&mut v, &mut Rng::with_seed(1));
        assert_ne!(v, (0..1000).collect::<Vec<u32>>());
        v.sort_unstable();
        assert_eq!(v, (0..1000).collect::<Vec<u32>>());
    }
}

crate::spec::spec_io!(Params);
