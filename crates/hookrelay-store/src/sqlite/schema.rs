//! The SQLite schema, as ordered migrations. `PRAGMA user_version` records how many have run;
//! a migration is never edited once released, only followed by a new one.

use rusqlite::Connection;

use crate::Result;

const MIGRATIONS: &[&str] = &[
    // 1: apps, hooks (each with its cursor), the event log, retries and dead letters.
    r#"
    CREATE TABLE apps (
        id               INTEGER PRIMARY KEY,
        name             TEXT    NOT NULL,
        api_key          TEXT    NOT NULL UNIQUE,
        api_secret       BLOB    NOT NULL,          -- encrypted (crypto.rs)
        settings         TEXT    NOT NULL DEFAULT '{}',
        settings_secrets BLOB,                      -- encrypted JSON object of legacy secrets
        created_ms       INTEGER NOT NULL,
        updated_ms       INTEGER NOT NULL
    );
    CREATE TABLE hooks (
        id        TEXT    PRIMARY KEY,
        app_id    INTEGER NOT NULL REFERENCES apps(id),
        position  INTEGER NOT NULL,
        enabled   INTEGER NOT NULL,
        spec      TEXT    NOT NULL,                 -- EventHook as JSON, without its secret
        secret    BLOB,                             -- encrypted AWS secret of `keys` auth
        cursor    INTEGER NOT NULL                  -- every event of the app at or below is done
    );
    CREATE INDEX hooks_by_app ON hooks(app_id, position);
    -- AUTOINCREMENT: a sequence number is never reused, even after the newest events are
    -- deleted, so a cursor can never skip a new event that reuses an old number.
    CREATE TABLE events (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        app_id     INTEGER NOT NULL,
        event_id   TEXT    NOT NULL,
        type       TEXT    NOT NULL,
        cid        TEXT,
        created_ms INTEGER NOT NULL,
        payload    BLOB    NOT NULL
    );
    CREATE UNIQUE INDEX events_by_id ON events(app_id, event_id);
    CREATE INDEX events_by_app ON events(app_id, seq);
    CREATE TABLE retries (
        hook_id         TEXT    NOT NULL,
        seq             INTEGER NOT NULL,
        attempts        INTEGER NOT NULL,
        first_failed_ms INTEGER NOT NULL,
        next_attempt_ms INTEGER NOT NULL,
        last_error      TEXT    NOT NULL,
        PRIMARY KEY (hook_id, seq)
    ) WITHOUT ROWID;
    CREATE INDEX retries_due ON retries(hook_id, next_attempt_ms);
    CREATE INDEX retries_by_seq ON retries(seq);
    CREATE TABLE dead_letters (
        id               INTEGER PRIMARY KEY,
        hook_id          TEXT    NOT NULL,
        seq              INTEGER NOT NULL,
        event_id         TEXT    NOT NULL,
        type             TEXT    NOT NULL,
        cid              TEXT,
        event_created_ms INTEGER NOT NULL,
        payload          BLOB    NOT NULL,          -- kept: the event may be gone from the log
        reason           TEXT    NOT NULL,
        attempts         INTEGER NOT NULL,
        last_error       TEXT    NOT NULL,
        created_ms       INTEGER NOT NULL
    );
    CREATE INDEX dead_letters_by_hook ON dead_letters(hook_id, id);
    "#,
    // 2: operations. `paused` stops delivery and keeps the backlog; `epoch` fences progress
    // writes: rewinding a cursor bumps it, so a round that started before cannot undo the rewind.
    r#"
    ALTER TABLE hooks ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE hooks ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    "#,
    // 3: hook ids are per app: inside the server an id carries its app (`<app id>-<id>`), in
    // the hook row, its spec, and the retry and dead-letter rows that refer to it.
    r#"
    UPDATE retries SET hook_id = (SELECT h.app_id FROM hooks h WHERE h.id = retries.hook_id) || '-' || hook_id
        WHERE hook_id IN (SELECT id FROM hooks);
    UPDATE dead_letters SET hook_id = (SELECT h.app_id FROM hooks h WHERE h.id = dead_letters.hook_id) || '-' || hook_id
        WHERE hook_id IN (SELECT id FROM hooks);
    UPDATE hooks SET spec = json_set(spec, '$.id', app_id || '-' || id), id = app_id || '-' || id;
    "#,
    // 4: a rotated API secret keeps authenticating for a window.
    r#"
    ALTER TABLE apps ADD COLUMN previous_api_secret BLOB;       -- encrypted
    ALTER TABLE apps ADD COLUMN previous_secret_until_ms INTEGER;
    "#,
    // 5: the delivery log. One row per call and outcome: a batch delivered at once is one row
    // whose `events` (JSON [[seq, "event id", attempt], ...]) lists its events; `first_seq` and
    // `last_seq` bound them, to find an event's rows without an index entry per event.
    r#"
    CREATE TABLE attempts (
        id          INTEGER PRIMARY KEY,
        hook_id     TEXT    NOT NULL,
        first_seq   INTEGER NOT NULL,
        last_seq    INTEGER NOT NULL,
        events      TEXT    NOT NULL,
        at_ms       INTEGER NOT NULL,
        duration_us INTEGER NOT NULL,
        outcome     TEXT    NOT NULL,
        code        TEXT,
        http_status INTEGER,
        response    TEXT
    );
    CREATE INDEX attempts_by_hook ON attempts(hook_id, id);
    CREATE INDEX attempts_by_seq ON attempts(hook_id, first_seq);
    "#,
    // 6: the log ordered by app, then sequence number (events.rs): the rowid is the position
    // `app_id << 40 | seq`, so the index by app and the AUTOINCREMENT counter, written by every
    // append, are gone. `log_numbering` keeps the numbers of deleted events from being reused.
    r#"
    CREATE TABLE log_numbering (next_above INTEGER NOT NULL);
    INSERT INTO log_numbering
        VALUES (COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0));
    CREATE TABLE events_by_position (
        pos        INTEGER PRIMARY KEY,
        app_id     INTEGER GENERATED ALWAYS AS (pos >> 40) VIRTUAL,
        seq        INTEGER GENERATED ALWAYS AS (pos & 1099511627775) VIRTUAL,
        event_id   TEXT    NOT NULL,
        type       TEXT    NOT NULL,
        cid        TEXT,
        created_ms INTEGER NOT NULL,
        payload    BLOB    NOT NULL
    );
    INSERT INTO events_by_position (pos, event_id, type, cid, created_ms, payload)
        SELECT (app_id << 40) | seq, event_id, type, cid, created_ms, payload
        FROM events ORDER BY app_id, seq;
    DROP TABLE events;
    ALTER TABLE events_by_position RENAME TO events;
    CREATE UNIQUE INDEX events_by_id ON events(app_id, event_id);
    "#,
    // 7: the delivery log ordered by hook, then id (attempts.rs): a call's record writes the
    // table and its index by sequence number, not a rowid table and two indexes.
    // `attempt_numbering` keeps the ids of deleted records from being given out again.
    r#"
    CREATE TABLE attempts_by_hook_and_id (
        hook_id     TEXT    NOT NULL,
        id          INTEGER NOT NULL,
        first_seq   INTEGER NOT NULL,
        last_seq    INTEGER NOT NULL,
        events      TEXT    NOT NULL,
        at_ms       INTEGER NOT NULL,
        duration_us INTEGER NOT NULL,
        outcome     TEXT    NOT NULL,
        code        TEXT,
        http_status INTEGER,
        response    TEXT,
        PRIMARY KEY (hook_id, id)
    ) WITHOUT ROWID;
    INSERT INTO attempts_by_hook_and_id
        SELECT hook_id, id, first_seq, last_seq, events, at_ms, duration_us, outcome, code,
               http_status, response
        FROM attempts;
    CREATE TABLE attempt_numbering (next_above INTEGER NOT NULL);
    INSERT INTO attempt_numbering VALUES (COALESCE((SELECT MAX(id) FROM attempts), 0));
    DROP TABLE attempts;
    ALTER TABLE attempts_by_hook_and_id RENAME TO attempts;
    CREATE INDEX attempts_by_seq ON attempts(hook_id, first_seq);
    "#,
];

