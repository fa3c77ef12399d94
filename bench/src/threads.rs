//! The threads workload: several mutator threads allocating and mutating
//! concurrently while collections run, each with its own [`Mutator`], all
//! writing into one shared structure held through a [`Persistent`] handle.
//! It measures the wall time, every collection (safepoint coordination of
//! several threads, faults of several threads during concurrent cycles)
//! and the latency of each batch of steps.
//!
//! **Objects.** Every object is a record of 32 to 64 bytes whose data is
//! `[id, counter, payload.., check]`: the payload words derive from the id,
//! and `check` is a hash of all the other data words, so an object can be
//! checked on its own ([`data_ok`]). Ids are unique: thread `t` makes ids
//! `(t + 1) << 40 | n`, the setup `1 ..= shared`.
//!
//! **Structures.** The *shared table* (`shared` slots, a chunked reference
//! array) holds one leaf object (no references, [`SHARED_SIZES`]) per
//! slot; slot `s` is written only by thread `s % threads` but read by all.
//! Each thread also has a private *ring* (`ring` slots) of objects of
//! [`RING_LAYOUTS`] (0 to 4 references), each reference pointing to a
//! random current ring object or a random shared object (so rings refer to
//! objects other threads allocated).
//!
//! **Steps.** Each thread attaches, builds its ring, then runs `steps`
//! steps, calling [`Mutator::safepoint`] after each (allocation slow paths
//! poll too): replace a random ring slot's object (its old one, checked,
//! loses its references and lives on as a leaf while others refer to it);
//! increment the counter of a random ring object (rewriting its check);
//! every `shared_every` steps, publish a new object into a random shared
//! slot it owns (initialised, then a release fence, then stored); read a
//! random shared slot of any thread (an acquire fence, then the object is
//! checked). Steps are timed in batches of `batch` for
//! [`WorkloadOutput::op_latency_us`]. `wall` runs from spawning the threads
//! to the last thread's last step.
//!
//! **Verification.** Each thread keeps a shadow outside the heap (per ring
//! slot: id, counter and target ids; per owned shared slot: id). After its
//! steps (other threads may still be running) it checks every ring object
//! against it, its references against the recorded target ids and every
//! target's own data (a replaced ring object must have no references
//! left). After all threads have joined, the main thread checks every
//! shared slot against its owner's shadow. Every object read is checked by
//! its `check` word and its id-derived payload. Any mismatch is an `Err`.

use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use fastrand::Rng;
use hdrhistogram::Histogram;
use movegc::FaultMode;
use movegc::{Heap, Layout, Local, Mutator, Persistent, Strategy};

use crate::compact::mix;
use crate::fragmenter::{finish, latency_histogram, record_us, Fail, Res, Table};
use crate::record::WorkloadOutput;
use crate::spec::Spec;

/// Embedder tag of ring layout 0; ring layout `i` has `RING_TAG_BASE + i`.
pub const RING_TAG_BASE: u16 = 0x7400;
/// Embedder tag of shared objects of size index 0; index `i` has
/// `SHARED_TAG_BASE + i`.
pub const SHARED_TAG_BASE: u16 = 0x7480;
/// Embedder tag of the tables' reference arrays.
pub const TABLE_TAG: u16 = 0x74F0;
/// Ring object shapes as (size in bytes, reference fields); each has at
/// least three data words.
pub const RING_LAYOUTS: [(usize, usize); 15] = [
    (32, 0),
    (40, 0),
    (40, 1),
    (48, 0),
    (48, 1),
    (48, 2),
    (56, 0),
    (56, 1),
    (56, 2),
    (56, 3),
    (64, 0),
    (64, 1),
    (64, 2),
    (64, 3),
    (64, 4),
];
/// Shared object sizes in bytes (no references).
pub const SHARED_SIZES: [usize; 5] = [32, 40, 48, 56, 64];
/// Most reference fields of a ring object.
pub const MAX_REFS: usize = 4;
/// Most mutator threads.
pub const MAX_THREADS: usize = 64;

/// Bits of an id below the thread prefix.
const SEQ_BITS: u32 = 40;

