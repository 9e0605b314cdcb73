//! Typed settings and how they are layered.
//!
//! Later layers win: built-in defaults, `config/default.toml` when present, the
//! file named by `--config` (or `SCIM_REMOVALS_CONFIG`), the Genesys ecosystem's
//! `GENESYSCLOUD_*` variables, then `SCIM_REMOVALS__SECTION__KEY` variables.
//!
//! Secrets (the OAuth client secret, webhook secrets, the store URL, which may
//! carry a password) are held as [`SecretString`] so that neither `Debug` nor a
//! log line can print them; [`Settings::redacted`] is the only way to show them.

mod regions;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use serde_json::json;

/// Where the commented defaults live, relative to the working directory.
const DEFAULT_FILE: &str = "config/default.toml";

/// What went wrong while loading or validating the settings.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub log: LogSettings,
    pub genesys: GenesysSettings,
    pub worker: WorkerSettings,
    pub store: StoreSettings,
    pub constraints: ConstraintSettings,
    pub webhook: WebhookSettings,
    pub api: ApiSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: String,
    pub max_body_bytes: usize,
    pub shutdown_grace_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesysSettings {
    pub region: String,
    pub api_base_url: String,
    pub login_base_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub request_timeout_ms: u64,
    pub max_requests_per_minute: u32,
    pub max_burst: u32,
    pub max_concurrent_requests: usize,
    pub max_operations_per_patch: usize,
    pub role_cache_ttl_s: u64,
    pub retry: RetrySettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    pub max_attempts: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    pub max_retry_after_s: u64,
    pub max_conflict_retries: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    pub max_concurrent_groups: usize,
    pub max_queued: u64,
    pub lease_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub url: SecretString,
    pub idempotency_retention_h: u64,
    pub audit_retention_days: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintSettings {
    pub min_members: usize,
    pub max_removals_per_request: usize,
    pub protected_members: Vec<String>,
    pub protected_roles: Vec<String>,
    pub protected_groups: Vec<String>,
    #[serde(default)]
    pub groups: HashMap<String, GroupConstraintSettings>,
}

/// Per-group overrides: numbers replace the global ones, lists add to them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConstraintSettings {
    pub min_members: Option<usize>,
    pub max_removals_per_request: Option<usize>,
    #[serde(default)]
    pub protected_members: Vec<String>,
    #[serde(default)]
    pub protected_roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub url: String,
    /// One secret, or several while rotating: every attempt is signed with each.
    #[serde(deserialize_with = "secrets_from_one_or_many")]
    pub secret: Vec<SecretString>,
    pub timeout_ms: u64,
    pub retry_schedule_ms: Vec<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    #[serde(default)]
    pub clients: Vec<ApiClientSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiClientSettings {
    pub name: String,
    pub token_sha256: String,
    pub scopes: Vec<String>,
}

/// The scopes an API client may hold.
pub const SCOPES: &[&str] = &["removals:write", "removals:read", "webhooks:admin"];

/// Built-in defaults, the bottom layer. `config/default.toml` repeats them with
/// comments for readers; this copy keeps the binary working without that file.
const BUILT_IN_DEFAULTS: &str = r#"
[server]
listen = "127.0.0.1:8080"
max_body_bytes = 65536
shutdown_grace_s = 30

[log]
format = "json"
level = "info"

[genesys]
region = "us-east-1"
api_base_url = ""
login_base_url = ""
client_id = ""
client_secret = ""
request_timeout_ms = 10000
max_requests_per_minute = 300
max_burst = 10
max_concurrent_requests = 16
max_operations_per_patch = 100
role_cache_ttl_s = 60

[genesys.retry]
max_attempts = 6
base_delay_ms = 200
max_delay_ms = 30000
max_retry_after_s = 120
max_conflict_retries = 5

[worker]
max_concurrent_groups = 8
max_queued = 10000
lease_s = 60

[store]
url = "sqlite://data/scim-removals.db"
idempotency_retention_h = 24
audit_retention_days = 0

[constraints]
min_members = 1
max_removals_per_request = 100
protected_members = []
protected_roles = []
protected_groups = []

[webhook]
url = ""
secret = ""
timeout_ms = 5000
retry_schedule_ms = [5000, 30000, 120000, 600000, 1800000, 3600000, 10800000]

[api]
clients = []
"#;

impl Settings {
    /// Loads every layer, then validates the result.
    ///
    /// # Errors
    /// A file that cannot be read or parsed, a value of the wrong type, or a
    /// setting that fails validation.
    pub fn load(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        let settings = Settings::load_unvalidated(config_file)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Loads every layer without the validation, for callers (the sandbox)
    /// that fill in settings of their own before validating.
    ///
    /// # Errors
    /// A file that cannot be read or parsed, or a value of the wrong type.
    pub fn load_unvalidated(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(
                BUILT_IN_DEFAULTS,
                config::FileFormat::Toml,
            ))
            .add_source(config::File::with_name(DEFAULT_FILE).required(false));

        if let Some(path) = config_file {
            builder = builder.add_source(config::File::from(path).required(true));
        }

        let builder = builder.add_source(GenesysEcosystemVars).add_source(
            config::Environment::with_prefix("SCIM_REMOVALS")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("constraints.protected_members")
                .with_list_parse_key("constraints.protected_roles")
                .with_list_parse_key("constraints.protected_groups")
                .with_list_parse_key("webhook.retry_schedule_ms"),
        );

        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.normalize_ids();
        Ok(settings)
    }

    /// Ids are compared in lower case everywhere, so they are kept that way.
    fn normalize_ids(&mut self) {
        let lower = |ids: &mut Vec<String>| {
            for id in ids.iter_mut() {
                *id = id.trim().to_ascii_lowercase();
            }
        };
        lower(&mut self.constraints.protected_members);
        lower(&mut self.constraints.protected_groups);

        let groups = std::mem::take(&mut self.constraints.groups);
        for (id, mut group) in groups {
            lower(&mut group.protected_members);
            self.constraints
                .groups
                .insert(id.trim().to_ascii_lowercase(), group);
        }

        for client in &mut self.api.clients {
            client.token_sha256 = client.token_sha256.trim().to_ascii_lowercase();
        }
    }

    /// Checks every setting a running service relies on.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));

        if self.server.listen.parse::<SocketAddr>().is_err() {
            return invalid(format!(
                "server.listen {:?} is not an address",
                self.server.listen
            ));
        }
        if self.server.max_body_bytes == 0 {
            return invalid("server.max_body_bytes must be above 0".into());
        }

        self.genesys_endpoints()?;
        let genesys = &self.genesys;
        if genesys.client_id.trim().is_empty() {
            return invalid(
                "genesys.client_id is empty (set it or GENESYSCLOUD_OAUTHCLIENT_ID)".into(),
            );
        }
        if genesys.client_secret.expose_secret().is_empty() {
            return invalid(
                "genesys.client_secret is empty (set it or GENESYSCLOUD_OAUTHCLIENT_SECRET)".into(),
            );
        }
        let positive = [
            ("genesys.request_timeout_ms", genesys.request_timeout_ms),
            (
                "genesys.max_requests_per_minute",
                u64::from(genesys.max_requests_per_minute),
            ),
            ("genesys.max_burst", u64::from(genesys.max_burst)),
            (
                "genesys.max_concurrent_requests",
                genesys.max_concurrent_requests as u64,
            ),
            (
                "genesys.max_operations_per_patch",
                genesys.max_operations_per_patch as u64,
            ),
            (
                "genesys.retry.max_attempts",
                u64::from(genesys.retry.max_attempts),
            ),
            (
                "worker.max_concurrent_groups",
                self.worker.max_concurrent_groups as u64,
            ),
            ("worker.max_queued", self.worker.max_queued),
            ("worker.lease_s", self.worker.lease_s),
            (
                "constraints.max_removals_per_request",
                self.constraints.max_removals_per_request as u64,
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return invalid(format!("{name} must be above 0"));
        }
        if genesys.retry.base_delay_ms > genesys.retry.max_delay_ms {
            return invalid("genesys.retry.base_delay_ms exceeds max_delay_ms".into());
        }

        self.validate_store()?;
        self.validate_constraints()?;
        self.validate_webhook()?;
        self.validate_api_clients()
    }

    fn validate_store(&self) -> Result<(), ConfigError> {
        let url = self.store.url.expose_secret();
        let known = ["sqlite:", "postgres:", "postgresql:"];
        if !known.iter().any(|scheme| url.starts_with(scheme)) {
            return Err(ConfigError::Invalid(
                "store.url must start with sqlite: or postgres:".into(),
            ));
        }
        Ok(())
    }

    fn validate_constraints(&self) -> Result<(), ConfigError> {
        let constraints = &self.constraints;
        let ids = constraints
            .protected_members
            .iter()
            .map(|id| ("constraints.protected_members", id.as_str()))
            .chain(
                constraints
                    .protected_groups
                    .iter()
                    .map(|id| ("constraints.protected_groups", id.as_str())),
            )
            .chain(
                constraints
                    .groups
                    .keys()
                    .map(|id| ("constraints.groups", id.as_str())),
            )
            .chain(constraints.groups.values().flat_map(|group| {
                group
                    .protected_members
                    .iter()
                    .map(|id| ("constraints.groups.*.protected_members", id.as_str()))
            }));
        for (name, id) in ids {
            if !is_uuid(id) {
                return Err(ConfigError::Invalid(format!(
                    "{name}: {id:?} is not a UUID"
                )));
            }
        }

        for (id, group) in &constraints.groups {
            if group.max_removals_per_request == Some(0) {
                return Err(ConfigError::Invalid(format!(
                    "constraints.groups.{id}.max_removals_per_request must be above 0"
                )));
            }
        }
        Ok(())
    }

    fn validate_webhook(&self) -> Result<(), ConfigError> {
        let webhook = &self.webhook;
        if webhook.url.is_empty() {
            return Ok(());
        }
        match url::Url::parse(&webhook.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "webhook.url {:?} is not an http(s) URL",
                    webhook.url
                )));
            }
        }
        if webhook.secret.is_empty() {
            return Err(ConfigError::Invalid(
                "webhook.secret is required when webhook.url is set".into(),
            ));
        }
        for (index, secret) in webhook.secret.iter().enumerate() {
            if webhook_key(secret).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "webhook.secret #{} is not \"whsec_\" followed by base64",
                    index + 1
                )));
            }
        }
        if webhook.timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "webhook.timeout_ms must be above 0".into(),
            ));
        }
        Ok(())
    }

    fn validate_api_clients(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for client in &self.api.clients {
            if client.name.trim().is_empty() || !names.insert(client.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "api.clients: name {:?} is empty or used twice",
                    client.name
                )));
            }
            let hash = &client.token_sha256;
            if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid(format!(
                    "api.clients {:?}: token_sha256 must be 64 hex digits \
                     (see `scim-removals hash-token`)",
                    client.name
                )));
            }
            if let Some(scope) = client.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
                return Err(ConfigError::Invalid(format!(
                    "api.clients {:?}: unknown scope {scope:?} (known: {})",
                    client.name,
                    SCOPES.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The API and login base URLs, from the overrides or the region.
    ///
    /// # Errors
    /// An unknown region or an override that is not an http(s) URL.
    pub fn genesys_endpoints(&self) -> Result<GenesysEndpoints, ConfigError> {
        let genesys = &self.genesys;
        let trimmed = |url: &str| url.trim().trim_end_matches('/').to_string();

        let (api, login) = if genesys.api_base_url.trim().is_empty() {
            let domain = regions::domain_of(&genesys.region).ok_or_else(|| {
                ConfigError::Invalid(format!("genesys.region {:?} is unknown", genesys.region))
            })?;
            let login = if genesys.login_base_url.trim().is_empty() {
                format!("https://login.{domain}")
            } else {
                trimmed(&genesys.login_base_url)
            };
            (format!("https://api.{domain}"), login)
        } else {
            let api = trimmed(&genesys.api_base_url);
            let login = if genesys.login_base_url.trim().is_empty() {
                api.clone()
            } else {
                trimmed(&genesys.login_base_url)
            };
            (api, login)
        };

        for (name, url) in [("api_base_url", &api), ("login_base_url", &login)] {
            match url::Url::parse(url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "genesys.{name} {url:?} is not an http(s) URL"
                    )));
                }
            }
        }
        Ok(GenesysEndpoints { api, login })
    }

    pub fn listen_addr(&self) -> SocketAddr {
        // Validated at load; the fallback only serves callers that skipped it.
        self.server
            .listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.genesys.request_timeout_ms)
    }

    /// The effective settings as JSON, with every secret replaced.
    pub fn redacted(&self) -> serde_json::Value {
        let redact = |secret: &SecretString| {
            if secret.expose_secret().is_empty() {
                ""
            } else {
                "[redacted]"
            }
        };
        let genesys = &self.genesys;
        let constraints = &self.constraints;
        let groups: BTreeMap<_, _> = constraints
            .groups
            .iter()
            .map(|(id, group)| {
                let value = json!({
                    "min_members": group.min_members,
                    "max_removals_per_request": group.max_removals_per_request,
                    "protected_members": group.protected_members,
                    "protected_roles": group.protected_roles,
                });
                (id.clone(), value)
            })
            .collect();

        json!({
            "server": {
                "listen": self.server.listen,
                "max_body_bytes": self.server.max_body_bytes,
                "shutdown_grace_s": self.server.shutdown_grace_s,
            },
            "log": {
                "format": match self.log.format {
                    LogFormat::Json => "json",
                    LogFormat::Pretty => "pretty",
                },
                "level": self.log.level,
            },
            "genesys": {
                "region": genesys.region,
                "api_base_url": genesys.api_base_url,
                "login_base_url": genesys.login_base_url,
                "client_id": genesys.client_id,
                "client_secret": redact(&genesys.client_secret),
                "request_timeout_ms": genesys.request_timeout_ms,
                "max_requests_per_minute": genesys.max_requests_per_minute,
                "max_burst": genesys.max_burst,
                "max_concurrent_requests": genesys.max_concurrent_requests,
                "max_operations_per_patch": genesys.max_operations_per_patch,
                "role_cache_ttl_s": genesys.role_cache_ttl_s,
                "retry": {
                    "max_attempts": genesys.retry.max_attempts,
                    "base_delay_ms": genesys.retry.base_delay_ms,
                    "max_delay_ms": genesys.retry.max_delay_ms,
                    "max_retry_after_s": genesys.retry.max_retry_after_s,
                    "max_conflict_retries": genesys.retry.max_conflict_retries,
                },
            },
            "worker": {
                "max_concurrent_groups": self.worker.max_concurrent_groups,
                "max_queued": self.worker.max_queued,
                "lease_s": self.worker.lease_s,
            },
            "store": {
                "url": redacted_url(self.store.url.expose_secret()),
                "idempotency_retention_h": self.store.idempotency_retention_h,
                "audit_retention_days": self.store.audit_retention_days,
            },
            "constraints": {
                "min_members": constraints.min_members,
                "max_removals_per_request": constraints.max_removals_per_request,
                "protected_members": constraints.protected_members,
                "protected_roles": constraints.protected_roles,
                "protected_groups": constraints.protected_groups,
                "groups": groups,
            },
            "webhook": {
                "url": self.webhook.url,
                "secret": self.webhook.secret.iter().map(redact).collect::<Vec<_>>(),
                "timeout_ms": self.webhook.timeout_ms,
                "retry_schedule_ms": self.webhook.retry_schedule_ms,
            },
            "api": {
                "clients": self.api.clients.iter().map(|client| json!({
                    "name": client.name,
                    "token_sha256": client.token_sha256,
                    "scopes": client.scopes,
                })).collect::<Vec<_>>(),
            },
        })
    }
}

