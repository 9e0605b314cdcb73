//! Webhooks end to end: the sandbox plays Genesys Cloud, a tiny receiver on
//! 127.0.0.1 plays the governance platform, and signatures are checked here
//! with an implementation of the scheme independent of the service's.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use scim_removals::config::Settings;
use scim_removals::sandbox::{
    DEMO_GROUP_BILLING, DEMO_GROUP_ESCALATIONS, DEMO_GROUP_SUPPORT, DEMO_USER_ADA,
    DEMO_USER_BREAK_GLASS, DEMO_USER_GRACE, DEMO_USER_KEN, Knobs,
};
use serde_json::{Value, json};
use sha2::Sha256;
use support::receiver::{Hit, Receiver, Reply};
use support::{READ_ONLY_TOKEN, TOKEN, TestApp, metric, sandbox, settings, settings_on_store};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ROTATED_SECRET: &str = "whsec_c2Vjb25kLXRlc3Qta2V5LWZvci1yb3RhdGlvbg==";
const UNKNOWN_SECRET: &str = "whsec_YSBrZXkgbm9ib2R5IGNvbmZpZ3VyZWQ=";

const DELIVERED: &str = "scim_removals_webhook_deliveries_total{outcome=\"delivered\"}";
const FAILED_ATTEMPT: &str = "scim_removals_webhook_deliveries_total{outcome=\"failed_attempt\"}";
const DEAD: &str = "scim_removals_webhook_deliveries_total{outcome=\"dead\"}";
const PENDING: &str = "scim_removals_webhook_pending";
const OLDEST_AGE: &str = "scim_removals_webhook_oldest_pending_age_seconds";

const PATIENCE: Duration = Duration::from_secs(10);

/// `settings` with webhooks to `url`, one secret, a 1 s timeout and `schedule`.
fn with_webhook(mut settings: Settings, url: &str, schedule: &[u64]) -> Settings {
    settings.webhook.url = url.into();
    settings.webhook.secret = vec![SECRET.to_string().into()];
    settings.webhook.timeout_ms = 1000;
    settings.webhook.retry_schedule_ms = schedule.to_vec();
    settings
}