/// What to run. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Mutator threads.
    pub threads: usize,
    /// Ring slots per thread.
    pub ring: usize,
    /// Shared slots (at least `threads`).
    pub shared: usize,
    /// Steps per thread.
    pub steps: usize,
    /// Steps per timed operation.
    pub batch: usize,
    /// A thread publishes into the shared table every this many steps.
    pub shared_every: usize,
    /// MiB allocated between two collections (the heap's `min_free`; the
    /// growth factor is 1).
    pub min_free_mib: usize,
    /// Seed of the random choices (each thread derives its own).
    pub seed: u64,
}

impl Default for Params {
    /// The default-suite size: 2 threads (this machine has 2 cores), rings
    /// of 20 000 objects, 4096 shared slots, 800 000 steps per thread
    /// (about 100 MiB allocated), a collection every 4 MiB (about 25).
    fn default() -> Self {
        Params {
            threads: 2,
            ring: 20_000,
            shared: 4096,
            steps: 800_000,
            batch: 64,
            shared_every: 4,
            min_free_mib: 4,
            seed: 0x7e4d,
        }
    }
}

impl Params {
    /// The smoke size: 2 threads, rings of 2000, 512 shared slots, 100 000
    /// steps per thread (about 12 MiB allocated), a collection every MiB.
    pub fn quick() -> Params {
        Params {
            ring: 2000,
            shared: 512,
            steps: 100_000,
            batch: 32,
            min_free_mib: 1,
            ..Params::default()
        }
    }

    /// Heap capacity: the rings, the shared table and their zombies, and
    /// garbage between collections, with a wide margin.
    pub fn capacity(&self) -> usize {
        let objects = self.threads * self.ring + self.shared;
        let bytes = objects * 256 + ((4 * self.min_free_mib) << 20) + (32 << 20);
        bytes.next_multiple_of(2 << 20)
    }

    /// The parameters as a [`Spec`] (every key, in a fixed order).
    pub fn spec(&self) -> Spec {
        Spec::new()
            .with("threads", self.threads)
            .with("ring", self.ring)
            .with("shared", self.shared)
            .with("steps", self.steps)
            .with("batch", self.batch)
            .with("shared_every", self.shared_every)
            .with("min_free_mib", self.min_free_mib)
            .with("seed", self.seed)
    }

