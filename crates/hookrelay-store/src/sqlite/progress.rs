//! Delivery progress: cursors (a column of `hooks`), `retries` and `dead_letters`.
//!
//! Every write of a round is guarded: by "the hook still exists", so a worker that finishes a round
//! just after its hook was deleted cannot bring back rows for it; and by the hook's epoch, so a
//! round that started before a rewind cannot move the cursor past it again.

use hookrelay_core::{HookId, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use crate::sqlite::attempts::AttemptIds;
use crate::sqlite::events::{self, row_to_event};
use crate::{
    AppId, Cursor, DeadLetter, DeadLetterReason, DueRetry, Epoch, HookBacklog, Progress, Result,
    Seq, StoreError, StoredEvent,
};

pub fn cursor(conn: &Connection, hook: &HookId) -> Result<Option<Cursor>> {
    Ok(conn
        .prepare_cached("SELECT cursor, epoch FROM hooks WHERE id = ?1")?
        .query_row([hook.as_str()], |r| {
            Ok(Cursor {
                seq: r.get(0)?,
                epoch: r.get(1)?,
            })
        })
        .optional()?)
}

pub fn record(
    conn: &Connection,
    p: &Progress,
    now: Timestamp,
    attempt_ids: &mut AttemptIds,
) -> Result<()> {
    let hook = p.hook.as_str();
    let epoch: Option<Epoch> = conn
        .prepare_cached("SELECT epoch FROM hooks WHERE id = ?1")?
        .query_row([hook], |r| r.get(0))
        .optional()?;
    match epoch {
        None => return Ok(()), // deleted meanwhile: nothing to record
        Some(e) if e != p.epoch => return Err(StoreError::Stale(p.hook.clone())),
        Some(_) => {}
    }
    if let Some(seq) = p.cursor {
        conn.prepare_cached("UPDATE hooks SET cursor = MAX(cursor, ?2) WHERE id = ?1")?
            .execute(params![hook, seq])?;
    }
    let mut upsert = conn.prepare_cached(
        "INSERT INTO retries (hook_id, seq, attempts, first_failed_ms, next_attempt_ms, last_error)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM hooks WHERE id = ?1)
         ON CONFLICT (hook_id, seq) DO UPDATE SET
             attempts = excluded.attempts,
             next_attempt_ms = excluded.next_attempt_ms,
             last_error = excluded.last_error",
    )?;
    for r in &p.retries {
        upsert.execute(params![
            hook,
            r.seq,
            r.attempts,
            r.first_failed_at.millis(),
            r.next_attempt_at.millis(),
            r.last_error
        ])?;
    }
    let mut done = conn.prepare_cached("DELETE FROM retries WHERE hook_id = ?1 AND seq = ?2")?;
    for seq in &p.retries_done {
        done.execute(params![hook, seq])?;
    }
    let mut dead = conn.prepare_cached(
        "INSERT INTO dead_letters (hook_id, seq, event_id, type, cid, event_created_ms, payload,
                                   reason, attempts, last_error, created_ms)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11
         WHERE EXISTS (SELECT 1 FROM hooks WHERE id = ?1)",
    )?;
    for d in &p.dead_letters {
        let e = &d.event;
        dead.execute(params![
            hook,
            e.seq,
            e.id,
            e.event_type,
            e.cid,
            e.created_at.millis(),
            &e.payload[..],
            d.reason.as_str(),
            d.attempts,
            d.last_error,
            now.millis()
        ])?;
        done.execute(params![hook, e.seq])?;
    }
    crate::sqlite::attempts::insert(conn, attempt_ids, &p.hook, &p.attempts)?;
    Ok(())
}

