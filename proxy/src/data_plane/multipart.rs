//! `multipart/form-data` requests (the audio endpoints: `/v1/audio/transcriptions`,
//! `/v1/audio/translations`), where the OpenAI SDKs put `model` in a form field, not in JSON.
//! The body is parsed with `multer` only to find that field; it goes upstream unchanged.

use bytes::Bytes;

/// The largest `model` field read (a model name, not a file).
const MAX_MODEL_FIELD: u64 = 4096;

/// The multipart boundary of a `multipart/form-data` content type, if it is one.
pub fn boundary(content_type: Option<&str>) -> Option<String> {
    let ct = content_type?.trim_start();
    // Checked on every request with a body: compare in place, no lower-cased copy.
    const FORM: &str = "multipart/form-data";
    if !ct
        .get(..FORM.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(FORM))
    {
        return None;
    }
    multer::parse_boundary(ct).ok()
}

/// A text field of a multipart body; `Ok(None)` when the body has no such field.
pub async fn text_field(
    body: &Bytes,
    boundary: &str,
    name: &str,
) -> Result<Option<String>, String> {
    let stream =
        futures_util::stream::once(std::future::ready(Ok::<_, std::io::Error>(body.clone())));
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().for_field(name, MAX_MODEL_FIELD));
    let mut form = multer::Multipart::with_constraints(stream, boundary, constraints);
    loop {
        match form.next_field().await {
            Ok(Some(field)) if field.name() == Some(name) => {
                return field.text().await.map(Some).map_err(|e| e.to_string());
            }
            Ok(Some(_)) => continue,
            Ok(None) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(boundary: &str) -> Bytes {
        Bytes::from(format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\x00\x01binary\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--{boundary}--\r\n"
        ))
    }

    #[tokio::test]
    async fn the_model_field_is_found_after_a_file() {
        let b = boundary(Some("multipart/form-data; boundary=xyz123")).unwrap();
        assert_eq!(b, "xyz123");
        assert_eq!(
            text_field(&form(&b), &b, "model").await.unwrap().as_deref(),
            Some("whisper-1")
        );
        assert_eq!(text_field(&form(&b), &b, "language").await.unwrap(), None);
        assert!(text_field(&Bytes::from_static(b"garbage"), &b, "model")
            .await
            .is_err());
        assert_eq!(boundary(Some("application/json")), None);
        assert_eq!(
            boundary(Some("Multipart/Form-Data; boundary=a")).as_deref(),
            Some("a")
        );
        assert_eq!(boundary(Some("multi")), None);
    }
}
