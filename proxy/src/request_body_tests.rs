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
