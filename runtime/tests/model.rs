//! Model-based property test of the whole embedding API: random sequences
//! of allocations, reference stores and loads, data writes, drops and
//! collections (with a random strategy each time, on a heap with a random
//! fault mode) run on 1-4 threads at once, each thread on its own object
//! graph, and after every collection each thread compares its graph in the
//! heap with a plain Rust model of it: shapes, data bytes, and reference
//! identity (two paths to one model node reach the same heap object).
//!
//! `cargo test -p movegc --test model` runs a bounded number of cases (about
//! a minute); `cargo test -p movegc --test model -- --ignored` runs many
//! more.

use std::collections::HashMap;

use movegc::{FaultMode, Heap, Kind, Layout, Local, Mutator, Strategy as GcStrategy};
use proptest::prelude::*;

/// Root slots per thread (elements of one reference array).
const SLOTS: usize = 12;

#[derive(Clone, Debug)]
enum Shape {
    Record { refs: usize, data: usize },
    RefArray(usize),
    ByteArray(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        slot: usize,
        shape: Shape,
    },
    SetRef {
        dst: usize,
        field: usize,
        src: Option<usize>,
    },
    Load {
        dst: usize,
        src: usize,
        field: usize,
    },
    Write {
        slot: usize,
        offset: usize,
        bytes: Vec<u8>,
    },
    Drop {
        slot: usize,
    },
    Collect(GcStrategy),
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        (0usize..4, 0usize..24).prop_map(|(refs, data)| Shape::Record { refs, data }),
        (0usize..8).prop_map(Shape::RefArray),
        (0usize..40).prop_map(Shape::ByteArray),
        // Large objects (above the 32 KiB threshold), now and then.
        (40_000usize..41_000).prop_map(Shape::ByteArray),
        (5_000usize..5_100).prop_map(Shape::RefArray),
    ]
}

