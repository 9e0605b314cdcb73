//! The sandbox seen from outside: a real HTTP client against an org served on
//! a free loopback port, one org per test so tests never share state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::*;

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A served org and a client pointed at it; the server stops on drop.
struct TestOrg {
    org: Org,
    base: String,
    http: reqwest::Client,
    server: JoinHandle<()>,
}

impl Drop for TestOrg {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestOrg {
    async fn start(org: Org) -> TestOrg {
        let (address, server) = org
            .spawn(([127, 0, 0, 1], 0).into())
            .await
            .expect("bind a loopback port");
        TestOrg {
            org,
            base: format!("http://{address}"),
            http: reqwest::Client::new(),
            server,
        }
    }

    async fn demo() -> TestOrg {
        TestOrg::start(Org::demo()).await
    }

    async fn request_token(&self, client_id: &str, secret: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/oauth/token", self.base))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token request")
    }

    async fn token(&self) -> String {
        let response = self.request_token(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("token JSON");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET request")
    }

    async fn get_group(&self, token: &str, group_id: &str) -> reqwest::Response {
        self.get(token, &format!("/api/v2/scim/v2/groups/{group_id}"))
            .await
    }

    async fn patch_group(
        &self,
        token: &str,
        group_id: &str,
        if_match: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .patch(format!("{}/api/v2/scim/v2/groups/{group_id}", self.base))
            .bearer_auth(token)
            .json(body);
        if let Some(version) = if_match {
            request = request.header("If-Match", version);
        }
        request.send().await.expect("PATCH request")
    }
}

/// A PatchOp removing each member by the RFC filter form.
fn removal_of(member_ids: &[&str]) -> Value {
    let operations: Vec<Value> = member_ids
        .iter()
        .map(|id| json!({ "op": "remove", "path": format!("members[value eq \"{id}\"]") }))
        .collect();
    json!({ "schemas": [PATCH_OP], "Operations": operations })
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

fn member_values(group: &Value) -> Vec<&str> {
    group["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .filter_map(|member| member["value"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

fn support_members() -> Vec<String> {
    [
        DEMO_USER_ADA,
        DEMO_USER_GRACE,
        DEMO_USER_ALAN,
        DEMO_USER_EDSGER,
        DEMO_USER_BARBARA,
    ]
    .map(str::to_owned)
    .to_vec()
}

#[test]
fn the_demo_org_holds_the_documented_groups_and_members() {
    let org = Org::demo();

    assert_eq!(org.members(DEMO_GROUP_SUPPORT), Some(support_members()));
    assert_eq!(
        org.members(DEMO_GROUP_BILLING),
        Some(vec![
            DEMO_USER_BARBARA.to_owned(),
            DEMO_USER_KEN.to_owned(),
            DEMO_GROUP_ESCALATIONS.to_owned()
        ])
    );
    assert_eq!(
        org.members(DEMO_GROUP_ESCALATIONS),
        Some(vec![
            DEMO_USER_ALAN.to_owned(),
            DEMO_USER_BREAK_GLASS.to_owned()
        ])
    );
    assert_eq!(
        org.members(DEMO_GROUP_ORG_ADMINS),
        Some(vec![
            DEMO_USER_EDSGER.to_owned(),
            DEMO_USER_BREAK_GLASS.to_owned()
        ])
    );
    assert_eq!(org.version(DEMO_GROUP_SUPPORT), Some(1));
    assert_eq!(
        (org.client_id(), org.client_secret()),
        ("sandbox-client".into(), "sandbox-secret".into())
    );
    assert_eq!(Org::empty().members(DEMO_GROUP_SUPPORT), None);
}

#[test]
fn the_banner_names_a_reachable_base_url_the_credentials_and_the_groups() {
    let org = Org::demo();

    let text = banner(&org, ([0, 0, 0, 0], 9000).into());

    assert!(text.contains("http://127.0.0.1:9000"), "{text}");
    assert!(
        text.contains("sandbox-client") && text.contains("sandbox-secret"),
        "{text}"
    );
    for group in [
        DEMO_GROUP_SUPPORT,
        DEMO_GROUP_BILLING,
        DEMO_GROUP_ORG_ADMINS,
    ] {
        assert!(text.contains(group), "{text}");
    }
}

#[tokio::test]
async fn a_token_is_issued_for_the_org_client_credentials_and_opens_the_api() {
    let sandbox = TestOrg::demo().await;

    let response = sandbox
        .request_token(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("token JSON");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 86_400);
    let token = body["access_token"].as_str().expect("access_token");
    assert!(token.len() >= 32, "{token}");
    let group = sandbox.get_group(token, DEMO_GROUP_SUPPORT).await;
    assert_eq!(group.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_secret_is_refused_as_an_invalid_client() {
    let sandbox = TestOrg::demo().await;

    let response = sandbox.request_token(DEMO_CLIENT_ID, "guessed").await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.expect("error JSON");
    assert_eq!(body["error"], "invalid_client");
    assert!(body["description"].is_string() && body["error_description"].is_string());
}

#[tokio::test]
async fn a_token_request_without_the_client_credentials_grant_is_a_400() {
    let sandbox = TestOrg::demo().await;
    let token_url = format!("{}/oauth/token", sandbox.base);
    let authorized = || {
        sandbox
            .http
            .post(&token_url)
            .basic_auth(DEMO_CLIENT_ID, Some(DEMO_CLIENT_SECRET))
    };

    let other_grant = authorized()
        .form(&[("grant_type", "password")])
        .send()
        .await
        .expect("send");
    let not_a_form = authorized()
        .json(&json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .expect("send");

    assert_eq!(other_grant.status(), StatusCode::BAD_REQUEST);
    let body: Value = other_grant.json().await.expect("error JSON");
    assert_eq!(body["error"], "unsupported_grant_type");
    assert_eq!(not_a_form.status(), StatusCode::BAD_REQUEST);
    let body: Value = not_a_form.json().await.expect("error JSON");
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn api_calls_need_a_token_the_org_issued_that_has_not_expired() {
    let sandbox = TestOrg::demo().await;
    sandbox.org.set_knobs(Knobs {
        token_ttl_s: 0,
        ..Knobs::default()
    });
    let expired = sandbox.token().await;
    let group_url = format!(
        "{}/api/v2/scim/v2/groups/{DEMO_GROUP_SUPPORT}",
        sandbox.base
    );

    let anonymous = sandbox.http.get(&group_url).send().await.expect("send");
    let invented = sandbox.get_group("not-a-token", DEMO_GROUP_SUPPORT).await;
    let stale = sandbox.get_group(&expired, DEMO_GROUP_SUPPORT).await;

    for response in [anonymous, invented, stale] {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.expect("error JSON");
        assert_eq!(body["status"], 401);
    }
}

#[tokio::test]
async fn a_group_read_carries_its_version_as_etag_and_meta_version() {
    let sandbox = TestOrg::demo().await;
    let token = sandbox.token().await;

    let response = sandbox
        .get_group(&token, &DEMO_GROUP_BILLING.to_uppercase())
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "etag"), Some("\"1\""));
    let group: Value = response.json().await.expect("group JSON");
    assert_eq!(
        group["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:Group"])
    );
    assert_eq!(group["id"], DEMO_GROUP_BILLING);
    assert_eq!(group["displayName"], "Billing");
    assert_eq!(group["meta"]["version"], "\"1\"");
    assert_eq!(group["meta"]["resourceType"], "Group");
    let nested = &group["members"][2];
    assert_eq!(nested["value"], DEMO_GROUP_ESCALATIONS);
    assert_eq!(nested["type"], "Group");
    assert!(
        nested["$ref"]
            .as_str()
            .is_some_and(|link| link.ends_with(DEMO_GROUP_ESCALATIONS))
    );
    assert_eq!(group["members"][0]["type"], "User");
}

#[tokio::test]
async fn a_read_naming_the_current_version_in_if_none_match_is_answered_304() {
    let sandbox = TestOrg::demo().await;
    let token = sandbox.token().await;
    let group_url = format!(
        "{}/api/v2/scim/v2/groups/{DEMO_GROUP_SUPPORT}",
        sandbox.base
    );

    let response = sandbox
        .http
        .get(&group_url)
        .bearer_auth(&token)
        .header("If-None-Match", "\"1\"")
        .send()
        .await
        .expect("send");

    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn an_unknown_group_is_answered_with_a_scim_404() {
    let sandbox = TestOrg::demo().await;
    let token = sandbox.token().await;

    let response = sandbox
        .get_group(&token, "00000000-0000-0000-0000-000000000000")
        .await;

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.expect("error JSON");
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
    assert_eq!(body["status"], "404");
    assert!(body["detail"].is_string());
}

#[tokio::test]
async fn listing_groups_returns_every_demo_group() {
    let sandbox = TestOrg::demo().await;
    let token = sandbox.token().await;

    let response = sandbox.get(&token, "/api/v2/scim/v2/groups").await;

    assert_eq!(response.status(), StatusCode::OK);
    let list: Value = response.json().await.expect("list JSON");
    assert_eq!(
        list["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(
        (list["totalResults"].as_u64(), list["itemsPerPage"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(list["startIndex"], 1);
    let ids: Vec<&str> = list["Resources"]
        .as_array()
        .expect("Resources")
        .iter()
        .filter_map(|g| g["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            DEMO_GROUP_SUPPORT,
            DEMO_GROUP_BILLING,
            DEMO_GROUP_ESCALATIONS,
            DEMO_GROUP_ORG_ADMINS
        ]
    );
}

#[tokio::test]
async fn a_patch_removes_the_named_members_and_bumps_the_version() {
    let sandbox = TestOrg::demo().await;
    let token = sandbox.token().await;
    let removal = removal_of(&[&DEMO_USER_ADA.to_uppercase(), DEMO_USER_GRACE]);

    let response = sandbox
        .patch_group(&token, DEMO_GROUP_SUPPORT, Some("\"1\""), &removal)
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "etag"), Some("\"2\""));
    let group: Value = response.json().await.expect("group JSON");
    assert_eq!(group["meta"]["version"], "\"2\"");
    assert_eq!(
        member_values(&group),
        [DEMO_USER_ALAN, DEMO_USER_EDSGER, DEMO_USER_BARBARA]
    );
    assert_eq!(
        sandbox.org.members(DEMO_GROUP_SUPPORT),
        Some(vec![
            DEMO_USER_ALAN.into(),
            DEMO_USER_EDSGER.into(),
            DEMO_USER_BARBARA.into()
        ])
    );
    assert_eq!(sandbox.org.version(DEMO_GROUP_SUPPORT), Some(2));
}

#[tokio::test]
async fn a_patch_is_answered_204_when_the_org_is_set_to_answer_without_a_body() {
    let sandbox = TestOrg::demo().await;
    sandbox.org.set_knobs(Knobs {
        patch_answer: PatchAnswer::NoContent,
        ..Knobs::default()
    });
    let token = sandbox.token().await;

    let response = sandbox
        .patch_group(
            &token,
            DEMO_GROUP_SUPPORT,
            Some("\"1\""),
            &removal_of(&[DEMO_USER_ADA]),
        )
        .await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&response, "etag"), Some("\"2\""));
    assert_eq!(response.bytes().await.expect("body").len(), 0);
    assert!(
        !sandbox
            .org
            .members(DEMO_GROUP_SUPPORT)
            .unwrap_or_default()
            .contains(&DEMO_USER_ADA.to_owned())
    );
}

#[tokio::test]
async fn a_stale_if_match_is_answered_in_each_conflict_style_and_changes_nothing() {
    let cases = [
        (
            ConflictStyle::InvalidVers400,
            StatusCode::BAD_REQUEST,
            Some("invalidVers"),
        ),
        (ConflictStyle::Conflict409, StatusCode::CONFLICT, None),
        (
            ConflictStyle::PreconditionFailed412,
            StatusCode::PRECONDITION_FAILED,
            None,
        ),
    ];

    for (conflict_style, status, scim_type) in cases {
        let sandbox = TestOrg::demo().await;
        sandbox.org.set_knobs(Knobs {
            conflict_style,
            ..Knobs::default()
        });
        sandbox.org.bump_version(DEMO_GROUP_SUPPORT);
        let token = sandbox.token().await;

        let response = sandbox
            .patch_group(
                &token,
                DEMO_GROUP_SUPPORT,
                Some("\"1\""),
                &removal_of(&[DEMO_USER_ADA]),
            )
            .await;

        assert_eq!(response.status(), status, "{conflict_style:?}");
        let body: Value = response.json().await.expect("error JSON");
        assert_eq!(
            body["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
        );
        assert_eq!(body["status"], status.as_str(), "{conflict_style:?}");
        assert_eq!(body["scimType"].as_str(), scim_type, "{conflict_style:?}");
        assert_eq!(
            sandbox.org.members(DEMO_GROUP_SUPPORT),
            Some(support_members())
        );
        assert_eq!(
            sandbox.org.version(DEMO_GROUP_SUPPORT),
            Some(2),
            "{conflict_style:?}"
        );
    }
}

#[tokio::test]
async fn a_patch_without_if_match_is_refused_and_changes_nothing() {
    let sandbox = TestOrg::demo().await;
    let token = sandbox.token().await;

    let response = sandbox
        .patch_group(
            &token,
            DEMO_GROUP_SUPPORT,
            None,
            &removal_of(&[DEMO_USER_ADA]),
        )
        .await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        sandbox.org.members(DEMO_GROUP_SUPPORT),
        Some(support_members())
    );
    assert_eq!(sandbox.org.version(DEMO_GROUP_SUPPORT), Some(1));
}

#[tokio::test]
async fn a_filter_naming_a_non_member_is_no_target_and_nothing_is_applied() {
    let sandbox = TestOrg::demo().await;
    let token = sandbox.token().await;
    let removal = removal_of(&[DEMO_USER_ADA, DEMO_USER_KEN]);

    let response = sandbox
        .patch_group(&token, DEMO_GROUP_SUPPORT, Some("\"1\""), &removal)
        .await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("error JSON");
    assert_eq!(body["scimType"], "noTarget");
    assert_eq!(
        sandbox.org.members(DEMO_GROUP_SUPPORT),
        Some(support_members())
    );
    assert_eq!(sandbox.org.version(DEMO_GROUP_SUPPORT), Some(1));
}

#[tokio::test]
async fn a_remove_without_a_member_filter_is_refused_and_the_group_keeps_its_members() {
    let sandbox = TestOrg::demo().await;
    let token = sandbox.token().await;
    let empty_the_group = json!({
        "schemas": [PATCH_OP],
        "Operations": [{ "op": "remove", "path": "members" }],
    });

    let response = sandbox
        .patch_group(&token, DEMO_GROUP_SUPPORT, Some("\"1\""), &empty_the_group)
        .await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("error JSON");
    assert_eq!(body["scimType"], "invalidPath");
    assert_eq!(
        sandbox.org.members(DEMO_GROUP_SUPPORT),
        Some(support_members())
    );
}

#[tokio::test]
async fn value_form_removes_and_adds_apply_whatever_the_case_of_the_op() {
    let sandbox = TestOrg::demo().await;
    let token = sandbox.token().await;
    let body = json!({
        "schemas": [PATCH_OP],
        "Operations": [
            { "op": "Remove", "path": "members", "value": [{ "value": DEMO_USER_BARBARA }] },
            { "op": "ADD", "path": "members", "value": [{ "value": DEMO_GROUP_ORG_ADMINS }] },
        ],
    });

    let response = sandbox
        .patch_group(&token, DEMO_GROUP_BILLING, Some("\"1\""), &body)
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let group: Value = response.json().await.expect("group JSON");
    assert_eq!(
        member_values(&group),
        [DEMO_USER_KEN, DEMO_GROUP_ESCALATIONS, DEMO_GROUP_ORG_ADMINS]
    );
    assert_eq!(group["members"][2]["type"], "Group");
}

#[tokio::test]
async fn roles_are_looked_up_per_user_and_an_unknown_user_is_a_404() {
    let sandbox = TestOrg::demo().await;
    let token = sandbox.token().await;

    let roles_only = sandbox
        .get(
            &token,
            &format!("/api/v2/scim/v2/users/{DEMO_USER_ALAN}?attributes=roles"),
        )
        .await;
    let full = sandbox
        .get(&token, &format!("/api/v2/scim/v2/users/{DEMO_USER_EDSGER}"))
        .await;
    let unknown = sandbox
        .get(
            &token,
            "/api/v2/scim/v2/users/00000000-0000-0000-0000-000000000000?attributes=roles",
        )
        .await;

    assert_eq!(roles_only.status(), StatusCode::OK);
    let user: Value = roles_only.json().await.expect("user JSON");
    let mut keys: Vec<&String> = user.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(keys, ["id", "roles", "schemas"]);
    assert_eq!(
        user["roles"],
        json!([{ "value": "Employee" }, { "value": "Supervisor" }])
    );
    assert_eq!(
        user["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
    );

    let user: Value = full.json().await.expect("user JSON");
    assert_eq!(user["userName"], "edsger.dijkstra");
    assert_eq!(user["active"], true);
    assert_eq!(user["roles"], json!([{ "value": "Master Admin" }]));

    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let body: Value = unknown.json().await.expect("error JSON");
    assert_eq!(body["status"], "404");
}

#[tokio::test]
async fn beyond_its_budget_the_org_answers_429_with_retry_after() {
    let sandbox = TestOrg::demo().await;
    sandbox.org.set_knobs(Knobs {
        rate_limit_per_minute: Some(2),
        retry_after_s: 7,
        ..Knobs::default()
    });

    // The token request spends the first unit of the budget.
    let token = sandbox.token().await;
    let within = sandbox.get_group(&token, DEMO_GROUP_SUPPORT).await;
    let beyond = sandbox.get_group(&token, DEMO_GROUP_SUPPORT).await;

    assert_eq!(within.status(), StatusCode::OK);
    assert_eq!(header(&within, "inin-ratelimit-allowed"), Some("2"));
    assert_eq!(header(&within, "inin-ratelimit-count"), Some("2"));
    assert!(header(&within, "inin-ratelimit-reset").is_some());
    assert_eq!(beyond.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&beyond, "retry-after"), Some("7"));
    let correlation_id = header(&beyond, "inin-correlation-id").map(str::to_owned);
    let body: Value = beyond.json().await.expect("error JSON");
    assert_eq!(body["code"], "too.many.requests.retry.after");
    assert_eq!(body["status"], 429);
    assert_eq!(
        body["message"],
        "Rate limit exceeded the maximum. Retry the request in [7] seconds"
    );
    assert_eq!(
        body["contextId"].as_str().map(str::to_owned),
        correlation_id
    );
}

#[tokio::test]
async fn random_faults_are_answered_before_a_patch_is_applied() {
    let sandbox = TestOrg::demo().await;
    let token = sandbox.token().await;
    let removal = removal_of(&[DEMO_USER_ADA]);

    sandbox.org.set_knobs(Knobs {
        error_5xx_rate: 1.0,
        ..Knobs::default()
    });
    let failed = sandbox
        .patch_group(&token, DEMO_GROUP_SUPPORT, Some("\"1\""), &removal)
        .await;
    sandbox.org.set_knobs(Knobs {
        error_429_rate: 1.0,
        ..Knobs::default()
    });
    let throttled = sandbox
        .patch_group(&token, DEMO_GROUP_SUPPORT, Some("\"1\""), &removal)
        .await;

    assert!(
        [500, 503, 504].contains(&failed.status().as_u16()),
        "got {}",
        failed.status()
    );
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&throttled, "retry-after"), Some("1"));
    assert_eq!(
        sandbox.org.members(DEMO_GROUP_SUPPORT),
        Some(support_members())
    );
    assert_eq!(sandbox.org.version(DEMO_GROUP_SUPPORT), Some(1));
}

#[tokio::test]
async fn a_before_patch_hook_acting_as_another_admin_makes_the_patch_conflict() {
    let sandbox = TestOrg::demo().await;
    let token = sandbox.token().await;
    let hook: BeforePatch = Arc::new(|org: &Org, group_id: &str| {
        org.add_member(group_id, Member::user(DEMO_USER_KEN));
    });
    sandbox.org.set_before_patch(Some(hook));
    let removal = removal_of(&[DEMO_USER_ADA]);

    let conflicted = sandbox
        .patch_group(&token, DEMO_GROUP_SUPPORT, Some("\"1\""), &removal)
        .await;
    sandbox.org.set_before_patch(None);
    let retried = sandbox
        .patch_group(&token, DEMO_GROUP_SUPPORT, Some("\"2\""), &removal)
        .await;

    assert_eq!(conflicted.status(), StatusCode::BAD_REQUEST);
    let body: Value = conflicted.json().await.expect("error JSON");
    assert_eq!(body["scimType"], "invalidVers");
    assert_eq!(retried.status(), StatusCode::OK);
    let members = sandbox.org.members(DEMO_GROUP_SUPPORT).unwrap_or_default();
    assert!(
        members.contains(&DEMO_USER_KEN.to_owned()) && !members.contains(&DEMO_USER_ADA.to_owned())
    );
    assert_eq!(sandbox.org.version(DEMO_GROUP_SUPPORT), Some(3));
}

#[tokio::test]
async fn a_version_bump_rate_of_one_makes_every_patch_conflict() {
    let sandbox = TestOrg::demo().await;
    sandbox.org.set_knobs(Knobs {
        version_bump_rate: 1.0,
        ..Knobs::default()
    });
    let token = sandbox.token().await;

    let response = sandbox
        .patch_group(
            &token,
            DEMO_GROUP_SUPPORT,
            Some("\"1\""),
            &removal_of(&[DEMO_USER_ADA]),
        )
        .await;

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        sandbox.org.members(DEMO_GROUP_SUPPORT),
        Some(support_members())
    );
    assert_eq!(sandbox.org.version(DEMO_GROUP_SUPPORT), Some(2));
}

#[tokio::test]
async fn every_request_is_recorded_in_order_with_the_status_it_was_answered() {
    let sandbox = TestOrg::demo().await;
    let token = sandbox.token().await;
    sandbox.org.clear_requests();

    sandbox.get_group(&token, DEMO_GROUP_SUPPORT).await;
    sandbox
        .patch_group(
            &token,
            DEMO_GROUP_SUPPORT,
            Some("\"7\""),
            &removal_of(&[DEMO_USER_ADA]),
        )
        .await;
    sandbox
        .get(
            &token,
            &format!("/api/v2/scim/v2/users/{DEMO_USER_ADA}?attributes=roles"),
        )
        .await;

    let recorded: Vec<(String, String, u16, Option<String>)> = sandbox
        .org
        .requests()
        .into_iter()
        .map(|request| {
            (
                request.method,
                request.path,
                request.status,
                request.if_match,
            )
        })
        .collect();
    let group_path = format!("/api/v2/scim/v2/groups/{DEMO_GROUP_SUPPORT}");
    let expected = vec![
        ("GET".to_owned(), group_path.clone(), 200, None),
        (
            "PATCH".to_owned(),
            group_path,
            400,
            Some("\"7\"".to_owned()),
        ),
        (
            "GET".to_owned(),
            format!("/api/v2/scim/v2/users/{DEMO_USER_ADA}?attributes=roles"),
            200,
            None,
        ),
    ];
    assert_eq!(recorded, expected);
    let times: Vec<Instant> = sandbox
        .org
        .requests()
        .iter()
        .map(|request| request.at)
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]));
}

