//! A process killed (SIGKILL) at any point of a removal's life loses nothing:
//! started again on the same store, it finishes the removal, and the group
//! ends with exactly the right members.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use scim_removals::sandbox::{DEMO_GROUP_SUPPORT, DEMO_USER_ADA, DEMO_USER_GRACE, Knobs, Org};
use serde_json::{Value, json};
use support::TOKEN;
use support::process::{free_port, start, temp_dir, write_config};

/// Where in a removal's life the process is killed.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// Accepted and stored, before any worker touched it.
    Queued,
    /// While the group read is in flight.
    Reading,
    /// Right after the PATCH reached Genesys, before its answer is saved.
    Patched,
}

async fn kill_and_restart(point: KillPoint) {
    let (org, genesys) = support::sandbox().await;
    let dir = temp_dir("crash");
    let listen = free_port();
    let config = write_config(&dir, &genesys, listen, "");
    let before = org.members(DEMO_GROUP_SUPPORT).unwrap();

    // Slow answers leave time to kill the process mid-call.
    org.set_knobs(Knobs {
        latency_ms: 300,
        ..Knobs::default()
    });
    let patched = Arc::new(AtomicBool::new(false));
    let flag = patched.clone();
    org.set_before_patch(Some(Arc::new(move |_: &Org, _: &str| {
        flag.store(true, Ordering::SeqCst)
    })));

    let mut service = start(&config, listen, &[]).await;
    let http = reqwest::Client::new();
    let submitted: Value = http
        .post(format!(
            "{}/groups/{DEMO_GROUP_SUPPORT}/removals",
            service.base
        ))
        .bearer_auth(TOKEN)
        .json(&json!({"members": [DEMO_USER_ADA, DEMO_USER_GRACE]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = submitted["id"].as_str().unwrap().to_string();

    match point {
        KillPoint::Queued => {}
        KillPoint::Reading => {
            while !org
                .requests()
                .iter()
                .any(|r| r.method == "GET" && r.path.contains("/groups/"))
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        KillPoint::Patched => {
            while !patched.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    service.child.kill().expect("SIGKILL");
    service.child.wait().unwrap();

    org.set_knobs(Knobs::default());
    let mut service = start(&config, listen, &[]).await;
    let mut removal = Value::Null;
    for _ in 0..400 {
        removal = http
            .get(format!("{}/removals/{id}", service.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !matches!(removal["status"].as_str(), Some("queued" | "running")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    service.child.kill().unwrap();
    service.child.wait().unwrap();

    assert_eq!(removal["status"], "succeeded", "{point:?}: {removal}");
    assert_eq!(
        removal["removed"],
        json!([DEMO_USER_ADA, DEMO_USER_GRACE]),
        "{point:?}"
    );
    assert_eq!(removal["not_members"], json!([]), "{point:?}");
    let expected: Vec<String> = before
        .into_iter()
        .filter(|member| member != DEMO_USER_ADA && member != DEMO_USER_GRACE)
        .collect();
    assert_eq!(
        org.members(DEMO_GROUP_SUPPORT).unwrap(),
        expected,
        "{point:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_removal_killed_while_queued_finishes_after_a_restart() {
    kill_and_restart(KillPoint::Queued).await;
}

#[tokio::test]
async fn a_removal_killed_while_reading_the_group_finishes_after_a_restart() {
    kill_and_restart(KillPoint::Reading).await;
}

#[tokio::test]
async fn a_removal_killed_after_its_patch_reports_the_members_removed_after_a_restart() {
    kill_and_restart(KillPoint::Patched).await;
}
