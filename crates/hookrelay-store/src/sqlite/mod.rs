//! The embedded store: one SQLite file in WAL mode.
//!
//! # Concurrency
//! SQLite allows one writer at a time, so every write goes to a single **writer thread** through a
//! bounded channel. The thread takes everything waiting in the channel and commits appends and
//! delivery progress of many requests in **one transaction with one fsync** (group commit): while
//! it waits on the disk, the next group collects. Other writes (settings, hooks, garbage
//! collection) run one by one in their own transaction on the same thread.
//!
//! The progress of a hook that has caught up (`Progress::can_wait`) is not sent to the thread:
//! it rides with the next commit, whatever wakes the thread (`ride_along`), so at light traffic
//! each request costs one wake-up and one commit instead of two.
//!
//! Reads never wait for the writer: WAL lets a small pool of read connections see the last
//! committed state while a write is in progress. They run on tokio's blocking threads. A
//! delivery round close behind the head reads nothing from the database: the newest events are
//! kept in memory as they commit, and what the hook's last full read showed holds until a write
//! other than appends and progress changes the store (`recent`).
//!
//! # Durability
//! `synchronous = FULL` in WAL mode syncs the log on every commit, so a reply sent after commit
//! means the data survives a crash or power loss. Commits of delivery progress alone are not
//! synced (`NORMAL`): they survive a crash of the process, and a power cut can only lose
//! progress, which means events sent again, never lost. The next synced commit makes them
//! durable too, as the log is replayed in order up to its last synced frame.

mod apps;
mod attempts;
mod events;
mod hooks;
mod progress;
mod recent;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hookrelay_core::event::PreparedEvent;
use hookrelay_core::{EventHook, HookId, Secret, Timestamp};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use self::recent::RoundViews;
use crate::recent_events::{RECENT_EVENT_BYTES, RecentEvents, stored_events};
use crate::ride_along::{PROGRESS_WAIT, RideAlong};
use crate::{
    App, AppHook, AppId, AppSettings, Appended, Attempt, AttemptOutcome, Cursor, DeadLetter,
    DueRetry, EventTrace, HookBacklog, HookRecord, Progress, Result, RoundInput, RoundLimits,
    SecretBox, Seq, Store, StoreError, StoredEvent,
};

/// How many queued operations one group commit takes at most; bounds the transaction's size.
const MAX_OPS_PER_COMMIT: usize = 512;
/// Requests waiting for the writer; senders wait (backpressure) when it is full.
const WRITE_QUEUE: usize = 1024;
/// Garbage collection deletes in slices this big, so appends are never held up for long.
const GC_SLICE: usize = 5000;
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

