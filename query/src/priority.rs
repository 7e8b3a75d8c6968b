//! Scheduling priority of the query engine's threads. Queries are the one
//! thing a reader controls that can keep both cores busy for as long as its
//! timeout allows; at a lower priority (a higher nice value) they still use
//! every idle cycle, but acknowledgements and health checks, at the normal
//! priority, run first whenever they need the CPU.

/// Lowers the calling thread's priority to `nice` (0-19; clamped). On Linux
/// the nice value is per thread. Failure is logged and ignored: a query that
/// runs at normal priority is slower for others, not unsafe.
pub fn lower_this_thread(nice: i32) {
    let nice = nice.clamp(0, 19);
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority only reads its
        // integer arguments and affects this thread alone.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
        };
        if rc != 0 {
            tracing::warn!(
                "could not lower the query thread's priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn lowers_only_the_calling_thread() {
        let other = std::thread::spawn(|| {
            super::lower_this_thread(7);
            // SAFETY: as above.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        })
        .join()
        .unwrap();
        assert_eq!(other, 7);
        // SAFETY: as above.
        let mine = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        assert_ne!(mine, 7);
    }
}
