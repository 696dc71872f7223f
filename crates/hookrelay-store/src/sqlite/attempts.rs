//! The delivery log (`attempts`): written with each round's progress, read per hook and per event.

use hookrelay_core::{HookId, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use crate::codec::{attempt_events_json, parse_attempt_events};
use crate::sqlite::events::row_to_event;
use crate::{
    AppId, Attempt, AttemptOutcome, AttemptRecord, DeadLetterReason, EventTrace, HookTrace, Result,
    Seq, StoreError,
};

/// How many of a hook's rows nearest below an event are read to find the rows that include it:
/// a bound on the work of one lookup, far above what one event's history needs.
const NEAREST_ROWS: i64 = 256;

pub fn insert(conn: &Connection, hook: &HookId, records: &[AttemptRecord]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO attempts (hook_id, first_seq, last_seq, events, at_ms, duration_us, outcome,
                               code, http_status, response)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for a in records {
        let Some((first, last)) = a.seq_range() else {
            continue;
        };
        stmt.execute(params![
            hook.as_str(),
            first,
            last,
            attempt_events_json(&a.events)?,
            a.at.millis(),
            a.duration_us as i64,
            a.outcome.as_str(),
            a.code,
            a.http_status,
            a.response
        ])?;
    }
    Ok(())
}

const COLUMNS: &str =
    "id, events, at_ms, duration_us, outcome, code, http_status, response, first_seq, last_seq";

fn row_to_attempt(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<std::result::Result<Attempt, StoreError>> {
    let events: String = r.get(1)?;
    let outcome: String = r.get(4)?;
    let duration: i64 = r.get(3)?;
    let http_status: Option<u16> = r.get(6)?;
    Ok(parse_attempt_events(&events).and_then(|events| {
        let outcome = AttemptOutcome::parse(&outcome)
            .ok_or_else(|| StoreError::Corrupt(format!("attempt outcome {outcome:?}")))?;
        Ok(Attempt {
            id: r.get(0).map_err(StoreError::from)?,
            record: AttemptRecord {
                events,
                at: Timestamp::from_millis(r.get(2).map_err(StoreError::from)?),
                duration_us: duration.max(0) as u64,
                outcome,
                code: r.get(5).map_err(StoreError::from)?,
                http_status,
                response: r.get(7).map_err(StoreError::from)?,
            },
        })
    }))
}

pub fn list(
    conn: &Connection,
    hook: &HookId,
    outcome: Option<AttemptOutcome>,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<Attempt>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM attempts
         WHERE hook_id = ?1 AND id < ?2 AND (?3 IS NULL OR outcome = ?3)
         ORDER BY id DESC LIMIT ?4"
    ))?;
    let rows = stmt.query_map(
        params![
            hook.as_str(),
            before.unwrap_or(i64::MAX),
            outcome.map(AttemptOutcome::as_str),
            limit as i64
        ],
        row_to_attempt,
    )?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

/// The attempts of `hook` that include the event at `seq`, oldest first.
fn of_event(conn: &Connection, hook: &HookId, seq: Seq) -> Result<Vec<Attempt>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM (
             SELECT * FROM attempts WHERE hook_id = ?1 AND first_seq <= ?2
             ORDER BY first_seq DESC LIMIT ?3)
         WHERE last_seq >= ?2 ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![hook.as_str(), seq, NEAREST_ROWS], row_to_attempt)?;
    let mut out = Vec::new();
    for row in rows {
        let attempt = row??;
        if attempt.record.events.iter().any(|e| e.seq == seq) {
            out.push(attempt);
        }
    }
    Ok(out)
}

pub fn trace(
    conn: &Connection,
    app: AppId,
    event_id: &str,
    hooks: &[HookId],
) -> Result<Option<EventTrace>> {
    let event = conn
        .prepare_cached(
            "SELECT seq, event_id, type, cid, created_ms, payload FROM events
             WHERE app_id = ?1 AND event_id = ?2",
        )?
        .query_row(params![app, event_id], row_to_event)
        .optional()?;
    let Some(event) = event else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(hooks.len());
    for hook in hooks {
        let Some(cursor): Option<Seq> = conn
            .prepare_cached("SELECT cursor FROM hooks WHERE id = ?1")?
            .query_row([hook.as_str()], |r| r.get(0))
            .optional()?
        else {
            continue;
        };
        let retry = conn
            .prepare_cached(
                "SELECT attempts, next_attempt_ms, last_error FROM retries
                 WHERE hook_id = ?1 AND seq = ?2",
            )?
            .query_row(params![hook.as_str(), event.seq], |r| {
                Ok((r.get(0)?, Timestamp::from_millis(r.get(1)?), r.get(2)?))
            })
            .optional()?;
        let reason: Option<String> = conn
            .prepare_cached(
                "SELECT reason FROM dead_letters WHERE hook_id = ?1 AND seq = ?2
                 ORDER BY id DESC LIMIT 1",
            )?
            .query_row(params![hook.as_str(), event.seq], |r| r.get(0))
            .optional()?;
        out.push(HookTrace {
            hook: hook.clone(),
            cursor,
            retry,
            dead_letter: reason.as_deref().and_then(DeadLetterReason::parse),
            attempts: of_event(conn, hook, event.seq)?,
        });
    }
    Ok(Some(EventTrace { event, hooks: out }))
}

/// Deletes up to `limit` attempts recorded before `older_than` (rows are in time order, so the
/// scan stops at the first recent one).
pub fn delete_old(conn: &Connection, older_than: Timestamp, limit: usize) -> Result<usize> {
    Ok(conn.execute(
        "DELETE FROM attempts WHERE id IN (
             SELECT id FROM attempts WHERE id < COALESCE(
                 (SELECT id FROM attempts WHERE at_ms >= ?1 ORDER BY id LIMIT 1),
                 (SELECT MAX(id) + 1 FROM attempts))
             ORDER BY id LIMIT ?2)",
        params![older_than.millis(), limit as i64],
    )?)
}

/// Deletes a hook's records older than its newest `keep`.
pub fn cap(conn: &Connection, hook: &str, keep: usize) -> Result<usize> {
    Ok(conn.execute(
        "DELETE FROM attempts WHERE hook_id = ?1 AND id <= (
             SELECT id FROM attempts WHERE hook_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        params![hook, keep as i64],
    )?)
}
