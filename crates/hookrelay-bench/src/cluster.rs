//! The `cluster` scenario: three `hookrelay serve` nodes on one PostgreSQL database on this
//! machine, five SQS hooks, a steady load spread over the nodes. A third of the way in, one node
//! is stopped (SIGTERM) while a new one joins (planned moves); two thirds in, the node holding
//! the most hooks is killed (`kill -9`). On one machine the point is correctness and cost per
//! event, not scale: what it measures is throughput, CPU per event (hookrelay's and
//! PostgreSQL's), duplicates of each kind of move, and how long the killed node's hooks went
//! silent.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::load;
use crate::receivers::{self, Arrivals};
use crate::scenarios::{Outcome, Sizes, wait_for};
use crate::server::{self, Server};

const HOOKS: usize = 5;
/// The benchmark's settings (defaults otherwise: lease_ttl 2 s).
const CONFIG: &str = "[delivery]\nhook_backoff_cap = \"500ms\"\n";

/// A database of the scenario's own on `server_url`, dropped at the end.
struct Database {
    server_url: String,
    name: String,
}

impl Database {
    fn create(server_url: &str) -> anyhow::Result<Self> {
        let name = format!("hookrelay_bench_cluster_{}", std::process::id());
        server::psql(server_url, &format!("DROP DATABASE IF EXISTS {name}"))?;
        server::psql(server_url, &format!("CREATE DATABASE {name}"))?;
        Ok(Self {
            server_url: server_url.to_owned(),
            name,
        })
    }

    fn url(&self) -> String {
        let base = self
            .server_url
            .rsplit_once('/')
            .map_or(self.server_url.as_str(), |(b, _)| b);
        format!("{base}/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = server::psql(&self.server_url, &sql);
    }
}

/// CPU seconds used by every PostgreSQL process on the machine, ended backends included (the
/// postmaster's children's time).
fn postgres_cpu_seconds() -> f64 {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != "postgres" {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // utime, stime, cutime, cstime: the 12th to 15th fields after the name.
        ticks += fields
            .iter()
            .skip(11)
            .take(4)
            .filter_map(|f| f.parse::<u64>().ok())
            .sum::<u64>();
    }
    ticks as f64 / 100.0
}

/// The nodes the load goes to (by name), and the CPU of those that have ended.
struct Nodes {
    live: Mutex<Vec<(String, Arc<Server>)>>,
    ended_cpu_s: Mutex<f64>,
}

impl Nodes {
    fn pick(&self, n: usize) -> Arc<Server> {
        let live = self.live.lock().unwrap();
        live[n % live.len()].1.clone()
    }

    /// Takes a node out of the load's rotation (in-flight requests get a moment to finish).
    async fn take_out(&self, name: &str) -> anyhow::Result<Arc<Server>> {
        let node = {
            let mut live = self.live.lock().unwrap();
            let Some(i) = live.iter().position(|(n, _)| n == name) else {
                anyhow::bail!("no live node {name}");
            };
            live.remove(i).1
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        *self.ended_cpu_s.lock().unwrap() += node.cpu_seconds().unwrap_or(0.0);
        Ok(node)
    }

    fn cpu_seconds(&self) -> f64 {
        let live: f64 = self
            .live
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, n)| n.cpu_seconds())
            .sum();
        live + *self.ended_cpu_s.lock().unwrap()
    }
}

async fn start_node(
    bin: &Path,
    aws: &str,
    url: &str,
    name: &str,
) -> anyhow::Result<(String, Arc<Server>)> {
    let node = Server::start_node(bin, aws, CONFIG, url, name).await?;
    Ok((name.to_owned(), Arc::new(node)))
}

