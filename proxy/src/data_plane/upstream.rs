//! Connections to replicas: made, kept alive and reused by the worker thread that made them, with
//! nothing running while they sit idle, and the request head and a small body leaving in one
//! write.
//!
//! pingora's connector pool costs every request a `getpeername` (its fd check on reuse), a task
//! spawned to watch the idle connection, a timer, a lock and a cross-task hand-over on the way
//! back out; and its HTTP/1 client flushes the request head before the body is written, so the
//! two leave in two `sendto`s (issue 14's profile). Here the idle connections of a replica are a
//! plain per-thread stack (workers never share a connection, so no lock), checked without a
//! syscall when the socket has seen nothing since its last read; and the socket under pingora's
//! HTTP/1 session holds the head back until the body joins it, as nginx's `writev` does.

use pingora::protocols::http::v1::client::HttpSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora::protocols::Stream;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long an idle upstream connection stays pooled; below uvicorn's (vLLM's) 5 s keep-alive.
pub const POOL_IDLE: Duration = Duration::from_secs(4);

/// Most idle connections one worker keeps per replica; more are closed when they come back.
const MAX_IDLE_PER_REPLICA: usize = 256;

/// Bytes held back to leave with the head in one write; a larger body goes out beside it in one
/// vectored write instead of being copied.
const COALESCE_LIMIT: usize = 16 * 1024;

/// How often a worker closes the idle connections that have outlived [`POOL_IDLE`].
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// An HTTP/1.1 session with a replica, and the switch that holds its writes back.
pub struct Upstream {
    /// pingora's HTTP/1 client session on the connection.
    pub session: HttpSession,
    hold: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl Upstream {
    /// From now until [`Upstream::release_writes`], writes wait in memory (the head and a small
    /// body leave together).
    pub fn hold_writes(&self) {
        self.hold.store(true, Ordering::Release);
    }

    /// Lets held writes go with the next flush (pingora flushes when the body is finished).
    pub fn release_writes(&self) {
        self.hold.store(false, Ordering::Release);
    }

    /// Hands the connection back for the next request if the response left it reusable.
    pub async fn release(self) {
        let Upstream {
            mut session,
            hold,
            addr,
        } = self;
        // The replica's `Connection` header and the body's framing decide, as in pingora's pool.
        session.respect_keepalive();
        if let Some(stream) = session.reuse().await {
            put(
                addr,
                Idle {
                    stream,
                    hold,
                    since: Instant::now(),
                },
            );
        }
    }
}

/// A connection to `addr`: a pooled one that is still open, else a new one (within `timeout`).
/// The flag says whether it was reused.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<(Upstream, bool)> {
    while let Some(mut idle) = take(addr) {
        if is_open(&mut idle.stream) {
            let session = HttpSession::new(idle.stream);
            return Ok((
                Upstream {
                    session,
                    hold: idle.hold,
                    addr,
                },
                true,
            ));
        }
    }
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    tcp.set_nodelay(true)?;
    let hold = Arc::new(AtomicBool::new(false));
    let socket = CoalescingSocket {
        tcp,
        held: Vec::new(),
        hold: hold.clone(),
    };
    let stream: Stream = Box::new(L4Stream::from(VirtualSocketStream::new(Box::new(socket))));
    Ok((
        Upstream {
            session: HttpSession::new(stream),
            hold,
            addr,
        },
        false,
    ))
}

/// A connection waiting for its next request.
struct Idle {
    stream: Stream,
    hold: Arc<AtomicBool>,
    since: Instant,
}

/// This worker's idle connections by replica address, newest last, and when they were last swept.
struct IdlePool {
    by_addr: HashMap<SocketAddr, Vec<Idle>>,
    swept: Instant,
}

thread_local! {
    static IDLE: RefCell<IdlePool> = RefCell::new(IdlePool {
        by_addr: HashMap::new(),
        swept: Instant::now(),
    });
}

/// The newest idle connection to `addr` that has not outlived [`POOL_IDLE`].
fn take(addr: SocketAddr) -> Option<Idle> {
    IDLE.with_borrow_mut(|pool| {
        let list = pool.by_addr.get_mut(&addr)?;
        let idle = list.pop()?;
        if idle.since.elapsed() < POOL_IDLE {
            Some(idle)
        } else {
            // The newest is too old: so is every other.
            list.clear();
            None
        }
    })
}

fn put(addr: SocketAddr, idle: Idle) {
    IDLE.with_borrow_mut(|pool| {
        let list = pool.by_addr.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_REPLICA {
            list.push(idle);
        }
        if pool.swept.elapsed() >= SWEEP_EVERY {
            pool.swept = Instant::now();
            pool.by_addr.retain(|_, list| {
                list.retain(|i| i.since.elapsed() < POOL_IDLE);
                !list.is_empty()
            });
        }
    });
}

/// Whether an idle connection is still open and quiet: one poll that must find nothing to read
/// (a replica never speaks first; bytes or an end of stream mean it closed or broke). No syscall
/// when the socket has had no event since its last read.
fn is_open(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    matches!(Pin::new(stream).poll_read(&mut cx, &mut buf), Poll::Pending)
}

/// A TCP connection whose writes can be held back and sent together.
#[derive(Debug)]
struct CoalescingSocket {
    tcp: TcpStream,
    held: Vec<u8>,
    hold: Arc<AtomicBool>,
}

impl CoalescingSocket {
    /// Writes out what is held.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.held.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl VirtualSocket for CoalescingSocket {
    fn set_socket_option(&self, opt: VirtualSockOpt) -> std::io::Result<()> {
        match opt {
            VirtualSockOpt::NoDelay => self.tcp.set_nodelay(true),
            _ => Ok(()),
        }
    }
}

impl AsyncRead for CoalescingSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for CoalescingSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.hold.load(Ordering::Acquire) && this.held.len() + buf.len() <= COALESCE_LIMIT {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        // What is held leaves first, with as much of `buf` as the socket takes in the same call.
        while !this.held.is_empty() {
            let slices = [IoSlice::new(&this.held), IoSlice::new(buf)];
            let n = std::task::ready!(Pin::new(&mut this.tcp).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            if n >= this.held.len() {
                let of_buf = n - this.held.len();
                this.held.clear();
                if of_buf > 0 {
                    return Poll::Ready(Ok(of_buf));
                }
            } else {
                this.held.drain(..n);
            }
        }
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.hold.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
