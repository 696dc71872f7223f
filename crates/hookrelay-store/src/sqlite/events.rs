//! The `events` table: the append-only log.

use hookrelay_core::Timestamp;
use hookrelay_core::event::PreparedEvent;
use rusqlite::{Connection, OptionalExtension, params};

use crate::{AppId, Appended, Payload, Result, Seq, StoredEvent};

/// The highest sequence number ever given out (0 for an empty log), including deleted events.
pub fn high_water_mark(conn: &Connection) -> Result<Seq> {
    let seq: Option<Seq> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(seq.unwrap_or_default())
}

pub fn append(
    conn: &Connection,
    app: AppId,
    events: &[PreparedEvent],
    now: Timestamp,
) -> Result<Vec<Appended>> {
    // Not `RETURNING seq`: SQLite gathers RETURNING rows in a temporary table, which cost
    // more than the insert itself; a row inserted is the connection's last rowid instead.
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (app_id, event_id, type, cid, created_ms, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (app_id, event_id) DO NOTHING",
    )?;
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let inserted = stmt.execute(params![
            app,
            e.id,
            e.event_type,
            e.cid,
            now.millis(),
            e.payload
        ])?;
        // No row inserted: the id was already in the log (a re-sent event).
        let seq = (inserted == 1).then(|| Seq(conn.last_insert_rowid()));
        out.push(Appended {
            id: e.id.clone(),
            seq,
        });
    }
    Ok(out)
}

pub fn read_after(
    conn: &Connection,
    app: AppId,
    after: Seq,
    limit: usize,
) -> Result<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, event_id, type, cid, created_ms, payload FROM events
         WHERE app_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![app, after, limit as i64], row_to_event)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Maps the columns `seq, event_id, type, cid, created_ms, payload` (in that order).
pub fn row_to_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    // Bytes takes the Vec as it is: one copy, out of SQLite's buffer.
    let payload: Vec<u8> = r.get(5)?;
    Ok(StoredEvent {
        seq: r.get(0)?,
        id: r.get(1)?,
        event_type: r.get(2)?,
        cid: r.get(3)?,
        created_at: Timestamp::from_millis(r.get(4)?),
        payload: Payload::from(payload),
    })
}

/// Deletes up to `limit` events older than `older_than` that every enabled hook of their app has
/// passed and that no retry entry still needs.
pub fn delete_collectable(conn: &Connection, older_than: Timestamp, limit: usize) -> Result<usize> {
    // Events are appended in time order: when the oldest one is not old enough, nothing is, and
    // the scan below (which would read the whole log on the writer thread) is skipped.
    let oldest: Option<i64> = conn
        .query_row(
            "SELECT created_ms FROM events ORDER BY seq LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if oldest.is_none_or(|ms| ms >= older_than.millis()) {
        return Ok(0);
    }
    let n = conn.execute(
        "DELETE FROM events WHERE seq IN (
             SELECT e.seq FROM events e
             WHERE e.created_ms < ?1
               AND e.seq <= COALESCE(
                     (SELECT MIN(h.cursor) FROM hooks h WHERE h.app_id = e.app_id AND h.enabled = 1),
                     e.seq)
               AND NOT EXISTS (SELECT 1 FROM retries r WHERE r.seq = e.seq)
             ORDER BY e.seq LIMIT ?2)",
        params![older_than.millis(), limit as i64],
    )?;
    Ok(n)
}
