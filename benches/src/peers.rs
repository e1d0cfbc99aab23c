//! The peers the benchmark compares against, started as separate processes on the same
//! simulated backend: nginx and haproxy from Debian (`bench.sh` installs them with apt when they
//! are missing), each configured the way their docs recommend for a keep-alive reverse proxy.

use crate::Running;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 (bound, read and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn wait_listening(port: u16, what: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() >= deadline {
            eprintln!("{what} did not listen on {port} within {within:?}: left out");
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

fn spawn(cmd: &mut Command, what: &str) -> Running {
    Running::new(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}")),
    )
}

/// nginx 1.22 as a reverse proxy with upstream keep-alive (`proxy_http_version 1.1`, an empty
/// `Connection` header, `keepalive 64`), one worker per core, no access log, request bodies up to 128 KiB kept in
/// memory (its default of 16 KiB writes a 64 KiB body to a temporary file), and no cap on
/// requests per connection (its default of 1,000 would close client connections mid-run).
pub fn nginx(upstream: &str, dir: &Path) -> Option<(Running, String)> {
    let bin = which("nginx")?;
    let port = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes auto;\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dir};\n  proxy_temp_path {dir};\n\
             keepalive_requests 1000000;\n  keepalive_timeout 120s;\n\
             upstream sim {{ server {upstream}; keepalive 64; keepalive_requests 1000000; }}\n\
             server {{\n    listen 127.0.0.1:{port} reuseport;\n    client_max_body_size 16m;\n    client_body_buffer_size 128k;\n\
             location / {{\n      proxy_pass http://sim;\n      proxy_http_version 1.1;\n\
             proxy_set_header Connection \"\";\n      proxy_buffering off;\n    }}\n  }}\n}}\n",
            dir = dir.display()
        ),
    )
    .ok()?;
    let running = spawn(
        Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .arg("-g")
            .arg("daemon off;"),
        "nginx",
    );
    wait_listening(port, "nginx", Duration::from_secs(10)).then_some(())?;
    Some((running, format!("127.0.0.1:{port}")))
}

/// haproxy 2.6 in HTTP mode with connection reuse, one thread per core, no logging.
pub fn haproxy(upstream: &str, dir: &Path) -> Option<(Running, String)> {
    let bin = which("haproxy")?;
    let port = free_port();
    let conf = dir.join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global\n  nbthread 2\n  maxconn 8000\n\
             defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  http-reuse always\n\
             frontend bench\n  bind 127.0.0.1:{port}\n  default_backend sim\n\
             backend sim\n  server s1 {upstream}\n"
        ),
    )
    .ok()?;
    let running = spawn(Command::new(bin).arg("-f").arg(&conf).arg("-db"), "haproxy");
    wait_listening(port, "haproxy", Duration::from_secs(10)).then_some(())?;
    Some((running, format!("127.0.0.1:{port}")))
}

/// vllm-router (the Rust router vLLM ships on PyPI) in front of the one worker, round robin,
/// its retries and circuit breaker off (the backend never fails) and its metrics on a free port.
pub fn vllm_router(upstream: &str, venv: &Path) -> Option<(Running, String)> {
    let bin = venv.join("bin/vllm-router");
    if !bin.is_file() {
        eprintln!(
            "vllm-router is not in {}: left out (./bench.sh installs it)",
            venv.display()
        );
        return None;
    }
    let port = free_port();
    let running = spawn(
        Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--worker-urls", &format!("http://{upstream}")])
            .args([
                "--policy",
                "round_robin",
                "--disable-retries",
                "--disable-circuit-breaker",
            ])
            .args([
                "--prometheus-port",
                &free_port().to_string(),
                "--log-level",
                "warning",
            ]),
        "vllm-router",
    );
    wait_listening(port, "vllm-router", Duration::from_secs(60)).then_some(())?;
    Some((running, format!("127.0.0.1:{port}")))
}

/// LiteLLM's proxy with one model entry pointing at the simulated server as an OpenAI-compatible
/// endpoint, one worker, no database, the bundled cost map (no network), logging at warning.
pub fn litellm(upstream: &str, venv: &Path, dir: &Path) -> Option<(Running, String)> {
    let bin = venv.join("bin/litellm");
    if !bin.is_file() {
        eprintln!(
            "litellm is not in {}: left out (./bench.sh installs it)",
            venv.display()
        );
        return None;
    }
    let port = free_port();
    let conf = dir.join("litellm.yaml");
    std::fs::write(
        &conf,
        format!(
            "model_list:\n  - model_name: bench\n    litellm_params:\n      model: openai/bench\n\
             \x20     api_base: http://{upstream}/v1\n      api_key: none\n\
             litellm_settings:\n  telemetry: false\n  drop_params: true\n"
        ),
    )
    .ok()?;
    let running = spawn(
        Command::new(bin)
            .arg("--config")
            .arg(&conf)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--num_workers",
                "1",
            ])
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("LITELLM_LOG", "WARNING")
            .env("NO_DOCS", "True")
            // No clients but this benchmark reach it; without a key it refuses to start.
            .env(
                "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY",
                "true",
            ),
        "litellm",
    );
    wait_listening(port, "litellm", Duration::from_secs(120)).then_some(())?;
    Some((running, format!("127.0.0.1:{port}")))
}

/// The path of `name` on `$PATH` or in /usr/sbin (where Debian puts nginx and haproxy).
fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// `pid` and every process under it (from /proc).
pub fn tree(pid: u32) -> Vec<u32> {
    let (mut all, mut stack) = (Vec::new(), vec![pid]);
    while let Some(p) = stack.pop() {
        if all.len() > 1024 {
            break;
        }
        all.push(p);
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")) {
            stack.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    all
}

/// CPU time (user + system) of `pid` and every process under it, in microseconds, from /proc.
pub fn cpu_us_of_tree(pid: u32) -> u64 {
    let ticks_per_s = 100; // USER_HZ on Linux
    let mut total = 0;
    for p in tree(pid) {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // Fields after the command (which may hold spaces) start past the last ')'.
        if let Some(rest) = stat.rsplit_once(')').map(|r| r.1) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let (utime, stime) = (
                f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0),
                f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0),
            );
            total += (utime + stime) * 1_000_000 / ticks_per_s;
        }
    }
    total
}
