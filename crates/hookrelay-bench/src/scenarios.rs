//! The scenarios. Each starts its own receivers and `hookrelay serve` (embedded SQLite, fsync on:
//! the default durability), drives load through the real API, and measures at the receivers.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;

use crate::load::{self, Acks};
use crate::receivers::{self, Arrivals};
use crate::server::{self, Server};

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub max_events: usize,
    pub steady_rate: usize,
    pub steady_seconds: u64,
    pub fanout_events: usize,
    pub backlog_events: usize,
    pub baseline_messages: usize,
    pub rate_limit_seconds: u64,
    pub cluster_rate: usize,
    pub cluster_seconds: u64,
    pub low_rate: usize,
    pub low_rate_seconds: u64,
}

impl Sizes {
    pub fn full() -> Self {
        Self {
            max_events: 300_000,
            steady_rate: 5_000,
            steady_seconds: 60,
            fanout_events: 50_000,
            backlog_events: 1_000_000,
            baseline_messages: 300_000,
            rate_limit_seconds: 30,
            cluster_rate: 1_000,
            cluster_seconds: 30,
            low_rate: 200,
            low_rate_seconds: 60,
        }
    }

    pub fn quick() -> Self {
        Self {
            max_events: 5_000,
            steady_rate: 1_000,
            steady_seconds: 3,
            fanout_events: 1_000,
            backlog_events: 10_000,
            baseline_messages: 5_000,
            rate_limit_seconds: 3,
            cluster_rate: 200,
            cluster_seconds: 9,
            low_rate: 200,
            low_rate_seconds: 3,
        }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub events: usize,
    pub ingested_per_s: Option<f64>,
    pub delivered_per_s: Option<f64>,
    pub latency_ms: Option<Percentiles>,
    pub peak_rss_mib: Option<f64>,
    pub drain_per_s: Option<f64>,
    /// CPU time (user + system) the hookrelay process spent per event (per delivery in
    /// fanout), in microseconds: a figure that noisy neighbours on a shared machine move far
    /// less than throughput.
    pub cpu_us_per_event: Option<f64>,
    /// Deliveries of an event a destination already had (cluster).
    pub duplicates: Option<u64>,
    /// Bytes the server wrote to disk per event (from /proc), in KiB.
    pub disk_kib_per_event: Option<f64>,
    /// How long the hooks of a killed node went without a delivery (cluster), in seconds.
    pub takeover_s: Option<f64>,
    pub note: String,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

fn percentiles(mut values: Vec<f64>) -> Percentiles {
    values.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| values[((values.len() as f64 - 1.0) * q).round() as usize];
    Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// Server configuration for the benchmark: the defaults, with a short hook backoff so the backlog
/// scenario measures draining rather than waiting.
const CONFIG: &str = "[delivery]\nhook_backoff_cap = \"500ms\"\n";

pub(crate) async fn wait_for(
    what: &str,
    timeout: Duration,
    done: impl Fn() -> bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Receivers for `destinations` destinations and a server pointed at them.
struct Rig {
    epoch: Instant,
    arrivals: Arc<Arrivals>,
    port: u16,
    server: Arc<Server>,
}

async fn rig(bin: &Path, events: usize, destinations: usize, down: bool) -> anyhow::Result<Rig> {
    let epoch = Instant::now();
    let arrivals = Arrivals::new(epoch, events, destinations);
    arrivals.down.store(down, Ordering::Relaxed);
    let port = receivers::start(arrivals.clone()).await?;
    let server = Arc::new(Server::start(bin, &format!("http://127.0.0.1:{port}"), CONFIG).await?);
    Ok(Rig {
        epoch,
        arrivals,
        port,
        server,
    })
}

/// Every event delivered to every destination, or an error naming what is missing.
fn all_delivered(arrivals: &Arrivals, destinations: usize, events: usize) -> bool {
    (0..destinations).all(|d| arrivals.delivered(d) >= events as u64)
}

fn latencies(arrivals: &Arrivals, acks: &Acks, events: usize) -> anyhow::Result<Percentiles> {
    let mut ms = Vec::with_capacity(events);
    for n in 0..events {
        let Some(arrived) = arrivals.arrival(n) else {
            bail!("event {n} never arrived");
        };
        let acked = acks.at[n].load(Ordering::Relaxed);
        // An event can arrive before its request's answer is read by the generator: 0 ms.
        ms.push(arrived.saturating_sub(acked) as f64 / 1e6);
    }
    Ok(percentiles(ms))
}

pub async fn max_sqs(bin: &Path, sizes: &Sizes) -> anyhow::Result<Outcome> {
    let note = "1 KB events, 100 per request, 8 requests in flight, 1 SQS hook";
    one_sqs_hook_flat_out(bin, sizes, "max-sqs", server::sqs_hook(0), note).await
}

/// max-sqs with a 5-condition content filter that every event passes: the difference in CPU
/// per event is what evaluating the filter costs.
pub async fn filter(bin: &Path, sizes: &Sizes) -> anyhow::Result<Outcome> {
    let mut hook = server::sqs_hook(0);
    hook["filter"] = serde_json::json!({
        "type": ["message.new"],
        "cid": [{"prefix": "messaging:"}],
        "message.user.id": [{"prefix": "u"}],
        "message.id": [{"exists": true}],
        "message.deleted_at": [{"exists": false}],
    });
    let note = "max-sqs with a 5-condition content filter every event passes";
    one_sqs_hook_flat_out(bin, sizes, "filter", hook, note).await
}

async fn one_sqs_hook_flat_out(
    bin: &Path,
    sizes: &Sizes,
    name: &str,
    hook: serde_json::Value,
    note: &str,
) -> anyhow::Result<Outcome> {
    let n = sizes.max_events;
    let Rig {
        epoch,
        arrivals,
        server,
        ..
    } = rig(bin, n, 1, false).await?;
    server.set_hooks(vec![hook]).await?;
    let acks = Acks::new(n);
    let started = epoch.elapsed();
    let ingest = load::as_fast_as_possible(server.clone(), acks.clone(), epoch, n, 100, 8).await?;
    wait_for("max-sqs deliveries", Duration::from_secs(600), || {
        all_delivered(&arrivals, 1, n)
    })
    .await?;
    let last = (0..n)
        .filter_map(|i| arrivals.arrival(i))
        .max()
        .unwrap_or_default();
    let delivery_secs = (last as f64 / 1e9) - started.as_secs_f64();
    Ok(Outcome {
        scenario: name.into(),
        events: n,
        ingested_per_s: Some(n as f64 / ingest.as_secs_f64()),
        delivered_per_s: Some(n as f64 / delivery_secs),
        latency_ms: Some(latencies(&arrivals, &acks, n)?),
        peak_rss_mib: Some(server.peak_rss_mib()),
        cpu_us_per_event: server.cpu_seconds().map(|s| s * 1e6 / n as f64),
        note: note.into(),
        ..Outcome::default()
    })
}

/// Two hooks on one app: a webhook limited to 100 events/s and an unlimited SQS hook. The
/// limited hook's deliveries are counted each second over `rate_limit_seconds` while its
/// backlog lasts; the unlimited hook's rate is set beside max-sqs's.
pub async fn rate_limit(bin: &Path, sizes: &Sizes) -> anyhow::Result<Outcome> {
    const LIMIT: u64 = 100;
    let seconds = sizes.rate_limit_seconds;
    let n = sizes.max_events.max((LIMIT * (seconds + 5)) as usize);
    let Rig {
        epoch,
        arrivals,
        port,
        server,
    } = rig(bin, n, 2, false).await?;
    let mut limited = server::webhook_hook(port, 0);
    limited["rate_limit"] = LIMIT.into();
    server.set_hooks(vec![limited, server::sqs_hook(1)]).await?;
    let acks = Acks::new(n);
    let started = epoch.elapsed();
    let load = tokio::spawn(load::as_fast_as_possible(
        server.clone(),
        acks,
        epoch,
        n,
        100,
        8,
    ));
    wait_for(
        "the limited hook's first delivery",
        Duration::from_secs(60),
        || arrivals.delivered(0) > 0,
    )
    .await?;
    let mut per_second = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last = arrivals.delivered(0);
    for _ in 0..seconds {
        ticker.tick().await;
        let now = arrivals.delivered(0);
        per_second.push((now - last) as f64);
        last = now;
    }
    load.await??;
    wait_for(
        "the unlimited hook's deliveries",
        Duration::from_secs(600),
        || arrivals.delivered(1) >= n as u64,
    )
    .await?;
    // Each event's first arrival is at the unlimited hook (the limited one is far behind).
    let done = (0..n)
        .filter_map(|i| arrivals.arrival(i))
        .max()
        .unwrap_or_default();
    let unlimited_secs = done as f64 / 1e9 - started.as_secs_f64();
    let cpu = server.cpu_seconds();
    let mean = per_second.iter().sum::<f64>() / per_second.len().max(1) as f64;
    let min = per_second.iter().copied().fold(f64::INFINITY, f64::min);
    let max = per_second.iter().copied().fold(0.0, f64::max);
    Ok(Outcome {
        scenario: "rate-limit".into(),
        events: n,
        delivered_per_s: Some(n as f64 / unlimited_secs),
        // Per event ingested: the unlimited hook has delivered them all, the limited one a few.
        cpu_us_per_event: cpu.map(|s| s * 1e6 / n as f64),
        note: format!(
            "webhook hook limited to {LIMIT}/s: {mean:.1}/s mean, {min:.0} to {max:.0} per second over {seconds} s ({}); deliver/s = the unlimited SQS hook of the same app",
            per_second
                .iter()
                .map(|n| format!("{n:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        ..Outcome::default()
    })
}

pub async fn steady(bin: &Path, sizes: &Sizes) -> anyhow::Result<Outcome> {
    let note = format!(
        "{} events/s for {} s, 1 SQS hook",
        sizes.steady_rate, sizes.steady_seconds
    );
    let hook = |_: u16| server::sqs_hook(0);
    at_a_steady_rate(
        bin,
        sizes.steady_rate,
        sizes.steady_seconds,
        hook,
        "steady",
        note,
    )
    .await
}

/// Light traffic: what an event costs when the server is mostly idle (wake-ups, commits and
/// fsyncs no longer shared by many events): CPU and bytes written to disk per event.
pub async fn low_rate(bin: &Path, sizes: &Sizes) -> anyhow::Result<Outcome> {
    let (rate, seconds) = (sizes.low_rate, sizes.low_rate_seconds);
    let note = format!("{rate} events/s for {seconds} s (2 per request), 1 webhook hook");
    at_a_steady_rate(
        bin,
        rate,
        seconds,
        |port| server::webhook_hook(port, 0),
        "low-rate",
        note,
    )
    .await
}

/// `rate` events/s for `seconds` to one hook; latency, and CPU and disk writes per event over
/// the run.
async fn at_a_steady_rate(
    bin: &Path,
    rate: usize,
    seconds: u64,
    hook: impl Fn(u16) -> serde_json::Value,
    scenario: &str,
    note: String,
) -> anyhow::Result<Outcome> {
    let n = rate * seconds as usize;
    let Rig {
        epoch,
        arrivals,
        port,
        server,
    } = rig(bin, n, 1, false).await?;
    server.set_hooks(vec![hook(port)]).await?;
    let acks = Acks::new(n);
    let (cpu_before, written_before) = (server.cpu_seconds(), server.written_bytes());
    let sent = load::steady(server.clone(), acks.clone(), epoch, rate, seconds).await?;
    wait_for("steady deliveries", Duration::from_secs(120), || {
        all_delivered(&arrivals, 1, sent)
    })
    .await?;
    let cpu = server.cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    let written = server
        .written_bytes()
        .zip(written_before)
        .map(|(a, b)| a.saturating_sub(b));
    Ok(Outcome {
        scenario: scenario.into(),
        events: sent,
        latency_ms: Some(latencies(&arrivals, &acks, sent)?),
        peak_rss_mib: Some(server.peak_rss_mib()),
        cpu_us_per_event: cpu.map(|s| s * 1e6 / sent as f64),
        disk_kib_per_event: written.map(|b| b as f64 / 1024.0 / sent as f64),
        note,
        ..Outcome::default()
    })
}

pub async fn fanout(bin: &Path, sizes: &Sizes) -> anyhow::Result<Outcome> {
    let n = sizes.fanout_events;
    let Rig {
        epoch,
        arrivals,
        port,
        server,
    } = rig(bin, n, 10, false).await?;
    let mut hooks: Vec<_> = (0..4).map(server::sqs_hook).collect();
    hooks.extend((4..7).map(server::sns_hook));
    hooks.extend((7..10).map(|i| server::webhook_hook(port, i)));
    server.set_hooks(hooks).await?;
    let acks = Acks::new(n);
    let started = Instant::now();
    let ingest = load::as_fast_as_possible(server.clone(), acks, epoch, n, 100, 8).await?;
    wait_for("fanout deliveries", Duration::from_secs(600), || {
        all_delivered(&arrivals, 10, n)
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();
    Ok(Outcome {
        scenario: "fanout".into(),
        events: n,
        ingested_per_s: Some(n as f64 / ingest.as_secs_f64()),
        delivered_per_s: Some(10.0 * n as f64 / secs),
        peak_rss_mib: Some(server.peak_rss_mib()),
        cpu_us_per_event: server.cpu_seconds().map(|s| s * 1e6 / (10 * n) as f64),
        note: "10 hooks (4 SQS, 3 SNS, 3 webhook); delivered = deliveries/s".into(),
        ..Outcome::default()
    })
}

pub async fn backlog(bin: &Path, sizes: &Sizes) -> anyhow::Result<Outcome> {
    let n = sizes.backlog_events;
    let Rig {
        epoch,
        arrivals,
        server,
        ..
    } = rig(bin, n, 1, true).await?;
    server.set_hooks(vec![server::sqs_hook(0)]).await?;
    let acks = Acks::new(n);
    // Sample memory while the backlog grows.
    let sampler = {
        let server = server.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                samples.push(server.rss_mib());
                if samples.len() > 100_000 {
                    return samples;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let ingest = load::as_fast_as_possible(server.clone(), acks, epoch, n, 100, 8).await?;
    let rss_after_ingest = server.rss_mib();
    sampler.abort();
    arrivals.down.store(false, Ordering::Relaxed);
    let up = Instant::now();
    wait_for("backlog drain", Duration::from_secs(900), || {
        all_delivered(&arrivals, 1, n)
    })
    .await?;
    let drain = up.elapsed().as_secs_f64();
    Ok(Outcome {
        scenario: "backlog".into(),
        events: n,
        ingested_per_s: Some(n as f64 / ingest.as_secs_f64()),
        peak_rss_mib: Some(server.peak_rss_mib()),
        cpu_us_per_event: server.cpu_seconds().map(|s| s * 1e6 / n as f64),
        drain_per_s: Some(n as f64 / drain),
        note: format!(
            "destination down during ingest; RSS when ingest ended {rss_after_ingest:.0} MiB"
        ),
        ..Outcome::default()
    })
}

/// The ceiling of this machine: the same receiver driven by the AWS SDK directly, 1 KB messages
/// in batches of 10, 8 calls in flight (hookrelay's default per hook).
pub async fn baseline(sizes: &Sizes) -> anyhow::Result<Outcome> {
    let n = sizes.baseline_messages;
    let epoch = Instant::now();
    let arrivals = Arrivals::new(epoch, n, 1);
    let port = receivers::start(arrivals.clone()).await?;
    let http = aws_smithy_http_client::Builder::new().build_http();
    let conf = aws_sdk_sqs::config::Builder::new()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .http_client(http)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "bench", "bench", None, None, "bench",
        ))
        .build();
    let client = aws_sdk_sqs::Client::from_conf(conf);
    let body = "x".repeat(1000);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu_before = server::cpu_seconds_of("self");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, next, body) = (client.clone(), next.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(10, Ordering::Relaxed);
                if first >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let mut req = client
                    .send_message_batch()
                    .queue_url("https://sqs.us-east-1.amazonaws.com/123456789012/q0");
                for i in first..(first + 10).min(n) {
                    let attr = aws_sdk_sqs::types::MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(i.to_string())
                        .build()?;
                    req = req.entries(
                        aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                            .id((i - first).to_string())
                            .message_body(&body)
                            .message_attributes("event_id", attr)
                            .build()?,
                    );
                }
                req.send().await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = server::cpu_seconds_of("self")
        .zip(cpu_before)
        .map(|(a, b)| a - b);
    if !all_delivered(&arrivals, 1, n) {
        bail!("baseline: not every message arrived");
    }
    Ok(Outcome {
        scenario: "baseline".into(),
        events: n,
        delivered_per_s: Some(n as f64 / secs),
        cpu_us_per_event: cpu.map(|s| s * 1e6 / n as f64),
        note: "AWS SDK straight to the receiver: SendMessageBatch of 10 x 1 KB, 8 in flight; CPU = the SDK client and the receiver together (this process)".into(),
        ..Outcome::default()
    })
}
