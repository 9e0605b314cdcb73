//! The client-side budget and the per-group order under load, measured where
//! Genesys would measure them: at the simulated org, whose request log records
//! when each request arrived and what it was answered.
//!
//! These tests run on a multi-threaded runtime, as the service does in
//! production, so that calls really race each other for the budget.

mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use scim_removals::sandbox::{Knobs, Member, Org, RecordedRequest};
use serde_json::{Value, json};
use support::{TestApp, metric, settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_removals_never_exceed_the_rate_plus_the_burst_in_any_window() {
    // 600 calls a minute is one every 100 ms. The budget is a GCRA: after
    // the burst it spaces calls evenly, so what holds for a minute holds
    // scaled for any window: at most 10 calls a second plus the burst of 5.
    // A one-second window is checked, not a minute, so the test takes about
    // ten seconds instead of a minute and still sees the limiter at work.
    let (org, genesys, groups) = org_of(10, 6).await;
    let mut settings = settings(&genesys);
    settings.genesys.max_requests_per_minute = 600;
    settings.genesys.max_burst = 5;
    let app = TestApp::start(settings).await;

    // Five removals per group, each of one member, leaving one behind.
    let mut ids = Vec::new();
    for round in 0..5 {
        for (group, members) in &groups {
            let id = submit(&app, group, &members[round]).await;
            ids.push(id);
        }
    }
    let removals = finish_all(&app, &ids).await;

    for removal in &removals {
        assert_eq!(removal["status"], "succeeded", "{removal:#}");
    }
    let arrivals: Vec<Instant> = org.requests().iter().map(|request| request.at).collect();
    let busiest = busiest_window(&arrivals, Duration::from_secs(1));
    assert!(
        busiest <= 10 + 5,
        "{busiest} calls within one second, out of {}",
        arrivals.len()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_429s_is_ridden_out_without_calling_inside_any_retry_after() {
    let (org, genesys, groups) = org_of(4, 4).await;
    org.set_knobs(Knobs {
        error_429_rate: 0.3,
        retry_after_s: 1,
        ..Knobs::default()
    });
    let mut settings = settings(&genesys);
    // One call at a time: every call after a 429 was sent after its answer
    // came back, so the request log alone tells whether a call went out
    // inside a Retry-After. With calls in flight side by side, one sent just
    // before the 429 arrived would look like a breach and not be one.
    settings.genesys.max_concurrent_requests = 1;
    // 0.3 to the power of 10: a call that meets ten 429s in a row is rare
    // enough that every removal is expected to succeed.
    settings.genesys.retry.max_attempts = 10;
    let app = TestApp::start(settings).await;

    let mut ids = Vec::new();
    for round in 0..3 {
        for (group, members) in &groups {
            ids.push(submit(&app, group, &members[round]).await);
        }
    }
    let removals = finish_all(&app, &ids).await;

    for removal in &removals {
        assert_eq!(removal["status"], "succeeded", "{removal:#}");
    }
    let log = org.requests();
    let limited: Vec<&RecordedRequest> =
        log.iter().filter(|request| request.status == 429).collect();
    assert!(!limited.is_empty(), "the storm sent at least one 429");
    for rate_limited in &limited {
        let inside: Vec<&RecordedRequest> = log
            .iter()
            .filter(|request| {
                request.at > rate_limited.at
                    && request.at - rate_limited.at < Duration::from_secs(1)
            })
            .collect();
        assert!(
            inside.is_empty(),
            "calls inside the Retry-After of the 429 to {}: {inside:?}",
            rate_limited.path
        );
    }
    let metrics = app.metrics().await;
    assert_eq!(
        metric(&metrics, "scim_removals_rate_limited_total"),
        limited.len() as f64
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_server_errors_is_retried_and_every_removal_succeeds() {
    let (org, genesys, groups) = org_of(5, 5).await;
    org.set_knobs(Knobs {
        error_5xx_rate: 0.3,
        ..Knobs::default()
    });
    let mut settings = settings(&genesys);
    // As with 429s: ten failures in a row at 0.3 each is too rare to matter.
    settings.genesys.retry.max_attempts = 10;
    let app = TestApp::start(settings).await;

    let mut asked = Vec::new();
    let mut ids = Vec::new();
    for round in 0..4 {
        for (group, members) in &groups {
            ids.push(submit(&app, group, &members[round]).await);
            asked.push((group, &members[round]));
        }
    }
    let removals = finish_all(&app, &ids).await;

    for (removal, (group, member)) in removals.iter().zip(asked) {
        assert_eq!(removal["status"], "succeeded", "{removal:#}");
        assert_eq!(removal["removed"], json!([member]));
        assert!(!org.members(group).unwrap().contains(member));
    }
    let server_errors = org
        .requests()
        .iter()
        .filter(|request| request.status >= 500)
        .count();
    assert!(server_errors > 0, "the org answered some 5xx");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_removals_of_one_group_meet_no_conflict_and_finish_in_arrival_order() {
    let (org, genesys, groups) = org_of(1, 21).await;
    // Slow enough that all twenty are waiting before the first finishes.
    org.set_knobs(Knobs {
        latency_ms: 20,
        ..Knobs::default()
    });
    let app = TestApp::start(settings(&genesys)).await;
    let (group, members) = &groups[0];

    let mut ids = Vec::new();
    for member in &members[..20] {
        ids.push(submit(&app, group, member).await);
    }
    let removals = finish_all(&app, &ids).await;

    for (removal, member) in removals.iter().zip(members) {
        assert_eq!(removal["status"], "succeeded", "{removal:#}");
        assert_eq!(removal["removed"], json!([member]));
        assert_eq!(removal["conflicts"], 0);
    }
    let completed: Vec<DateTime<Utc>> = removals
        .iter()
        .map(|removal| removal["completed_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        completed.windows(2).all(|pair| pair[0] < pair[1]),
        "finished in the order submitted: {completed:?}"
    );
    // One at a time, in order: each PATCH carries the version the previous
    // one left behind.
    let if_matches: Vec<String> = org
        .requests()
        .iter()
        .filter(|request| request.method == "PATCH")
        .map(|request| request.if_match.clone().unwrap_or_default())
        .collect();
    let expected: Vec<String> = (1..=20).map(|version| format!("\"{version}\"")).collect();
    assert_eq!(if_matches, expected);
    let metrics = app.metrics().await;
    assert_eq!(
        metric(&metrics, "scim_removals_version_conflicts_total"),
        0.0
    );
    app.stop().await;
}

/// An org of `groups` groups of `members` users each (no user in two
/// groups), served on a random port: the org, its base URL, and each group's
/// id with its members.
async fn org_of(groups: usize, members: usize) -> (Org, String, Vec<(String, Vec<String>)>) {
    let org = Org::empty();
    let mut layout = Vec::new();
    for g in 0..groups {
        let group = format!("7e57a000-0000-4000-8000-{g:012}");
        let ids: Vec<String> = (0..members)
            .map(|m| format!("7e57b000-0000-4000-8000-{:012}", g * 1000 + m))
            .collect();
        for (m, id) in ids.iter().enumerate() {
            org.add_user(id, &format!("user.{g}.{m}"), &["Employee"]);
        }
        let group_members: Vec<Member> = ids.iter().map(|id| Member::user(id)).collect();
        org.put_group(&group, &format!("Group {g}"), &group_members);
        layout.push((group, ids));
    }
    let (address, _server) = org
        .spawn(([127, 0, 0, 1], 0).into())
        .await
        .expect("the org serves");
    (org, format!("http://{address}"), layout)
}

/// Queues the removal of `member` from `group` and returns its id.
async fn submit(app: &TestApp, group: &str, member: &str) -> String {
    let response = app.remove(group, json!({"members": [member]}), &[]).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let removal: Value = response.json().await.expect("a removal");
    removal["id"].as_str().expect("an id").to_string()
}

/// Every removal in `ids`, finished, in the same order.
async fn finish_all(app: &TestApp, ids: &[String]) -> Vec<Value> {
    let mut finished = Vec::new();
    for id in ids {
        finished.push(app.wait_final(id).await);
    }
    finished
}

/// The most arrivals within `window` of one another: each window starts at
/// an arrival and holds the arrivals less than `window` after it.
fn busiest_window(arrivals: &[Instant], window: Duration) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    sorted
        .iter()
        .enumerate()
        .map(|(i, start)| {
            sorted[i..]
                .iter()
                .take_while(|at| at.duration_since(*start) < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}
