//! `hookrelay serve`, and [`run`], the server on a socket the caller bound (what tests use).
//!
//! Start-up order: logging, server key, metrics recorder, store (migrations), first app,
//! dispatcher, garbage collector, HTTP API. Shutdown (SIGTERM or Ctrl-C) runs the other way: the
//! API stops accepting and finishes its requests, then every hook worker finishes the round it is
//! in and records its progress, then the store closes. Everything accepted before the signal is
//! already durable.

use std::sync::Arc;

use anyhow::Context;
use hookrelay_api::server::HttpSettings;
use hookrelay_api::{ApiLimits, AppState};
use hookrelay_core::hook::input::HookRules;
use hookrelay_core::{Secret, Timestamp};
use hookrelay_delivery::aws::AwsSettings;
use hookrelay_delivery::destinations::webhook::WebhookSettings;
use hookrelay_delivery::retry::RetryPolicy;
use hookrelay_delivery::{DeliverySettings, Dispatcher};
use hookrelay_store::{App, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Environment};
use crate::keys;

/// `hookrelay serve`: logging, the listening socket and the signals, around [`run`].
pub async fn serve(config: Config, address_file: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    init_logging(config.log_json);
    // The port first: a server that cannot listen must not create an app (and print its
    // secret) before it fails.
    let listener = tokio::net::TcpListener::bind(config.listen.as_str())
        .await
        .with_context(|| {
            format!(
                "listening on {} (set listen, or --listen, to a free host:port)",
                config.listen
            )
        })?;
    if let Some(path) = address_file {
        // Written whole, then renamed: a reader never sees half an address.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, listener.local_addr()?.to_string())
            .and_then(|()| std::fs::rename(&partial, &path))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_shutdown(shutdown.clone()));
    tokio::spawn(shutdown_watchdog(shutdown.clone(), config.shutdown_grace));
    run(config, listener, shutdown).await
}

/// The server, on a socket the caller bound, until `shutdown` is cancelled: store, first app,
/// dispatcher, garbage collector, metrics upkeep and the API, every task joined before it
/// returns. Tests run it in-process on a port of their own.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Installed first: the hook workers keep handles to their metrics, and a handle taken
    // before the recorder exists records nothing.
    let metrics = if config.metrics.enabled {
        Some(install_metrics()?)
    } else {
        None
    };
    let store = crate::store::open(&config).await?;
    ensure_first_app(&*store, &config.env).await?;

    let (dispatcher, delivery) = Dispatcher::new(store.clone(), delivery_settings(&config)?)
        .await
        .context(
            "building the HTTP client for deliveries (it needs the system's CA certificates)",
        )?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(dispatcher.run(shutdown.clone()));
    tasks.spawn(collect_garbage(
        store.clone(),
        config.clone(),
        shutdown.clone(),
    ));

    let limits = ApiLimits {
        max_body_bytes: config.limits.max_body_bytes,
        max_event_bytes: config.limits.max_event_bytes,
        body_timeout: config.http.body_timeout,
    };
    if let Some(handle) = &metrics {
        tasks.spawn(metrics_upkeep(handle.clone(), shutdown.clone()));
    }
    let metrics_token = config
        .metrics
        .bearer_token
        .clone()
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    let state = AppState::new(store.clone(), limits, delivery, metrics)
        .with_hook_rules(HookRules {
            aws_endpoints: aws_endpoints(&config),
            secret_rotation_window: config.delivery.secret_rotation_window,
        })
        .with_metrics_token(metrics_token);
    let router = hookrelay_api::router(state);
    tracing::info!(listen = %listener.local_addr()?, data_dir = %config.data_dir.display(), "hookrelay is serving");

    let http = HttpSettings {
        max_connections: config.http.max_connections,
        header_timeout: config.http.header_timeout,
        drain_timeout: config.http.drain_timeout,
    };
    hookrelay_api::server::serve(listener, router, http, shutdown.clone()).await;
    tracing::info!("API stopped; finishing delivery rounds");
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    // Everything that writes has ended: the store writes what it holds and closes.
    if let Err(e) = store.close().await {
        tracing::warn!(error = %e, "closing the store");
    }
    tracing::info!("hookrelay stopped");
    Ok(())
}

/// The Prometheus recorder every `metrics::` call records into; `/metrics` renders it. A process
/// has one global recorder: a second server in the same process (tests) renders its own, empty.
fn install_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    // Seconds, from 1 ms to 1 min: delivery latency, ingest requests, store commits.
    const BUCKETS: &[f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            BUCKETS,
        )?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("hookrelay_store_commit_events".into()),
            &[1.0, 10.0, 100.0, 1000.0, 10000.0],
        )?
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::debug!("a metrics recorder is already installed in this process");
    }
    Ok(handle)
}

