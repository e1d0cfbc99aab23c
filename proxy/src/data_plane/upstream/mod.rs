//! Connections to replicas: our own small HTTP/1.1 client, made for a proxy's one job — send a
//! request head and a body that are already in memory, then pass the response on piece by piece.
//!
//! pingora's connector and client session cost every request a `getpeername` (its fd check on
//! reuse), a task spawned to watch the idle connection, a timer, a lock and a cross-task
//! hand-over; they flush the request head before the body (two `sendto`s); and each response body
//! gets a 64 KiB read buffer, which an open stream keeps for its whole life (issue 14's profile:
//! 65 of the 102 KiB of heap per open stream). Here:
//!
//! - [`pool`]: the idle connections of a replica are a plain per-worker stack (workers never share
//!   a connection, so no lock), checked without a syscall when the socket has seen nothing since
//!   its last read;
//! - [`request`]: the head is written straight into the bytes for the wire, and leaves with the
//!   body in one vectored write, as nginx's `writev` does;
//! - [`response`] and [`body`]: the response is parsed in place (`httparse`), its header values
//!   and body pieces are slices of the read buffer, not copies; the buffer starts at 4 KiB and
//!   grows only while reads fill it.

pub mod body;
mod pool;
pub mod request;
pub mod response;

use body::{Decoded, Framing, Malformed};
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// First size of a connection's read buffer: a response head and a few SSE events.
const READ_START: usize = 4 * 1024;

/// Largest read buffer: a read that fills the buffer doubles it up to here.
const READ_MAX: usize = 64 * 1024;

/// Why an exchange with a replica failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The replica closed before its response head was complete.
    #[error("the replica closed the connection before a response header")]
    ClosedBeforeHead,
    /// The replica closed before the body's framing said it ended.
    #[error("the replica closed the connection mid-body")]
    ClosedMidBody,
    /// The response head is not valid HTTP/1.x.
    #[error("invalid response header: {0}")]
    BadHead(String),
    /// The body's chunked framing is broken.
    #[error(transparent)]
    BadBody(#[from] Malformed),
}

/// One HTTP/1.1 connection to a replica, carrying one exchange at a time.
pub struct Upstream {
    tcp: TcpStream,
    addr: SocketAddr,
    /// What has been read and not yet handed on.
    buf: BytesMut,
    /// How much the next read asks for.
    read_size: usize,
    /// How the current response's body ends.
    framing: Framing,
    /// Whether the current response lets the connection be reused.
    keep_alive: bool,
    /// Whether the current request was a HEAD (its response has no body).
    head_request: bool,
}

impl Upstream {
    fn new(tcp: TcpStream, addr: SocketAddr) -> Self {
        Upstream {
            tcp,
            addr,
            buf: BytesMut::new(),
            read_size: READ_START,
            framing: Framing::Done,
            keep_alive: false,
            head_request: false,
        }
    }

    /// Sends a request: its encoded head ([`request::encode`]) and its body, together in as few
    /// writes as the socket allows (one, for anything that fits its buffer).
    pub async fn send(&mut self, head: &[u8], body: &[u8], is_head: bool) -> std::io::Result<()> {
        self.head_request = is_head;
        self.framing = Framing::Done;
        self.keep_alive = false;
        let total = head.len() + body.len();
        let mut written = 0;
        while written < total {
            let n = if written < head.len() {
                let slices = [IoSlice::new(&head[written..]), IoSlice::new(body)];
                self.tcp.write_vectored(&slices).await?
            } else {
                self.tcp.write(&body[written - head.len()..]).await?
            };
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            written += n;
        }
        Ok(())
    }

    /// Reads the response head (interim 1xx responses are skipped).
    pub async fn read_head(&mut self) -> Result<ResponseHeader, UpstreamError> {
        loop {
            if let Some(head) = response::parse(&mut self.buf, self.head_request)? {
                self.framing = head.framing;
                self.keep_alive = head.keep_alive;
                return Ok(head.header);
            }
            if self.fill().await? == 0 {
                return Err(UpstreamError::ClosedBeforeHead);
            }
        }
    }

    /// The next piece of the response body, or `None` once it has ended.
    pub async fn read_body(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        loop {
            match self.framing.decode(&mut self.buf)? {
                Decoded::Data(data) => return Ok(Some(data)),
                Decoded::End => return Ok(None),
                Decoded::NeedMore => {}
            }
            if self.fill().await? == 0 {
                if self.framing == Framing::UntilClose {
                    self.framing = Framing::Done;
                    return Ok(None);
                }
                return Err(UpstreamError::ClosedMidBody);
            }
        }
    }

    /// Whether the response body has been read to its end.
    pub fn is_body_done(&self) -> bool {
        self.framing.is_done()
    }

    /// Hands the connection back for the next request if the response left it reusable: body
    /// read to its end, framed (not close-delimited), the replica willing, nothing extra sent.
    pub fn release(self) {
        if self.framing.is_done() && self.keep_alive && self.buf.is_empty() {
            pool::put(self.addr, self.tcp);
        }
    }

    /// Reads once into the buffer; the count read (0 = the replica closed).
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < self.read_size / 2 {
            self.buf.reserve(self.read_size);
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = self.tcp.read_buf(&mut self.buf).await?;
        // A read that filled the room asks for more next time (large bodies take fewer reads).
        if n == room && self.read_size < READ_MAX {
            self.read_size *= 2;
        }
        Ok(n)
    }
}

/// A connection to `addr`: a pooled one that is still open, else a new one (within `timeout`).
/// The flag says whether it was reused.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<(Upstream, bool)> {
    if let Some(tcp) = pool::take(addr) {
        return Ok((Upstream::new(tcp, addr), true));
    }
    let tcp = pingora_timeout::fast_timeout::fast_timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    tcp.set_nodelay(true)?;
    Ok((Upstream::new(tcp, addr), false))
}

#[cfg(test)]
mod tests;
