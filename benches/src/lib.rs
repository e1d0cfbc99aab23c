//! Helpers shared by the benchmarks: running infergate and the simulated server as separate
//! processes and reading the addresses they print.

pub mod load;
pub mod memory;
pub mod peers;
pub mod report;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Running(Child);

impl Running {
    /// Takes ownership of a started child.
    pub fn new(child: Child) -> Self {
        Running(child)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a command and returns it with the first `http://` URL it prints on stdout after `marker`.
pub fn start(mut cmd: Command, marker: &str) -> (Running, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("process ended before printing its address")
            .expect("read");
        if line.contains(marker) {
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                break url.to_string();
            }
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (Running(child), url)
}
