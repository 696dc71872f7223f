//! Durable state of hookrelay: apps, hooks, the event log, and each hook's delivery progress.
//!
//! # Layout
//! * [`Store`]: the contract every backend keeps. Handlers and the dispatcher only see this trait.
//! * `types`: the records that cross it ([`App`], [`StoredEvent`], [`Progress`], …); `ids`: the
//!   integer ids among them ([`AppId`], [`Seq`], [`Epoch`]).
//! * `crypto`: [`SecretBox`], which encrypts hook and app secrets before they reach the disk.
//! * `sqlite`: the embedded default: one file, WAL mode, one writer thread that group-commits.
//! * `postgres`: several nodes on one PostgreSQL database; hooks are spread over the nodes by
//!   leases (see `postgres::leases`).
//!
//! # Durability contract
//! `append` returns only once the events are committed and fsync'd; `record_progress` moves a
//! hook's cursor, retry set and dead letters in one transaction, so a crash at any point leaves
//! either the old state (the batch is sent again: at-least-once) or the new one, never a gap.

mod codec;
pub mod crypto;
mod ids;
pub mod postgres;
mod recent_events;
mod ride_along;
pub mod sqlite;
mod types;

use async_trait::async_trait;
use hookrelay_core::event::PreparedEvent;
use hookrelay_core::{EventHook, HookId, Secret, Timestamp};

pub use crypto::SecretBox;
pub use ids::{AppId, Epoch, Seq};
pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::SqliteStore;
pub use types::*;

/// Errors of the store. `Backend` wraps the database's own error; the API turns it into a 500
/// and logs it, it is never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Backend(#[from] rusqlite::Error),
    #[error("database error: {}", postgres_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "cannot decrypt a stored secret: is the server key (secret.key / HOOKRELAY_SECRET_KEY) the one it was written with?"
    )]
    Decrypt,
    #[error("hook id {0} is already used by another app")]
    HookIdTaken(HookId),
    #[error("api key {0} is already used by another app")]
    ApiKeyTaken(String),
    #[error("the store is shut down")]
    Closed,
    #[error("hook {0} was rewound since this round started; its progress is not recorded")]
    Stale(HookId),
    #[error("this node no longer holds the lease of hook {0}; its progress is not recorded")]
    NotOwner(HookId),
    #[error("store I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A PostgreSQL error as logs should show it. The driver's own text for an error the server
