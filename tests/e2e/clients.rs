//! Real OpenAI client libraries through the proxy: async-openai (Rust) and the official Python
//! `openai` package (installed into a venv under target/ on first use).

use crate::harness::{sim_deployment, Proxy};
use async_openai::config::OpenAIConfig;
use async_openai::types::{
    ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
    CreateCompletionRequestArgs, CreateEmbeddingRequestArgs,
};
use async_openai::Client;
use futures_util::StreamExt;
use std::path::PathBuf;
use std::process::Command;

fn proxy() -> Proxy {
    Proxy::start(&format!(
        "{}{}",
        sim_deployment(
            "chat-model",
            "aliases = [\"chat\"]\nmin_replicas = 1",
            "--ttft 5ms --tokens-per-s 500"
        ),
        sim_deployment(
            "embed-model",
            "min_replicas = 0",
            "--ttft 5ms --cold-start 500ms"
        )
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_openai_client_chat_stream_completions_embeddings_models() {
    let proxy = proxy();
    let client = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(proxy.url("/v1"))
            .with_api_key("unused"),
    );

    let request = CreateChatCompletionRequestArgs::default()
        .model("chat")
        .max_tokens(6u32)
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("hi")
            .build()
            .unwrap()
            .into()])
        .build()
        .unwrap();
    let response = client.chat().create(request.clone()).await.unwrap();
    let text = response.choices[0].message.content.clone().unwrap();
    assert_eq!(text, "Hello from a simulated model server");

    let mut stream = client.chat().create_stream(request).await.unwrap();
    let mut streamed = String::new();
    let mut finish = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        for choice in chunk.choices {
            if let Some(c) = choice.delta.content {
                streamed.push_str(&c);
            }
            if choice.finish_reason.is_some() {
                finish = choice.finish_reason;
            }
        }
    }
    assert_eq!(streamed, text);
    assert!(finish.is_some(), "stream ended without a finish_reason");

    let completion = client
        .completions()
        .create(
            CreateCompletionRequestArgs::default()
                .model("chat-model")
                .prompt("once upon")
                .max_tokens(3u32)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(completion.choices[0].text, "Hello from a");

    // The embedding deployment (min 0) may still be cold-starting its first-deploy replica: the
    // request waits for it.
    let embeddings = client
        .embeddings()
        .create(
            CreateEmbeddingRequestArgs::default()
                .model("embed-model")
                .input(["a", "b"])
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(embeddings.data.len(), 2);
    assert_eq!(embeddings.data[0].embedding.len(), 16);

    let models = client.models().list().await.unwrap();
    let ids: Vec<_> = models.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec!["chat-model", "embed-model"]);
}

/// The venv with the official `openai` package (and `prometheus_client`, whose text-format
/// parser checks `/metrics`, and `jsonschema`, which checks configs against
/// `infergate config schema`), created once under target/.
pub fn python() -> PathBuf {
    // Several tests may ask at once; one creates the venv.
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pyenv");
    let py = venv.join("bin/python");
    let ready = py.exists()
        && Command::new(&py)
            .args(["-c", "import openai, prometheus_client, jsonschema"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if !ready {
        let status = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .expect("python3 -m venv");
        assert!(status.success(), "cannot create a venv");
        let status = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "openai>=1.40",
                "prometheus_client",
                "jsonschema",
            ])
            .status()
            .expect("pip install openai");
        assert!(status.success(), "pip install openai failed");
    }
    py
}

/// A directory with the official Node `openai` package installed (npm, once, under target/).
pub fn node_openai() -> PathBuf {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nodeenv");
    if !dir.join("node_modules/openai/package.json").exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg("openai@4")
            .status()
            .expect("npm install openai");
        assert!(status.success(), "npm install openai failed");
    }
    dir
}

/// Runs `node -e script args…` with the `openai` package of [`node_openai`] resolvable.
pub async fn run_node(dir: PathBuf, script: &'static str, args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("-e")
            .arg(script)
            .arg("--")
            .args(&args)
            .env("NODE_PATH", dir.join("node_modules"))
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Runs `python -c script args…` (feeding `stdin` if given) off the async threads.
pub async fn run_python(
    py: PathBuf,
    script: &'static str,
    args: &[&str],
    stdin: Option<String>,
) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(py)
            .arg("-c")
            .arg(script)
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input); // end of input before waiting
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

const PY_SCRIPT: &str = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="unused")
r = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=6)
assert r.choices[0].message.content == "Hello from a simulated model server", r
parts, finish = [], None
for chunk in client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=6, stream=True, stream_options={"include_usage": True}):
    for c in chunk.choices:
        parts.append(c.delta.content or "")
        finish = c.finish_reason or finish
assert "".join(parts) == "Hello from a simulated model server", parts
assert finish == "length", finish
c = client.completions.create(model="chat-model", prompt="x", max_tokens=2)
assert c.choices[0].text == "Hello from", c
e = client.embeddings.create(model="embed-model", input=["a", "b", "c"])
assert len(e.data) == 3 and len(e.data[0].embedding) == 16, e
ids = [m.id for m in client.models.list().data]
assert ids == ["chat-model", "embed-model"], ids
try:
    client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    raise SystemExit("unknown model was accepted")
except openai.NotFoundError as err:
    assert err.code == "model_not_found", err
print("python-openai-ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_openai_client_chat_stream_completions_embeddings_models() {
    let py = tokio::task::spawn_blocking(python).await.unwrap();
    let proxy = proxy();
    let base = proxy.url("/v1");
    let out = run_python(py, PY_SCRIPT, &[&base], None).await;
    assert_python_printed(&out, "python-openai-ok", &proxy);
}

/// Asserts a Python run succeeded and printed `marker`; else fails with its output and the
/// proxy's log.
pub fn assert_python_printed(out: &std::process::Output, marker: &str, proxy: &Proxy) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(marker),
        "python client failed:\n{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
}
