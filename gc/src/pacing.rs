//! Heap sizing and pacing: how much a program may allocate between
//! collections, and when a concurrent cycle must start so that it ends
//! before the heap is full.
//!
//! **Sizing by a CPU target** (HotSpot's `GCTimeRatio`, Go's `GOGC` as a
//! floor). After each cycle with `L` live bytes the heap may grow to
//! `L + budget`, where `budget` is at least `L * (growth_factor - 1)` and at
//! least the *free budget*. The free budget starts at `min_free` and adapts
//! to the collector's measured share of the process's CPU time since the
//! previous cycle: above `gc_cpu_target` it grows (by the ratio of the
//! share to the target, at most doubling per cycle) up to what the
//! capacity allows; below a third of the target it shrinks by a quarter,
//! never under `min_free`. A program whose live set is small next to its
//! allocation rate thus collects less often, up to the capacity, instead of
//! every `min_free` bytes; one that barely needs the collector keeps a
//! small footprint.
//!
//! **Pacing** (Shenandoah's adaptive heuristic). A concurrent cycle takes
//! time while mutators go on allocating; if it starts when the heap is
//! nearly full, allocations stall until its flip. So the trigger is not
//! only `L + budget`: it is also at most `limit - headroom`, where the
//! headroom is what mutators allocate during one cycle (the recent
//! allocation rate times the recent cycle duration, both averaged) with a
//! 50 % margin, plus one TLAB per thread. The trigger never falls below
//! `L` plus a quarter of the free room (`limit - L`): past that the
//! collector would run back to back without freeing much more.
//!
//! ```text
//!   0          L            trigger          L+budget     limit (capacity)
//!   |==live====|-------------|--------------------|------------|
//!                            ^ start here: the cycle ends before
//!                              `limit` at the recent rate
//! ```
//!
//! **Allocation pacing** (Shenandoah's pacer). When the trigger could not
//! leave enough room (a tight heap, a burst of allocation), mutators would
//! fill the heap before the cycle's flip and then stall for the rest of
//! its marking: one operation waits hundreds of milliseconds. Instead,
//! while a concurrent cycle marks, a thread taking a new TLAB may be
//! delayed a little (at most `pacing_max_delay` per TLAB), so that what
//! mutators allocate during marking grows with the time marking is
//! expected to take (its recent average): a tenth of the room free at the
//! cycle's start at once, then up to nine tenths by the expected end.
//! Sleeping mutators also leave the CPU to the collector. The stall stays
//! as the last resort when the room is gone.
//!
//! ```text
//!   allowed
//!   0.9 room ┤            ________ (past the expected end: each TLAB waits the maximum)
//!            │         __/
//!            │      __/   a thread above the line waits until it is under
//!   0.1 room ┤  ___/      it again, or for pacing_max_delay at most
//!            └──┴─────────┴──── time since the cycle started
//!               0   expected marking time
//! ```
//!
//! Everything here is arithmetic on measurements the heap passes in, so
//! it is tested without a heap.

use std::time::Duration;

/// What the policy measures between cycles (exponentially weighted
/// averages) and the free budget it has settled on.
#[derive(Clone, Debug)]
pub(crate) struct Pacer {
    /// Bytes mutators may allocate after a cycle beyond `live` (before the
    /// growth-factor floor).
    budget: usize,
    /// Averaged allocation rate, bytes per second (`None` before the
    /// first measurement).
    rate: Option<f64>,
    /// Averaged duration of concurrent cycles, seconds.
    cycle_secs: Option<f64>,
    /// Averaged time from a concurrent cycle's start to its flip (its
    /// final pause), seconds: how long allocation pacing spreads over.
    mark_secs: Option<f64>,
    /// `(collector CPU, process CPU)` at the end of the previous cycle.
    last_cpu: (Duration, Duration),
    /// Used bytes after the previous cycle and when it ended.
    last_end: Option<(usize, std::time::Instant)>,
}

/// The settings the policy follows (from `HeapConfig`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PacingConfig {
    /// The heap's capacity.
    pub capacity: usize,
    /// The smallest free budget.
    pub min_free: usize,
    /// `L * (growth_factor - 1)` is the budget's floor.
    pub growth_factor: f64,
    /// The collector's target share of CPU time; `None`: the free budget
    /// stays `min_free`.
    pub gc_cpu_target: Option<f64>,
    /// Whether cycles compact concurrently (pacing applies).
    pub concurrent: bool,
    /// A TLAB's size.
    pub tlab: usize,
}

