//! Response heads: framing, keep-alive, interim responses, and what reaches the client.

use super::*;

fn head(wire: &str) -> ResponseHead {
    let mut buf = BytesMut::from(wire.as_bytes());
    parse(&mut buf, false).expect("valid").expect("complete")
}

#[test]
fn a_partial_head_asks_for_more_and_a_whole_one_leaves_the_body_in_the_buffer() {
    let wire = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    for cut in 0..wire.len() - 2 {
        let mut buf = BytesMut::from(&wire[..cut]);
        assert!(parse(&mut buf, false).unwrap().is_none(), "cut at {cut}");
    }
    let mut buf = BytesMut::from(&wire[..]);
    let head = parse(&mut buf, false).unwrap().unwrap();
    assert_eq!(head.header.status.as_u16(), 200);
    assert_eq!(head.framing, Framing::Length(2));
    assert!(head.keep_alive);
    assert_eq!(&buf[..], b"ok");
}

#[test]
fn framing_follows_rfc_9112() {
    let chunked = head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
    assert_eq!(chunked.framing, Framing::Chunked(Chunk::Size));
    assert!(chunked.keep_alive);
    let gzip_last = head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n");
    assert_eq!(gzip_last.framing, Framing::UntilClose);
    assert!(!gzip_last.keep_alive);
    let neither = head("HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(neither.framing, Framing::UntilClose);
    assert!(!neither.keep_alive);
    assert_eq!(
        head("HTTP/1.1 204 No Content\r\n\r\n").framing,
        Framing::Empty
    );
    assert_eq!(
        head("HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n").framing,
        Framing::Empty
    );
    let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n"[..]);
    assert_eq!(
        parse(&mut buf, true).unwrap().unwrap().framing,
        Framing::Empty
    );
}

#[test]
fn both_framings_mean_chunked_without_the_length_and_no_reuse() {
    let both = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n");
    assert_eq!(both.framing, Framing::Chunked(Chunk::Size));
    assert!(both.header.headers.get("content-length").is_none());
    assert!(!both.keep_alive);
}

#[test]
fn keep_alive_follows_the_connection_header_and_the_version() {
    assert!(!head("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").keep_alive);
    assert!(!head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").keep_alive);
    assert!(
        head("HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n").keep_alive
    );
}

#[test]
fn one_hop_headers_stay_here_and_the_rest_reach_the_client() {
    let h = head(
        "HTTP/1.1 200 OK\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\n\
         content-type: text/event-stream\r\nx-custom: a\r\nx-custom: b\r\ncontent-length: 0\r\n\r\n",
    );
    let headers = &h.header.headers;
    assert!(headers.get("connection").is_none());
    assert!(headers.get("keep-alive").is_none());
    assert_eq!(headers.get("content-type").unwrap(), "text/event-stream");
    let custom: Vec<_> = headers.get_all("x-custom").iter().collect();
    assert_eq!(custom, ["a", "b"]);
}

#[test]
fn interim_responses_are_skipped() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"[..],
    );
    let head = parse(&mut buf, false).unwrap().unwrap();
    assert_eq!(head.header.status.as_u16(), 201);
    assert!(buf.is_empty());
}

#[test]
fn broken_heads_are_errors() {
    for wire in [
        "HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        "NOT HTTP\r\n\r\n",
    ] {
        let mut buf = BytesMut::from(wire.as_bytes());
        assert!(parse(&mut buf, false).is_err(), "{wire:?} was accepted");
    }
    let mut huge = BytesMut::from(&b"HTTP/1.1 200 OK\r\nx: "[..]);
    huge.extend_from_slice(&vec![b'a'; MAX_HEAD]);
    assert!(parse(&mut huge, false).is_err());
}