enum WriteOp {
    Append {
        app: AppId,
        events: Vec<PreparedEvent>,
        reply: oneshot::Sender<Result<Vec<Appended>>>,
    },
    Progress {
        progress: Progress,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Anything else: runs alone, in its own transaction, and replies itself.
    Job(Job),
    /// Stop once everything sent before is written: the connection closes (checkpointing the
    /// WAL) and the thread ends.
    Close(oneshot::Sender<()>),
    /// Commit the progress riding along, if any is left.
    Flush,
}

/// Below this much free space where the database lives, the store says it is not ready.
const MIN_FREE_BYTES: u64 = 4 * 1024 * 1024;

/// The SQLite [`Store`].
pub struct SqliteStore {
    writer: mpsc::Sender<WriteOp>,
    waiting: Arc<RideAlong<WriteOp>>,
    progress_wait: std::time::Duration,
    readers: Arc<Readers>,
    secrets: SecretBox,
    appended: Arc<watch::Sender<Seq>>,
    config: watch::Sender<u64>,
    recent: Arc<RecentEvents>,
    views: Arc<RoundViews>,
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Statement journals and temporary indexes in memory, not in temporary files.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Keep each statement's plan: without this a statement with a range on a bound value
    // (`next_attempt_ms <= now`) is parsed and planned again whenever the value changes,
    // which was a tenth of the server's CPU at light traffic.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

/// The database holds every event's payload: only its owner may read it. The file is created
/// 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm` files the database file's
/// mode), and files an older version left readable are made private.
fn restrict_database_files(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and runs its migrations.
    pub fn open(path: impl AsRef<Path>, secrets: SecretBox) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            crate::create_private_dir(dir)?;
        }
        restrict_database_files(&path)?;
        let mut conn = open_connection(&path)?;
        // The writer's page cache (8 MiB, default 2): the inner pages of the big tables and
        // indexes stay in it. 32 MiB was no faster and cost 22-27 MiB of memory in every run.
        conn.pragma_update(None, "cache_size", -8 * 1024)?;
        schema::migrate(&mut conn)?;
        let head = events::high_water_mark(&conn)?;
        let numbers = Numbers {
            log: events::LogHead::new(head),
            attempts: attempts::AttemptIds::load(&conn)?,
        };
        let appended = Arc::new(watch::Sender::new(head));
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let recent = Arc::new(RecentEvents::new(head, RECENT_EVENT_BYTES));
        let committed = Committed {
            appended: appended.clone(),
            recent: recent.clone(),
        };
        let waiting = Arc::new(RideAlong::default());
        let queue = Queue {
            rx,
            waiting: waiting.clone(),
        };
        std::thread::Builder::new()
            .name("hookrelay-sqlite-writer".into())
            .spawn(move || writer_loop(conn, numbers, queue, &committed))?;
        Ok(Self {
            writer: tx,
            waiting,
            progress_wait: PROGRESS_WAIT,
            readers: Arc::new(Readers {
                path,
                idle: Mutex::new(Vec::new()),
            }),
            secrets,
            appended,
            config: watch::Sender::new(0),
            recent,
            views: Arc::default(),
        })
    }

    /// Runs `f` on the writer thread, in its own transaction. Such writes (hooks, settings, a
    /// rewind, a replay, garbage collection) may change cursors and retries behind the workers'
    /// backs: their rounds' views are stale from before the write until after it.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.views.invalidate();
        let result = self.write_job(f).await;
        self.views.invalidate();
        result
    }

    async fn write_job<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = conn.transaction().map_err(StoreError::from).and_then(|tx| {
                let value = f(&tx)?;
                tx.commit()?;
                Ok(value)
            });
            let _ = reply.send(result);
        });
        self.writer
            .send(WriteOp::Job(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a read connection, on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let result = f(&conn);
            readers.give_back(conn);
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

/// Idle read connections, opened on demand and reused.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn take(&self) -> Result<Connection> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => open_connection(&self.path),
        }
    }

    fn give_back(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }
}

/// Who hears of committed appends: the workers (the new head) and the recent events.
struct Committed {
    appended: Arc<watch::Sender<Seq>>,
    recent: Arc<RecentEvents>,
}

/// The numbers only the writer thread gives out: events' sequence numbers and delivery log ids.
struct Numbers {
    log: events::LogHead,
    attempts: attempts::AttemptIds,
}

/// What the writer thread takes its work from: the channel, and the progress waiting beside it.
struct Queue {
    rx: mpsc::Receiver<WriteOp>,
    waiting: Arc<RideAlong<WriteOp>>,
}

