//! The fragmenter workload: how the collector copes with a long-lived
//! random object graph whose objects are replaced a few at a time, so that
//! the dead objects are scattered over the whole heap in holes of mixed
//! sizes (a non-moving heap would be full of holes of the wrong size; a
//! compacting one has to move most of the survivors every cycle). It
//! measures the wall time of the run, every collection's statistics, and
//! the latency of each batch of replacements.
//!
//! **Graph.** A table of `objects` slots (a chunked reference array, see
//! `Table`, itself in the heap and moved like everything else) holds one
//! object per slot. An object with id `id` (ids are `1, 2, ..` in
//! allocation order) is a record of one of [`LAYOUTS`] (32 to 64 bytes,
//! 0 to 4 reference fields), chosen by a hash of its id; its data is the id
//! followed by payload words derived from the id ([`fill`]), and each
//! reference field points to the object then in a uniformly random slot.
//! When a slot is **replaced**, its old object has its references cleared
//! and the slot gets a new object with fresh random references. The old
//! object stays alive as long as some current object still refers to it (a
//! "zombie": a leaf, since its references were cleared, so a zombie never
//! keeps other zombies alive and the live set stays bounded at about
//! `1.6 × objects` objects); objects therefore die at random ages.
//!
//! **Run.** [`run`] builds a heap (capacity [`Params::capacity`], no CPU
//! target unless `gc_cpu_target_pct` says so, growth
//! factor 1 and `min_free` = `min_free_mib`, so a collection starts after
//! every `min_free_mib` MiB allocated, in the heap's strategy: concurrent
//! cycles compact while this mutator keeps replacing), fills the table,
//! then runs `rounds` rounds, each replacing `replace × objects` uniformly
//! random slots in batches of `batch`; each batch is one timed operation of
//! [`WorkloadOutput::op_latency_us`]. Each replacement also reads the id of
//! the old object and of every new target and checks them, so random pages
//! are touched while a concurrent compaction runs. `wall` covers building,
//! the rounds and waiting for the last concurrent cycle to end.
//!
//! **Verification.** A shadow of the graph lives outside the heap: per slot
//! the expected id and the ids of its targets. At the end every slot's
//! object must have its id, tag, size and payload; every reference must
//! lead to an object with the recorded id (null where none was recorded),
//! whose contents are checked too, and a zombie's references must all be
//! null. A digest of everything read from the heap (slot, id, data bytes,
//! target ids) must equal the digest computed from the shadow alone.

use std::time::{Duration, Instant};

use fastrand::Rng;
use hdrhistogram::Histogram;
use movegc::FaultMode;
use movegc::{Heap, HeapStats, Layout, Local, Mutator, Strategy};

use crate::compact::mix;
use crate::record::WorkloadOutput;
use crate::spec::Spec;

/// Embedder tag of layout 0; layout `i` has tag `TAG_BASE + i`.
pub const TAG_BASE: u16 = 0xF700;
/// Embedder tag of the table's reference arrays.
pub const TABLE_TAG: u16 = 0xF7F0;
/// The object shapes as (size in bytes, reference fields). Each holds at
/// least two data words (id and one payload word).
pub const LAYOUTS: [(usize, usize); 17] = [
    (32, 0),
    (32, 1),
    (40, 0),
    (40, 1),
    (40, 2),
    (48, 0),
    (48, 1),
    (48, 2),
    (48, 3),
    (56, 0),
    (56, 1),
    (56, 2),
    (56, 3),
    (56, 4),
    (64, 0),
    (64, 2),
    (64, 4),
];
/// Most reference fields of any layout.
pub const MAX_REFS: usize = 4;

/// What to run. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Table slots (current objects).
    pub objects: usize,
    /// Rounds of replacement.
    pub rounds: usize,
    /// Fraction of `objects` replaced per round, in `(0, 1]`.
    pub replace: f64,
    /// Replacements per timed operation.
    pub batch: usize,
    /// MiB allocated between two collections (the heap's `min_free`; the
    /// growth factor is 1).
    pub min_free_mib: usize,
    /// Seed of the random choices.
    pub seed: u64,
    /// Heap capacity in MiB; 0: [`capacity`](Self::capacity)'s wide
    /// margin. A tight capacity shows pacing and allocation stalls.
    pub capacity_mib: usize,
    /// The heap's `gc_cpu_target` in percent; 0 (the default): none, the
    /// budget stays `min_free_mib`, so a collection starts every
    /// `min_free_mib` MiB as this workload is designed around.
    pub gc_cpu_target_pct: u32,
    /// The heap's `concurrent_gc_threads`; 0 (the default): the heap's
    /// own default (all of the collector's threads).
    pub conc_threads: usize,
    /// The heap's `pacing_max_delay` in milliseconds; 0: no pacing.
    pub pacing_ms: u64,
}