fn strategy() -> impl Strategy<Value = GcStrategy> {
    prop_oneof![
        Just(GcStrategy::ConcurrentMove),
        Just(GcStrategy::ConcurrentCopy),
        Just(GcStrategy::StopTheWorld),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    prop_oneof![
        4 => (slot.clone(), shape()).prop_map(|(slot, shape)| Op::Alloc { slot, shape }),
        4 => (slot.clone(), 0usize..8, proptest::option::of(slot.clone()))
            .prop_map(|(dst, field, src)| Op::SetRef { dst, field, src }),
        2 => (slot.clone(), slot.clone(), 0usize..8)
            .prop_map(|(dst, src, field)| Op::Load { dst, src, field }),
        3 => (slot.clone(), 0usize..48, proptest::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(slot, offset, bytes)| Op::Write { slot, offset, bytes }),
        1 => slot.clone().prop_map(|slot| Op::Drop { slot }),
        1 => strategy().prop_map(Op::Collect),
    ]
}

/// One node of the model graph.
#[derive(Clone, Debug)]
struct Node {
    kind: Kind,
    refs: Vec<Option<usize>>,
    data: Vec<u8>,
}

/// A thread's graph: nodes (never freed: unreachable ones are just not
/// compared) and the root slots.
#[derive(Default)]
struct Model {
    nodes: Vec<Node>,
    roots: [Option<usize>; SLOTS],
}

fn layout(s: &Shape) -> Layout {
    match *s {
        Shape::Record { refs, data } => Layout::record(1, refs, data),
        Shape::RefArray(n) => Layout::ref_array(2, n),
        Shape::ByteArray(n) => Layout::byte_array(3, n),
    }
    .unwrap()
}

/// Runs `ops` on a fresh mutator of `heap`, checking the heap against the
/// model after every collection and at the end.
fn run_thread(heap: &Heap, ops: &[Op]) -> Result<(), String> {
    let mut m = heap.attach().map_err(|e| e.to_string())?;
    let roots = m
        .alloc(&Layout::ref_array(0, SLOTS).unwrap())
        .map_err(|e| e.to_string())?;
    let mut model = Model::default();
    for (i, op) in ops.iter().enumerate() {
        apply(&mut m, roots, &mut model, op).map_err(|e| format!("op {i} {op:?}: {e}"))?;
        if let Op::Collect(_) = op {
            check(&mut m, roots, &model).map_err(|e| format!("after op {i} {op:?}: {e}"))?;
        }
    }
    check(&mut m, roots, &model).map_err(|e| format!("at the end: {e}"))
}

fn apply(m: &mut Mutator, roots: Local, model: &mut Model, op: &Op) -> Result<(), String> {
    let err = |e: movegc::Error| e.to_string();
    m.scope(|m| match op {
        Op::Alloc { slot, shape } => {
            let l = layout(shape);
            let o = m.alloc(&l).map_err(err)?;
            m.set_ref(roots, *slot, Some(o)).map_err(err)?;
            let h = l.header();
            model.nodes.push(Node {
                kind: h.kind(),
                refs: vec![None; h.ref_count()],
                data: vec![0; h.data_len()],
            });
            model.roots[*slot] = Some(model.nodes.len() - 1);
            Ok(())
        }
        Op::SetRef { dst, field, src } => {
            let Some(d) = model.roots[*dst] else {
                return Ok(());
            };
            if *field >= model.nodes[d].refs.len() {
                // Out of range: a typed error, and nothing changes.
                let o = m
                    .get_ref(roots, *dst)
                    .map_err(err)?
                    .expect("model says set");
                return match m.set_ref(o, *field, None) {
                    Err(movegc::Error::Field(_)) => Ok(()),
                    other => Err(format!("out-of-range store gave {other:?}")),
                };
            }
            let o = m
                .get_ref(roots, *dst)
                .map_err(err)?
                .expect("model says set");
            let v = match src {
                Some(s) => m.get_ref(roots, *s).map_err(err)?,
                None => None,
            };
            m.set_ref(o, *field, v).map_err(err)?;
            model.nodes[d].refs[*field] = src.and_then(|s| model.roots[s]);
            Ok(())
        }
        Op::Load { dst, src, field } => {
            let Some(s) = model.roots[*src] else {
                return Ok(());
            };
            let Some(&target) = model.nodes[s].refs.get(*field) else {
                return Ok(());
            };
            let o = m
                .get_ref(roots, *src)
                .map_err(err)?
                .expect("model says set");
            let v = m.get_ref(o, *field).map_err(err)?;
            m.set_ref(roots, *dst, v).map_err(err)?;
            model.roots[*dst] = target;
            Ok(())
        }
        Op::Write {
            slot,
            offset,
            bytes,
        } => {
            let Some(n) = model.roots[*slot] else {
                return Ok(());
            };
            let o = m
                .get_ref(roots, *slot)
                .map_err(err)?
                .expect("model says set");
            let len = model.nodes[n].data.len();
            let fits = offset + bytes.len() <= len;
            match (m.write_bytes(o, *offset, bytes), fits) {
                (Ok(()), true) => {
                    model.nodes[n].data[*offset..offset + bytes.len()].copy_from_slice(bytes);
                    Ok(())
                }
                (Err(movegc::Error::Field(_)), false) => Ok(()),
                (r, _) => Err(format!("write of {len}-byte data gave {r:?}")),
            }
        }
        Op::Drop { slot } => {
            m.set_ref(roots, *slot, None).map_err(err)?;
            model.roots[*slot] = None;
            Ok(())
        }
        Op::Collect(s) => {
            m.collect_with(*s);
            Ok(())
        }
    })
}

/// Walks the heap from the root slots alongside the model.
fn check(m: &mut Mutator, roots: Local, model: &Model) -> Result<(), String> {
    m.scope(|m| {
        let err = |e: movegc::Error| e.to_string();
        let mut seen: HashMap<usize, Local> = HashMap::new();
        let mut stack: Vec<(Local, usize)> = Vec::new();
        for (i, r) in model.roots.iter().enumerate() {
            let h = m.get_ref(roots, i).map_err(err)?;
            match (h, r) {
                (None, None) => {}
                (Some(h), Some(n)) => stack.push((h, *n)),
                _ => return Err(format!("root {i}: heap {h:?}, model {r:?}")),
            }
        }
        while let Some((h, n)) = stack.pop() {
            if let Some(&prev) = seen.get(&n) {
                if !m.same(prev, h).map_err(err)? {
                    return Err(format!("model node {n} reached as two heap objects"));
                }
                continue;
            }
            seen.insert(n, h);
            let node = &model.nodes[n];
            if m.kind(h).map_err(err)? != node.kind {
                return Err(format!("node {n}: kind"));
            }
            if m.data_len(h).map_err(err)? != node.data.len() {
                return Err(format!("node {n}: data length"));
            }
            if node.kind != Kind::ByteArray && m.len(h).map_err(err)? != node.refs.len() {
                return Err(format!("node {n}: reference count"));
            }
            let data = m.with_bytes(h, |b| b.to_vec()).map_err(err)?;
            if data != node.data {
                return Err(format!("node {n}: data {data:?} != {:?}", node.data));
            }
            for (f, r) in node.refs.iter().enumerate() {
                match (m.get_ref(h, f).map_err(err)?, r) {
                    (None, None) => {}
                    (Some(c), Some(cn)) => stack.push((c, *cn)),
                    (c, _) => return Err(format!("node {n} field {f}: heap {c:?}, model {r:?}")),
                }
            }
        }
        Ok(())
    })
}

fn run_case(fault_mode: FaultMode, threads: &[Vec<Op>]) -> Result<(), TestCaseError> {
    let heap = Heap::builder()
        .capacity(24 << 20)
        .min_free(2 << 20)
        .gc_threads(2)
        .fault_mode(fault_mode)
        .verify(true)
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = threads
            .iter()
            .map(|ops| {
                let heap = heap.clone();
                s.spawn(move || run_thread(&heap, ops))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    for (t, r) in results.into_iter().enumerate() {
        r.map_err(|e| TestCaseError::fail(format!("thread {t}: {e}")))?;
    }
    Ok(())
}

fn case() -> impl Strategy<Value = (FaultMode, Vec<Vec<Op>>)> {
    (
        prop_oneof![Just(FaultMode::Sigbus), Just(FaultMode::HandlerThread)],
        proptest::collection::vec(proptest::collection::vec(op(), 1..400), 1..=4),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn heap_matches_the_model((mode, threads) in case()) {
        run_case(mode, &threads)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]
    #[test]
    #[ignore = "long: run with --ignored"]
    fn heap_matches_the_model_long((mode, threads) in case()) {
        run_case(mode, &threads)?;
    }
}
