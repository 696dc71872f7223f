//! Server configuration: defaults, then an optional TOML file (`--config`), then `HOOKRELAY_*`
//! environment variables (nested keys with `__`, e.g. `HOOKRELAY_DELIVERY__RETRY_WINDOW=1h`).
//! `hookrelay.example.toml` at the repository root lists every setting with its default; a test
//! parses it, so it cannot drift from this struct.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Environment variables that are not settings (credentials and keys, read by `run`).
const NOT_SETTINGS: &[&str] = &[
    "api_key",
    "api_secret",
    "secret_key",
    "config",
    "url",
    "log",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP API listens on: `host:port`, the host a name or an IP address.
    pub listen: ListenAddr,
    /// Where the embedded store (`hookrelay.db`) and the server key (`secret.key`) live.
    pub data_dir: PathBuf,
    /// Log as JSON lines instead of human-readable text.
    pub log_json: bool,
    /// Where state lives: the embedded SQLite file in `data_dir` (one node), or PostgreSQL at
    /// `database_url` (one or several nodes).
    pub store: StoreKind,
    /// PostgreSQL URL, when `store = "postgres"` (`HOOKRELAY_DATABASE_URL`).
    pub database_url: Option<String>,
    /// After SIGTERM, how long the server may take to finish requests and delivery rounds
    /// before it exits anyway (nothing accepted is lost either way: it is in the store).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub limits: Limits,
    pub http: Http,
    pub delivery: Delivery,
    pub aws: Aws,
    pub webhook: Webhook,
    pub retention: Retention,
    pub metrics: Metrics,
    pub postgres: Postgres,
    /// Credentials and keys from the environment, which are not settings (see [`Environment`]).
    #[serde(skip)]
    pub env: Environment,
}

/// The `HOOKRELAY_*` variables that are not settings: the first app's credentials and the
/// server key, which do not belong in a config file. Read here, once, by [`Config::load`];
/// nothing else reads them.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `HOOKRELAY_API_KEY`, `HOOKRELAY_API_SECRET`: the first app of a fresh store.
    pub api_key: Option<String>,
    pub api_secret: Option<hookrelay_core::Secret>,
    /// `HOOKRELAY_SECRET_KEY`: the server key (64 hex digits), instead of `secret.key`.
    pub secret_key: Option<hookrelay_core::Secret>,
}

impl Environment {
    pub fn read() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            api_key: var("HOOKRELAY_API_KEY"),
            api_secret: var("HOOKRELAY_API_SECRET").map(hookrelay_core::Secret::new),
            secret_key: var("HOOKRELAY_SECRET_KEY").map(hookrelay_core::Secret::new),
        }
    }
}

/// `host:port` for the listener. The host may be a name (`localhost:3030`), resolved when the
/// server binds; the form is checked when the configuration is read, so a typo is named early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ListenAddr(String);

impl ListenAddr {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let well_formed = s.rsplit_once(':').is_some_and(|(host, port)| {
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            !host.is_empty() && !host.contains(char::is_whitespace) && port.parse::<u16>().is_ok()
        });
        if well_formed {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "listen = {s:?} is not host:port; write it like 127.0.0.1:3030, localhost:3030, 0.0.0.0:3030 or [::1]:3030"
            ))
        }
    }
}

