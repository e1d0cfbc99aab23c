//! What a connection costs a proxy in memory: the growth of its process tree's resident set
//! while many idle keep-alive connections (each has carried one request) or many open SSE
//! streams (headers and a first event through, the rest still coming) are held, per connection.

use crate::load::{chat_body, connect, request};
use hyper::body::Body;
use std::time::Duration;

/// Resident set size of `pid` and every process under it, in KiB (from /proc).
pub fn rss_kib_of_tree(pid: u32) -> u64 {
    crate::peers::tree(pid)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|status| {
            let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
            line.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// KiB of resident memory per idle connection: `count` connections each send one request,
/// then stay open and silent while the tree of `pid` is measured.
pub async fn per_idle_connection(addr: &str, pid: u32, count: usize) -> Option<f64> {
    let before = settle(pid).await;
    let body = chat_body(200, false, 1);
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut sender = connect(addr).await?;
        let resp = sender.send_request(request(addr, &body)).await.ok()?;
        let mut resp = resp.into_body();
        while !resp.is_end_stream() {
            if http_body_util::BodyExt::frame(&mut resp).await.is_none() {
                break;
            }
        }
        held.push(sender);
    }
    let after = settle(pid).await;
    drop(held);
    Some(after.saturating_sub(before) as f64 / count as f64)
}

/// KiB of resident memory per open stream: `count` streaming requests to a slow upstream, each
/// held once its first event arrived, while the tree of `pid` is measured.
pub async fn per_open_stream(addr: &str, pid: u32, count: usize) -> Option<f64> {
    let before = settle(pid).await;
    let body = chat_body(200, true, 1000);
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut sender = connect(addr).await?;
        let resp = sender.send_request(request(addr, &body)).await.ok()?;
        if !resp.status().is_success() {
            eprintln!("stream request answered {}", resp.status());
            return None;
        }
        let mut stream = resp.into_body();
        // The first event: the stream is open end to end.
        http_body_util::BodyExt::frame(&mut stream).await?.ok()?;
        held.push((sender, stream));
    }
    let after = settle(pid).await;
    drop(held);
    Some(after.saturating_sub(before) as f64 / count as f64)
}

/// The tree's RSS once it has stopped moving (allocators return memory lazily).
async fn settle(pid: u32) -> u64 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    rss_kib_of_tree(pid)
}
