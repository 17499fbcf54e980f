//! Thread priority: processors' threads (their steps, and the commit
//! threads writing their state) run at a lower priority than the broker's
//! Kafka requests, queries and fsyncs (`processors.nice`; see
//! `processor::worker::threads` for the measurements). A leaf: imports
//! nothing of the crate.

/// The default of `processors.nice`.
pub const NICE_DEFAULT: i32 = 5;

/// Sets the calling thread's nice value to `nice` (Linux: per thread);
/// 0 leaves it as it is. Raising the nice value needs no privilege.
#[allow(unsafe_code)]
pub fn lower_priority(nice: i32) -> std::io::Result<()> {
    if nice <= 0 {
        return Ok(());
    }
    // SAFETY: two system calls about the calling thread; no memory is
    // passed.
    let tid = unsafe { libc::gettid() };
    // SAFETY: as above.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    match result {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}
