//! The PostgreSQL store: several hookrelay nodes on one database.
//!
//! # What each node does
//! * **Ingest** on any node. Appends go to one **writer task** per node, which commits everything
//!   waiting (appends and delivery progress of many requests) in one transaction (group
//!   commit). Sequence numbers come from the `log_head` row, locked until commit, so they become
//!   visible in order across nodes (see `schema.rs`). A caught-up hook's progress rides with the
//!   next commit instead of making one of its own (`ride_along`).
//! * **Delivery** of a hook by the one node holding its lease (`leases.rs`); its progress writes
//!   are fenced by that lease.
//! * **Wake-ups across nodes** by LISTEN/NOTIFY: an append notifies `hookrelay_appended` with
//!   the new head, a change of hooks or settings notifies `hookrelay_config`. One connection
//!   per node listens; when it reconnects, everyone is woken once, since notifications sent
//!   meanwhile are lost. Workers and the dispatcher also poll, as a safety net.
//! * **Reads of the newest events** come from this node's own appends in memory where those are
//!   known complete (`own_appends.rs`), and from the database otherwise.
//!
//! # Durability
//! A reply is sent after the transaction commits; with PostgreSQL's default
//! `synchronous_commit = on`, that is after its WAL is flushed. A group of delivery progress
//! alone commits without waiting for the flush (`synchronous_commit = off` for that
//! transaction): a database crash can lose it, which means events sent again, never lost.

mod apps;
mod attempts;
mod connection;
mod events;
mod hooks;
mod leases;
mod own_appends;
mod progress;
mod schema;

use self::connection::{Fate, connection_lost, fate_of, forget_idle};
use self::own_appends::OwnAppends;
use crate::recent_events::{RECENT_EVENT_BYTES, stored_events};
use crate::ride_along::{PROGRESS_WAIT, RideAlong};
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use hookrelay_core::event::PreparedEvent;
use hookrelay_core::{EventHook, HookId, Secret, Timestamp};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::NoTls;

use crate::{
    App, AppHook, AppId, AppSettings, Appended, Attempt, AttemptOutcome, Cursor, DeadLetter,
    DueRetry, EventTrace, HookBacklog, HookRecord, Lease, LeaseRound, Progress, Result, RoundInput,
    RoundLimits, SecretBox, Seq, Store, StoreError, StoredEvent,
};

/// How many queued operations one group commit takes at most.
const MAX_OPS_PER_COMMIT: usize = 512;
/// Requests waiting for the writer; senders wait (backpressure) when it is full.
const WRITE_QUEUE: usize = 1024;
/// Garbage collection deletes in windows of this many sequence numbers, each its own statement.
const GC_SLICE: i64 = 5000;
const APPENDED_CHANNEL: &str = "hookrelay_appended";
const CONFIG_CHANNEL: &str = "hookrelay_config";

/// How to reach the database, and this node's lease settings.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://user@host:port/database` (libpq URL or key=value form).
    pub url: String,
    pub pool_size: usize,
    /// How long a hook lease lasts without renewal: a dead node's hooks move to the others
    /// about this long after its last renewal.
    pub lease_ttl: Duration,
    /// This node's name in the lease tables; a random one when absent.
    pub node_id: Option<String>,
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::Postgres(e),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// Text for a `TEXT` column: PostgreSQL refuses NUL characters, which a receiver's error body
/// may hold.
pub(crate) fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(s)
    }
}

type AppendReply = oneshot::Sender<Result<Vec<Appended>>>;
type RoundReply = oneshot::Sender<Result<()>>;

enum WriteOp {
    Append {
        app: AppId,
        events: Vec<PreparedEvent>,
        reply: AppendReply,
    },
    Progress {
        progress: Progress,
        reply: RoundReply,
    },
    /// Commit the progress riding along, if any is left.
    Flush,
}

/// How long connecting, or waiting for a pooled connection, may take before the operation
/// fails as "database unavailable" (the API answers 503, workers retry).
const DATABASE_TIMEOUT: Duration = Duration::from_secs(3);