#[tokio::test]
async fn every_answer_carries_a_correlation_id() {
    let sandbox = TestOrg::demo().await;

    let token = sandbox
        .request_token(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
        .await;
    let unauthorized = sandbox.get_group("nope", DEMO_GROUP_SUPPORT).await;
    let unknown_path = sandbox
        .http
        .get(format!("{}/api/v2/nothing", sandbox.base))
        .send()
        .await
        .expect("send");

    for response in [token, unauthorized, unknown_path] {
        let correlation_id = header(&response, "inin-correlation-id").unwrap_or_default();
        assert!(
            uuid::Uuid::parse_str(correlation_id).is_ok(),
            "{:?}",
            response.headers()
        );
        assert!(header(&response, "inin-ratelimit-allowed").is_none());
    }
}

#[tokio::test]
async fn a_dropped_connection_applies_the_patch_but_loses_its_answer() {
    let sandbox = TestOrg::demo().await;
    let token = sandbox.token().await;
    sandbox.org.set_knobs(Knobs {
        drop_connection_rate: 1.0,
        ..Knobs::default()
    });

    let answer = sandbox
        .http
        .patch(format!(
            "{}/api/v2/scim/v2/groups/{DEMO_GROUP_SUPPORT}",
            sandbox.base
        ))
        .bearer_auth(&token)
        .header("If-Match", "\"1\"")
        .json(&removal_of(&[DEMO_USER_ADA]))
        .send()
        .await;

    let error = answer.expect_err("no answer arrives");
    assert!(!error.is_status(), "{error:?}");
    let members = sandbox.org.members(DEMO_GROUP_SUPPORT).unwrap();
    assert!(!members.contains(&DEMO_USER_ADA.to_owned()));
    assert_eq!(sandbox.org.version(DEMO_GROUP_SUPPORT), Some(2));
    let logged = sandbox.org.requests();
    assert_eq!(logged.last().map(|request| request.status), Some(0));
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let sandbox = TestOrg::demo().await;
    sandbox.org.set_knobs(Knobs {
        latency_ms: 150,
        ..Knobs::default()
    });
    let started = Instant::now();

    let response = sandbox
        .request_token(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
}
