//! The event log (SPEC §7): every scaling, replica, hibernation, fallback and settings event, with
//! an RFC 3339 timestamp, the deployment, a type, a description, the numbers behind it and the
//! component that acted.
//!
//! Emitting never blocks: an [`EventSink`] only sends into an unbounded channel. One collector task
//! keeps the newest events in a bounded ring (for listing), broadcasts them (for live streams) and
//! appends them to an optional JSONL file rotated by size.

use serde::Serialize;
use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::{broadcast, mpsc};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// More replicas asked for.
    ScaledUp,
    /// Fewer replicas asked for.
    ScaledDown,
    /// A replica process was launched.
    ReplicaStarted,
    /// A replica passed its readiness check.
    ReplicaReady,
    /// A replica crashed, failed readiness or timed out.
    ReplicaFailed,
    /// A replica was stopped on purpose.
    ReplicaStopped,
    /// A replica cannot start yet (its GPUs are held by other replicas); it waits.
    ReplicaWaiting,
    /// A ready replica failed its health checks (or a connect): no new requests go to it.
    ReplicaEjected,
    /// An ejected replica is healthy again and gets requests.
    ReplicaReadmitted,
    /// The deployment went to sleep.
    Hibernated,
    /// The deployment started waking.
    Woke,
    /// The deployment was deactivated.
    Deactivated,
    /// The deployment was activated again.
    Activated,
    /// Requests started going to the fallback.
    FallbackEngaged,
    /// Requests are back on our replicas.
    FallbackReleased,
    /// Nothing can answer (starts keep failing, or no static replica is healthy): waiting
    /// requests get 503 at once.
    DeploymentUnavailable,
    /// The deployment can answer again.
    DeploymentAvailable,
    /// Settings changed (reload or API).
    SettingsChanged,
    /// A configuration change was refused.
    ConfigRejected,
    /// The workload's replica count was changed outside infergate (e.g. `kubectl scale`).
    ScaledOutside,
    /// The replicas were put to sleep (`hibernation.mode = "sleep"`).
    Slept,
    /// A replica's server has no sleep mode: hibernation stops replicas instead.
    SleepUnsupported,
    /// An idle replica was stopped to give its GPUs (`[gpus]`, shared) to another deployment.
    ReplicaEvicted,
}

impl EventKind {
    /// The snake_case name used in JSON and filters.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::ScaledUp => "scaled_up",
            EventKind::ScaledDown => "scaled_down",
            EventKind::ReplicaStarted => "replica_started",
            EventKind::ReplicaReady => "replica_ready",
            EventKind::ReplicaFailed => "replica_failed",
            EventKind::ReplicaStopped => "replica_stopped",
            EventKind::ReplicaWaiting => "replica_waiting",
            EventKind::ReplicaEjected => "replica_ejected",
            EventKind::ReplicaReadmitted => "replica_readmitted",
            EventKind::Hibernated => "hibernated",
            EventKind::Woke => "woke",
            EventKind::Deactivated => "deactivated",
            EventKind::Activated => "activated",
            EventKind::FallbackEngaged => "fallback_engaged",
            EventKind::FallbackReleased => "fallback_released",
            EventKind::DeploymentUnavailable => "deployment_unavailable",
            EventKind::DeploymentAvailable => "deployment_available",
            EventKind::SettingsChanged => "settings_changed",
            EventKind::ConfigRejected => "config_rejected",
            EventKind::ScaledOutside => "scaled_outside",
            EventKind::Slept => "slept",
            EventKind::SleepUnsupported => "sleep_unsupported",
            EventKind::ReplicaEvicted => "replica_evicted",
        }
    }
}

/// The numbers behind a decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Numbers {
    /// Load at the time (in the deployment's metric).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<f64>,
    /// Desired replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<u32>,
    /// Replicas (starting + ready) at the time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<u32>,
}

