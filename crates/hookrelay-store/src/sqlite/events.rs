//! The `events` table: the append-only log.
//!
//! Its rowid is the event's **position**, its app's id in the high bits and its sequence number
//! in the low [`SEQ_BITS`], so an app's events lie together in sequence order: a delivery round
//! reads them as one range of the table, and an append writes the table and the dedup index
//! only (no index by app, no `AUTOINCREMENT` counter row). `app_id` and `seq` are generated
//! columns, read from the position.
//!
//! Sequence numbers are still global and never reused: the writer thread hands them out from
//! [`LogHead`], which starts above every event in the log and above every event ever deleted
//! (`log_numbering`, raised by each delete).

use hookrelay_core::Timestamp;
use hookrelay_core::event::PreparedEvent;
use rusqlite::{Connection, OptionalExtension, params};

use crate::{AppId, Appended, Payload, Result, Seq, StoredEvent};

/// How many low bits of a position hold the sequence number (a trillion events).
pub const SEQ_BITS: u32 = 40;

/// An event's rowid: its app in the high bits, its sequence number in the low ones.
pub fn position(app: AppId, seq: Seq) -> i64 {
    // App ids are numbered from 1 by the apps table; a position has 23 bits for them.
    debug_assert!(
        (0..1 << (63 - SEQ_BITS)).contains(&app.0) && (0..1 << SEQ_BITS).contains(&seq.0)
    );
    (app.0 << SEQ_BITS) | seq.0
}

/// The positions of `app`'s events after `after`: `lower < position < upper`.
fn app_range(app: AppId, after: Seq) -> (i64, i64) {
    (position(app, after), position(AppId(app.0 + 1), Seq(0)))
}

/// The highest sequence number ever given out (0 for an empty log), including deleted events.
pub fn high_water_mark(conn: &Connection) -> Result<Seq> {
    // One seek per app for its newest event, rather than a scan of the whole log.
    let seq: i64 = conn.query_row(
        "SELECT MAX(
             (SELECT next_above FROM log_numbering),
             COALESCE((SELECT MAX((SELECT pos FROM events
                                   WHERE pos > a.id << ?1 AND pos < (a.id + 1) << ?1
                                   ORDER BY pos DESC LIMIT 1) & ?2)
                       FROM apps a), 0))",
        params![SEQ_BITS, (1i64 << SEQ_BITS) - 1],
        |r| r.get(0),
    )?;
    Ok(Seq(seq))
}

/// Raises the numbering floor to `seq`: deleted events keep their numbers from being reused.
fn keep_numbers_above(conn: &Connection, seq: Seq) -> Result<()> {
    conn.prepare_cached("UPDATE log_numbering SET next_above = MAX(next_above, ?1)")?
        .execute([seq])?;
    Ok(())
}

/// The next sequence numbers, handed out by the writer thread (the only one that appends).
#[derive(Debug)]
pub struct LogHead {
    last: Seq,
}

impl LogHead {
    pub fn new(last: Seq) -> Self {
        Self { last }
    }

    fn next(&mut self) -> Seq {
        self.last = Seq(self.last.0 + 1);
        self.last
    }
}

