//! End-to-end flows through the HTTP API against the sandbox.

mod support;

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
