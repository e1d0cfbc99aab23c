//! The `process` backend: model servers started as child processes from a command template.
//!
//! Each replica runs in its own process group (so a terminal's Ctrl-C reaches infergate, which then
//! drains, instead of killing every model server mid-request), gets `PR_SET_PDEATHSIG` so it cannot
//! outlive infergate even if infergate is killed with SIGKILL, and is stopped with SIGTERM to its
//! group, then SIGKILL after the grace period.

use super::{Backend, BackendError, ExitStatus, Launched, ReplicaHandle};
use crate::gpus::GpuAllocator;
use async_trait::async_trait;
use infergate_config::ProcessBackendConfig;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::Command;
use tokio::sync::watch;

/// Starts replicas as local processes and hands out GPUs from a pool.
pub struct ProcessBackend {
    config: ProcessBackendConfig,
    gpus: Arc<GpuAllocator>,
}

impl ProcessBackend {
    /// A backend for one deployment's command template and its own GPU list.
    pub fn new(config: ProcessBackendConfig) -> Self {
        let gpus = Arc::new(GpuAllocator::new(config.gpus.clone()));
        ProcessBackend { config, gpus }
    }

    /// A backend whose replicas take their GPUs from the box's shared pool (`[gpus]`).
    pub fn sharing(config: ProcessBackendConfig, gpus: Arc<GpuAllocator>) -> Self {
        ProcessBackend { config, gpus }
    }

    fn take_gpus(&self, model: &str, replica: &str) -> Result<Vec<String>, BackendError> {
        let want = self.config.effective_gpus_per_replica() as usize;
        if want == 0 {
            return Ok(Vec::new());
        }
        self.gpus
            .take(model, replica, want, std::time::Instant::now())
            .map_err(|short| BackendError::WaitingForGpus {
                needed: short.needed,
                free: short.free,
            })
    }
}

/// Substitutes `{port}`, `{replica}`, `{model}` and `{infergate}` in one template argument.
pub fn expand(template: &str, port: u16, replica: u64, model: &str, infergate: &str) -> String {
    template
        .replace("{port}", &port.to_string())
        .replace("{replica}", &replica.to_string())
        .replace("{model}", model)
        .replace("{infergate}", infergate)
}

/// Asks the OS for a free TCP port on the loopback interface.
fn free_port() -> Result<u16, BackendError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BackendError::NoCapacity(format!("no free port: {e}")))
}

#[async_trait]
impl Backend for ProcessBackend {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn fixed_replicas(&self) -> Option<Vec<SocketAddr>> {
        None
    }

    fn gpus_of(&self, replica: &str) -> Vec<String> {
        self.gpus.held_by(replica)
    }