impl Default for Params {
    /// The default-suite size: 200 000 objects (about 17 MiB live with
    /// the zombies and the table), 40 rounds of 20 % (1.6 M replacements,
    /// about 77 MiB allocated), a collection every 6 MiB (about 13).
    fn default() -> Self {
        Params {
            objects: 200_000,
            rounds: 40,
            replace: 0.2,
            batch: 256,
            min_free_mib: 6,
            seed: 0xF4A6,
            capacity_mib: 0,
            gc_cpu_target_pct: 0,
            conc_threads: 0,
            pacing_ms: 10,
        }
    }
}

impl Params {
    /// The smoke size: 20 000 objects, 30 rounds of 25 % (150 000
    /// replacements, about 7 MiB allocated), a collection every MiB.
    pub fn quick() -> Params {
        Params {
            objects: 20_000,
            rounds: 30,
            replace: 0.25,
            batch: 128,
            min_free_mib: 1,
            ..Params::default()
        }
    }

    /// Replacements per round.
    pub fn per_round(&self) -> usize {
        ((self.objects as f64 * self.replace).ceil() as usize).max(1)
    }

    /// Heap capacity: room for the table, the current objects, their
    /// zombies and garbage between collections, with a wide margin.
    pub fn capacity(&self) -> usize {
        if self.capacity_mib > 0 {
            return self.capacity_mib << 20;
        }
        let bytes = self.objects * 224 + ((4 * self.min_free_mib) << 20) + (32 << 20);
        bytes.next_multiple_of(2 << 20)
    }

    /// The parameters as a [`Spec`] (every key, in a fixed order).
    pub fn spec(&self) -> Spec {
        Spec::new()
            .with("objects", self.objects)
            .with("rounds", self.rounds)
            .with("replace", self.replace)
            .with("batch", self.batch)
            .with("min_free_mib", self.min_free_mib)
            .with("seed", self.seed)
            .with("capacity_mib", self.capacity_mib)
            .with("gc_cpu_target_pct", self.gc_cpu_target_pct)
            .with("conc_threads", self.conc_threads)
            .with("pacing_ms", self.pacing_ms)
    }