/// Without an HTTP exporter, the handle needs its periodic upkeep (histogram rotation).
async fn metrics_upkeep(
    handle: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => handle.run_upkeep(),
            _ = shutdown.cancelled() => return,
        }
    }
}

fn delivery_settings(config: &Config) -> anyhow::Result<DeliverySettings> {
    let d = &config.delivery;
    let mut aws = AwsSettings {
        endpoint_url: config.aws.endpoint_url.clone(),
        ..AwsSettings::default()
    };
    if let Some(timeout) = config.aws.call_timeout {
        aws.call_timeout = timeout;
    }
    let deny = deny_ranges(&config.webhook.deny_cidrs)?;
    Ok(DeliverySettings {
        retry: RetryPolicy {
            base: d.retry_base,
            cap: d.retry_cap,
            window: d.retry_window,
        },
        hook_backoff: RetryPolicy {
            base: d.retry_base,
            cap: d.hook_backoff_cap,
            window: std::time::Duration::MAX,
        },
        batches_in_flight: d.batches_in_flight,
        read_batch: d.read_batch,
        breaker_failures: d.breaker_failures,
        aws,
        webhook: WebhookSettings {
            timeout: config.webhook.timeout,
            in_flight: config.webhook.in_flight,
            deny,
        },
    })
}

/// The AWS endpoint overrides delivery uses: the config's, then the SDK's standard variables.
/// An emulator's queue URL is accepted in a hook only when one of these points at it.
fn aws_endpoints(config: &Config) -> Vec<String> {
    let from_env = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"]
        .into_iter()
        .filter_map(|name| std::env::var(name).ok());
    config
        .aws
        .endpoint_url
        .iter()
        .cloned()
        .chain(from_env)
        .filter(|e| !e.is_empty())
        .collect()
}

/// The ranges `internal` stands for in `webhook.deny_cidrs`: this machine, private networks,
/// link-local (cloud metadata services live there), carrier-grade NAT, unique-local IPv6 and
/// the unspecified addresses.
const INTERNAL_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// `webhook.deny_cidrs`: CIDR ranges, and the word `internal` for [`INTERNAL_RANGES`].
fn deny_ranges(entries: &[String]) -> anyhow::Result<Vec<ipnet::IpNet>> {
    let mut ranges = Vec::new();
    for entry in entries {
        if entry == "internal" {
            ranges.extend(
                INTERNAL_RANGES
                    .iter()
                    .map(|r| r.parse::<ipnet::IpNet>().expect("a valid literal range")),
            );
        } else {
            ranges.push(entry.parse().with_context(|| {
                format!("webhook.deny_cidrs: {entry:?} is not a CIDR range (like 10.0.0.0/8) or \"internal\"")
            })?);
        }
    }
    Ok(ranges)
}