pub fn due_retries(
    conn: &Connection,
    hook: &HookId,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<DueRetry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.seq, e.event_id, e.type, e.cid, e.created_ms, e.payload, r.attempts, r.first_failed_ms
         FROM retries r JOIN hooks h ON h.id = r.hook_id
              JOIN events e ON e.pos = (h.app_id << ?4) | r.seq
         WHERE r.hook_id = ?1 AND r.next_attempt_ms <= ?2
         ORDER BY r.next_attempt_ms, r.seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![hook.as_str(), now.millis(), limit as i64, events::SEQ_BITS],
        |r| {
            Ok(DueRetry {
                event: row_to_event(r)?,
                attempts: r.get(6)?,
                first_failed_at: Timestamp::from_millis(r.get(7)?),
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn next_retry_after(
    conn: &Connection,
    hook: &HookId,
    after: Timestamp,
) -> Result<Option<Timestamp>> {
    let ms: Option<i64> = conn
        .prepare_cached(
            "SELECT MIN(next_attempt_ms) FROM retries WHERE hook_id = ?1 AND next_attempt_ms > ?2",
        )?
        .query_row(params![hook.as_str(), after.millis()], |r| r.get(0))?;
    Ok(ms.map(Timestamp::from_millis))
}

pub fn dead_letters(
    conn: &Connection,
    hook: &HookId,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<DeadLetter>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, seq, event_id, type, reason, attempts, last_error, created_ms FROM dead_letters
         WHERE hook_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![hook.as_str(), before.unwrap_or(i64::MAX), limit as i64],
        |r| {
            let reason: String = r.get(4)?;
            let reason = DeadLetterReason::parse(&reason).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    4,
                    rusqlite::types::Type::Text,
                    format!("unknown dead letter reason {reason:?}").into(),
                )
            })?;
            Ok(DeadLetter {
                id: r.get(0)?,
                seq: r.get(1)?,
                event_id: r.get(2)?,
                event_type: r.get(3)?,
                reason,
                attempts: r.get(5)?,
                last_error: r.get(6)?,
                created_at: Timestamp::from_millis(r.get(7)?),
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn set_paused(conn: &Connection, hook: &HookId, paused: bool) -> Result<bool> {
    let n = conn.execute(
        "UPDATE hooks SET paused = ?2 WHERE id = ?1",
        params![hook.as_str(), paused],
    )?;
    Ok(n > 0)
}

pub fn rewind(conn: &Connection, hook: &HookId, since: Timestamp) -> Result<Option<u64>> {
    let Some((app, cursor)): Option<(AppId, Seq)> = conn
        .query_row(
            "SELECT app_id, cursor FROM hooks WHERE id = ?1",
            [hook.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
    else {
        return Ok(None);
    };
    // Events are appended in time order, so the first one at or after `since` is found by
    // walking the app's log in sequence order; no index on time is kept for this rare operation
    // (every index costs every append).
    let first = events::first_since(conn, app, since)?;
    let target = first.map_or(cursor, |seq| (seq - 1).min(cursor));
    conn.execute(
        "UPDATE hooks SET cursor = ?2, epoch = epoch + 1 WHERE id = ?1",
        params![hook.as_str(), target],
    )?;
    let behind = events::count_after(conn, app, target, u64::MAX)?;
    Ok(Some(behind))
}

/// Dead letters back into the retry set, due now. A dead letter whose event was already deleted
/// from the log (retention) gets its event back, under its old sequence number, from the copy the
/// dead letter keeps.
pub fn replay_dead_letters(
    conn: &Connection,
    hook: &HookId,
    event_ids: Option<&[String]>,
    now: Timestamp,
) -> Result<Vec<String>> {
    let mut select = conn.prepare_cached(
        "SELECT d.id, d.seq, d.event_id, d.type, d.cid, d.event_created_ms, d.payload, h.app_id
         FROM dead_letters d JOIN hooks h ON h.id = d.hook_id
         WHERE d.hook_id = ?1 ORDER BY d.id",
    )?;
    type Row = (
        i64,
        Seq,
        String,
        String,
        Option<String>,
        i64,
        Vec<u8>,
        AppId,
    );
    let rows: Vec<Row> = select
        .query_map([hook.as_str()], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut retry = conn.prepare_cached(
        "INSERT INTO retries (hook_id, seq, attempts, first_failed_ms, next_attempt_ms, last_error)
         VALUES (?1, ?2, 0, ?3, ?3, 'replayed from the dead letters')
         ON CONFLICT (hook_id, seq) DO UPDATE SET next_attempt_ms = excluded.next_attempt_ms",
    )?;
    let mut delete = conn.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?;
    let mut replayed = Vec::new();
    for (id, seq, event_id, ty, cid, created_ms, payload, app) in rows {
        if event_ids.is_some_and(|ids| !ids.contains(&event_id)) {
            continue;
        }
        let event = StoredEvent {
            seq,
            id: event_id,
            event_type: ty,
            cid,
            created_at: Timestamp::from_millis(created_ms),
            payload: payload.into(),
        };
        events::restore(conn, app, &event)?;
        if !events::contains(conn, app, seq)? {
            // The id was reused by a newer event after this one was deleted: it cannot be put
            // back under its sequence number, so the dead letter stays.
            continue;
        }
        retry.execute(params![hook.as_str(), seq, now.millis()])?;
        delete.execute([id])?;
        replayed.push(event.id);
    }
    Ok(replayed)
}

pub fn backlog(
    conn: &Connection,
    app: AppId,
    hook: &HookId,
    count_up_to: u64,
) -> Result<Option<HookBacklog>> {
    let Some(cursor) = cursor(conn, hook)? else {
        return Ok(None);
    };
    let limit = count_up_to.min(i64::MAX as u64) as i64;
    let count = |sql: &str| -> Result<u64> {
        Ok(conn.query_row(sql, params![hook.as_str(), limit], |r| r.get(0))?)
    };
    let events_behind = events::count_after(conn, app, cursor.seq, count_up_to)?;
    let oldest_log = events::oldest_after(conn, app, cursor.seq)?.map(Timestamp::millis);
    // The oldest retry entry is among the first by sequence number (events are numbered in
    // creation order, give or take clock skew between requests).
    let oldest_retry: Option<i64> = conn.query_row(
        "SELECT MIN(e.created_ms) FROM (SELECT seq FROM retries WHERE hook_id = ?1 ORDER BY seq LIMIT 100) r
         JOIN events e ON e.pos = (?2 << ?3) | r.seq",
        params![hook.as_str(), app, events::SEQ_BITS],
        |r| r.get(0),
    )?;
    let oldest = match (oldest_log, oldest_retry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(Some(HookBacklog {
        cursor: cursor.seq,
        events_behind,
        retries: count("SELECT COUNT(*) FROM (SELECT 1 FROM retries WHERE hook_id = ?1 LIMIT ?2)")?,
        dead_letters: count(
            "SELECT COUNT(*) FROM (SELECT 1 FROM dead_letters WHERE hook_id = ?1 LIMIT ?2)",
        )?,
        oldest_pending: oldest.map(Timestamp::from_millis),
        owner: None,
    }))
}