/// reported is only "db error"; the server's message (never the row values its detail may
/// quote) and its SQLSTATE say what happened, e.g. "deadlock detected (40P01)".
fn postgres_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl StoreError {
    /// Whether the store cannot take this operation *now* but may soon: a full disk, an I/O
    /// error, a database that went away or is shutting down. Callers answer 503 and retry later;
    /// nothing about the request itself is wrong.
    pub fn is_temporary(&self) -> bool {
        use rusqlite::ErrorCode;
        match self {
            Self::Unavailable(_) | Self::Io(_) => true,
            Self::Backend(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::CannotOpen
                    | ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::OutOfMemory
            ),
            Self::Postgres(e) => {
                e.is_closed()
                    || e.as_db_error().is_some_and(|db| {
                        let code = db.code().code();
                        // Connection exceptions, insufficient resources (disk full), operator
                        // intervention (shutdown, cannot connect now).
                        code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
                    })
                    || e.as_db_error().is_none()
            }
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Hands an operation to a backend's writer (thread or task) and waits for its answer.
pub(crate) async fn ask_writer<Op, T>(
    writer: &tokio::sync::mpsc::Sender<Op>,
    op: impl FnOnce(tokio::sync::oneshot::Sender<Result<T>>) -> Op,
) -> Result<T> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    writer
        .send(op(reply))
        .await
        .map_err(|_| StoreError::Closed)?;
    answer.await.map_err(|_| StoreError::Closed)?
}

/// Creates a directory (and its parents) readable by its owner only (0700), for data that holds
/// event payloads and keys. An existing directory is left as it is.
/// The delivery-log records kept per hook at most (see [`Store::cap_delivery_log`]).
pub const MAX_ATTEMPTS_PER_HOOK: usize = 100_000;

pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The store contract. Implementations must be safe to share between the API and every worker.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- apps ---
    async fn create_app(&self, name: &str, api_key: &str, api_secret: &Secret) -> Result<App>;
    async fn list_apps(&self) -> Result<Vec<App>>;
    async fn app_by_key(&self, api_key: &str) -> Result<Option<App>>;
    async fn app_by_id(&self, id: AppId) -> Result<Option<App>>;
    /// Replaces the app's stored settings (the `PATCH /app` fields other than `event_hooks`).
    async fn update_app_settings(&self, id: AppId, settings: AppSettings) -> Result<()>;
    /// Replaces the app's API secret. The old one stops authenticating at once, or, with
    /// `keep_previous_until`, keeps authenticating until then (a rotation window).
    async fn set_api_secret(
        &self,
        id: AppId,
        api_secret: &Secret,
        keep_previous_until: Option<Timestamp>,
    ) -> Result<()>;
    /// Deletes the app with its hooks, their pending work and dead letters, and its events.
    /// False when there was no such app.
    async fn delete_app(&self, id: AppId) -> Result<bool>;

    // --- hooks ---
    /// The app's hooks, in the order they were given.
    async fn hooks(&self, app: AppId) -> Result<Vec<EventHook>>;
    /// Every hook of every app, with its operational state: what the dispatcher runs.
    async fn all_hooks(&self) -> Result<Vec<HookRecord>>;
    /// The app's hooks with their operational state, each as an [`AppHook`]: what the
    /// operations below take, so a hook is only ever reached through its own app.
    async fn app_hooks(&self, app: AppId) -> Result<Vec<AppHook>>;
    /// The app's hook with this id (`None` when the app has no such hook).
    async fn app_hook(&self, app: AppId, hook: &HookId) -> Result<Option<AppHook>> {
        Ok(self
            .app_hooks(app)
            .await?
            .into_iter()
            .find(|h| h.id() == hook))
    }
    /// Makes `hooks` the app's whole list, atomically. Hooks not in it are deleted with their
    /// pending work; new hooks, and hooks switched from disabled to enabled, start at the head of
    /// the log (no backfill); other hooks keep their cursor.
    async fn replace_hooks(&self, app: AppId, hooks: Vec<EventHook>) -> Result<()>;

    // --- event log ---
    /// Appends events and returns, in order, each one's id and sequence number (`None` when the
    /// id was already in the log: ingest is idempotent by id). Returns once durable.
    async fn append(&self, app: AppId, events: Vec<PreparedEvent>) -> Result<Vec<Appended>>;
    /// Up to `limit` events of the app with a sequence number above `after`, in order.
    async fn read_events(&self, app: AppId, after: Seq, limit: usize) -> Result<Vec<StoredEvent>>;
    /// A channel that changes whenever events are appended: workers wait on it when idle.
    fn subscribe_appends(&self) -> tokio::sync::watch::Receiver<Seq>;

    // --- delivery progress ---
    /// The hook's cursor: every event at or below it has been delivered, retried or dead-lettered.
    async fn cursor(&self, hook: &HookId) -> Result<Option<Cursor>>;
    /// Retry entries of the hook due at `now`, oldest first, with their events.
    async fn due_retries(
        &self,
        hook: &HookId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueRetry>>;
    /// A delivery round's input: the hook's cursor (`known`, or the stored one when its epoch
    /// differs, after a rewind), the retries due at `now` and the events after that cursor.
    /// `None` once the hook is gone. Stores that can read it in one trip override this.
    async fn round_input(
        &self,
        hook: &HookId,
        app: AppId,
        known: Cursor,
        now: Timestamp,
        limits: RoundLimits,
    ) -> Result<Option<RoundInput>> {
        let Some(stored) = self.cursor(hook).await? else {
            return Ok(None);
        };
        let cursor = known.or_rewound(stored);
        let due = self.due_retries(hook, now, limits.retries).await?;
        let events = self.read_events(app, cursor.seq, limits.events).await?;
        let next_retry_at = match limits.more_due(due.len(), now) {
            Some(at) => Some(at),
            None => self.next_retry_after(hook, now).await?,
        };
        Ok(Some(RoundInput {
            cursor,
            due,
            events,
            next_retry_at,
        }))
    }
    /// When the hook's first retry entry due after `after` comes due, if it has one.
    async fn next_retry_after(&self, hook: &HookId, after: Timestamp) -> Result<Option<Timestamp>>;
    /// Applies one round of delivery results in one transaction (see [`Progress`]). Fails with
    /// [`StoreError::Stale`] if the hook was rewound since the round's epoch.
    async fn record_progress(&self, progress: Progress) -> Result<()>;
    /// Dead letters of a hook, newest first, `limit` after the `before` id when paging.
    async fn dead_letters(
        &self,
        hook: &AppHook,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>>;

    /// A hook's delivery log, newest first: attempts with `id < before`, of one outcome if given.
    async fn attempts(
        &self,
        hook: &AppHook,
        outcome: Option<AttemptOutcome>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Attempt>>;
    /// The app's event with this id, and where it stands at each of `hooks` (the app's own: the
    /// caller passes them, so no other app's hook can be asked about). `None` when the app has
    /// no such event (never sent, or past retention).
    async fn event_trace(
        &self,
        app: AppId,
        event_id: &str,
        hooks: &[HookId],
    ) -> Result<Option<EventTrace>>;

    // --- operations ---
    /// Pauses or resumes a hook. Returns false if there is no such hook.
    async fn set_paused(&self, hook: &AppHook, paused: bool) -> Result<bool>;
    /// Moves the hook's cursor back to just before its app's first retained event created at or
    /// after `since`, and bumps its epoch. Returns how many retained events of the app are now
    /// after the cursor, or `None` if there is no such hook.
    async fn rewind(&self, hook: &AppHook, since: Timestamp) -> Result<Option<u64>>;
    /// Puts dead letters (all of the hook's, or those with these event ids) back into delivery as
    /// retry entries due now, and removes them from the list. Returns the replayed event ids.
    async fn replay_dead_letters(
        &self,
        hook: &AppHook,
        event_ids: Option<Vec<String>>,
    ) -> Result<Vec<String>>;
    /// What the hook still has to do. Counts stop at `count_up_to`, so the cost of asking is
    /// bounded whatever the backlog (a metrics scrape asks for every hook).
    async fn backlog(
        &self,
        app: AppId,
        hook: &HookId,
        count_up_to: u64,
    ) -> Result<Option<HookBacklog>>;
    /// Whether the store accepts writes (for readiness checks).
    async fn check_writable(&self) -> Result<()>;

    /// A channel that changes whenever hooks, their pause state or app settings change, on
    /// any node: the dispatcher re-reads the hooks then.
    fn subscribe_config(&self) -> tokio::sync::watch::Receiver<u64>;

    // --- several nodes ---
    /// Renews this node's hook leases, and takes or gives up hooks so that they spread over
    /// the live nodes. `None`: this store serves one node, which owns every hook.
    async fn lease_round(&self) -> Result<Option<LeaseRound>> {
        Ok(None)
    }
    /// Gives up the leases of these hooks (their workers have stopped), so another node can
    /// take them at once.
    async fn release_leases(&self, _hooks: &[HookId]) -> Result<()> {
        Ok(())
    }
    /// Extends the leases this node still holds, taking no new one: a node that is stopping
    /// keeps its hooks until their workers have ended, then gives each back.
    async fn renew_leases(&self) -> Result<()> {
        Ok(())
    }
    /// The node stops: gives back every lease and leaves the set of live nodes.
    async fn leave(&self) -> Result<()> {
        Ok(())
    }
    /// Whether, and until when, this node may send the hook's events. Checked before every
    /// send; a send still running at the deadline is abandoned.
    fn lease(&self, _hook: &HookId) -> Lease {
        Lease::Unbounded
    }

    // --- housekeeping ---
    /// Deletes events older than `older_than` that every enabled hook's cursor has passed and no
    /// retry entry needs. Returns how many were deleted.
    async fn collect_garbage(&self, older_than: Timestamp) -> Result<u64>;
    /// Writes what is queued and closes the store's own threads and connections; calls after it
    /// fail with [`StoreError::Closed`]. The server calls it last, on shutdown.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
    /// Keeps at most `keep_per_hook` delivery-log records per hook (the newest), so a hook that
    /// fails fast cannot grow the log without bound within the retention. Returns how many went.
    async fn cap_delivery_log(&self, keep_per_hook: usize) -> Result<u64>;
}
