//! What Genesys Cloud sees, request by request: the real service, started on
//! a random port, against a `wiremock` server standing in for both the login
//! and the API host. Every mock matches its request exactly (method, path,
//! headers, body) and most count how often they must be called.
//!
//! A request of the wrong shape matches no mock and is answered 404, so it
//! shows up twice: as a broken `expect` when the server is dropped, and as a
//! removal that did not end the way the test asserts.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestApp, metric, settings};
use wiremock::matchers::{body_json, body_string, header, method, path, path_regex, query_param};
use wiremock::{Mock, MockBuilder, MockServer, Request, Respond, ResponseTemplate};

const GROUP: &str = "3d0f5c1e-8a4b-4c2d-9e7f-0a1b2c3d4e01";
const OTHER_GROUP: &str = "3d0f5c1e-8a4b-4c2d-9e7f-0a1b2c3d4e02";
const THIRD_GROUP: &str = "3d0f5c1e-8a4b-4c2d-9e7f-0a1b2c3d4e03";
/// A group that is itself a member of `GROUP` in the role tests.
const NESTED_GROUP: &str = "3d0f5c1e-8a4b-4c2d-9e7f-0a1b2c3d4e09";

const ANNA: &str = "5b3e1f20-7c4d-4a8e-9f10-2a3b4c5d6e01";
const BORIS: &str = "5b3e1f20-7c4d-4a8e-9f10-2a3b4c5d6e02";
const CLARA: &str = "5b3e1f20-7c4d-4a8e-9f10-2a3b4c5d6e03";
const DMITRI: &str = "5b3e1f20-7c4d-4a8e-9f10-2a3b4c5d6e04";
const ELENA: &str = "5b3e1f20-7c4d-4a8e-9f10-2a3b4c5d6e05";
/// Never a member of any group here.
const FELIX: &str = "5b3e1f20-7c4d-4a8e-9f10-2a3b4c5d6e06";

/// The access token the mock hands out unless a test says otherwise.
const ACCESS_TOKEN: &str = "genesys-access-token";
/// Genesys's default token lifetime: a day.
const A_DAY: u64 = 86_400;

