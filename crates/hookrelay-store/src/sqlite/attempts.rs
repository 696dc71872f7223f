//! The delivery log (`attempts`): written with each round's progress, read per hook and per event.
//!
//! The table is keyed by hook, then id (`WITHOUT ROWID`), so a hook's records lie together in
//! the order they were written, and recording a call writes that B-tree and the index by sequence
//! number only. Ids are still global and never given out twice: the writer thread hands them out
//! from [`AttemptIds`], which starts above every record and above every record ever deleted
//! (`attempt_numbering`, raised by each delete).

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

/// The next record ids, handed out by the writer thread (the only one that records calls).
#[derive(Debug)]
pub struct AttemptIds {
    last: i64,
}

impl AttemptIds {
    /// Starts above every record in the log and every one deleted: one seek per hook that has
    /// records, rather than a scan of the whole log.
    pub fn load(conn: &Connection) -> Result<Self> {
        let mut last: i64 =
            conn.query_row("SELECT next_above FROM attempt_numbering", [], |r| r.get(0))?;
        let mut next_hook = conn
            .prepare("SELECT hook_id FROM attempts WHERE hook_id > ?1 ORDER BY hook_id LIMIT 1")?;
        let mut hook = String::new();
        while let Some(found) = next_hook
            .query_row([&hook], |r| r.get::<_, String>(0))
            .optional()?
        {
            last = last.max(newest_id(conn, &found)?);
            hook = found;
        }
        Ok(Self { last })
    }

    fn next(&mut self) -> i64 {
        self.last += 1;
        self.last
    }
}

/// The id of `hook`'s newest record, 0 if it has none.
fn newest_id(conn: &Connection, hook: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM attempts WHERE hook_id = ?1")?
        .query_row([hook], |r| r.get(0))?)
}

/// Before `hook`'s records are deleted: their ids stay taken.
pub fn keep_ids_of(conn: &Connection, hook: &str) -> Result<()> {
    let newest = newest_id(conn, hook)?;
    // Only when it rises: the delete runs every retention pass, mostly finding nothing to do.
    conn.prepare_cached("UPDATE attempt_numbering SET next_above = ?1 WHERE next_above < ?1")?
        .execute([newest])?;
    Ok(())
}

pub fn insert(
    conn: &Connection,
    ids: &mut AttemptIds,
    hook: &HookId,
    records: &[AttemptRecord],
) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO attempts (hook_id, id, first_seq, last_seq, events, at_ms, duration_us,
                               outcome, code, http_status, response)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for a in records {
        let Some((first, last)) = a.seq_range() else {
            continue;
        };
        stmt.execute(params![
            hook.as_str(),
            ids.next(),
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

/// Deletes up to `limit` records made before `older_than`, hook by hook (a hook's records are
/// in time order, so each hook's scan stops at its first recent one).
pub fn delete_old(conn: &Connection, older_than: Timestamp, limit: usize) -> Result<usize> {
    let mut next_hook = conn.prepare_cached(
        "SELECT hook_id FROM attempts WHERE hook_id > ?1 ORDER BY hook_id LIMIT 1",
    )?;
    let mut delete = conn.prepare_cached(
        "DELETE FROM attempts WHERE hook_id = ?1 AND id IN (
             SELECT id FROM attempts WHERE hook_id = ?1 AND id < COALESCE(
                 (SELECT id FROM attempts WHERE hook_id = ?1 AND at_ms >= ?2 ORDER BY id LIMIT 1),
                 (SELECT MAX(id) + 1 FROM attempts WHERE hook_id = ?1))
             ORDER BY id LIMIT ?3)",
    )?;
    let (mut deleted, mut hook) = (0, String::new());
    while deleted < limit {
        let Some(found) = next_hook
            .query_row([&hook], |r| r.get::<_, String>(0))
            .optional()?
        else {
            break;
        };
        keep_ids_of(conn, &found)?;
        deleted += delete.execute(params![
            found,
            older_than.millis(),
            (limit - deleted) as i64
        ])?;
        hook = found;
    }
    Ok(deleted)
}

/// The newest id among `hook`'s records beyond its newest `keep`: those up to it may go.
pub fn cap_bound(conn: &Connection, hook: &str, keep: usize) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM attempts WHERE hook_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2",
        )?
        .query_row(params![hook, keep as i64], |r| r.get(0))
        .optional()?)
}

