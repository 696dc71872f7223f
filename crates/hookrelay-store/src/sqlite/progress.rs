//! Delivery progress: cursors (a column of `hooks`), `retries` and `dead_letters`.
//!
//! Every write here is guarded by "the hook still exists", so a worker that finishes a round just
//! after its hook was deleted cannot bring back rows for it.

use hookrelay_core::{HookId, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use crate::sqlite::events::row_to_event;
use crate::{DeadLetter, DeadLetterReason, DueRetry, Progress, Result, Seq, StoreError};

pub fn cursor(conn: &Connection, hook: &HookId) -> Result<Option<Seq>> {
    Ok(conn
        .query_row(
            "SELECT cursor FROM hooks WHERE id = ?1",
            [hook.as_str()],
            |r| r.get(0),
        )
        .optional()?)
}

pub fn record(conn: &Connection, p: &Progress, now: Timestamp) -> Result<()> {
    let hook = p.hook.as_str();
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
         FROM retries r JOIN events e ON e.seq = r.seq
         WHERE r.hook_id = ?1 AND r.next_attempt_ms <= ?2
         ORDER BY r.next_attempt_ms, r.seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![hook.as_str(), now.millis(), limit as i64], |r| {
        Ok(DueRetry {
            event: row_to_event(r)?,
            attempts: r.get(6)?,
            first_failed_at: Timestamp::from_millis(r.get(7)?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn next_retry_at(conn: &Connection, hook: &HookId) -> Result<Option<Timestamp>> {
    let ms: Option<i64> = conn.query_row(
        "SELECT MIN(next_attempt_ms) FROM retries WHERE hook_id = ?1",
        [hook.as_str()],
        |r| r.get(0),
    )?;
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
            Ok((
                r.get::<_, String>(4)?,
                DeadLetter {
                    id: r.get(0)?,
                    seq: r.get(1)?,
                    event_id: r.get(2)?,
                    event_type: r.get(3)?,
                    reason: DeadLetterReason::TooLarge,
                    attempts: r.get(5)?,
                    last_error: r.get(6)?,
                    created_at: Timestamp::from_millis(r.get(7)?),
                },
            ))
        },
    )?;
    rows.map(|row| {
        let (reason, mut dl) = row?;
        dl.reason = DeadLetterReason::parse(&reason)
            .ok_or_else(|| StoreError::Corrupt(format!("dead letter reason {reason:?}")))?;
        Ok(dl)
    })
    .collect()
}