// ---------------------------------------------------------------------------
// Tests: the token
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_token_read_and_patch_go_out_exactly_as_genesys_documents_them() {
    let server = MockServer::start().await;
    token_request()
        .respond_with(token_answer(ACCESS_TOKEN, A_DAY))
        .expect(1)
        .mount(&server)
        .await;
    // A weak ETag must come back in If-Match exactly as received, and it
    // wins over meta.version.
    let read = ResponseTemplate::new(200)
        .insert_header("etag", r#"W/"7""#)
        .set_body_json(group_json(GROUP, &[ANNA, BORIS, CLARA, DMITRI], r#""6""#));
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(read)
        .expect(1)
        .mount(&server)
        .await;
    // One operation per present member, in request order, in lower case;
    // Felix is not a member and is never named.
    patch_group(GROUP, ACCESS_TOKEN, r#"W/"7""#)
        .and(body_json(patch_body(&[CLARA, ANNA])))
        .respond_with(group_answer(GROUP, &[BORIS, DMITRI], 8))
        .expect(1)
        .mount(&server)
        .await;
    let app = TestApp::start(settings(&server.uri())).await;

    let upper = |id: &str| id.to_ascii_uppercase();
    let removal = app
        .remove_and_wait(
            &upper(GROUP),
            json!({"members": [upper(CLARA), upper(FELIX), upper(ANNA)]}),
        )
        .await;

    assert_eq!(removal["status"], "succeeded", "{removal:#}");
    assert_eq!(removal["group_id"], GROUP);
    assert_eq!(removal["removed"], json!([CLARA, ANNA]));
    assert_eq!(removal["not_members"], json!([FELIX]));
    assert_eq!(removal["attempts"], 1);
    assert_eq!(removal["conflicts"], 0);
    let group = group_path(GROUP);
    assert_eq!(
        calls(&server).await,
        vec![
            ("POST".to_string(), "/oauth/token".to_string()),
            ("GET".to_string(), group.clone()),
            ("PATCH".to_string(), group),
        ],
        "one token, one read, one PATCH, in that order"
    );
    app.stop().await;
}

#[tokio::test]
async fn without_an_etag_the_patch_carries_meta_version_as_if_match() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    let read =
        ResponseTemplate::new(200).set_body_json(group_json(GROUP, &[ANNA, BORIS], r#""42""#));
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(read)
        .mount(&server)
        .await;
    patch_group(GROUP, ACCESS_TOKEN, r#""42""#)
        .and(body_json(patch_body(&[ANNA])))
        .respond_with(group_answer(GROUP, &[BORIS], 43))
        .expect(1)
        .mount(&server)
        .await;
    let app = TestApp::start(settings(&server.uri())).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "succeeded", "{removal:#}");
    assert_eq!(removal["removed"], json!([ANNA]));
    app.stop().await;
}

#[tokio::test]
async fn one_token_serves_several_removals() {
    let server = MockServer::start().await;
    token_request()
        .respond_with(token_answer(ACCESS_TOKEN, A_DAY))
        .expect(1)
        .mount(&server)
        .await;
    let groups = [GROUP, OTHER_GROUP, THIRD_GROUP];
    for group in groups {
        mount_group(&server, group, &[ANNA, BORIS, CLARA], &[ANNA]).await;
    }
    let app = TestApp::start(settings(&server.uri())).await;

    for group in groups {
        let removal = app.remove_and_wait(group, json!({"members": [ANNA]})).await;
        assert_eq!(removal["status"], "succeeded", "{removal:#}");
    }

    let reads = requests(&server, "GET").await;
    assert_eq!(reads.len(), 3);
    assert!(
        reads
            .iter()
            .all(|read| authorization(read) == format!("Bearer {ACCESS_TOKEN}"))
    );
    app.stop().await;
}

#[tokio::test]
async fn the_token_is_refreshed_shortly_before_it_expires() {
    // A 4 s token is refreshed 10% ahead of expiry, at 3.6 s.
    let lifetime = Duration::from_secs(4);
    let server = MockServer::start().await;
    let arrivals = Arrivals::default();
    let tokens = in_turn([token_answer("token-1", 4), token_answer("token-2", 4)]);
    token_request()
        .respond_with(arrivals.stamp("token", tokens))
        .expect(2)
        .mount(&server)
        .await;
    // Whichever token comes, the group answers; which one came is read from
    // the recorded requests below.
    Mock::given(method("GET"))
        .and(path(group_path(GROUP)))
        .respond_with(group_answer(GROUP, &[ANNA, BORIS, CLARA, DMITRI], 1))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(group_path(GROUP)))
        .respond_with(group_answer(GROUP, &[DMITRI], 2))
        .mount(&server)
        .await;
    let app = TestApp::start(settings(&server.uri())).await;

    app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;
    let first_token_at = arrivals.of("token")[0];
    sleep_until(first_token_at + Duration::from_secs(1)).await;
    app.remove_and_wait(GROUP, json!({"members": [BORIS]}))
        .await;
    sleep_until(first_token_at + Duration::from_millis(3_700)).await;
    app.remove_and_wait(GROUP, json!({"members": [CLARA]}))
        .await;

    let token_times = arrivals.of("token");
    let refreshed_after = token_times[1] - token_times[0];
    assert!(
        refreshed_after < lifetime,
        "the second token was fetched {refreshed_after:?} after the first, past its expiry"
    );
    let reads: Vec<String> = requests(&server, "GET")
        .await
        .iter()
        .map(authorization)
        .collect();
    assert_eq!(
        reads,
        vec!["Bearer token-1", "Bearer token-1", "Bearer token-2"],
        "the first token serves until its refresh point, the new one after"
    );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_removals_of_different_groups_fetch_exactly_one_token() {
    let groups = [
        GROUP,
        OTHER_GROUP,
        THIRD_GROUP,
        "3d0f5c1e-8a4b-4c2d-9e7f-0a1b2c3d4e04",
        "3d0f5c1e-8a4b-4c2d-9e7f-0a1b2c3d4e05",
    ];
    let server = MockServer::start().await;
    // A slow token endpoint: every removal is waiting for a token while the
    // first fetch is still out.
    let token_delay = Duration::from_millis(500);
    let arrivals = Arrivals::default();
    let slow_token = token_answer(ACCESS_TOKEN, A_DAY).set_delay(token_delay);
    token_request()
        .respond_with(arrivals.stamp("token", slow_token))
        .expect(1)
        .mount(&server)
        .await;
    for group in groups {
        mount_group(&server, group, &[ANNA, BORIS], &[ANNA]).await;
    }
    let app = TestApp::start(settings(&server.uri())).await;

    let submitted = join_all(
        groups
            .iter()
            .map(|group| app.remove(group, json!({"members": [ANNA]}), &[])),
    )
    .await;
    let all_submitted_at = Instant::now();
    let mut removals = Vec::new();
    for response in submitted {
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let removal: Value = response.json().await.unwrap();
        removals.push(app.wait_final(removal["id"].as_str().unwrap()).await);
    }

    for removal in &removals {
        assert_eq!(removal["status"], "succeeded", "{removal:#}");
    }
    let token_answered_at = arrivals.of("token")[0] + token_delay;
    assert!(
        all_submitted_at < token_answered_at,
        "the removals were all queued before the one token came back"
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------
// Tests: authentication and missing groups
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_401_from_the_api_fetches_one_new_token_and_the_call_succeeds() {
    let server = MockServer::start().await;
    token_request()
        .respond_with(in_turn([
            token_answer("revoked-token", A_DAY),
            token_answer("fresh-token", A_DAY),
        ]))
        .expect(2)
        .mount(&server)
        .await;
    read_group(GROUP, "revoked-token")
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    read_group(GROUP, "fresh-token")
        .respond_with(group_answer(GROUP, &[ANNA, BORIS], 1))
        .expect(1)
        .mount(&server)
        .await;
    patch_group(GROUP, "fresh-token", r#""1""#)
        .respond_with(group_answer(GROUP, &[BORIS], 2))
        .expect(1)
        .mount(&server)
        .await;
    let app = TestApp::start(settings(&server.uri())).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "succeeded", "{removal:#}");
    assert_eq!(removal["removed"], json!([ANNA]));
    app.stop().await;
}

#[tokio::test]
async fn a_401_from_the_token_endpoint_fails_the_removal_without_asking_again() {
    let server = MockServer::start().await;
    let refused = ResponseTemplate::new(401).set_body_json(json!({
        "error": "invalid_client",
        "description": "client not found",
        "error_description": "client not found",
    }));
    token_request()
        .respond_with(refused)
        .expect(1)
        .mount(&server)
        .await;
    let app = TestApp::start(settings(&server.uri())).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "failed", "{removal:#}");
    assert_eq!(removal["error"]["code"], "upstream_auth");
    assert_eq!(
        calls(&server).await.len(),
        1,
        "nothing but the one token request reached Genesys"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_403_on_the_group_read_fails_with_upstream_auth() {
    let server = MockServer::start().await;
    token_request()
        .respond_with(token_answer(ACCESS_TOKEN, A_DAY))
        .expect(1)
        .mount(&server)
        .await;
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(ResponseTemplate::new(403))
        .expect(1)
        .mount(&server)
        .await;
    let app = TestApp::start(settings(&server.uri())).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "failed", "{removal:#}");
    assert_eq!(removal["error"]["code"], "upstream_auth");
    assert!(requests(&server, "PATCH").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_404_on_the_group_read_fails_with_group_not_found() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    let app = TestApp::start(settings(&server.uri())).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "failed", "{removal:#}");
    assert_eq!(removal["error"]["code"], "group_not_found");
    assert!(requests(&server, "PATCH").await.is_empty());
    app.stop().await;
}

// ---------------------------------------------------------------------------
// Tests: version conflicts
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_400_invalid_vers_is_a_conflict_the_patch_is_sent_again_with_the_new_version() {
    let stale = ResponseTemplate::new(400).set_body_json(scim_error(400, "invalidVers"));
    conflict_then_success(stale).await;
}

#[tokio::test]
async fn a_400_no_target_is_a_conflict_the_patch_is_sent_again_with_the_new_version() {
    let stale = ResponseTemplate::new(400).set_body_json(scim_error(400, "noTarget"));
    conflict_then_success(stale).await;
}

#[tokio::test]
async fn a_409_is_a_conflict_the_patch_is_sent_again_with_the_new_version() {
    conflict_then_success(ResponseTemplate::new(409)).await;
}

#[tokio::test]
async fn a_412_is_a_conflict_the_patch_is_sent_again_with_the_new_version() {
    conflict_then_success(ResponseTemplate::new(412)).await;
}

/// The PATCH at version 1 meets `stale`; the group read again is at version
/// 2 (another administrator added Dmitri), and the PATCH sent with it works.
async fn conflict_then_success(stale: ResponseTemplate) {
    let server = MockServer::start().await;
    serve_token(&server).await;
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(in_turn([
            group_answer(GROUP, &[ANNA, BORIS, CLARA], 1),
            group_answer(GROUP, &[ANNA, BORIS, CLARA, DMITRI], 2),
        ]))
        .expect(2)
        .mount(&server)
        .await;
    patch_group(GROUP, ACCESS_TOKEN, r#""1""#)
        .and(body_json(patch_body(&[ANNA])))
        .respond_with(stale)
        .expect(1)
        .mount(&server)
        .await;
    patch_group(GROUP, ACCESS_TOKEN, r#""2""#)
        .and(body_json(patch_body(&[ANNA])))
        .respond_with(group_answer(GROUP, &[BORIS, CLARA, DMITRI], 3))
        .expect(1)
        .mount(&server)
        .await;
    let app = TestApp::start(settings(&server.uri())).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "succeeded", "{removal:#}");
    assert_eq!(removal["removed"], json!([ANNA]));
    assert_eq!(removal["attempts"], 2);
    assert_eq!(removal["conflicts"], 1);
    let metrics = app.metrics().await;
    assert_eq!(
        metric(&metrics, "scim_removals_version_conflicts_total"),
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn conflicts_beyond_max_conflict_retries_fail_the_removal() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(group_answer(GROUP, &[ANNA, BORIS], 1))
        .mount(&server)
        .await;
    // The first PATCH and two retries, then no more.
    patch_group(GROUP, ACCESS_TOKEN, r#""1""#)
        .respond_with(ResponseTemplate::new(412))
        .expect(3)
        .mount(&server)
        .await;
    let mut settings = settings(&server.uri());
    settings.genesys.retry.max_conflict_retries = 2;
    let app = TestApp::start(settings).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "failed", "{removal:#}");
    assert_eq!(removal["error"]["code"], "conflict_retries_exhausted");
    assert_eq!(removal["removed"], json!([]));
    assert_eq!(removal["conflicts"], 3);
    assert_eq!(removal["attempts"], 3);
    let metrics = app.metrics().await;
    assert_eq!(
        metric(&metrics, "scim_removals_version_conflicts_total"),
        3.0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_conflict_that_leaves_the_group_too_small_is_rejected_by_the_rules_checked_again() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    // Between our read and our PATCH another administrator removed Boris:
    // removing Anna now would leave one member, below the minimum of two.
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(in_turn([
            group_answer(GROUP, &[ANNA, BORIS, CLARA], 1),
            group_answer(GROUP, &[ANNA, CLARA], 2),
        ]))
        .expect(2)
        .mount(&server)
        .await;
    patch_group(GROUP, ACCESS_TOKEN, r#""1""#)
        .respond_with(ResponseTemplate::new(409))
        .expect(1)
        .mount(&server)
        .await;
    patch_group(GROUP, ACCESS_TOKEN, r#""2""#)
        .respond_with(group_answer(GROUP, &[CLARA], 3))
        .expect(0)
        .mount(&server)
        .await;
    let mut settings = settings(&server.uri());
    settings.constraints.min_members = 2;
    let app = TestApp::start(settings).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "rejected", "{removal:#}");
    assert_eq!(removal["violations"][0]["rule"], "min_members");
    assert_eq!(removal["removed"], json!([]));
    assert_eq!(removal["conflicts"], 1);
    app.stop().await;
}

// ---------------------------------------------------------------------------
// Tests: rate limits
// ---------------------------------------------------------------------------

#[tokio::test]
async fn after_a_429_no_call_goes_out_before_its_retry_after_has_passed() {
    let server = MockServer::start().await;
    let arrivals = Arrivals::default();
    token_request()
        .respond_with(arrivals.stamp("token", token_answer(ACCESS_TOKEN, A_DAY)))
        .mount(&server)
        .await;
    let rate_limited = ResponseTemplate::new(429)
        .insert_header("retry-after", "1")
        .set_body_json(json!({
            "message": "Rate limit exceeded the maximum. Retry the request in [1] seconds",
            "code": "too.many.requests.retry.after",
            "status": 429,
        }));
    let reads = in_turn([rate_limited, group_answer(GROUP, &[ANNA, BORIS], 1)]);
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(arrivals.stamp("read", reads))
        .expect(2)
        .mount(&server)
        .await;
    let patched = group_answer(GROUP, &[BORIS], 2);
    patch_group(GROUP, ACCESS_TOKEN, r#""1""#)
        .respond_with(arrivals.stamp("patch", patched))
        .expect(1)
        .mount(&server)
        .await;
    let app = TestApp::start(settings(&server.uri())).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "succeeded", "{removal:#}");
    let limited_at = arrivals.of("read")[0];
    let too_early: Vec<_> = arrivals
        .all()
        .into_iter()
        .filter(|(_, at)| *at > limited_at && *at - limited_at < Duration::from_secs(1))
        .collect();
    assert!(
        too_early.is_empty(),
        "calls within the Retry-After second: {too_early:?}"
    );
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "scim_removals_rate_limited_total"), 1.0);
    app.stop().await;
}

#[tokio::test]
async fn a_retry_after_beyond_max_retry_after_s_fails_the_removal_at_once() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "600"))
        .expect(1)
        .mount(&server)
        .await;
    let mut settings = settings(&server.uri());
    settings.genesys.retry.max_retry_after_s = 5;
    let app = TestApp::start(settings).await;

    let started = Instant::now();
    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "failed", "{removal:#}");
    assert_eq!(removal["error"]["code"], "upstream_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the removal failed without waiting"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_retry_after_given_as_an_http_date_is_waited_for() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    let arrivals = Arrivals::default();
    // The date is written when the request comes, three seconds ahead; HTTP
    // dates have whole seconds, so the wait asked for is more than two.
    let served = AtomicUsize::new(0);
    let reads = move |_: &Request| {
        if served.fetch_add(1, Ordering::SeqCst) > 0 {
            return group_answer(GROUP, &[ANNA, BORIS], 1);
        }
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
        ResponseTemplate::new(429).insert_header("retry-after", date.as_str())
    };
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(arrivals.stamp("read", reads))
        .expect(2)
        .mount(&server)
        .await;
    patch_group(GROUP, ACCESS_TOKEN, r#""1""#)
        .respond_with(group_answer(GROUP, &[BORIS], 2))
        .expect(1)
        .mount(&server)
        .await;
    let app = TestApp::start(settings(&server.uri())).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "succeeded", "{removal:#}");
    let reads = arrivals.of("read");
    let waited = reads[1] - reads[0];
    assert!(
        waited >= Duration::from_millis(1_500) && waited < Duration::from_secs(4),
        "waited {waited:?} for a date about three seconds ahead"
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------
// Tests: transient failures and timeouts
// ---------------------------------------------------------------------------

#[tokio::test]
async fn server_errors_are_retried_until_the_call_succeeds() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(in_turn([
            ResponseTemplate::new(500),
            ResponseTemplate::new(503),
            group_answer(GROUP, &[ANNA, BORIS], 1),
        ]))
        .expect(3)
        .mount(&server)
        .await;
    // The PATCH's 503 was rolled before anything applied; the retry carries
    // the same version and succeeds.
    patch_group(GROUP, ACCESS_TOKEN, r#""1""#)
        .and(body_json(patch_body(&[ANNA])))
        .respond_with(in_turn([
            ResponseTemplate::new(503),
            group_answer(GROUP, &[BORIS], 2),
        ]))
        .expect(2)
        .mount(&server)
        .await;
    let app = TestApp::start(settings(&server.uri())).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "succeeded", "{removal:#}");
    assert_eq!(removal["removed"], json!([ANNA]));
    assert_eq!(
        removal["attempts"], 1,
        "transport retries are not PATCH cycles"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_server_error_on_every_attempt_fails_after_exactly_max_attempts() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(ResponseTemplate::new(503))
        .expect(3)
        .mount(&server)
        .await;
    let mut settings = settings(&server.uri());
    settings.genesys.retry.max_attempts = 3;
    let app = TestApp::start(settings).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "failed", "{removal:#}");
    assert_eq!(removal["error"]["code"], "upstream_unavailable");
    app.stop().await;
}

#[tokio::test]
async fn a_patch_that_timed_out_but_went_through_reports_the_member_removed() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(in_turn([
            group_answer(GROUP, &[ANNA, BORIS, CLARA], 1),
            group_answer(GROUP, &[BORIS, CLARA], 2),
        ]))
        .expect(2)
        .mount(&server)
        .await;
    // The first PATCH is applied but its answer comes too late; the retry,
    // still at version 1, is refused because the first one moved the version.
    let too_late = group_answer(GROUP, &[BORIS, CLARA], 2).set_delay(Duration::from_secs(1));
    patch_group(GROUP, ACCESS_TOKEN, r#""1""#)
        .and(body_json(patch_body(&[ANNA])))
        .respond_with(in_turn([too_late, ResponseTemplate::new(412)]))
        .expect(2)
        .mount(&server)
        .await;
    let mut settings = settings(&server.uri());
    settings.genesys.request_timeout_ms = 300;
    let app = TestApp::start(settings).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "succeeded", "{removal:#}");
    assert_eq!(removal["removed"], json!([ANNA]));
    assert_eq!(removal["not_members"], json!([]));
    assert_eq!(removal["conflicts"], 1);
    app.stop().await;
}

// ---------------------------------------------------------------------------
// Tests: verifying the PATCH
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_204_answer_is_verified_by_reading_the_group_again() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(in_turn([
            group_answer(GROUP, &[ANNA, BORIS], 1),
            group_answer(GROUP, &[BORIS], 2),
        ]))
        .expect(2)
        .mount(&server)
        .await;
    patch_group(GROUP, ACCESS_TOKEN, r#""1""#)
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let app = TestApp::start(settings(&server.uri())).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "succeeded", "{removal:#}");
    assert_eq!(removal["removed"], json!([ANNA]));
    app.stop().await;
}

#[tokio::test]
async fn a_200_whose_group_still_holds_the_member_fails_as_not_applied() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(group_answer(GROUP, &[ANNA, BORIS], 1))
        .mount(&server)
        .await;
    patch_group(GROUP, ACCESS_TOKEN, r#""1""#)
        .respond_with(group_answer(GROUP, &[ANNA, BORIS], 2))
        .expect(1)
        .mount(&server)
        .await;
    let app = TestApp::start(settings(&server.uri())).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "failed", "{removal:#}");
    assert_eq!(removal["error"]["code"], "not_applied");
    assert_eq!(removal["removed"], json!([]));
    app.stop().await;
}

// ---------------------------------------------------------------------------
// Tests: roles
// ---------------------------------------------------------------------------

#[tokio::test]
async fn roles_are_not_looked_up_when_no_role_is_protected() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    mount_group(&server, GROUP, &[ANNA, BORIS], &[ANNA]).await;
    any_user_look_up()
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let app = TestApp::start(settings(&server.uri())).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "succeeded", "{removal:#}");
    app.stop().await;
}

#[tokio::test]
async fn roles_are_asked_only_for_members_that_would_otherwise_be_removed() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    let mut group = group_json(GROUP, &[ANNA, BORIS, CLARA, DMITRI], r#""1""#);
    group["members"]
        .as_array_mut()
        .unwrap()
        .push(json!({"value": NESTED_GROUP, "type": "Group"}));
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(ResponseTemplate::new(200).set_body_json(group))
        .mount(&server)
        .await;
    // Anna is the only user that would be removed: Felix is absent, Dmitri
    // protected by id, and the nested group holds no roles.
    user_look_up(ANNA)
        .respond_with(roles_answer(json!([{"value": "Employee"}])))
        .expect(1)
        .mount(&server)
        .await;
    any_user_look_up()
        .respond_with(roles_answer(json!([])))
        .expect(0)
        .mount(&server)
        .await;
    patch_group(GROUP, ACCESS_TOKEN, r#""1""#)
        .and(body_json(patch_body(&[ANNA, NESTED_GROUP])))
        .respond_with(group_answer(GROUP, &[BORIS, CLARA, DMITRI], 2))
        .expect(1)
        .mount(&server)
        .await;
    let mut settings = settings(&server.uri());
    settings.constraints.protected_roles = vec!["Master Admin".into()];
    settings.constraints.protected_members = vec![DMITRI.into()];
    let app = TestApp::start(settings).await;

    let removal = app
        .remove_and_wait(
            GROUP,
            json!({
                "members": [ANNA, FELIX, DMITRI, NESTED_GROUP],
                "mode": "best_effort",
            }),
        )
        .await;

    assert_eq!(removal["status"], "succeeded", "{removal:#}");
    assert_eq!(removal["removed"], json!([ANNA, NESTED_GROUP]));
    assert_eq!(removal["not_members"], json!([FELIX]));
    assert_eq!(removal["blocked"][0]["member"], DMITRI);
    assert_eq!(removal["blocked"][0]["rule"], "protected_member");
    app.stop().await;
}

#[tokio::test]
async fn a_holder_of_a_protected_role_in_any_letter_case_is_blocked() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(group_answer(GROUP, &[ANNA, DMITRI, ELENA], 1))
        .mount(&server)
        .await;
    // Roles as objects and as plain strings, neither in the configured case.
    user_look_up(DMITRI)
        .respond_with(roles_answer(
            json!([{"value": "Employee"}, {"value": "MASTER ADMIN"}]),
        ))
        .expect(1)
        .mount(&server)
        .await;
    user_look_up(ELENA)
        .respond_with(roles_answer(json!(["Master Admin"])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let mut settings = settings(&server.uri());
    settings.constraints.protected_roles = vec!["master admin".into()];
    let app = TestApp::start(settings).await;

    let removal = app
        .remove_and_wait(GROUP, json!({"members": [DMITRI, ELENA]}))
        .await;

    assert_eq!(removal["status"], "rejected", "{removal:#}");
    let blocked: Vec<(&str, &str)> = removal["blocked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["member"].as_str().unwrap(), b["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(
        blocked,
        vec![(DMITRI, "protected_role"), (ELENA, "protected_role")]
    );
    assert_eq!(removal["removed"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_user_genesys_does_not_know_has_no_roles() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    mount_group(&server, GROUP, &[ANNA, BORIS], &[ANNA]).await;
    user_look_up(ANNA)
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    let mut settings = settings(&server.uri());
    settings.constraints.protected_roles = vec!["Master Admin".into()];
    let app = TestApp::start(settings).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "succeeded", "{removal:#}");
    assert_eq!(removal["removed"], json!([ANNA]));
    app.stop().await;
}

#[tokio::test]
async fn a_role_look_up_failing_every_time_fails_the_removal_before_any_patch() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    read_group(GROUP, ACCESS_TOKEN)
        .respond_with(group_answer(GROUP, &[ANNA, BORIS], 1))
        .mount(&server)
        .await;
    user_look_up(ANNA)
        .respond_with(ResponseTemplate::new(500))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let mut settings = settings(&server.uri());
    settings.constraints.protected_roles = vec!["Master Admin".into()];
    settings.genesys.retry.max_attempts = 2;
    let app = TestApp::start(settings).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "failed", "{removal:#}");
    assert_eq!(removal["error"]["code"], "role_lookup_failed");
    assert_eq!(removal["removed"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn roles_looked_up_once_are_trusted_for_role_cache_ttl_s() {
    let server = MockServer::start().await;
    serve_token(&server).await;
    for group in [GROUP, OTHER_GROUP] {
        mount_group(&server, group, &[ANNA, BORIS], &[ANNA]).await;
    }
    user_look_up(ANNA)
        .respond_with(roles_answer(json!([{"value": "Employee"}])))
        .expect(1)
        .mount(&server)
        .await;
    let mut settings = settings(&server.uri());
    settings.constraints.protected_roles = vec!["Master Admin".into()];
    settings.genesys.role_cache_ttl_s = 60;
    let app = TestApp::start(settings).await;

    let first = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;
    let second = app
        .remove_and_wait(OTHER_GROUP, json!({"members": [ANNA]}))
        .await;

    assert_eq!(first["status"], "succeeded", "{first:#}");
    assert_eq!(second["status"], "succeeded", "{second:#}");
    app.stop().await;
}

// ---------------------------------------------------------------------------
// Tests: protected groups
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_protected_group_is_rejected_before_any_call_to_genesys() {
    let server = MockServer::start().await;
    let mut settings = settings(&server.uri());
    settings.constraints.protected_groups = vec![GROUP.into()];
    let app = TestApp::start(settings).await;

    let removal = app.remove_and_wait(GROUP, json!({"members": [ANNA]})).await;

    assert_eq!(removal["status"], "rejected", "{removal:#}");
    assert_eq!(removal["violations"][0]["rule"], "protected_group");
    assert!(
        calls(&server).await.is_empty(),
        "Genesys received no request at all"
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------
// The mock Genesys: requests as the contract spells them, and answers
// ---------------------------------------------------------------------------

fn group_path(group: &str) -> String {
    format!("/api/v2/scim/v2/groups/{group}")
}

/// `Basic base64(client_id:client_secret)` for the client the test settings
/// name.
fn basic_credentials() -> String {
    let encoded = BASE64.encode("sandbox-client:sandbox-secret");
    format!("Basic {encoded}")
}

/// The client-credentials token request, exactly.
fn token_request() -> MockBuilder {
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(header("authorization", basic_credentials().as_str()))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string("grant_type=client_credentials"))
}

fn token_answer(token: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": expires_in,
    }))
}

/// A token endpoint that hands out `ACCESS_TOKEN` as often as it is asked.
async fn serve_token(server: &MockServer) {
    token_request()
        .respond_with(token_answer(ACCESS_TOKEN, A_DAY))
        .mount(server)
        .await;
}

fn read_group(group: &str, token: &str) -> MockBuilder {
    Mock::given(method("GET"))
        .and(path(group_path(group)))
        .and(header("authorization", format!("Bearer {token}").as_str()))
}

fn patch_group(group: &str, token: &str, if_match: &str) -> MockBuilder {
    Mock::given(method("PATCH"))
        .and(path(group_path(group)))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .and(header("if-match", if_match))
}

/// A role look-up of `user`, exactly. Mounted ahead of [`any_user_look_up`].
fn user_look_up(user: &str) -> MockBuilder {
    Mock::given(method("GET"))
        .and(path(format!("/api/v2/scim/v2/users/{user}")))
        .and(query_param("attributes", "roles"))
        .and(header(
            "authorization",
            format!("Bearer {ACCESS_TOKEN}").as_str(),
        ))
}

/// Any user request; give it `expect(0)` to catch look-ups nobody asked for.
fn any_user_look_up() -> MockBuilder {
    Mock::given(path_regex("^/api/v2/scim/v2/users/"))
}

fn roles_answer(roles: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "roles": roles,
    }))
}

/// A SCIM group of users at `version` (a quoted string, as in `meta`).
fn group_json(group: &str, members: &[&str], version: &str) -> Value {
    let members: Vec<Value> = members
        .iter()
        .map(|id| json!({"value": id, "type": "User"}))
        .collect();
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": group,
        "displayName": "Support Tier 1",
        "members": members,
        "meta": {"resourceType": "Group", "version": version},
    })
}

