//! The simulated audio endpoints (`/v1/audio/transcriptions`, `/v1/audio/translations`): a
//! multipart form with a `file` and a `model`, answered with a "transcript" that says what arrived
//! (file name, byte count, model), so tests can check the proxy passed the body on unchanged.

use super::state::SimState;
use super::{full, json_error, SimBody};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Largest audio upload accepted.
const MAX_UPLOAD: usize = 64 * 1024 * 1024;

/// Answers an audio request with `{"text": "<n> bytes of <file> heard by <model>"}`.
pub(crate) async fn transcribe(state: Arc<SimState>, req: Request<Incoming>) -> Response<SimBody> {
    state.requests.fetch_add(1, Ordering::AcqRel);
    let bad = |msg: String| {
        json_error(
            StatusCode::BAD_REQUEST,
            &msg,
            "invalid_request_error",
            "bad_form",
        )
    };
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(boundary) = content_type
        .as_deref()
        .and_then(|ct| multer::parse_boundary(ct).ok())
    else {
        return bad("expected multipart/form-data".into());
    };
    let body = match Limited::new(req.into_body(), MAX_UPLOAD).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return bad(format!("cannot read body: {e}")),
    };
    let stream = futures_util::stream::once(std::future::ready(Ok::<_, std::io::Error>(body)));
    let mut form = multer::Multipart::new(stream, boundary);
    let (mut model, mut file) = (None, None);
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_string();
                let filename = field.file_name().map(str::to_string);
                let Ok(data) = field.bytes().await else {
                    return bad("cannot read a form field".into());
                };
                match name.as_str() {
                    "model" => model = Some(String::from_utf8_lossy(&data).to_string()),
                    "file" => file = Some((filename.unwrap_or_default(), data.len())),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(e) => return bad(format!("bad multipart body: {e}")),
        }
    }
    let (Some(model), Some((name, len))) = (model, file) else {
        return bad("'file' and 'model' are required".into());
    };
    state.completed.fetch_add(1, Ordering::AcqRel);
    full(
        StatusCode::OK,
        "application/json",
        json!({"text": format!("{len} bytes of {name} heard by {model}")}).to_string(),
    )
}
