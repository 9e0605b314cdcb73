//! What the integration tests share: a service started on a random port
//! against a given Genesys base URL, on a store of its own, and an HTTP client
//! that speaks to it with a known token.
#![allow(dead_code)]

pub mod process;
pub mod receiver;

use std::net::SocketAddr;
use std::path::PathBuf;

use reqwest::{Response, StatusCode};
use scim_removals::app::RunningApp;
use scim_removals::config::{ApiClientSettings, Settings};
use serde_json::Value;

/// The token every test client sends; `api.clients` holds its hash.
pub const TOKEN: &str = "test-token-with-every-scope";
pub const READ_ONLY_TOKEN: &str = "test-token-read-only";

pub struct TestApp {
    pub app: RunningApp,
    pub base: String,
    pub http: reqwest::Client,
    pub store_dir: PathBuf,
}

/// Settings for a service against `genesys` (a base URL), on a fresh SQLite
/// file, with fast retries so tests do not sleep for long.
pub fn settings(genesys: &str) -> Settings {
    let store_dir =
        std::env::temp_dir().join(format!("scim-removals-test-{}", uuid::Uuid::new_v4()));
    settings_on_store(genesys, &store_dir)
}

pub fn settings_on_store(genesys: &str, store_dir: &std::path::Path) -> Settings {
    let mut settings = Settings::load_unvalidated(None).expect("defaults load");
    settings.server.listen = "127.0.0.1:0".into();
    settings.server.shutdown_grace_s = 5;
    settings.genesys.api_base_url = genesys.into();
    settings.genesys.login_base_url = String::new();
    settings.genesys.client_id = "sandbox-client".into();
    settings.genesys.client_secret = "sandbox-secret".to_string().into();
    settings.genesys.request_timeout_ms = 2000;
    settings.genesys.max_requests_per_minute = 60_000;
    settings.genesys.max_burst = 100;
    settings.genesys.retry.base_delay_ms = 5;
    settings.genesys.retry.max_delay_ms = 50;
    settings.store.url = format!("sqlite://{}/test.db", store_dir.display()).into();
    settings.api.clients = vec![
        ApiClientSettings {
            name: "governance".into(),
            token_sha256: scim_removals::http::token_sha256(TOKEN),
            scopes: vec![
                "removals:write".into(),
                "removals:read".into(),
                "webhooks:admin".into(),
            ],
        },
        ApiClientSettings {
            name: "auditor".into(),
            token_sha256: scim_removals::http::token_sha256(READ_ONLY_TOKEN),
            scopes: vec!["removals:read".into()],
        },
    ];
    settings
}

impl TestApp {
    pub async fn start(settings: Settings) -> TestApp {
        settings.validate().expect("test settings are valid");
        let store_dir = store_dir_of(&settings);
        let app = RunningApp::start(settings)
            .await
            .expect("the service starts");
        let base = format!("http://{}", app.addr);
        TestApp {
            app,
            base,
            http: reqwest::Client::new(),
            store_dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.app.addr
    }

    /// `POST /groups/{group}/removals` with `body`, the test token, and any
    /// extra headers.
    pub async fn remove(&self, group: &str, body: Value, headers: &[(&str, &str)]) -> Response {
        let mut request = self
            .http
            .post(format!("{}/groups/{group}/removals", self.base))
            .bearer_auth(TOKEN)
            .json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("the service answers")
    }

    /// Submits and waits (Prefer: wait=30) for the finished removal.
    pub async fn remove_and_wait(&self, group: &str, body: Value) -> Value {
        let response = self.remove(group, body, &[("prefer", "wait=30")]).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the removal finished in time"
        );
        response.json().await.expect("a removal")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("the service answers")
    }

    /// Polls `GET /removals/{id}` until the removal is final.
    pub async fn wait_final(&self, id: &str) -> Value {
        for _ in 0..600 {
            let removal: Value = self
                .get(&format!("/removals/{id}"))
                .await
                .json()
                .await
                .unwrap();
            let status = removal["status"].as_str().unwrap_or("").to_string();
            if !matches!(status.as_str(), "queued" | "running") {
                return removal;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("removal {id} did not finish within 30 s");
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn stop(self) {
        self.app.stop().await.expect("the service stops cleanly");
    }
}

fn store_dir_of(settings: &Settings) -> PathBuf {
    use secrecy::ExposeSecret;
    let url = settings.store.url.expose_secret();
    let path = url.trim_start_matches("sqlite://");
    PathBuf::from(path)
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The value of a counter or gauge line in Prometheus text, 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// Starts a demo sandbox org on a random port.
pub async fn sandbox() -> (scim_removals::sandbox::Org, String) {
    let org = scim_removals::sandbox::Org::demo();
    let (addr, _task) = org
        .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("sandbox");
    (org, format!("http://{addr}"))
}
