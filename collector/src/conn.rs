//! Connection limits for both listeners: caps, deadlines and file-descriptor headroom.
//!
//! An idle TCP connection costs the attacker nothing and the collector one file descriptor.
//! Without limits about 20 000 half-open connections exhaust the descriptors and the
//! collector can no longer accept agents, scrapes or even open SQLite files. So every
//! accepted connection goes through [`accept_loop`], which:
//!
//! - caps the connections of one peer address ([`Limits::per_peer`], refused beyond it:
//!   `reason="peer_limit"`) and of the listener ([`Limits::max`]); at the listener cap the
//!   oldest connection with no call in flight is closed to make room (`reason="evicted"`),
//!   and only when every connection is busy is the new one refused (`reason="listener_limit"`);
//! - wraps the socket in [`Limited`], which closes a connection that has not finished its
//!   handshake within [`Limits::handshake_timeout`] (HTTP/2 preface for gRPC, the first request
//!   head for HTTP: `reason="handshake_timeout"`) or that had no call in flight for
//!   [`Limits::idle_timeout`] (`reason="idle_timeout"`);
//! - backs off when `accept` fails (EMFILE and the like), logging once per
//!   [`ACCEPT_ERROR_LOG_EVERY`] instead of spinning.
//!
//! [`raise_fd_limit`] lifts the soft `RLIMIT_NOFILE` to the hard limit at start, and
//! [`fit_to_fd_limit`] shrinks the caps so that both listeners at their cap still leave
//! [`FD_RESERVE`] descriptors for SQLite, logs and outgoing sockets.
//!
//! Invariants: the per-peer and per-listener counts equal the live [`Limited`] values (a
//! [`Guard`] decrements on drop, whatever closed the connection); `dsreg_connections_open`
//! follows the same counts; every shed connection is counted once in
//! `dsreg_connections_rejected_total{listener,reason}` (closed sets).

mod io;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

pub use io::{ActivityLayer, ConnInfo, ConnState, Limited};

use crate::metrics::Metrics;

/// Descriptors kept free of connections (SQLite database, WAL and shm per connection, logs,
/// outgoing sockets, the listeners themselves).
pub const FD_RESERVE: u64 = 256;
/// At most one log line per this interval while `accept` keeps failing.
pub const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);
/// Longest pause after a failed `accept` (the pause doubles from 10 ms up to this).
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At the listener cap, how many of the oldest connections are examined for one that can be
/// evicted (bounds the work per accepted connection under a flood).
const EVICT_SCAN: usize = 4096;

/// The reasons a connection is shed (the `reason` label).
pub const REASONS: [&str; 5] = [
    "listener_limit",
    "peer_limit",
    "evicted",
    "handshake_timeout",
    "idle_timeout",
];

/// Which listener a connection came in on (the `listener` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The gRPC ingest port.
    Grpc,
    /// The HTTP port (`/metrics`, API, UI).
    Http,
}

impl Listener {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Listener::Grpc => "grpc",
            Listener::Http => "http",
        }
    }
}

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once on this listener.
    pub max: usize,
    /// Connections open at once from one peer address.
    pub per_peer: usize,
    /// Time from accept to a finished handshake (HTTP/2 preface, or first HTTP request).
    pub handshake_timeout: Duration,
    /// A connection with no call in flight for this long is closed.
    pub idle_timeout: Duration,
}

/// The live connections of one listener.
struct Registry {
    next_id: u64,
    conns: BTreeMap<u64, Arc<ConnState>>,
    per_peer: HashMap<IpAddr, usize>,
}

/// Shared by the accept loop, every [`Limited`] and every [`Guard`] of one listener.
pub(crate) struct Shared {
    listener: Listener,
    limits: Limits,
    metrics: Arc<Metrics>,
    registry: Mutex<Registry>,
}

impl Shared {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one shed connection.
    pub(crate) fn shed(&self, reason: &'static str) {
        self.metrics.connection_shed(self.listener.label(), reason);
    }

