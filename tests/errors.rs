//! Bad requests get clear RFC 9457 answers, in the promised order.

mod support;

use reqwest::StatusCode;
use scim_removals::sandbox::{DEMO_GROUP_SUPPORT, DEMO_USER_ADA};
use serde_json::{Value, json};
use support::{READ_ONLY_TOKEN, TOKEN, TestApp, sandbox, settings};

/// Sends a raw POST and returns the status, the headers and the body.
async fn post(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = app.http.post(format!("{}{path}", app.base)).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// A named request (token, content type, body) and the status it must get.
type Case<'a> = (
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    String,
    StatusCode,
);

fn removals_path() -> String {
    format!("/groups/{DEMO_GROUP_SUPPORT}/removals")
}

fn assert_problem(headers: &reqwest::header::HeaderMap, body: &Value, status: StatusCode) {
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:scim-removals:problem:")
    );
    assert!(body["title"].is_string());
    assert!(body["detail"].is_string());
    assert!(headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn each_kind_of_bad_request_gets_its_status_as_problem_details() {
    let (_org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;
    let path = removals_path();
    let valid = json!({"members": [DEMO_USER_ADA]}).to_string();
    let json_type = Some("application/json");
    let big = format!("{{\"members\": [\"{}\"]}}", "a".repeat(70_000));

    let cases: Vec<Case> = vec![
        (
            "no token",
            None,
            json_type,
            valid.clone(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unknown token",
            Some("nope"),
            json_type,
            valid.clone(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no scope",
            Some(READ_ONLY_TOKEN),
            json_type,
            valid.clone(),
            StatusCode::FORBIDDEN,
        ),
        (
            "not json",
            Some(TOKEN),
            Some("text/plain"),
            valid.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "too large",
            Some(TOKEN),
            json_type,
            big,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "malformed",
            Some(TOKEN),
            json_type,
            "{\"members\": [".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown field",
            Some(TOKEN),
            json_type,
            json!({"members": [DEMO_USER_ADA], "force": true}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "bad member",
            Some(TOKEN),
            json_type,
            json!({"members": ["bob"]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "no members",
            Some(TOKEN),
            json_type,
            json!({"members": []}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "bad mode",
            Some(TOKEN),
            json_type,
            json!({"members": [DEMO_USER_ADA], "mode": "yolo"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "long reason",
            Some(TOKEN),
            json_type,
            json!({"members": [DEMO_USER_ADA], "reason": "r".repeat(1025)}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];

    for (case, token, content_type, body, expected) in cases {
        let (status, headers, problem) = post(&app, &path, token, content_type, body).await;
        assert_eq!(status, expected, "{case}: {problem}");
        assert_problem(&headers, &problem, expected);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_401_names_the_bearer_scheme() {
    let (_org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;

    let (_, headers, _) = post(&app, &removals_path(), None, None, "x").await;

    assert_eq!(headers["www-authenticate"], "Bearer");
    app.stop().await;
}

#[tokio::test]
async fn the_first_of_several_problems_is_answered() {
    let (_org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;
    let path = "/groups/not-a-uuid/removals";

    // Wrong content type and a bad group id: 415 comes before 422.
    let (status, _, _) = post(&app, path, Some(TOKEN), Some("text/plain"), "{}").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Malformed JSON and a bad group id: 400 comes before 422.
    let (status, _, _) = post(&app, path, Some(TOKEN), Some("application/json"), "{").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Missing scope before anything about the body.
    let (status, _, _) = post(&app, path, Some(READ_ONLY_TOKEN), None, "{").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = post(
        &app,
        path,
        Some(TOKEN),
        Some("application/json"),
        json!({"members": [DEMO_USER_ADA]}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test]
async fn a_bad_idempotency_key_is_a_400() {
    let (_org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;

    let response = app
        .remove(
            DEMO_GROUP_SUPPORT,
            json!({"members": [DEMO_USER_ADA]}),
            &[("idempotency-key", &"k".repeat(300))],
        )
        .await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test]
async fn too_many_members_for_the_group_is_a_422() {
    let (_org, genesys) = sandbox().await;
    let mut settings = settings(&genesys);
    settings.constraints.groups.insert(
        DEMO_GROUP_SUPPORT.into(),
        scim_removals::config::GroupConstraintSettings {
            max_removals_per_request: Some(1),
            ..Default::default()
        },
    );
    let app = TestApp::start(settings).await;

    let members = json!({"members": [DEMO_USER_ADA, "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b02"]});
    let response = app.remove(DEMO_GROUP_SUPPORT, members, &[]).await;

    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test]
async fn unknown_removals_and_routes_are_404_problems_and_every_answer_has_a_request_id() {
    let (_org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;

    let missing = app
        .get("/removals/01a23d01-0a59-7103-9025-9d1e1abf7a4b")
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let nowhere = app.get("/nowhere").await;
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);

    let echoed = app
        .http
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "caller-chosen-id")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "caller-chosen-id");
    app.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let (org, genesys) = sandbox().await;
    let mut settings = settings(&genesys);
    settings.worker.max_queued = 1;
    let app = TestApp::start(settings).await;
    org.set_knobs(scim_removals::sandbox::Knobs {
        latency_ms: 500,
        ..Default::default()
    });
    let body = json!({"members": [DEMO_USER_ADA]});

    // One running (claimed), one queued behind it in the same group, then full.
    app.remove(DEMO_GROUP_SUPPORT, body.clone(), &[]).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    app.remove(DEMO_GROUP_SUPPORT, body.clone(), &[]).await;
    let response = app.remove(DEMO_GROUP_SUPPORT, body, &[]).await;

    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    app.stop().await;
}
