//! `hookrelay-bench`: starts `hookrelay serve` on a temporary data directory (embedded SQLite,
//! fsync on; or a fresh PostgreSQL database with `--store postgres`), fast local receivers (SQS, SNS, webhook), configures hooks through the real API,
//! drives load through `POST /v1/events`, and prints a results table plus a JSON file.
//! Run it with `scripts/bench.sh` (which builds the release binary first).
//!
//! # Layout
//! * `receivers`: the SQS/SNS/webhook endpoints that time each event's arrival.
//! * `server`: the `hookrelay serve` process under test, and its memory.
//! * `load`: the ingest load generator.
//! * `scenarios`: max-sqs, filter, rate-limit, steady, low-rate, fanout, backlog, baseline.
//! * `cluster`: three nodes on one PostgreSQL database, through planned moves and a crash.

mod cluster;
mod load;
mod receivers;
mod scenarios;
mod server;

use std::path::PathBuf;

use clap::Parser;
use scenarios::{Outcome, Sizes};

#[derive(Parser)]
#[command(about = "The hookrelay benchmark: ingest to delivered, throughput, latency, memory")]
struct Args {
    /// Scenarios to run (comma-separated): max-sqs, filter, rate-limit, steady, fanout,
    /// backlog, baseline, low-rate, cluster (always on PostgreSQL: --database-url), or all;
    /// backlog-10m (the backlog of 10,000,000 events, a long run) only when named.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Small sizes, for a smoke test: every event must still be delivered.
    #[arg(long)]
    quick: bool,
    /// The hookrelay binary to measure.
    #[arg(long, default_value = "target/release/hookrelay")]
    bin: PathBuf,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench-results/results.json")]
    out: PathBuf,
    /// Override the event count of max-sqs.
    #[arg(long)]
    events: Option<usize>,
    /// Override the rate of steady (events/s).
    #[arg(long)]
    rate: Option<usize>,
    /// Override the duration of steady (seconds).
    #[arg(long)]
    seconds: Option<u64>,
    /// Override the event count of backlog.
    #[arg(long)]
    backlog_events: Option<usize>,
    /// The store hookrelay runs on: sqlite (embedded, the default) or postgres.
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    store: String,
    /// With --store postgres, and for the cluster scenario: the server (each run gets a fresh
    /// database on it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database_url: String,
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

fn fmt1(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.store == "postgres" {
        let _ = server::POSTGRES.set(args.database_url.clone());
    }
    eprintln!("store: {}", args.store);
    let mut sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    if let Some(n) = args.events {
        sizes.max_events = n;
        sizes.baseline_messages = n;
    }
    if let Some(r) = args.rate {
        sizes.steady_rate = r;
    }
    if let Some(s) = args.seconds {
        sizes.steady_seconds = s;
    }
    if let Some(n) = args.backlog_events {
        sizes.backlog_events = n;
    }
    let wanted: Vec<&str> = if args.scenario == "all" {
        vec![
            "baseline",
            "max-sqs",
            "filter",
            "rate-limit",
            "steady",
            "fanout",
            "backlog",
            "low-rate",
            "cluster",
        ]
    } else {
        args.scenario.split(',').collect()
    };
    let mut results: Vec<Outcome> = Vec::new();
    for name in wanted {
        eprintln!("running {name} ...");
        let outcome = match name {
            "max-sqs" => scenarios::max_sqs(&args.bin, &sizes).await?,
            "filter" => scenarios::filter(&args.bin, &sizes).await?,
            "rate-limit" => scenarios::rate_limit(&args.bin, &sizes).await?,
            "steady" => scenarios::steady(&args.bin, &sizes).await?,
            "fanout" => scenarios::fanout(&args.bin, &sizes).await?,
            "backlog" => scenarios::backlog(&args.bin, &sizes).await?,
            "backlog-10m" => {
                let sizes = Sizes {
                    backlog_events: 10_000_000,
                    ..sizes.clone()
                };
                scenarios::backlog(&args.bin, &sizes).await?
            }
            "low-rate" => scenarios::low_rate(&args.bin, &sizes).await?,
            "baseline" => scenarios::baseline(&sizes).await?,
            "cluster" => cluster::cluster(&args.bin, &sizes, &args.database_url).await?,
            other => anyhow::bail!("unknown scenario {other}"),
        };
        results.push(outcome);
    }
    let baseline = results
        .iter()
        .find(|r| r.scenario == "baseline")
        .and_then(|r| r.delivered_per_s);
    println!(
        "{:<10} {:>9} {:>11} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>8} {:>8}",
        "scenario",
        "events",
        "ingest/s",
        "deliver/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "RSS MiB",
        "drain/s",
        "×base",
        "CPU µs",
        "disk KiB"
    );
    for r in &results {
        let lat = r.latency_ms.as_ref();
        let ratio = match (r.scenario.as_str(), r.delivered_per_s, baseline) {
            ("max-sqs", Some(d), Some(b)) => format!("{:.2}", d / b),
            _ => "-".into(),
        };
        println!(
            "{:<10} {:>9} {:>11} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>8} {:>8}",
            r.scenario,
            r.events,
            fmt(r.ingested_per_s),
            fmt(r.delivered_per_s),
            fmt1(lat.map(|l| l.p50)),
            fmt1(lat.map(|l| l.p95)),
            fmt1(lat.map(|l| l.p99)),
            fmt1(lat.map(|l| l.max)),
            fmt1(r.peak_rss_mib),
            fmt(r.drain_per_s),
            ratio,
            fmt1(r.cpu_us_per_event),
            fmt1(r.disk_kib_per_event)
        );
    }
    for r in &results {
        println!("{}: {}", r.scenario, r.note);
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)?)?;
    eprintln!("results written to {}", args.out.display());
    Ok(())
}
