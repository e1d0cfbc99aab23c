//! The body decoder on whole and split inputs.

use super::*;

/// Feeds `wire` to a decoder in pieces cut at `cuts`; returns the body and what was left over.
fn decode_in_pieces(mut framing: Framing, wire: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<u8>) {
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut bounds: Vec<usize> = cuts.to_vec();
    bounds.push(wire.len());
    let mut from = 0;
    for to in bounds {
        buf.extend_from_slice(&wire[from..to]);
        from = to;
        loop {
            match framing.decode(&mut buf).expect("well-formed") {
                Decoded::Data(d) => body.extend_from_slice(&d),
                Decoded::NeedMore => break,
                Decoded::End => {
                    // What is left: the unread part of the buffer, then what was never fed.
                    let mut rest = buf.to_vec();
                    rest.extend_from_slice(&wire[from..]);
                    return (body, rest);
                }
            }
        }
    }
    panic!(
        "the body did not end; got {:?}",
        String::from_utf8_lossy(&body)
    );
}

const CHUNKED: &[u8] = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";

#[test]
fn a_chunked_body_decodes_the_same_however_it_is_split() {
    for a in 0..=CHUNKED.len() {
        for b in a..=CHUNKED.len() {
            let (body, rest) = decode_in_pieces(Framing::Chunked(Chunk::Size), CHUNKED, &[a, b]);
            assert_eq!(body, b"hello, world", "cut at {a}, {b}");
            assert_eq!(rest, b"NEXT", "cut at {a}, {b}");
        }
    }
}

#[test]
fn a_length_body_ends_at_its_length_and_leaves_the_rest() {
    let wire = b"0123456789EXTRA";
    for a in 0..=wire.len() {
        let (body, rest) = decode_in_pieces(Framing::Length(10), wire, &[a]);
        assert_eq!(body, b"0123456789");
        assert_eq!(rest, b"EXTRA");
    }
}

#[test]
fn an_empty_body_ends_at_once() {
    let mut buf = BytesMut::from(&b"anything"[..]);
    let mut framing = Framing::Empty;
    assert_eq!(framing.decode(&mut buf), Ok(Decoded::End));
    assert!(framing.is_done());
    assert_eq!(&buf[..], b"anything");
}

#[test]
fn a_close_delimited_body_hands_on_whatever_arrives() {
    let mut buf = BytesMut::from(&b"abc"[..]);
    let mut framing = Framing::UntilClose;
    assert_eq!(
        framing.decode(&mut buf),
        Ok(Decoded::Data(Bytes::from_static(b"abc")))
    );
    assert_eq!(framing.decode(&mut buf), Ok(Decoded::NeedMore));
    assert!(!framing.is_done());
}

#[test]
fn chunk_data_is_split_off_without_a_copy() {
    let mut buf = BytesMut::from(&b"3\r\nabc\r\n0\r\n\r\n"[..]);
    let start = buf.as_ptr() as usize;
    let mut framing = Framing::Chunked(Chunk::Size);
    let Ok(Decoded::Data(data)) = framing.decode(&mut buf) else {
        panic!("no data");
    };
    assert_eq!(&data[..], b"abc");
    assert_eq!(data.as_ptr() as usize, start + 3, "the data was copied");
}

#[test]
fn malformed_chunked_bodies_are_errors() {
    for (wire, what) in [
        (&b"zz\r\nhello\r\n"[..], "chunk size is not hex"),
        (&b"5x\r\nhello\r\n"[..], "junk after the chunk size"),
        (&b"5\r\nhelloXX"[..], "chunk data not followed by CRLF"),
        (&b"1000000000000000\r\n"[..], "chunk size too large"),
    ] {
        let mut buf = BytesMut::from(wire);
        let mut framing = Framing::Chunked(Chunk::Size);
        let error = loop {
            match framing.decode(&mut buf) {
                Ok(Decoded::Data(_)) => continue,
                Ok(other) => panic!("{what}: decoded to {other:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(error, Malformed(what));
    }
}

#[test]
fn an_endless_chunk_size_line_is_refused() {
    let mut buf = BytesMut::from(&vec![b'1'; 1][..]);
    buf.extend_from_slice(&vec![b' '; MAX_LINE + 1]);
    let mut framing = Framing::Chunked(Chunk::Size);
    assert_eq!(
        framing.decode(&mut buf),
        Err(Malformed("chunk-size line too long"))
    );
}