/// A fresh store gets one app, so the server is usable at once. On a store that has apps,
/// `HOOKRELAY_API_KEY` / `HOOKRELAY_API_SECRET` change nothing; a warning says so when they
/// would not authenticate, since the CLI reads the same variables.
async fn ensure_first_app(store: &dyn Store, env: &Environment) -> anyhow::Result<()> {
    let from_env = (
        env.api_key.clone(),
        env.api_secret.as_ref().map(|s| s.expose().to_owned()),
    );
    let apps = store.list_apps().await?;
    if !apps.is_empty() {
        if let Some(warning) = first_app_variables_warning(&apps, &from_env) {
            tracing::warn!("{warning}");
        }
        return Ok(());
    }
    match from_env {
        (Some(key), Some(secret)) => {
            match store
                .create_app("default", &key, &Secret::new(secret))
                .await
            {
                Ok(app) => {
                    tracing::info!(app_id = %app.id, api_key = %key, "created the first app from HOOKRELAY_API_KEY / HOOKRELAY_API_SECRET");
                }
                // Several nodes starting together on a new database: another one was first.
                Err(StoreError::ApiKeyTaken(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        _ => {
            let (key, secret) = (keys::new_api_key(), keys::new_api_secret());
            let app = store
                .create_app("default", &key, &Secret::new(secret.clone()))
                .await?;
            // Printed once, on stdout, not through the log: secrets never go to logs.
            println!(
                "Created the first app (id {}). Keep these; the secret is not shown again:",
                app.id
            );
            println!("  api key:    {key}");
            println!("  api secret: {secret}");
        }
    }
    Ok(())
}

/// What is wrong, if anything, with `HOOKRELAY_API_KEY` / `HOOKRELAY_API_SECRET` on a store
/// that already has apps. Never contains a secret.
fn first_app_variables_warning(
    apps: &[App],
    (key, secret): &(Option<String>, Option<String>),
) -> Option<String> {
    const IGNORED: &str = "they only create the first app of an empty store";
    match (key, secret) {
        (None, None) => None,
        (Some(key), _) => match apps.iter().find(|a| &a.api_key == key) {
            None => Some(format!(
                "HOOKRELAY_API_KEY is set to {key:?}, but no app has that key ({IGNORED}; this store has {} app(s): see `hookrelay apps list`)",
                apps.len()
            )),
            Some(app) => match secret {
                Some(secret) if !secret_matches(&app.api_secret, secret) => Some(format!(
                    "HOOKRELAY_API_SECRET is not the API secret of app {key:?} ({IGNORED}): clients using it get 401; use the app's secret, or rotate it with `hookrelay apps rotate-secret`"
                )),
                _ => None,
            },
        },
        (None, Some(_)) => Some(format!(
            "HOOKRELAY_API_SECRET is set without HOOKRELAY_API_KEY ({IGNORED}); it changes nothing here"
        )),
    }
}

fn secret_matches(stored: &Secret, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(stored.expose().as_bytes().ct_eq(given.as_bytes()))
}

async fn collect_garbage(store: Arc<dyn Store>, config: Config, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.retention.interval) => {}
            _ = shutdown.cancelled() => return,
        }
        let keep_ms = config.retention.keep.as_millis().min(i64::MAX as u128) as i64;
        let older_than = Timestamp::now().saturating_add_millis(-keep_ms);
        match store.collect_garbage(older_than).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "deleted delivered events past retention"),
            Err(e) => tracing::error!(error = %e, "garbage collection failed"),
        }
        match store
            .cap_delivery_log(hookrelay_store::MAX_ATTEMPTS_PER_HOOK)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "trimmed the delivery log to its size bound"),
            Err(e) => tracing::error!(error = %e, "trimming the delivery log failed"),
        }
    }
}

async fn signal_shutdown(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler at start-up");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested");
    shutdown.cancel();
}

/// Ends the process if the orderly shutdown takes longer than the grace period (a stuck client
/// or destination). Accepted events are durable already; in-flight rounds are simply repeated.
async fn shutdown_watchdog(shutdown: CancellationToken, grace: std::time::Duration) {
    shutdown.cancelled().await;
    tokio::time::sleep(grace).await;
    tracing::error!(
        grace_ms = grace.as_millis() as u64,
        "shutdown grace period exceeded; exiting now"
    );
    std::process::exit(1);
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOOKRELAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(crate::output::colour_on_stderr())
        // A log line that cannot be written (stderr on a full disk) is dropped: reporting it
        // would print to stderr too, which panics when that fails.
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(key: &str, secret: &str) -> App {
        App {
            id: hookrelay_store::AppId(1),
            name: "default".into(),
            api_key: key.into(),
            api_secret: Secret::new(secret),
            previous_api_secret: None,
            settings: Default::default(),
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn deny_cidrs_take_ranges_and_the_internal_preset() {
        let ranges = deny_ranges(&["internal".into(), "203.0.113.0/24".into()]).unwrap();
        let denied = |ip: &str| {
            ranges
                .iter()
                .any(|r| r.contains(&ip.parse::<std::net::IpAddr>().unwrap()))
        };
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "192.168.0.1",
            "::1",
            "fd00:ec2::254",
            "203.0.113.9",
        ] {
            assert!(denied(ip), "{ip}");
        }
        assert!(!denied("8.8.8.8"));
        let err = deny_ranges(&["intranet".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("internal"));
    }

    #[test]
    fn first_app_variables_are_checked_against_the_store_without_leaking_secrets() {
        let apps = [app("key1", "the-real-secret")];
        let env = |k: Option<&str>, s: Option<&str>| (k.map(String::from), s.map(String::from));
        for quiet in [
            env(None, None),
            env(Some("key1"), None),
            env(Some("key1"), Some("the-real-secret")),
        ] {
            assert_eq!(first_app_variables_warning(&apps, &quiet), None);
        }
        for (vars, names) in [
            (env(Some("other"), Some("x-secret-x")), "HOOKRELAY_API_KEY"),
            (
                env(Some("key1"), Some("x-secret-x")),
                "HOOKRELAY_API_SECRET",
            ),
            (env(None, Some("x-secret-x")), "HOOKRELAY_API_SECRET"),
        ] {
            let warning = first_app_variables_warning(&apps, &vars).unwrap();
            assert!(warning.contains(names), "{warning}");
            assert!(!warning.contains("x-secret-x") && !warning.contains("the-real-secret"));
        }
    }
}
