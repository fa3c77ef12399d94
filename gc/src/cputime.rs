//! The collector's CPU time: what its threads, its pauses and the faults
//! mutators resolve themselves cost, against the whole process's CPU time
//! over the same span (`HeapStats::gc_cpu_share`). Reads the kernel's
//! per-thread CPU clocks; no sampling.
//!
//! Long-lived collector threads (the rayon workers) register their thread
//! id and are read through the per-thread clock Linux derives from it.
//! The heap's collector thread adds each job's CPU time (a cycle's
//! marking, its compaction) before the cycle is seen over; the fault
//! handler, which lives for one cycle, adds its own when it ends. A pause run on a mutator
//! thread adds that thread's CPU time over the pause. Everything is reset
//! in a forked child (its process clock starts at zero, and the parent's
//! workers are not its threads).

use std::sync::Mutex;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

/// CPU time of the calling thread so far.
pub(crate) fn thread_now() -> Duration {
    read(ClockId::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of the process so far (every thread, also those that ended).
pub(crate) fn process_now() -> Duration {
    read(ClockId::CLOCK_PROCESS_CPUTIME_ID)
}

fn read(clock: ClockId) -> Duration {
    // A clock of a thread that has exited reads as an error: nothing more.
    clock_gettime(clock).map_or(Duration::ZERO, Duration::from)
}

/// The CPU clock of thread `tid` of this process: Linux's
/// `MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)`, what glibc's
/// `pthread_getcpuclockid` returns.
fn thread_clock(tid: i32) -> ClockId {
    const CPUCLOCK_SCHED: i32 = 2;
    const CPUCLOCK_PERTHREAD: i32 = 4;
    ClockId::from_raw((!tid << 3) | CPUCLOCK_SCHED | CPUCLOCK_PERTHREAD)
}

/// The calling thread's kernel id.
pub(crate) fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

#[derive(Debug)]
struct State {
    /// The process these figures belong to.
    pid: u32,
    /// Process CPU time when the heap was created (or the fork happened).
    process_base: Duration,
    /// CPU time of collector work that is over (ended threads, pauses,
    /// faults resolved by mutators).
    ended: Duration,
    /// Long-lived collector threads, read live.
    workers: Vec<i32>,
}

/// The collector's CPU time of one heap.
#[derive(Debug)]
pub(crate) struct GcCpu(Mutex<State>);

impl Default for GcCpu {
    fn default() -> Self {
        GcCpu(Mutex::new(State::now()))
    }
}

impl State {
    fn now() -> State {
        State {
            pid: std::process::id(),
            process_base: process_now(),
            ended: Duration::ZERO,
            workers: Vec::new(),
        }
    }
}

impl GcCpu {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if g.pid != std::process::id() {
            *g = State::now(); // a forked child starts afresh
        }
        g
    }

    /// Registers the calling thread as a long-lived collector thread.
    pub(crate) fn register_worker(&self) {
        let tid = gettid();
        self.state().workers.push(tid);
    }

    /// Adds collector CPU time spent outside the registered workers.
    pub(crate) fn add(&self, d: Duration) {
        self.state().ended += d;
    }

    /// CPU time of the long-lived collector threads (the workers) plus the
    /// calling thread's, so far: read before and after a phase that the
    /// caller runs with the workers' help, what they spent on it.
    pub(crate) fn workers_and_caller_now(&self) -> Duration {
        let g = self.state();
        g.workers
            .iter()
            .map(|&t| read(thread_clock(t)))
            .sum::<Duration>()
            + thread_now()
    }

    /// `(collector CPU, process CPU)` since the heap was created.
    pub(crate) fn totals(&self) -> (Duration, Duration) {
        let g = self.state();
        let workers: Duration = g.workers.iter().map(|&t| read(thread_clock(t))).sum();
        let process = process_now().saturating_sub(g.process_base);
        (g.ended + workers, process)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(d: Duration) {
        let t = thread_now();
        while thread_now() - t < d {
            std::hint::black_box(0u64);
        }
    }

    #[test]
    fn another_threads_clock_reads_its_cpu_time() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            spin(Duration::from_millis(30));
            tx.send((gettid(), thread_now())).unwrap();
            done_rx.recv().unwrap(); // stay alive while it is read
        });
        let (tid, own) = rx.recv().unwrap();
        let seen = read(thread_clock(tid));
        assert!(seen >= own, "{seen:?} < {own:?}");
        assert!(
            seen < own + Duration::from_millis(20),
            "{seen:?} vs {own:?}"
        );
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn workers_and_collector_jobs_are_counted() {
        let cpu = std::sync::Arc::new(GcCpu::default());
        let (c1, c2) = (cpu.clone(), cpu.clone());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (spun_tx, spun_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            c1.register_worker();
            spin(Duration::from_millis(20));
            spun_tx.send(()).unwrap();
            rx.recv().unwrap(); // stay alive while it is read
        });
        std::thread::spawn(move || {
            // A job on a long-lived thread: its own CPU time is added (the
            // bounds below tell the 50 ms before it apart).
            spin(Duration::from_millis(50));
            let before = thread_now();
            spin(Duration::from_millis(20));
            c2.add(thread_now().saturating_sub(before));
        })
        .join()
        .unwrap();
        // Only collector time counts: this thread's spinning does not, nor
        // the job thread's before its job.
        spin(Duration::from_millis(20));
        spun_rx.recv().unwrap();
        let (gc, process) = cpu.totals();
        assert!(gc >= Duration::from_millis(40), "{gc:?}");
        assert!(gc < Duration::from_millis(80), "{gc:?}");
        assert!(
            process >= gc + Duration::from_millis(20),
            "{process:?} vs {gc:?}"
        );
        tx.send(()).unwrap();
        worker.join().unwrap();
    }
}
