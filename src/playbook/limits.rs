//! Resource bounds of one playbook run that Rhai's own limits do not give: memory and CPU time.
//!
//! Rhai (1.27, the newest release; its repository's history shows no change here) checks sizes
//! per value and only where it remembers to: a map grown by index assignment
//! (`m["k" + i] = big`), map keys (never measured) and arguments captured by `curry` escape the
//! check, and nothing bounds the *sum* of many values a script keeps alive. Patching each hole
//! would leave the next one open, so the bound is enforced at the root: the allocator.
//!
//! [`CountingAlloc`] wraps the system allocator and, on a thread where a run is metered, adds
//! every allocation's size to a thread-local counter and subtracts every free. The playbook
//! engine's progress hook (called by Rhai before every operation) reads that counter — one
//! thread-local load — and stops the run once it exceeds `playbook.max_memory`. Every Rhai
//! value is built on the run's own thread, so whatever shape a script builds is counted; a
//! single operation is bounded by Rhai's per-value limits (1 MiB strings, 10,000-element arrays
//! and maps), so the overshoot past the cap is at most one such value (or one doubling of a
//! curried function pointer). On threads that are not running a playbook the wrapper costs one
//! thread-local flag test per allocation; on a playbook thread one more thread-local add (see
//! README.md, `## Operations: limits`, for the state of its measurement).
//!
//! What the count cannot see exactly: a host call moves bounded amounts of memory between
//! threads (a response buffered by a tokio worker and freed here, a step handed to the store
//! and freed there), so the count may be off by about that much — bounded by the host-call
//! budget (500) and the per-call sizes (64 KiB HTTP bodies, capped steps).
//!
//! Alternatives rejected: a process-wide RSS check cannot tell which run is at fault and reacts
//! to the store's and the HTTP server's memory too; measuring Rhai values on each progress call
//! is O(data) per operation and blind to keys and curried arguments; making the allocator fail
//! aborts the whole daemon (Rust's `handle_alloc_error`), which is what this module prevents.
//!
//! CPU time is the run thread's own (`CLOCK_THREAD_CPUTIME_ID`), so time spent waiting in host
//! calls (a rollout wait, an HTTP GET, the store) does not count, while a loop over large
//! strings — few operations, much work each — is stopped at `playbook.max_cpu` rather than
//! running to its wall-clock deadline.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// The global allocator of every binary linking this crate: the system allocator, counting
/// the bytes a metered playbook run holds (see the module documentation).
pub struct CountingAlloc;

thread_local! {
    /// Whether this thread is running a metered playbook.
    static METERED: Cell<bool> = const { Cell::new(false) };
    /// Net bytes allocated on this thread since metering began (frees of memory allocated
    /// before count too, so it may dip below zero).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The run's memory cap.
    static CAP: Cell<isize> = const { Cell::new(isize::MAX) };
    /// The run's CPU budget, and the thread's CPU time when the run began.
    static CPU: Cell<Option<(Duration, Duration)>> = const { Cell::new(None) };
    /// Before this instant the budget cannot be spent (CPU time grows no faster than wall
    /// time on one thread), so the clock is not even read.
    static NEXT_CPU_CHECK: Cell<Option<Instant>> = const { Cell::new(None) };
}

