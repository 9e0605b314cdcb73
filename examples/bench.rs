//! The benchmark: one command, one table.
//!
//! ```sh
//! cargo run --release --example bench -- [--latency-ms 20] [--budget 6000] [--quick]
//! ```
//!
//! In one run, against the embedded sandbox org on 127.0.0.1 only:
//!
//! 1. upstream calls and wall time of a 100-member removal, ours against a
//!    naive baseline (one PATCH per member, sequentially, same client);
//! 2. removals per second across many groups within the budget, against the
//!    ceiling that the budget and the worker's concurrency allow;
//! 3. no 429 from a burst under the default budget (300 a minute);
//! 4. the durable accept path of the real binary (`serve`, SQLite):
//!    closed-loop throughput and open-loop latency at a steady rate, beside a
//!    bare axum echo server as the ceiling;
//! 5. peak RSS of `serve`, idle and with 10,000 queued removals.
//!
//! The load generator is ours (`bench/load.rs`, hyper client connections); its
//! open loop measures each request from its scheduled instant. Every loop is
//! bounded in count and time.

#[path = "bench/accept.rs"]
mod accept;
#[path = "bench/load.rs"]
mod load;
#[path = "bench/process.rs"]
mod process;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/upstream.rs"]
mod upstream;

use std::time::Duration;

use clap::Parser;

use accept::LoadPlan;
use report::{Table, mib, ms};

#[derive(Parser, Debug)]
#[command(about = "Benchmarks scim-removals against the embedded sandbox org")]
struct Args {
    /// Latency the sandbox org adds to every call, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// The service's budget (`genesys.max_requests_per_minute`), also the
    /// org's own limit, for parts 1 and 2.
    #[arg(long, default_value_t = 6000)]
    budget: u32,
    /// Shorter runs: a quick check that everything works, not figures.
    #[arg(long)]
    quick: bool,
    /// Connections of the closed loop.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Requests a second of the open loop.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Queued removals for the memory figure.
    #[arg(long, default_value_t = 10_000)]
    queued: u64,
    /// Which parts to run (1 and 2 run together).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5")]
    parts: Vec<u8>,
    /// Internal: serve the bare echo handler and print its address.
    #[arg(long, hide = true)]
    echo_server: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.echo_server {
        return process::serve_echo().await;
    }

    let machine = machine();
    println!("{machine}");
    println!("load before: {}", load_average());

    let binary = process::service_binary()?;
    let (removals, groups) = (200, 40);
    let burst = if args.quick { 10 } else { 40 };
    let plan = LoadPlan {
        connections: args.connections,
        closed: Duration::from_secs(if args.quick { 2 } else { 5 }),
        rate: args.rate,
        open: Duration::from_secs(if args.quick { 3 } else { 10 }),
    };

    let wants = |part: u8| args.parts.contains(&part);
    let mut table = Table::default();
    let mut details = Vec::new();
    if wants(1) || wants(2) {
        eprintln!("[1-2] upstream calls and throughput ...");
        let (per_removal, throughput) =
            upstream::calls_and_throughput(args.latency_ms, args.budget, removals, groups).await?;
        calls_rows(&mut table, &per_removal);
        throughput_rows(&mut table, &throughput, &args);
        details.push(format!(
            "throughput: {} removals in {}, {:.2} upstream calls each",
            throughput.removals,
            ms(throughput.wall),
            throughput.calls_per_removal
        ));
    }
    if wants(3) {
        eprintln!("[3] default budget, {burst} removals ...");
        let default_budget = upstream::default_budget(args.latency_ms, burst).await?;
        budget_rows(&mut table, &default_budget);
    }
    if wants(4) {
        eprintln!("[4] durable accept ...");
        let accept = accept::accept(&binary, &plan).await?;
        accept_rows(&mut table, &accept, &plan);
        details.push(accept_details(&accept));
    }
    if wants(5) {
        eprintln!("[5] memory ...");
        let memory = accept::memory(&binary, args.queued).await?;
        memory_rows(&mut table, &memory);
    }
    let load_after = load_average();

    println!();
    println!("load after: {load_after}");
    println!("{}", details.join("\n"));
    println!("{}", table.render());
    let missed = table.missed();
    if missed.is_empty() {
        println!("every target met");
    } else {
        println!("targets missed: {}", missed.join("; "));
    }
    Ok(())
}

fn calls_rows(table: &mut Table, per: &upstream::PerRemoval) {
    let call_ratio = per.naive_calls as f64 / per.ours_calls.max(1) as f64;
    let wall_ratio = per.naive_wall.as_secs_f64() / per.ours_wall.as_secs_f64();
    table.add(
        "100-member removal: upstream calls after the token, ours",
        per.ours_calls.to_string(),
        "<= 3",
        Some(per.ours_calls <= 3),
    );
    table.add(
        "100-member removal: upstream calls, naive (1 PATCH/member)",
        per.naive_calls.to_string(),
        "",
        None,
    );
    table.add(
        "100-member removal: fewer calls than naive",
        format!("{call_ratio:.1}x"),
        ">= 20x",
        Some(call_ratio >= 20.0),
    );
    table.add(
        "100-member removal: wall time, ours / naive",
        format!("{} / {}", ms(per.ours_wall), ms(per.naive_wall)),
        "",
        None,
    );
    table.add(
        "100-member removal: shorter wall time than naive",
        format!("{wall_ratio:.1}x"),
        ">= 10x",
        Some(wall_ratio >= 10.0),
    );
}