/// One event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Position in the log (1, 2, …), for `since` filters and stream resumption.
    pub seq: u64,
    /// RFC 3339 timestamp (UTC, milliseconds).
    pub time: String,
    /// Deployment name (empty for proxy-wide events).
    pub deployment: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// Human-readable description.
    pub description: String,
    /// The numbers behind it.
    #[serde(flatten)]
    pub numbers: Numbers,
    /// Who acted: `autoscaler`, `proxy`, `backend`, `api` or `config`.
    pub component: &'static str,
    /// The other deployment an event concerns (`replica_evicted`: the one the GPUs went to);
    /// a `deployment` filter matches either.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_deployment: Option<String>,
}

/// Where events are sent from; cheap to clone, never blocks.
#[derive(Clone)]
pub struct EventSink {
    tx: Option<mpsc::UnboundedSender<Event>>,
    seq: Arc<AtomicU64>,
}

impl EventSink {
    /// A sink that drops everything (tests, tools).
    pub fn disabled() -> Self {
        EventSink {
            tx: None,
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records an event.
    pub fn emit(
        &self,
        deployment: &str,
        kind: EventKind,
        component: &'static str,
        description: impl Into<String>,
        numbers: Numbers,
    ) {
        self.send(
            deployment,
            None,
            kind,
            component,
            description.into(),
            numbers,
        );
    }

    /// Records an event that concerns two deployments: it is logged under `deployment` and
    /// shows in `for_deployment`'s log too.
    pub fn emit_for(
        &self,
        deployment: &str,
        for_deployment: &str,
        kind: EventKind,
        component: &'static str,
        description: impl Into<String>,
    ) {
        self.send(
            deployment,
            Some(for_deployment.to_string()),
            kind,
            component,
            description.into(),
            Numbers::default(),
        );
    }

    fn send(
        &self,
        deployment: &str,
        for_deployment: Option<String>,
        kind: EventKind,
        component: &'static str,
        description: String,
        numbers: Numbers,
    ) {
        let Some(tx) = &self.tx else { return };
        metrics::counter!("infergate_scaling_events_total", "deployment" => deployment.to_string(), "type" => kind.name())
            .increment(1);
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::AcqRel) + 1,
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            deployment: deployment.to_string(),
            kind,
            description,
            numbers,
            component,
            for_deployment,
        };
        let _ = tx.send(event);
    }
}

/// An optional JSONL file the log is appended to, rotated to `<file>.1` past `max_bytes`.
#[derive(Debug, Clone)]
pub struct EventFile {
    /// The file.
    pub path: PathBuf,
    /// Size at which it is rotated.
    pub max_bytes: u64,
}

/// The in-memory log and its live stream.
pub struct EventLog {
    ring: Mutex<VecDeque<Arc<Event>>>,
    capacity: usize,
    live: broadcast::Sender<Arc<Event>>,
    /// Sequence number of the last event kept (and appended to the file).
    written: AtomicU64,
}

impl EventLog {
    /// Starts the collector; returns the log (for readers) and the sink (for writers).
    pub fn start(capacity: usize, file: Option<EventFile>) -> (Arc<EventLog>, EventSink) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let (live, _) = broadcast::channel(1024);
        let log = Arc::new(EventLog {
            ring: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity: capacity.max(1),
            live,
            written: AtomicU64::new(0),
        });
        let collector = log.clone();
        tokio::spawn(async move {
            let mut writer = file.map(JsonlWriter::new);
            while let Some(event) = rx.recv().await {
                if let Some(w) = writer.as_mut() {
                    w.append(&event);
                }
                let seq = event.seq;
                collector.push(Arc::new(event));
                collector.written.fetch_max(seq, Ordering::AcqRel);
            }
        });
        let sink = EventSink {
            tx: Some(tx),
            seq: Arc::new(AtomicU64::new(0)),
        };
        (log, sink)
    }

    fn push(&self, event: Arc<Event>) {
        if let Ok(mut ring) = self.ring.lock() {
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(event.clone());
        }
        let _ = self.live.send(event);
    }

    /// Waits (up to `limit`) until every event `sink` emitted so far is kept and in the file,
    /// so events of the last moments (replicas stopped at shutdown) are not lost on exit.
    pub async fn flush(&self, sink: &EventSink, limit: std::time::Duration) {
        let target = sink.seq.load(Ordering::Acquire);
        let deadline = tokio::time::Instant::now() + limit;
        while self.written.load(Ordering::Acquire) < target
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Events kept in memory, oldest first, filtered.
    pub fn list(&self, filter: &EventFilter) -> Vec<Arc<Event>> {
        let ring = match self.ring.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        let mut out: Vec<Arc<Event>> = ring.iter().filter(|e| filter.matches(e)).cloned().collect();
        if let Some(limit) = filter.limit {
            let skip = out.len().saturating_sub(limit);
            out.drain(..skip);
        }
        out
    }

    /// New events as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }
}