#[inline]
fn note(delta: isize) {
    // `try_with`: never panic inside the allocator, even while the thread's locals are torn
    // down. Both cells are `const`-initialised and need no destructor, so no allocation here.
    let _ = METERED.try_with(|m| {
        if m.get() {
            let _ = LIVE.try_with(|l| l.set(l.get().wrapping_add(delta)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping touches only
// `const` thread-locals of plain integers and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (hence from `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Meters memory and CPU time on the current thread until dropped (a run, from its first
/// allocation to its end, including when it unwinds).
pub struct Metered {
    cpu_start: Option<Duration>,
}

impl Metered {
    /// Starts metering this thread from zero, against a memory cap and a CPU budget.
    pub fn start(max_memory: usize, max_cpu: Duration) -> Metered {
        let cpu_start = thread_cpu_time();
        LIVE.with(|l| l.set(0));
        CAP.with(|c| c.set(isize::try_from(max_memory).unwrap_or(isize::MAX)));
        CPU.with(|c| c.set(cpu_start.map(|s| (s, max_cpu))));
        NEXT_CPU_CHECK.with(|n| n.set(None));
        METERED.with(|m| m.set(true));
        Metered { cpu_start }
    }

    /// Net bytes this thread allocated since metering began.
    pub fn bytes(&self) -> isize {
        live_bytes()
    }

    /// CPU time this thread used since metering began (`None` where the OS cannot tell).
    pub fn cpu(&self) -> Option<Duration> {
        Some(thread_cpu_time()?.saturating_sub(self.cpu_start?))
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        METERED.with(|m| m.set(false));
        LIVE.with(|l| l.set(0));
        CAP.with(|c| c.set(isize::MAX));
        CPU.with(|c| c.set(None));
    }
}

/// Whether the metered run on this thread holds more than its memory cap (false when none
/// runs). One comparison of two thread-locals: cheap enough for every Rhai operation.
#[inline]
pub fn memory_exceeded() -> bool {
    LIVE.with(Cell::get) > CAP.with(Cell::get)
}

/// Whether the metered run on this thread has used up its CPU budget (false when none runs).
/// The clock is read only once the budget could be spent: when `now` has passed the last
/// reading plus what was left of the budget then.
pub fn cpu_exceeded(now: Instant) -> bool {
    let Some((start, max)) = CPU.with(Cell::get) else {
        return false;
    };
    if NEXT_CPU_CHECK
        .with(Cell::get)
        .is_some_and(|next| now < next)
    {
        return false;
    }
    let Some(used) = thread_cpu_time().map(|t| t.saturating_sub(start)) else {
        return false;
    };
    if used >= max {
        return true;
    }
    NEXT_CPU_CHECK.with(|n| n.set(Some(now + (max - used))));
    false
}

/// Net bytes allocated on this thread since its metering began (0 when not metered). One
/// thread-local load: cheap enough for every Rhai operation.
#[inline]
pub fn live_bytes() -> isize {
    LIVE.with(Cell::get)
}

/// CPU time this thread has used (`CLOCK_THREAD_CPUTIME_ID`): time blocked waiting (a host
/// call, a sleep) does not count.
pub fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metered_thread_counts_what_it_holds_and_not_what_it_freed() {
        let m = Metered::start(4 << 20, Duration::from_secs(10));
        assert!(!memory_exceeded());
        let big = vec![0u8; 8 << 20];
        assert!(m.bytes() >= 8 << 20, "{}", m.bytes());
        assert!(memory_exceeded());
        drop(big);
        assert!(m.bytes() < 1 << 20, "{}", m.bytes());
        assert!(!memory_exceeded());
        drop(m);
        let _after = vec![0u8; 8 << 20];
        assert_eq!(live_bytes(), 0, "not metered once the guard is gone");
        assert!(!memory_exceeded());
    }

    #[test]
    fn other_threads_are_not_counted() {
        let m = Metered::start(1 << 20, Duration::from_secs(10));
        std::thread::spawn(|| {
            let v = vec![0u8; 16 << 20];
            assert_eq!(live_bytes(), 0);
            drop(v);
        })
        .join()
        .unwrap();
        assert!(m.bytes() < 1 << 20, "{}", m.bytes());
    }

    #[test]
    fn thread_cpu_time_grows_with_work_and_not_with_sleep() {
        let m = Metered::start(1 << 20, Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(200));
        let slept = m.cpu().unwrap();
        assert!(slept < Duration::from_millis(40), "{slept:?}");
        assert!(
            !cpu_exceeded(Instant::now()),
            "sleeping spends no CPU budget"
        );
        // Spin until the thread has used 60ms of CPU (however busy the machine is).
        let give_up = Instant::now() + Duration::from_secs(20);
        let mut x = 0u64;
        while m.cpu().unwrap() - slept < Duration::from_millis(60) && Instant::now() < give_up {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        let busy = m.cpu().unwrap() - slept;
        assert!(busy >= Duration::from_millis(50), "{busy:?}");
        assert!(cpu_exceeded(Instant::now()), "the 50ms budget is spent");
        drop(m);
        assert!(
            !cpu_exceeded(Instant::now()),
            "no budget once the run ended"
        );
    }
}
