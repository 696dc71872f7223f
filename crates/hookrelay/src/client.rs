//! The commands that work against a running server (`hooks`, `dead-letters`, `events send`):
//! the same HTTP API and authentication as Stream's SDKs use, with tables for people and
//! `--json` for scripts.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, Subcommand};
use hookrelay_core::sign::hmac_sha256;
use serde_json::{Value, json};

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
    /// Send events from a file of JSON lines (one event object per line), or `-` for stdin,
    /// in batches; shows progress on a terminal and a summary at the end.
    Send {
        #[command(flatten)]
        remote: Remote,
        /// The file to read (`-` = standard input).
        #[arg(default_value = "-")]
        file: String,
        /// Events per request (at most 1000).
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
}

struct Client {
    http: reqwest::Client,
    remote: Remote,
    token: String,
}

impl Client {
    fn new(remote: Remote) -> anyhow::Result<Self> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"server":true}"#);
        let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(
            remote.api_secret.as_bytes(),
            &[header.as_bytes(), b".", claims.as_bytes()],
        ));
        Ok(Self {
            http: reqwest::Client::builder()
                .user_agent(concat!("hookrelay-cli/", env!("CARGO_PKG_VERSION")))
                .build()?,
            token: format!("{header}.{claims}.{signature}"),
            remote,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.remote.url.trim_end_matches('/'));
        let mut request = self
            .http
            .request(method, &url)
            .query(&[("api_key", &self.remote.api_key)])
            .header("Authorization", &self.token)
            .header("stream-auth-type", "jwt");
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(&body)?);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {url}"))?;
        let mut value: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{url} answered {status} with something that is not JSON"))?;
        if !status.is_success() {
            let message = value["message"].as_str().unwrap_or("no message");
            bail!("{status}: {message}");
        }
        if let Some(map) = value.as_object_mut() {
            map.remove("duration");
        }
        Ok(value)
    }
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
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
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

pub async fn hooks(cmd: HooksCommand) -> anyhow::Result<()> {
    match cmd {
        HooksCommand::List { remote } => {
            let json = remote.json;
            let answer = Client::new(remote)?
                .call(reqwest::Method::GET, "/v1/hooks", None)
                .await?;
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
            );
        }
        HooksCommand::Status { remote, id } => {
            let json = remote.json;
            let answer = Client::new(remote)?
                .call(reqwest::Method::GET, &format!("/v1/hooks/{id}"), None)
                .await?;
            if json {
                return print_json(&answer);
            }
            let h = &answer["hook"];
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
                println!("{label:<20} {value}");
            }
        }
    }
    Ok(())
}

pub async fn dead_letters(cmd: DeadLettersCommand) -> anyhow::Result<()> {
    match cmd {
        DeadLettersCommand::List { remote, id, limit } => {
            let json = remote.json;
            let answer = Client::new(remote)?
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/hooks/{id}/dead_letters?limit={limit}"),
                    None,
                )
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
            );
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
                .call(
                    reqwest::Method::POST,
                    &format!("/v1/hooks/{id}/dead_letters/replay"),
                    Some(body),
                )
                .await?;
            if json {
                return print_json(&answer);
            }
            println!(
                "replayed {} dead letter(s) of hook {id}",
                cell(&answer["replayed"])
            );
        }
    }
    Ok(())
}

pub async fn events(cmd: EventsCommand) -> anyhow::Result<()> {
    let EventsCommand::Send {
        remote,
        file,
        batch,
    } = cmd;
    let batch = batch.clamp(1, hookrelay_core::limits::MAX_EVENTS_PER_REQUEST);
    let json = remote.json;
    let client = Client::new(remote)?;
    let reader: Box<dyn BufRead> = if file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&file).with_context(|| format!("opening {file}"))?,
        ))
    };
    let progress = std::io::stderr().is_terminal();
    let started = Instant::now();
    let (mut sent, mut duplicates, mut refused) = (0usize, 0usize, Vec::new());
    let mut pending: Vec<(usize, Value)> = Vec::with_capacity(batch);
    let mut lines = reader.lines().enumerate().peekable();
    while let Some((index, line)) = lines.next() {
        let line = line.context("reading the input")?;
        if !line.trim().is_empty() {
            match serde_json::from_str::<Value>(&line) {
                Ok(event) => pending.push((index + 1, event)),
                Err(e) => refused.push(format!("line {}: not JSON: {e}", index + 1)),
            }
        }
        if pending.len() == batch || (lines.peek().is_none() && !pending.is_empty()) {
            let first_line = pending[0].0;
            let body = json!({"events": pending.iter().map(|(_, e)| e).collect::<Vec<_>>()});
            match client
                .call(reqwest::Method::POST, "/v1/events", Some(body))
                .await
            {
                Ok(answer) => {
                    let events = answer["events"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    sent += events.len();
                    duplicates += events.iter().filter(|e| e["duplicate"] == true).count();
                }
                Err(e) => refused.push(format!(
                    "lines {first_line}-{}: refused, none stored: {e}",
                    pending.last().map_or(first_line, |p| p.0)
                )),
            }
            pending.clear();
            if progress {
                let rate = sent as f64 / started.elapsed().as_secs_f64().max(1e-9);
                eprint!("\r{sent} events sent ({rate:.0}/s)");
                std::io::stderr().flush().ok();
            }
        }
    }
    if progress {
        eprintln!();
    }
    let seconds = started.elapsed().as_secs_f64();
    let summary = json!({
        "sent": sent,
        "duplicates": duplicates,
        "refused": refused,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "events_per_second": (sent as f64 / seconds.max(1e-9)).round(),
    });
    if json {
        print_json(&summary)?;
    } else {
        println!(
            "sent {sent} events ({duplicates} duplicates) in {seconds:.2}s, {:.0} events/s",
            sent as f64 / seconds.max(1e-9)
        );
        for r in &refused {
            println!("  {r}");
        }
    }
    if !refused.is_empty() {
        bail!("{} part(s) of the input were refused", refused.len());
    }
    Ok(())
}
