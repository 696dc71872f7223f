//! The commands that work against a running server (`hooks`, `dead-letters`, `events send`,
//! `apps rotate-secret`, `apps delete`) and `token`: the same HTTP API and authentication as
//! Stream's SDKs use, with tables for people and `--json` for scripts.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, Subcommand};
use hookrelay_core::Timestamp;
use hookrelay_core::event::{ReceivedAt, prepare_event};
use hookrelay_core::limits::MAX_EVENTS_PER_REQUEST;
use hookrelay_core::sign::hmac_sha256;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::output::out;

/// Where the server is and how to authenticate.
#[derive(Args, Clone)]
pub struct Remote {
    /// The server's base URL.
    #[arg(long, env = "HOOKRELAY_URL", default_value = "http://127.0.0.1:3030")]
    url: String,
    /// The app's API key.
    #[arg(long, env = "HOOKRELAY_API_KEY")]
    api_key: String,
    /// The app's API secret (signs a server token; never sent itself).
    #[arg(long, env = "HOOKRELAY_API_SECRET", hide_env_values = true)]
    api_secret: String,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Args)]
pub struct TokenArgs {
    /// The app's API secret.
    #[arg(long, env = "HOOKRELAY_API_SECRET", hide_env_values = true)]
    api_secret: String,
    /// Make the token expire after this long (e.g. `15m`, `1h`); default: no expiry.
    #[arg(long, value_parser = humantime::parse_duration)]
    expires_in: Option<Duration>,
}

#[derive(Subcommand)]
pub enum HooksCommand {
    /// Every hook of the app: state, lag, backlog and counters.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// One hook in detail, with its last error.
    Status {
        #[command(flatten)]
        remote: Remote,
        /// The hook's id.
        id: String,
    },
    /// Stop delivering to a hook; its events wait in the log until it is resumed.
    Pause {
        #[command(flatten)]
        remote: Remote,
        /// The hook's id.
        id: String,
    },
    /// Deliver to a paused hook again, from where it stopped.
    Resume {
        #[command(flatten)]
        remote: Remote,
        /// The hook's id.
        id: String,
    },
    /// Deliver again every retained event the hook's filter takes, created since a time.
    Replay {
        #[command(flatten)]
        remote: Remote,
        /// The hook's id.
        id: String,
        /// An RFC 3339 time (`2026-01-02T03:04:05Z`) or a duration back from now (`90m`, `2h`).
        #[arg(long)]
        since: String,
    },
    /// Send one signed `health.check` event to the hook's destination, through the real
    /// delivery path, and show what it answered. The hook's cursor and counters do not change.
    Test {
        #[command(flatten)]
        remote: Remote,
        /// The hook's id.
        id: String,
    },
}

#[derive(Subcommand)]
pub enum DeadLettersCommand {
    /// A hook's dead letters, newest first.
    List {
        #[command(flatten)]
        remote: Remote,
        /// The hook's id.
        id: String,
        /// How many to show.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put dead letters back into delivery: all of the hook's, or those with these event ids.
    /// Fails (after replaying the others) when an id matches no dead letter of the hook.
    Replay {
        #[command(flatten)]
        remote: Remote,
        /// The hook's id.
        id: String,
        /// Event ids to replay (default: every dead letter of the hook).
        event_ids: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum EventsCommand {
    /// Send events from a file of JSON lines (one event object per line), or `-` for stdin.
    ///
    /// Each line is sent as written. A bad line is reported by its line number and skipped; the
    /// others are sent (`--strict`: nothing is sent unless every line is good). A line without
    /// an `id` gets one derived from the file's path, the line number and the line, so sending
    /// the same file again stores nothing twice; lines read from stdin without an `id` get a
    /// new id each time, so re-sending stdin is safe only for lines that carry their own.
    Send {
        #[command(flatten)]
        remote: Remote,
        /// The file to read (`-` = standard input).
        #[arg(default_value = "-")]
        file: String,
        /// Events per request (at most 1000).
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Send nothing unless every line is a valid event.
        #[arg(long)]
        strict: bool,
    },
}

/// An error answer of the server, in Stream's format.
#[derive(Debug)]
struct ApiFailure {
    status: reqwest::StatusCode,
    code: i64,
    message: String,
    fields: serde_json::Map<String, Value>,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)?;
        // What the user can do about the authentication errors they actually meet.
        let hint = match self.code {
            2 => {
                " (the server knows no app with this API key: check --api-key / HOOKRELAY_API_KEY, and `hookrelay apps list` on the server)"
            }
            43 => {
                " (the API secret is wrong for this API key: check --api-secret / HOOKRELAY_API_SECRET)"
            }
            40 => " (the token has expired: make a new one with `hookrelay token`)",
            _ => "",
        };
        f.write_str(hint)
    }
}

impl std::error::Error for ApiFailure {}

/// A server token: HS256, `{"server": true}`, as the Stream SDKs make them.
pub fn server_token(api_secret: &str, expires_in: Option<Duration>) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = match expires_in {
        None => json!({"server": true}),
        Some(ttl) => {
            let now = Timestamp::now().millis() / 1000;
            json!({"server": true, "iat": now, "exp": now + ttl.as_secs() as i64})
        }
    };
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(
        api_secret.as_bytes(),
        &[header.as_bytes(), b".", claims.as_bytes()],
    ));
    format!("{header}.{claims}.{signature}")
}

pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    out!("{}", server_token(&args.api_secret, args.expires_in));
    Ok(())
}

struct Client {
    http: reqwest::Client,
    remote: Remote,
    token: String,
}

impl Client {
    fn new(remote: Remote) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .user_agent(concat!("hookrelay-cli/", env!("CARGO_PKG_VERSION")))
                .build()?,
            token: server_token(&remote.api_secret, None),
            remote,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Value> {
        let base = self.remote.url.trim_end_matches('/');
        let url = format!("{base}{path}");
        let mut request = self
            .http
            .request(method, &url)
            .query(&[("api_key", &self.remote.api_key)])
            .header("Authorization", &self.token)
            .header("stream-auth-type", "jwt");
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        let response = request.send().await.map_err(|e| {
            let why = if e.is_connect() {
                "nothing answers there; is `hookrelay serve` running? (set --url or HOOKRELAY_URL)"
            } else if e.is_timeout() {
                "the server did not answer in time"
            } else {
                "the request failed"
            };
            anyhow::Error::new(e).context(format!("calling {url}: {why}"))
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        let mut value: Value = serde_json::from_slice(&bytes).with_context(|| {
            format!("{url} answered {status} with something that is not JSON: is --url a hookrelay server?")
        })?;
        if !status.is_success() {
            return Err(ApiFailure {
                status,
                code: value["code"].as_i64().unwrap_or(-1),
                message: value["message"].as_str().unwrap_or("no message").to_owned(),
                fields: value["exception_fields"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            }
            .into());
        }
        if let Some(map) = value.as_object_mut() {
            map.remove("duration");
        }
        Ok(value)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::POST,
            path,
            Some(serde_json::to_vec(&body)?),
        )
        .await
    }
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints rows as aligned columns.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let header_row = headers.iter().map(|h| h.to_string()).collect();
    for cells in std::iter::once(header_row).chain(rows) {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out!("{}", parts.join("  ").trim_end());
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

fn print_status(h: &Value) -> anyhow::Result<()> {
    for (label, value) in [
        ("id", cell(&h["id"])),
        ("type", cell(&h["hook_type"])),
        ("state", cell(&h["state"])),
        ("enabled", cell(&h["enabled"])),
        ("paused", cell(&h["paused"])),
        ("lag (events)", cell(&h["lag"]["events"])),
        (
            "oldest pending (s)",
            cell(&h["lag"]["oldest_pending_age_seconds"]),
        ),
        ("in flight", cell(&h["in_flight"])),
        ("retry backlog", cell(&h["retry_backlog"])),
        ("dead letters", cell(&h["dead_letters"])),
        ("delivered", cell(&h["delivered"])),
        ("failed attempts", cell(&h["failed"])),
        ("dropped (too large)", cell(&h["dropped"])),
        ("last success", cell(&h["last_success_at"])),
        (
            "last error",
            match &h["last_error"] {
                Value::Null => "-".into(),
                e => format!(
                    "{} {}: {}",
                    cell(&e["at"]),
                    cell(&e["code"]),
                    cell(&e["message"])
                ),
            },
        ),
    ] {
        out!("{label:<20} {value}");
    }
    Ok(())
}

/// `--since`: an RFC 3339 time as given, or a duration back from now.
fn since_time(since: &str) -> anyhow::Result<String> {
    if Timestamp::parse_rfc3339(since).is_some() {
        return Ok(since.to_owned());
    }
    let back = humantime::parse_duration(since).map_err(|_| {
        anyhow::anyhow!(
            "--since {since:?}: give an RFC 3339 time (2026-01-02T03:04:05Z) or a duration back from now (90m, 2h)"
        )
    })?;
    let back_ms = back.as_millis().min(i64::MAX as u128) as i64;
    Ok(Timestamp::now()
        .saturating_add_millis(-back_ms)
        .to_rfc3339())
}

pub async fn hooks(cmd: HooksCommand) -> anyhow::Result<()> {
    match cmd {
        HooksCommand::List { remote } => {
            let json = remote.json;
            let answer = Client::new(remote)?.get("/v1/hooks").await?;
            if json {
                return print_json(&answer);
            }
            let rows = answer["hooks"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|h| {
                    vec![
                        cell(&h["id"]),
                        cell(&h["hook_type"]),
                        cell(&h["state"]),
                        cell(&h["lag"]["events"]),
                        cell(&h["retry_backlog"]),
                        cell(&h["dead_letters"]),
                        cell(&h["delivered"]),
                        truncate(
                            &h["last_error"]["message"].as_str().map_or("-".into(), |m| {
                                format!("{}: {m}", cell(&h["last_error"]["code"]))
                            }),
                            60,
                        ),
                    ]
                })
                .collect();
            table(
                &[
                    "ID",
                    "TYPE",
                    "STATE",
                    "LAG",
                    "RETRYING",
                    "DEAD",
                    "DELIVERED",
                    "LAST ERROR",
                ],
                rows,
            )
        }
        HooksCommand::Status { remote, id } => {
            let json = remote.json;
            let answer = Client::new(remote)?.get(&format!("/v1/hooks/{id}")).await?;
            if json {
                return print_json(&answer);
            }
            print_status(&answer["hook"])
        }
        HooksCommand::Pause { remote, id } => set_paused(remote, &id, "pause").await,
        HooksCommand::Resume { remote, id } => set_paused(remote, &id, "resume").await,
        HooksCommand::Replay { remote, id, since } => {
            let json = remote.json;
            let since = since_time(&since)?;
            let answer = Client::new(remote)?
                .post(&format!("/v1/hooks/{id}/replay"), json!({"since": since}))
                .await?;
            if json {
                return print_json(&answer);
            }
            out!(
                "hook {id} rewound to {since}: {} event(s) to deliver again",
                cell(&answer["events_after_cursor"])
            );
            Ok(())
        }
        HooksCommand::Test { remote, id } => {
            let json = remote.json;
            let answer = Client::new(remote)?
                .post(&format!("/v1/hooks/{id}/test"), json!({}))
                .await?;
            if json {
                print_json(&answer)?;
            } else if answer["status"] == "ok" {
                out!(
                    "ok: {} delivered in {} ms",
                    cell(&answer["event_id"]),
                    cell(&answer["latency_ms"])
                );
            } else {
                let e = &answer["error"];
                out!(
                    "error after {} ms: {}{}: {}",
                    cell(&answer["latency_ms"]),
                    cell(&e["code"]),
                    e["http_status"]
                        .as_u64()
                        .map_or(String::new(), |s| format!(" (HTTP {s})")),
                    cell(&e["message"])
                );
            }
            if answer["status"] != "ok" {
                bail!("the test event was not delivered to hook {id}");
            }
            Ok(())
        }
    }
}

async fn set_paused(remote: Remote, id: &str, action: &str) -> anyhow::Result<()> {
    let json = remote.json;
    let answer = Client::new(remote)?
        .post(&format!("/v1/hooks/{id}/{action}"), json!({}))
        .await?;
    if json {
        return print_json(&answer);
    }
    out!("hook {id}: {}", cell(&answer["hook"]["state"]));
    Ok(())
}

pub async fn dead_letters(cmd: DeadLettersCommand) -> anyhow::Result<()> {
    match cmd {
        DeadLettersCommand::List { remote, id, limit } => {
            let json = remote.json;
            let answer = Client::new(remote)?
                .get(&format!("/v1/hooks/{id}/dead_letters?limit={limit}"))
                .await?;
            if json {
                return print_json(&answer);
            }
            let rows = answer["dead_letters"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|d| {
                    vec![
                        cell(&d["event_id"]),
                        cell(&d["event_type"]),
                        cell(&d["reason"]),
                        cell(&d["attempts"]),
                        cell(&d["created_at"]),
                        truncate(&cell(&d["last_error"]), 60),
                    ]
                })
                .collect();
            table(
                &["EVENT ID", "TYPE", "REASON", "ATTEMPTS", "AT", "LAST ERROR"],
                rows,
            )
        }
        DeadLettersCommand::Replay {
            remote,
            id,
            event_ids,
        } => {
            let json = remote.json;
            let body = if event_ids.is_empty() {
                json!({})
            } else {
                json!({"event_ids": event_ids})
            };
            let answer = Client::new(remote)?
                .post(&format!("/v1/hooks/{id}/dead_letters/replay"), body)
                .await?;
            let not_found: Vec<String> = answer["not_found"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(cell)
                .collect();
            if json {
                print_json(&answer)?;
            } else {
                out!(
                    "replayed {} dead letter(s) of hook {id}",
                    cell(&answer["replayed"])
                );
            }
            if !not_found.is_empty() {
                bail!(
                    "no dead letter of hook {id} has the event id(s): {}",
                    not_found.join(", ")
                );
            }
            Ok(())
        }
    }
}

pub async fn rotate_secret(
    remote: Remote,
    keep_previous: Option<std::time::Duration>,
) -> anyhow::Result<()> {
    let secret = crate::keys::new_api_secret();
    let key = remote.api_key.clone();
    let keep = keep_previous.map_or(0, |d| d.as_secs());
    let answer = Client::new(remote)?
        .post(
            "/v1/app/secret",
            json!({"api_secret": secret, "keep_previous_seconds": keep}),
        )
        .await?;
    out!("new api secret of app {key}: {secret}");
    match answer["previous_secret_valid_until"].as_str() {
        Some(until) => {
            out!("(the old secret keeps working until {until}; the new one is not shown again)")
        }
        None => out!("(the old secret no longer works; the new one is not shown again)"),
    }
    Ok(())
}

pub async fn delete_app(remote: Remote, yes: bool) -> anyhow::Result<()> {
    let key = remote.api_key.clone();
    if !yes {
        bail!(
            "deleting app {key} removes its hooks, their backlogs, dead letters and events for good; run again with --yes to confirm"
        );
    }
    Client::new(remote)?
        .call(reqwest::Method::DELETE, "/v1/app", None)
        .await?;
    out!("deleted app {key}");
    Ok(())
}

/// One line of the input, checked and ready to send.
struct Line {
    number: usize,
    /// The event as written, or with a derived `id` spliced in at the front.
    text: String,
}

/// What happened to the input so far.
#[derive(Default)]
struct SendReport {
    sent: usize,
    duplicates: usize,
    /// "line N: why", in input order.
    refused: Vec<(usize, String)>,
}

/// The id of a line without one: stable for the same file, line number and line, so a second
/// run of the same file is recognised by the server as duplicates.
fn derived_id(source: &str, number: usize, line: &str) -> String {
    let mut hash = Sha256::new();
    for part in [
        source.as_bytes(),
        b"\n",
        number.to_string().as_bytes(),
        b"\n",
        line.as_bytes(),
    ] {
        hash.update(part);
    }
    format!("cli-{}", hex::encode(&hash.finalize()[..16]))
}

/// Whether the event names its own id (present and not null).
fn has_id(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<IdOnly>(text).is_ok_and(|e| e.id.is_some())
}

/// Checks one line as the server would, and gives it a derived id if it has none and comes from
/// a file (`source`). The error completes "line N: …".
fn check_line(text: &str, number: usize, source: Option<&str>) -> Result<Line, String> {
    let raw: Box<RawValue> = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    prepare_event(&raw, &ReceivedAt::now(), usize::MAX)?;
    let text = match source {
        Some(source) if !has_id(text) => {
            let id = derived_id(source, number, text);
            let rest = text.trim_start()[1..].trim_start();
            format!("{{\"id\":\"{id}\",{rest}")
        }
        _ => text.to_owned(),
    };
    Ok(Line { number, text })
}

/// The event index an ingest refusal names (`events[3]`), from its fields or its message.
fn refused_index(failure: &ApiFailure) -> Option<usize> {
    let field = failure
        .fields
        .keys()
        .find(|k| k.starts_with("events["))
        .map(String::as_str)
        .unwrap_or(&failure.message);
    let start = field.find("events[")? + "events[".len();
    let len = field[start..].find(']')?;
    field[start..start + len].parse().ok()
}

/// The reason part of a refusal of one event (`events[3]: type is required`).
fn refused_reason(failure: &ApiFailure, index: usize) -> String {
    failure
        .fields
        .get(&format!("events[{index}]"))
        .and_then(Value::as_str)
        .map_or_else(|| failure.message.clone(), str::to_owned)
}

impl Client {
    /// Sends a batch; a refused event is reported by its line and the rest sent again.
    async fn send_lines(
        &self,
        mut lines: Vec<Line>,
        report: &mut SendReport,
    ) -> anyhow::Result<()> {
        while !lines.is_empty() {
            let mut body = String::from("{\"events\":[");
            for (i, line) in lines.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&line.text);
            }
            body.push_str("]}");
            let result = self
                .call(reqwest::Method::POST, "/v1/events", Some(body.into_bytes()))
                .await;
            match result {
                Ok(answer) => {
                    let events = answer["events"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    report.sent += events.len();
                    report.duplicates += events.iter().filter(|e| e["duplicate"] == true).count();
                    return Ok(());
                }
                Err(e) => {
                    let index = e
                        .downcast_ref::<ApiFailure>()
                        .and_then(|f| refused_index(f).map(|i| (i, refused_reason(f, i))));
                    match index {
                        Some((i, reason)) if i < lines.len() => {
                            let line = lines.remove(i);
                            let reason =
                                reason.split_once(": ").map_or(reason.as_str(), |(_, r)| r);
                            report.refused.push((line.number, reason.to_owned()));
                        }
                        // The whole request failed (auth, server down): nothing more will pass.
                        _ => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }
}

pub async fn events(cmd: EventsCommand) -> anyhow::Result<()> {
    let EventsCommand::Send {
        remote,
        file,
        batch,
        strict,
    } = cmd;
    let batch = batch.clamp(1, MAX_EVENTS_PER_REQUEST);
    let json = remote.json;
    let client = Client::new(remote)?;
    let (reader, source): (Box<dyn BufRead>, Option<String>) = if file == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let path = Path::new(&file);
        let reader = std::fs::File::open(path).with_context(|| format!("opening {file}"))?;
        let source = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        (
            Box::new(std::io::BufReader::new(reader)),
            Some(source.display().to_string()),
        )
    };
    let progress = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut report = SendReport::default();
    let mut pending: Vec<Line> = Vec::with_capacity(batch);
    // --strict reads everything first, and sends only if no line was refused.
    let mut held: Vec<Line> = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("reading line {number} of the input"))?;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        match check_line(text, number, source.as_deref()) {
            Ok(line) if strict => held.push(line),
            Ok(line) => pending.push(line),
            Err(reason) => report.refused.push((number, reason)),
        }
        if pending.len() == batch {
            client
                .send_lines(std::mem::take(&mut pending), &mut report)
                .await?;
            if progress {
                let rate = report.sent as f64 / started.elapsed().as_secs_f64().max(1e-9);
                eprint!("\r{} events sent ({rate:.0}/s)", report.sent);
                std::io::stderr().flush().ok();
            }
        }
    }
    if strict && report.refused.is_empty() {
        pending = held;
    }
    while !pending.is_empty() {
        let rest = pending.split_off(batch.min(pending.len()));
        client.send_lines(pending, &mut report).await?;
        pending = rest;
    }
    if progress {
        eprintln!();
    }
    report.refused.sort_by_key(|(number, _)| *number);
    let refused: Vec<String> = report
        .refused
        .iter()
        .map(|(number, reason)| format!("line {number}: {reason}"))
        .collect();
    let seconds = started.elapsed().as_secs_f64();
    let rate = report.sent as f64 / seconds.max(1e-9);
    if json {
        print_json(&json!({
            "sent": report.sent,
            "duplicates": report.duplicates,
            "refused": refused,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "events_per_second": rate.round(),
        }))?;
    } else {
        out!(
            "sent {} events ({} duplicates) in {seconds:.2}s, {rate:.0} events/s",
            report.sent,
            report.duplicates
        );
        for r in &refused {
            out!("  {r}");
        }
    }
    if !refused.is_empty() {
        if strict {
            bail!(
                "{} line(s) are not valid events; nothing was sent (--strict)",
                refused.len()
            );
        }
        bail!(
            "{} line(s) were refused; the others were sent",
            refused.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_bytes_and_get_stable_ids_only_from_files() {
        let written = r#"{"type":"message.new", "z":1,"a":{"b":2.50}}"#;
        let from_stdin = check_line(written, 3, None).unwrap();
        assert_eq!(from_stdin.text, written, "sent as written");
        let from_file = check_line(written, 3, Some("/data/events.jsonl")).unwrap();
        let again = check_line(written, 3, Some("/data/events.jsonl")).unwrap();
        assert_eq!(from_file.text, again.text, "the same line gets the same id");
        assert!(from_file.text.starts_with(r#"{"id":"cli-"#));
        assert!(
            from_file
                .text
                .ends_with(r#""type":"message.new", "z":1,"a":{"b":2.50}}"#)
        );
        let elsewhere = check_line(written, 4, Some("/data/events.jsonl")).unwrap();
        assert_ne!(
            from_file.text, elsewhere.text,
            "another line is another event"
        );
        let with_id = r#"{"id":"mine","type":"x"}"#;
        assert_eq!(check_line(with_id, 1, Some("f")).unwrap().text, with_id);
    }

    #[test]
    fn bad_lines_are_explained() {
        for (line, reason) in [
            ("not json", "not JSON"),
            ("[1]", "must be a JSON object"),
            (r#"{"a":1}"#, "type is required"),
            (r#"{"type":"Bad Type"}"#, "is not valid"),
            (r#"{"type":"x","id":null}"#, "id must be a string"),
        ] {
            let err = check_line(line, 1, Some("f")).err().unwrap();
            assert!(err.contains(reason), "{line}: {err}");
        }
    }

    #[test]
    fn refusals_name_the_event() {
        let failure = |message: &str, field: Option<&str>| ApiFailure {
            status: reqwest::StatusCode::BAD_REQUEST,
            code: 4,
            message: message.into(),
            fields: field
                .map(|f| {
                    [(f.to_owned(), json!("type is required"))]
                        .into_iter()
                        .collect()
                })
                .unwrap_or_default(),
        };
        let named = failure("x", Some("events[12]"));
        assert_eq!(refused_index(&named), Some(12));
        assert_eq!(refused_reason(&named, 12), "type is required");
        let in_message = failure(r#"Ingest failed with error: "events[3]: too big""#, None);
        assert_eq!(refused_index(&in_message), Some(3));
        assert_eq!(refused_index(&failure("api_key not valid", None)), None);
    }

    #[test]
    fn since_takes_times_and_durations() {
        assert_eq!(
            since_time("2026-01-02T03:04:05Z").unwrap(),
            "2026-01-02T03:04:05Z"
        );
        let back = Timestamp::parse_rfc3339(&since_time("2h").unwrap()).unwrap();
        let expected = Timestamp::now().saturating_add_millis(-7_200_000);
        assert!((back.millis() - expected.millis()).abs() < 5_000);
        assert!(since_time("yesterday").is_err());
    }

    #[test]
    fn auth_failures_say_what_to_fix() {
        let failure = |code| ApiFailure {
            status: reqwest::StatusCode::UNAUTHORIZED,
            code,
            message: "m".into(),
            fields: Default::default(),
        };
        assert!(failure(43).to_string().contains("API secret is wrong"));
        assert!(failure(2).to_string().contains("no app with this API key"));
    }
}
