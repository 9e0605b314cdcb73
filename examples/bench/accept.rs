//! Parts 4 and 5: the durable accept path of the real binary, beside a bare
//! echo server, and its memory idle and with a long queue.
//!
//! The service runs against a sandbox org so slow (30 s a call) that its
//! worker claims a few removals and then waits: what is measured is the
//! `POST`, which stores the removal in SQLite before answering 202.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use axum::body::Bytes;
use axum::http::StatusCode;
use scim_removals::sandbox::{Knobs, Org};
use tokio::task::JoinHandle;

use crate::load::{self, RunStats, Target};
use crate::process::{EchoServer, Service, TOKEN, memory_kib};

/// Upstream latency that keeps the worker out of the way.
const SLOW_GENESYS_MS: u64 = 30_000;

/// Requests are spread over this many groups.
const GROUPS: usize = 1_000;

/// Connections that fill the queue for the memory figure.
const FILL_CONNECTIONS: usize = 16;

/// The service's settings beyond the benchmark's base: a queue limit far
/// above what a run accepts, so that no answer is a 429.
const QUEUE_SETTINGS: &str = "[worker]\nmax_queued = 10000000\n";

#[derive(Debug)]
pub struct LoadPlan {
    pub connections: usize,
    pub closed: Duration,
    pub rate: u32,
    pub open: Duration,
}

/// Part 4: closed-loop throughput and open-loop latency, ours and the echo's.
#[derive(Debug)]
pub struct Accept {
    pub ours_closed: RunStats,
    pub ours_open: RunStats,
    pub echo_closed: RunStats,
    pub echo_open: RunStats,
}

/// Part 5: the service's memory.
#[derive(Debug)]
pub struct Memory {
    pub idle_peak_kib: u64,
    pub queued: u64,
    pub queued_peak_kib: u64,
}

/// A slow org, and the task serving it.
async fn slow_genesys() -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let org = Org::empty();
    org.set_knobs(Knobs {
        latency_ms: SLOW_GENESYS_MS,
        ..Knobs::default()
    });
    Ok(org.spawn(([127, 0, 0, 1], 0).into()).await?)
}

fn removal_target(addr: SocketAddr, expect: StatusCode) -> Target {
    let paths: Vec<String> = (0..GROUPS)
        .map(|_| format!("/groups/{}/removals", uuid::Uuid::new_v4()))
        .collect();
    let body = format!(
        r#"{{"members": ["{}"], "reason": "benchmark"}}"#,
        uuid::Uuid::new_v4()
    );
    Target {
        addr,
        paths: Arc::new(paths),
        bearer: Some(TOKEN.to_string()),
        body: Bytes::from(body),
        expect,
    }
}

pub async fn accept(binary: &Path, plan: &LoadPlan) -> anyhow::Result<Accept> {
    let (genesys, server) = slow_genesys().await?;

    // Each measure on a fresh process and store, so that neither inherits
    // the other's queue.
    let service = Service::start(binary, genesys, QUEUE_SETTINGS).await?;
    let target = removal_target(service.addr, StatusCode::ACCEPTED);
    warm_up(&target).await?;
    let ours_closed = load::closed_loop(&target, plan.connections, plan.closed, u64::MAX).await?;
    drop(service);

    let service = Service::start(binary, genesys, QUEUE_SETTINGS).await?;
    let target = removal_target(service.addr, StatusCode::ACCEPTED);
    warm_up(&target).await?;
    let ours_open = load::open_loop(&target, plan.rate, plan.open).await?;
    drop(service);
    server.abort();

    let echo = EchoServer::start()?;
    let target = removal_target(echo.addr, StatusCode::OK);
    warm_up(&target).await?;
    let echo_closed = load::closed_loop(&target, plan.connections, plan.closed, u64::MAX).await?;
    let echo_open = load::open_loop(&target, plan.rate, plan.open).await?;
    drop(echo);

    Ok(Accept {
        ours_closed,
        ours_open,
        echo_closed,
        echo_open,
    })
}

/// A few hundred requests first: connections, allocator and page cache warm.
async fn warm_up(target: &Target) -> anyhow::Result<()> {
    let stats = load::closed_loop(target, 8, Duration::from_secs(10), 400).await?;
    ensure!(
        stats.failed == 0,
        "warm-up failed: {}",
        stats.first_failure.unwrap_or_default()
    );
    Ok(())
}

/// Part 5: peak RSS idle, then after `queued` removals have been accepted
/// and are waiting.
pub async fn memory(binary: &Path, queued: u64) -> anyhow::Result<Memory> {
    let (genesys, server) = slow_genesys().await?;
    let service = Service::start(binary, genesys, QUEUE_SETTINGS).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_peak_kib = memory_kib(service.pid(), "VmHWM")?;

    let target = removal_target(service.addr, StatusCode::ACCEPTED);
    let fill = load::closed_loop(&target, FILL_CONNECTIONS, Duration::from_secs(300), queued);
    let stats = fill.await?;
    ensure!(
        stats.failed == 0 && stats.ok == queued,
        "filling the queue: {} accepted, {} failed ({})",
        stats.ok,
        stats.failed,
        stats.first_failure.unwrap_or_default()
    );
    // The worker refreshes its queue gauge at least twice a second.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let depth = queue_depth(service.addr).await?;
    let queued_peak_kib = memory_kib(service.pid(), "VmHWM")?;
    drop(service);
    server.abort();

    Ok(Memory {
        idle_peak_kib,
        queued: depth,
        queued_peak_kib,
    })
}

/// `scim_removals_queue_depth` from `/metrics`: queued plus running.
async fn queue_depth(addr: SocketAddr) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await?
        .text()
        .await?;
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix("scim_removals_queue_depth "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    Ok(value as u64)
}