/// A database that stops answering (restarted, cut off by the network) shows as an error
/// within seconds instead of holding requests for the minutes TCP takes by itself. Settings
/// given in the URL win.
fn fail_fast(config: &mut tokio_postgres::Config) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DATABASE_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        // Data sent and not acknowledged for this long: the connection is dead.
        config.tcp_user_timeout(Duration::from_secs(10));
    }
}

/// A node that stalls inside a transaction (its VM paused, the process stopped) would keep that
/// transaction's row locks, and no other node could take its hooks over: claiming skips locked
/// rows. The server ends a transaction left idle for `after` (the lease length, so a stalled
/// node's hooks still move within about one lease). A setting given in the URL wins.
fn end_stalled_transactions(config: &mut tokio_postgres::Config, after: Duration) {
    const SETTING: &str = "idle_in_transaction_session_timeout";
    let ours = format!("-c {SETTING}={}", after.as_millis().max(1));
    let options = match config.get_options() {
        Some(given) if given.contains(SETTING) => return,
        Some(given) => format!("{given} {ours}"),
        None => ours,
    };
    config.options(&options);
}

/// Runs a read (`$read`, an expression over `$c: &Client`) on a pooled connection. A
/// connection the server has closed fails the read before it did anything: the idle
/// connections, likely closed alike, are dropped and the read runs again on a fresh one, so
/// callers see no error.
macro_rules! read {
    ($store:expr, |$c:ident| $read:expr) => {{
        let mut tries = 0;
        loop {
            tries += 1;
            let client = $store.pool.get().await?;
            let $c: &tokio_postgres::Client = &client;
            match $read.await {
                Err(StoreError::Postgres(e)) if connection_lost(&e) && tries < 3 => {
                    tracing::debug!(error = %e, "a pooled connection was closed; reading on a fresh one");
                    drop(client);
                    forget_idle(&$store.pool);
                }
                result => break result,
            }
        }
    }};
}