impl TryFrom<String> for ListenAddr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<ListenAddr> for String {
    fn from(a: ListenAddr) -> String {
        a.0
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Postgres {
    /// Connections per node.
    pub pool_size: usize,
    /// How long a node's hook leases last without renewal: hooks of a node that died move to
    /// the others about this long after its last renewal (renewals run every quarter of it).
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// This node's name in the lease tables (default: random at each start).
    pub node_id: Option<String>,
}

impl Default for Postgres {
    fn default() -> Self {
        Self {
            pool_size: 16,
            lease_ttl: Duration::from_secs(2),
            node_id: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:3030".parse().expect("a valid literal address"),
            data_dir: PathBuf::from("./hookrelay-data"),
            log_json: false,
            store: StoreKind::Sqlite,
            database_url: None,
            shutdown_grace: Duration::from_secs(30),
            limits: Limits::default(),
            http: Http::default(),
            delivery: Delivery::default(),
            aws: Aws::default(),
            webhook: Webhook::default(),
            retention: Retention::default(),
            metrics: Metrics::default(),
            postgres: Postgres::default(),
            env: Environment::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body, in bytes (an ingest batch included). Default 4 MiB.
    pub max_body_bytes: usize,
    /// Largest single event, in bytes. Default 1 MiB.
    pub max_event_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // Each default is the library's own, written once there.
            max_body_bytes: hookrelay_api::ApiLimits::default().max_body_bytes,
            max_event_bytes: hookrelay_api::ApiLimits::default().max_event_bytes,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Open connections at most; past that, new ones are closed at once (and logged).
    pub max_connections: usize,
    /// Time a client has to send a request's headers, from the connection's start or the end of
    /// the previous answer: bounds slow clients and idle keep-alive connections alike.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Time a request's body has to arrive once its headers have.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// On shutdown, how long requests in progress may take before their connections are closed.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_timeout: Duration::from_secs(15),
            body_timeout: hookrelay_api::ApiLimits::default().body_timeout,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// Ceiling of the first retry delay of a failed entry (doubles per failure, full jitter).
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Longest delay between two retries of an entry.
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
    /// How long an entry is retried before it becomes a dead letter.
    #[serde(with = "humantime_serde")]
    pub retry_window: Duration,
    /// Longest backoff of a hook whose destination fails every call.
    #[serde(with = "humantime_serde")]
    pub hook_backoff_cap: Duration,
    /// Batch calls in flight per hook (FIFO hooks: always 1).
    pub batches_in_flight: usize,
    /// Events a hook reads from the log per round.
    pub read_batch: usize,
    /// Calls in a row that fail without an answer (no connection, timeouts, 5xx, 429) before a
    /// hook's circuit opens and it sends one probe at a time.
    pub breaker_failures: u32,
    /// How long a replaced `webhook_secret` keeps signing beside the new one.
    #[serde(with = "humantime_serde")]
    pub secret_rotation_window: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        // Each default is the delivery library's own, written once there.
        let library = hookrelay_delivery::DeliverySettings::default();
        Self {
            retry_base: library.retry.base,
            retry_cap: library.retry.cap,
            retry_window: library.retry.window,
            hook_backoff_cap: library.hook_backoff.cap,
            batches_in_flight: library.batches_in_flight,
            read_batch: library.read_batch,
            breaker_failures: library.breaker_failures,
            secret_rotation_window: hookrelay_core::hook::input::DEFAULT_SECRET_ROTATION_WINDOW,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Aws {
    /// Endpoint for every AWS service, e.g. a local emulator. The standard `AWS_ENDPOINT_URL`,
    /// `AWS_ENDPOINT_URL_SQS` and `AWS_ENDPOINT_URL_SNS` variables work too.
    pub endpoint_url: Option<String>,
    /// Limit on one AWS call.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Webhook {
    /// Limit on one webhook request, answer included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Requests in flight per webhook hook.
    pub in_flight: usize,
    /// Address ranges webhook receivers may not be in (CIDR, e.g. "169.254.0.0/16"). Empty by
    /// default: self-hosted receivers often live on private networks.
    pub deny_cidrs: Vec<String>,
}

impl Default for Webhook {
    fn default() -> Self {
        let library = hookrelay_delivery::destinations::webhook::WebhookSettings::default();
        Self {
            timeout: library.timeout,
            in_flight: library.in_flight,
            deny_cidrs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Serve Prometheus metrics at `GET /metrics`.
    pub enabled: bool,
    /// When set, `/metrics` answers only requests with `Authorization: Bearer <this>`
    /// (`HOOKRELAY_METRICS__BEARER_TOKEN`).
    pub bearer_token: Option<String>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            enabled: true,
            bearer_token: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Events every hook has finished with are deleted once older than this.
    #[serde(with = "humantime_serde")]
    pub keep: Duration,
    /// How often the deletion runs.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep: Duration::from_secs(72 * 3600),
            interval: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// Defaults, then the file (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(
            Env::prefixed("HOOKRELAY_")
                .filter(|key| {
                    !NOT_SETTINGS
                        .iter()
                        .any(|n| key.as_str().eq_ignore_ascii_case(n))
                })
                .split("__"),
        );
        let mut config: Config = figment.extract().map_err(Box::new)?;
        config.env = Environment::read();
        Ok(config)
    }

    /// Checks the bounds of every setting, naming each one out of bounds (`delivery.read_batch
    /// must be 1 to 100000, not 0`), so a bad value stops the start with a clear error rather
    /// than being silently adjusted.
    pub fn validate(&self) -> Result<(), String> {
        let mut wrong = Vec::new();
        let mut within = |name: &str, value: u64, low: u64, high: u64| {
            if !(low..=high).contains(&value) {
                wrong.push(format!("{name} must be {low} to {high}, not {value}"));
            }
        };
        let d = &self.delivery;
        within(
            "delivery.batches_in_flight",
            d.batches_in_flight as u64,
            1,
            256,
        );
        within("delivery.read_batch", d.read_batch as u64, 1, 100_000);
        within(
            "delivery.breaker_failures",
            d.breaker_failures.into(),
            1,
            1_000_000,
        );
        within("webhook.in_flight", self.webhook.in_flight as u64, 1, 1024);
        within(
            "http.max_connections",
            self.http.max_connections as u64,
            1,
            1_000_000,
        );
        within(
            "postgres.pool_size",
            self.postgres.pool_size as u64,
            2,
            1024,
        );
        within(
            "limits.max_body_bytes",
            self.limits.max_body_bytes as u64,
            1024,
            1 << 30,
        );
        within(
            "limits.max_event_bytes",
            self.limits.max_event_bytes as u64,
            1024,
            self.limits.max_body_bytes as u64,
        );
        let ms = |d: Duration| d.as_millis().min(u64::MAX as u128) as u64;
        within(
            "delivery.retry_base (ms)",
            ms(d.retry_base),
            1,
            ms(d.retry_cap),
        );
        within(
            "delivery.retry_window (ms)",
            ms(d.retry_window),
            1,
            u64::MAX,
        );
        within(
            "delivery.hook_backoff_cap (ms)",
            ms(d.hook_backoff_cap),
            1,
            u64::MAX,
        );
        within(
            "webhook.timeout (ms)",
            ms(self.webhook.timeout),
            1,
            u64::MAX,
        );
        within(
            "retention.interval (ms)",
            ms(self.retention.interval),
            1,
            u64::MAX,
        );
        within(
            "postgres.lease_ttl (ms)",
            ms(self.postgres.lease_ttl),
            1000,
            u64::MAX,
        );
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("hookrelay.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_matches_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hookrelay.example.toml");
        let parsed: Config = Figment::new()
            .merge(Toml::file_exact(&example))
            .extract()
            .expect("hookrelay.example.toml parses");
        let default = Config::default();
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
    }

    #[test]
    fn listen_takes_names_and_addresses() {
        for ok in [
            "127.0.0.1:3030",
            "localhost:3031",
            "0.0.0.0:80",
            "[::1]:3030",
            "relay.internal:9000",
        ] {
            assert!(ok.parse::<ListenAddr>().is_ok(), "{ok}");
        }
        for bad in [
            "localhost",
            "3030",
            ":3030",
            "localhost:http",
            "a b:1",
            "[]:1",
        ] {
            let err = bad.parse::<ListenAddr>().unwrap_err();
            assert!(err.contains("127.0.0.1:3030"), "{bad}: {err}");
        }
    }

    #[test]
    fn settings_out_of_bounds_are_refused_by_name() {
        assert_eq!(Config::default().validate(), Ok(()));
        let mut config = Config::default();
        config.delivery.batches_in_flight = 0;
        config.webhook.in_flight = 5000;
        config.delivery.retry_base = Duration::from_secs(3600);
        let error = config.validate().unwrap_err();
        for name in [
            "delivery.batches_in_flight",
            "webhook.in_flight",
            "delivery.retry_base",
        ] {
            assert!(error.contains(name), "{error}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Figment::new()
            .merge(Toml::string("lisen = \"127.0.0.1:1\""))
            .extract::<Config>()
            .unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }
}
