//! What an operator relies on: a clean stop on SIGTERM, and logs that never
//! carry a secret, even at debug level.

mod support;

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use scim_removals::sandbox::{DEMO_GROUP_SUPPORT, DEMO_USER_ADA, Knobs};
use serde_json::{Value, json};
use support::TOKEN;
use support::process::{free_port, start, temp_dir, write_config};

#[tokio::test]
async fn sigterm_turns_new_requests_away_finishes_the_removal_in_flight_and_exits_0() {
    let (org, genesys) = support::sandbox().await;
    let dir = temp_dir("sigterm");
    let listen = free_port();
    let config = write_config(&dir, &genesys, listen, "");
    let mut service = start(&config, listen, &[]).await;
    org.set_knobs(Knobs {
        latency_ms: 300,
        ..Knobs::default()
    });
    let http = reqwest::Client::new();
    let submit = || {
        http.post(format!(
            "{}/groups/{DEMO_GROUP_SUPPORT}/removals",
            service.base
        ))
        .bearer_auth(TOKEN)
        .json(&json!({"members": [DEMO_USER_ADA]}))
        .send()
    };

    assert_eq!(submit().await.unwrap().status(), StatusCode::ACCEPTED);
    while org.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pid = service.child.id().to_string();
    let signalled = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(signalled.success());
    tokio::time::sleep(Duration::from_millis(100)).await;

    let refused = submit().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["status"], 503);
    let ready = http
        .get(format!("{}/readyz", service.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    let status = tokio::task::spawn_blocking(move || service.child.wait())
        .await
        .unwrap();
    assert_eq!(status.unwrap().code(), Some(0));
    assert!(
        !org.members(DEMO_GROUP_SUPPORT)
            .unwrap()
            .contains(&DEMO_USER_ADA.to_string())
    );
}

#[tokio::test]
async fn no_secret_reaches_the_logs_even_at_debug_level() {
    let (_org, genesys) = support::sandbox().await;
    let dir = temp_dir("secrets");
    let listen = free_port();
    let webhook_secret = "whsec_bm90LWluLWFueS1sb2ctbGluZQ==";
    let extra =
        format!("[webhook]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"{webhook_secret}\"");
    let config = write_config(&dir, &genesys, listen, &extra);
    let mut service = start(&config, listen, &[("RUST_LOG", "debug")]).await;
    let http = reqwest::Client::new();

    for token in [TOKEN, "a-wrong-token"] {
        http.post(format!(
            "{}/groups/{DEMO_GROUP_SUPPORT}/removals",
            service.base
        ))
        .bearer_auth(token)
        .header("prefer", "wait=10")
        .json(&json!({"members": [DEMO_USER_ADA]}))
        .send()
        .await
        .unwrap();
    }
    service.child.kill().unwrap();
    service.child.wait().unwrap();

    let log = std::fs::read_to_string(&service.log).unwrap();
    assert!(log.contains("removal finished"), "the run did log: {log}");
    for secret in [
        "sandbox-secret",
        TOKEN,
        "a-wrong-token",
        webhook_secret,
        "bm90LWluLWFueS1sb2ctbGluZQ",
    ] {
        assert!(!log.contains(secret), "{secret} appears in the logs");
    }
    assert!(
        !log.contains("access_token"),
        "a Genesys token answer appears in the logs"
    );
    assert!(
        !log.to_lowercase().contains("bearer "),
        "an Authorization header appears in the logs"
    );
}

#[tokio::test]
async fn logs_are_json_lines_by_default_and_each_removal_has_one_audit_event() {
    let (_org, genesys) = support::sandbox().await;
    let dir = temp_dir("audit");
    let listen = free_port();
    let config = write_config(&dir, &genesys, listen, "");
    let mut service = start(&config, listen, &[]).await;
    let http = reqwest::Client::new();

    let removal: Value = http
        .post(format!(
            "{}/groups/{DEMO_GROUP_SUPPORT}/removals",
            service.base
        ))
        .bearer_auth(TOKEN)
        .header("prefer", "wait=10")
        .json(&json!({"members": [DEMO_USER_ADA], "reason": "leaver", "requested_by": "hr-bot"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    service.child.kill().unwrap();
    service.child.wait().unwrap();

    let log = std::fs::read_to_string(&service.log).unwrap();
    let events: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let audits: Vec<&Value> = events
        .iter()
        .filter(|event| event["target"] == "audit")
        .collect();
    assert_eq!(audits.len(), 1);
    let audit = audits[0];
    assert_eq!(audit["removal_id"], removal["id"]);
    assert_eq!(audit["group_id"], DEMO_GROUP_SUPPORT);
    assert_eq!(audit["client"], "governance");
    assert_eq!(audit["requested_by"], "hr-bot");
    assert_eq!(audit["reason"], "leaver");
    assert_eq!(audit["status"], "succeeded");
    assert_eq!(audit["attempts"], 1);
    assert_eq!(audit["conflicts"], 0);
    assert!(audit["removed"].as_str().unwrap().contains(DEMO_USER_ADA));
}