pub fn append(
    conn: &Connection,
    head: &mut LogHead,
    app: AppId,
    events: &[PreparedEvent],
    now: Timestamp,
) -> Result<Vec<Appended>> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (pos, event_id, type, cid, created_ms, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (app_id, event_id) DO NOTHING",
    )?;
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        // A number taken by a duplicate, or by a transaction rolled back, is skipped: sequence
        // numbers only have to grow.
        let seq = head.next();
        let inserted = stmt.execute(params![
            position(app, seq),
            e.id,
            e.event_type,
            e.cid,
            now.millis(),
            e.payload
        ])?;
        // No row inserted: the id was already in the log (a re-sent event).
        out.push(Appended {
            id: e.id.clone(),
            seq: (inserted == 1).then_some(seq),
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
         WHERE pos > ?1 AND pos < ?2 ORDER BY pos LIMIT ?3",
    )?;
    let (lower, upper) = app_range(app, after);
    let rows = stmt.query_map(params![lower, upper, limit as i64], row_to_event)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The sequence number of `app`'s first event created at or after `since`.
pub fn first_since(conn: &Connection, app: AppId, since: Timestamp) -> Result<Option<Seq>> {
    let (lower, upper) = app_range(app, Seq(0));
    Ok(conn
        .prepare_cached(
            "SELECT seq FROM events WHERE pos > ?1 AND pos < ?2 AND created_ms >= ?3
             ORDER BY pos LIMIT 1",
        )?
        .query_row(params![lower, upper, since.millis()], |r| r.get(0))
        .optional()?)
}

/// Up to this many events, [`count_after`] walks the log itself.
const COUNT_BY_WALKING: u64 = 10_000;

/// How many of `app`'s events come after `after`, counting up to `limit`.
pub fn count_after(conn: &Connection, app: AppId, after: Seq, limit: u64) -> Result<u64> {
    let (lower, upper) = app_range(app, after);
    let sql_limit = |n: u64| n.min(i64::MAX as u64) as i64;
    // Walking the log reads whole events, fine for a short way. Further behind, the dedup
    // index is counted instead: a few bytes per event, each entry holding its position. Its
    // entries are in id order, so that count ends after `limit` matches or the app's last entry.
    let walk_up_to = limit.min(COUNT_BY_WALKING + 1);
    let near: u64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE pos > ?1 AND pos < ?2 LIMIT ?3)",
        )?
        .query_row(params![lower, upper, sql_limit(walk_up_to)], |r| r.get(0))?;
    if near < walk_up_to || walk_up_to == limit {
        return Ok(near);
    }
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM (SELECT 1 FROM events INDEXED BY events_by_id
                                   WHERE app_id = ?1 AND pos > ?2 AND pos < ?3 LIMIT ?4)",
        )?
        .query_row(params![app, lower, upper, sql_limit(limit)], |r| r.get(0))?)
}

/// The creation time of `app`'s first event after `after`.
pub fn oldest_after(conn: &Connection, app: AppId, after: Seq) -> Result<Option<Timestamp>> {
    let (lower, upper) = app_range(app, after);
    let ms: Option<i64> = conn
        .prepare_cached(
            "SELECT created_ms FROM events WHERE pos > ?1 AND pos < ?2 ORDER BY pos LIMIT 1",
        )?
        .query_row(params![lower, upper], |r| r.get(0))
        .optional()?;
    Ok(ms.map(Timestamp::from_millis))
}