fn writer_loop(
    mut conn: Connection,
    mut numbers: Numbers,
    mut queue: Queue,
    committed: &Committed,
) {
    let mut held: Option<WriteOp> = None;
    let mut synchronous = Synchronous::Full;
    loop {
        let first = match held.take() {
            Some(op) => op,
            None => match queue.rx.blocking_recv() {
                Some(op) => op,
                None => return, // every SqliteStore handle is gone
            },
        };
        // Whatever woke the thread, the progress waiting beside the channel goes first: it was
        // recorded before this operation arrived.
        let mut group = queue.waiting.take();
        match first {
            WriteOp::Job(job) => {
                commit_group(&mut conn, &mut numbers, group, committed, &mut synchronous);
                match synchronous.set(&conn, Synchronous::Full) {
                    Ok(()) => job(&mut conn),
                    // The job's reply sender is dropped: it answers `Closed`.
                    Err(e) => tracing::error!(error = %e, "cannot make commits synced"),
                }
                continue;
            }
            WriteOp::Close(done) => {
                commit_group(&mut conn, &mut numbers, group, committed, &mut synchronous);
                drop(conn);
                let _ = done.send(());
                return;
            }
            WriteOp::Flush => {}
            op => group.push(op),
        }
        while group.len() < MAX_OPS_PER_COMMIT {
            match queue.rx.try_recv() {
                Ok(op @ (WriteOp::Job(_) | WriteOp::Close(_))) => {
                    // Keep order: it runs right after this group.
                    held = Some(op);
                    break;
                }
                Ok(WriteOp::Flush) => {}
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        commit_group(&mut conn, &mut numbers, group, committed, &mut synchronous);
    }
}

/// The connection's `synchronous` setting, changed only between transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Synchronous {
    /// Every commit syncs the log: for anything an answer promises is stored.
    Full,
    /// Commits are not synced: for delivery progress alone (see the module doc).
    Normal,
}

impl Synchronous {
    fn for_work(work: &[Work]) -> Self {
        if work.iter().any(|w| matches!(w, Work::Append { .. })) {
            Synchronous::Full
        } else {
            Synchronous::Normal
        }
    }

    fn set(&mut self, conn: &Connection, wanted: Synchronous) -> Result<()> {
        if *self != wanted {
            let value = match wanted {
                Synchronous::Full => "FULL",
                Synchronous::Normal => "NORMAL",
            };
            conn.pragma_update(None, "synchronous", value)?;
            *self = wanted;
        }
        Ok(())
    }
}

/// What a grouped operation writes, apart from where its answer goes.
enum Work {
    Append {
        app: AppId,
        events: Vec<PreparedEvent>,
    },
    Progress(Progress),
}

enum Reply {
    Append(oneshot::Sender<Result<Vec<Appended>>>),
    Progress(oneshot::Sender<Result<()>>),
}

/// A grouped operation that ran; a round refused by its epoch fence is an answer, not a failure.
enum Done {
    Appended(Vec<Appended>),
    Progressed(Result<()>),
}

/// Runs operations in one transaction and commits it. Fails as a whole on a database error.
fn apply_group(
    conn: &mut Connection,
    numbers: &mut Numbers,
    work: &[Work],
    now: Timestamp,
    synchronous: &mut Synchronous,
) -> Result<Vec<Done>> {
    synchronous.set(conn, Synchronous::for_work(work))?;
    in_group_transaction(conn, |tx| {
        let mut done = Vec::with_capacity(work.len());
        for w in work {
            done.push(match w {
                Work::Append { app, events } => {
                    Done::Appended(events::append(tx, &mut numbers.log, *app, events, now)?)
                }
                // A stale round is refused before it writes anything (see progress::record).
                Work::Progress(p) => match progress::record(tx, p, now, &mut numbers.attempts) {
                    Err(e @ StoreError::Stale(_)) => Done::Progressed(Err(e)),
                    other => Done::Progressed(Ok(other?)),
                },
            });
        }
        Ok(done)
    })
}

/// Runs `f` in a transaction begun and committed by cached statements: the writer commits a group
/// hundreds of times a second, and `Connection::transaction` prepares `BEGIN` and `COMMIT` anew
/// each time (1.5% of the server's CPU at 200 events/s). Rolled back if `f` or the commit fails.
fn in_group_transaction<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    conn.prepare_cached("BEGIN")?.execute([])?;
    let result = f(conn).and_then(|value| {
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(value)
    });
    if result.is_err() && !conn.is_autocommit() {
        // The error that matters is the one returned; a failed rollback leaves the connection
        // in a transaction, which the next BEGIN reports.
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// One transaction for a group of appends and progress records, and replies only after it
/// committed, i.e. after the fsync. No savepoint per operation: each one copies every page it
/// touches into a statement journal, which cost about a fifth of the server's CPU under load
/// (perf, max-sqs). Instead, if the group fails on a database error, it is rolled back and each
/// operation is applied again alone, so only the guilty one fails. An empty group writes nothing.
fn commit_group(
    conn: &mut Connection,
    numbers: &mut Numbers,
    group: Vec<WriteOp>,
    committed: &Committed,
    synchronous: &mut Synchronous,
) {
    if group.is_empty() {
        return;
    }
    let now = Timestamp::now();
    let started = std::time::Instant::now();
    let (work, replies): (Vec<Work>, Vec<Reply>) = group
        .into_iter()
        .map(|op| match op {
            WriteOp::Append { app, events, reply } => {
                (Work::Append { app, events }, Reply::Append(reply))
            }
            WriteOp::Progress { progress, reply } => {
                (Work::Progress(progress), Reply::Progress(reply))
            }
            WriteOp::Job(_) | WriteOp::Close(_) | WriteOp::Flush => {
                unreachable!("only appends and progress are grouped")
            }
        })
        .unzip();
    let events: usize = work
        .iter()
        .map(|w| match w {
            Work::Append { events, .. } => events.len(),
            Work::Progress(_) => 0,
        })
        .sum();
    let results: Vec<Result<Done>> = match apply_group(conn, numbers, &work, now, synchronous) {
        Ok(done) => done.into_iter().map(Ok).collect(),
        Err(e) => {
            tracing::warn!(error = %e, operations = work.len(), "group commit failed; applying its operations one by one");
            work.iter()
                .map(|w| {
                    apply_group(conn, numbers, std::slice::from_ref(w), now, synchronous)
                        .map(|mut done| done.remove(0))
                })
                .collect()
        }
    };
    hookrelay_core::telemetry::record_store_commit(started.elapsed().as_secs_f64(), events);
    let max_seq = results
        .iter()
        .filter_map(|r| match r {
            Ok(Done::Appended(list)) => list.iter().filter_map(|a| a.seq).max(),
            _ => None,
        })
        .max();
    for (w, result) in work.into_iter().zip(&results) {
        if let (Work::Append { app, events }, Ok(Done::Appended(list))) = (w, result) {
            committed.recent.push(app, stored_events(events, list, now));
        }
    }
    // Wake the workers before answering, so that whoever sees the reply also sees the new head.
    if let Some(seq) = max_seq {
        committed.appended.send_replace(seq);
    }
    for (reply, result) in replies.into_iter().zip(results) {
        match (reply, result) {
            (Reply::Append(tx), Ok(Done::Appended(list))) => drop(tx.send(Ok(list))),
            (Reply::Progress(tx), Ok(Done::Progressed(r))) => drop(tx.send(r)),
            (Reply::Append(tx), Err(e)) => drop(tx.send(Err(e))),
            (Reply::Progress(tx), Err(e)) => drop(tx.send(Err(e))),
            _ => unreachable!("each operation's result matches its kind"),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_app(&self, name: &str, api_key: &str, api_secret: &Secret) -> Result<App> {
        let (name, key) = (name.to_owned(), api_key.to_owned());
        let sealed = self.secrets.seal(api_secret);
        let id = self
            .write(move |tx| apps::insert(tx, &name, &key, &sealed, Timestamp::now()))
            .await?;
        self.app_by_id(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("app vanished after insert".into()))
    }

    async fn list_apps(&self) -> Result<Vec<App>> {
        let secrets = self.secrets.clone();
        self.read(move |c| apps::select(c, &secrets, apps::Filter::All))
            .await
    }

    async fn app_by_key(&self, api_key: &str) -> Result<Option<App>> {
        let (secrets, key) = (self.secrets.clone(), api_key.to_owned());
        let found = self
            .read(move |c| apps::select(c, &secrets, apps::Filter::Key(&key)))
            .await?;
        Ok(found.into_iter().next())
    }

    async fn app_by_id(&self, id: AppId) -> Result<Option<App>> {
        let secrets = self.secrets.clone();
        let found = self
            .read(move |c| apps::select(c, &secrets, apps::Filter::Id(id)))
            .await?;
        Ok(found.into_iter().next())
    }

    async fn update_app_settings(&self, id: AppId, settings: AppSettings) -> Result<()> {
        let secrets = self.secrets.clone();
        self.write(move |tx| apps::update_settings(tx, &secrets, id, &settings, Timestamp::now()))
            .await?;
        self.config.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn set_api_secret(
        &self,
        id: AppId,
        api_secret: &Secret,
        keep_previous_until: Option<Timestamp>,
    ) -> Result<()> {
        let sealed = self.secrets.seal(api_secret);
        self.write(move |tx| {
            apps::set_secret(tx, id, &sealed, keep_previous_until, Timestamp::now())
        })
        .await?;
        // Workers sign with the app's secret: they restart with the new one.
        self.config.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn delete_app(&self, id: AppId) -> Result<bool> {
        let secrets = self.secrets.clone();
        let deleted = self
            .write(move |tx| {
                hooks::replace(tx, &secrets, id, &[])?;
                apps::delete(tx, id)
            })
            .await?;
        self.recent.forget_app(id);
        self.config.send_modify(|n| *n += 1);
        Ok(deleted)
    }

    async fn hooks(&self, app: AppId) -> Result<Vec<EventHook>> {
        let secrets = self.secrets.clone();
        let rows = self
            .read(move |c| hooks::select(c, &secrets, Some(app)))
            .await?;
        Ok(rows.into_iter().map(|r| r.hook).collect())
    }

    async fn app_hooks(&self, app: AppId) -> Result<Vec<AppHook>> {
        let secrets = self.secrets.clone();
        let rows = self
            .read(move |c| hooks::select(c, &secrets, Some(app)))
            .await?;
        Ok(rows.into_iter().map(AppHook::new).collect())
    }

    async fn all_hooks(&self) -> Result<Vec<HookRecord>> {
        let secrets = self.secrets.clone();
        self.read(move |c| hooks::select(c, &secrets, None)).await
    }

    async fn replace_hooks(&self, app: AppId, list: Vec<EventHook>) -> Result<()> {
        let secrets = self.secrets.clone();
        self.write(move |tx| hooks::replace(tx, &secrets, app, &list))
            .await?;
        self.config.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn append(&self, app: AppId, events: Vec<PreparedEvent>) -> Result<Vec<Appended>> {
        crate::ask_writer(&self.writer, |reply| WriteOp::Append { app, events, reply }).await
    }

    async fn read_events(&self, app: AppId, after: Seq, limit: usize) -> Result<Vec<StoredEvent>> {
        if let Some(events) = self.recent.read_after(app, after, limit) {
            return Ok(events);
        }
        self.read(move |c| events::read_after(c, app, after, limit))
            .await
    }

    fn subscribe_appends(&self) -> watch::Receiver<Seq> {
        self.appended.subscribe()
    }

    fn subscribe_config(&self) -> watch::Receiver<u64> {
        self.config.subscribe()
    }

    async fn cursor(&self, hook: &HookId) -> Result<Option<Cursor>> {
        let hook = hook.clone();
        self.read(move |c| progress::cursor(c, &hook)).await
    }

    async fn round_input(
        &self,
        hook: &HookId,
        app: AppId,
        known: Cursor,
        now: Timestamp,
        limits: RoundLimits,
    ) -> Result<Option<RoundInput>> {
        // Nothing changed since the hook's last full read and no retry is due: the events are
        // all the round needs, and memory may hold them.
        if let Some(next_retry_at) = self.views.nothing_due(hook, known, now)
            && let Some(events) = self.recent.read_after(app, known.seq, limits.events)
        {
            return Ok(Some(RoundInput {
                cursor: known,
                due: Vec::new(),
                events,
                next_retry_at,
            }));
        }
        let generation = self.views.generation();
        let recent = self.recent.clone();
        let id = hook.clone();
        let input = self
            .read(move |c| {
                let Some(stored) = progress::cursor(c, &id)? else {
                    return Ok(None);
                };
                let cursor = known.or_rewound(stored);
                let due = progress::due_retries(c, &id, now, limits.retries)?;
                let next_retry_at = match limits.more_due(due.len(), now) {
                    Some(at) => Some(at),
                    None => progress::next_retry_after(c, &id, now)?,
                };
                let events = match recent.read_after(app, cursor.seq, limits.events) {
                    Some(events) => events,
                    None => events::read_after(c, app, cursor.seq, limits.events)?,
                };
                Ok(Some(RoundInput {
                    cursor,
                    due,
                    events,
                    next_retry_at,
                }))
            })
            .await?;
        if let Some(input) = &input {
            let took_due = !input.due.is_empty();
            self.views.saw(
                hook,
                generation,
                input.cursor,
                took_due,
                input.next_retry_at,
                now,
            );
        }
        Ok(input)
    }

    async fn due_retries(
        &self,
        hook: &HookId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueRetry>> {
        let hook = hook.clone();
        self.read(move |c| progress::due_retries(c, &hook, now, limit))
            .await
    }

    async fn next_retry_after(&self, hook: &HookId, after: Timestamp) -> Result<Option<Timestamp>> {
        let hook = hook.clone();
        self.read(move |c| progress::next_retry_after(c, &hook, after))
            .await
    }

    async fn record_progress(&self, progress: Progress) -> Result<()> {
        if progress.is_empty() {
            return Ok(());
        }
        let hook = progress.hook.clone();
        let earliest_retry = progress.retries.iter().map(|r| r.next_attempt_at).min();
        if progress.can_wait {
            self.waiting
                .ride(
                    &self.writer,
                    self.progress_wait,
                    |reply| WriteOp::Progress { progress, reply },
                    || WriteOp::Flush,
                )
                .await?;
        } else {
            crate::ask_writer(&self.writer, |reply| WriteOp::Progress { progress, reply }).await?;
        }
        self.views.recorded(&hook, earliest_retry);
        Ok(())
    }

    async fn dead_letters(
        &self,
        hook: &AppHook,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let hook = hook.id().clone();
        self.read(move |c| progress::dead_letters(c, &hook, before, limit))
            .await
    }

    async fn attempts(
        &self,
        hook: &AppHook,
        outcome: Option<AttemptOutcome>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Attempt>> {
        let hook = hook.id().clone();
        self.read(move |c| attempts::list(c, &hook, outcome, before, limit))
            .await
    }

    async fn event_trace(
        &self,
        app: AppId,
        event_id: &str,
        hooks: &[HookId],
    ) -> Result<Option<EventTrace>> {
        let (event_id, hooks) = (event_id.to_owned(), hooks.to_vec());
        self.read(move |c| attempts::trace(c, app, &event_id, &hooks))
            .await
    }

    async fn set_paused(&self, hook: &AppHook, paused: bool) -> Result<bool> {
        let hook = hook.id().clone();
        let found = self
            .write(move |tx| progress::set_paused(tx, &hook, paused))
            .await?;
        self.config.send_modify(|n| *n += 1);
        Ok(found)
    }

    async fn rewind(&self, hook: &AppHook, since: Timestamp) -> Result<Option<u64>> {
        let hook = hook.id().clone();
        let behind = self
            .write(move |tx| progress::rewind(tx, &hook, since))
            .await?;
        // Wake the workers: the hook has events to deliver again.
        self.appended.send_modify(|_| {});
        Ok(behind)
    }

    async fn replay_dead_letters(
        &self,
        hook: &AppHook,
        event_ids: Option<Vec<String>>,
    ) -> Result<Vec<String>> {
        let hook = hook.id().clone();
        let n = self
            .write(move |tx| {
                progress::replay_dead_letters(tx, &hook, event_ids.as_deref(), Timestamp::now())
            })
            .await?;
        // Wake the workers: the replayed entries are due now.
        self.appended.send_modify(|_| {});
        Ok(n)
    }

    async fn backlog(
        &self,
        app: AppId,
        hook: &HookId,
        count_up_to: u64,
    ) -> Result<Option<HookBacklog>> {
        let hook = hook.clone();
        self.read(move |c| progress::backlog(c, app, &hook, count_up_to))
            .await
    }

    async fn check_writable(&self) -> Result<()> {
        // Nearly full is not ready: a small probe can still fit in space the log reuses while
        // larger writes fail.
        #[cfg(unix)]
        if let Some(dir) = self.readers.path.parent()
            && let Ok(fs) = rustix::fs::statvfs(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
        {
            let free = fs.f_bavail.saturating_mul(fs.f_frsize);
            if free < MIN_FREE_BYTES {
                return Err(StoreError::Unavailable(format!(
                    "the disk holding the store has {free} bytes free"
                )));
            }
        }
        // A real write to the database file (its header's user_version, set to what it is), so
        // a failing device shows here as it does for appends.
        self.write(|tx| {
            let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            tx.pragma_update(None, "user_version", version)?;
            Ok(())
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        let (done, closed) = oneshot::channel();
        self.writer
            .send(WriteOp::Close(done))
            .await
            .map_err(|_| StoreError::Closed)?;
        closed.await.map_err(|_| StoreError::Closed)
    }

    async fn cap_delivery_log(&self, keep_per_hook: usize) -> Result<u64> {
        let hooks: Vec<String> = self
            .read(|c| {
                let mut stmt = c.prepare_cached("SELECT id FROM hooks")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await?;
        let mut total = 0;
        for hook in hooks {
            let bound = {
                let hook = hook.clone();
                self.read(move |c| attempts::cap_bound(c, &hook, keep_per_hook))
                    .await?
            };
            // Ids only grow: whatever is recorded meanwhile is newer than the bound.
            let Some(through) = bound else { continue };
            loop {
                let hook = hook.clone();
                // The delivery log holds no cursor or retry: the rounds' views stay valid.
                let n = self
                    .write_job(move |tx| attempts::delete_through(tx, &hook, through, GC_SLICE))
                    .await?;
                total += n as u64;
                if n < GC_SLICE {
                    break;
                }
            }
        }
        Ok(total)
    }

    async fn collect_garbage(&self, older_than: Timestamp) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self
                .write(move |tx| events::delete_collectable(tx, older_than, GC_SLICE))
                .await?;
            total += n as u64;
            if n < GC_SLICE {
                break;
            }
        }
        if total > 0 {
            // Deleted events are read from nowhere, memory included.
            self.recent.forget_all();
        }
        // The delivery log is kept as long as the events it describes.
        while self
            .write(move |tx| attempts::delete_old(tx, older_than, GC_SLICE))
            .await?
            == GC_SLICE
        {}
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::events::tests::event;
    use super::*;
    use crate::Epoch;
    use hookrelay_core::hook::input::{HookRequest, HookRules, parse_hook_request};
    use std::time::Duration;

    /// A store whose caught-up progress would wait an hour for a commit to ride with, holding
    /// one app with one hook.
    async fn store_waiting_an_hour(dir: &Path) -> (Arc<SqliteStore>, AppId, HookId) {
        let mut store =
            SqliteStore::open(dir.join("hookrelay.db"), SecretBox::new(&[7; 32])).unwrap();
        store.progress_wait = Duration::from_secs(3600);
        let app = store
            .create_app("a", "k", &Secret::new("s"))
            .await
            .unwrap()
            .id;
        let v = serde_json::json!({
            "id": "h", "enabled": true, "hook_type": "webhook", "webhook_url": "https://example.com/hook",
        });
        let HookRequest::Upsert(hook) =
            parse_hook_request(&v, false, |_| None, &HookRules::default(), Timestamp::now())
                .unwrap()
        else {
            unreachable!("an upsert")
        };
        let id = hook.id.clone();
        store.replace_hooks(app, vec![*hook]).await.unwrap();
        (Arc::new(store), app, id)
    }

    async fn stored_cursor(store: &SqliteStore, hook: &HookId) -> Seq {
        store.cursor(hook).await.unwrap().unwrap().seq
    }

    /// Records, in a task of its own, progress of a caught-up hook moving its cursor to `to`.
    async fn record_caught_up(
        store: &Arc<SqliteStore>,
        hook: &HookId,
        to: Seq,
    ) -> tokio::task::JoinHandle<Result<()>> {
        let epoch = store.cursor(hook).await.unwrap().unwrap().epoch;
        let mut progress = Progress::new(hook.clone(), epoch);
        progress.cursor = Some(to);
        progress.can_wait = true;
        let store = store.clone();
        let task = tokio::spawn(async move { store.record_progress(progress).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        task
    }

    /// The recording's answer, or a failure if it does not come soon (it would otherwise come
    /// only after the hour).
    async fn answered(recording: tokio::task::JoinHandle<Result<()>>, what: &str) {
        let answer = tokio::time::timeout(Duration::from_secs(10), recording).await;
        answer
            .unwrap_or_else(|_| panic!("{what}"))
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn caught_up_progress_rides_with_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let (store, app, hook) = store_waiting_an_hour(dir.path()).await;
        let first = store.append(app, vec![event("e1")]).await.unwrap()[0]
            .seq
            .unwrap();
        let recording = record_caught_up(&store, &hook, first).await;
        assert!(
            !recording.is_finished(),
            "it waits for a commit to ride with"
        );
        assert!(stored_cursor(&store, &hook).await < first);

        store.append(app, vec![event("e2")]).await.unwrap();
        answered(recording, "committed with the append").await;
        assert_eq!(stored_cursor(&store, &hook).await, first);
    }

    #[tokio::test]
    async fn caught_up_progress_goes_before_a_later_write_and_before_closing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, app, hook) = store_waiting_an_hour(dir.path()).await;
        let seqs: Vec<Seq> = store
            .append(app, vec![event("e1"), event("e2")])
            .await
            .unwrap()
            .iter()
            .map(|a| a.seq.unwrap())
            .collect();

        // A write of its own (a pause) takes the waiting progress along, in order.
        let recording = record_caught_up(&store, &hook, seqs[0]).await;
        let hook_of_app = store.app_hook(app, &hook).await.unwrap().unwrap();
        store.set_paused(&hook_of_app, true).await.unwrap();
        answered(recording, "committed before the pause").await;
        assert_eq!(stored_cursor(&store, &hook).await, seqs[0]);

        // Closing the store commits what waits, so nothing recorded is lost.
        let recording = record_caught_up(&store, &hook, seqs[1]).await;
        store.close().await.unwrap();
        answered(recording, "committed before closing").await;
        drop(store);
        let reopened =
            SqliteStore::open(dir.path().join("hookrelay.db"), SecretBox::new(&[7; 32])).unwrap();
        assert_eq!(stored_cursor(&reopened, &hook).await, seqs[1]);
    }

    #[tokio::test]
    async fn caught_up_progress_is_committed_alone_when_nothing_comes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, app, hook) = store_waiting_an_hour(dir.path()).await;
        let first = store.append(app, vec![event("e1")]).await.unwrap()[0]
            .seq
            .unwrap();
        let mut store = Arc::into_inner(store).unwrap();
        store.progress_wait = Duration::from_millis(20);
        let store = Arc::new(store);
        let recording = record_caught_up(&store, &hook, first).await;
        answered(recording, "committed on its own").await;
        assert_eq!(stored_cursor(&store, &hook).await, first);
    }

    #[test]
    fn only_groups_of_delivery_progress_alone_commit_unsynced() {
        let progress = || Work::Progress(Progress::new(HookId::generate(), Epoch(0)));
        let append = || Work::Append {
            app: AppId(1),
            events: Vec::new(),
        };
        assert_eq!(
            Synchronous::for_work(&[progress(), progress()]),
            Synchronous::Normal
        );
        assert_eq!(
            Synchronous::for_work(&[progress(), append()]),
            Synchronous::Full
        );
        assert_eq!(Synchronous::for_work(&[append()]), Synchronous::Full);
    }

    #[test]
    fn the_setting_changes_only_when_it_differs() {
        let conn = Connection::open_in_memory().unwrap();
        let read = |c: &Connection| -> i64 {
            c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap()
        };
        let mut setting = Synchronous::Full;
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        setting.set(&conn, Synchronous::Normal).unwrap();
        assert_eq!((setting, read(&conn)), (Synchronous::Normal, 1));
        setting.set(&conn, Synchronous::Full).unwrap();
        assert_eq!((setting, read(&conn)), (Synchronous::Full, 2));
    }

    #[test]
    fn a_group_transaction_commits_all_or_rolls_back_all() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let insert = |c: &Connection, x: i64| -> Result<()> {
            c.execute("INSERT INTO t VALUES (?1)", [x])?;
            Ok(())
        };
        let failed = in_group_transaction(&conn, |c| {
            insert(c, 1)?;
            Err::<(), _>(StoreError::Unavailable("a later operation failed".into()))
        });
        assert!(failed.is_err());
        assert!(conn.is_autocommit(), "the failed group is rolled back");
        in_group_transaction(&conn, |c| insert(c, 2)).unwrap();
        in_group_transaction(&conn, |c| insert(c, 3)).unwrap();
        let rows: Vec<i64> = conn
            .prepare("SELECT x FROM t ORDER BY x")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(rows, [2, 3]);
    }
}
