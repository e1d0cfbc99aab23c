//! End-to-end tests: the real `infergate` binary, real simulated model servers as child processes,
//! real sockets on 127.0.0.1 with OS-chosen ports, real clients (reqwest, async-openai, and the
//! official Python `openai` package). No timing assertions.

mod audio;
mod autoscaling;
mod cli_conventions;
mod client_keys;
mod clients;
mod control_plane;
mod data_plane;
mod deploy_manifests;
mod edge_fallback;
mod edge_http;
mod edge_loops;
mod edge_replicas;
mod fair_queue;
mod fake_kube;
mod fake_upstream;
mod fallback;
mod gpu_pool;
mod gpus;
mod grafana_dashboard;
mod harness;
mod heartbeats;
mod hibernation;
mod kubernetes;
mod kubernetes_cluster;
mod kubernetes_real;
mod lifecycle;
mod live_state;
mod maintenance;
mod metric_flavors;
mod prefix_routing;
mod queueing;
mod readme;
mod reload;
mod responses_api;
mod schedules;
mod sim_sleep;
mod simulate;
mod sleep_tier;
mod small_fixes;
mod tls;
mod unavailable;
