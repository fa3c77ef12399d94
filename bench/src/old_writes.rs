//! The old-writes workload: what keeping the remembered set costs when
//! mutators write references into old objects at a controlled rate, with
//! either builder ([`RememberedSet::Cards`], a card-marking barrier in
//! every reference store, or [`RememberedSet::WriteProtect`], the kernel's
//! dirty-page tracking: one minor fault on the first write to each old
//! page between cycles, `PAGEMAP_SCAN` and re-protection in each cycle).
//!
//! **Heap.** Young collections are always on (the workload measures
//! nothing without them: the suite runs its jobs as generational whatever
//! `--generational` says, once per `--remembered-set` builder); `min_free`
//! is four times the garbage of a round and there is no CPU target, so the
//! heap-size policy starts no cycle by itself during the rounds.
//!
//! **Old set.** `old` MiB of nodes ([`NODE_BYTES`] each: a reference to a
//! young object, a reference to the previous node of its chunk, the
//! node's index and a payload word) held by chunk arrays of [`CHUNK`]
//! nodes (each below the large-object threshold, so in the moving space
//! with cards like everything else), themselves held by one root array.
//! Every chunk array is allocated before the first node, so the nodes are
//! contiguous in index order (a full compaction slides objects without
//! reordering them): node `i` is on old page about `i × NODE_BYTES / 4096`
//! of the node region. A full collection (`collect()`) then makes it all
//! old. This setup is not in `wall`, and its cycles are not in the record.
//!
//! **Rounds.** Each of `rounds` rounds allocates half of `garbage` MiB of
//! garbage, then `k` = `rate` % of the node region's pages (at least one
//! for a positive rate) fresh young objects, stores one into each of `k`
//! nodes `stride` = `nodes / k` apart (so each on another page; the first
//! one's position changes from round to round), allocates the other half
//! of the garbage and runs the cycle the policy would choose
//! (`collect_young`: young unless a full one is due). So each young cycle
//! has about `k` dirty old pages, and the young objects are reachable only
//! through old nodes: a remembered set that missed one would free it. The
//! stores of each round (`k` barriered reference stores into old nodes, in
//! one view; nothing allocated) are timed as one operation of
//! [`WorkloadOutput::op_latency_us`]: under the write-protect builder they
//! take the kernel's write faults, under cards the barrier.
//!
//! Above a quarter of the old pages dirty the heap-size policy makes the
//! cycle after a young one full (`FullReason::MostlyDirty`): at the suite's
//! 50 % every other cycle is full, which the record's cycles show (the
//! report's old-writes table counts the young ones).
//!
//! **Verification.** A shadow outside the heap records, per node, the
//! round of its last store. At the start of each round the nodes written
//! in the previous one (after the young cycle that promoted their young
//! objects) must hold their young object, with the checksum of its node
//! and round. At the end every node must have its index, payload and link
//! to the previous node, and hold exactly the young object its last store
//! put there (none if never written). `wall` runs from the first round to
//! the end of the final check.

use std::time::Instant;

use movegc::{FaultMode, Gc, Heap, Mutator, Object, RefArray, RememberedSet, Strategy};

use crate::compact::mix;
use crate::fragmenter::{finish, latency_histogram, record_us, Fail, Res};
use crate::record::WorkloadOutput;
use crate::spec::Spec;

/// Size of an old node in bytes (header, two references, two words).
pub const NODE_BYTES: usize = 40;
/// Nodes per chunk array (16 KiB of references: below the large-object
/// threshold).
pub const CHUNK: usize = 2048;
/// The tracked page size.
pub const PAGE: usize = 4096;
/// The suite's dirty rates, percent of the old pages per young cycle.
pub const RATES: [f64; 3] = [1.0, 10.0, 50.0];
/// The quick suite's.
pub const QUICK_RATES: [f64; 1] = [10.0];

/// An old node: the young object of its last store, the previous node of
/// its chunk, its index and a payload derived from it.
#[derive(Object)]
struct OwNode {
    young: Option<Gc<OwLeaf>>,
    next: Option<Gc<OwNode>>,
    id: u64,
    payload: u64,
}

