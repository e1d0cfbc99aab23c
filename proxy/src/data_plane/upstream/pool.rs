//! The idle connections of each replica, per worker thread: taken newest first, checked open
//! without a syscall, and closed once they have idled longer than the replica would keep them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;

/// How long an idle upstream connection stays pooled; below uvicorn's (vLLM's) 5 s keep-alive.
pub(super) const POOL_IDLE: Duration = Duration::from_secs(4);

/// Most idle connections one worker keeps per replica; more are closed when they come back.
const MAX_IDLE_PER_REPLICA: usize = 256;

/// How often a worker closes the idle connections that have outlived [`POOL_IDLE`].
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// A connection waiting for its next request.
struct Idle {
    tcp: TcpStream,
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

/// The newest idle connection to `addr` that is still open and has not outlived [`POOL_IDLE`].
pub(super) fn take(addr: SocketAddr) -> Option<TcpStream> {
    IDLE.with_borrow_mut(|pool| {
        let list = pool.by_addr.get_mut(&addr)?;
        while let Some(mut idle) = list.pop() {
            if idle.since.elapsed() >= POOL_IDLE {
                // The newest is too old: so is every other.
                list.clear();
                return None;
            }
            if is_open(&mut idle.tcp) {
                return Some(idle.tcp);
            }
        }
        None
    })
}

/// Keeps `tcp` for the next request to `addr`.
pub(super) fn put(addr: SocketAddr, tcp: TcpStream) {
    IDLE.with_borrow_mut(|pool| {
        let list = pool.by_addr.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_REPLICA {
            list.push(Idle {
                tcp,
                since: Instant::now(),
            });
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
fn is_open(tcp: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    matches!(Pin::new(tcp).poll_read(&mut cx, &mut buf), Poll::Pending)
}
