//! Unit tests of body reading and model extraction.
use super::*;

#[test]
fn model_is_found_among_large_fields() {
    let prompt = "x".repeat(2 << 20);
    let body = format!(
        r#"{{"messages":[{{"role":"user","content":"{prompt}"}}],"stream":true,"model":"llama"}}"#
    );
    assert_eq!(model_of(body.as_bytes()).unwrap().as_deref(), Some("llama"));
}

#[test]
fn escaped_model_names_are_decoded() {
    assert_eq!(
        model_of(br#"{"model":"a\/b"}"#).unwrap().as_deref(),
        Some("a/b")
    );
}

#[test]
fn missing_model_and_bad_json_are_told_apart() {
    assert_eq!(model_of(br#"{"input":"x"}"#).unwrap(), None);
    assert!(matches!(
        model_of(b"{not json"),
        Err(ProxyError::BadJson(_))
    ));
    assert!(matches!(
        model_of(br#"{"model":3}"#),
        Err(ProxyError::BadJson(_))
    ));
}

#[test]
fn encoded_bodies_are_decoded_within_the_limit() {
    use std::io::Write;
    let body = br#"{"model":"m","prompt":"hello"}"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body).unwrap();
    let gz = bytes::Bytes::from(gz.finish().unwrap());
    assert_eq!(&decode(gz.clone(), Some("gzip"), 1024).unwrap()[..], body);
    assert_eq!(&decode(gz.clone(), Some(" GZIP "), 1024).unwrap()[..], body);
    let exact = body.len() as u64;
    assert!(decode(gz.clone(), Some("gzip"), exact).is_ok());
    assert!(matches!(
        decode(gz, Some("gzip"), exact - 1),
        Err(ProxyError::BodyTooLarge { .. })
    ));
    let zstd = bytes::Bytes::from(zstd::encode_all(&body[..], 3).unwrap());
    assert_eq!(&decode(zstd, Some("zstd"), 1024).unwrap()[..], body);
    let plain = bytes::Bytes::from_static(body);
    assert_eq!(
        decode(plain.clone(), Some("identity"), 1024).unwrap(),
        plain
    );
    assert!(matches!(
        decode(plain.clone(), Some("br"), 1024),
        Err(ProxyError::UnsupportedEncoding(e)) if e == "br"
    ));
    assert!(matches!(
        decode(plain, Some("gzip"), 1024),
        Err(ProxyError::BadBody(_))
    ));
}

#[test]
fn json_content_types_are_recognised_in_any_case() {
    for ct in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/vnd.api+JSON",
        "text/plain",
        "APPLICATION/X-WWW-FORM-URLENCODED",
    ] {
        assert!(is_json(Some(ct)), "{ct}");
    }
    assert!(is_json(None));
    for ct in [
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "json",
    ] {
        assert!(!is_json(Some(ct)), "{ct}");
    }
}