/// A young object stored into an old node: the node's index and the
/// round, and their checksum.
#[derive(Object)]
struct OwLeaf {
    node: u64,
    round: u64,
    check: u64,
}

/// A chunk of the old set: its node array.
#[derive(Object)]
struct OwChunk {
    nodes: Option<Gc<RefArray<OwNode>>>,
}

/// Short-lived garbage (40 bytes, like a node).
#[derive(Object)]
struct OwGarbage {
    link: Option<Gc<OwGarbage>>,
    a: u64,
    b: u64,
    c: u64,
}

/// What to run. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Percent of the old node pages written per round (and so per young
    /// cycle), 0 to 100.
    pub rate: f64,
    /// MiB of old nodes.
    pub old_mib: usize,
    /// Rounds (one young cycle each).
    pub rounds: usize,
    /// MiB of garbage allocated per round (the `garbage` key: `young`
    /// is the suite's mark of generational runs).
    pub garbage_mib: usize,
}

impl Default for Params {
    /// 10 % of 64 MiB of old nodes (about 1.7 M nodes on 16 384 pages),
    /// 20 rounds of 8 MiB of garbage.
    fn default() -> Self {
        Params {
            rate: 10.0,
            old_mib: 64,
            rounds: 20,
            garbage_mib: 8,
        }
    }
}

impl Params {
    /// The smoke size: 16 MiB old, 10 rounds of 2 MiB.
    pub fn quick() -> Params {
        Params {
            old_mib: 16,
            rounds: 10,
            garbage_mib: 2,
            ..Params::default()
        }
    }

    /// A run of milliseconds for tests: 2 MiB old, 4 rounds of 1 MiB.
    pub fn tiny() -> Params {
        Params {
            old_mib: 2,
            rounds: 4,
            garbage_mib: 1,
            ..Params::default()
        }
    }

    /// Old nodes.
    pub fn nodes(&self) -> usize {
        (self.old_mib << 20) / NODE_BYTES
    }

    /// Pages of the node region.
    pub fn node_pages(&self) -> usize {
        (self.nodes() * NODE_BYTES).div_ceil(PAGE)
    }

    /// Nodes (so pages) written per round: `rate` % of
    /// [`node_pages`](Self::node_pages), rounded, at least one for a
    /// positive rate.
    pub fn writes_per_round(&self) -> usize {
        if self.rate <= 0.0 {
            return 0;
        }
        let k = (self.rate / 100.0 * self.node_pages() as f64).round() as usize;
        k.clamp(1, self.node_pages())
    }

    /// Heap capacity: twice the old set (nodes and chunk arrays), eight
    /// times a round's garbage and 64 MiB, on a 2 MiB boundary.
    pub fn capacity(&self) -> usize {
        let old = self.nodes() * (NODE_BYTES + 8) + self.nodes().div_ceil(CHUNK) * 64;
        (2 * old + ((8 * self.garbage_mib) << 20) + (64 << 20)).next_multiple_of(2 << 20)
    }

    /// The parameters as a [`Spec`] (every key, in a fixed order).
    pub fn spec(&self) -> Spec {
        Spec::new()
            .with("rate", self.rate)
            .with("old", self.old_mib)
            .with("rounds", self.rounds)
            .with("garbage", self.garbage_mib)
    }

    fn read_spec(s: &Spec, d: &Params) -> Result<Params, String> {
        Ok(Params {
            rate: s.value_or("rate", d.rate)?,
            old_mib: s.value_or("old", d.old_mib)?,
            rounds: s.value_or("rounds", d.rounds)?,
            garbage_mib: s.value_or("garbage", d.garbage_mib)?,
        })
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=100.0).contains(&self.rate) {
            return Err(format!("rate {} is not a percentage (0 to 100)", self.rate));
        }
        if !(1..=4096).contains(&self.old_mib) {
            return Err(format!("old {} MiB must be in 1..=4096", self.old_mib));
        }
        // The heap keeps its last 1024 cycles; the setup runs a few.
        if !(1..=900).contains(&self.rounds) {
            return Err(format!("rounds {} must be in 1..=900", self.rounds));
        }
        if !(1..=1024).contains(&self.garbage_mib) {
            return Err(format!(
                "garbage {} MiB must be in 1..=1024",
                self.garbage_mib
            ));
        }
        Ok(())
    }
}

