//! Up-front checks so a run fails before it starts rather than midway:
//! file descriptors per worker, ephemeral ports per local address, and
//! loopback-only targets.

use thiserror::Error;

/// A run that cannot work as configured, with what to do instead.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LimitError {
    /// A worker would need more descriptors than `RLIMIT_NOFILE` allows.
    #[error(
        "{per_worker} connections per worker need about {needed} file descriptors but the limit is {limit}; \
         use --workers {workers} (or fewer connections)"
    )]
    Fds {
        /// Connections per worker.
        per_worker: usize,
        /// Descriptors needed.
        needed: u64,
        /// The soft limit.
        limit: u64,
        /// Suggested worker count.
        workers: usize,
    },
    /// Not enough ephemeral ports toward one server address.
    #[error(
        "{conns} connections from {addrs} local address(es) exceed ~{ports} ephemeral ports each; \
         use --local-addrs {suggest}"
    )]
    Ports {
        /// Total connections.
        conns: usize,
        /// Local addresses used.
        addrs: u32,
        /// Ports per address.
        ports: u64,
        /// Suggested `--local-addrs`.
        suggest: u64,
    },
    /// A non-loopback target without `--allow-remote`.
    #[error("refusing non-loopback target {0} (pass --allow-remote if you really mean it)")]
    Remote(String),
}

/// Descriptors a worker needs beyond its sockets (runtime, pipes, stdio).
const FD_OVERHEAD: u64 = 64;

/// The soft `RLIMIT_NOFILE` of this process.
pub fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        1024
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (best effort).
pub fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain get/set of our own process limits.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Size of the ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`).
pub fn ephemeral_ports() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u64>().ok());
            Some(it.next()??.abs_diff(it.next()??) + 1)
        })
        .unwrap_or(28_000)
}

/// Checks that `conns` connections fit in `workers` workers under `fd_limit`.
pub fn check_fds(conns: usize, workers: usize, fd_limit: u64) -> Result<(), LimitError> {
    let per_worker = conns.div_ceil(workers.max(1));
    let needed = per_worker as u64 + FD_OVERHEAD;
    if needed <= fd_limit {
        return Ok(());
    }
    let usable = fd_limit.saturating_sub(FD_OVERHEAD).max(1) as usize;
    Err(LimitError::Fds {
        per_worker,
        needed,
        limit: fd_limit,
        workers: conns.div_ceil(usable),
    })
}

/// Checks that `conns` connections fit the ephemeral ports of `addrs` local
/// addresses (0 means the kernel's default source, i.e. one address).
pub fn check_ports(conns: usize, addrs: u32, ports: u64) -> Result<(), LimitError> {
    let n = addrs.max(1) as u64;
    if (conns as u64) <= n * ports {
        return Ok(());
    }
    Err(LimitError::Ports {
        conns,
        addrs: addrs.max(1),
        ports,
        suggest: (conns as u64).div_ceil(ports),
    })
}

/// Checks that `url`'s host is a loopback address unless `allow_remote`.
pub fn check_loopback(url: &str, allow_remote: bool) -> Result<(), LimitError> {
    if allow_remote {
        return Ok(());
    }
    let host = crate::client::handshake::WsUrl::parse(url)
        .map(|u| u.host)
        .unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false);
    if loopback {
        Ok(())
    } else {
        Err(LimitError::Remote(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_check_suggests_workers() {
        assert!(check_fds(10_000, 1, 20_000).is_ok());
        let err = check_fds(50_000, 1, 20_000).unwrap_err();
        assert!(matches!(err, LimitError::Fds { workers: 3, .. }), "{err}");
        assert!(err.to_string().contains("--workers 3"));
        assert!(check_fds(50_000, 3, 20_000).is_ok());
    }

    #[test]
    fn port_and_loopback_checks() {
        assert!(check_ports(20_000, 0, 28_232).is_ok());
        assert!(matches!(
            check_ports(60_000, 1, 28_000),
            Err(LimitError::Ports { suggest: 3, .. })
        ));
        assert!(check_loopback("ws://127.0.0.1:8080", false).is_ok());
        assert!(check_loopback("ws://localhost:8080", false).is_ok());
        assert!(check_loopback("ws://[::1]:1", false).is_ok());
        assert!(check_loopback("ws://10.0.0.1:8080", false).is_err());
        assert!(check_loopback("ws://10.0.0.1:8080", true).is_ok());
        assert!(nofile_limit() > 0 && ephemeral_ports() > 1000);
    }
}