/// How many of the request's `v1,` signatures `secret` produced: the
/// Standard Webhooks check written out here, not the service's signer.
fn valid_signatures(secret: &str, hit: &Hit) -> usize {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let signed = format!("{}.{}.{}", hit.webhook_id(), hit.timestamp(), hit.body);
    hit.header("webhook-signature")
        .split(' ')
        .filter(|entry| {
            let Some(encoded) = entry.strip_prefix("v1,") else {
                return false;
            };
            let Ok(signature) = STANDARD.decode(encoded) else {
                return false;
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
            mac.update(signed.as_bytes());
            mac.verify_slice(&signature).is_ok()
        })
        .count()
}

async fn list_deliveries(app: &TestApp, query: &str) -> Value {
    let response = app.get(&format!("/webhooks/deliveries{query}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn delivery_of(app: &TestApp, removal_id: &str) -> Option<Value> {
    let page = list_deliveries(app, "?limit=200").await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["removal_id"] == removal_id)
        .cloned()
}

/// Polls the admin API until the removal's delivery satisfies `done`.
async fn wait_delivery(app: &TestApp, removal_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let delivery = delivery_of(app, removal_id).await;
        if let Some(delivery) = delivery.filter(|delivery| done(delivery)) {
            return delivery;
        }
        assert!(
            Instant::now() < deadline,
            "the delivery of {removal_id} did not get there: {:?}",
            delivery_of(app, removal_id).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_status(app: &TestApp, removal_id: &str, status: &str) -> Value {
    wait_delivery(app, removal_id, |delivery| delivery["status"] == status).await
}

/// Polls `/metrics` until `series` satisfies `done`.
async fn wait_metric(app: &TestApp, series: &str, done: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let value = metric(&app.metrics().await, series);
        if done(value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{series} stayed at {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn redeliver(app: &TestApp, id: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .post(format!("{}/webhooks/deliveries/{id}/redeliver", app.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// Removes a member that is not in the group: succeeds at once, no PATCH.
async fn quick_success(app: &TestApp, group: &str) -> String {
    let removal = app
        .remove_and_wait(group, json!({"members": [DEMO_USER_KEN]}))
        .await;
    assert_eq!(removal["status"], "succeeded");
    removal["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn each_finished_removal_sends_one_event_named_after_its_outcome_with_the_removal() {
    let (_org, genesys) = sandbox().await;
    let receiver = Receiver::start().await;
    let mut settings = with_webhook(settings(&genesys), &receiver.url(), &[100]);
    settings.constraints.protected_members = vec![DEMO_USER_BREAK_GLASS.into()];
    let app = TestApp::start(settings).await;

    let succeeded = app
        .remove_and_wait(DEMO_GROUP_SUPPORT, json!({"members": [DEMO_USER_ADA]}))
        .await;
    let rejected = app
        .remove_and_wait(
            DEMO_GROUP_ESCALATIONS,
            json!({"members": [DEMO_USER_BREAK_GLASS]}),
        )
        .await;
    let missing_group = uuid::Uuid::new_v4().to_string();
    let failed = app
        .remove_and_wait(&missing_group, json!({"members": [DEMO_USER_ADA]}))
        .await;
    assert_eq!(succeeded["status"], "succeeded");
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(failed["status"], "failed");

    let hits = receiver.wait_for_hits(3, PATIENCE).await;
    let expected = [
        (&succeeded, "scim.group.membership.deleted"),
        (&rejected, "scim.group.membership.removal_rejected"),
        (&failed, "scim.group.membership.removal_failed"),
    ];
    for (removal, event_type) in expected {
        let hit = hits
            .iter()
            .find(|hit| hit.json()["data"]["id"] == removal["id"])
            .expect("an event for each removal");
        let body = hit.json();
        assert_eq!(body["type"], event_type);
        assert_eq!(&body["data"], removal, "the data is the removal resource");
        assert_eq!(body["timestamp"], removal["completed_at"]);
        assert_eq!(body.as_object().unwrap().len(), 3);
        assert_eq!(hit.header("content-type"), "application/json");
        assert!(hit.webhook_id().starts_with("msg_"));
    }

    for removal in [&succeeded, &rejected, &failed] {
        let delivery = wait_status(&app, removal["id"].as_str().unwrap(), "delivered").await;
        assert_eq!(delivery["attempts"], 1);
        assert_eq!(delivery["next_attempt_at"], Value::Null);
    }
    assert_eq!(receiver.hits().len(), 3, "one request per event");
    app.stop().await;
}

#[tokio::test]
async fn every_attempt_carries_one_valid_signature_per_configured_secret() {
    let (_org, genesys) = sandbox().await;
    let receiver = Receiver::start().await;
    let mut settings = with_webhook(settings(&genesys), &receiver.url(), &[100]);
    settings.webhook.secret = vec![SECRET.to_string().into(), ROTATED_SECRET.to_string().into()];
    let app = TestApp::start(settings).await;

    let removal = quick_success(&app, DEMO_GROUP_SUPPORT).await;
    let hit = receiver.wait_for_hits(1, PATIENCE).await.remove(0);

    let entries: Vec<&str> = hit.header("webhook-signature").split(' ').collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(valid_signatures(SECRET, &hit), 1);
    assert_eq!(valid_signatures(ROTATED_SECRET, &hit), 1);
    assert_eq!(valid_signatures(UNKNOWN_SECRET, &hit), 0);

    let now = chrono::Utc::now().timestamp();
    assert!((now - hit.timestamp()).abs() <= 5, "the timestamp is now");
    let delivery = wait_status(&app, &removal, "delivered").await;
    assert_eq!(delivery["webhook_id"], hit.webhook_id());
    app.stop().await;
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_id_and_body_with_a_fresh_timestamp_until_it_accepts() {
    let (_org, genesys) = sandbox().await;
    let receiver = Receiver::start().await;
    receiver.then(&[Reply::status(500), Reply::status(503)]);
    // Over a second apart, so each attempt's whole-second timestamp differs.
    let schedule = [1300, 1300, 1300];
    let app = TestApp::start(with_webhook(settings(&genesys), &receiver.url(), &schedule)).await;

    let removal = quick_success(&app, DEMO_GROUP_SUPPORT).await;
    let hits = receiver.wait_for_hits(3, PATIENCE).await;

    assert!(
        hits.iter()
            .all(|hit| hit.webhook_id() == hits[0].webhook_id())
    );
    assert!(hits.iter().all(|hit| hit.body == hits[0].body));
    assert!(hits[0].timestamp() < hits[1].timestamp());
    assert!(hits[1].timestamp() < hits[2].timestamp());
    for hit in &hits {
        assert_eq!(
            valid_signatures(SECRET, hit),
            1,
            "signed for its own timestamp"
        );
    }
    for pair in hits.windows(2) {
        let gap = pair[1].arrived - pair[0].arrived;
        assert!(
            gap >= Duration::from_millis(1040),
            "waited {gap:?}, 1300 ms - 20%"
        );
    }

    let delivery = wait_status(&app, &removal, "delivered").await;
    assert_eq!(delivery["attempts"], 3);
    assert!(
        delivery["last_error"].as_str().unwrap().contains("503"),
        "{delivery}"
    );
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, FAILED_ATTEMPT), 2.0);
    assert_eq!(metric(&metrics, DELIVERED), 1.0);
    assert_eq!(metric(&metrics, DEAD), 0.0);
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_that_hangs_past_the_timeout_is_tried_again_and_never_holds_up_removals() {
    let (_org, genesys) = sandbox().await;
    let receiver = Receiver::start().await;
    receiver.then(&[Reply::after(Duration::from_secs(30), 200)]);
    let mut settings = with_webhook(settings(&genesys), &receiver.url(), &[100]);
    settings.webhook.timeout_ms = 1500;
    let app = TestApp::start(settings).await;

    let first = quick_success(&app, DEMO_GROUP_SUPPORT).await;
    receiver.wait_for_hits(1, PATIENCE).await;

    // The first attempt is now hanging, for 1.5 s at most: a removal
    // started now finishes well before that.
    let started = Instant::now();
    let second = app
        .remove_and_wait(DEMO_GROUP_BILLING, json!({"members": [DEMO_USER_KEN]}))
        .await;
    assert_eq!(second["status"], "succeeded");
    assert!(started.elapsed() < Duration::from_millis(1500));

    let delivery = wait_status(&app, &first, "delivered").await;
    assert_eq!(delivery["attempts"], 2);
    assert_eq!(delivery["last_error"], "no answer within 1500 ms");
    wait_status(&app, second["id"].as_str().unwrap(), "delivered").await;
    app.stop().await;
}

#[tokio::test]
async fn pending_deliveries_survive_a_restart_and_go_out_once_the_receiver_is_up() {
    let (_org, genesys) = sandbox().await;
    // A port with nothing behind it, for now.
    let addr: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let url = format!("http://{addr}/hook");
    let store_dir =
        std::env::temp_dir().join(format!("scim-removals-test-{}", uuid::Uuid::new_v4()));
    let schedule = [200; 50];
    let first_life = with_webhook(settings_on_store(&genesys, &store_dir), &url, &schedule);
    let app = TestApp::start(first_life).await;

    let removal = quick_success(&app, DEMO_GROUP_SUPPORT).await;
    let pending = wait_delivery(&app, &removal, |delivery| {
        delivery["status"] == "pending" && delivery["attempts"].as_u64() >= Some(1)
    })
    .await;
    assert!(
        pending["last_error"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{pending}"
    );
    wait_metric(&app, PENDING, |value| value == 1.0).await;
    wait_metric(&app, OLDEST_AGE, |value| value >= 1.0).await;
    app.stop().await;

    let receiver = Receiver::start_on(addr).await;
    let second_life = with_webhook(settings_on_store(&genesys, &store_dir), &url, &schedule);
    let app = TestApp::start(second_life).await;

    let hit = receiver.wait_for_hits(1, PATIENCE).await.remove(0);
    assert_eq!(hit.webhook_id(), pending["webhook_id"]);
    assert_eq!(hit.json()["data"]["id"], removal.as_str());
    wait_status(&app, &removal, "delivered").await;
    wait_metric(&app, DELIVERED, |value| value == 1.0).await;
    wait_metric(&app, PENDING, |value| value == 0.0).await;
    assert_eq!(metric(&app.metrics().await, OLDEST_AGE), 0.0);
    app.stop().await;
}

#[tokio::test]
async fn stopping_during_a_hung_attempt_waits_at_most_the_timeout_and_keeps_the_event_pending() {
    let (_org, genesys) = sandbox().await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Reply::after(Duration::from_secs(30), 200));
    let store_dir =
        std::env::temp_dir().join(format!("scim-removals-test-{}", uuid::Uuid::new_v4()));
    let settings = with_webhook(
        settings_on_store(&genesys, &store_dir),
        &receiver.url(),
        &[100],
    );
    let app = TestApp::start(settings).await;

    let removal = quick_success(&app, DEMO_GROUP_SUPPORT).await;
    receiver.wait_for_hits(1, PATIENCE).await;
    let stopping = Instant::now();
    app.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopping.elapsed()
    );

    // Without a webhook.url the next life only shows the outbox: the hung
    // attempt was recorded on the way out and the event waits.
    let app = TestApp::start(settings_on_store(&genesys, &store_dir)).await;
    let delivery = delivery_of(&app, &removal)
        .await
        .expect("the event is kept");
    assert_eq!(delivery["status"], "pending");
    assert_eq!(delivery["attempts"], 1);
    assert_eq!(delivery["last_error"], "no answer within 1000 ms");
    assert_eq!(receiver.hits().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_dies_after_its_schedule_and_an_operator_can_have_it_delivered_again() {
    let (_org, genesys) = sandbox().await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Reply::status(500));
    let app = TestApp::start(with_webhook(
        settings(&genesys),
        &receiver.url(),
        &[100, 200],
    ))
    .await;

    let removal = quick_success(&app, DEMO_GROUP_SUPPORT).await;
    let dead = wait_status(&app, &removal, "dead").await;
    assert_eq!(dead["attempts"], 3, "the first attempt and one per entry");
    assert_eq!(dead["next_attempt_at"], Value::Null);
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, FAILED_ATTEMPT), 2.0);
    assert_eq!(metric(&metrics, DEAD), 1.0);
    let listed = list_deliveries(&app, "?status=dead").await;
    assert_eq!(listed["items"][0]["id"], dead["id"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.hits().len(), 3, "a dead delivery is left alone");

    receiver.otherwise(Reply::OK);
    let response = redeliver(&app, dead["id"].as_str().unwrap(), Some(TOKEN)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let reset: Value = response.json().await.unwrap();
    assert_eq!(reset["status"], "pending");
    assert_eq!(reset["attempts"], 0);
    assert_eq!(reset["webhook_id"], dead["webhook_id"]);

    let hits = receiver.wait_for_hits(4, PATIENCE).await;
    assert_eq!(hits[3].webhook_id(), dead["webhook_id"]);
    let delivered = wait_status(&app, &removal, "delivered").await;
    assert_eq!(delivered["attempts"], 1);
    wait_metric(&app, DELIVERED, |value| value == 1.0).await;
    app.stop().await;
}

#[tokio::test]
async fn deliveries_go_out_several_at_once_but_never_more_than_eight() {
    let (_org, genesys) = sandbox().await;
    let receiver = Receiver::start().await;
    receiver.otherwise(Reply::after(Duration::from_millis(1500), 200));
    let mut settings = with_webhook(settings(&genesys), &receiver.url(), &[100]);
    settings.webhook.timeout_ms = 5000;
    let app = TestApp::start(settings).await;

    let mut removals = Vec::new();
    for group in [DEMO_GROUP_SUPPORT, DEMO_GROUP_ESCALATIONS].repeat(5) {
        removals.push(quick_success(&app, group).await);
    }

    receiver.wait_for_hits(10, PATIENCE).await;
    for removal in &removals {
        wait_status(&app, removal, "delivered").await;
    }
    assert_eq!(receiver.most_in_flight(), 8);
    app.stop().await;
}

#[tokio::test]
async fn dry_runs_and_cancelled_removals_send_no_event() {
    let (org, genesys) = sandbox().await;
    let receiver = Receiver::start().await;
    let app = TestApp::start(with_webhook(settings(&genesys), &receiver.url(), &[100])).await;

    let dry_run = app
        .remove(
            DEMO_GROUP_SUPPORT,
            json!({"members": [DEMO_USER_ADA], "dry_run": true}),
            &[],
        )
        .await;
    assert_eq!(dry_run.status(), StatusCode::OK);

    // A slow org keeps the first removal of the group running, so the
    // second one waits in the queue long enough to be cancelled.
    org.set_knobs(Knobs {
        latency_ms: 300,
        ..Knobs::default()
    });
    let running = app
        .remove(DEMO_GROUP_SUPPORT, json!({"members": [DEMO_USER_ADA]}), &[])
        .await;
    let running: Value = running.json().await.unwrap();
    let queued = app
        .remove(
            DEMO_GROUP_SUPPORT,
            json!({"members": [DEMO_USER_GRACE]}),
            &[],
        )
        .await;
    let queued: Value = queued.json().await.unwrap();
    let cancel = app
        .http
        .post(format!(
            "{}/removals/{}/cancel",
            app.base,
            queued["id"].as_str().unwrap()
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::OK);

    let running_id = running["id"].as_str().unwrap();
    assert_eq!(app.wait_final(running_id).await["status"], "succeeded");
    wait_status(&app, running_id, "delivered").await;

    let all = list_deliveries(&app, "").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1, "{all}");
    assert_eq!(receiver.hits().len(), 1);
    assert_eq!(receiver.hits()[0].json()["data"]["id"], running_id);
    app.stop().await;
}

#[tokio::test]
async fn without_a_webhook_url_no_event_is_written() {
    let (_org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;

    quick_success(&app, DEMO_GROUP_SUPPORT).await;

    let all = list_deliveries(&app, "").await;
    assert_eq!(all, json!({"items": [], "next": null}));
    app.stop().await;
}

#[tokio::test]
async fn the_delivery_list_pages_newest_first_and_filters_by_status() {
    let (_org, genesys) = sandbox().await;
    let receiver = Receiver::start().await;
    let app = TestApp::start(with_webhook(settings(&genesys), &receiver.url(), &[100])).await;
    let mut removals = Vec::new();
    for _ in 0..3 {
        let removal = quick_success(&app, DEMO_GROUP_SUPPORT).await;
        wait_status(&app, &removal, "delivered").await;
        removals.push(removal);
    }

    let first = list_deliveries(&app, "?limit=2&status=delivered").await;
    let ids: Vec<&Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| &item["removal_id"])
        .collect();
    assert_eq!(ids, vec![&json!(removals[2]), &json!(removals[1])]);
    let next = first["next"].as_str().expect("a next page");
    let rest = list_deliveries(&app, &format!("?limit=2&after={next}")).await;
    assert_eq!(rest["items"][0]["removal_id"], removals[0].as_str());
    assert_eq!(rest["next"], Value::Null);

    let item = rest["items"][0].as_object().unwrap();
    let mut fields: Vec<&str> = item.keys().map(String::as_str).collect();
    fields.sort_unstable();
    let expected = [
        "attempts",
        "created_at",
        "id",
        "last_error",
        "next_attempt_at",
        "removal_id",
        "status",
        "type",
        "webhook_id",
    ];
    assert_eq!(fields, expected);
    let none = list_deliveries(&app, "?status=dead").await;
    assert_eq!(none["items"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn the_delivery_endpoints_answer_401_without_a_token_and_403_without_webhooks_admin() {
    let (_org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;
    let list = format!("{}/webhooks/deliveries", app.base);
    let id = uuid::Uuid::new_v4().to_string();

    let anonymous = app.http.get(&list).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let reader = app.http.get(&list).bearer_auth(READ_ONLY_TOKEN);
    let reader = reader.send().await.unwrap();
    assert_eq!(reader.status(), StatusCode::FORBIDDEN);
    assert_eq!(reader.headers()["content-type"], "application/problem+json");
    let problem: Value = reader.json().await.unwrap();
    assert_eq!(problem["status"], 403);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("webhooks:admin")
    );

    assert_eq!(
        redeliver(&app, &id, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        redeliver(&app, &id, Some(READ_ONLY_TOKEN)).await.status(),
        StatusCode::FORBIDDEN
    );
    // Authorisation comes before validation.
    assert_eq!(
        redeliver(&app, "not-a-uuid", Some(READ_ONLY_TOKEN))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    app.stop().await;
}

#[tokio::test]
async fn the_delivery_endpoints_answer_422_for_bad_input_and_404_for_an_unknown_delivery() {
    let (_org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;

    for query in [
        "?status=failed",
        "?limit=0",
        "?limit=201",
        "?limit=many",
        "?after=%%%",
    ] {
        let response = app.get(&format!("/webhooks/deliveries{query}")).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    assert_eq!(
        redeliver(&app, "not-a-uuid", Some(TOKEN)).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    let response = redeliver(&app, &unknown, Some(TOKEN)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 404);
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_delivery_endpoints() {
    let (_org, genesys) = sandbox().await;
    let app = TestApp::start(settings(&genesys)).await;

    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = &doc["paths"];
    assert!(paths["/webhooks/deliveries"]["get"].is_object());
    assert!(paths["/webhooks/deliveries/{id}/redeliver"]["post"]["responses"]["202"].is_object());
    assert!(doc["components"]["schemas"]["WebhookEvent"].is_object());
    app.stop().await;
}