/// Whether the log holds `app`'s event `seq`.
pub fn contains(conn: &Connection, app: AppId, seq: Seq) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM events WHERE pos = ?1")?
        .query_row([position(app, seq)], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Puts an event back under its old sequence number (a dead letter replayed after its event
/// was deleted). Does nothing if its id is in the log again, under a newer number.
pub fn restore(conn: &Connection, app: AppId, event: &StoredEvent) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO events (pos, event_id, type, cid, created_ms, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        position(app, event.seq),
        event.id,
        event.event_type,
        event.cid,
        event.created_at.millis(),
        &event.payload[..]
    ])?;
    Ok(())
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

/// Deletes every event of `app` (the app is being deleted).
pub fn delete_app(conn: &Connection, app: AppId) -> Result<()> {
    let (lower, upper) = app_range(app, Seq(0));
    let newest: Option<Seq> = conn
        .query_row(
            "SELECT seq FROM events WHERE pos > ?1 AND pos < ?2 ORDER BY pos DESC LIMIT 1",
            params![lower, upper],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(seq) = newest {
        keep_numbers_above(conn, seq)?;
    }
    conn.execute(
        "DELETE FROM events WHERE pos > ?1 AND pos < ?2",
        params![lower, upper],
    )?;
    Ok(())
}

/// Deletes up to `limit` events older than `older_than` that every enabled hook of their app has
/// passed and that no retry entry still needs. Returns how many it deleted.
pub fn delete_collectable(conn: &Connection, older_than: Timestamp, limit: usize) -> Result<usize> {
    // Per app, what its enabled hooks have all passed (all of it when it has none).
    let apps: Vec<(AppId, Option<Seq>)> = conn
        .prepare_cached(
            "SELECT a.id, (SELECT MIN(h.cursor) FROM hooks h WHERE h.app_id = a.id AND h.enabled = 1)
             FROM apps a",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut deleted = 0;
    for (app, passed) in apps {
        if deleted >= limit {
            break;
        }
        let lower = position(app, Seq(0));
        let upper = match passed {
            Some(seq) => position(app, seq) + 1,
            None => position(AppId(app.0 + 1), Seq(0)),
        };
        // An app's events are appended in time order: those old enough are a prefix of its
        // range, and when its first event is not old enough, none is.
        if oldest_after(conn, app, Seq(0))?.is_none_or(|t| t >= older_than) {
            continue;
        }
        let last_old: Option<i64> = conn
            .prepare_cached(
                "SELECT MAX(pos) FROM (
                     SELECT pos, created_ms FROM events
                     WHERE pos > ?1 AND pos < ?2
                       AND NOT EXISTS (SELECT 1 FROM retries r WHERE r.seq = events.seq)
                     ORDER BY pos LIMIT ?3)
                 WHERE created_ms < ?4",
            )?
            .query_row(
                params![lower, upper, (limit - deleted) as i64, older_than.millis()],
                |r| r.get(0),
            )?;
        let Some(last_old) = last_old else { continue };
        keep_numbers_above(conn, Seq(last_old - lower))?;
        deleted += conn
            .prepare_cached(
                "DELETE FROM events WHERE pos > ?1 AND pos <= ?2
                   AND NOT EXISTS (SELECT 1 FROM retries r WHERE r.seq = events.seq)",
            )?
            .execute(params![lower, last_old])?;
    }
    Ok(deleted)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::sqlite::schema;

    /// A migrated database with apps 1 and 2.
    fn database() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        schema::migrate(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO apps (id, name, api_key, api_secret, created_ms, updated_ms)
                 VALUES (1, 'a', 'k1', x'00', 0, 0), (2, 'b', 'k2', x'00', 0, 0);",
        )
        .unwrap();
        conn
    }

    /// An event whose payload is its id.
    pub(in crate::sqlite) fn event(id: &str) -> PreparedEvent {
        PreparedEvent {
            id: id.into(),
            event_type: "t".into(),
            cid: None,
            payload: id.as_bytes().to_vec(),
        }
    }

    fn append_ids(conn: &Connection, head: &mut LogHead, app: i64, ids: &[&str], at: i64) {
        let events: Vec<_> = ids.iter().map(|id| event(id)).collect();
        append(conn, head, AppId(app), &events, Timestamp::from_millis(at)).unwrap();
    }

    fn ids(events: &[StoredEvent]) -> Vec<(i64, &str)> {
        events.iter().map(|e| (e.seq.0, e.id.as_str())).collect()
    }

    #[test]
    fn each_app_reads_its_own_events_in_order_from_one_numbering() {
        let conn = database();
        let mut head = LogHead::new(high_water_mark(&conn).unwrap());
        append_ids(&conn, &mut head, 1, &["a1", "a2"], 0);
        append_ids(&conn, &mut head, 2, &["b1"], 0);
        let again = append(
            &conn,
            &mut head,
            AppId(1),
            &[event("a2"), event("a3")],
            Timestamp::from_millis(0),
        )
        .unwrap();
        assert_eq!(again[0].seq, None, "a re-sent id is not appended");
        assert_eq!(
            ids(&read_after(&conn, AppId(1), Seq(0), 10).unwrap()),
            [(1, "a1"), (2, "a2"), (5, "a3")]
        );
        assert_eq!(
            ids(&read_after(&conn, AppId(1), Seq(2), 10).unwrap()),
            [(5, "a3")]
        );
        assert_eq!(
            ids(&read_after(&conn, AppId(2), Seq(0), 10).unwrap()),
            [(3, "b1")]
        );
        // The same id in another app is another event.
        append_ids(&conn, &mut head, 2, &["a1"], 0);
        assert_eq!(
            ids(&read_after(&conn, AppId(2), Seq(3), 10).unwrap()),
            [(6, "a1")]
        );
        assert_eq!(high_water_mark(&conn).unwrap(), Seq(6));
    }

    #[test]
    fn numbers_of_deleted_events_are_never_given_out_again() {
        let conn = database();
        let mut head = LogHead::new(high_water_mark(&conn).unwrap());
        append_ids(&conn, &mut head, 1, &["a1", "a2"], 0);
        append_ids(&conn, &mut head, 2, &["b1"], 0);
        // App 1 has no hooks: all its old events go; app 2 goes with its app.
        assert_eq!(
            delete_collectable(&conn, Timestamp::from_millis(1), 100).unwrap(),
            3
        );
        delete_app(&conn, AppId(2)).unwrap();
        assert_eq!(count_after(&conn, AppId(1), Seq(0), 100).unwrap(), 0);
        // A reopened store starts above them.
        let mut head = LogHead::new(high_water_mark(&conn).unwrap());
        append_ids(&conn, &mut head, 1, &["a4"], 0);
        assert_eq!(
            ids(&read_after(&conn, AppId(1), Seq(0), 10).unwrap()),
            [(4, "a4")]
        );
    }

    #[test]
    fn garbage_collection_keeps_what_a_hook_has_not_passed_and_young_events() {
        let conn = database();
        let mut head = LogHead::new(Seq(0));
        append_ids(&conn, &mut head, 1, &["old1", "old2", "old3"], 10);
        append_ids(&conn, &mut head, 1, &["young"], 1_000);
        conn.execute_batch(
            "INSERT INTO hooks (id, app_id, position, enabled, spec, cursor)
                 VALUES ('1-h', 1, 0, 1, '{}', 2), ('1-off', 1, 1, 0, '{}', 0);
             INSERT INTO retries VALUES ('1-h', 1, 1, 0, 0, 'refused');",
        )
        .unwrap();
        // Event 1 waits for a retry, 3 is past the hook's cursor, 4 is too young.
        assert_eq!(
            delete_collectable(&conn, Timestamp::from_millis(500), 100).unwrap(),
            1
        );
        assert_eq!(
            ids(&read_after(&conn, AppId(1), Seq(0), 10).unwrap()),
            [(1, "old1"), (3, "old3"), (4, "young")]
        );
    }

    #[test]
    fn counting_far_behind_uses_the_index_and_agrees_with_walking() {
        let conn = database();
        let mut head = LogHead::new(Seq(0));
        let n = COUNT_BY_WALKING as usize + 500;
        let names: Vec<String> = (0..n).map(|i| format!("e{i:05}")).collect();
        for (i, chunk) in names.chunks(1000).enumerate() {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            // Another app's events in between, which are not counted.
            append_ids(&conn, &mut head, 1, &refs, 0);
            append_ids(&conn, &mut head, 2, &[&format!("other{i}")], 0);
        }
        let total = n as u64;
        assert_eq!(
            count_after(&conn, AppId(1), Seq(0), u64::MAX).unwrap(),
            total
        );
        assert_eq!(
            count_after(&conn, AppId(1), Seq(0), total - 1).unwrap(),
            total - 1
        );
        assert_eq!(count_after(&conn, AppId(1), Seq(0), 10).unwrap(), 10);
        // 1,000 events of app 1 and one of app 2 per chunk: after seq 1001, all but the first chunk.
        assert_eq!(
            count_after(&conn, AppId(1), Seq(1001), u64::MAX).unwrap(),
            total - 1000
        );
        assert_eq!(
            count_after(&conn, AppId(2), Seq(0), u64::MAX).unwrap(),
            names.chunks(1000).len() as u64
        );
    }
}