    /// Registers a new connection from `peer`, evicting or refusing per the limits.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Guard, &'static str> {
        let mut reg = self.registry();
        let from_peer = reg.per_peer.get(&peer).copied().unwrap_or(0);
        if from_peer >= self.limits.per_peer {
            return Err("peer_limit");
        }
        if reg.conns.len() >= self.limits.max {
            let victim = reg
                .conns
                .values()
                .take(EVICT_SCAN)
                .find(|c| c.evictable())
                .cloned();
            match victim {
                Some(v) => {
                    // Out of the registry now (its slot is reused at once); its guard's
                    // removal later finds nothing and only fixes the peer count.
                    reg.conns.remove(&v.id);
                    v.evict();
                    self.shed("evicted");
                }
                None => return Err("listener_limit"),
            }
        }
        let id = reg.next_id;
        reg.next_id += 1;
        let state = Arc::new(ConnState::new(id, self.listener == Listener::Http));
        reg.conns.insert(id, state.clone());
        *reg.per_peer.entry(peer).or_insert(0) += 1;
        drop(reg);
        self.metrics.connections_open(self.listener.label(), 1.0);
        Ok(Guard {
            shared: self.clone(),
            peer,
            state,
        })
    }

    /// Connections open now (for tests and logs).
    fn open(&self) -> usize {
        self.registry().per_peer.values().sum()
    }
}

/// Releases a connection's slots when the connection is dropped.
pub(crate) struct Guard {
    shared: Arc<Shared>,
    peer: IpAddr,
    state: Arc<ConnState>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut reg = self.shared.registry();
        reg.conns.remove(&self.state.id);
        if let Some(n) = reg.per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                reg.per_peer.remove(&self.peer);
            }
        }
        drop(reg);
        self.shared
            .metrics
            .connections_open(self.shared.listener.label(), -1.0);
    }
}

/// A handle on one listener's live connections.
#[derive(Clone)]
pub struct Tracker(Arc<Shared>);

impl Tracker {
    /// Connections open now on this listener.
    pub fn open(&self) -> usize {
        self.0.open()
    }
}

/// Accepts on `listener` until `stop` turns true, sending admitted connections to the
/// returned channel (closed when the loop ends; the listener is dropped then, so new
/// connection attempts are refused by the kernel).
pub fn accept_loop(
    listener: TcpListener,
    which: Listener,
    limits: Limits,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> (mpsc::Receiver<Limited>, Tracker) {
    let shared = Arc::new(Shared {
        listener: which,
        limits,
        metrics,
        registry: Mutex::new(Registry {
            next_id: 0,
            conns: BTreeMap::new(),
            per_peer: HashMap::new(),
        }),
    });
    let tracker = Tracker(shared.clone());
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(10);
        let mut failures = 0u64;
        let mut last_log: Option<Instant> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = stop.changed() => continue,
            };
            let (tcp, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    failures += 1;
                    if last_log.is_none_or(|t| t.elapsed() >= ACCEPT_ERROR_LOG_EVERY) {
                        tracing::warn!(
                            listener = which.label(),
                            error = %e,
                            failures,
                            "accept failing (out of file descriptors?); backing off"
                        );
                        last_log = Some(Instant::now());
                        failures = 0;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            };
            backoff = Duration::from_millis(10);
            match shared.admit(peer.ip()) {
                Ok(guard) => {
                    let _ = tcp.set_nodelay(true);
                    let conn = Limited::new(tcp, guard, shared.clone());
                    if tx.send(conn).await.is_err() {
                        return;
                    }
                }
                Err(reason) => {
                    shared.shed(reason);
                    tracing::debug!(listener = which.label(), %peer, reason, "connection refused");
                    drop(tcp);
                }
            }
        }
    });
    (rx, tracker)
}

/// The soft and hard `RLIMIT_NOFILE` after trying to raise the soft limit to the hard one:
/// `(soft before, soft now, hard)`. `None` where the platform has no such limit.
pub fn raise_fd_limit() -> Option<(u64, u64, u64)> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return None;
        }
        let before = lim.rlim_cur;
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: setrlimit reads the struct we own.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        // `rlim_t` is u64 on Linux but not on every Unix.
        #[allow(clippy::unnecessary_cast)]
        let out = (before as u64, lim.rlim_cur as u64, lim.rlim_max as u64);
        Some(out)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Shrinks the two listener caps so that both at their cap leave [`FD_RESERVE`] of `fds`
/// free, keeping their proportion. Returns the caps unchanged when they fit.
pub fn fit_to_fd_limit(grpc: usize, http: usize, fds: u64) -> (usize, usize) {
    let room = usize::try_from(fds.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    let want = grpc.saturating_add(http);
    if want <= room {
        return (grpc, http);
    }
    let scale = |n: usize| ((n as u128 * room as u128) / want.max(1) as u128) as usize;
    (scale(grpc).max(1), scale(http).max(1))
}

#[cfg(test)]
mod tests;