    /// The keys of a [`Spec`] read over `d`'s values (`from_spec`, made
    /// by `spec_io!`, checks the key names and validates).
    fn read_spec(s: &Spec, d: &Params) -> Result<Params, String> {
        Ok(Params {
            threads: s.value_or("threads", d.threads)?,
            ring: s.value_or("ring", d.ring)?,
            shared: s.value_or("shared", d.shared)?,
            steps: s.value_or("steps", d.steps)?,
            batch: s.value_or("batch", d.batch)?,
            shared_every: s.value_or("shared_every", d.shared_every)?,
            min_free_mib: s.value_or("min_free_mib", d.min_free_mib)?,
            seed: s.value_or("seed", d.seed)?,
        })
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return Err(format!(
                "threads {} must be in 1..={MAX_THREADS}",
                self.threads
            ));
        }
        if !(1..=1 << 26).contains(&self.ring) {
            return Err(format!("ring {} must be in 1..=2^26", self.ring));
        }
        if !(self.threads..=1 << 26).contains(&self.shared) {
            return Err(format!(
                "shared {} must be in threads ({})..=2^26",
                self.shared, self.threads
            ));
        }
        if self.steps >= (1 << SEQ_BITS) / 4 {
            return Err(format!("steps {} is too large", self.steps));
        }
        if self.batch == 0 || self.shared_every == 0 {
            return Err("batch and shared_every must be at least 1".into());
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

/// The index into [`RING_LAYOUTS`] of ring object `id`.
pub fn ring_layout_of(id: u64) -> usize {
    (mix(id ^ 0x7269_6e67) % RING_LAYOUTS.len() as u64) as usize
}

/// The index into [`SHARED_SIZES`] of shared object `id`.
pub fn shared_size_of(id: u64) -> usize {
    (mix(id ^ 0x7368_6172_6564) % SHARED_SIZES.len() as u64) as usize
}

/// Payload word `j` (2 ≤ j < last) of object `id`.
fn payload_word(id: u64, j: usize) -> u64 {
    mix(id.wrapping_mul(0xd6e8_feb8_6659_fd93) ^ j as u64)
}

/// The check word of data words `words`.
fn check_of(words: impl Iterator<Item = u64>) -> u64 {
    words.fold(0x5bd1_e995, |h, w| mix(h ^ w).wrapping_add(w))
}

fn words(d: &[u8]) -> impl Iterator<Item = u64> + '_ {
    d.chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
}

/// Writes the data of object `id` with `counter` into `d` (a multiple of
/// 8 bytes, at least 24).
pub fn write_object(d: &mut [u8], id: u64, counter: u64) {
    let n = d.len() / 8;
    for j in 0..n - 1 {
        let w = match j {
            0 => id,
            1 => counter,
            _ => payload_word(id, j),
        };
        d[8 * j..8 * j + 8].copy_from_slice(&w.to_le_bytes());
    }
    let check = check_of(words(&d[..8 * (n - 1)]));
    d[8 * (n - 1)..].copy_from_slice(&check.to_le_bytes());
}

/// Whether `d` is a consistent object with id `id` (and counter `counter`,
/// if given): check word, id and payload.
pub fn data_ok(d: &[u8], id: u64, counter: Option<u64>) -> bool {
    let n = d.len() / 8;
    if n < 3 || d.len() % 8 != 0 {
        return false;
    }
    let w: Vec<u64> = words(d).collect();
    w[n - 1] == check_of(w[..n - 1].iter().copied())
        && w[0] == id
        && counter.is_none_or(|c| w[1] == c)
        && (2..n - 1).all(|j| w[j] == payload_word(id, j))
}

/// Runs the workload (see the module docs) on a new heap with `strategy`
/// and `fault_mode` and verifies it. `Err` describes a failed check, a
/// heap error or a panicked thread.
pub fn run(
    p: &Params,
    strategy: Strategy,
    fault_mode: FaultMode,
) -> Result<WorkloadOutput, String> {
    run_inner(p, strategy, fault_mode, false)
}

/// Like [`run`], but overwrites one data byte of one shared object just
/// before the final check of the shared table, which must then fail: a
/// test of the verifier.
pub fn run_corrupted(
    p: &Params,
    strategy: Strategy,
    fault_mode: FaultMode,
) -> Result<WorkloadOutput, String> {
    run_inner(p, strategy, fault_mode, true)
}

/// What a thread hands back.
struct ThreadOut {
    /// Ids in its shared slots `t, t + threads, ..`.
    owned: Vec<u64>,
    hist: Histogram<u64>,
    /// When its last step ended.
    done: Instant,
    /// Digest of its shadow (ids and counters).
    digest: u64,
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
        .growth_factor(1.0)
        .strategy(strategy)
        .fault_mode(fault_mode)
        .verify(false)
        .build()
        .map_err(|e| format!("creating the heap: {e}"))?;
    let layouts = Layouts::new();
    // The shared table, filled with objects 1..=shared, held persistently;
    // the setup mutator detaches before the threads start.
    let shared = {
        let mut m = heap.attach_named("setup").map_err(|e| e.to_string())?;
        m.scope(|m| -> Res<Persistent> {
            let table = Table::new(m, p.shared, TABLE_TAG)?;
            for s in 0..p.shared {
                m.scope(|m| -> Res<()> {
                    let o = layouts.new_shared(m, s as u64 + 1)?;
                    table.set(m, s, Some(o))
                })?;
            }
            Ok(m.persist(table.top())?)
        })?
    };
    let start = Instant::now();
    let results: Vec<Result<ThreadOut, String>> = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..p.threads)
            .map(|t| {
                let (heap, shared, layouts) = (&heap, &shared, &layouts);
                sc.spawn(move || worker(heap, shared, layouts, p, t))
            })
            .collect();
        workers
            .into_iter()
            .enumerate()
            .map(|(t, w)| {
                w.join()
                    .unwrap_or_else(|_| Err(format!("thread {t} panicked")))
                    .map_err(|e| format!("thread {t}: {e}"))
            })
            .collect()
    });
    let outs = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    let wall = outs
        .iter()
        .map(|o| o.done.saturating_duration_since(start))
        .max()
        .unwrap_or(Duration::ZERO);
    let mut m = heap.attach_named("check").map_err(|e| e.to_string())?;
    let r = m.scope(|m| -> Res<WorkloadOutput> {
        let stats = finish(m)?;
        let cycles = stats.recent.clone();
        let top = m.local(&shared)?;
        let table = Table::from_top(top, p.shared);
        if corrupt {
            m.scope(|m| -> Res<()> {
                let o = table.get(m, p.shared / 2)?;
                m.with_bytes_mut(o, |d| d[9] ^= 0x04)?;
                Ok(())
            })?;
        }
        let mut digest = 0u64;
        for s in 0..p.shared {
            let want = outs[s % p.threads].owned[s / p.threads];
            m.scope(|m| -> Res<()> {
                let o = table.get(m, s)?;
                check_shared(m, o, s, p.threads)?;
                let found = m.read_u64(o, 0)?;
                if found != want {
                    return Err(Fail::Check(format!(
                        "shared slot {s} holds object {found:#x}, its owner wrote {want:#x} last"
                    )));
                }
                Ok(())
            })?;
            digest = mix(digest ^ want);
        }
        let mut hist = latency_histogram();
        for o in &outs {
            hist.add(&o.hist)
                .map_err(|e| Fail::Check(format!("merging histograms: {e}")))?;
            digest = mix(digest ^ o.digest);
        }
        Ok(WorkloadOutput {
            wall,
            cycles,
            op_latency_us: Some(hist),
            check: format!(
                "{} threads x {} steps; rings of {} and {} shared slots verified; digest {digest:016x}",
                p.threads, p.steps, p.ring, p.shared
            ),
            heap: Some(stats),
        })
    });
    Ok(r?)
}

