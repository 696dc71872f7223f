//! The embedded store: one SQLite file in WAL mode.
//!
//! # Concurrency
//! SQLite allows one writer at a time, so every write goes to a single **writer thread** through a
//! bounded channel. The thread takes everything waiting in the channel and commits appends and
//! delivery progress of many requests in **one transaction with one fsync** (group commit): while
//! it waits on the disk, the next group collects. Other writes (settings, hooks, garbage
//! collection) run one by one in their own transaction on the same thread.
//!
//! Reads never wait for the writer: WAL lets a small pool of read connections see the last
//! committed state while a write is in progress. They run on tokio's blocking threads.
//!
//! # Durability
//! `synchronous = FULL` in WAL mode syncs the log on every commit, so a reply sent after commit
//! means the data survives a crash or power loss.

mod apps;
mod events;
mod hooks;
mod progress;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hookrelay_core::event::PreparedEvent;
use hookrelay_core::{EventHook, HookId, Secret, Timestamp};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    App, AppId, AppSettings, Appended, Cursor, DeadLetter, DueRetry, HookBacklog, HookRecord,
    Progress, Result, SecretBox, Seq, Store, StoreError, StoredEvent,
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
}

/// The SQLite [`Store`].
pub struct SqliteStore {
    writer: mpsc::Sender<WriteOp>,
    readers: Arc<Readers>,
    secrets: SecretBox,
    appended: Arc<watch::Sender<Seq>>,
    config: watch::Sender<u64>,
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and runs its migrations.
    pub fn open(path: impl AsRef<Path>, secrets: SecretBox) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut conn = open_connection(&path)?;
        schema::migrate(&mut conn)?;
        let head = events::high_water_mark(&conn)?;
        let appended = Arc::new(watch::Sender::new(head));
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let thread_appended = appended.clone();
        std::thread::Builder::new()
            .name("hookrelay-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, &thread_appended))?;
        Ok(Self {
            writer: tx,
            readers: Arc::new(Readers {
                path,
                idle: Mutex::new(Vec::new()),
            }),
            secrets,
            appended,
            config: watch::Sender::new(0),
        })
    }