crate::spec::spec_io!(Params);

/// The checksum a young object holds.
fn leaf_check(node: usize, round: usize) -> u64 {
    mix(((node as u64) << 24) ^ round as u64 ^ 0x6f6c_645f_7772)
}

/// The payload of node `i`.
fn payload(i: usize) -> u64 {
    mix(i as u64 ^ 0x6e6f_6465)
}

/// Runs the workload (see the module docs) on a new generational heap
/// with `strategy`, `fault_mode` and the remembered-set builder `builder`,
/// and verifies it. `Err` describes a failed check or a heap error.
pub fn run(
    p: &Params,
    strategy: Strategy,
    fault_mode: FaultMode,
    builder: RememberedSet,
) -> Result<WorkloadOutput, String> {
    p.validate()?;
    let heap = Heap::builder()
        .capacity(p.capacity())
        .min_free((4 * p.garbage_mib) << 20)
        .gc_cpu_target(None)
        .strategy(strategy)
        .fault_mode(fault_mode)
        .generational(true)
        .remembered_set(builder)
        .verify(false)
        .build()
        .map_err(|e| format!("creating the heap: {e}"))?;
    let mut m = heap.attach().map_err(|e| e.to_string())?;
    let r = m.scope(|m| drive(p, &heap, m));
    Ok(r?)
}

/// Node `i` of the old set, in a view.
fn node_at<'v>(top: movegc::Ref<'v, RefArray<OwChunk>>, i: usize) -> Res<movegc::Ref<'v, OwNode>> {
    let missing = |what: &str| Fail::Check(format!("node {i}: {what} is missing"));
    let chunk = top.at(i / CHUNK)?.ok_or_else(|| missing("its chunk"))?;
    let nodes = chunk
        .get(OwChunk::NODES)
        .ok_or_else(|| missing("its chunk's array"))?;
    nodes.at(i % CHUNK)?.ok_or_else(|| missing("the node"))
}

/// Checks that node `i` holds the young object of its last store (`last`:
/// round + 1, 0 if never written), and its own fields when `whole`.
fn check_node(
    top: movegc::Ref<'_, RefArray<OwChunk>>,
    i: usize,
    last: u32,
    whole: bool,
) -> Res<()> {
    let bad = |what: String| Err(Fail::Check(format!("node {i}: {what}")));
    let node = node_at(top, i)?;
    if whole {
        let (id, pl) = (node.read(OwNode::ID), node.read(OwNode::PAYLOAD));
        if id != i as u64 || pl != payload(i) {
            return bad(format!("holds index {id} and payload {pl:#x}"));
        }
        let prev = node.get(OwNode::NEXT).map(|n| n.read(OwNode::ID));
        let want = (i % CHUNK != 0).then(|| i as u64 - 1);
        if prev != want {
            return bad(format!("links to {prev:?}, expected {want:?}"));
        }
    }
    match (node.get(OwNode::YOUNG), last) {
        (None, 0) => Ok(()),
        (Some(_), 0) => bad("holds a young object it was never given".into()),
        (None, r) => bad(format!("lost the young object of round {}", r - 1)),
        (Some(leaf), r) => {
            let round = r as usize - 1;
            let (n, lr, c) = (
                leaf.read(OwLeaf::NODE),
                leaf.read(OwLeaf::ROUND),
                leaf.read(OwLeaf::CHECK),
            );
            if (n, lr, c) != (i as u64, round as u64, leaf_check(i, round)) {
                return bad(format!(
                    "the young object of round {round} holds node {n}, round {lr}, check {c:#x}"
                ));
            }
            Ok(())
        }
    }
}

