//! Processes the benchmark runs beside itself: the real `scim-removals serve`
//! (release build) on a SQLite store of its own, and a bare axum server that
//! echoes the body (this same executable, started with `--echo-server`), so
//! that both sit behind the same process boundary and the same loopback.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

/// The API token the benchmark's client sends; the service holds its hash.
pub const TOKEN: &str = "bench-token";

/// `target/<profile>/scim-removals`, beside the folder this example runs
/// from. When run by cargo, the binary is built (or found up to date) first,
/// so the benchmark never measures a stale build.
pub fn service_binary() -> anyhow::Result<PathBuf> {
    let example = std::env::current_exe()?;
    let profile_dir = example
        .parent()
        .and_then(Path::parent)
        .context("the example runs from target/<profile>/examples")?;
    let binary = profile_dir.join("scim-removals");

    if let Ok(cargo) = std::env::var("CARGO") {
        let target_dir = profile_dir
            .parent()
            .context("target/<profile> has a parent")?;
        let mut build = Command::new(cargo);
        build
            .args(["build", "--bin", "scim-removals", "--target-dir"])
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().context("running cargo build")?;
        if !status.success() {
            bail!("cargo build --bin scim-removals failed");
        }
    }
    if !binary.exists() {
        bail!(
            "{} is missing: run `cargo build --release` first",
            binary.display()
        );
    }
    Ok(binary)
}

/// An address nobody listens on yet (a small race, fine on a quiet loopback).
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// A running `scim-removals serve`; killed and its folder removed on drop.
pub struct Service {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Service {
    /// Starts the binary on a fresh store against the Genesys org at `org`,
    /// with `extra` TOML appended to its configuration, and waits until
    /// `/readyz` answers.
    pub async fn start(binary: &Path, org: SocketAddr, extra: &str) -> anyhow::Result<Service> {
        let dir = std::env::temp_dir().join(format!("scim-bench-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let addr = free_port()?;
        let config = format!(
            r#"
[server]
listen = "{addr}"
shutdown_grace_s = 1
[genesys]
api_base_url = "http://{org}"
client_id = "sandbox-client"
client_secret = "sandbox-secret"
request_timeout_ms = 60000
[store]
url = "sqlite://{store}/bench.db"
[[api.clients]]
name = "bench"
token_sha256 = "{hash}"
scopes = ["removals:write", "removals:read"]
{extra}
"#,
            store = dir.display(),
            hash = scim_removals::http::token_sha256(TOKEN),
        );
        let config_path = dir.join("bench.toml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.join("service.log"))?;

        // The folder is the working directory, so the repository's
        // config/default.toml stays out: the built-in defaults apply.
        let child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(&config_path)
            .current_dir(&dir)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let service = Service { child, addr, dir };

        let ready = format!("http://{addr}/readyz");
        for _ in 0..400 {
            if let Ok(answer) = reqwest::get(&ready).await
                && answer.status().is_success()
            {
                return Ok(service);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!(
            "the service did not become ready; see {}",
            service.dir.join("service.log").display()
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A field of `/proc/<pid>/status` in KiB: `VmHWM` (peak RSS) or `VmRSS`.
pub fn memory_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// The bare echo server, in a child process; killed on drop.
pub struct EchoServer {
    child: Child,
    pub addr: SocketAddr,
}

impl EchoServer {
    /// Starts this executable again with `--echo-server` and reads the
    /// address it prints.
    pub fn start() -> anyhow::Result<EchoServer> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--echo-server")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("the echo server's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .parse()
            .with_context(|| format!("the echo server printed {line:?}"))?;
        Ok(EchoServer { child, addr })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The echo server's body: answers every POST to the removals route with
/// 200 and the body it got, nothing else. Prints its address, then serves
/// until killed.
pub async fn serve_echo() -> anyhow::Result<()> {
    async fn echo(body: Bytes) -> Bytes {
        body
    }
    let router = Router::new().route("/groups/{group_id}/removals", post(echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}