pub async fn cluster(bin: &Path, sizes: &Sizes, server_url: &str) -> anyhow::Result<Outcome> {
    let (rate, seconds) = (sizes.cluster_rate, sizes.cluster_seconds);
    let per_tick = (rate / 100).max(1);
    let ticks = seconds as usize * 100;
    let events = ticks * per_tick;
    let epoch = Instant::now();
    let arrivals = Arrivals::new(epoch, events, HOOKS);
    let port = receivers::start(arrivals.clone()).await?;
    let aws = format!("http://127.0.0.1:{port}");
    let database = Database::create(server_url)?;
    let url = database.url();
    let pg_cpu_before = postgres_cpu_seconds();
    let mut started = Vec::new();
    for i in 0..3 {
        started.push(start_node(bin, &aws, &url, &format!("node{i}")).await?);
    }
    let first = started[0].1.clone();
    first
        .set_hooks((0..HOOKS).map(server::sqs_hook).collect())
        .await?;
    for _ in 0..600 {
        if first.owners().await?.iter().all(Option::is_some) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let nodes = Arc::new(Nodes {
        live: Mutex::new(started),
        ended_cpu_s: Mutex::new(0.0),
    });

    // The load: `per_tick` events every 10 ms, to the live nodes in turn.
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (nodes, sent) = (nodes.clone(), sent.clone());
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(10));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut posts = tokio::task::JoinSet::new();
            for tick in 0..ticks {
                interval.tick().await;
                let node = nodes.pick(tick);
                posts.spawn(async move { load::post(&node, tick * per_tick, per_tick).await });
                while let Some(done) = posts.try_join_next() {
                    done??;
                    sent.fetch_add(per_tick, Ordering::Relaxed);
                }
            }
            while let Some(done) = posts.join_next().await {
                done??;
                sent.fetch_add(per_tick, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    let begun = Instant::now();
    let at = |fraction: f64| begun + Duration::from_secs_f64(seconds as f64 * fraction);

    // Planned moves: node0 stops (SIGTERM) while node3 joins.
    tokio::time::sleep_until(at(1.0 / 3.0).into()).await;
    arrivals.reset_silences();
    let planned_from = arrivals.duplicates();
    drop(first);
    let joined = start_node(bin, &aws, &url, "node3").await?;
    nodes.live.lock().unwrap().push(joined);
    nodes.take_out("node0").await?.terminate()?;
    tokio::time::sleep_until(at(0.6).into()).await;
    let planned_duplicates = arrivals.duplicates().saturating_sub(planned_from);
    let planned_silence = arrivals.longest_silence_s();

    // A crash: the node holding the most hooks is killed.
    tokio::time::sleep_until(at(2.0 / 3.0).into()).await;
    let owners = nodes.pick(0).owners().await?;
    let victim = ["node1", "node2", "node3"]
        .into_iter()
        .max_by_key(|name| {
            owners
                .iter()
                .filter(|o| o.as_deref() == Some(*name))
                .count()
        })
        .unwrap_or("node1");
    let victim = nodes.take_out(victim).await?;
    arrivals.reset_silences();
    let crash_from = arrivals.duplicates();
    victim.kill()?;
    load.await??;
    wait_for(
        "every event at every hook",
        Duration::from_secs(300),
        || (0..HOOKS).all(|d| arrivals.distinct(d) >= events as u64),
    )
    .await?;
    let elapsed = begun.elapsed().as_secs_f64();
    let crash_duplicates = arrivals.duplicates().saturating_sub(crash_from);
    let takeover = arrivals.longest_silence_s();
    let hookrelay_cpu = nodes.cpu_seconds();
    let pg_cpu = postgres_cpu_seconds() - pg_cpu_before;
    drop(nodes);
    drop(database);
    let deliveries = (events * HOOKS) as f64;
    Ok(Outcome {
        scenario: "cluster".into(),
        events,
        delivered_per_s: Some(deliveries / elapsed),
        cpu_us_per_event: Some((hookrelay_cpu + pg_cpu) * 1e6 / events as f64),
        duplicates: Some(planned_duplicates + crash_duplicates),
        takeover_s: Some(takeover),
        note: format!(
            "3 nodes on one PostgreSQL, {HOOKS} SQS hooks, {rate} events/s for {seconds} s; CPU per \
             event {:.0} µs hookrelay + {:.0} µs PostgreSQL; SIGTERM + join: {planned_duplicates} \
             duplicates, longest silence {planned_silence:.2} s; kill -9: hooks silent {takeover:.2} s, \
             {crash_duplicates} duplicates ({:.3}% of deliveries)",
            hookrelay_cpu * 1e6 / events as f64,
            pg_cpu * 1e6 / events as f64,
            100.0 * crash_duplicates as f64 / deliveries,
        ),
        ..Outcome::default()
    })
}
