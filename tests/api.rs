//! End-to-end flows through the HTTP API against the sandbox.

mod support;

use reqwest::StatusCode;
use scim_removals::sandbox::{
    DEMO_GROUP_ORG_ADMINS, DEMO_GROUP_SUPPORT, DEMO_USER_ADA, DEMO_USER_EDSGER, DEMO_USER_GRACE,
};
use serde_json::json;
use support::{TestApp, sandbox, settings};

#[tokio::test]
async fn a_removal_in_the_sandbox_removes_exactly_the_requested_members() {
    let (org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;

    let removal = app
        .remove_and_wait(
            DEMO_GROUP_SUPPORT,
            json!({"members": [DEMO_USER_ADA, DEMO_USER_GRACE]}),
        )
        .await;

    assert_eq!(removal["status"], "succeeded");
    assert_eq!(removal["removed"], json!([DEMO_USER_ADA, DEMO_USER_GRACE]));
    let members = org.members(DEMO_GROUP_SUPPORT).unwrap();
    assert!(!members.contains(&DEMO_USER_ADA.to_string()));
    assert!(!members.contains(&DEMO_USER_GRACE.to_string()));
    assert_eq!(members.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_protected_group_is_rejected_with_the_rule_named() {
    let (org, genesys) = sandbox().await;
    let mut settings = settings(&genesys);
    settings.constraints.protected_groups = vec![DEMO_GROUP_ORG_ADMINS.into()];
    let app = TestApp::start(settings).await;

    let removal = app
        .remove_and_wait(
            DEMO_GROUP_ORG_ADMINS,
            json!({"members": [DEMO_USER_EDSGER]}),
        )
        .await;

    assert_eq!(removal["status"], "rejected");
    assert_eq!(removal["violations"][0]["rule"], "protected_group");
    assert_eq!(org.members(DEMO_GROUP_ORG_ADMINS).unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_member_holding_a_protected_role_is_kept_and_the_rule_named() {
    let (org, genesys) = sandbox().await;
    let mut settings = settings(&genesys);
    settings.constraints.protected_roles = vec!["master admin".into()];
    let app = TestApp::start(settings).await;

    let strict = app
        .remove_and_wait(
            DEMO_GROUP_SUPPORT,
            json!({"members": [DEMO_USER_ADA, DEMO_USER_EDSGER]}),
        )
        .await;
    let lenient = app
        .remove_and_wait(
            DEMO_GROUP_SUPPORT,
            json!({"members": [DEMO_USER_ADA, DEMO_USER_EDSGER], "mode": "best_effort"}),
        )
        .await;

    assert_eq!(strict["status"], "rejected");
    assert_eq!(strict["removed"], json!([]));
    assert_eq!(strict["blocked"][0]["member"], DEMO_USER_EDSGER);
    assert_eq!(strict["blocked"][0]["rule"], "protected_role");
    assert_eq!(lenient["status"], "succeeded");
    assert_eq!(lenient["removed"], json!([DEMO_USER_ADA]));
    assert_eq!(lenient["blocked"][0]["rule"], "protected_role");
    assert!(
        org.members(DEMO_GROUP_SUPPORT)
            .unwrap()
            .contains(&DEMO_USER_EDSGER.to_string())
    );
    app.stop().await;
}

#[tokio::test]
async fn a_forced_conflict_is_retried_and_the_rules_checked_again() {
    let (org, genesys) = sandbox().await;
    let mut settings = settings(&genesys);
    settings.constraints.min_members = 3;
    let app = TestApp::start(settings).await;

    // Another administrator removes barbara between our read and our PATCH:
    // removing ada and grace as well would now leave two of five, below three.
    let removed_once = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hook_flag = removed_once.clone();
    org.set_before_patch(Some(std::sync::Arc::new(
        move |org: &scim_removals::sandbox::Org, group: &str| {
            if !hook_flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
                org.remove_member(group, scim_removals::sandbox::DEMO_USER_BARBARA);
            }
        },
    )));

    let removal = app
        .remove_and_wait(
            DEMO_GROUP_SUPPORT,
            json!({"members": [DEMO_USER_ADA, DEMO_USER_GRACE]}),
        )
        .await;

    assert_eq!(removal["status"], "rejected");
    assert_eq!(removal["conflicts"], 1);
    assert_eq!(removal["violations"][0]["rule"], "min_members");
    assert_eq!(org.members(DEMO_GROUP_SUPPORT).unwrap().len(), 4);
    let metrics = app.metrics().await;
    assert_eq!(
        support::metric(&metrics, "scim_removals_version_conflicts_total"),
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_version_bumped_by_someone_else_is_read_again_and_the_removal_succeeds() {
    let (org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;
    let bumped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = bumped.clone();
    org.set_before_patch(Some(std::sync::Arc::new(
        move |org: &scim_removals::sandbox::Org, group: &str| {
            if !flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
                org.bump_version(group);
            }
        },
    )));

    let removal = app
        .remove_and_wait(DEMO_GROUP_SUPPORT, json!({"members": [DEMO_USER_ADA]}))
        .await;

    assert_eq!(removal["status"], "succeeded");
    assert_eq!(
        (removal["attempts"].as_u64(), removal["conflicts"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(
        !org.members(DEMO_GROUP_SUPPORT)
            .unwrap()
            .contains(&DEMO_USER_ADA.to_string())
    );
    app.stop().await;
}

#[tokio::test]
async fn a_queued_removal_answers_202_with_its_location() {
    let (_org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;

    let response = app
        .remove(DEMO_GROUP_SUPPORT, json!({"members": [DEMO_USER_ADA]}), &[])
        .await;

    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let removal: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/removals/{}", removal["id"].as_str().unwrap())
    );
    let finished = app.wait_final(removal["id"].as_str().unwrap()).await;
    assert_eq!(finished["status"], "succeeded");
    app.stop().await;
}

#[tokio::test]
async fn prefer_wait_answers_200_with_the_preference_applied() {
    let (_org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;

    let response = app
        .remove(
            DEMO_GROUP_SUPPORT,
            json!({"members": [DEMO_USER_ADA]}),
            &[("prefer", "wait=90")],
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["preference-applied"], "wait=60");
    app.stop().await;
}

#[tokio::test]
async fn a_dry_run_is_planned_at_once_and_changes_nothing() {
    let (org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;

    let stranger = "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5bff";
    let body = json!({"members": [DEMO_USER_ADA, stranger], "dry_run": true});
    let response = app.remove(DEMO_GROUP_SUPPORT, body, &[]).await;

    assert_eq!(response.status(), StatusCode::OK);
    let removal: serde_json::Value = response.json().await.unwrap();
    assert_eq!(removal["status"], "planned");
    assert_eq!(removal["would_remove"], json!([DEMO_USER_ADA]));
    assert_eq!(
        removal["not_members"],
        json!(["6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5bff"])
    );
    assert_eq!(org.members(DEMO_GROUP_SUPPORT).unwrap().len(), 5);
    let stored: serde_json::Value = app
        .get(&format!("/removals/{}", removal["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["status"], "planned");
    app.stop().await;
}

#[tokio::test]
async fn removing_only_absent_members_succeeds_without_a_patch() {
    let (org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;
    let absent = "6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b06";

    let removal = app
        .remove_and_wait(DEMO_GROUP_SUPPORT, json!({"members": [absent]}))
        .await;

    assert_eq!(removal["status"], "succeeded");
    assert_eq!(removal["not_members"], json!([absent]));
    assert_eq!(removal["attempts"], 0);
    assert!(
        org.requests()
            .iter()
            .all(|request| request.method != "PATCH")
    );
    app.stop().await;
}

#[tokio::test]
async fn ids_are_accepted_in_any_case_and_reported_in_lower_case() {
    let (_org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;

    let removal = app
        .remove_and_wait(
            &DEMO_GROUP_SUPPORT.to_uppercase(),
            json!({"members": [DEMO_USER_ADA.to_uppercase(), DEMO_USER_ADA]}),
        )
        .await;

    assert_eq!(removal["group_id"], DEMO_GROUP_SUPPORT);
    assert_eq!(removal["requested_members"], json!([DEMO_USER_ADA]));
    assert_eq!(removal["removed"], json!([DEMO_USER_ADA]));
    app.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_replays_the_same_removal() {
    let (org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;
    let body = json!({"members": [DEMO_USER_ADA], "reason": "review"});
    let key = [("idempotency-key", "review-2026-q4-ada")];

    let first = app.remove(DEMO_GROUP_SUPPORT, body.clone(), &key).await;
    let first: serde_json::Value = first.json().await.unwrap();
    app.wait_final(first["id"].as_str().unwrap()).await;
    let again = app.remove(DEMO_GROUP_SUPPORT, body, &key).await;

    assert_eq!(
        again.status(),
        StatusCode::OK,
        "the replay shows the finished state"
    );
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let patches = org
        .requests()
        .iter()
        .filter(|request| request.method == "PATCH")
        .count();
    assert_eq!(patches, 1);

    let other_body = json!({"members": [DEMO_USER_GRACE]});
    let reused = app.remove(DEMO_GROUP_SUPPORT, other_body, &key).await;
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_requests_with_one_key_get_one_removal() {
    let (_org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;
    let body = json!({"members": [DEMO_USER_ADA]});
    let key = [("idempotency-key", "one-key")];

    let answers = futures::future::join_all(
        (0..8).map(|_| app.remove(DEMO_GROUP_SUPPORT, body.clone(), &key)),
    )
    .await;

    let mut ids = std::collections::HashSet::new();
    for answer in answers {
        let removal: serde_json::Value = answer.json().await.unwrap();
        ids.insert(removal["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_queued_removal_can_be_cancelled_and_a_finished_one_cannot() {
    let (org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;
    // A slow org keeps the first removal running while the second waits.
    org.set_knobs(scim_removals::sandbox::Knobs {
        latency_ms: 300,
        ..Default::default()
    });

    let first = app
        .remove(DEMO_GROUP_SUPPORT, json!({"members": [DEMO_USER_ADA]}), &[])
        .await;
    let first: serde_json::Value = first.json().await.unwrap();
    let second = app
        .remove(
            DEMO_GROUP_SUPPORT,
            json!({"members": [DEMO_USER_GRACE]}),
            &[],
        )
        .await;
    let second: serde_json::Value = second.json().await.unwrap();
    let cancel = |id: &str| {
        app.http
            .post(format!("{}/removals/{id}/cancel", app.base))
            .bearer_auth(support::TOKEN)
            .send()
    };

    let cancelled = cancel(second["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);
    let cancelled: serde_json::Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");

    app.wait_final(first["id"].as_str().unwrap()).await;
    let refused = cancel(first["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    assert!(
        org.members(DEMO_GROUP_SUPPORT)
            .unwrap()
            .contains(&DEMO_USER_GRACE.to_string())
    );
    app.stop().await;
}

#[tokio::test]
async fn the_audit_trail_lists_newest_first_with_filters_and_pages() {
    let (_org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;
    for member in [DEMO_USER_ADA, DEMO_USER_GRACE, DEMO_USER_EDSGER] {
        app.remove_and_wait(
            DEMO_GROUP_SUPPORT,
            json!({"members": [member], "dry_run": true}),
        )
        .await;
    }

    let page: serde_json::Value = app.get("/removals?limit=2").await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        page["items"][0]["requested_members"],
        json!([DEMO_USER_EDSGER])
    );
    let next = page["next"].as_str().unwrap();
    let rest: serde_json::Value = app
        .get(&format!("/removals?limit=2&after={next}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next"], serde_json::Value::Null);

    let by_member: serde_json::Value = app
        .get(&format!("/removals?member={DEMO_USER_GRACE}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_member["items"].as_array().unwrap().len(), 1);
    let none: serde_json::Value = app
        .get("/removals?status=failed&since=2020-01-01T00:00:00Z")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["items"], json!([]));
    let bad = app.get("/removals?limit=500").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test]
async fn the_operational_endpoints_answer_without_a_token() {
    let (_org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;
    let get = |path: &'static str| app.http.get(format!("{}{path}", app.base)).send();

    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/readyz").await.unwrap().status(), StatusCode::OK);
    let spec: serde_json::Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    assert!(spec["paths"]["/groups/{groupId}/removals"]["post"].is_object());
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("scim_removals_queue_depth"));
    app.stop().await;
}

#[tokio::test]
async fn a_removal_being_worked_on_reads_as_running() {
    let (org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;
    org.set_knobs(scim_removals::sandbox::Knobs {
        latency_ms: 300,
        ..Default::default()
    });

    let response = app
        .remove(DEMO_GROUP_SUPPORT, json!({"members": [DEMO_USER_ADA]}), &[])
        .await;
    let removal: serde_json::Value = response.json().await.unwrap();
    while org.requests().is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let path = format!("/removals/{}", removal["id"].as_str().unwrap());
    let running: serde_json::Value = app.get(&path).await.json().await.unwrap();

    assert_eq!(running["status"], "running");
    app.stop().await;
}
