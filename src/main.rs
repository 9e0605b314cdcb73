//! The command line: `serve` (the default), `sandbox`, `hash-token` and
//! `check-config`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use scim_removals::app::{RunningApp, sandbox_curl_lines, sandbox_settings};
use scim_removals::config::{ConfigError, Settings};
use scim_removals::{http, sandbox, telemetry};

#[derive(Parser)]
#[command(
    name = "scim-removals",
    version,
    about = "Removes members from Genesys Cloud SCIM groups safely"
)]
struct Cli {
    /// A configuration file layered over config/default.toml.
    #[arg(long, global = true, env = "SCIM_REMOVALS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Run the service against an embedded simulated Genesys Cloud org.
    Sandbox {
        /// Run only the simulated org (for tests, benchmarks and compose).
        #[arg(long)]
        genesys_only: bool,
        /// Where the simulated org listens, with --genesys-only.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
    },
    /// Read an API token on stdin and print its SHA-256 for api.clients.
    HashToken,
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig,
}

/// Exit status for a configuration that cannot be used.
const BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config.as_deref();

    match cli.command.unwrap_or(Command::Serve) {
        Command::HashToken => hash_token(),
        Command::CheckConfig => check_config(config),
        Command::Serve => run(async {
            let settings = Settings::load(config)?;
            telemetry::init_logging(&settings.log);
            RunningApp::start(settings)
                .await?
                .run_until_signalled()
                .await
        }),
        Command::Sandbox {
            genesys_only: true,
            listen,
        } => run(async move {
            let settings = Settings::load_unvalidated(config)?;
            telemetry::init_logging(&settings.log);
            sandbox::run_genesys_only(listen, sandbox::Knobs::default()).await?;
            Ok(())
        }),
        Command::Sandbox {
            genesys_only: false,
            ..
        } => run(async {
            let settings = Settings::load_unvalidated(config)?;
            telemetry::init_logging(&settings.log);

            let org = sandbox::Org::demo();
            let (genesys, _org_task) = org.spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
            let token = format!("sandbox-{}", uuid::Uuid::new_v4().simple());
            let settings = sandbox_settings(settings, genesys, &token);
            settings.validate()?;

            let app = RunningApp::start(settings).await?;
            println!(
                "scim-removals sandbox: the service is on http://{}",
                app.addr
            );
            println!("simulated Genesys Cloud org on http://{genesys}\n");
            println!("{}", sandbox_curl_lines(app.addr, &token));
            app.run_until_signalled().await
        }),
    }
}

/// Runs `work` on a multi-threaded runtime; a bad configuration exits 2.
fn run(work: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("scim-removals: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.downcast_ref::<ConfigError>().is_some() => {
            eprintln!("scim-removals: {error}");
            ExitCode::from(BAD_CONFIG)
        }
        Err(error) => {
            eprintln!("scim-removals: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn hash_token() -> ExitCode {
    let mut input = String::new();
    if let Err(error) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("scim-removals: cannot read the token: {error}");
        return ExitCode::FAILURE;
    }
    let token = input.strip_suffix('\n').unwrap_or(&input);
    let token = token.strip_suffix('\r').unwrap_or(token);
    if token.is_empty() {
        eprintln!("scim-removals: the token on stdin is empty");
        return ExitCode::from(BAD_CONFIG);
    }
    println!("{}", http::token_sha256(token));
    ExitCode::SUCCESS
}

fn check_config(config: Option<&std::path::Path>) -> ExitCode {
    match Settings::load(config) {
        Ok(settings) => {
            let shown = serde_json::to_string_pretty(&settings.redacted()).unwrap_or_default();
            println!("{shown}");
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("scim-removals: {error}");
            ExitCode::from(BAD_CONFIG)
        }
    }
}