fn throughput_rows(table: &mut Table, through: &upstream::Throughput, args: &Args) {
    let fraction = through.achieved_per_s() / through.ceiling_per_s;
    table.add(
        &format!(
            "{} removals / {} groups, {} ms latency, {}/min: removals/s",
            through.removals, through.groups, args.latency_ms, args.budget
        ),
        format!(
            "{:.1}/s ({} succeeded in {})",
            through.achieved_per_s(),
            through.succeeded,
            ms(through.wall)
        ),
        "",
        None,
    );
    table.add(
        "  ceiling: min(budget/60/calls, groups at once/removal latency)",
        format!(
            "{:.1}/s = min({:.1}, {:.1}); {:.2} calls/removal",
            through.ceiling_per_s,
            through.budget_bound_per_s,
            through.concurrency_bound_per_s,
            through.calls_per_removal
        ),
        "",
        None,
    );
    table.add(
        "  achieved / ceiling",
        format!("{:.0}%", fraction * 100.0),
        ">= 90%",
        Some(fraction >= 0.9),
    );
    table.add(
        "  version conflicts (PATCH 400/409/412)",
        through.conflicts.to_string(),
        "0",
        Some(through.conflicts == 0),
    );
    table.add(
        "  429s from the org",
        through.rate_limited.to_string(),
        "0",
        Some(through.rate_limited == 0),
    );
}

fn budget_rows(table: &mut Table, budget: &upstream::DefaultBudget) {
    table.add(
        &format!(
            "default budget 300/min, burst 10, org limit 300/min: 429s ({} removals)",
            budget.removals
        ),
        format!(
            "{} ({} calls, {} succeeded, {})",
            budget.rate_limited,
            budget.calls,
            budget.succeeded,
            ms(budget.wall)
        ),
        "0",
        Some(budget.rate_limited == 0 && budget.succeeded == budget.removals as u64),
    );
}

fn accept_rows(table: &mut Table, accept: &accept::Accept, plan: &LoadPlan) {
    let ours = &accept.ours_closed;
    let echo = &accept.echo_closed;
    table.add(
        &format!(
            "durable accept (202), closed loop, {} connections, {} s",
            plan.connections,
            plan.closed.as_secs()
        ),
        format!("{:.0} req/s ({} failed)", ours.rate(), ours.failed),
        ">= 5000 req/s",
        Some(ours.rate() >= 5000.0 && ours.failed == 0),
    );
    table.add(
        "  bare axum echo, same loop (ceiling)",
        format!("{:.0} req/s", echo.rate()),
        "",
        None,
    );
    table.add(
        "  ours / echo",
        format!("{:.0}%", ours.rate() / echo.rate() * 100.0),
        "",
        None,
    );
    let ours = &accept.ours_open;
    let echo = &accept.echo_open;
    table.add(
        &format!(
            "durable accept, open loop {} req/s for {} s: p50 / p99",
            plan.rate,
            plan.open.as_secs()
        ),
        format!(
            "{:.2} / {:.2} ms ({} ok, {} failed)",
            ours.latency_ms(50.0),
            ours.latency_ms(99.0),
            ours.ok,
            ours.failed
        ),
        "p99 < 5 ms",
        Some(ours.latency_ms(99.0) < 5.0 && ours.failed == 0),
    );
    table.add(
        "  bare axum echo, same loop: p50 / p99",
        format!(
            "{:.2} / {:.2} ms",
            echo.latency_ms(50.0),
            echo.latency_ms(99.0)
        ),
        "",
        None,
    );
    // The generator's own lateness is part of every latency above: when the
    // machine is busy, it shows how much of a tail is the machine's.
    table.add(
        "  generator lateness p99, ours' run / echo's run",
        format!("{:.2} / {:.2} ms", ours.lag_ms(99.0), echo.lag_ms(99.0)),
        "",
        None,
    );
}

fn memory_rows(table: &mut Table, memory: &accept::Memory) {
    table.add(
        "serve peak RSS (VmHWM), idle",
        mib(memory.idle_peak_kib),
        "< 40 MiB",
        Some(memory.idle_peak_kib < 40 * 1024),
    );
    table.add(
        &format!(
            "serve peak RSS (VmHWM), {} removals queued or running",
            memory.queued
        ),
        mib(memory.queued_peak_kib),
        "< 150 MiB",
        Some(memory.queued_peak_kib < 150 * 1024),
    );
}

/// Latency figures behind the table, for whoever reads it closely.
fn accept_details(accept: &accept::Accept) -> String {
    let lines = [
        format!(
            "open loop, ours: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, \
             max {:.2} ms; generator lateness p99 {:.2} ms",
            accept.ours_open.latency_ms(50.0),
            accept.ours_open.latency_ms(90.0),
            accept.ours_open.latency_ms(99.0),
            accept.ours_open.latency_ms(99.9),
            accept.ours_open.latency_ms(100.0),
            accept.ours_open.lag_ms(99.0),
        ),
        format!(
            "open loop, echo: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; lateness p99 {:.2} ms",
            accept.echo_open.latency_ms(50.0),
            accept.echo_open.latency_ms(99.0),
            accept.echo_open.latency_ms(100.0),
            accept.echo_open.lag_ms(99.0),
        ),
        format!(
            "closed loop, ours: p50 {:.2} ms, p99 {:.2} ms; echo: p50 {:.2} ms, p99 {:.2} ms",
            accept.ours_closed.latency_ms(50.0),
            accept.ours_closed.latency_ms(99.0),
            accept.echo_closed.latency_ms(50.0),
            accept.echo_closed.latency_ms(99.0),
        ),
    ];
    lines.join("\n")
}

/// nproc and the CPU model.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    format!("machine: {cpus} CPUs, {model}")
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}
