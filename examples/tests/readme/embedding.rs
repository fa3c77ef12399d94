use movegc::{Heap, Layout};

fn main() -> Result<(), movegc::Error> {
    let heap = Heap::builder().capacity(64 << 20).build()?;
    let mut m = heap.attach()?;                       // one mutator per thread
    let node = Layout::record(0, 1, 8)?;              // 1 reference field, 8 data bytes
    let head = m.alloc(&node)?;
    let next = m.alloc(&node)?;
    m.write_u64(next, 0, 42)?;
    m.set_ref(head, 0, Some(next))?;
    m.collect();                                      // objects move; handles follow
    let next = m.get_ref(head, 0)?.expect("linked");
    assert_eq!(m.read_u64(next, 0)?, 42);
    Ok(())
}
