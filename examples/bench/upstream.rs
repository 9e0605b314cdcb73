//! Parts 1 to 3: what the service costs Genesys. The service runs in this
//! process against the embedded sandbox org, and every upstream call is
//! counted in the org's own request log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures::StreamExt;
use scim_removals::app::RunningApp;
use scim_removals::config::{ApiClientSettings, GenesysEndpoints, Settings};
use scim_removals::genesys::GenesysClient;
use scim_removals::removal::{Directory, GroupId, MemberId, PatchAnswer, Status};
use scim_removals::sandbox::{Knobs, Member, Org, RecordedRequest};
use scim_removals::telemetry::Metrics;
use serde_json::{Value, json};

use crate::process::TOKEN;

/// How long any one part may take before the benchmark gives up on it.
const PART_LIMIT: Duration = Duration::from_secs(180);

/// Part 1: one 100-member removal, ours against the naive baseline.
#[derive(Debug)]
pub struct PerRemoval {
    pub ours_calls: usize,
    pub ours_wall: Duration,
    pub naive_calls: usize,
    pub naive_wall: Duration,
}

/// Part 2: many removals within a budget.
#[derive(Debug)]
pub struct Throughput {
    pub removals: usize,
    pub groups: usize,
    pub wall: Duration,
    pub calls_per_removal: f64,
    pub ceiling_per_s: f64,
    pub budget_bound_per_s: f64,
    pub concurrency_bound_per_s: f64,
    pub conflicts: usize,
    pub rate_limited: usize,
    pub succeeded: u64,
}

impl Throughput {
    pub fn achieved_per_s(&self) -> f64 {
        self.removals as f64 / self.wall.as_secs_f64()
    }
}

/// Part 3: a burst under the default budget.
#[derive(Debug)]
pub struct DefaultBudget {
    pub removals: usize,
    pub calls: usize,
    pub rate_limited: usize,
    pub wall: Duration,
    pub succeeded: u64,
}

/// The org, the service in front of it, and a client for the service.
struct Bench {
    org: Org,
    app: RunningApp,
    http: reqwest::Client,
    base: String,
    genesys: SocketAddr,
    store_dir: std::path::PathBuf,
}