    /// The keys of a [`Spec`] read over `d`'s values (`from_spec`, made
    /// by `spec_io!`, checks the key names and validates).
    fn read_spec(s: &Spec, d: &Params) -> Result<Params, String> {
        Ok(Params {
            objects: s.value_or("objects", d.objects)?,
            rounds: s.value_or("rounds", d.rounds)?,
            replace: s.value_or("replace", d.replace)?,
            batch: s.value_or("batch", d.batch)?,
            min_free_mib: s.value_or("min_free_mib", d.min_free_mib)?,
            seed: s.value_or("seed", d.seed)?,
            capacity_mib: s.value_or("capacity_mib", d.capacity_mib)?,
            gc_cpu_target_pct: s.value_or("gc_cpu_target_pct", d.gc_cpu_target_pct)?,
            conc_threads: s.value_or("conc_threads", d.conc_threads)?,
            pacing_ms: s.value_or("pacing_ms", d.pacing_ms)?,
        })
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=1 << 28).contains(&self.objects) {
            return Err(format!("objects {} must be in 2..=2^28", self.objects));
        }
        if self.rounds == 0 {
            return Err("rounds must be at least 1".into());
        }
        if !(self.replace > 0.0 && self.replace <= 1.0) {
            return Err(format!("replace {} must be in (0, 1]", self.replace));
        }
        if self.batch == 0 {
            return Err("batch must be at least 1".into());
        }
        if self.gc_cpu_target_pct >= 100 {
            return Err(format!(
                "gc_cpu_target_pct {} must be below 100",
                self.gc_cpu_target_pct
            ));
        }
        if self.capacity_mib != 0 && !(4..=1 << 20).contains(&self.capacity_mib) {
            return Err(format!(
                "capacity_mib {} must be 0 (computed) or in 4..=2^20",
                self.capacity_mib
            ));
        }
        if self.conc_threads > 64 {
            return Err(format!(
                "conc_threads {} must be 0 (the heap's default) or in 1..=64",
                self.conc_threads
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

/// Runs the fragmenter (see the module docs) on a new heap with `strategy`
/// and `fault_mode`, verifies the graph, and returns the measurements.
/// `Err` describes a failed check or a heap error.
pub fn run(
    p: &Params,
    strategy: Strategy,
    fault_mode: FaultMode,
) -> Result<WorkloadOutput, String> {
    run_inner(p, strategy, fault_mode, false)
}

/// Like [`run`], but overwrites one data byte of one current object in the
/// heap just before the verification, which must then fail: a test of the
/// verifier. Returns what `run` would (an `Err` if the corruption was
/// caught).
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
    let mut builder = Heap::builder();
    if p.conc_threads > 0 {
        builder = builder.concurrent_gc_threads(p.conc_threads);
    }
    let heap = builder
        .capacity(p.capacity())
        .min_free(p.min_free_mib << 20)
        .growth_factor(1.0)
        .pacing_max_delay((p.pacing_ms > 0).then(|| Duration::from_millis(p.pacing_ms)))
        .gc_cpu_target((p.gc_cpu_target_pct > 0).then(|| f64::from(p.gc_cpu_target_pct) / 100.0))
        .strategy(strategy)
        .fault_mode(fault_mode)
        .verify(false)
        .build()
        .map_err(|e| format!("creating the heap: {e}"))?;
    let mut m = heap.attach().map_err(|e| e.to_string())?;
    let r = m.scope(|m| -> Res<WorkloadOutput> {
        let layouts = layouts();
        let mut rng = Rng::with_seed(p.seed);
        let start = Instant::now();
        let mut g = Graph::build(m, p.objects, &layouts, &mut rng)?;
        let mut hist = latency_histogram();
        let per_round = p.per_round();
        for _ in 0..p.rounds {
            let mut left = per_round;
            while left > 0 {
                let n = left.min(p.batch);
                let t = Instant::now();
                for _ in 0..n {
                    let slot = rng.usize(..p.objects);
                    g.replace(m, slot, &layouts, &mut rng)?;
                }
                record_us(&mut hist, t.elapsed());
                left -= n;
                m.safepoint();
            }
        }
        let stats = finish(m)?;
        let cycles = stats.recent.clone();
        let wall = start.elapsed();
        if corrupt {
            g.corrupt(m, p.objects / 2)?;
        }
        let digest = g.verify(m)?;
        let replaced = (per_round * p.rounds) as u64;
        let check = format!(
            "{} objects, {} replaced, {} zombies reachable, digest {digest:016x}",
            p.objects, replaced, g.zombies
        );
        Ok(WorkloadOutput {
            wall,
            cycles,
            op_latency_us: Some(hist),
            check,
            heap: Some(stats),
        })
    });
    Ok(r?)
}

/// The record layouts of [`LAYOUTS`], tagged `TAG_BASE + index`.
fn layouts() -> Vec<Layout> {
    LAYOUTS
        .iter()
        .enumerate()
        .map(|(i, &(size, refs))| {
            let l = Layout::record(TAG_BASE + i as u16, refs, size - 8 - 8 * refs)
                .expect("a valid record layout");
            debug_assert_eq!(l.size(), size);
            l
        })
        .collect()
}

/// The index into [`LAYOUTS`] of the object with id `id`.
pub fn layout_of(id: u64) -> usize {
    (mix(id ^ 0x7a61_6d62_6965) % LAYOUTS.len() as u64) as usize
}

/// Data word `j` of the object with id `id`: the id itself for `j = 0`,
/// then payload derived from it.
pub fn data_word(id: u64, j: usize) -> u64 {
    if j == 0 {
        id
    } else {
        mix(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ j as u64)
    }
}

/// Fills `data` (a multiple of 8 bytes) with the data of object `id`.
pub fn fill(data: &mut [u8], id: u64) {
    for (j, w) in data.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&data_word(id, j).to_le_bytes());
    }
}

/// Whether `data` is exactly what [`fill`] writes for `id`.
pub fn data_ok(data: &[u8], id: u64) -> bool {
    data.len() % 8 == 0
        && data
            .chunks_exact(8)
            .enumerate()
            .all(|(j, w)| u64::from_le_bytes(w.try_into().expect("8 bytes")) == data_word(id, j))
}

/// One step of the digest: order-sensitive mixing.
fn fold(h: u64, x: u64) -> u64 {
    mix(h ^ x).wrapping_add(0x9e37_79b9_7f4a_7c15)
}

/// Digest of a data slice.
fn fold_bytes(mut h: u64, data: &[u8]) -> u64 {
    for w in data.chunks(8) {
        let mut b = [0u8; 8];
        b[..w.len()].copy_from_slice(w);
        h = fold(h, u64::from_le_bytes(b));
    }
    h
}

/// Per slot of the shadow graph: expected id and target ids (0 = null).
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    id: u64,
    targets: [u64; MAX_REFS],
}