/// The PostgreSQL [`Store`].
pub struct PostgresStore {
    pool: Pool,
    writer: mpsc::Sender<WriteOp>,
    waiting: Arc<RideAlong<WriteOp>>,
    progress_wait: Duration,
    secrets: SecretBox,
    node: Arc<str>,
    lease_ttl: Duration,
    leases: Mutex<leases::LocalLeases>,
    appended: Arc<watch::Sender<Seq>>,
    /// This node's newest appends, read by rounds instead of the database where complete.
    own: Arc<OwnAppends>,
    config: Arc<watch::Sender<u64>>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Runs the migrations alone (`hookrelay migrate`). Returns how many ran.
pub async fn migrate(url: &str) -> Result<usize> {
    let config: tokio_postgres::Config = url.parse()?;
    let (mut client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    let result = schema::migrate(&mut client).await;
    drop(client);
    let _ = driver.await;
    result
}

impl PostgresStore {
    /// Connects, runs the migrations this database has not seen, and starts the writer and the
    /// listener.
    pub async fn connect(options: PostgresOptions, secrets: SecretBox) -> Result<Self> {
        migrate(&options.url).await?;
        let mut config: tokio_postgres::Config = options.url.parse()?;
        fail_fast(&mut config);
        end_stalled_transactions(&mut config, options.lease_ttl);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(DATABASE_TIMEOUT))
            .create_timeout(Some(DATABASE_TIMEOUT))
            .recycle_timeout(Some(DATABASE_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let head = events::high_water_mark(&**pool.get().await?).await?;
        let appended = Arc::new(watch::Sender::new(head));
        let changed = Arc::new(watch::Sender::new(0u64));
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let node: Arc<str> = options
            .node_id
            .unwrap_or_else(|| format!("node-{}", uuid::Uuid::new_v4().simple()))
            .into();
        let own = Arc::new(OwnAppends::new(RECENT_EVENT_BYTES));
        let listener = tokio::spawn(listen(
            config,
            appended.clone(),
            changed.clone(),
            own.clone(),
        ));
        let committed = Committed {
            appended: appended.clone(),
            own: own.clone(),
        };
        let waiting = Arc::new(RideAlong::default());
        let queue = Queue {
            rx,
            waiting: waiting.clone(),
        };
        tokio::spawn(writer_loop(pool.clone(), queue, committed, node.clone()));
        Ok(Self {
            pool,
            writer: tx,
            waiting,
            progress_wait: PROGRESS_WAIT,
            secrets,
            node,
            lease_ttl: options.lease_ttl,
            leases: Mutex::new(leases::LocalLeases::default()),
            appended,
            own,
            config: changed,
            listener,
        })
    }

    /// This node's name in the lease tables.
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Runs `f` in a transaction on a pooled connection; tells every node that the
    /// configuration changed when it commits, if `notify` says so.
    async fn in_transaction<T>(
        &self,
        notify: bool,
        f: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let value = f(&tx).await?;
        if notify {
            tx.execute("SELECT pg_notify($1, '')", &[&CONFIG_CHANNEL])
                .await?;
        }
        tx.commit().await?;
        if notify {
            // This node's dispatcher hears of it at once, even while the listening connection
            // is being re-established.
            self.config.send_modify(|n| *n += 1);
        }
        Ok(value)
    }

    /// `app`'s events after `after` from this node's own appends, when those are complete.
    fn own_appends_after(&self, app: AppId, after: Seq, limit: usize) -> Option<Vec<StoredEvent>> {
        let head = *self.appended.borrow();
        self.own.read_after(app, after, limit, head)
    }

    fn local_leases(&self) -> std::sync::MutexGuard<'_, leases::LocalLeases> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps one connection listening for other nodes' notifications, reconnecting as needed.
async fn listen(
    config: tokio_postgres::Config,
    appended: Arc<watch::Sender<Seq>>,
    changed: Arc<watch::Sender<u64>>,
    own: Arc<OwnAppends>,
) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = mpsc::unbounded_channel();
                // The connection future delivers notifications through poll_message.
                let driver = tokio::spawn(async move {
                    while let Some(message) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                if tx.send(n).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "PostgreSQL listener connection failed");
                                break;
                            }
                        }
                    }
                });
                let subscribed = client
                    .batch_execute(&format!(
                        "LISTEN {APPENDED_CHANNEL}; LISTEN {CONFIG_CHANNEL}"
                    ))
                    .await;
                if let Err(e) = subscribed {
                    tracing::warn!(error = %e, "cannot LISTEN on PostgreSQL");
                } else {
                    // Whatever was notified while no one listened: look again now. Another
                    // node's appends may be among it, so this node's own are no longer known
                    // complete (until its next commit starts a run again); forgotten before the
                    // workers wake, so they read the database.
                    own.forget();
                    appended.send_modify(|_| {});
                    changed.send_modify(|n| *n += 1);
                    while let Some(n) = rx.recv().await {
                        if n.channel() == APPENDED_CHANNEL {
                            let head = n.payload().parse::<Seq>().unwrap_or_default();
                            appended.send_if_modified(|h| {
                                let newer = head > *h;
                                *h = (*h).max(head);
                                newer
                            });
                        } else {
                            changed.send_modify(|n| *n += 1);
                            // A rewind or a dead-letter replay made on another node gives this
                            // node's idle workers something to do: wake them too.
                            appended.send_modify(|_| {});
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect the PostgreSQL listener"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Who hears of committed appends: the workers (the new head) and this node's own appends.
struct Committed {
    appended: Arc<watch::Sender<Seq>>,
    own: Arc<OwnAppends>,
}

/// What the writer task takes its work from: the channel, and the progress riding along.
struct Queue {
    rx: mpsc::Receiver<WriteOp>,
    waiting: Arc<RideAlong<WriteOp>>,
}

async fn writer_loop(pool: Pool, mut queue: Queue, committed: Committed, node: Arc<str>) {
    while let Some(first) = queue.rx.recv().await {
        // Whatever woke the task, the progress riding along goes first: it was recorded before.
        let mut group = queue.waiting.take();
        group.push(first);
        while group.len() < MAX_OPS_PER_COMMIT {
            match queue.rx.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        commit_group(&pool, group, &committed, &node).await;
    }
}

/// What a group commit tells its callers: each round's result, each request's appended events;
/// and the numbers its appends took.
type GroupOutcome = (
    Vec<Result<()>>,
    Vec<Vec<Appended>>,
    Option<events::Numbered>,
);

/// How one try at committing a group ended.
enum GroupTry {
    Committed(GroupOutcome),
    /// Failed before COMMIT was sent: nothing was committed.
    Failed(StoreError),
    /// The connection was lost while COMMIT was in flight: `outcome` holds if it committed.
    CommitUnanswered {
        outcome: GroupOutcome,
        error: StoreError,
    },
}

/// One try at committing a group, on a pooled connection.
async fn try_group(
    pool: &Pool,
    appends: &[(AppId, Vec<PreparedEvent>, AppendReply)],
    rounds: &[(Progress, RoundReply)],
    node: &str,
    now: Timestamp,
) -> GroupTry {
    let mut client = match pool.get().await {
        Ok(client) => client,
        Err(e) => return GroupTry::Failed(e.into()),
    };
    let tx = match client.transaction().await {
        Ok(tx) => tx,
        Err(e) => return GroupTry::Failed(e.into()),
    };
    let written: Result<GroupOutcome> = async {
        if appends.is_empty() {
            tx.batch_execute("SET LOCAL synchronous_commit = off")
                .await?;
        }
        let progress: Vec<&Progress> = rounds.iter().map(|(p, _)| p).collect();
        let round_results = progress::record_all(&*tx, &progress, node, now).await?;
        let requests: Vec<(AppId, &[PreparedEvent])> = appends
            .iter()
            .map(|(app, events, _)| (*app, events.as_slice()))
            .collect();
        let (appended_lists, numbered) =
            events::append_group(&*tx, &requests, now, APPENDED_CHANNEL).await?;
        Ok((round_results, appended_lists, numbered))
    }
    .await;
    let outcome = match written {
        Ok(outcome) => outcome,
        Err(e) => return GroupTry::Failed(e),
    };
    match tx.commit().await {
        Ok(()) => GroupTry::Committed(outcome),
        Err(e) if connection_lost(&e) => GroupTry::CommitUnanswered {
            outcome,
            error: e.into(),
        },
        Err(e) => GroupTry::Failed(e.into()),
    }
}

/// One transaction for a group of appends and progress records. Progress goes first, so the
/// `log_head` lock (which serialises appends of all nodes) is held for as short as possible.
/// A round refused by its fence is answered with that error; the rest still commits. A database
/// error fails the whole group, and every caller is told.
async fn commit_group(pool: &Pool, group: Vec<WriteOp>, committed: &Committed, node: &str) {
    let started = Instant::now();
    let now = Timestamp::now();
    let mut appends = Vec::new();
    let mut rounds = Vec::new();
    for op in group {
        match op {
            WriteOp::Append { app, events, reply } => appends.push((app, events, reply)),
            WriteOp::Progress { progress, reply } => rounds.push((progress, reply)),
            WriteOp::Flush => {}
        }
    }
    if appends.is_empty() && rounds.is_empty() {
        return;
    }
    // A pooled connection the server has closed (it restarted, or an operator ended its
    // backend) fails the group before anything is committed: try again on another, so callers
    // see no error. Every pooled connection may be such a one, hence up to the pool's size;
    // once the database refuses new connections the error is a different one. A connection lost
    // with its COMMIT in flight leaves the outcome unknown: the database is asked, and the
    // group is tried again only if it was rolled back.
    let max_tries = pool.status().max_size + 1;
    let mut tries = 0;
    let result = loop {
        tries += 1;
        let may_retry = tries < max_tries;
        match try_group(pool, &appends, &rounds, node, now).await {
            GroupTry::Committed(outcome) => break Ok(outcome),
            GroupTry::Failed(StoreError::Postgres(e)) if connection_lost(&e) && may_retry => {
                tracing::debug!(error = %e, "a pooled connection was closed; committing on a fresh one");
                forget_idle(pool);
            }
            GroupTry::Failed(e) => break Err(e),
            GroupTry::CommitUnanswered { outcome, error } => {
                forget_idle(pool);
                let fate = match outcome.2 {
                    Some(numbered) => fate_of(pool, numbered.transaction, DATABASE_TIMEOUT).await,
                    None => Fate::Unknown,
                };
                tracing::debug!(error = %error, ?fate, "the connection was lost during COMMIT");
                match fate {
                    Fate::Committed => break Ok(outcome),
                    Fate::Aborted if may_retry => {}
                    Fate::Aborted | Fate::Unknown => break Err(error),
                }
            }
        }
    };
    let events: usize = appends.iter().map(|(_, e, _)| e.len()).sum();
    hookrelay_core::telemetry::record_store_commit(started.elapsed().as_secs_f64(), events);
    match result {
        Ok((round_results, appended_lists, numbered)) => {
            let newest = appended_lists.iter().flatten().filter_map(|a| a.seq).max();
            let mut replies = Vec::with_capacity(appends.len());
            let mut stored = Vec::with_capacity(appends.len());
            for ((app, events, reply), list) in appends.into_iter().zip(appended_lists) {
                stored.push((app, stored_events(events, &list, now).collect()));
                replies.push((reply, list));
            }
            // Held before anyone hears of the new head, so a round woken by it finds them.
            if let Some(numbered) = numbered {
                committed
                    .own
                    .committed(numbered.after, numbered.through, stored);
            }
            if let Some(seq) = newest {
                committed.appended.send_if_modified(|h| {
                    let newer = seq > *h;
                    *h = (*h).max(seq);
                    newer
                });
            }
            for ((_, reply), r) in rounds.into_iter().zip(round_results) {
                let _ = reply.send(r);
            }
            for (reply, list) in replies {
                let _ = reply.send(Ok(list));
            }
        }
        Err(e) => {
            let message = e.to_string();
            tracing::error!(error = %message, "group commit failed");
            for (_, reply) in rounds {
                let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
            }
            for (_, _, reply) in appends {
                let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
            }
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_app(&self, name: &str, api_key: &str, api_secret: &Secret) -> Result<App> {
        let sealed = self.secrets.seal(api_secret);
        let id = self
            .in_transaction(false, async |tx| {
                apps::insert(&**tx, name, api_key, &sealed, Timestamp::now()).await
            })
            .await?;
        self.app_by_id(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("app vanished after insert".into()))
    }

    async fn list_apps(&self) -> Result<Vec<App>> {
        read!(self, |c| apps::select(c, &self.secrets, apps::Filter::All))
    }

    async fn app_by_key(&self, api_key: &str) -> Result<Option<App>> {
        let found = read!(self, |c| apps::select(
            c,
            &self.secrets,
            apps::Filter::Key(api_key)
        ))?;
        Ok(found.into_iter().next())
    }

    async fn app_by_id(&self, id: AppId) -> Result<Option<App>> {
        let found = read!(self, |c| apps::select(
            c,
            &self.secrets,
            apps::Filter::Id(id)
        ))?;
        Ok(found.into_iter().next())
    }

    async fn update_app_settings(&self, id: AppId, settings: AppSettings) -> Result<()> {
        self.in_transaction(true, async |tx| {
            apps::update_settings(&**tx, &self.secrets, id, &settings, Timestamp::now()).await
        })
        .await
    }

    async fn set_api_secret(
        &self,
        id: AppId,
        api_secret: &Secret,
        keep_previous_until: Option<Timestamp>,
    ) -> Result<()> {
        let sealed = self.secrets.seal(api_secret);
        // Notified: other nodes drop the old secret from their caches.
        self.in_transaction(true, async |tx| {
            apps::set_secret(&**tx, id, &sealed, keep_previous_until, Timestamp::now()).await
        })
        .await
    }

    async fn delete_app(&self, id: AppId) -> Result<bool> {
        let deleted = self
            .in_transaction(true, async |tx| {
                hooks::replace(&**tx, &self.secrets, id, &[]).await?;
                apps::delete(&**tx, id).await
            })
            .await?;
        self.own.forget();
        Ok(deleted)
    }

    async fn hooks(&self, app: AppId) -> Result<Vec<EventHook>> {
        let client = self.pool.get().await?;
        let rows = hooks::select(&**client, &self.secrets, Some(app)).await?;
        Ok(rows.into_iter().map(|r| r.hook).collect())
    }

    async fn app_hooks(&self, app: AppId) -> Result<Vec<AppHook>> {
        let rows = read!(self, |c| hooks::select(c, &self.secrets, Some(app)))?;
        Ok(rows.into_iter().map(AppHook::new).collect())
    }

    async fn all_hooks(&self) -> Result<Vec<HookRecord>> {
        read!(self, |c| hooks::select(c, &self.secrets, None))
    }

    async fn replace_hooks(&self, app: AppId, list: Vec<EventHook>) -> Result<()> {
        self.in_transaction(true, async |tx| {
            hooks::replace(&**tx, &self.secrets, app, &list).await
        })
        .await
    }

    async fn append(&self, app: AppId, events: Vec<PreparedEvent>) -> Result<Vec<Appended>> {
        crate::ask_writer(&self.writer, |reply| WriteOp::Append { app, events, reply }).await
    }

    async fn read_events(&self, app: AppId, after: Seq, limit: usize) -> Result<Vec<StoredEvent>> {
        if let Some(events) = self.own_appends_after(app, after, limit) {
            return Ok(events);
        }
        read!(self, |c| events::read_after(c, app, after, limit))
    }

    fn subscribe_appends(&self) -> watch::Receiver<Seq> {
        self.appended.subscribe()
    }

    async fn cursor(&self, hook: &HookId) -> Result<Option<Cursor>> {
        read!(self, |c| progress::cursor(c, hook))
    }

    async fn due_retries(
        &self,
        hook: &HookId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueRetry>> {
        read!(self, |c| progress::due_retries(c, hook, now, limit))
    }

    async fn round_input(
        &self,
        hook: &HookId,
        app: AppId,
        known: Cursor,
        now: Timestamp,
        limits: RoundLimits,
    ) -> Result<Option<RoundInput>> {
        // A retry on a fresh connection reads them from the database.
        let mut held = self.own_appends_after(app, known.seq, limits.events);
        read!(self, |c| progress::round_input(
            c,
            hook,
            app,
            known,
            now,
            limits,
            held.take()
        ))
    }

    async fn next_retry_after(&self, hook: &HookId, after: Timestamp) -> Result<Option<Timestamp>> {
        read!(self, |c| progress::next_retry_after(c, hook, after))
    }

    async fn record_progress(&self, progress: Progress) -> Result<()> {
        if progress.is_empty() {
            return Ok(());
        }
        if progress.can_wait {
            self.waiting
                .ride(
                    &self.writer,
                    self.progress_wait,
                    |reply| WriteOp::Progress { progress, reply },
                    || WriteOp::Flush,
                )
                .await
        } else {
            crate::ask_writer(&self.writer, |reply| WriteOp::Progress { progress, reply }).await
        }
    }

    async fn dead_letters(
        &self,
        hook: &AppHook,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        read!(self, |c| progress::dead_letters(
            c,
            hook.id(),
            before,
            limit
        ))
    }

    async fn attempts(
        &self,
        hook: &AppHook,
        outcome: Option<AttemptOutcome>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Attempt>> {
        read!(self, |c| attempts::list(
            c,
            hook.id(),
            outcome,
            before,
            limit
        ))
    }

    async fn event_trace(
        &self,
        app: AppId,
        event_id: &str,
        hooks: &[HookId],
    ) -> Result<Option<EventTrace>> {
        read!(self, |c| attempts::trace(c, app, event_id, hooks))
    }

    async fn set_paused(&self, hook: &AppHook, paused: bool) -> Result<bool> {
        let hook = hook.id();
        self.in_transaction(true, async |tx| {
            progress::set_paused(&**tx, hook, paused).await
        })
        .await
    }

    async fn rewind(&self, hook: &AppHook, since: Timestamp) -> Result<Option<u64>> {
        let hook = hook.id();
        // Notified as a configuration change: the owner's worker wakes and adopts the cursor.
        let behind = self
            .in_transaction(true, async |tx| progress::rewind(&**tx, hook, since).await)
            .await?;
        self.appended.send_modify(|_| {});
        Ok(behind)
    }

    async fn replay_dead_letters(
        &self,
        hook: &AppHook,
        event_ids: Option<Vec<String>>,
    ) -> Result<Vec<String>> {
        let n = self
            .in_transaction(true, async |tx| {
                progress::replay_dead_letters(
                    &**tx,
                    hook.id(),
                    event_ids.as_deref(),
                    Timestamp::now(),
                )
                .await
            })
            .await?;
        self.appended.send_modify(|_| {});
        Ok(n)
    }

    async fn backlog(
        &self,
        app: AppId,
        hook: &HookId,
        count_up_to: u64,
    ) -> Result<Option<HookBacklog>> {
        read!(self, |c| progress::backlog(c, app, hook, count_up_to))
    }

    async fn check_writable(&self) -> Result<()> {
        let client = self.pool.get().await?;
        let read_only: bool = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await?
            .get(0);
        if read_only {
            return Err(StoreError::Unavailable(
                "the database is a read-only replica".into(),
            ));
        }
        Ok(())
    }

    fn subscribe_config(&self) -> watch::Receiver<u64> {
        self.config.subscribe()
    }

    async fn lease_round(&self) -> Result<Option<LeaseRound>> {
        let started = Instant::now();
        let client = self.pool.get().await?;
        let (round, local) = leases::round(&**client, &self.node, self.lease_ttl, started).await?;
        *self.local_leases() = local;
        Ok(Some(round))
    }

    async fn release_leases(&self, hooks: &[HookId]) -> Result<()> {
        {
            let mut local = self.local_leases();
            for h in hooks {
                local.owned.remove(h);
            }
        }
        let ids: Vec<&str> = hooks.iter().map(HookId::as_str).collect();
        // Every node hears of it (as of a change of hooks) and runs a lease round at once, so
        // the hooks are taken over without waiting for the next round.
        self.in_transaction(true, async |tx| {
            leases::release(&**tx, &self.node, &ids).await
        })
        .await
    }

    async fn renew_leases(&self) -> Result<()> {
        let started = Instant::now();
        let client = self.pool.get().await?;
        let renewed = leases::renew(&**client, &self.node, self.lease_ttl, started).await?;
        let mut local = self.local_leases();
        // Leases given back meanwhile stay given back.
        let owned = local.owned.intersection(&renewed.owned).cloned().collect();
        *local = leases::LocalLeases {
            owned,
            valid_until: renewed.valid_until,
        };
        Ok(())
    }

    async fn leave(&self) -> Result<()> {
        *self.local_leases() = leases::LocalLeases::default();
        self.in_transaction(true, async |tx| leases::leave(&**tx, &self.node).await)
            .await
    }

    fn lease(&self, hook: &HookId) -> Lease {
        let local = self.local_leases();
        if local.owned.contains(hook) {
            Lease::Until(local.valid_until)
        } else {
            Lease::None
        }
    }

    async fn cap_delivery_log(&self, keep_per_hook: usize) -> Result<u64> {
        read!(self, |c| attempts::cap(c, keep_per_hook as i64))
    }

    async fn collect_garbage(&self, older_than: Timestamp) -> Result<u64> {
        let client = self.pool.get().await?;
        let apps: Vec<AppId> = client
            .query("SELECT id FROM apps ORDER BY id", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut total = 0;
        for app in apps {
            total += events::collect_app(&**client, app, older_than, GC_SLICE).await?;
        }
        if total > 0 {
            // Deleted events are read from nowhere, memory included.
            self.own.forget();
        }
        // The delivery log is kept as long as the events it describes.
        while attempts::delete_old(&**client, older_than, GC_SLICE).await? == GC_SLICE as u64 {}
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_transactions_end_after_a_lease_unless_the_url_says_otherwise() {
        let mut config: tokio_postgres::Config = "postgres://u@h/db".parse().unwrap();
        end_stalled_transactions(&mut config, Duration::from_secs(2));
        assert_eq!(
            config.get_options(),
            Some("-c idle_in_transaction_session_timeout=2000")
        );

        let mut config: tokio_postgres::Config =
            "postgres://u@h/db?options=-c%20statement_timeout%3D5000"
                .parse()
                .unwrap();
        end_stalled_transactions(&mut config, Duration::from_secs(3));
        assert_eq!(
            config.get_options(),
            Some("-c statement_timeout=5000 -c idle_in_transaction_session_timeout=3000")
        );

        let given = "-c idle_in_transaction_session_timeout=60000";
        let mut config: tokio_postgres::Config = "postgres://u@h/db".parse().unwrap();
        config.options(given);
        end_stalled_transactions(&mut config, Duration::from_secs(2));
        assert_eq!(config.get_options(), Some(given));
    }
}
