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

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
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
/// `Connection` header, `keepalive 64`), one worker per core, no access log, and no cap on
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
             server {{\n    listen 127.0.0.1:{port} reuseport;\n    client_max_body_size 16m;\n\
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
    wait_listening(port, "nginx");
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
    wait_listening(port, "haproxy");
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

/// CPU time (user + system) of `pid` and every process under it, in microseconds, from /proc.
pub fn cpu_us_of_tree(pid: u32) -> u64 {
    let ticks_per_s = 100; // USER_HZ on Linux
    let mut total = 0;
    let mut stack = vec![pid];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        seen += 1;
        if seen > 1024 {
            break;
        }
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
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
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")) {
            stack.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    total
}