/// The heap graph and its shadow.
struct Graph {
    table: Table,
    shadow: Vec<Slot>,
    next_id: u64,
    /// Distinct zombies reached by the last verification.
    zombies: usize,
}

impl Graph {
    /// Fills a new table of `n` slots; the references of the object in slot
    /// `i` point to objects of slots below `i`.
    fn build(m: &mut Mutator, n: usize, layouts: &[Layout], rng: &mut Rng) -> Res<Graph> {
        let table = Table::new(m, n, TABLE_TAG)?;
        let mut g = Graph {
            table,
            shadow: vec![Slot::default(); n],
            next_id: 1,
            zombies: 0,
        };
        for i in 0..n {
            m.scope(|m| g.install(m, i, i, layouts, rng))?;
        }
        Ok(g)
    }

    /// Allocates a new object into slot `i` whose references point to
    /// random slots below `range` (none if `range` is 0).
    fn install(
        &mut self,
        m: &mut Mutator,
        i: usize,
        range: usize,
        layouts: &[Layout],
        rng: &mut Rng,
    ) -> Res<()> {
        let id = self.next_id;
        self.next_id += 1;
        let li = layout_of(id);
        let obj = m.alloc(&layouts[li])?;
        m.with_bytes_mut(obj, |d| fill(d, id))?;
        let mut targets = [0u64; MAX_REFS];
        for (k, target) in targets.iter_mut().enumerate().take(LAYOUTS[li].1) {
            if range == 0 {
                continue;
            }
            let t = rng.usize(..range);
            let want = self.shadow[t].id;
            let o = self.table.get(m, t)?;
            let found = m.read_u64(o, 0)?;
            if found != want {
                return Err(Fail::Check(format!(
                    "slot {t} holds object {found}, expected {want}"
                )));
            }
            m.set_ref(obj, k, Some(o))?;
            *target = want;
        }
        self.table.set(m, i, Some(obj))?;
        self.shadow[i] = Slot { id, targets };
        Ok(())
    }

    /// Replaces the object of slot `i`: checks the old one's id, clears its
    /// references (it becomes a zombie leaf) and installs a new one.
    fn replace(&mut self, m: &mut Mutator, i: usize, layouts: &[Layout], rng: &mut Rng) -> Res<()> {
        m.scope(|m| {
            let old = self.table.get(m, i)?;
            let want = self.shadow[i].id;
            let found = m.read_u64(old, 0)?;
            if found != want {
                return Err(Fail::Check(format!(
                    "slot {i} holds object {found}, expected {want}"
                )));
            }
            for k in 0..LAYOUTS[layout_of(want)].1 {
                m.set_ref(old, k, None)?;
            }
            let n = self.shadow.len();
            self.install(m, i, n, layouts, rng)
        })
    }

    /// Flips a byte of the last data word of slot `i`'s object.
    fn corrupt(&mut self, m: &mut Mutator, i: usize) -> Res<()> {
        m.scope(|m| {
            let o = self.table.get(m, i)?;
            m.with_bytes_mut(o, |d| {
                let last = d.len() - 1;
                d[last] ^= 0x20;
            })?;
            Ok(())
        })
    }

    /// Checks an object against the shadow's id; returns the digest step of
    /// its data as read from the heap.
    fn check_object(m: &mut Mutator, o: Local, id: u64, what: &str) -> Res<u64> {
        let li = layout_of(id);
        let (size, refs) = LAYOUTS[li];
        let tag = m.tag(o)?;
        let found_size = m.size_of(o)?;
        let found_refs = m.len(o)?;
        if tag != TAG_BASE + li as u16 || found_size != size || found_refs != refs {
            return Err(Fail::Check(format!(
                "{what}: object {id} has tag {tag:#x}, {found_size} bytes, {found_refs} refs; \
                 expected tag {:#x}, {size} bytes, {refs} refs",
                TAG_BASE + li as u16
            )));
        }
        let (ok, digest) = m.with_bytes(o, |d| (data_ok(d, id), fold_bytes(0, d)))?;
        if !ok {
            let found = m.read_u64(o, 0)?;
            return Err(Fail::Check(format!(
                "{what}: object {id} (id word {found}) has wrong data"
            )));
        }
        Ok(digest)
    }

