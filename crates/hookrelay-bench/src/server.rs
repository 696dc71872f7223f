//! A `hookrelay serve` process under test: its own data directory and port, its resident memory
//! sampled while it runs, and an HTTP client that speaks its API (server JWT included).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hookrelay_core::sign::hmac_sha256;
use serde_json::{Value, json};

pub const KEY: &str = "benchkey";
const SECRET: &str = "bench-secret-bench-secret-bench-secret";

/// The PostgreSQL server to run hookrelay on (`--store postgres`); unset: embedded SQLite.
/// Each hookrelay process gets a database of its own there, dropped afterwards.
pub static POSTGRES: OnceLock<String> = OnceLock::new();

pub fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

pub struct Server {
    child: std::sync::Mutex<Child>,
    pid: u32,
    /// (server URL, database name) when on PostgreSQL.
    database: Option<(String, String)>,
    pub url: String,
    pub http: reqwest::Client,
    token: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Where a server keeps its data.
enum StoreChoice<'a> {
    /// The embedded store, or a database of its own when `--store postgres` (see [`POSTGRES`]).
    Default,
    /// One node of several on this database.
    Node {
        database_url: &'a str,
        node_id: &'a str,
    },
}

impl Server {
    pub async fn start(bin: &Path, aws_endpoint: &str, config: &str) -> anyhow::Result<Self> {
        Self::launch(bin, aws_endpoint, config, StoreChoice::Default).await
    }

    /// One node of a cluster on `database_url` (created and dropped by the caller).
    pub async fn start_node(
        bin: &Path,
        aws_endpoint: &str,
        config: &str,
        database_url: &str,
        node_id: &str,
    ) -> anyhow::Result<Self> {
        let store = StoreChoice::Node {
            database_url,
            node_id,
        };
        Self::launch(bin, aws_endpoint, config, store).await
    }

    async fn launch(
        bin: &Path,
        aws_endpoint: &str,
        config: &str,
        store: StoreChoice<'_>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let config_path: PathBuf = dir.path().join("hookrelay.toml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let mut command = Command::new(bin);
        let database = match (store, POSTGRES.get()) {
            (
                StoreChoice::Node {
                    database_url,
                    node_id,
                },
                _,
            ) => {
                command
                    .env("HOOKRELAY_STORE", "postgres")
                    .env("HOOKRELAY_DATABASE_URL", database_url)
                    .env("HOOKRELAY_POSTGRES__NODE_ID", node_id)
                    .env("HOOKRELAY_SECRET_KEY", "42".repeat(32));
                None
            }
            (StoreChoice::Default, Some(server)) => {
                let name = format!("hookrelay_bench_{}", std::process::id() ^ port as u32);
                psql(server, &format!("DROP DATABASE IF EXISTS {name}"))?;
                psql(server, &format!("CREATE DATABASE {name}"))?;
                let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
                command
                    .env("HOOKRELAY_STORE", "postgres")
                    .env("HOOKRELAY_DATABASE_URL", format!("{base}/{name}"))
                    .env("HOOKRELAY_SECRET_KEY", "42".repeat(32));
                Some((server.clone(), name))
            }
            (StoreChoice::Default, None) => None,
        };
        let child = command
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--config",
            ])
            .arg(&config_path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("HOOKRELAY_API_KEY", KEY)
            .env("HOOKRELAY_API_SECRET", SECRET)
            .env("HOOKRELAY_LOG", "warn")
            .env("AWS_ENDPOINT_URL", aws_endpoint)
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"server":true}"#);
        let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(
            SECRET.as_bytes(),
            &[header.as_bytes(), b".", claims.as_bytes()],
        ));
        let server = Self {
            pid: child.id(),
            child: std::sync::Mutex::new(child),
            database,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()?,
            token: format!("{header}.{claims}.{sig}"),
            _dir: dir,
        };
        for _ in 0..200 {
            if server
                .http
                .get(format!("{}/healthz", server.url))
                .send()
                .await
                .is_ok()
            {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("hookrelay did not start")
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .query(&[("api_key", KEY)])
            .header("Authorization", &self.token)
            .header("stream-auth-type", "jwt")
            .header("Content-Type", "application/json")
    }

    pub async fn set_hooks(&self, hooks: Vec<Value>) -> anyhow::Result<()> {
        let body = serde_json::to_vec(&json!({"event_hooks": hooks}))?;
        let r = self
            .request(reqwest::Method::PATCH, "/app")
            .body(body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("PATCH /app: {}", r.text().await?);
        }
        Ok(())
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(field))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.status_kib("VmRSS:").unwrap_or(0) as f64 / 1024.0
    }

    /// CPU time the process has used (user + system), in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds_of(&self.pid.to_string())
    }

    /// Asks the server to stop (SIGTERM) and waits until it has.
    pub fn terminate(&self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()?;
        self.child.lock().unwrap().wait()?;
        Ok(())
    }

    /// Ends the server at once (SIGKILL), as a crash would.
    pub fn kill(&self) -> anyhow::Result<()> {
        let mut child = self.child.lock().unwrap();
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Which node holds each hook's lease, as `GET /v1/hooks` says (hook ids in order).
    pub async fn owners(&self) -> anyhow::Result<Vec<Option<String>>> {
        let r = self
            .request(reqwest::Method::GET, "/v1/hooks")
            .send()
            .await?;
        let body: Value = serde_json::from_slice(&r.bytes().await?)?;
        let hooks = body["hooks"].as_array().cloned().unwrap_or_default();
        Ok(hooks
            .iter()
            .map(|h| h["node"].as_str().map(str::to_owned))
            .collect())
    }

    /// Bytes the process has caused to be written to storage (`write_bytes` of /proc/<pid>/io).
    pub fn written_bytes(&self) -> Option<u64> {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.pid)).ok()?;
        io.lines()
            .find_map(|l| l.strip_prefix("write_bytes:"))?
            .trim()
            .parse()
            .ok()
    }

    /// Peak resident memory since start, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        if let Some((server, name)) = &self.database {
            let _ = psql(
                server,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

pub fn sqs_hook(i: usize) -> Value {
    json!({"enabled": true, "hook_type": "sqs", "sqs_region": "us-east-1", "sqs_auth_type": "resource",
           "sqs_queue_url": format!("https://sqs.us-east-1.amazonaws.com/123456789012/q{i}")})
}

pub fn sns_hook(i: usize) -> Value {
    json!({"enabled": true, "hook_type": "sns", "sns_region": "us-east-1", "sns_auth_type": "resource",
           "sns_topic_arn": format!("arn:aws:sns:us-east-1:123456789012:t{i}")})
}

pub fn webhook_hook(port: u16, i: usize) -> Value {
    json!({"enabled": true, "hook_type": "webhook", "webhook_url": format!("http://127.0.0.1:{port}/hook/{i}")})
}

/// CPU time (user + system) of a process (`self` for this one), in seconds.
pub fn cpu_seconds_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, hence the last ')'): utime and
    // stime are the 12th and 13th, in clock ticks (USER_HZ, 100 on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}
