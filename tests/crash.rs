//! A process killed (SIGKILL) at any point of a removal's life loses nothing:
//! started again on the same store, it finishes the removal, and the group
//! ends with exactly the right members.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use scim_removals::sandbox::{DEMO_GROUP_SUPPORT, DEMO_USER_ADA, DEMO_USER_GRACE, Knobs, Org};
use serde_json::{Value, json};
use support::TOKEN;

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

struct Service {
    child: Child,
    base: String,
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn write_config(dir: &Path, genesys: &str, listen: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("crash.toml");
    let config = format!(
        r#"
[server]
listen = "{listen}"
shutdown_grace_s = 1
[log]
level = "warn"
[genesys]
api_base_url = "{genesys}"
client_id = "sandbox-client"
client_secret = "sandbox-secret"
request_timeout_ms = 5000
max_requests_per_minute = 60000
max_burst = 100
[genesys.retry]
base_delay_ms = 5
max_delay_ms = 50
[store]
url = "sqlite://{store}/crash.db"
[[api.clients]]
name = "governance"
token_sha256 = "{hash}"
scopes = ["removals:write", "removals:read"]
"#,
        store = dir.display(),
        hash = scim_removals::http::token_sha256(TOKEN),
    );
    std::fs::write(&path, config).unwrap();
    path
}

async fn start(config: &Path, listen: SocketAddr) -> Service {
    let child = Command::new(env!("CARGO_BIN_EXE_scim-removals"))
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let base = format!("http://{listen}");

    for _ in 0..200 {
        if let Ok(response) = reqwest::get(format!("{base}/readyz")).await {
            if response.status().is_success() {
                return Service { child, base };
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the service did not become ready");
}

async fn kill_and_restart(point: KillPoint) {
    let (org, genesys) = support::sandbox().await;
    let dir = std::env::temp_dir().join(format!("scim-removals-crash-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let listen = free_port();
    let config = write_config(&dir, &genesys, listen);
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

    let mut service = start(&config, listen).await;
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
    let mut service = start(&config, listen).await;
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
