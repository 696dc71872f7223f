//! The `events` table: the append-only log, and `log_head`, which numbers it.

use std::collections::HashSet;

use hookrelay_core::Timestamp;
use hookrelay_core::event::PreparedEvent;
use tokio_postgres::{GenericClient, Row};

use crate::{AppId, Appended, Payload, Result, Seq, StoredEvent};

/// The highest sequence number ever given out (0 for an empty log), including deleted events.
pub async fn high_water_mark(c: &impl GenericClient) -> Result<Seq> {
    Ok(c.query_one("SELECT seq FROM log_head", &[]).await?.get(0))
}

/// The sequence numbers one group of appends took: those after `after`, up to `through`; and
/// the transaction that took them, whose fate can be asked when its `COMMIT` goes unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbered {
    pub after: Seq,
    pub through: Seq,
    pub transaction: i64,
}

/// Appends the events of several requests in one statement, which also takes their numbers
/// from `log_head` and, when any event was stored, notifies `channel` of the new head: one
/// round trip for the whole group. Taking the `log_head` row lock, held by the caller's
/// transaction until it commits, makes appends from every node commit one after the other, so
/// sequence numbers become visible in order. Returns each request's results, in order, and the
/// numbers the group took (none for a group without events).
pub async fn append_group(
    c: &impl GenericClient,
    requests: &[(AppId, &[PreparedEvent])],
    now: Timestamp,
    channel: &str,
) -> Result<(Vec<Vec<Appended>>, Option<Numbered>)> {
    let total: usize = requests.iter().map(|(_, events)| events.len()).sum();
    if total == 0 {
        return Ok((requests.iter().map(|_| Vec::new()).collect(), None));
    }
    let (mut apps, mut ids, mut types, mut cids, mut payloads) = (
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
    );
    for (app, events) in requests {
        for e in events.iter() {
            apps.push(*app);
            ids.push(e.id.as_str());
            types.push(e.event_type.as_str());
            cids.push(e.cid.as_deref());
            payloads.push(e.payload.as_slice());
        }
    }
    // The n-th event (from 1) takes the n-th number after the old head. A duplicate id (already
    // in the log, or earlier in this group) is skipped: its number stays unused, and only the
    // numbers of stored rows come back.
    let row = c
        .query_one(
            "WITH head AS (
                 UPDATE log_head SET seq = seq + $1 RETURNING seq),
             stored AS (
                 INSERT INTO events (seq, app_id, event_id, type, cid, created_ms, payload)
                 SELECT (SELECT seq FROM head) - $1 + n, a, i, t, c, $7, p
                 FROM unnest($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BYTEA[])
                      WITH ORDINALITY AS u(a, i, t, c, p, n)
                 ON CONFLICT DO NOTHING
                 RETURNING seq)
             SELECT (SELECT seq FROM head),
                    ARRAY(SELECT seq FROM stored),
                    (SELECT pg_notify($8, MAX(seq)::TEXT) FROM stored HAVING COUNT(*) > 0),
                    pg_current_xact_id()::TEXT::BIGINT",
            &[
                &(total as i64),
                &apps,
                &ids,
                &types,
                &cids,
                &payloads,
                &now.millis(),
                &channel,
            ],
        )
        .await?;
    let top: i64 = row.get(0);
    let stored: HashSet<Seq> = row.get::<_, Vec<Seq>>(1).into_iter().collect();
    let numbered = Numbered {
        after: Seq(top - total as i64),
        through: Seq(top),
        transaction: row.get(3),
    };
    let mut seq = numbered.after.0;
    let appended = requests
        .iter()
        .map(|(_, events)| {
            events
                .iter()
                .map(|e| {
                    seq += 1;
                    Appended {
                        id: e.id.clone(),
                        seq: stored.contains(&Seq(seq)).then_some(Seq(seq)),
                    }
                })
                .collect()
        })
        .collect();
    Ok((appended, Some(numbered)))
}

pub async fn read_after(
    c: &impl GenericClient,
    app: AppId,
    after: Seq,
    limit: usize,
) -> Result<Vec<StoredEvent>> {
    let rows = c
        .query(
            "SELECT seq, event_id, type, cid, created_ms, payload FROM events
             WHERE app_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&app, &after, &(limit as i64)],
        )
        .await?;
    Ok(rows.iter().map(row_to_event).collect())
}

/// Maps the columns `seq, event_id, type, cid, created_ms, payload` (in that order).
pub fn row_to_event(r: &Row) -> StoredEvent {
    let payload: &[u8] = r.get(5);
    StoredEvent {
        seq: r.get(0),
        id: r.get(1),
        event_type: r.get(2),
        cid: r.get(3),
        created_at: Timestamp::from_millis(r.get(4)),
        payload: Payload::copy_from_slice(payload),
    }
}

/// Deletes the app's events older than `older_than` that every enabled hook of the app has
/// passed and that no retry entry still needs, in windows of `slice` sequence numbers, each its
/// own statement (the caller gives no transaction), so appends and delivery never wait long.
///
/// Events are appended in time order, so the old ones are at the start of the log: the walk
/// starts there and stops at the first window followed by an event that is not old enough. When
/// nothing is old, this costs one index lookup, not a scan of the log.
pub async fn collect_app(
    c: &impl GenericClient,
    app: AppId,
    older_than: Timestamp,
    slice: i64,
) -> Result<u64> {
    let cut = older_than.millis();
    let first = c
        .query_opt(
            "SELECT seq, created_ms FROM events WHERE app_id = $1 ORDER BY seq LIMIT 1",
            &[&app],
        )
        .await?;
    let Some(mut low) = first
        .filter(|r| r.get::<_, i64>(1) < cut)
        .map(|r| r.get::<_, Seq>(0))
    else {
        return Ok(0);
    };
    let passed: Option<Seq> = c
        .query_one(
            "SELECT MIN(cursor) FROM hooks WHERE app_id = $1 AND enabled",
            &[&app],
        )
        .await?
        .get(0);
    let passed = passed.unwrap_or(Seq::MAX);
    let mut total = 0;
    while low <= passed {
        let high = low.saturating_add(slice - 1).min(passed);
        total += c
            .execute(
                "DELETE FROM events e
                 WHERE e.app_id = $1 AND e.seq BETWEEN $2 AND $3 AND e.created_ms < $4
                   AND NOT EXISTS (SELECT 1 FROM retries r JOIN hooks h ON h.id = r.hook_id
                                   WHERE r.seq = e.seq AND h.app_id = $1)",
                &[&app, &low, &high, &cut],
            )
            .await?;
        let next = c
            .query_opt(
                "SELECT seq, created_ms FROM events WHERE app_id = $1 AND seq > $2 ORDER BY seq LIMIT 1",
                &[&app, &high],
            )
            .await?;
        match next {
            Some(r) if r.get::<_, i64>(1) < cut => low = r.get(0),
            _ => break,
        }
    }
    Ok(total)
}
