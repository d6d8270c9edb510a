//! Search work yields the CPU to the async workers.
//!
//! A shard's CPU-bound search work runs on tokio's blocking threads. When it
//! saturates the cores, the async workers that answer `/healthz`, accept
//! connections and stream downloads wait in the kernel's run queue behind it,
//! and a probe that times out gets a healthy shard restarted. Blocking
//! threads that run searches therefore lower their own scheduling priority
//! (nice 10) once; they keep it, since an unprivileged thread cannot raise it
//! again, and blocking threads only ever do background or CPU-bound work.

use std::cell::Cell;

/// The nice value search threads run at: below the async workers' 0.
const SEARCH_NICE: i32 = 10;

thread_local! {
    static LOWERED: Cell<bool> = const { Cell::new(false) };
}

/// Lowers the calling thread's priority to [`SEARCH_NICE`] the first time it
/// is called on that thread (no-op off Linux, or if the kernel refuses).
pub(crate) fn lower_this_thread() {
    if LOWERED.with(|l| l.replace(true)) {
        return;
    }
    set_nice(SEARCH_NICE);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_nice(nice: i32) {
    unsafe extern "C" {
        fn gettid() -> i32;
        fn setpriority(which: u32, who: u32, prio: i32) -> i32;
    }
    const PRIO_PROCESS: u32 = 0;
    // SAFETY: both calls take plain integers; on Linux a thread id names
    // exactly this thread for PRIO_PROCESS, so only its own priority changes.
    let rc = unsafe { setpriority(PRIO_PROCESS, gettid() as u32, nice) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower a search thread's priority");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_nice(_nice: i32) {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// The calling thread's nice value, from `/proc/thread-self/stat`.
    fn own_nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the parenthesised command name; nice is field 19 of the line.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn only_the_calling_thread_is_lowered() {
        let before = own_nice();
        let lowered = std::thread::spawn(|| {
            super::lower_this_thread();
            own_nice()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, before.max(i64::from(super::SEARCH_NICE)));
        assert_eq!(own_nice(), before, "other threads keep their priority");
    }
}
