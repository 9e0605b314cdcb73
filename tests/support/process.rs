//! The real binary as a child process, for tests that kill or signal it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::TOKEN;

pub struct ServiceProcess {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

/// An address nobody listens on yet.
pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A config file in `dir` for a service on `listen` against `genesys`, with
/// the test token, fast retries and a SQLite store in `dir`. `extra` is
/// appended as is.
pub fn write_config(dir: &Path, genesys: &str, listen: SocketAddr, extra: &str) -> PathBuf {
    let path = dir.join("service.toml");
    let config = format!(
        r#"
[server]
listen = "{listen}"
shutdown_grace_s = 2
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
url = "sqlite://{store}/service.db"
[[api.clients]]
name = "governance"
token_sha256 = "{hash}"
scopes = ["removals:write", "removals:read"]
{extra}
"#,
        store = dir.display(),
        hash = scim_removals::http::token_sha256(TOKEN),
    );
    std::fs::write(&path, config).unwrap();
    path
}

/// Starts `scim-removals serve --config <config>` and waits until it is
/// ready. Its stderr goes to `service.log` beside the config.
pub async fn start(config: &Path, listen: SocketAddr, envs: &[(&str, &str)]) -> ServiceProcess {
    let log = config.with_file_name("service.log");
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_scim-removals"));
    command
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(stderr);
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("the binary starts");
    let base = format!("http://{listen}");

    for _ in 0..400 {
        let answer = reqwest::get(format!("{base}/readyz")).await;
        if answer.is_ok_and(|response| response.status().is_success()) {
            return ServiceProcess { child, base, log };
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the service did not become ready; see {}", log.display());
}

/// A fresh folder for one test's store and config.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scim-removals-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