/// Where the Genesys Cloud API and its OAuth endpoint live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenesysEndpoints {
    pub api: String,
    pub login: String,
}

/// The HMAC key of a `whsec_` secret, or `None` when it is malformed.
pub fn webhook_key(secret: &SecretString) -> Option<Vec<u8>> {
    use base64::Engine as _;

    let encoded = secret.expose_secret().strip_prefix("whsec_")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    (!key.is_empty()).then_some(key)
}

/// A UUID in its 36-character hyphenated form, in any letter case.
pub fn is_uuid(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::try_parse(id).is_ok()
}

/// The URL with its password, if any, replaced.
fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password only fails for URLs that cannot carry one.
            let _ = parsed.set_password(Some("[redacted]"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "[unparseable, redacted]".to_string(),
    }
}

fn secrets_from_one_or_many<'de, D>(deserializer: D) -> Result<Vec<SecretString>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }

    // A single string may also list several secrets, separated by commas or
    // spaces, which is how an environment variable carries a rotation.
    let secrets = match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => one
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|part| !part.is_empty())
            .map(str::to_string)
            .collect(),
        OneOrMany::Many(many) => many,
    };
    Ok(secrets.into_iter().map(SecretString::from).collect())
}

/// The `GENESYSCLOUD_*` variables the Genesys SDKs and CLI read, mapped onto
/// our settings. They sit below our own `SCIM_REMOVALS__` variables.
#[derive(Debug, Clone)]
struct GenesysEcosystemVars;

