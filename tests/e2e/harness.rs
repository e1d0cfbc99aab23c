//! Test harness: runs the real `infergate` binary with a generated config on OS-chosen ports,
//! reads the addresses it prints, and stops it (SIGTERM, then SIGKILL) when dropped.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_infergate");

/// The admin token every test proxy is started with.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A scratch directory under target/ for config files and certificates.
pub fn scratch_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "e2e-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A process-backend deployment table running the simulated model server.
pub fn sim_deployment(name: &str, settings: &str, sim_args: &str) -> String {
    let args: Vec<String> = sim_args
        .split_whitespace()
        .map(|a| format!("{a:?}"))
        .collect();
    let extra = if args.is_empty() {
        String::new()
    } else {
        format!(", {}", args.join(", "))
    };
    format!(
        r#"
[deployments.{name}]
{settings}
[deployments.{name}.backend]
type = "process"
command = ["{{infergate}}", "sim-server", "--port", "{{port}}", "--model", "{{model}}"{extra}]
"#
    )
}

/// A running infergate.
pub struct Proxy {
    pub child: Child,
    pub base: String,
    /// The first `https://` listener, if any.
    pub tls_base: Option<String>,
    /// Every listener, in config order.
    pub listeners: Vec<String>,
    pub admin: String,
    pub stderr_path: PathBuf,
    /// The config file it was started with (tests rewrite it to reload).
    pub config_path: PathBuf,
}

impl Proxy {
    /// Starts infergate with `[server]` on port 0 plus the given deployment tables.
    pub fn start(deployments: &str) -> Proxy {
        Self::start_with_server("listeners = [{ address = \"127.0.0.1:0\" }]", deployments)
    }

    /// Starts infergate with a custom `[server]` body.
    pub fn start_with_server(server: &str, deployments: &str) -> Proxy {
        Self::start_with_env(server, deployments, &[])
    }

    /// Starts infergate with a custom `[server]` body and extra environment variables.
    pub fn start_with_env(server: &str, deployments: &str, env: &[(&str, &str)]) -> Proxy {
        Self::start_full(server, deployments, env, &[])
    }

    /// Starts infergate with a custom `[server]` body, environment and extra arguments.
    pub fn start_full(
        server: &str,
        deployments: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Proxy {
        let dir = scratch_dir();
        // Never the default 127.0.0.1:8080: tests run side by side (and the README test needs it).
        let port_zero = "listeners = [{ address = \"127.0.0.1:0\" }]\n";
        let server = if server.contains("listeners") {
            server.to_string()
        } else {
            format!("{port_zero}{server}")
        };
        let config = format!("[server]\n{server}\nshutdown_grace = \"20s\"\n[admin]\naddress = \"127.0.0.1:0\"\n{deployments}");
        let path = dir.join("infergate.toml");
        std::fs::write(&path, config).unwrap();
        let stderr_path = dir.join("stderr.log");
        let mut child = Command::new(BIN)
            .env("INFERGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start infergate");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut base = None;
        let mut tls_base = None;
        let mut listeners = Vec::new();
        let mut admin = None;
        let wants_tls = server.contains("tls");
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(url) = line.trim().strip_prefix("listening on ") {
                listeners.push(url.to_string());
                if url.starts_with("https://") {
                    tls_base.get_or_insert(url.to_string());
                } else {
                    base.get_or_insert(url.to_string());
                }
            }
            if let Some(rest) = line.trim().strip_prefix("admin on ") {
                admin = rest.split_whitespace().next().map(str::to_string);
            }
            if base.is_some() && admin.is_some() && (tls_base.is_some() || !wants_tls) {
                break;
            }
        }
        // Keep draining stdout so the proxy never writes into a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let (Some(base), Some(admin)) = (base, admin) else {
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("infergate did not start:\n{log}");
        };
        Proxy {
            child,
            base,
            tls_base,
            listeners,
            admin,
            stderr_path,
            config_path: path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Live state of one deployment from the admin API.
    pub async fn state(&self, deployment: &str) -> Value {
        self.admin_get(&format!("/admin/v1/deployments/{deployment}"))
            .await
            .json()
            .await
            .unwrap()
    }

    /// `GET` on the admin listener with the token.
    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(format!("{}{path}", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// The events the admin API lists for `query` (e.g. `deployment=x`), in order.
    pub async fn events(&self, query: &str) -> Vec<Value> {
        let events: Value = self
            .admin_get(&format!("/admin/v1/events?{query}"))
            .await
            .json()
            .await
            .unwrap();
        events["events"].as_array().unwrap().clone()
    }

    /// The types of the events the admin API lists for `query` (e.g. `deployment=x`), in order.
    pub async fn event_types(&self, query: &str) -> Vec<String> {
        self.events(query)
            .await
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect()
    }

    /// The Prometheus text of `/metrics` (no token: scrapers need none).
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `POST` on the admin listener with the token.
    pub async fn admin_post(&self, path: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}{path}", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// Sends one chat completion request through the proxy.
    pub async fn chat(&self, model: &str, stream: bool, max_tokens: u32) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url("/v1/chat/completions"))
            .json(&chat(model, stream, max_tokens))
            .send()
            .await
            .unwrap()
    }

    /// Counters of the simulated server behind a (single-replica) deployment, fetched through
    /// the proxy by header routing (the deployment must list `/sim/stats` in `route.passthrough`).
    pub async fn sim_stats(&self, deployment: &str) -> Value {
        reqwest::Client::new()
            .get(self.url("/sim/stats"))
            .header("x-infergate-deployment", deployment)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until `check` holds on the deployment's state (panics after `timeout`).
    pub async fn wait_state(
        &self,
        deployment: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.state(deployment).await;
            if check(&state) {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "state never satisfied the condition: {state:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the deployment has `count` ready replicas.
    pub async fn wait_ready(&self, deployment: &str, count: usize) -> Value {
        self.wait_state(deployment, Duration::from_secs(30), |s| {
            s["replicas"]
                .as_array()
                .is_some_and(|r| r.iter().filter(|r| r["state"] == "ready").count() == count)
        })
        .await
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe {
            libc_kill(self.child.id() as i32, 15);
        }
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "infergate did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            unsafe {
                libc_kill(self.child.id() as i32, 15);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Sends a signal to a process (tests use it to crash replicas).
pub fn kill(pid: u32, signal: i32) {
    unsafe {
        libc_kill(pid as i32, signal);
    }
}

/// Whether a process is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Pids of the direct children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) {
            let after = stat.rsplit(')').next().unwrap_or("");
            let ppid = after
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(pid) {
                out.push(child);
            }
        }
    }
    out
}

/// A chat request body.
pub fn chat(model: &str, stream: bool, max_tokens: u32) -> Value {
    serde_json::json!({"model": model, "stream": stream, "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "hello"}]})
}

/// Runs a simulated model server as a separate process (for static backends).
pub struct SimServer {
    pub child: Child,
    pub url: String,
}

impl SimServer {
    pub fn start(args: &str) -> SimServer {
        let mut child = Command::new(BIN)
            .arg("sim-server")
            .args(args.split_whitespace())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap()
            .to_string();
        SimServer { child, url }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
