//! The open-file limit. Every connection, segment file and index takes a
//! descriptor, and the usual soft limit (1024) is far below
//! `kafka.connections_max` (10 000): at start the soft limit is raised to
//! the hard one, and what remains is logged, so running out is explained
//! before it happens rather than discovered as `EMFILE`.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and logs the result,
/// warning when `connections_max` cannot fit in it.
pub(crate) fn raise_limit(connections_max: usize) {
    let limit = match raise() {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "could not read or raise the open file limit");
            return;
        }
    };
    let (before, soft, hard) = limit;
    tracing::info!(before, soft, hard, "open file limit");
    if (soft as usize) < connections_max {
        tracing::warn!(
            soft,
            connections_max,
            "open file limit is below kafka.connections_max; clients beyond it are \
             refused (accept fails with \"Too many open files\") until others leave"
        );
    }
}

/// Soft limit asked for when the hard one is unlimited (Linux's default
/// `fs.nr_open`).
const NO_HARD_LIMIT_TARGET: libc::rlim_t = 1 << 20;

/// (soft before, soft now, hard).
#[allow(unsafe_code)]
fn raise() -> std::io::Result<(u64, u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    // An unlimited hard limit still cannot be exceeded past fs.nr_open.
    let target = if limit.rlim_max == libc::RLIM_INFINITY {
        NO_HARD_LIMIT_TARGET
    } else {
        limit.rlim_max
    };
    if limit.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok((before, limit.rlim_cur, limit.rlim_max))
}