/// The layouts of ring and shared objects, by index.
struct Layouts {
    ring: Vec<Layout>,
    shared: Vec<Layout>,
}

impl Layouts {
    fn new() -> Layouts {
        let record = |tag: u16, size: usize, refs: usize| {
            Layout::record(tag, refs, size - 8 - 8 * refs).expect("a valid record layout")
        };
        Layouts {
            ring: RING_LAYOUTS
                .iter()
                .enumerate()
                .map(|(i, &(size, refs))| record(RING_TAG_BASE + i as u16, size, refs))
                .collect(),
            shared: SHARED_SIZES
                .iter()
                .enumerate()
                .map(|(i, &size)| record(SHARED_TAG_BASE + i as u16, size, 0))
                .collect(),
        }
    }

    /// A new, initialised shared object `id` (not yet published).
    fn new_shared(&self, m: &mut Mutator, id: u64) -> Res<Local> {
        let o = m.alloc(&self.shared[shared_size_of(id)])?;
        m.with_bytes_mut(o, |d| write_object(d, id, 0))?;
        Ok(o)
    }
}

/// Checks a shared object found in slot `slot`: tag, size, contents, and
/// that its id was made by the slot's owner (or the setup).
fn check_shared(m: &mut Mutator, o: Local, slot: usize, threads: usize) -> Res<()> {
    let id = m.read_u64(o, 0)?;
    let si = shared_size_of(id);
    let tag = m.tag(o)?;
    let size = m.size_of(o)?;
    let refs = m.len(o)?;
    if tag != SHARED_TAG_BASE + si as u16 || size != SHARED_SIZES[si] || refs != 0 {
        return Err(Fail::Check(format!(
            "shared slot {slot}: object {id:#x} has tag {tag:#x}, {size} bytes, {refs} refs"
        )));
    }
    let maker = id >> SEQ_BITS;
    let made_right = if maker == 0 {
        id == slot as u64 + 1
    } else {
        maker as usize == slot % threads + 1
    };
    if !made_right || !m.with_bytes(o, |d| data_ok(d, id, Some(0)))? {
        return Err(Fail::Check(format!(
            "shared slot {slot}: object {id:#x} is corrupt or was written by the wrong thread"
        )));
    }
    Ok(())
}

/// Per ring slot of a thread's shadow.
#[derive(Clone, Copy, Debug, Default)]
struct RingSlot {
    id: u64,
    counter: u64,
    targets: [u64; MAX_REFS],
}

/// One thread's state.
struct Worker<'a> {
    p: &'a Params,
    layouts: &'a Layouts,
    t: usize,
    ring: Table,
    shared: Table,
    shadow: Vec<RingSlot>,
    /// Ids of the shared slots `t + k * threads`.
    owned: Vec<u64>,
    next_seq: u64,
    rng: Rng,
}

