//! [`Limited`]: an accepted TCP connection with a handshake deadline, an idle deadline and an
//! eviction switch; and [`ActivityLayer`], which tells it when calls are in flight.
//!
//! The deadlines are checked in `poll_read`: the HTTP servers (hyper HTTP/1, h2) always have
//! a read pending on a connection they serve, so a timer registered there wakes the
//! connection's task when a deadline passes, and the read then fails with `TimedOut`, which
//! makes the server close the connection. Only calls count as activity (HTTP/2 pings and
//! TCP keepalives do not), so a connection that answers pings but never calls still ends.
//! Eviction sets a flag and wakes the last read waker: the next read fails the same way.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use axum::http;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::{Guard, Shared};

/// Bytes of the HTTP/2 client preface plus the header of the SETTINGS frame that must follow.
const H2_PREFACE_AND_SETTINGS: usize = 24 + 9;

/// What the limits know about one live connection.
pub struct ConnState {
    pub(super) id: u64,
    opened: Instant,
    /// HTTP: the handshake is the first request head (set by [`ConnState::begin`]).
    http: bool,
    handshaken: AtomicBool,
    calls: AtomicUsize,
    /// Milliseconds after `opened` when the last call ended.
    last_active_ms: AtomicU64,
    evicted: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl std::fmt::Debug for ConnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnState")
            .field("id", &self.id)
            .field("calls", &self.calls.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Marks a call in flight on a connection until dropped.
pub struct CallGuard(Arc<ConnState>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.calls.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ConnState {
    pub(super) fn new(id: u64, http: bool) -> ConnState {
        ConnState {
            id,
            opened: Instant::now(),
            http,
            handshaken: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            waker: Mutex::new(None),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.store(ms, Ordering::SeqCst);
    }

    /// A call (gRPC call or HTTP request) starts; it ends when the guard is dropped. The
    /// first call also completes an HTTP connection's handshake.
    pub fn begin(self: &Arc<Self>) -> CallGuard {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.handshaken.store(true, Ordering::SeqCst);
        CallGuard(self.clone())
    }

    /// No call in flight: may be closed to make room at the listener cap.
    pub(super) fn evictable(&self) -> bool {
        self.calls.load(Ordering::SeqCst) == 0 && !self.evicted.load(Ordering::SeqCst)
    }

    pub(super) fn evict(&self) {
        self.evicted.store(true, Ordering::SeqCst);
        let waker = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The next deadline, or the reason the connection has expired.
    fn deadline(&self, shared: &Shared) -> Result<Instant, &'static str> {
        let now = Instant::now();
        if !self.handshaken.load(Ordering::SeqCst) {
            let at = self.opened + shared.limits.handshake_timeout;
            return if now >= at {
                Err("handshake_timeout")
            } else {
                Ok(at)
            };
        }
        if self.calls.load(Ordering::SeqCst) > 0 {
            return Ok(now + shared.limits.idle_timeout);
        }
        let last = self.opened
            + std::time::Duration::from_millis(self.last_active_ms.load(Ordering::SeqCst));
        let at = last.max(self.opened) + shared.limits.idle_timeout;
        if now >= at {
            Err("idle_timeout")
        } else {
            Ok(at)
        }
    }
}

/// What gRPC handlers find in the request extensions (besides tonic's [`TcpConnectInfo`],
/// which [`ActivityLayer`] adds so `Request::remote_addr` keeps working).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Addresses of the TCP connection.
    pub tcp: TcpConnectInfo,
    /// The connection's limit state.
    pub state: Arc<ConnState>,
}

/// An admitted TCP connection under the listener's limits (see the module docs).
pub struct Limited {
    tcp: TcpStream,
    guard: Guard,
    shared: Arc<Shared>,
    timer: Pin<Box<Sleep>>,
    preface: usize,
}

impl Limited {
    pub(super) fn new(tcp: TcpStream, guard: Guard, shared: Arc<Shared>) -> Limited {
        let first = tokio::time::Instant::now() + shared.limits.handshake_timeout;
        Limited {
            tcp,
            guard,
            shared,
            timer: Box::pin(tokio::time::sleep_until(first)),
            preface: 0,
        }
    }

    /// The connection's limit state (HTTP marks its requests with [`ConnState::begin`]).
    pub fn state(&self) -> Arc<ConnState> {
        self.guard.state.clone()
    }

    /// The peer's address.
    pub fn peer(&self) -> io::Result<std::net::SocketAddr> {
        self.tcp.peer_addr()
    }

    /// Fails with the reason when a deadline has passed or the connection was evicted;
    /// otherwise arms the timer (and the eviction waker) for the next check.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let state = self.guard.state.clone();
        if state.evicted.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection evicted at the listener cap",
            ));
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            match state.deadline(&self.shared) {
                Ok(at) => self.timer.as_mut().reset(at.into()),
                Err(reason) => {
                    self.shared.shed(reason);
                    return Err(io::Error::new(io::ErrorKind::TimedOut, reason));
                }
            }
        }
        let mut slot = state.waker.lock().unwrap_or_else(|p| p.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *slot = Some(cx.waker().clone());
        }
        Ok(())
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let out = Pin::new(&mut this.tcp).poll_read(cx, buf);
        let state = &this.guard.state;
        if !state.http && !state.handshaken.load(Ordering::Relaxed) {
            this.preface += buf.filled().len() - before;
            if this.preface >= H2_PREFACE_AND_SETTINGS {
                state.handshaken.store(true, Ordering::SeqCst);
                state.touch();
            }
        }
        out
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

impl Connected for Limited {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        ConnInfo {
            tcp: self.tcp.connect_info(),
            state: self.guard.state.clone(),
        }
    }
}

/// A tower layer on the gRPC server marking calls in flight on their connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActivityLayer;

impl<S> tower::Layer<S> for ActivityLayer {
    type Service = Activity<S>;

    fn layer(&self, inner: S) -> Activity<S> {
        Activity { inner }
    }
}

/// See [`ActivityLayer`].
#[derive(Debug, Clone)]
pub struct Activity<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Activity<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let info = req.extensions().get::<ConnInfo>().cloned();
        let guard = info.as_ref().map(|i| i.state.begin());
        if let Some(i) = info
            && req.extensions().get::<TcpConnectInfo>().is_none()
        {
            req.extensions_mut().insert(i.tcp);
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            drop(guard);
            out
        })
    }
}
