//! Multipart requests (issue 12 item 2): the audio endpoints as the official Python client sends
//! them (`multipart/form-data`, `model` as a form field) are routed by that field, and the body
//! reaches the replica unchanged.

use crate::clients::{assert_python_printed, python, run_python};
use crate::harness::{sim_deployment, Proxy};

const PY_AUDIO: &str = r#"
import sys, openai
c = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
data = bytes(range(256)) * 40
raw = c.audio.transcriptions.with_raw_response.create(model="whisper", file=("clip.wav", data, "audio/wav"))
assert raw.parse().text == "10240 bytes of clip.wav heard by whisper", raw.parse().text
assert raw.headers["x-infergate-route"] == "replica/whisper-0", raw.headers
raw = c.audio.translations.with_raw_response.create(model="speech", file=("b.mp3", data[:100], "audio/mpeg"))
assert raw.parse().text == "100 bytes of b.mp3 heard by speech", raw.parse().text
assert raw.headers["x-infergate-route"] == "replica/whisper-0", raw.headers
try:
    c.audio.transcriptions.create(model="nope", file=("a.wav", data, "audio/wav"))
    raise SystemExit("an unknown model was accepted")
except openai.NotFoundError as e:
    assert e.code == "model_not_found", e
print("audio-ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_audio_endpoints_are_routed_by_their_model_form_field() {
    let py = tokio::task::spawn_blocking(python).await.unwrap();
    let proxy = Proxy::start(&format!(
        "{}{}",
        sim_deployment("chat", "min_replicas = 1", "--ttft 1ms"),
        sim_deployment(
            "whisper",
            "aliases = [\"speech\"]\nmin_replicas = 1",
            "--ttft 1ms"
        ),
    ));
    proxy.wait_ready("whisper", 1).await;
    let out = run_python(py, PY_AUDIO, &[&proxy.url("/v1")], None).await;
    assert_python_printed(&out, "audio-ok", &proxy);
}