/// Which events to list or stream.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this deployment.
    pub deployment: Option<String>,
    /// Only these types (snake_case names).
    pub kinds: Vec<String>,
    /// Only events after this sequence number.
    pub since: Option<u64>,
    /// At most this many (the newest).
    pub limit: Option<usize>,
}

impl EventFilter {
    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        self.deployment
            .as_ref()
            .is_none_or(|d| *d == event.deployment || event.for_deployment.as_ref() == Some(d))
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == event.kind.name()))
            && self.since.is_none_or(|s| event.seq > s)
    }
}

struct JsonlWriter {
    file: EventFile,
    out: Option<std::fs::File>,
    size: u64,
    warned: bool,
}

impl JsonlWriter {
    fn new(file: EventFile) -> Self {
        JsonlWriter {
            file,
            out: None,
            size: 0,
            warned: false,
        }
    }

    fn append(&mut self, event: &Event) {
        let Ok(mut line) = serde_json::to_vec(event) else {
            return;
        };
        line.push(b'\n');
        if let Err(e) = self.write(&line) {
            if !self.warned {
                tracing::warn!(path = %self.file.path.display(), error = %e, "cannot append to the event file; events stay in memory");
                self.warned = true;
            }
            self.out = None;
        }
    }

    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.out.is_some() && self.size + line.len() as u64 > self.file.max_bytes {
            self.out = None;
            let mut rotated = self.file.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.file.path, rotated)?;
        }
        if self.out.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.file.path)?;
            self.size = f.metadata()?.len();
            self.out = Some(f);
        }
        if let Some(f) = self.out.as_mut() {
            f.write_all(line)?;
            self.size += line.len() as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_are_kept_bounded_filtered_streamed_and_rotated() {
        let dir = std::env::temp_dir().join(format!("infergate-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let _ = std::fs::remove_file(&path);
        let file = EventFile {
            path: path.clone(),
            max_bytes: 600,
        };
        let (log, sink) = EventLog::start(3, Some(file));
        let mut live = log.subscribe();
        for i in 0..5u32 {
            let d = if i % 2 == 0 { "a" } else { "b" };
            let numbers = Numbers {
                load: Some(f64::from(i)),
                desired: Some(i),
                current: Some(0),
            };
            sink.emit(
                d,
                EventKind::ScaledUp,
                "autoscaler",
                format!("event {i}"),
                numbers,
            );
        }
        let first = live.recv().await.unwrap();
        assert_eq!((first.seq, first.deployment.as_str()), (1, "a"));
        while log.list(&EventFilter::default()).last().map(|e| e.seq) != Some(5) {
            tokio::task::yield_now().await;
        }
        let all = log.list(&EventFilter::default());
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
        let only_a = EventFilter {
            deployment: Some("a".into()),
            ..EventFilter::default()
        };
        assert_eq!(log.list(&only_a).len(), 2);
        let json = serde_json::to_value(&*all[0]).unwrap();
        assert_eq!(json["type"], "scaled_up");
        assert_eq!(json["desired"], 2);
        assert!(json["time"].as_str().unwrap().ends_with('Z'));
        let kept = std::fs::read_to_string(&path).unwrap();
        let rotated = std::fs::read_to_string(dir.join("events.jsonl.1")).unwrap();
        assert_eq!(kept.lines().count() + rotated.lines().count(), 5);
        assert!(kept.len() <= 600);
    }
}
