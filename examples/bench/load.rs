//! A small HTTP/1.1 load generator on hyper's client connections.
//!
//! - [`closed_loop`]: N connections, each sending its next request as soon as
//!   the last answer has been read. It finds the maximum throughput.
//! - [`open_loop`]: a steady rate. A clock thread of its own names the
//!   instant each request is due; the request is spawned then, on an idle
//!   connection (a new one if none is idle), and its latency runs from that
//!   scheduled instant, not from when it was actually sent. A slow answer
//!   therefore never delays the requests behind it from being counted late
//!   (no coordinated omission), and any lateness of the generator itself is
//!   charged to the server, never hidden.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

type Sender = SendRequest<Full<Bytes>>;

/// Connections the open loop opens before its clock starts, so that the
/// first requests do not pay for a TCP handshake.
const OPEN_LOOP_WARM_CONNECTIONS: usize = 16;

/// What to send and what answer counts as success.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Request `i` goes to `paths[i % len]`: many groups, not one.
    pub paths: Arc<Vec<String>>,
    pub bearer: Option<String>,
    pub body: Bytes,
    pub expect: StatusCode,
}

impl Target {
    fn request(&self, index: u64) -> Request<Full<Bytes>> {
        let path = &self.paths[(index % self.paths.len() as u64) as usize];
        let mut request = Request::post(path.as_str())
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(self.body.clone()))
            .expect("a well-formed request");
        if let Some(token) = &self.bearer {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a token");
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        request
    }
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct RunStats {
    /// Requests answered with the expected status.
    pub ok: u64,
    /// Requests answered otherwise, or not at all.
    pub failed: u64,
    pub first_failure: Option<String>,
    pub elapsed: Duration,
    /// Latency of each successful request, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Open loop only: how late each request was spawned after its scheduled
    /// instant (the generator's own share of the latency), in microseconds.
    pub lag_us: Vec<u64>,
}

impl RunStats {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-th percentile (0 to 100) of the latencies, in milliseconds.
    pub fn latency_ms(&self, p: f64) -> f64 {
        percentile(&self.latencies_us, p) as f64 / 1000.0
    }

    pub fn lag_ms(&self, p: f64) -> f64 {
        percentile(&self.lag_us, p) as f64 / 1000.0
    }

    fn record(
        &mut self,
        answer: Result<StatusCode, String>,
        expect: StatusCode,
        latency: Duration,
    ) {
        match answer {
            Ok(status) if status == expect => {
                self.ok += 1;
                self.latencies_us.push(latency.as_micros() as u64);
            }
            Ok(status) => self.fail(format!("answered {status}")),
            Err(error) => self.fail(error),
        }
    }

    fn fail(&mut self, why: String) {
        self.failed += 1;
        self.first_failure.get_or_insert(why);
    }

    fn merge(&mut self, other: RunStats) {
        self.ok += other.ok;
        self.failed += other.failed;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
        self.latencies_us.extend(other.latencies_us);
        self.lag_us.extend(other.lag_us);
    }
}

/// The nearest-rank percentile of `values` (sorted on a copy); 0 when empty.
fn percentile(values: &[u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // The connection ends when its sender is dropped or the peer closes.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole answer, so that the connection is
/// ready for the next one.
async fn exchange(
    sender: &mut Sender,
    request: Request<Full<Bytes>>,
) -> Result<StatusCode, String> {
    sender.ready().await.map_err(|error| error.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|error| error.to_string())?;
    Ok(status)
}

/// `connections` connections send back to back for `duration`, or until
/// `max_requests` have been sent.
pub async fn closed_loop(
    target: &Target,
    connections: usize,
    duration: Duration,
    max_requests: u64,
) -> anyhow::Result<RunStats> {
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(target.addr).await?);
    }

    let next_index = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for mut sender in senders {
        let target = target.clone();
        let next_index = next_index.clone();
        tasks.spawn(async move {
            let mut stats = RunStats::default();
            while Instant::now() < deadline {
                let index = next_index.fetch_add(1, Ordering::Relaxed);
                if index >= max_requests {
                    break;
                }
                let sent = Instant::now();
                let answer = exchange(&mut sender, target.request(index)).await;
                let broken = answer.is_err();
                stats.record(answer, target.expect, sent.elapsed());
                if broken {
                    match connect(target.addr).await {
                        Ok(fresh) => sender = fresh,
                        Err(error) => {
                            stats.fail(error.to_string());
                            break;
                        }
                    }
                }
            }
            stats
        });
    }

    let mut total = RunStats::default();
    while let Some(stats) = tasks.join_next().await {
        total.merge(stats?);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// `rate` requests a second for `length`, each on its schedule.
pub async fn open_loop(target: &Target, rate: u32, length: Duration) -> anyhow::Result<RunStats> {
    let idle: Arc<Mutex<Vec<Sender>>> = Arc::default();
    for _ in 0..OPEN_LOOP_WARM_CONNECTIONS {
        let sender = connect(target.addr).await?;
        idle.lock().expect("pool lock").push(sender);
    }

    let total = (f64::from(rate) * length.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = Instant::now() + Duration::from_millis(20);
    let (due, mut due_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();

    // The clock runs on a thread of its own: tokio's timer has a 1 ms grain,
    // which at 1,000 requests a second would bunch requests and add up to a
    // millisecond of lateness to each; a thread sleeping to each instant is
    // late by tens of microseconds, and that lateness is measured (`lag_us`).
    let clock = std::thread::spawn(move || {
        for index in 0..total {
            let at = start + interval.mul_f64(index as f64);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if due.send((index, at)).is_err() {
                break;
            }
        }
    });

    let mut stats = RunStats::default();
    let mut tasks = JoinSet::new();
    while let Some((index, scheduled)) = due_rx.recv().await {
        stats.lag_us.push(scheduled.elapsed().as_micros() as u64);
        let task_target = target.clone();
        let idle = idle.clone();
        tasks.spawn(async move {
            let answer = send_on_any(&task_target, &idle, index).await;
            (answer, scheduled.elapsed())
        });
        // Collect what has finished, so that a long run holds few tasks.
        while let Some(done) = tasks.try_join_next() {
            let (answer, latency) = done?;
            stats.record(answer, target.expect, latency);
        }
    }
    while let Some(done) = tasks.join_next().await {
        let (answer, latency) = done?;
        stats.record(answer, target.expect, latency);
    }
    stats.elapsed = start.elapsed();
    clock
        .join()
        .map_err(|_| anyhow::anyhow!("the clock thread panicked"))?;
    Ok(stats)
}

/// Sends request `index` on an idle connection, or a new one when none is
/// idle (or the idle one turns out to be closed), and returns the connection
/// to the pool afterwards.
async fn send_on_any(
    target: &Target,
    idle: &Mutex<Vec<Sender>>,
    index: u64,
) -> Result<StatusCode, String> {
    let pooled = idle.lock().expect("pool lock").pop();
    let mut sender = match pooled {
        Some(sender) if !sender.is_closed() => sender,
        _ => connect(target.addr)
            .await
            .map_err(|error| error.to_string())?,
    };
    let answer = exchange(&mut sender, target.request(index)).await;
    if answer.is_ok() {
        idle.lock().expect("pool lock").push(sender);
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), 50);
        assert_eq!(percentile(&values, 99.0), 99);
        assert_eq!(percentile(&values, 100.0), 100);
        assert_eq!(percentile(&[], 99.0), 0);
    }
}