    /// Runs `f` on the writer thread, in its own transaction.
    async fn write<T: Send + 'static>(
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

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<WriteOp>,
    appended: &watch::Sender<Seq>,
) {
    let mut held_job: Option<Job> = None;
    loop {
        let first = match held_job.take() {
            Some(job) => WriteOp::Job(job),
            None => match rx.blocking_recv() {
                Some(op) => op,
                None => return, // every SqliteStore handle is gone
            },
        };
        let mut group = match first {
            WriteOp::Job(job) => {
                job(&mut conn);
                continue;
            }
            op => vec![op],
        };
        while group.len() < MAX_OPS_PER_COMMIT {
            match rx.try_recv() {
                Ok(WriteOp::Job(job)) => {
                    // Keep order: the job runs right after this group.
                    held_job = Some(job);
                    break;
                }
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        commit_group(&mut conn, group, appended);
    }
}

enum Outcome {
    Appended(
        oneshot::Sender<Result<Vec<Appended>>>,
        Result<Vec<Appended>>,
    ),
    Progressed(oneshot::Sender<Result<()>>, Result<()>),
}

/// One transaction for a group of appends and progress records. Each operation runs in its own
/// savepoint, so one that fails (say, a constraint) is rolled back alone and told so, while the
/// others commit. Replies go out only after the commit, i.e. after the fsync.
fn commit_group(conn: &mut Connection, group: Vec<WriteOp>, appended: &watch::Sender<Seq>) {
    let now = Timestamp::now();
    let started = std::time::Instant::now();
    let events: usize = group
        .iter()
        .map(|op| match op {
            WriteOp::Append { events, .. } => events.len(),
            _ => 0,
        })
        .sum();
    let mut outcomes = Vec::with_capacity(group.len());
    let mut max_seq = None;
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            let msg = e.to_string();
            for op in group {
                fail_op(op, &msg);
            }
            return;
        }
    };
    let mut tx = tx;
    for op in group {
        match op {
            WriteOp::Append { app, events, reply } => {
                let result = in_savepoint(&mut tx, |sp| events::append(sp, app, &events, now));
                if let Ok(list) = &result {
                    max_seq = list.iter().filter_map(|a| a.seq).max().max(max_seq);
                }
                outcomes.push(Outcome::Appended(reply, result));
            }
            WriteOp::Progress { progress, reply } => {
                let result = in_savepoint(&mut tx, |sp| progress::record(sp, &progress, now));
                outcomes.push(Outcome::Progressed(reply, result));
            }
            WriteOp::Job(_) => unreachable!("jobs are never grouped"),
        }
    }
    let committed = tx.commit().map_err(|e| e.to_string());
    metrics::histogram!("hookrelay_store_commit_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("hookrelay_store_commit_events").record(events as f64);
    // Wake the workers before answering, so that whoever sees the reply also sees the new head.
    if let (Ok(()), Some(seq)) = (&committed, max_seq) {
        appended.send_replace(seq);
    }
    for outcome in outcomes {
        match (outcome, &committed) {
            (Outcome::Appended(reply, result), Ok(())) => drop(reply.send(result)),
            (Outcome::Progressed(reply, result), Ok(())) => drop(reply.send(result)),
            (Outcome::Appended(reply, _), Err(e)) => drop(reply.send(Err(commit_error(e)))),
            (Outcome::Progressed(reply, _), Err(e)) => drop(reply.send(Err(commit_error(e)))),
        }
    }
}

fn in_savepoint<T>(
    tx: &mut rusqlite::Transaction<'_>,
    f: impl FnOnce(&rusqlite::Savepoint<'_>) -> Result<T>,
) -> Result<T> {
    let sp = tx.savepoint()?;
    let value = f(&sp)?; // on error, dropping `sp` rolls back to it
    sp.commit()?;
    Ok(value)
}

fn commit_error(msg: &str) -> StoreError {
    StoreError::Corrupt(format!("commit failed: {msg}"))
}

fn fail_op(op: WriteOp, msg: &str) {
    match op {
        WriteOp::Append { reply, .. } => drop(reply.send(Err(commit_error(msg)))),
        WriteOp::Progress { reply, .. } => drop(reply.send(Err(commit_error(msg)))),
        WriteOp::Job(_) => {}
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

    async fn hooks(&self, app: AppId) -> Result<Vec<EventHook>> {
        let secrets = self.secrets.clone();
        let rows = self
            .read(move |c| hooks::select(c, &secrets, Some(app)))
            .await?;
        Ok(rows.into_iter().map(|r| r.hook).collect())
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

    async fn next_retry_at(&self, hook: &HookId) -> Result<Option<Timestamp>> {
        let hook = hook.clone();
        self.read(move |c| progress::next_retry_at(c, &hook)).await
    }

    async fn record_progress(&self, progress: Progress) -> Result<()> {
        if progress.is_empty() {
            return Ok(());
        }
        crate::ask_writer(&self.writer, |reply| WriteOp::Progress { progress, reply }).await
    }

    async fn dead_letters(
        &self,
        hook: &HookId,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let hook = hook.clone();
        self.read(move |c| progress::dead_letters(c, &hook, before, limit))
            .await
    }

    async fn set_paused(&self, hook: &HookId, paused: bool) -> Result<bool> {
        let hook = hook.clone();
        let found = self
            .write(move |tx| progress::set_paused(tx, &hook, paused))
            .await?;
        self.config.send_modify(|n| *n += 1);
        Ok(found)
    }

    async fn rewind(&self, hook: &HookId, since: Timestamp) -> Result<Option<u64>> {
        let hook = hook.clone();
        let behind = self
            .write(move |tx| progress::rewind(tx, &hook, since))
            .await?;
        // Wake the workers: the hook has events to deliver again.
        self.appended.send_modify(|_| {});
        Ok(behind)
    }

    async fn replay_dead_letters(
        &self,
        hook: &HookId,
        event_ids: Option<Vec<String>>,
    ) -> Result<u64> {
        let hook = hook.clone();
        let n = self
            .write(move |tx| {
                progress::replay_dead_letters(tx, &hook, event_ids.as_deref(), Timestamp::now())
            })
            .await?;
        // Wake the workers: the replayed entries are due now.
        self.appended.send_modify(|_| {});
        Ok(n)
    }

    async fn backlog(&self, app: AppId, hook: &HookId) -> Result<Option<HookBacklog>> {
        let hook = hook.clone();
        self.read(move |c| progress::backlog(c, app, &hook)).await
    }

    async fn check_writable(&self) -> Result<()> {
        self.write(|tx| {
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS ready_probe (x); DELETE FROM ready_probe;",
            )?;
            Ok(())
        })
        .await
    }

    async fn collect_garbage(&self, older_than: Timestamp) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self
                .write(move |tx| events::delete_collectable(tx, older_than, GC_SLICE))
                .await?;
            total += n as u64;
            if n < GC_SLICE {
                return Ok(total);
            }
        }
    }
}
