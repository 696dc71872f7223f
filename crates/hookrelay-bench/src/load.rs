//! The load generator: posts batches of ~1 KB events to `POST /v1/events` and records when each
//! batch was acknowledged (the start of the end-to-end latency).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::server::Server;

/// Acknowledgement time (ns after the epoch) of each event, by event number.
pub struct Acks {
    pub at: Vec<AtomicU64>,
}

impl Acks {
    pub fn new(events: usize) -> Arc<Self> {
        Arc::new(Self {
            at: (0..events).map(|_| AtomicU64::new(0)).collect(),
        })
    }
}

/// One request body: events `first..first + n`, each about 1 KB.
pub fn batch_body(first: usize, n: usize) -> Vec<u8> {
    const TEXT: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. ";
    let text = TEXT.repeat(7); // ~900 bytes: events come out at ~1 KB
    let mut body = String::with_capacity(n * 1100 + 16);
    body.push_str(r#"{"events":["#);
    for i in first..first + n {
        if i > first {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"id":"{i}","type":"message.new","cid":"messaging:room-{}","message":{{"id":"m{i}","text":"{text}","user":{{"id":"u{}"}}}}}}"#,
            i % 64,
            i % 1000
        ));
    }
    body.push_str("]}");
    body.into_bytes()
}

pub async fn post(server: &Server, first: usize, n: usize) -> anyhow::Result<()> {
    let r = server
        .request(reqwest::Method::POST, "/v1/events")
        .body(batch_body(first, n))
        .send()
        .await?;
    if r.status().as_u16() != 201 {
        bail!("ingest answered {}: {}", r.status(), r.text().await?);
    }
    Ok(())
}

/// Sends `total` events in batches of `batch`, `concurrency` requests at a time, as fast as the
/// server takes them. Returns the wall time.
pub async fn as_fast_as_possible(
    server: Arc<Server>,
    acks: Arc<Acks>,
    epoch: Instant,
    total: usize,
    batch: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (server, acks, next) = (server.clone(), acks.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let n = batch.min(total - first);
                post(&server, first, n).await?;
                let now = epoch.elapsed().as_nanos() as u64;
                for a in &acks.at[first..first + n] {
                    a.store(now, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

/// Sends `rate` events per second for `seconds`, in batches every 10 ms.
pub async fn steady(
    server: Arc<Server>,
    acks: Arc<Acks>,
    epoch: Instant,
    rate: usize,
    seconds: u64,
) -> anyhow::Result<usize> {
    let per_tick = (rate / 100).max(1);
    let ticks = seconds * 100;
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for tick in 0..ticks as usize {
        interval.tick().await;
        let (server, acks) = (server.clone(), acks.clone());
        let first = tick * per_tick;
        tasks.spawn(async move {
            post(&server, first, per_tick).await?;
            let now = epoch.elapsed().as_nanos() as u64;
            for a in &acks.at[first..first + per_tick] {
                a.store(now, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        });
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(ticks as usize * per_tick)
}