    /// The full verification (see the module docs); returns the digest.
    fn verify(&mut self, m: &mut Mutator) -> Res<u64> {
        let mut current = vec![false; self.next_id as usize];
        for s in &self.shadow {
            current[s.id as usize] = true;
        }
        let mut zombie_seen = vec![false; self.next_id as usize];
        let mut heap_digest = 0u64;
        for i in 0..self.shadow.len() {
            let s = self.shadow[i];
            heap_digest = m.scope(|m| -> Res<u64> {
                let o = self.table.get(m, i)?;
                let what = format!("slot {i}");
                let mut h = fold(heap_digest, i as u64);
                h = fold(h, m.read_u64(o, 0)?);
                h = fold(h, Self::check_object(m, o, s.id, &what)?);
                for k in 0..LAYOUTS[layout_of(s.id)].1 {
                    let want = s.targets[k];
                    let Some(t) = m.get_ref(o, k)? else {
                        if want != 0 {
                            return Err(Fail::Check(format!(
                                "{what}: reference {k} is null, expected object {want}"
                            )));
                        }
                        h = fold(h, 0);
                        continue;
                    };
                    let found = m.read_u64(t, 0)?;
                    if found != want {
                        return Err(Fail::Check(format!(
                            "{what}: reference {k} leads to object {found}, expected {want}"
                        )));
                    }
                    h = fold(h, found);
                    h = fold(
                        h,
                        Self::check_object(m, t, want, &format!("{what} ref {k}"))?,
                    );
                    if !current[want as usize] {
                        zombie_seen[want as usize] = true;
                        for z in 0..m.len(t)? {
                            if !m.is_null(t, z)? {
                                return Err(Fail::Check(format!(
                                    "{what}: zombie {want} still has reference {z}"
                                )));
                            }
                        }
                    }
                }
                Ok(h)
            })?;
        }
        self.zombies = zombie_seen.iter().filter(|&&z| z).count();
        let expected = self.expected_digest();
        if heap_digest != expected {
            return Err(Fail::Check(format!(
                "digest of the heap {heap_digest:016x} != digest of the shadow {expected:016x}"
            )));
        }
        Ok(heap_digest)
    }

    /// The digest [`verify`](Self::verify) must find, from the shadow only.
    fn expected_digest(&self) -> u64 {
        let mut h = 0u64;
        let mut buf = [0u8; 64];
        let data = |buf: &mut [u8; 64], id: u64| {
            let (size, refs) = LAYOUTS[layout_of(id)];
            let len = size - 8 - 8 * refs;
            fill(&mut buf[..len], id);
            fold_bytes(0, &buf[..len])
        };
        for (i, s) in self.shadow.iter().enumerate() {
            h = fold(h, i as u64);
            h = fold(h, s.id);
            h = fold(h, data(&mut buf, s.id));
            for &t in &s.targets[..LAYOUTS[layout_of(s.id)].1] {
                h = fold(h, t);
                if t != 0 {
                    h = fold(h, data(&mut buf, t));
                }
            }
        }
        h
    }
}

// ---------------------------------------------------------------------------
// Helpers shared with the suite's other workloads.

/// Elements per chunk of a [`Table`] (8 KiB chunks: moving objects).
pub(crate) const CHUNK: usize = 1024;

/// A table of `len` reference slots in the heap: a reference array of
/// chunks, each a reference array of at most [`CHUNK`] slots, so no part
/// is a (non-moving) large object. The top array is a handle of the scope
/// that created the table.
pub(crate) struct Table {
    top: Local,
    len: usize,
}

impl Table {
    /// A table of `len` null slots, tagged `tag`.
    pub(crate) fn new(m: &mut Mutator, len: usize, tag: u16) -> Res<Table> {
        let chunks = len.div_ceil(CHUNK);
        let top = m.alloc(&Layout::ref_array(tag, chunks)?)?;
        for c in 0..chunks {
            let n = CHUNK.min(len - c * CHUNK);
            m.scope(|m| -> Res<()> {
                let chunk = m.alloc(&Layout::ref_array(tag, n)?)?;
                m.set_ref(top, c, Some(chunk))?;
                Ok(())
            })?;
        }
        Ok(Table { top, len })
    }

    /// The table whose top array is `top` (e.g. from a persistent handle).
    pub(crate) fn from_top(top: Local, len: usize) -> Table {
        Table { top, len }
    }