/// One finished cycle, as the policy sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CycleSample {
    /// Live bytes after it (moving space and large objects).
    pub live: usize,
    /// Used bytes when it started.
    pub used_before: usize,
    /// Used bytes now, after it.
    pub used_after: usize,
    /// Its duration (first pause to its end).
    pub duration: Duration,
    /// From its start to its final pause (concurrent cycles).
    pub to_flip: Duration,
    /// Whether it ran concurrently.
    pub concurrent: bool,
    /// `(collector CPU, process CPU)` now, since the heap was created.
    pub cpu: (Duration, Duration),
    /// Attached mutator threads.
    pub threads: usize,
}

/// The share measured over a span shorter than this is too noisy to act
/// on.
const MIN_SPAN: Duration = Duration::from_millis(5);

/// Weight of the newest sample in the averages.
const ALPHA: f64 = 0.4;

fn ewma(old: Option<f64>, new: f64) -> f64 {
    old.map_or(new, |o| o + ALPHA * (new - o))
}

impl Pacer {
    /// A policy that starts at `min_free`.
    pub(crate) fn new(cfg: &PacingConfig) -> Pacer {
        Pacer {
            budget: cfg.min_free,
            rate: None,
            cycle_secs: None,
            mark_secs: None,
            last_cpu: (Duration::ZERO, Duration::ZERO),
            last_end: None,
        }
    }

    /// The free budget now.
    pub(crate) fn budget(&self) -> usize {
        self.budget
    }

    /// Bytes a heap with `live` live bytes may use before the next cycle,
    /// ignoring pacing (`L + budget`, at least `L * growth_factor`).
    pub(crate) fn goal(&self, cfg: &PacingConfig, live: usize) -> usize {
        let grown = (live as f64 * cfg.growth_factor) as usize;
        grown.max(live + self.budget)
    }

    /// Learns from a finished cycle and returns the used bytes at which
    /// the next one should start.
    pub(crate) fn after_cycle(
        &mut self,
        cfg: &PacingConfig,
        s: &CycleSample,
        now: std::time::Instant,
    ) -> usize {
        // Allocation rate over the span between the previous cycle's end
        // and this one's start.
        if let Some((used, end)) = self.last_end {
            let start = now.checked_sub(s.duration).unwrap_or(now);
            let span = start.saturating_duration_since(end);
            if span >= MIN_SPAN {
                let bytes = s.used_before.saturating_sub(used) as f64;
                self.rate = Some(ewma(self.rate, bytes / span.as_secs_f64()));
            }
        }
        if s.concurrent {
            self.cycle_secs = Some(ewma(self.cycle_secs, s.duration.as_secs_f64()));
            self.mark_secs = Some(ewma(self.mark_secs, s.to_flip.as_secs_f64()));
        }
        // The collector's CPU share since the previous cycle.
        let (gc, process) = s.cpu;
        let d_gc = gc.saturating_sub(self.last_cpu.0);
        let d_process = process.saturating_sub(self.last_cpu.1);
        self.last_cpu = s.cpu;
        self.last_end = Some((s.used_after, now));
        let room = cfg.capacity.saturating_sub(s.live);
        if let Some(target) = cfg.gc_cpu_target {
            if d_process >= MIN_SPAN {
                let share = d_gc.as_secs_f64() / d_process.as_secs_f64();
                self.budget = adapt(self.budget, share, target, cfg.min_free, room);
            }
        }
        self.trigger(cfg, s.live, s.threads)
    }

    /// The used bytes at which the next cycle starts with `live` live
    /// bytes: the goal, paced for concurrent cycles.
    fn trigger(&self, cfg: &PacingConfig, live: usize, threads: usize) -> usize {
        let goal = self.goal(cfg, live).min(cfg.capacity);
        if !cfg.concurrent {
            return goal;
        }
        let (Some(rate), Some(secs)) = (self.rate, self.cycle_secs) else {
            return goal;
        };
        let headroom = (rate * secs * 1.5) as usize + threads.max(1) * cfg.tlab;
        let paced = cfg.capacity.saturating_sub(headroom);
        let floor = live + cfg.capacity.saturating_sub(live) / 4;
        goal.min(paced.max(floor))
    }
}

/// Share of the room free at a cycle's start that mutators may allocate
/// at once, and by the expected end of marking (see the module docs).
const PACE_FIRST: f64 = 0.1;
const PACE_LAST: f64 = 0.9;

