//! `/metrics` serves every series of the contract, and they move.

mod support;

use scim_removals::sandbox::{DEMO_GROUP_SUPPORT, DEMO_USER_ADA, DEMO_USER_EDSGER, Knobs};
use serde_json::json;
use support::{TestApp, metric, sandbox, settings};

const SERIES: &[&str] = &[
    "scim_removals_upstream_requests_total",
    "scim_removals_upstream_request_duration_seconds",
    "scim_removals_members_removed_total",
    "scim_removals_version_conflicts_total",
    "scim_removals_rate_limited_total",
    "scim_removals_constraint_violations_total",
    "scim_removals_removals_total",
    "scim_removals_webhook_deliveries_total",
    "scim_removals_webhook_pending",
    "scim_removals_webhook_oldest_pending_age_seconds",
    "scim_removals_queue_depth",
    "scim_removals_http_requests_total",
    "scim_removals_http_request_duration_seconds",
];

#[tokio::test]
async fn every_series_is_served_and_moves_with_the_work_done() {
    let (org, genesys) = sandbox().await;
    let mut settings = settings(&genesys);
    settings.constraints.protected_roles = vec!["Master Admin".into()];
    let app = TestApp::start(settings).await;

    // One 429 first, then a success and a rejection.
    org.set_knobs(Knobs {
        error_429_rate: 1.0,
        retry_after_s: 1,
        ..Knobs::default()
    });
    let pending = app
        .remove(DEMO_GROUP_SUPPORT, json!({"members": [DEMO_USER_ADA]}), &[])
        .await;
    let pending: serde_json::Value = pending.json().await.unwrap();
    while !org.requests().iter().any(|request| request.status == 429) {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    org.set_knobs(Knobs::default());
    app.wait_final(pending["id"].as_str().unwrap()).await;
    app.remove_and_wait(DEMO_GROUP_SUPPORT, json!({"members": [DEMO_USER_EDSGER]}))
        .await;

    let text = app.metrics().await;
    for series in SERIES {
        assert!(
            text.contains(&format!("# TYPE {series} ")),
            "{series} is not served"
        );
    }
    assert_eq!(metric(&text, "scim_removals_members_removed_total"), 1.0);
    assert_eq!(
        metric(&text, "scim_removals_removals_total{status=\"succeeded\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "scim_removals_removals_total{status=\"rejected\"}"),
        1.0
    );
    let violations = "scim_removals_constraint_violations_total{rule=\"protected_role\"}";
    assert_eq!(metric(&text, violations), 1.0);
    assert!(metric(&text, "scim_removals_rate_limited_total") >= 1.0);
    let patches = "scim_removals_upstream_requests_total{operation=\"patch_group\",status=\"200\"}";
    assert_eq!(metric(&text, patches), 1.0);
    let posts = "scim_removals_http_requests_total{method=\"POST\",\
                 route=\"/groups/{group_id}/removals\",status=\"202\"}";
    assert_eq!(metric(&text, posts), 1.0);
    assert!(!text.contains(DEMO_USER_ADA), "no member id in any label");
    app.stop().await;
}
