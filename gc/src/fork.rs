//! Surviving `fork()`: resources that belong to one process and must be
//! recreated, not inherited, in a child.
//!
//! A forked child has only the thread that called `fork()`, so the heap's
//! rayon worker pool exists there in name only (jobs sent to it would wait
//! forever), and a userfaultfd descriptor inherited from the parent still
//! operates on the *parent's* address space (`ioctl`s act on the mm that
//! created the descriptor). [`PerProcess`] holds such a value together with
//! the id of the process that created it and hands out a fresh one, made
//! on first use, in any other process. The inherited value is leaked, not
//! dropped: dropping a thread pool whose threads do not exist, or whose
//! locks were held at the moment of the fork, is not safe to attempt.
//!
//! What the embedder must do is in `docs/embedding.md` ("fork()"): no
//! collection may be in flight when the process forks (`wait_idle`).

use std::sync::{Arc, Mutex};

/// A value valid in one process, recreated on first use after a fork.
pub(crate) struct PerProcess<T> {
    slot: Mutex<(u32, Arc<T>)>,
}

impl<T> PerProcess<T> {
    /// `value`, owned by the current process.
    pub(crate) fn new(value: T) -> PerProcess<T> {
        PerProcess {
            slot: Mutex::new((std::process::id(), Arc::new(value))),
        }
    }

    /// The current process's value. In a process other than the one that
    /// made the stored value, `renew` makes a new one from the inherited
    /// one (which is then leaked); if `renew` fails, the error is returned
    /// and the next call tries again.
    pub(crate) fn get<E>(&self, renew: impl FnOnce(&T) -> Result<T, E>) -> Result<Arc<T>, E> {
        let mut g = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let pid = std::process::id();
        if g.0 != pid {
            let fresh = Arc::new(renew(&g.1)?);
            let inherited = std::mem::replace(&mut *g, (pid, fresh));
            std::mem::forget(inherited);
        }
        Ok(g.1.clone())
    }

    /// Whether the stored value was made by this process.
    #[cfg(test)]
    pub(crate) fn is_current(&self) -> bool {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).0 == std::process::id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_process_never_renews() {
        let p = PerProcess::new(7);
        let v = p.get(|_| Err::<i32, ()>(())).unwrap();
        assert_eq!(*v, 7);
        assert!(p.is_current());
    }

    #[test]
    fn another_process_renews_once_and_retries_failures() {
        let p = PerProcess::new(1);
        // Pretend the value was made by another process.
        p.slot.lock().unwrap().0 = u32::MAX;
        assert_eq!(p.get(|_| Err::<i32, &str>("no")), Err("no"));
        assert!(!p.is_current());
        let v = p.get(|old| Ok::<i32, ()>(*old + 1)).unwrap();
        assert_eq!(*v, 2);
        assert!(p.is_current());
        let again = p.get(|_| -> Result<i32, ()> { panic!("renewed twice") });
        assert_eq!(*again.unwrap(), 2);
    }
}
