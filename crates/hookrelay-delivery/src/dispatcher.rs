//! The dispatcher: keeps exactly one worker running per enabled hook this node owns.
//!
//! It compares the hooks in the store with the workers it runs whenever hooks change (the store
//! says so, for changes made through this node or another) and every 30 s as a safety net.
//! A changed hook's worker is told to stop at once (its round is cut short: what was
//! acknowledged is recorded, requests still in flight are dropped and sent again later); its
//! successor starts only once it has ended, so two workers never deliver the same hook at once.
//! The dispatcher never waits for one: a worker stuck on a slow receiver cannot delay any other
//! hook's change. Planned stops (shutdown, handing a hook to another node) let the sends in
//! flight finish instead, so they cause no duplicates.
//!
//! With a store shared by several nodes, a hook is delivered by the node holding its lease. The
//! dispatcher runs the store's lease rounds; when told to give hooks up (another node joined),
//! it stops their workers and releases each lease once its worker has ended, renewing the
//! others meanwhile. On shutdown it does the same for every hook, so the other nodes take each
//! over as soon as its last sends are recorded: planned moves send nothing twice.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hookrelay_core::{EventHook, HookId, Target, Timestamp};
use hookrelay_store::{App, AppId, Store};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::aws::AwsClients;
use crate::check::CheckFailure;
use crate::destinations::webhook::WebhookClient;
use crate::destinations::{AppContext, Destination};
use crate::settings::DeliverySettings;
use crate::signing::Signer;
use crate::stats::{HookSnapshot, HookState, HookStats, StatsRegistry};
use crate::worker::Worker;

/// How often the dispatcher re-reads the hooks even when nobody said they changed.
const RECONCILE_EVERY: Duration = Duration::from_secs(30);

/// What the API holds: live hook figures, destination checks and test sends. Changes to hooks
/// reach the dispatcher through the store alone (`Store::subscribe_config`), whichever node
/// made them.
#[derive(Clone)]
pub struct DeliveryHandle {
    clients: Arc<AwsClients>,
    http: WebhookClient,
    stats: Arc<StatsRegistry>,
    running: Arc<std::sync::atomic::AtomicBool>,
}

impl DeliveryHandle {
    /// Whether the dispatcher's loop runs (for readiness checks).
    pub fn is_running(&self) -> bool {
        self.running.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A hook's state and live figures (zeros for a hook this process has not run).
    /// `retries` is the size of its retry set, from the store.
    pub fn status(
        &self,
        hook: &EventHook,
        paused: bool,
        retries: u64,
    ) -> (HookState, HookSnapshot) {
        let stats = self.stats.get(&hook.id);
        let state = HookState::of(hook.enabled, paused, stats.as_deref(), retries);
        let snapshot = stats
            .map(|s| HookSnapshot::of(&s, Timestamp::now()))
            .unwrap_or_default();
        (state, snapshot)
    }

    /// Live figures of a hook this process has run (for the metrics scrape).
    pub fn stats(&self, hook: &HookId) -> Option<Arc<HookStats>> {
        self.stats.get(hook)
    }

    pub async fn check(&self, app: &App, target: &Target) -> Result<(), CheckFailure> {
        crate::check::check(&self.clients, app, target).await
    }

    /// Sends one `health.check` event to the hook's destination through the path deliveries
    /// take, without touching the hook's cursor, retries or counters.
    pub async fn test_hook(&self, app: &App, hook: &EventHook) -> crate::check::TestReport {
        let (_, context) = app_view(app);
        let destination = Destination::for_hook(&self.clients, &self.http, hook, &context).await;
        let signer = Signer::for_hook(hook, &app.api_secret);
        crate::check::send_test_event(&destination, &signer).await
    }
}

struct Running {
    hook: EventHook,
    /// What the worker was started with; a change restarts it.
    app: (String, AppContext),
    cancel: CancellationToken,
    abandon: CancellationToken,
    task: JoinHandle<()>,
}

/// How a worker is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The hook changed (paused, edited, disabled, deleted): now, dropping sends in flight.
    Now,
    /// Shutdown or a lease handover: no new sends, the ones in flight finish and are recorded.
    FinishInFlight,
}

/// Runs the workers. Create it with [`Dispatcher::new`], spawn [`Dispatcher::run`].
pub struct Dispatcher {
    store: Arc<dyn Store>,
    clients: Arc<AwsClients>,
    http: WebhookClient,
    settings: Arc<DeliverySettings>,
    changed: Arc<Notify>,
    stats: Arc<StatsRegistry>,
    alive: Arc<std::sync::atomic::AtomicBool>,
    running: HashMap<HookId, Running>,
    /// Workers told to stop that may not have ended yet; a hook gets a new worker only once its
    /// old one has ended (each wakes the dispatcher when it does).
    stopping: HashMap<HookId, JoinHandle<()>>,
    /// Hooks this node holds a lease on and delivers; `None` when it owns every hook (one node).
    owned: Option<HashSet<HookId>>,
    /// Hooks this node still holds a lease on but is giving up: their workers are finishing
    /// the sends in flight; the leases go back once they have ended.
    handing_over: HashSet<HookId>,
    /// How often the leases are renewed (from the store's last lease round).
    lease_period: Duration,
}