/// A thread's whole life: attach, build the ring, run the steps, verify
/// the ring.
fn worker(
    heap: &Heap,
    shared: &Persistent,
    layouts: &Layouts,
    p: &Params,
    t: usize,
) -> Result<ThreadOut, String> {
    let mut m = heap
        .attach_named(&format!("worker-{t}"))
        .map_err(|e| e.to_string())?;
    let r = m.scope(|m| -> Res<ThreadOut> {
        let top = m.local(shared)?;
        let shared = Table::from_top(top, p.shared);
        let ring = Table::new(m, p.ring, TABLE_TAG)?;
        let owned = (t..p.shared)
            .step_by(p.threads)
            .map(|s| s as u64 + 1)
            .collect();
        let mut w = Worker {
            p,
            layouts,
            t,
            ring,
            shared,
            shadow: vec![RingSlot::default(); p.ring],
            owned,
            next_seq: 1,
            rng: Rng::with_seed(mix(p.seed ^ (t as u64 + 1))),
        };
        for i in 0..p.ring {
            m.scope(|m| w.install(m, i, i))?;
            m.safepoint();
        }
        let mut hist = latency_histogram();
        let mut step = 0;
        while step < p.steps {
            let n = p.batch.min(p.steps - step);
            let c = Instant::now();
            for _ in 0..n {
                m.scope(|m| w.step(m, step))?;
                m.safepoint();
                step += 1;
            }
            record_us(&mut hist, c.elapsed());
        }
        let done = Instant::now();
        w.verify(m)?;
        let digest = w
            .shadow
            .iter()
            .fold(mix(t as u64), |h, s| mix(h ^ s.id).wrapping_add(s.counter));
        Ok(ThreadOut {
            owned: w.owned,
            hist,
            done,
            digest,
        })
    });
    Ok(r?)
}