impl Bench {
    async fn start(knobs: Knobs, per_minute: u32, burst: u32) -> anyhow::Result<Bench> {
        let org = Org::empty();
        org.set_knobs(knobs);
        let (genesys, _server) = org.spawn(([127, 0, 0, 1], 0).into()).await?;

        let store_dir = std::env::temp_dir().join(format!("scim-bench-{}", uuid::Uuid::new_v4()));
        let settings = settings(genesys, &store_dir, per_minute, burst)?;
        let app = RunningApp::start(settings).await?;
        let base = format!("http://{}", app.addr);
        Ok(Bench {
            org,
            app,
            http: reqwest::Client::new(),
            base,
            genesys,
            store_dir,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.app.stop().await?;
        let _ = std::fs::remove_dir_all(&self.store_dir);
        Ok(())
    }

    /// Submits a removal; with `wait`, answers once it has finished.
    async fn remove(&self, group: &str, members: &[String], wait: bool) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .post(format!("{}/groups/{group}/removals", self.base))
            .bearer_auth(TOKEN)
            .json(&json!({"members": members, "reason": "benchmark"}));
        if wait {
            request = request.header("prefer", "wait=60");
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.is_success(), "POST answered {status}: {body}");
        Ok(body)
    }

    /// Finished removals so far, by the service's own counter.
    fn finished(&self, status: Option<Status>) -> u64 {
        let all = [
            Status::Succeeded,
            Status::Rejected,
            Status::Failed,
            Status::Planned,
            Status::Cancelled,
        ];
        let removals = &self.app.service.metrics.removals;
        all.iter()
            .filter(|candidate| status.is_none_or(|wanted| wanted == **candidate))
            .map(|status| removals.with_label_values(&[status.as_str()]).get())
            .sum()
    }

    /// Waits until `count` removals have finished, polling the counter.
    async fn wait_finished(&self, count: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + PART_LIMIT;
        while self.finished(None) < count {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {count} removals finished in time",
                    self.finished(None)
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }
}

fn settings(
    genesys: SocketAddr,
    store_dir: &std::path::Path,
    per_minute: u32,
    burst: u32,
) -> anyhow::Result<Settings> {
    let mut settings = Settings::load_unvalidated(None)?;
    settings.server.listen = "127.0.0.1:0".into();
    settings.server.shutdown_grace_s = 1;
    settings.genesys.api_base_url = format!("http://{genesys}");
    settings.genesys.login_base_url = String::new();
    settings.genesys.client_id = "sandbox-client".into();
    settings.genesys.client_secret = "sandbox-secret".to_string().into();
    settings.genesys.max_requests_per_minute = per_minute;
    settings.genesys.max_burst = burst;
    settings.store.url = format!("sqlite://{}/bench.db", store_dir.display()).into();
    settings.api.clients = vec![ApiClientSettings {
        name: "bench".into(),
        token_sha256: scim_removals::http::token_sha256(TOKEN),
        scopes: vec!["removals:write".into(), "removals:read".into()],
    }];
    settings.validate()?;
    Ok(settings)
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A group of `size` fresh users; returns the group id and the user ids.
fn put_group(org: &Org, size: usize) -> (String, Vec<String>) {
    let id = new_id();
    let users: Vec<String> = (0..size).map(|_| new_id()).collect();
    let members: Vec<Member> = users.iter().map(|user| Member::user(user)).collect();
    org.put_group(&id, "benchmark", &members);
    (id, users)
}

fn upstream_calls(requests: &[RecordedRequest]) -> usize {
    requests
        .iter()
        .filter(|request| !request.path.starts_with("/oauth/token"))
        .count()
}

fn rate_limited(requests: &[RecordedRequest]) -> usize {
    requests
        .iter()
        .filter(|request| request.status == 429)
        .count()
}

/// PATCHes answered as a stale version: 400 (invalidVers, noTarget), 409, 412.
fn conflicts(requests: &[RecordedRequest]) -> usize {
    requests
        .iter()
        .filter(|request| request.method == "PATCH" && matches!(request.status, 400 | 409 | 412))
        .count()
}

/// Part 1: 100 members out of one group, by the service and by the naive
/// baseline (one PATCH per member, sequentially, with the same client).
/// Part 2: `removals` removals across `groups` groups. Both on one org with
/// `latency_ms` and the service's budget `per_minute`.
pub async fn calls_and_throughput(
    latency_ms: u64,
    per_minute: u32,
    removals: usize,
    groups: usize,
) -> anyhow::Result<(PerRemoval, Throughput)> {
    let knobs = Knobs {
        latency_ms,
        rate_limit_per_minute: Some(per_minute),
        ..Knobs::default()
    };
    let bench = Bench::start(knobs, per_minute, 10).await?;

    // Warm up: the first removal fetches the token; it is not measured.
    let (warm_group, warm_users) = put_group(&bench.org, 2);
    bench.remove(&warm_group, &warm_users[..1], true).await?;

    let per_removal = per_removal(&bench).await?;
    let throughput = throughput(&bench, latency_ms, per_minute, removals, groups).await?;
    bench.stop().await?;
    Ok((per_removal, throughput))
}

async fn per_removal(bench: &Bench) -> anyhow::Result<PerRemoval> {
    // Ours: one request, answered when the removal has finished.
    let (group, users) = put_group(&bench.org, 101);
    bench.org.clear_requests();
    let started = Instant::now();
    let removal = bench.remove(&group, &users[..100], true).await?;
    let ours_wall = started.elapsed();
    let removed = removal["removed"].as_array().map_or(0, Vec::len);
    ensure!(
        removal["status"] == "succeeded" && removed == 100,
        "our 100-member removal did not succeed: {removal}"
    );
    let ours_calls = upstream_calls(&bench.org.requests());

    // Naive: the same client, with the same settings and budget, against
    // the same org, one PATCH per member.
    let base = format!("http://{}", bench.genesys);
    let endpoints = GenesysEndpoints {
        api: base.clone(),
        login: base,
    };
    let genesys = &bench.app.service.settings.genesys;
    let client = GenesysClient::new(genesys, &endpoints, Arc::new(Metrics::new()))?;

    let (group, users) = put_group(&bench.org, 101);
    let group = GroupId::parse(&group)?;
    let members: Vec<MemberId> = users[..100]
        .iter()
        .map(|user| MemberId::parse(user))
        .collect::<Result<_, _>>()?;
    // The token, fetched outside the measurement as for ours.
    client.read_group(&group).await?;

    bench.org.clear_requests();
    let started = Instant::now();
    let mut version = client.read_group(&group).await?.version;
    for member in &members {
        let answer = client
            .remove_members(&group, &version, std::slice::from_ref(member))
            .await?;
        version = match answer {
            PatchAnswer::Group(after) => after.version,
            PatchAnswer::Accepted => client.read_group(&group).await?.version,
        };
    }
    let naive_wall = started.elapsed();
    let naive_calls = upstream_calls(&bench.org.requests());
    let left = bench.org.members(group.as_str()).context("the group")?;
    ensure!(
        left.len() == 1,
        "the naive baseline left {} members",
        left.len()
    );

    Ok(PerRemoval {
        ours_calls,
        ours_wall,
        naive_calls,
        naive_wall,
    })
}

async fn throughput(
    bench: &Bench,
    latency_ms: u64,
    per_minute: u32,
    removals: usize,
    groups: usize,
) -> anyhow::Result<Throughput> {
    // Each removal takes two members of its group; every group keeps some.
    let per_group = removals.div_ceil(groups);
    let made: Vec<(String, Vec<String>)> = (0..groups)
        .map(|_| put_group(&bench.org, per_group * 2 + 5))
        .collect();
    let jobs: Vec<(String, Vec<String>)> = (0..removals)
        .map(|n| {
            let (group, users) = &made[n % groups];
            let round = n / groups;
            (group.clone(), users[round * 2..round * 2 + 2].to_vec())
        })
        .collect();

    let finished_before = bench.finished(None);
    let succeeded_before = bench.finished(Some(Status::Succeeded));
    bench.org.clear_requests();
    let started = Instant::now();
    let submitted: Vec<anyhow::Result<Value>> = futures::stream::iter(&jobs)
        .map(|(group, members)| bench.remove(group, members, false))
        .buffered(32)
        .collect()
        .await;
    for result in submitted {
        result?;
    }
    bench
        .wait_finished(finished_before + removals as u64)
        .await?;
    let wall = started.elapsed();

    let requests = bench.org.requests();
    let calls_per_removal = upstream_calls(&requests) as f64 / removals as f64;
    let concurrency = bench.app.service.settings.worker.max_concurrent_groups as f64;
    let budget_bound_per_s = f64::from(per_minute) / 60.0 / calls_per_removal;
    let per_removal_s = calls_per_removal * latency_ms as f64 / 1000.0;
    let concurrency_bound_per_s = concurrency / per_removal_s.max(1e-9);
    Ok(Throughput {
        removals,
        groups,
        wall,
        calls_per_removal,
        ceiling_per_s: budget_bound_per_s.min(concurrency_bound_per_s),
        budget_bound_per_s,
        concurrency_bound_per_s,
        conflicts: conflicts(&requests),
        rate_limited: rate_limited(&requests),
        succeeded: bench.finished(Some(Status::Succeeded)) - succeeded_before,
    })
}

/// Part 3: `removals` removals at once, with the default budget (300 a
/// minute, a burst of 10) against an org that allows 300 a minute.
pub async fn default_budget(latency_ms: u64, removals: usize) -> anyhow::Result<DefaultBudget> {
    let knobs = Knobs {
        latency_ms,
        rate_limit_per_minute: Some(300),
        ..Knobs::default()
    };
    let bench = Bench::start(knobs, 300, 10).await?;
    let groups = removals.div_ceil(4).max(1);
    let made: Vec<(String, Vec<String>)> = (0..groups).map(|_| put_group(&bench.org, 8)).collect();

    let bench_ref = &bench;
    let started = Instant::now();
    let submitted: Vec<anyhow::Result<Value>> = futures::stream::iter(0..removals)
        .map(|n| {
            let (group, users) = &made[n % groups];
            let member = users[n / groups].clone();
            async move { bench_ref.remove(group, &[member], false).await }
        })
        .buffer_unordered(removals.max(1))
        .collect()
        .await;
    for result in submitted {
        result?;
    }
    bench.wait_finished(removals as u64).await?;
    let wall = started.elapsed();

    let requests = bench.org.requests();
    let result = DefaultBudget {
        removals,
        calls: requests.len(),
        rate_limited: rate_limited(&requests),
        wall,
        succeeded: bench.finished(Some(Status::Succeeded)),
    };
    bench.stop().await?;
    Ok(result)
}