/// What a worker needs to know about its app: the signing secret, and the rest.
fn app_view(app: &App) -> (String, AppContext) {
    let compress = app
        .settings
        .fields
        .get("enable_hook_payload_compression")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    (
        app.api_secret.expose().to_owned(),
        AppContext {
            api_key: app.api_key.clone(),
            compress,
        },
    )
}

impl Dispatcher {
    pub async fn new(
        store: Arc<dyn Store>,
        settings: DeliverySettings,
    ) -> std::io::Result<(Self, DeliveryHandle)> {
        let clients = AwsClients::new(&settings.aws).await?;
        let http = WebhookClient::new(&settings.webhook)?;
        let changed = Arc::new(Notify::new());
        let stats = Arc::new(StatsRegistry::default());
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handle = DeliveryHandle {
            clients: clients.clone(),
            http: http.clone(),
            stats: stats.clone(),
            running: alive.clone(),
        };
        let dispatcher = Self {
            store,
            clients,
            http,
            settings: Arc::new(settings),
            changed,
            stats,
            alive,
            running: HashMap::new(),
            stopping: HashMap::new(),
            owned: None,
            handing_over: HashSet::new(),
            lease_period: Duration::from_secs(1),
        };
        Ok((dispatcher, handle))
    }

    /// Runs until `shutdown` is cancelled, then stops every worker, letting each finish the
    /// round it is in (its sends and its progress write) first.
    pub async fn run(mut self, shutdown: CancellationToken) {
        self.alive.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut config = self.store.subscribe_config();
        let mut next_lease_round = tokio::time::Instant::now();
        loop {
            config.borrow_and_update();
            let now = tokio::time::Instant::now();
            if now >= next_lease_round {
                next_lease_round = now + self.lease_round().await;
            }
            self.release_handed_over().await;
            if let Err(e) = self.reconcile().await {
                tracing::error!(error = %e, "cannot read hooks; retrying");
            }
            let wake = next_lease_round.min(tokio::time::Instant::now() + RECONCILE_EVERY);
            tokio::select! {
                // A worker ended: its successor may start, or its lease go back.
                _ = self.changed.notified() => {}
                // Hooks or app settings changed, or a node gave leases back, through any node:
                // hooks may be free to take.
                _ = config.changed() => next_lease_round = tokio::time::Instant::now(),
                _ = tokio::time::sleep_until(wake) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        self.alive
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.drain().await;
    }

    /// Shutdown: every worker finishes the sends it has in flight and records them; meanwhile
    /// this node keeps renewing its leases (a progress write under a lapsed lease is refused,
    /// and the next owner would send those events again) and gives each hook back as soon as
    /// its worker has ended, so the other nodes take it over at once.
    async fn drain(&mut self) {
        let ids: Vec<HookId> = self.running.keys().cloned().collect();
        for id in &ids {
            self.stop_worker(id, Stop::FinishInFlight);
        }
        if self.owned.is_none() {
            for (_, ended) in self.stopping.drain() {
                let _ = ended.await;
            }
            return;
        }
        self.handing_over
            .extend(self.owned.take().unwrap_or_default());
        let mut renew_at = tokio::time::Instant::now();
        loop {
            self.release_handed_over().await;
            self.stopping.retain(|_, ended| !ended.is_finished());
            if self.stopping.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= renew_at {
                if let Err(e) = self.store.renew_leases().await {
                    tracing::warn!(error = %e, "cannot renew hook leases while stopping");
                }
                renew_at = tokio::time::Instant::now() + self.lease_period;
            }
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep_until(renew_at) => {}
            }
        }
        if let Err(e) = self.store.leave().await {
            tracing::warn!(error = %e, "cannot give the hook leases back; they expire by themselves");
        }
    }

    /// Renews and shares out the leases; returns when the next round is due. On a store error
    /// the leases are kept as they were: they lapse by themselves if the database stays away.
    /// Hooks to give up (another node joined) are handed over without waiting here: their
    /// workers finish the sends in flight, then [`Self::release_handed_over`] gives the leases
    /// back. Meanwhile every other lease is renewed as usual.
    async fn lease_round(&mut self) -> Duration {
        let round = match self.store.lease_round().await {
            Ok(Some(round)) => round,
            Ok(None) => return RECONCILE_EVERY,
            Err(e) => {
                hookrelay_core::telemetry::record_lease_round_failed();
                tracing::warn!(error = %e, "cannot renew hook leases; retrying");
                return Duration::from_secs(1);
            }
        };
        hookrelay_core::telemetry::record_leases_held(round.owned.len());
        self.lease_period = round.renew_every;
        let mut owned = round.owned;
        // Leases lost meanwhile need no handing over.
        self.handing_over.retain(|id| owned.contains(id));
        let surplus = round.surplus.saturating_sub(self.handing_over.len());
        if surplus > 0 {
            // Give up idle hooks first, then the rest, in a stable order.
            let mut give: Vec<HookId> = owned
                .iter()
                .filter(|id| !self.handing_over.contains(*id))
                .cloned()
                .collect();
            give.sort_by_key(|id| (self.running.contains_key(id), id.as_str().to_owned()));
            give.truncate(surplus);
            for id in give {
                // The lease goes back only once the worker has ended: the next owner must not
                // deliver while this node still does.
                self.stop_worker(&id, Stop::FinishInFlight);
                self.handing_over.insert(id);
            }
        }
        owned.retain(|id| !self.handing_over.contains(id));
        self.owned = Some(owned);
        round.next_in
    }

    /// Gives back the leases of handed-over hooks whose workers have ended.
    async fn release_handed_over(&mut self) {
        let ended: Vec<HookId> = self
            .handing_over
            .iter()
            .filter(|id| {
                !self.running.contains_key(*id)
                    && self.stopping.get(*id).is_none_or(JoinHandle::is_finished)
            })
            .cloned()
            .collect();
        if ended.is_empty() {
            return;
        }
        match self.store.release_leases(&ended).await {
            Ok(()) => {
                for id in &ended {
                    self.handing_over.remove(id);
                    self.stopping.remove(id);
                    tracing::info!(hook_id = %id, "hook lease given back");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot give hook leases back; retrying (they expire by themselves)")
            }
        }
    }

    /// Tells a hook's worker to stop, without waiting for it.
    fn stop_worker(&mut self, id: &HookId, how: Stop) {
        if let Some(r) = self.running.remove(id) {
            r.cancel.cancel();
            if how == Stop::Now {
                r.abandon.cancel();
            }
            let changed = self.changed.clone();
            let hook_id = id.clone();
            let ended = tokio::spawn(async move {
                let _ = r.task.await;
                tracing::info!(%hook_id, "hook worker stopped");
                // Its successor, if any, can start now.
                changed.notify_one();
            });
            self.stopping.insert(id.clone(), ended);
        }
    }

    async fn reconcile(&mut self) -> hookrelay_store::Result<()> {
        let hooks = self.store.all_hooks().await?;
        let mut secrets: HashMap<AppId, Option<App>> = HashMap::new();
        let mut wanted: HashMap<HookId, (AppId, EventHook)> = HashMap::new();
        let mut existing = HashSet::new();
        for record in hooks {
            existing.insert(record.hook.id.clone());
            // Disabled and paused hooks have no worker; paused ones keep their backlog. Hooks
            // leased by other nodes are theirs to deliver.
            let ours = self
                .owned
                .as_ref()
                .is_none_or(|owned| owned.contains(&record.hook.id));
            if record.hook.enabled && !record.paused && ours {
                wanted.insert(record.hook.id.clone(), (record.app, record.hook));
            }
        }
        // A worker that ended by itself (its hook was deleted as it started) is replaced.
        self.running.retain(|_, r| !r.task.is_finished());
        // Stop workers of hooks that are gone, disabled or changed.
        let mut stop = Vec::new();
        for (id, running) in &self.running {
            match wanted.get(id) {
                Some((app, hook)) if *hook == running.hook => {
                    let app = match secrets.get(app) {
                        Some(a) => a.clone(),
                        None => {
                            let a = self.store.app_by_id(*app).await?;
                            secrets.insert(*app, a.clone());
                            a
                        }
                    };
                    if app.as_ref().map(app_view).as_ref() != Some(&running.app) {
                        stop.push(id.clone());
                    }
                }
                _ => stop.push(id.clone()),
            }
        }
        for id in stop {
            self.stop_worker(&id, Stop::Now);
            if !existing.contains(&id) {
                self.stats.forget(&id);
            }
        }
        self.stopping.retain(|_, ended| !ended.is_finished());
        // Start workers for hooks that have none (once their previous worker has ended).
        for (id, (app_id, hook)) in wanted {
            if self.running.contains_key(&id) || self.stopping.contains_key(&id) {
                continue;
            }
            let app = match secrets.get(&app_id) {
                Some(a) => a.clone(),
                None => self.store.app_by_id(app_id).await?,
            };
            let Some(app) = app else { continue };
            let view = app_view(&app);
            let destination =
                Destination::for_hook(&self.clients, &self.http, &hook, &view.1).await;
            let cancel = CancellationToken::new();
            let abandon = CancellationToken::new();
            let recorder = self.stats.recorder(&id, hook.target.hook_type().as_str());
            let worker = Worker {
                recorder,
                app: app_id,
                signer: Signer::for_hook(&hook, &app.api_secret),
                hook: hook.clone(),
                filter: hook.event_filter(),
                destination,
                store: self.store.clone(),
                settings: self.settings.clone(),
                cancel: cancel.clone(),
                abandon: abandon.clone(),
            };
            tracing::info!(hook_id = %id, hook_type = hook.target.hook_type().as_str(), "hook worker started");
            let task = tokio::spawn(worker.run());
            self.running.insert(
                id,
                Running {
                    hook,
                    app: view,
                    cancel,
                    abandon,
                    task,
                },
            );
        }
        Ok(())
    }
}
