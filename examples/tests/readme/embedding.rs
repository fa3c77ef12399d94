use movegc::{Gc, Heap, Object};

#[derive(Object)]
struct Node {
    next: Option<Gc<Node>>, // a reference field
    value: u64,             // plain data
}

fn main() -> Result<(), movegc::Error> {
    let heap = Heap::builder().capacity(64 << 20).build()?;
    let mut m = heap.attach()?; // one mutator per thread
    let tail = m.alloc_init(Node { next: None, value: 42 })?;
    let head = m.alloc_init(Node { next: Some(tail), value: 1 })?;
    m.collect(); // objects move; handles follow
    let next = m.get(head, Node::NEXT)?.expect("linked");
    assert_eq!(m.read(next, Node::VALUE)?, 42);
    // A walk with no handles at all: a view holds off safepoints.
    let sum = m.view(|v| -> movegc::Result<u64> {
        let (mut cur, mut sum) = (Some(v.get(head)?), 0);
        while let Some(n) = cur {
            sum += n.read(Node::VALUE);
            cur = n.get(Node::NEXT);
        }
        Ok(sum)
    })?;
    assert_eq!(sum, 43);
    Ok(())
}
