//! Rewriting a request for a provider: the path under its base URL and the JSON `model` field.

use bytes::Bytes;
use serde_json::Value;

/// The path on the provider: the request path with its leading `/v1` replaced by the
/// provider's base path (`/v1/chat/completions` + base `/openai/v1` → `/openai/v1/chat/completions`).
pub fn provider_path(base_path: &str, path_and_query: &str) -> String {
    let rest = path_and_query
        .strip_prefix("/v1")
        .filter(|r| r.is_empty() || r.starts_with('/') || r.starts_with('?'))
        .unwrap_or(path_and_query);
    format!("{base_path}{rest}")
}

/// The body with its top-level `model` set to `model` (other fields and their order kept).
/// Bodies that are not a JSON object are returned unchanged.
pub fn with_model(body: &Bytes, model: &str) -> Bytes {
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(body) else {
        return body.clone();
    };
    if object.get("model").and_then(Value::as_str) == Some(model) {
        return body.clone();
    }
    object.insert("model".into(), Value::String(model.to_string()));
    serde_json::to_vec(&Value::Object(object)).map_or_else(|_| body.clone(), Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_move_under_the_base_path() {
        assert_eq!(
            provider_path("/v1", "/v1/chat/completions"),
            "/v1/chat/completions"
        );
        assert_eq!(provider_path("", "/v1/embeddings"), "/embeddings");
        assert_eq!(
            provider_path("/openai/v1", "/v1/completions?x=1"),
            "/openai/v1/completions?x=1"
        );
        assert_eq!(provider_path("/v1", "/v1beta/x"), "/v1/v1beta/x");
    }

    #[test]
    fn model_is_replaced_and_the_rest_kept_in_order() {
        let body = Bytes::from_static(
            br#"{"stream":true,"model":"llama","messages":[{"role":"user","content":"hi"}]}"#,
        );
        let out = with_model(&body, "gpt-4o-mini");
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"stream":true,"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#
        );
        assert_eq!(
            with_model(&Bytes::from_static(b"not json"), "m"),
            "not json"
        );
    }
}
