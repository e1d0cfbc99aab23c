//! The framing of a replica's response body (RFC 9112 §6.3) and its decoding, in place: the data
//! of each piece is split off the read buffer and handed on without a copy.

use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line or trailer line accepted; longer means a broken or hostile replica.
const MAX_LINE: usize = 4096;

/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 64 * 1024;

/// How the body of a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (HEAD, 1xx, 204, 304, or `content-length: 0`).
    Empty,
    /// `content-length`: this many bytes are still to come.
    Length(u64),
    /// `transfer-encoding: chunked`, in the given state.
    Chunked(Chunk),
    /// Neither: the body ends when the replica closes the connection.
    UntilClose,
    /// The body has ended (and, unless it was close-delimited, the connection may be reused).
    Done,
}

/// Where a chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes to go.
    Data(u64),
    /// Expecting the CRLF that ends a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one, this many bytes read so far.
    Trailers(usize),
}

/// What one decoding step found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A piece of the body.
    Data(Bytes),
    /// Nothing decodable yet: read more.
    NeedMore,
    /// The body has ended.
    End,
}

/// A response body the replica framed wrongly.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed chunked body: {0}")]
pub struct Malformed(pub &'static str);

impl Framing {
    /// Decodes what `buf` holds as far as one piece of data or the end. Consumed bytes (chunk
    /// framing and data) leave `buf`; what is left belongs to later steps.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Malformed> {
        loop {
            match *self {
                Framing::Empty | Framing::Done => {
                    *self = Framing::Done;
                    return Ok(Decoded::End);
                }
                Framing::Length(0) => {
                    *self = Framing::Done;
                    return Ok(Decoded::End);
                }
                Framing::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = take_len(left, buf.len());
                    *self = Framing::Length(left - n as u64);
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                Framing::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                Framing::Chunked(state) => match decode_chunked(state, buf)? {
                    Step::Continue(next) => *self = Framing::Chunked(next),
                    Step::Data(next, data) => {
                        *self = Framing::Chunked(next);
                        return Ok(Decoded::Data(data));
                    }
                    Step::NeedMore(next) => {
                        *self = Framing::Chunked(next);
                        return Ok(Decoded::NeedMore);
                    }
                    Step::End => *self = Framing::Done,
                },
            }
        }
    }

    /// Whether the body has been read to its end.
    pub fn is_done(&self) -> bool {
        matches!(self, Framing::Done)
    }
}

/// One move of the chunked decoder.
enum Step {
    Continue(Chunk),
    Data(Chunk, Bytes),
    NeedMore(Chunk),
    End,
}

fn decode_chunked(state: Chunk, buf: &mut BytesMut) -> Result<Step, Malformed> {
    match state {
        Chunk::Size => {
            let Some(line_end) = find_crlf(buf) else {
                return if buf.len() > MAX_LINE {
                    Err(Malformed("chunk-size line too long"))
                } else {
                    Ok(Step::NeedMore(Chunk::Size))
                };
            };
            let size = chunk_size(&buf[..line_end])?;
            buf.advance(line_end + 2);
            Ok(Step::Continue(if size == 0 {
                Chunk::Trailers(0)
            } else {
                Chunk::Data(size)
            }))
        }
        Chunk::Data(left) => {
            if buf.is_empty() {
                return Ok(Step::NeedMore(Chunk::Data(left)));
            }
            let n = take_len(left, buf.len());
            let data = buf.split_to(n).freeze();
            let rest = left - n as u64;
            let next = if rest == 0 {
                Chunk::DataEnd
            } else {
                Chunk::Data(rest)
            };
            Ok(Step::Data(next, data))
        }
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return Ok(Step::NeedMore(Chunk::DataEnd));
            }
            if &buf[..2] != b"\r\n" {
                return Err(Malformed("chunk data not followed by CRLF"));
            }
            buf.advance(2);
            Ok(Step::Continue(Chunk::Size))
        }
        Chunk::Trailers(seen) => {
            let Some(line_end) = find_crlf(buf) else {
                return if seen + buf.len() > MAX_TRAILERS {
                    Err(Malformed("trailers too long"))
                } else {
                    Ok(Step::NeedMore(Chunk::Trailers(seen)))
                };
            };
            buf.advance(line_end + 2);
            if line_end == 0 {
                Ok(Step::End)
            } else if seen + line_end + 2 > MAX_TRAILERS {
                Err(Malformed("trailers too long"))
            } else {
                Ok(Step::Continue(Chunk::Trailers(seen + line_end + 2)))
            }
        }
    }
}

/// How many of `available` bytes belong to a body part with `left` bytes to go.
fn take_len(left: u64, available: usize) -> usize {
    usize::try_from(left).map_or(available, |left| left.min(available))
}

/// The hex size at the start of a chunk-size line (extensions after `;` are ignored).
fn chunk_size(line: &[u8]) -> Result<u64, Malformed> {
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits == 0 {
        return Err(Malformed("chunk size is not hex"));
    }
    if digits > 15 {
        return Err(Malformed("chunk size too large"));
    }
    let rest = &line[digits..];
    let rest_ok = rest.is_empty()
        || rest
            .iter()
            .find(|b| **b != b' ' && **b != b'\t')
            .is_some_and(|b| *b == b';');
    if !rest_ok {
        return Err(Malformed("junk after the chunk size"));
    }
    let mut size = 0u64;
    for b in &line[..digits] {
        // `is_ascii_hexdigit` held for each byte: `to_digit` cannot fail.
        size = size * 16 + u64::from((*b as char).to_digit(16).unwrap_or(0));
    }
    Ok(size)
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