/// Runs the migrations this database has not seen yet, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let done: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database as a release that ran the first `n` migrations left it.
    fn at_version(n: usize) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..n] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", n).unwrap();
        conn
    }

    #[test]
    fn hook_ids_of_an_older_database_are_scoped_by_app() {
        let mut conn = at_version(2);
        conn.execute_batch(
            r#"
            INSERT INTO apps (id, name, api_key, api_secret, created_ms, updated_ms)
                VALUES (7, 'a', 'k', x'00', 0, 0);
            INSERT INTO hooks (id, app_id, position, enabled, spec, cursor)
                VALUES ('h1', 7, 0, 1, '{"id":"h1","enabled":true}', 0);
            INSERT INTO retries VALUES ('h1', 1, 1, 0, 0, 'e');
            INSERT INTO dead_letters (hook_id, seq, event_id, type, event_created_ms, payload,
                                      reason, attempts, last_error, created_ms)
                VALUES ('h1', 2, 'e2', 't', 0, x'00', 'rejected', 1, 'e', 0);
            INSERT INTO retries VALUES ('gone', 3, 1, 0, 0, 'a hook deleted long ago');
            "#,
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let one = |sql: &str| -> String { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(one("SELECT id FROM hooks"), "7-h1");
        assert_eq!(one("SELECT json_extract(spec, '$.id') FROM hooks"), "7-h1");
        assert_eq!(one("SELECT hook_id FROM retries WHERE seq = 1"), "7-h1");
        assert_eq!(one("SELECT hook_id FROM dead_letters"), "7-h1");
        assert_eq!(one("SELECT hook_id FROM retries WHERE seq = 3"), "gone");
    }

    #[test]
    fn the_delivery_log_keeps_its_records_and_ids_when_keyed_by_hook() {
        let mut conn = at_version(6);
        conn.execute_batch(
            r#"
            INSERT INTO attempts (id, hook_id, first_seq, last_seq, events, at_ms, duration_us,
                                  outcome, code, http_status, response) VALUES
                (1, '1-a', 1, 2, '[[1,"e1",1],[2,"e2",1]]', 10, 5, 'delivered', NULL, NULL, NULL),
                (2, '1-b', 1, 1, '[[1,"e1",1]]', 11, 6, 'retrying', 'HTTP 500', 500, 'later'),
                (3, '1-a', 3, 3, '[[3,"e3",1]]', 12, 7, 'delivered', NULL, NULL, NULL);
            "#,
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let rows: Vec<(String, i64, i64, Option<i64>)> = conn
            .prepare("SELECT hook_id, id, first_seq, http_status FROM attempts")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                ("1-a".to_owned(), 1, 1, None),
                ("1-a".to_owned(), 3, 3, None),
                ("1-b".to_owned(), 2, 1, Some(500))
            ],
            "in hook order, each with its id"
        );
        let floor: i64 = conn
            .query_row("SELECT next_above FROM attempt_numbering", [], |r| r.get(0))
            .unwrap();
        assert_eq!(floor, 3);
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT id FROM attempts WHERE hook_id = '1-a' AND first_seq <= 2",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("attempts_by_seq"), "{plan}");
    }

    #[test]
    fn the_log_keeps_its_events_numbers_and_ids_when_ordered_by_app() {
        use crate::sqlite::events;
        use crate::{AppId, Seq};

        let mut conn = at_version(5);
        conn.execute_batch(
            r#"
            INSERT INTO apps (id, name, api_key, api_secret, created_ms, updated_ms)
                VALUES (1, 'a', 'k1', x'00', 0, 0), (2, 'b', 'k2', x'00', 0, 0);
            INSERT INTO events (app_id, event_id, type, cid, created_ms, payload) VALUES
                (1, 'a1', 't', 'c', 5, x'01'), (2, 'b1', 't', NULL, 6, x'02'),
                (1, 'a2', 't', NULL, 7, x'03'), (1, 'gone', 't', NULL, 8, x'04');
            DELETE FROM events WHERE event_id = 'gone';
            "#,
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let read = |app| events::read_after(&conn, AppId(app), Seq(0), 10).unwrap();
        let a: Vec<_> = read(1)
            .into_iter()
            .map(|e| {
                (
                    e.seq.0,
                    e.id,
                    e.cid,
                    e.created_at.millis(),
                    e.payload.to_vec(),
                )
            })
            .collect();
        assert_eq!(
            a,
            [
                (1, "a1".to_owned(), Some("c".to_owned()), 5, vec![1]),
                (3, "a2".to_owned(), None, 7, vec![3])
            ]
        );
        assert_eq!(read(2)[0].seq, Seq(2));
        // The deleted event's number stays taken.
        assert_eq!(events::high_water_mark(&conn).unwrap(), Seq(4));
        let duplicate = conn.execute(
            "INSERT INTO events (pos, event_id, type, created_ms, payload) VALUES (?1, 'a1', 't', 0, x'')",
            [events::position(AppId(1), Seq(9))],
        );
        assert!(duplicate.is_err(), "ids stay unique per app");
    }
}