    /// The handle of the top array.
    pub(crate) fn top(&self) -> Local {
        self.top
    }

    /// The chunk holding slot `i`, as a handle in the current scope.
    fn chunk(&self, m: &mut Mutator, i: usize) -> Res<Local> {
        if i >= self.len {
            return Err(Fail::Check(format!("slot {i} of a table of {}", self.len)));
        }
        m.get_ref(self.top, i / CHUNK)?
            .ok_or_else(|| Fail::Check(format!("table chunk {} is missing", i / CHUNK)))
    }

    /// The object in slot `i` (a handle in the current scope), or `None`.
    pub(crate) fn try_get(&self, m: &mut Mutator, i: usize) -> Res<Option<Local>> {
        let c = self.chunk(m, i)?;
        Ok(m.get_ref(c, i % CHUNK)?)
    }

    /// The object in slot `i`; a null slot is a failed check.
    pub(crate) fn get(&self, m: &mut Mutator, i: usize) -> Res<Local> {
        self.try_get(m, i)?
            .ok_or_else(|| Fail::Check(format!("table slot {i} is null")))
    }

    /// Stores `v` into slot `i`.
    pub(crate) fn set(&self, m: &mut Mutator, i: usize, v: Option<Local>) -> Res<()> {
        let c = self.chunk(m, i)?;
        m.set_ref(c, i % CHUNK, v)?;
        Ok(())
    }
}

/// Why a workload step failed: a heap error or a failed check.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The heap refused an operation.
    Heap(movegc::Error),
    /// The data did not match what was expected.
    Check(String),
}

impl From<movegc::Error> for Fail {
    fn from(e: movegc::Error) -> Fail {
        Fail::Heap(e)
    }
}

impl From<movegc::LayoutError> for Fail {
    fn from(e: movegc::LayoutError) -> Fail {
        Fail::Heap(e.into())
    }
}

impl From<Fail> for String {
    fn from(f: Fail) -> String {
        match f {
            Fail::Heap(e) => format!("heap error: {e}"),
            Fail::Check(s) => format!("verification failed: {s}"),
        }
    }
}

/// Result of a workload step.
pub(crate) type Res<T> = Result<T, Fail>;

/// An empty latency histogram (microseconds, auto-resizing).
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("a valid histogram")
}

/// Records `d` in microseconds. (`record`, not `saturating_record`: the
/// latter clamps to the histogram's current range instead of growing it.)
pub(crate) fn record_us(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

/// Waits (without holding up collections) until no concurrent cycle is
/// running, then returns the heap's statistics, with every cycle of its
/// life so far in `recent`. `Err` if the heap kept fewer than it ran (more
/// than 1024 cycles).
pub(crate) fn finish(m: &mut Mutator) -> Res<HeapStats> {
    let heap = m.heap().clone();
    m.blocking(|| heap.wait_idle())?;
    heap_stats(&heap)
}

/// The statistics of `heap` (it must be idle), with every cycle of its
/// life in `recent`, or `Err` if it ran more than it keeps.
pub(crate) fn heap_stats(heap: &Heap) -> Res<HeapStats> {
    all_cycles_kept(heap.stats())
}

/// `s`, unless the heap no longer keeps every cycle of the run.
pub(crate) fn all_cycles_kept(s: HeapStats) -> Res<HeapStats> {
    if s.recent.len() as u64 != s.cycles {
        return Err(Fail::Check(format!(
            "the run had {} collections; the heap keeps only the last {} (use a larger min_free)",
            s.cycles,
            s.recent.len()
        )));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_their_sizes() {
        for (l, &(size, refs)) in layouts().iter().zip(LAYOUTS.iter()) {
            assert_eq!(l.size(), size);
            assert_eq!(l.header().ref_count(), refs);
            assert!(l.header().data_len() >= 16);
        }
    }

    #[test]
    fn latencies_beyond_the_initial_range_are_kept() {
        let mut h = latency_histogram();
        record_us(&mut h, Duration::from_millis(80));
        record_us(&mut h, Duration::from_micros(3));
        assert!(h.max() >= 79_000, "max {}", h.max());
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn data_round_trips_and_detects_flips() {
        let mut d = [0u8; 40];
        fill(&mut d, 77);
        assert!(data_ok(&d, 77));
        assert!(!data_ok(&d, 78));
        d[39] ^= 1;
        assert!(!data_ok(&d, 77));
    }
}

crate::spec::spec_io!(Params);