/// The group at `version`, given as Genesys does: `ETag` and `meta.version`.
fn group_answer(group: &str, members: &[&str], version: u32) -> ResponseTemplate {
    let version = format!("\"{version}\"");
    ResponseTemplate::new(200)
        .insert_header("etag", version.as_str())
        .set_body_json(group_json(group, members, &version))
}

/// The PatchOp removing `members`, as the contract spells it.
fn patch_body(members: &[&str]) -> Value {
    let operations: Vec<Value> = members
        .iter()
        .map(|id| json!({"op": "remove", "path": format!("members[value eq \"{id}\"]")}))
        .collect();
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": operations,
    })
}

fn scim_error(status: u16, scim_type: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": status.to_string(),
        "scimType": scim_type,
        "detail": "the version does not match",
    })
}

/// A group holding `members` at version 1 whose PATCH removing `removed`
/// (with that version and `ACCESS_TOKEN`) succeeds.
async fn mount_group(server: &MockServer, group: &str, members: &[&str], removed: &[&str]) {
    let after: Vec<&str> = members
        .iter()
        .copied()
        .filter(|member| !removed.contains(member))
        .collect();
    read_group(group, ACCESS_TOKEN)
        .respond_with(group_answer(group, members, 1))
        .mount(server)
        .await;
    patch_group(group, ACCESS_TOKEN, r#""1""#)
        .and(body_json(patch_body(removed)))
        .respond_with(group_answer(group, &after, 2))
        .mount(server)
        .await;
}

/// Method and path of every request the mock received, in order.
async fn calls(server: &MockServer) -> Vec<(String, String)> {
    server
        .received_requests()
        .await
        .expect("the mock records requests")
        .iter()
        .map(|request| (request.method.to_string(), request.url.path().to_string()))
        .collect()
}

async fn requests(server: &MockServer, verb: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("the mock records requests")
        .into_iter()
        .filter(|request| request.method.as_str() == verb)
        .collect()
}

fn authorization(request: &Request) -> String {
    request
        .headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(at.into()).await;
}

/// Answers with each template in turn, then keeps giving the last one: how a
/// stateless mock plays a group that changes, or a failure that passes.
struct InTurn {
    answers: Vec<ResponseTemplate>,
    served: AtomicUsize,
}

fn in_turn<const N: usize>(answers: [ResponseTemplate; N]) -> InTurn {
    assert!(N > 0, "at least one answer");
    InTurn {
        answers: answers.into(),
        served: AtomicUsize::new(0),
    }
}

impl Respond for InTurn {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let turn = self.served.fetch_add(1, Ordering::SeqCst);
        self.answers[turn.min(self.answers.len() - 1)].clone()
    }
}

/// When requests reached the mock, by label. `received_requests()` keeps no
/// times, and the tests about waiting need them.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<(&'static str, Instant)>>>);

impl Arrivals {
    /// Wraps `answer` so that each request it answers is recorded first.
    fn stamp<R: Respond>(&self, label: &'static str, answer: R) -> Stamped<R> {
        Stamped {
            label,
            arrivals: self.clone(),
            answer,
        }
    }

    fn all(&self) -> Vec<(&'static str, Instant)> {
        self.0.lock().unwrap().clone()
    }

    fn of(&self, label: &str) -> Vec<Instant> {
        self.all()
            .into_iter()
            .filter(|(seen, _)| *seen == label)
            .map(|(_, at)| at)
            .collect()
    }
}

struct Stamped<R> {
    label: &'static str,
    arrivals: Arrivals,
    answer: R,
}

impl<R: Respond> Respond for Stamped<R> {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        // Taken before the answer's own delay, if any: the arrival.
        let now = Instant::now();
        self.arrivals.0.lock().unwrap().push((self.label, now));
        self.answer.respond(request)
    }
}