impl Pacer {
    /// How long a thread taking a new TLAB waits now, if at all, during the
    /// concurrent marking of a cycle that started `elapsed` ago with
    /// `used_before` bytes in use, `used` bytes being in use now; `max` is
    /// the longest wait per TLAB. `None` before any concurrent cycle has
    /// been measured (nothing to pace by) and when the allocation is
    /// within the allowance.
    pub(crate) fn delay(
        &self,
        cfg: &PacingConfig,
        used_before: usize,
        used: usize,
        elapsed: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let expected = self.mark_secs.filter(|&s| s > 0.0)?;
        let room = cfg.capacity.saturating_sub(used_before) as f64;
        if room <= 0.0 {
            return None;
        }
        let f = (elapsed.as_secs_f64() / expected).min(1.0);
        let allowed = room * (PACE_FIRST + (PACE_LAST - PACE_FIRST) * f);
        let excess = used.saturating_sub(used_before) as f64 - allowed;
        if excess <= 0.0 {
            return None;
        }
        if f >= 1.0 {
            return Some(max);
        }
        // The allowance grows at this many bytes per second.
        let growth = room * (PACE_LAST - PACE_FIRST) / expected;
        Some(Duration::from_secs_f64(excess / growth).min(max))
    }
}

/// The next free budget: grown toward `room` when the collector's CPU
/// `share` is above `target`, shrunk toward `min` when well below.
fn adapt(budget: usize, share: f64, target: f64, min: usize, room: usize) -> usize {
    let b = budget as f64;
    let next = if share > target {
        b * (share / target).min(2.0)
    } else if share < target / 3.0 {
        b * 0.75
    } else {
        b
    };
    (next.round() as usize).min(room.max(min)).max(min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const MIB: usize = 1 << 20;

    fn cfg() -> PacingConfig {
        PacingConfig {
            capacity: 1024 * MIB,
            min_free: 32 * MIB,
            growth_factor: 2.0,
            gc_cpu_target: Some(0.1),
            concurrent: true,
            tlab: 32 << 10,
        }
    }

    #[test]
    fn the_budget_grows_while_the_collector_costs_too_much_and_shrinks_back() {
        assert_eq!(
            adapt(32 * MIB, 0.4, 0.1, 32 * MIB, 1000 * MIB),
            64 * MIB,
            "at most x2"
        );
        assert_eq!(adapt(32 * MIB, 0.15, 0.1, 32 * MIB, 1000 * MIB), 48 * MIB);
        assert_eq!(
            adapt(64 * MIB, 0.08, 0.1, 32 * MIB, 1000 * MIB),
            64 * MIB,
            "near target: kept"
        );
        assert_eq!(
            adapt(64 * MIB, 0.01, 0.1, 32 * MIB, 1000 * MIB),
            48 * MIB,
            "shrinks"
        );
        assert_eq!(
            adapt(40 * MIB, 0.01, 0.1, 32 * MIB, 1000 * MIB),
            32 * MIB,
            "not below min"
        );
        assert_eq!(
            adapt(600 * MIB, 0.9, 0.1, 32 * MIB, 900 * MIB),
            900 * MIB,
            "not past the room"
        );
    }

    /// A program with a small live set and a busy collector: the trigger
    /// moves up cycle after cycle, toward the capacity, as the measured
    /// share stays above target.
    /// Pacing: nothing before a concurrent cycle was measured; within the
    /// allowance, no wait; above it, the time until the allowance catches
    /// up, capped; past the expected marking time, the cap.
    #[test]
    fn allocations_during_marking_wait_in_proportion_to_their_excess() {
        let c = PacingConfig {
            capacity: 110 * MIB,
            ..cfg()
        };
        let max = Duration::from_millis(10);
        let ms = Duration::from_millis;
        let mut p = Pacer::new(&c);
        assert_eq!(
            p.delay(&c, 10 * MIB, 100 * MIB, ms(10), max),
            None,
            "no estimate yet"
        );
        p.mark_secs = Some(1.0);
        // 100 MiB free at the start: 10 MiB at once, +80 MiB per second.
        assert_eq!(p.delay(&c, 10 * MIB, 20 * MIB, ms(0), max), None);
        assert_eq!(
            p.delay(&c, 10 * MIB, 60 * MIB, ms(500), max),
            None,
            "50 <= 10 + 40"
        );
        let d = p
            .delay(&c, 10 * MIB, 52 * MIB, ms(0), Duration::from_secs(1))
            .unwrap();
        assert!(
            (d.as_secs_f64() - 0.4).abs() < 1e-6,
            "32 MiB over at 80 MiB/s: {d:?}"
        );
        assert_eq!(
            p.delay(&c, 10 * MIB, 52 * MIB, ms(0), max),
            Some(max),
            "capped"
        );
        assert_eq!(
            p.delay(&c, 10 * MIB, 52 * MIB, ms(400), max),
            None,
            "42 <= 10 + 32"
        );
        let d = p
            .delay(&c, 10 * MIB, 53 * MIB, ms(400), Duration::from_secs(1))
            .unwrap();
        assert!(
            (d.as_secs_f64() - 1.0 / 80.0).abs() < 1e-6,
            "1 MiB over: {d:?}"
        );
        assert_eq!(
            p.delay(&c, 10 * MIB, 99 * MIB, ms(2000), max),
            None,
            "89 <= 90"
        );
        assert_eq!(
            p.delay(&c, 10 * MIB, 101 * MIB, ms(2000), max),
            Some(max),
            "past the end"
        );
        assert_eq!(
            p.delay(&c, 110 * MIB, 110 * MIB, ms(5), max),
            None,
            "no room: the stall's job"
        );
    }

    #[test]
    fn a_busy_collector_makes_cycles_rarer() {
        let c = PacingConfig {
            concurrent: false,
            ..cfg()
        };
        let mut p = Pacer::new(&c);
        let t0 = Instant::now();
        let mut triggers = Vec::new();
        for i in 1..=6u32 {
            let s = CycleSample {
                live: 10 * MIB,
                used_before: 42 * MIB,
                used_after: 10 * MIB,
                duration: Duration::from_millis(20),
                to_flip: Duration::ZERO,
                concurrent: false,
                // 30 % of the CPU in the collector every interval.
                cpu: (
                    Duration::from_millis(30) * i,
                    Duration::from_millis(100) * i,
                ),
                threads: 1,
            };
            triggers.push(p.after_cycle(&c, &s, t0 + Duration::from_millis(100) * i));
        }
        assert_eq!(triggers[0], 10 * MIB + 64 * MIB, "{triggers:?}");
        assert!(triggers.windows(2).all(|w| w[1] >= w[0]), "{triggers:?}");
        assert_eq!(
            *triggers.last().unwrap(),
            1024 * MIB,
            "up to the capacity: {triggers:?}"
        );
    }

    /// With the collector under its target the budget stays at `min_free`
    /// and the growth factor rules for a large live set.
    #[test]
    fn an_idle_collector_keeps_min_free_and_the_growth_floor() {
        let c = PacingConfig {
            concurrent: false,
            ..cfg()
        };
        let mut p = Pacer::new(&c);
        let s = CycleSample {
            live: 100 * MIB,
            used_before: 200 * MIB,
            used_after: 100 * MIB,
            duration: Duration::from_millis(5),
            to_flip: Duration::ZERO,
            concurrent: false,
            cpu: (Duration::from_millis(1), Duration::from_millis(100)),
            threads: 1,
        };
        assert_eq!(p.after_cycle(&c, &s, Instant::now()), 200 * MIB, "L * 2");
        assert_eq!(p.budget(), 32 * MIB);
    }

    /// A concurrent cycle starts early enough that what mutators allocate
    /// while it runs still fits: capacity minus 1.5 x rate x duration.
    #[test]
    fn concurrent_cycles_start_early_enough_for_the_allocation_rate() {
        let c = PacingConfig {
            gc_cpu_target: None,
            ..cfg()
        };
        let mut p = Pacer::new(&c);
        let t0 = Instant::now();
        // 1000 MiB/s of allocation, 200 ms cycles: 300 MiB of headroom.
        let sample = |used_before| CycleSample {
            live: 500 * MIB,
            used_before,
            used_after: 500 * MIB,
            duration: Duration::from_millis(200),
            to_flip: Duration::ZERO,
            concurrent: true,
            cpu: (Duration::ZERO, Duration::ZERO),
            threads: 2,
        };
        p.after_cycle(&c, &sample(600 * MIB), t0);
        // 0.5 s later (0.3 s of allocation after the 0.2 s cycle) 300 MiB
        // more were in use when the next cycle started.
        let at = p.after_cycle(&c, &sample(800 * MIB), t0 + Duration::from_millis(500));
        let headroom = 300 * MIB + 2 * (32 << 10);
        assert!(at.abs_diff(1024 * MIB - headroom) < MIB, "{} MiB", at / MIB);
        // The goal alone (L * 2) would have been 1000 MiB.
        assert_eq!(p.goal(&c, 500 * MIB), 1000 * MIB);
        // Far more than the capacity can absorb: not below L + room / 4.
        let mut q = p.clone();
        q.rate = Some(1e12);
        assert_eq!(q.trigger(&c, 500 * MIB, 2), 500 * MIB + 524 * MIB / 4);
        // Stop-the-world cycles are not paced.
        let stw = PacingConfig {
            concurrent: false,
            ..c
        };
        assert_eq!(p.trigger(&stw, 500 * MIB, 2), 1000 * MIB);
    }
}