/// Allocates `bytes` of garbage, one handle reused.
fn garbage(m: &mut Mutator, bytes: usize) -> Res<()> {
    m.scope(|m| {
        let g = m.alloc_zeroed::<OwGarbage>()?;
        for _ in 1..bytes / NODE_BYTES {
            m.alloc_zeroed_into(g)?;
        }
        Ok(())
    })
}

fn drive(p: &Params, heap: &Heap, m: &mut Mutator) -> Res<WorkloadOutput> {
    let n = p.nodes();
    let chunks = n.div_ceil(CHUNK);
    let chunk_len = |c: usize| CHUNK.min(n - c * CHUNK);
    // The old set: every chunk array first, then the nodes in index order.
    let top = m.alloc_array::<OwChunk>(chunks)?;
    for c in 0..chunks {
        m.scope(|m| -> Res<()> {
            let nodes = m.alloc_array::<OwNode>(chunk_len(c))?;
            let chunk = m.alloc_init(OwChunk { nodes: Some(nodes) })?;
            Ok(m.array_set(top, c, Some(chunk))?)
        })?;
    }
    for c in 0..chunks {
        m.scope(|m| -> Res<()> {
            let chunk = m.array_get(top, c)?.expect("set above");
            let nodes = m.get(chunk, OwChunk::NODES)?.expect("set above");
            let mut prev = None;
            for j in 0..chunk_len(c) {
                let i = c * CHUNK + j;
                let node = m.alloc_init(OwNode {
                    young: None,
                    next: prev,
                    id: i as u64,
                    payload: payload(i),
                })?;
                m.array_set(nodes, j, Some(node))?;
                prev = Some(node);
            }
            Ok(())
        })?;
    }
    m.collect();
    m.wait_idle();
    let setup_cycles = heap.stats().cycles as usize;

    let k = p.writes_per_round();
    let stride = n.checked_div(k).unwrap_or(n);
    let mut last = vec![0u32; n];
    let mut written: Vec<usize> = Vec::new();
    let mut hist = latency_histogram();
    let half = (p.garbage_mib << 20) / 2;
    let start = Instant::now();
    for round in 0..p.rounds {
        // The previous round's young objects, after the cycle since.
        m.view(|v| -> Res<()> {
            let top = v.get(top)?;
            written
                .iter()
                .try_for_each(|&i| check_node(top, i, last[i], false))
        })?;
        let offset = (mix(round as u64) % stride as u64) as usize;
        written = (0..k).map(|j| offset + j * stride).collect();
        m.scope(|m| -> Res<()> {
            garbage(m, half)?;
            let leaves = m.alloc_array::<OwLeaf>(k)?;
            for (j, &i) in written.iter().enumerate() {
                m.scope(|m| -> Res<()> {
                    let leaf = m.alloc_init(OwLeaf {
                        node: i as u64,
                        round: round as u64,
                        check: leaf_check(i, round),
                    })?;
                    Ok(m.array_set(leaves, j, Some(leaf))?)
                })?;
            }
            let t = Instant::now();
            m.view(|v| -> Res<()> {
                let (top, leaves) = (v.get(top)?, v.get(leaves)?);
                for (j, &i) in written.iter().enumerate() {
                    let node = node_at(top, i)?;
                    v.set(node, OwNode::YOUNG, leaves.at(j)?);
                }
                Ok(())
            })?;
            record_us(&mut hist, t.elapsed());
            garbage(m, half)
        })?;
        for &i in &written {
            last[i] = round as u32 + 1;
        }
        m.collect_young();
    }
    m.view(|v| -> Res<()> {
        let top = v.get(top)?;
        (0..n).try_for_each(|i| check_node(top, i, last[i], true))
    })?;
    let stats = finish(m)?;
    let wall = start.elapsed();
    let cycles = stats.recent[setup_cycles.min(stats.recent.len())..].to_vec();
    let young: Vec<_> = cycles.iter().filter(|c| c.young).collect();
    let mut builders: Vec<&str> = young
        .iter()
        .filter_map(|c| c.remembered_set.map(RememberedSet::name))
        .collect();
    builders.sort_unstable();
    builders.dedup();
    let dirty =
        young.iter().map(|c| c.remembered_pages).sum::<usize>() as f64 / young.len().max(1) as f64;
    let stored = last.iter().filter(|&&r| r > 0).count();
    Ok(WorkloadOutput {
        wall,
        cycles: cycles.clone(),
        op_latency_us: Some(hist),
        check: format!(
            "{n} nodes on {} pages; {k} pages written per round x {} rounds; {} young cycles \
             ({}), {} full; {dirty:.0} remembered pages per young cycle; {stored} young \
             objects verified",
            p.node_pages(),
            p.rounds,
            young.len(),
            if builders.is_empty() {
                "-".to_string()
            } else {
                builders.join("+")
            },
            cycles.len() - young.len(),
        ),
        heap: Some(stats),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_and_rates_are_checked() {
        let p = Params {
            rate: 0.5,
            ..Params::quick()
        };
        assert_eq!(p.to_spec(), "rate=0.5,old=16,rounds=10,garbage=2");
        assert_eq!(Params::parse_spec(&p.to_spec()), Ok(p));
        assert_eq!(Params::parse_spec("rate=50").unwrap().rate, 50.0);
        assert!(Params::parse_spec("rate=101").is_err());
        assert!(Params::parse_spec("rate=-1").is_err());
        assert!(Params::parse_spec("rounds=0").is_err());
        assert!(Params::parse_spec("pages=3").is_err());
    }

    #[test]
    fn writes_per_round_is_the_rate_of_the_pages() {
        let p = Params::default();
        assert_eq!(p.nodes(), (64 << 20) / 40);
        assert_eq!(p.node_pages(), 16_384);
        assert_eq!(p.writes_per_round(), 1638);
        let at = |rate| Params { rate, ..p }.writes_per_round();
        assert_eq!(
            (at(0.0), at(1.0), at(50.0), at(100.0)),
            (0, 164, 8192, 16_384)
        );
        assert_eq!(at(0.0001), 1, "a positive rate writes something");
        // Spread so that no two writes share a page.
        assert!(p.nodes() / at(50.0) * NODE_BYTES >= PAGE);
    }

    /// A tiny run with each builder: the data verifies, and the young
    /// cycles ran with the builder asked for (or, for write-protect where
    /// the kernel does not offer it, the cards it fell back to), each with
    /// a remembered set.
    #[test]
    fn tiny_runs_verify_with_both_builders() {
        for (builder, strategy) in [
            (RememberedSet::Cards, Strategy::StopTheWorld),
            (RememberedSet::WriteProtect, Strategy::StopTheWorld),
            (RememberedSet::Cards, Strategy::ConcurrentMove),
            (RememberedSet::WriteProtect, Strategy::ConcurrentMove),
        ] {
            let p = Params::tiny();
            let out = run(&p, strategy, FaultMode::Sigbus, builder)
                .unwrap_or_else(|e| panic!("{builder:?} {strategy:?}: {e}"));
            assert!(
                out.check.ends_with("young objects verified"),
                "{}",
                out.check
            );
            let young: Vec<_> = out.cycles.iter().filter(|c| c.young).collect();
            assert!(
                young.len() >= p.rounds - 1,
                "{builder:?}: {} young cycles of {}: {}",
                young.len(),
                out.cycles.len(),
                out.check
            );
            for c in &young {
                let used = c.remembered_set.expect("a young cycle has a builder");
                assert!(
                    used == builder || used == RememberedSet::Cards,
                    "{builder:?} ran as {used:?}"
                );
                assert!(c.remembered_pages > 0, "{builder:?}: {}", out.check);
                if used == RememberedSet::WriteProtect {
                    assert!(c.written_pages > 0, "{builder:?}: {}", out.check);
                }
            }
            assert_eq!(
                out.op_latency_us.as_ref().map(|h| h.len()),
                Some(p.rounds as u64)
            );
        }
    }
}
