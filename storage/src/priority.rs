//! CPU priority of the calling thread: its nice value, or the idle scheduling policy.
//!
//! Why per thread: Linux keeps the nice value per thread, and a thread inherits it from the
//! thread that creates it. Shoal runs ingest, the live projections and rebuilds in one process
//! on the embedded default, and gives them different priorities by the threads they run on
//! (`shoal_projector`'s runtimes, the tables' committer).
//!
//! Only lowering is portable: an unprivileged process may raise its nice value, never lower
//! it, so callers choose each thread's priority once, when it starts or before its first work.

/// The lowest priority Linux has.
pub const LOWEST: i32 = 19;

/// Sets the calling thread's nice value; elsewhere than Linux it does nothing.
pub fn set_current_thread_nice(nice: i32) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's own id; no memory is shared.
        let outcome = unsafe {
            let thread = libc::gettid() as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, thread, nice)
        };
        if outcome != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
    Ok(())
}

/// Lowers the calling thread's priority to at least `nice`: a thread already lower keeps its
/// own (a process started under `nice -n 15` keeps 15; raising it back is not allowed without
/// privileges), and nothing is ever raised. Returns the value the thread runs at.
pub fn lower_current_thread_to(nice: i32) -> std::io::Result<i32> {
    let current = current_thread_nice()?;
    if nice > current {
        set_current_thread_nice(nice)?;
        return Ok(nice);
    }
    Ok(current)
}

/// The calling thread's nice value; 0 elsewhere than Linux.
pub fn current_thread_nice() -> std::io::Result<i32> {
    #[cfg(target_os = "linux")]
    {
        // getpriority may return -1 as a value: errno tells an error apart.
        // SAFETY: as above; errno is thread-local.
        unsafe {
            *libc::__errno_location() = 0;
            let thread = libc::gettid() as libc::id_t;
            let nice = libc::getpriority(libc::PRIO_PROCESS, thread);
            if nice == -1 && *libc::__errno_location() != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(nice)
        }
    }
    #[cfg(not(target_os = "linux"))]
    Ok(0)
}

/// Moves the calling thread to the idle scheduling policy (`SCHED_IDLE`), below every nice
/// value: the scheduler weighs it 3 against nice 19's 15 and nice 0's 1024, and a thread of
/// the normal policy that wakes takes its core at once. Threads it starts inherit it. Like
/// raising the nice value, a process may do this without privileges and not undo it.
/// Elsewhere than Linux it does nothing.
pub fn idle_current_thread() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: a plain system call on the calling thread's own id with a parameter that
        // outlives it.
        let outcome = unsafe { libc::sched_setscheduler(libc::gettid(), libc::SCHED_IDLE, &param) };
        if outcome != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether the calling thread runs under the idle policy; `false` elsewhere than Linux.
pub fn current_thread_is_idle() -> std::io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as above.
        let policy = unsafe { libc::sched_getscheduler(libc::gettid()) };
        if policy < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(policy == libc::SCHED_IDLE)
    }
    #[cfg(not(target_os = "linux"))]
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value a thread at `before` runs at after asking for `steps` lower: only Linux
    /// changes it.
    fn lowered_by(before: i32, steps: i32) -> i32 {
        if cfg!(target_os = "linux") {
            (before + steps).min(LOWEST)
        } else {
            before
        }
    }

    #[test]
    fn a_thread_lowers_its_own_priority_only() {
        let before = current_thread_nice().unwrap();
        let lowered = std::thread::spawn(move || {
            set_current_thread_nice((before + 3).min(LOWEST)).unwrap();
            let own = current_thread_nice().unwrap();
            // A thread started from here inherits the lowered value.
            let child = std::thread::spawn(|| current_thread_nice().unwrap())
                .join()
                .unwrap();
            (own, child)
        })
        .join()
        .unwrap();
        let expected = lowered_by(before, 3);
        assert_eq!(lowered, (expected, expected));
        assert_eq!(current_thread_nice().unwrap(), before);
    }

    #[test]
    fn lowering_never_raises() {
        let before = current_thread_nice().unwrap();
        let seen = std::thread::spawn(move || {
            let lower = (before + 2).min(LOWEST);
            let first = lower_current_thread_to(lower).unwrap();
            // Asking for a higher priority than the thread has leaves it where it is.
            let second = lower_current_thread_to(before).unwrap();
            (first, second, current_thread_nice().unwrap())
        })
        .join()
        .unwrap();
        let expected = lowered_by(before, 2);
        assert_eq!(seen, (expected, expected, expected));
    }

    #[test]
    fn an_idle_thread_and_its_children_stay_idle() {
        assert!(!current_thread_is_idle().unwrap());
        let seen = std::thread::spawn(|| {
            idle_current_thread().unwrap();
            let child = std::thread::spawn(|| current_thread_is_idle().unwrap())
                .join()
                .unwrap();
            (current_thread_is_idle().unwrap(), child)
        })
        .join()
        .unwrap();
        let expected = cfg!(target_os = "linux");
        assert_eq!(seen, (expected, expected));
        assert!(!current_thread_is_idle().unwrap());
    }
}