impl config::Source for GenesysEcosystemVars {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, config::Value>, config::ConfigError> {
        let pairs = [
            ("GENESYSCLOUD_OAUTHCLIENT_ID", "genesys.client_id"),
            ("GENESYSCLOUD_OAUTHCLIENT_SECRET", "genesys.client_secret"),
            ("GENESYSCLOUD_REGION", "genesys.region"),
        ];
        let origin = String::from("environment");
        Ok(pairs
            .iter()
            .filter_map(|(var, key)| {
                let value = std::env::var(var).ok().filter(|v| !v.is_empty())?;
                Some((key.to_string(), config::Value::new(Some(&origin), value)))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(extra: &str) -> Settings {
        let dir = std::env::temp_dir().join(format!("scim-removals-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("test.toml");
        let base = "[genesys]\nclient_id = \"id\"\nclient_secret = \"shh\"\n";
        std::fs::write(&path, format!("{base}{extra}")).unwrap();
        Settings::load_unvalidated(Some(&path)).unwrap()
    }

    #[test]
    fn the_region_decides_both_hosts() {
        let settings = loaded("region = \"eu-west-1\"\n");
        let endpoints = settings.genesys_endpoints().unwrap();
        assert_eq!(endpoints.api, "https://api.mypurecloud.ie");
        assert_eq!(endpoints.login, "https://login.mypurecloud.ie");
    }

    #[test]
    fn an_api_base_url_alone_also_serves_as_login_host() {
        let settings = loaded("api_base_url = \"http://127.0.0.1:9000/\"\n");
        let endpoints = settings.genesys_endpoints().unwrap();
        assert_eq!(endpoints.api, "http://127.0.0.1:9000");
        assert_eq!(endpoints.login, "http://127.0.0.1:9000");
    }

    #[test]
    fn an_unknown_region_is_a_configuration_error() {
        let settings = loaded("region = \"moon-1\"\n");
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("moon-1"), "{error}");
    }

    #[test]
    fn redaction_hides_every_secret() {
        let settings = loaded(
            "[store]\nurl = \"postgres://scim:hunter2@db/scim\"\n\
             [webhook]\nurl = \"http://hook\"\nsecret = [\"whsec_c2VjcmV0\", \"whsec_b3RoZXI=\"]\n",
        );
        let shown = settings.redacted().to_string();
        assert!(!shown.contains("shh"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(shown.contains("[redacted]"));
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn webhook_secrets_may_be_one_string_or_a_list() {
        let one = loaded("[webhook]\nsecret = \"whsec_c2VjcmV0 whsec_b3RoZXI=\"\n");
        assert_eq!(one.webhook.secret.len(), 2);
        assert_eq!(webhook_key(&one.webhook.secret[0]).unwrap(), b"secret");
    }

    #[test]
    fn ids_in_constraints_are_kept_in_lower_case() {
        let settings = loaded(
            "[constraints]\nprotected_members = [\"0A7E4A10-5C1D-4E2F-8B3A-9C8D7E6F5A01\"]\n",
        );
        assert_eq!(
            settings.constraints.protected_members[0],
            "0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a01"
        );
        settings.validate().unwrap();
    }
}