    async fn launch(&self, model: &str, index: u64) -> Result<Launched, BackendError> {
        let port = free_port()?;
        let me = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "infergate".into());
        let args: Vec<String> = self
            .config
            .command
            .iter()
            .map(|a| expand(a, port, index, model, &me))
            .collect();
        let Some((program, rest)) = args.split_first() else {
            return Err(BackendError::Spawn {
                program: String::new(),
                reason: "empty command".into(),
            });
        };
        let replica_id = format!("{model}-{index}");
        let gpus = self.take_gpus(model, &replica_id)?;
        let mut cmd = Command::new(program);
        // Placeholders work in the environment too (a server told its port by OLLAMA_HOST).
        let env = self
            .config
            .env
            .iter()
            .map(|(k, v)| (k, expand(v, port, index, model, &me)));
        cmd.args(rest)
            .envs(env)
            .env("INFERGATE_REPLICA", index.to_string())
            .env("INFERGATE_PORT", port.to_string())
            .stdin(Stdio::null())
            // Model-server output is read line by line into our log (with the replica id, JSON
            // with --log-format json) and its tail kept to explain a failure.
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if !gpus.is_empty() {
            cmd.env("CUDA_VISIBLE_DEVICES", gpus.join(","));
        }
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                self.gpus.release(&replica_id);
                return Err(BackendError::Spawn {
                    program: program.clone(),
                    reason: e.to_string(),
                });
            }
        };
        let pid = child.id().unwrap_or(0) as libc::pid_t;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(OUTPUT_TAIL)));
        let mut relays = Vec::new();
        if let Some(out) = child.stdout.take() {
            relays.push(tokio::spawn(relay_output(
                out,
                replica_id.clone(),
                "stdout",
                tail.clone(),
            )));
        }
        if let Some(err) = child.stderr.take() {
            relays.push(tokio::spawn(relay_output(
                err,
                replica_id.clone(),
                "stderr",
                tail.clone(),
            )));
        }
        tracing::info!(model, replica = index, pid, port, command = %args.join(" "), "replica process started");
        let (exit_tx, exit_rx) = watch::channel(None);
        let allocator = self.gpus.clone();
        tokio::spawn(async move {
            let mut child = child;
            let status = match child.wait().await {
                Ok(s) => match (s.code(), s.signal()) {
                    (Some(code), _) => format!("exit code {code}"),
                    (None, Some(sig)) => format!("signal {sig}"),
                    _ => "unknown exit".to_string(),
                },
                Err(e) => format!("wait failed: {e}"),
            };
            allocator.release(&replica_id);
            // Its last words first (the pipes end with the process, unless a child of its own
            // keeps them open: then not for long).
            let _ = tokio::time::timeout(
                Duration::from_millis(500),
                futures_util::future::join_all(relays),
            )
            .await;
            let _ = exit_tx.send(Some(ExitStatus {
                removed: false,
                description: status,
            }));
        });
        Ok(Launched {
            addr: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
            handle: Box::new(ProcessHandle { pid, exit_rx, tail }),
        })
    }
}

/// A running model-server process.
struct ProcessHandle {
    pid: libc::pid_t,
    exit_rx: watch::Receiver<Option<ExitStatus>>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

/// Lines of model-server output kept to explain a failure.
const OUTPUT_TAIL: usize = 20;
/// Longest output line kept (a progress bar can be one endless line).
const MAX_LINE: usize = 2000;

/// Logs every line a model server prints, under its replica id, and keeps the last ones.
async fn relay_output(
    output: impl tokio::io::AsyncRead + Unpin,
    replica: String,
    stream: &'static str,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut line = line;
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        tracing::info!(target: "infergate::replica_output", replica = %replica, stream, "[{replica}] {line}");
        if let Ok(mut t) = tail.lock() {
            if t.len() == OUTPUT_TAIL {
                t.pop_front();
            }
            t.push_back(line);
        }
    }
}

impl ProcessHandle {
    fn signal_group(&self, signal: libc::c_int) {
        if self.pid > 0 && self.exit_rx.borrow().is_none() {
            // SAFETY: plain syscall; the group id is the child's pid (process_group(0)).
            unsafe {
                libc::kill(-self.pid, signal);
            }
        }
    }
}

#[async_trait]
impl ReplicaHandle for ProcessHandle {
    async fn exited(&self) -> ExitStatus {
        let mut rx = self.exit_rx.clone();
        let status = match rx.wait_for(|s| s.is_some()).await {
            Ok(s) => s.clone(),
            Err(_) => None,
        };
        status.unwrap_or_else(|| ExitStatus {
            removed: false,
            description: "exit monitor gone".into(),
        })
    }

    fn output_tail(&self) -> Vec<String> {
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    async fn terminate(&self, grace: Duration) {
        self.signal_group(libc::SIGTERM);
        if tokio::time::timeout(grace, self.exited()).await.is_err() {
            tracing::warn!(pid = self.pid, "replica ignored SIGTERM; sending SIGKILL");
            self.signal_group(libc::SIGKILL);
            let _ = tokio::time::timeout(Duration::from_secs(5), self.exited()).await;
        }
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        // Never leave a model server behind.
        self.signal_group(libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn template_placeholders_are_substituted() {
        assert_eq!(
            expand(
                "--port={port} r{replica} {model} {infergate}",
                8000,
                3,
                "llama",
                "/bin/ig"
            ),
            "--port=8000 r3 llama /bin/ig"
        );
    }
}