/// Deletes `hook`'s oldest records with ids up to `through`, at most `limit` of them: a cap
/// over a long drain may remove hundreds of thousands, which in one statement held the writer
/// for seconds and collected every key in memory first (40 MiB for the 10 M backlog).
pub fn delete_through(conn: &Connection, hook: &str, through: i64, limit: usize) -> Result<usize> {
    keep_ids_of(conn, hook)?;
    Ok(conn
        .prepare_cached(
            "DELETE FROM attempts WHERE hook_id = ?1 AND id IN (
                 SELECT id FROM attempts WHERE hook_id = ?1 AND id <= ?2 ORDER BY id LIMIT ?3)",
        )?
        .execute(params![hook, through, limit as i64])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AttemptEvent;

    fn log() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::sqlite::schema::migrate(&mut conn).unwrap();
        conn
    }

    fn delivered(seq: i64, at: Timestamp) -> AttemptRecord {
        AttemptRecord {
            events: vec![AttemptEvent {
                seq: Seq(seq),
                id: format!("e{seq}"),
                attempt: 1,
            }],
            at,
            duration_us: 100,
            outcome: AttemptOutcome::Delivered,
            code: None,
            http_status: None,
            response: None,
        }
    }

    fn hook(id: &str) -> HookId {
        HookId::try_from(id.to_owned()).unwrap()
    }

    fn ids_of(conn: &Connection, id: &str) -> Vec<i64> {
        list(conn, &hook(id), None, None, 100)
            .unwrap()
            .iter()
            .map(|a| a.id)
            .collect()
    }

    #[test]
    fn ids_of_deleted_records_are_not_given_out_again_after_a_restart() {
        let conn = log();
        let mut ids = AttemptIds::load(&conn).unwrap();
        let now = Timestamp::now();
        let records: Vec<_> = (1..=3).map(|s| delivered(s, now)).collect();
        insert(&conn, &mut ids, &hook("1-a"), &records[..1]).unwrap();
        insert(&conn, &mut ids, &hook("1-b"), &records).unwrap();
        assert_eq!(ids_of(&conn, "1-b"), [4, 3, 2], "newest first");
        // Every record of the hook holding the newest id goes, as a cap of 0 would.
        let through = cap_bound(&conn, "1-b", 0).unwrap().unwrap();
        assert_eq!(delete_through(&conn, "1-b", through, 100).unwrap(), 3);
        assert_eq!(ids_of(&conn, "1-a"), [1]);
        let mut restarted = AttemptIds::load(&conn).unwrap();
        insert(&conn, &mut restarted, &hook("1-a"), &records[..1]).unwrap();
        assert_eq!(ids_of(&conn, "1-a"), [5, 1]);
    }

    #[test]
    fn old_records_are_deleted_hook_by_hook_within_the_limit() {
        let conn = log();
        let mut ids = AttemptIds::load(&conn).unwrap();
        let (old, recent) = (Timestamp::from_millis(1_000), Timestamp::from_millis(9_000));
        for id in ["1-a", "1-b"] {
            let mut records: Vec<_> = (1..=3).map(|s| delivered(s, old)).collect();
            records.push(delivered(4, recent));
            insert(&conn, &mut ids, &hook(id), &records).unwrap();
        }
        let cutoff = Timestamp::from_millis(5_000);
        assert_eq!(delete_old(&conn, cutoff, 4).unwrap(), 4);
        assert_eq!(delete_old(&conn, cutoff, 4).unwrap(), 2);
        assert_eq!(delete_old(&conn, cutoff, 4).unwrap(), 0);
        assert_eq!(ids_of(&conn, "1-a"), [4]);
        assert_eq!(ids_of(&conn, "1-b"), [8]);
    }

    #[test]
    fn a_cap_deletes_the_oldest_beyond_it_a_slice_at_a_time() {
        let conn = log();
        let mut ids = AttemptIds::load(&conn).unwrap();
        let now = Timestamp::now();
        let records: Vec<_> = (1..=5).map(|s| delivered(s, now)).collect();
        insert(&conn, &mut ids, &hook("1-a"), &records).unwrap();
        insert(&conn, &mut ids, &hook("1-b"), &records[..1]).unwrap();
        assert_eq!(cap_bound(&conn, "1-a", 5).unwrap(), None, "within the cap");
        let through = cap_bound(&conn, "1-a", 1).unwrap().unwrap();
        assert_eq!(through, 4);
        assert_eq!(delete_through(&conn, "1-a", through, 3).unwrap(), 3);
        assert_eq!(ids_of(&conn, "1-a"), [5, 4]);
        assert_eq!(delete_through(&conn, "1-a", through, 3).unwrap(), 1);
        assert_eq!(delete_through(&conn, "1-a", through, 3).unwrap(), 0);
        assert_eq!(ids_of(&conn, "1-a"), [5]);
        assert_eq!(ids_of(&conn, "1-b"), [6], "other hooks untouched");
    }
}