impl Worker<'_> {
    fn next_id(&mut self) -> u64 {
        let id = ((self.t as u64 + 1) << SEQ_BITS) | self.next_seq;
        self.next_seq += 1;
        id
    }

    /// The current object of ring slot `i`, checked against the shadow.
    fn ring_object(&self, m: &mut Mutator, i: usize) -> Res<Local> {
        let o = self.ring.get(m, i)?;
        let want = self.shadow[i].id;
        let found = m.read_u64(o, 0)?;
        if found != want {
            return Err(Fail::Check(format!(
                "ring slot {i} holds object {found:#x}, expected {want:#x}"
            )));
        }
        Ok(o)
    }

    /// The object of shared slot `s`, read after an acquire fence (pairs
    /// with the publisher's release fence) and checked.
    fn shared_object(&self, m: &mut Mutator, s: usize) -> Res<Local> {
        let o = self.shared.get(m, s)?;
        fence(Ordering::Acquire);
        check_shared(m, o, s, self.p.threads)?;
        Ok(o)
    }

    /// Allocates a new object into ring slot `i`; its references point to
    /// random ring slots below `range` or random shared slots.
    fn install(&mut self, m: &mut Mutator, i: usize, range: usize) -> Res<()> {
        let id = self.next_id();
        let li = ring_layout_of(id);
        let obj = m.alloc(&self.layouts.ring[li])?;
        m.with_bytes_mut(obj, |d| write_object(d, id, 0))?;
        let mut targets = [0u64; MAX_REFS];
        for (k, target) in targets.iter_mut().enumerate().take(RING_LAYOUTS[li].1) {
            let o = if range > 0 && self.rng.bool() {
                let r = self.rng.usize(..range);
                self.ring_object(m, r)?
            } else {
                let s = self.rng.usize(..self.p.shared);
                self.shared_object(m, s)?
            };
            *target = m.read_u64(o, 0)?;
            m.set_ref(obj, k, Some(o))?;
        }
        self.ring.set(m, i, Some(obj))?;
        self.shadow[i] = RingSlot {
            id,
            counter: 0,
            targets,
        };
        Ok(())
    }

    /// One step (see the module docs).
    fn step(&mut self, m: &mut Mutator, step: usize) -> Res<()> {
        // Replace a ring object.
        let i = self.rng.usize(..self.p.ring);
        let old = self.ring_object(m, i)?;
        for k in 0..m.len(old)? {
            m.set_ref(old, k, None)?;
        }
        self.install(m, i, self.p.ring)?;
        // Bump a counter.
        let j = self.rng.usize(..self.p.ring);
        let o = self.ring_object(m, j)?;
        let (id, counter) = (self.shadow[j].id, self.shadow[j].counter);
        let ok = m.with_bytes_mut(o, |d| {
            let ok = data_ok(d, id, Some(counter));
            write_object(d, id, counter + 1);
            ok
        })?;
        if !ok {
            return Err(Fail::Check(format!(
                "ring slot {j}: object {id:#x} with counter {counter} is corrupt"
            )));
        }
        self.shadow[j].counter += 1;
        // Publish into an owned shared slot.
        if step % self.p.shared_every == 0 {
            let k = self.rng.usize(..self.owned.len());
            let s = self.t + k * self.p.threads;
            let cur = self.shared_object(m, s)?;
            let found = m.read_u64(cur, 0)?;
            if found != self.owned[k] {
                return Err(Fail::Check(format!(
                    "shared slot {s} holds {found:#x}, this thread wrote {:#x} last",
                    self.owned[k]
                )));
            }
            let id = self.next_id();
            let o = self.layouts.new_shared(m, id)?;
            fence(Ordering::Release);
            self.shared.set(m, s, Some(o))?;
            self.owned[k] = id;
        }
        // Read any thread's shared slot.
        let s = self.rng.usize(..self.p.shared);
        self.shared_object(m, s)?;
        Ok(())
    }

    /// Checks the whole ring against the shadow (see the module docs).
    fn verify(&mut self, m: &mut Mutator) -> Res<()> {
        let mut current = vec![false; self.next_seq as usize];
        for s in &self.shadow {
            current[(s.id & ((1 << SEQ_BITS) - 1)) as usize] = true;
        }
        for i in 0..self.p.ring {
            let slot = self.shadow[i];
            m.scope(|m| -> Res<()> {
                let o = self.ring_object(m, i)?;
                let li = ring_layout_of(slot.id);
                let (size, refs) = RING_LAYOUTS[li];
                let tag = m.tag(o)?;
                if tag != RING_TAG_BASE + li as u16 || m.size_of(o)? != size || m.len(o)? != refs {
                    return Err(Fail::Check(format!(
                        "ring slot {i}: object {:#x} has the wrong shape",
                        slot.id
                    )));
                }
                if !m.with_bytes(o, |d| data_ok(d, slot.id, Some(slot.counter)))? {
                    return Err(Fail::Check(format!(
                        "ring slot {i}: object {:#x} (counter {}) is corrupt",
                        slot.id, slot.counter
                    )));
                }
                for (k, &want) in slot.targets[..refs].iter().enumerate() {
                    let t = m.get_ref(o, k)?.ok_or_else(|| {
                        Fail::Check(format!("ring slot {i}: reference {k} is null"))
                    })?;
                    let found = m.read_u64(t, 0)?;
                    let tag = m.tag(t)?;
                    let ok = found == want && m.with_bytes(t, |d| data_ok(d, want, None))?;
                    if !ok {
                        return Err(Fail::Check(format!(
                            "ring slot {i}: reference {k} leads to {found:#x}, expected {want:#x} \
                             (or its data is corrupt)"
                        )));
                    }
                    let own_ring = (RING_TAG_BASE..SHARED_TAG_BASE).contains(&tag);
                    let seq = (want & ((1 << SEQ_BITS) - 1)) as usize;
                    if own_ring && !current[seq] {
                        for z in 0..m.len(t)? {
                            if !m.is_null(t, z)? {
                                return Err(Fail::Check(format!(
                                    "replaced ring object {want:#x} still has reference {z}"
                                )));
                            }
                        }
                    }
                }
                Ok(())
            })?;
            m.safepoint();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_check_themselves() {
        let mut d = [0u8; 40];
        write_object(&mut d, 0x1_0000_0007, 3);
        assert!(data_ok(&d, 0x1_0000_0007, Some(3)));
        assert!(data_ok(&d, 0x1_0000_0007, None));
        assert!(!data_ok(&d, 0x1_0000_0007, Some(4)));
        assert!(!data_ok(&d, 7, None));
        d[20] ^= 1;
        assert!(!data_ok(&d, 0x1_0000_0007, Some(3)));
    }

    #[test]
    fn layouts_have_their_sizes() {
        let l = Layouts::new();
        for (l, &(size, refs)) in l.ring.iter().zip(RING_LAYOUTS.iter()) {
            assert_eq!((l.size(), l.header().ref_count()), (size, refs));
            assert!(l.header().data_len() >= 24);
        }
        for (l, &size) in l.shared.iter().zip(SHARED_SIZES.iter()) {
            assert_eq!((l.size(), l.header().ref_count()), (size, 0));
        }
    }
}

crate::spec::spec_io!(Params);
