//! README's quick start, run as a new user would (issue 12 item 4): the embedded demo on its
//! documented ports, then every command of README's "Once the demo runs" block and every command
//! the start-up banner prints, each through `bash` exactly as written (only
//! `./target/release/infergate` is mapped to the binary under test). Each must succeed and print
//! no error.

use crate::harness::{scratch_dir, BIN};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Shell commands of the first ```sh block after `marker` in README, continuation lines joined.
fn readme_commands(marker: &str) -> Vec<String> {
    let readme = include_str!("../../README.md");
    let after = &readme[readme.find(marker).expect("marker in README")..];
    let start = after.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let block = &after[start..start + after[start..].find("```").unwrap()];
    join_continuations(block.lines())
}

fn join_continuations<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

fn run(command: &str, runtime_dir: &std::path::Path) -> (bool, String) {
    let mapped = command.replace("./target/release/infergate", BIN);
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail; {mapped}"))
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .env_remove("INFERGATE_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A demo infergate stopped (SIGTERM, then SIGKILL) when dropped.
struct Stop(std::process::Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `infergate ARGS` as a new user would (own runtime dir, no token in the environment).
fn start_demo(args: &[&str], runtime_dir: &std::path::Path) -> (Stop, std::process::ChildStdout) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .env_remove("INFERGATE_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    (Stop(child), stdout)
}

#[test]
fn every_quick_start_and_banner_command_works_as_written() {
    let runtime_dir = scratch_dir();
    let (_demo, stdout) = start_demo(&[], &runtime_dir);
    // The banner: everything up to the live-state curl, the last line it prints.
    let mut banner = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.trim_start().starts_with("curl -s -H \"authorization");
        banner.push(line);
        if done {
            break;
        }
    }
    let banner_commands: Vec<String> = join_continuations(
        banner
            .iter()
            .map(String::as_str)
            .filter(|l| {
                l.starts_with("  ")
                    && !l.starts_with("  listening")
                    && !l.starts_with("  admin")
                    && !l.starts_with("  deployment")
            })
            .map(|l| l.trim()),
    );
    assert!(banner_commands.len() >= 4, "{banner:#?}");
    let readme = readme_commands("Once the demo runs");
    assert!(readme.len() >= 3, "{readme:#?}");
    for command in readme.iter().chain(&banner_commands) {
        let (ok, out) = run(command, &runtime_dir);
        assert!(ok, "`{command}` failed:\n{out}");
        assert!(!out.trim().is_empty(), "`{command}` printed nothing");
        assert!(
            !out.contains("\"error\"") && !out.contains("missing_token"),
            "`{command}` answered an error:\n{out}"
        );
    }
    drop(_demo);

    // `--config config/src/demo.toml` is the same demo, simulated provider included.
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/src/demo.toml");
    let (_again, stdout) = start_demo(&["--config", file], &runtime_dir);
    let mut provider = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        provider |= line.contains("sim-server listening on http://127.0.0.1:8090");
        if line.contains("listening on http://127.0.0.1:8080") {
            break;
        }
    }
    assert!(
        provider,
        "the demo provider did not start with --config {file}"
    );
    let (ok, out) = run(
        "curl -si http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' -d '{\"model\":\"qwen\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'",
        &runtime_dir,
    );
    assert!(
        ok && out.contains("x-infergate-route: fallback/demo-saas"),
        "{out}"
    );
}
