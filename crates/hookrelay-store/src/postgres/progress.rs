//! Delivery progress: cursors (a column of `hooks`), `retries` and `dead_letters`.
//!
//! Every write of a round is fenced three ways, under the hook row's lock: the hook still exists
//! (a worker finishing just after its hook was deleted writes nothing), the epoch is the round's
//! (a rewind or a lease takeover since makes it stale), and this node holds an unexpired lease
//! (a node that was paused or cut off past its lease writes nothing).

use std::collections::{BTreeMap, HashMap};

use hookrelay_core::{HookId, Timestamp};
use tokio_postgres::GenericClient;

use crate::postgres::events::{read_after, row_to_event};
use crate::postgres::text;
use crate::{
    AppId, Cursor, DeadLetter, DeadLetterReason, DueRetry, Epoch, HookBacklog, Progress, Result,
    RoundInput, RoundLimits, Seq, StoreError, StoredEvent,
};

pub async fn cursor(c: &impl GenericClient, hook: &HookId) -> Result<Option<Cursor>> {
    Ok(c.query_opt(
        "SELECT cursor, epoch FROM hooks WHERE id = $1",
        &[&hook.as_str()],
    )
    .await?
    .map(|r| Cursor {
        seq: r.get(0),
        epoch: r.get(1),
    }))
}

/// Applies the results of a group's rounds, in order. Every round's hook row is locked and
/// checked first, in one statement, then the rounds that passed are written; their statements
/// are sent together (tokio-postgres pipelines queries polled at once, and the server runs them
/// in the order sent), so a group costs two round trips instead of a few per round. A round
/// refused by its fence gets that error as its result, without touching the transaction, so
/// the others still commit; any other error fails the group.
pub async fn record_all(
    c: &impl GenericClient,
    rounds: &[&Progress],
    node: &str,
    now: Timestamp,
) -> Result<Vec<Result<()>>> {
    let fenced = fence(c, rounds, node).await?;
    let passed = rounds
        .iter()
        .zip(&fenced)
        .filter(|(_, fence)| matches!(fence, Ok(true)))
        .map(|(p, _)| write(c, p, now));
    futures_util::future::try_join_all(passed).await?;
    Ok(fenced.into_iter().map(|fence| fence.map(|_| ())).collect())
}

/// Locks the rounds' hook rows and checks, for each round, that this node holds its hook's
/// lease under the round's epoch. `Ok(false)`: the hook was deleted meanwhile, nothing to
/// record. The rows are locked in id order, as every statement locking several hook rows does
/// (`leases.rs`, `hooks.rs`): taken in any other order, a group and a lease renewal of the same
/// node can each hold a row the other waits for, and PostgreSQL ends one of them after a second.
async fn fence(
    c: &impl GenericClient,
    rounds: &[&Progress],
    node: &str,
) -> Result<Vec<std::result::Result<bool, StoreError>>> {
    if rounds.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = rounds.iter().map(|p| p.hook.as_str()).collect();
    let rows: HashMap<String, (Epoch, Option<bool>)> = c
        .query(
            "SELECT id, epoch, owner = $2 AND lease_until > now() FROM hooks
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            &[&ids, &node],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    Ok(rounds
        .iter()
        .map(|p| match rows.get(p.hook.as_str()) {
            None => Ok(false),
            Some((_, leased)) if *leased != Some(true) => Err(StoreError::NotOwner(p.hook.clone())),
            Some((epoch, _)) if *epoch != p.epoch => Err(StoreError::Stale(p.hook.clone())),
            Some(_) => Ok(true),
        })
        .collect())
}

/// Writes a fenced round's progress: the statements are sent together and run in order.
async fn write(c: &impl GenericClient, p: &Progress, now: Timestamp) -> Result<()> {
    let hook = p.hook.as_str();
    let cursor = async {
        if let Some(seq) = p.cursor {
            c.execute(
                "UPDATE hooks SET cursor = GREATEST(cursor, $2) WHERE id = $1",
                &[&hook, &seq],
            )
            .await?;
        }
        Ok(())
    };
    // One row per sequence number (the last wins): an upsert may not touch a row twice.
    let latest: BTreeMap<Seq, _> = p.retries.iter().map(|r| (r.seq, r)).collect();
    let retries = async {
        if latest.is_empty() {
            return Ok(());
        }
        let seqs: Vec<Seq> = latest.keys().copied().collect();
        let attempts: Vec<i32> = latest.values().map(|r| r.attempts as i32).collect();
        let first: Vec<i64> = latest
            .values()
            .map(|r| r.first_failed_at.millis())
            .collect();
        let next: Vec<i64> = latest
            .values()
            .map(|r| r.next_attempt_at.millis())
            .collect();
        let errors: Vec<String> = latest
            .values()
            .map(|r| text(&r.last_error).into_owned())
            .collect();
        c.execute(
            "INSERT INTO retries (hook_id, seq, attempts, first_failed_ms, next_attempt_ms, last_error)
             SELECT $1, * FROM unnest($2::BIGINT[], $3::INTEGER[], $4::BIGINT[], $5::BIGINT[], $6::TEXT[])
             ON CONFLICT (hook_id, seq) DO UPDATE SET
                 attempts = excluded.attempts,
                 next_attempt_ms = excluded.next_attempt_ms,
                 last_error = excluded.last_error",
            &[&hook, &seqs, &attempts, &first, &next, &errors],
        )
        .await?;
        Ok(())
    };
    let dead_letters = async {
        if p.dead_letters.is_empty() {
            return Ok(());
        }
        let d = &p.dead_letters;
        let seqs: Vec<Seq> = d.iter().map(|d| d.event.seq).collect();
        let ids: Vec<&str> = d.iter().map(|d| d.event.id.as_str()).collect();
        let types: Vec<&str> = d.iter().map(|d| d.event.event_type.as_str()).collect();
        let cids: Vec<Option<&str>> = d.iter().map(|d| d.event.cid.as_deref()).collect();
        let created: Vec<i64> = d.iter().map(|d| d.event.created_at.millis()).collect();
        let payloads: Vec<&[u8]> = d.iter().map(|d| &d.event.payload[..]).collect();
        let reasons: Vec<&str> = d.iter().map(|d| d.reason.as_str()).collect();
        let attempts: Vec<i32> = d.iter().map(|d| d.attempts as i32).collect();
        let errors: Vec<String> = d.iter().map(|d| text(&d.last_error).into_owned()).collect();
        c.execute(
            "INSERT INTO dead_letters (hook_id, seq, event_id, type, cid, event_created_ms, payload,
                                       reason, attempts, last_error, created_ms)
             SELECT $1, s, i, t, c, ec, p, r, a, le, $11
             FROM unnest($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[],
                         $7::BYTEA[], $8::TEXT[], $9::INTEGER[], $10::TEXT[])
                  AS u(s, i, t, c, ec, p, r, a, le)",
            &[
                &hook,
                &seqs,
                &ids,
                &types,
                &cids,
                &created,
                &payloads,
                &reasons,
                &attempts,
                &errors,
                &now.millis(),
            ],
        )
        .await?;
        Ok(())
    };
    // Delivered retries and dead-lettered events leave the retry list.
    let done: Vec<Seq> = p
        .retries_done
        .iter()
        .copied()
        .chain(p.dead_letters.iter().map(|d| d.event.seq))
        .collect();
    let retries_done = async {
        if !done.is_empty() {
            c.execute(
                "DELETE FROM retries WHERE hook_id = $1 AND seq = ANY($2)",
                &[&hook, &done],
            )
            .await?;
        }
        Ok(())
    };
    let attempts = crate::postgres::attempts::insert(c, &p.hook, &p.attempts);
    tokio::try_join!(cursor, retries, dead_letters, retries_done, attempts)?;
    Ok(())
}

pub async fn due_retries(
    c: &impl GenericClient,
    hook: &HookId,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<DueRetry>> {
    let rows = c
        .query(
            "SELECT e.seq, e.event_id, e.type, e.cid, e.created_ms, e.payload, r.attempts, r.first_failed_ms
             FROM retries r
             JOIN hooks h ON h.id = r.hook_id
             JOIN events e ON e.app_id = h.app_id AND e.seq = r.seq
             WHERE r.hook_id = $1 AND r.next_attempt_ms <= $2
             ORDER BY r.next_attempt_ms, r.seq LIMIT $3",
            &[&hook.as_str(), &now.millis(), &(limit as i64)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DueRetry {
            event: row_to_event(r),
            attempts: r.get::<_, i32>(6) as u32,
            first_failed_at: Timestamp::from_millis(r.get(7)),
        })
        .collect())
}

/// A delivery round's input in one round trip: the reads are sent together on one connection
/// (tokio-postgres pipelines queries polled at once). The events are read after the worker's
/// own cursor, unless `held` has them (this node's own appends, see `own_appends`); only after
/// a rewind (the stored epoch differs) are they read again.
pub async fn round_input(
    c: &impl GenericClient,
    hook: &HookId,
    app: AppId,
    known: Cursor,
    now: Timestamp,
    limits: RoundLimits,
    held: Option<Vec<StoredEvent>>,
) -> Result<Option<RoundInput>> {
    let events = async {
        match held {
            Some(events) => Ok(events),
            None => read_after(c, app, known.seq, limits.events).await,
        }
    };
    let (stored, due, later, events) = tokio::try_join!(
        cursor(c, hook),
        due_retries(c, hook, now, limits.retries),
        next_retry_after(c, hook, now),
        events,
    )?;
    let Some(stored) = stored else {
        return Ok(None);
    };
    let cursor = known.or_rewound(stored);
    let events = if cursor == known {
        events
    } else {
        read_after(c, app, cursor.seq, limits.events).await?
    };
    Ok(Some(RoundInput {
        cursor,
        next_retry_at: limits.more_due(due.len(), now).or(later),
        due,
        events,
    }))
}

pub async fn next_retry_after(
    c: &impl GenericClient,
    hook: &HookId,
    after: Timestamp,
) -> Result<Option<Timestamp>> {
    let ms: Option<i64> = c
        .query_one(
            "SELECT MIN(next_attempt_ms) FROM retries WHERE hook_id = $1 AND next_attempt_ms > $2",
            &[&hook.as_str(), &after.millis()],
        )
        .await?
        .get(0);
    Ok(ms.map(Timestamp::from_millis))
}

pub async fn dead_letters(
    c: &impl GenericClient,
    hook: &HookId,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<DeadLetter>> {
    let rows = c
        .query(
            "SELECT id, seq, event_id, type, reason, attempts, last_error, created_ms FROM dead_letters
             WHERE hook_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            &[&hook.as_str(), &before.unwrap_or(i64::MAX), &(limit as i64)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let reason: &str = r.get(4);
            Ok(DeadLetter {
                id: r.get(0),
                seq: r.get(1),
                event_id: r.get(2),
                event_type: r.get(3),
                reason: DeadLetterReason::parse(reason).ok_or_else(|| {
                    StoreError::Corrupt(format!("unknown dead letter reason {reason:?}"))
                })?,
                attempts: r.get::<_, i32>(5) as u32,
                last_error: r.get(6),
                created_at: Timestamp::from_millis(r.get(7)),
            })
        })
        .collect()
}

pub async fn set_paused(c: &impl GenericClient, hook: &HookId, paused: bool) -> Result<bool> {
    let n = c
        .execute(
            "UPDATE hooks SET paused = $2 WHERE id = $1",
            &[&hook.as_str(), &paused],
        )
        .await?;
    Ok(n > 0)
}

pub async fn rewind(
    c: &impl GenericClient,
    hook: &HookId,
    since: Timestamp,
) -> Result<Option<u64>> {
    let Some(row) = c
        .query_opt(
            "SELECT app_id, cursor FROM hooks WHERE id = $1 FOR UPDATE",
            &[&hook.as_str()],
        )
        .await?
    else {
        return Ok(None);
    };
    let (app, cursor): (AppId, Seq) = (row.get(0), row.get(1));
    // Events are appended in time order: the first one at or after `since`, walking the app's
    // log by primary key (no time index: every index costs every append).
    let first: Option<Seq> = c
        .query_opt(
            "SELECT seq FROM events WHERE app_id = $1 AND created_ms >= $2 ORDER BY seq LIMIT 1",
            &[&app, &since.millis()],
        )
        .await?
        .map(|r| r.get(0));
    let target = first.map_or(cursor, |seq| (seq - 1).min(cursor));
    c.execute(
        "UPDATE hooks SET cursor = $2, epoch = epoch + 1 WHERE id = $1",
        &[&hook.as_str(), &target],
    )
    .await?;
    let behind: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM events WHERE app_id = $1 AND seq > $2",
            &[&app, &target],
        )
        .await?
        .get(0);
    Ok(Some(behind as u64))
}

/// Dead letters back into the retry set, due now; an event that retention deleted is restored
/// from the dead letter's copy under its old sequence number.
pub async fn replay_dead_letters(
    c: &impl GenericClient,
    hook: &HookId,
    event_ids: Option<&[String]>,
    now: Timestamp,
) -> Result<Vec<String>> {
    let rows = c
        .query(
            "SELECT d.id, d.seq, d.event_id, d.type, d.cid, d.event_created_ms, d.payload, h.app_id
             FROM dead_letters d JOIN hooks h ON h.id = d.hook_id
             WHERE d.hook_id = $1 ORDER BY d.id",
            &[&hook.as_str()],
        )
        .await?;
    let mut replayed = Vec::new();
    for r in rows {
        let (id, seq, event_id, app): (i64, Seq, String, AppId) =
            (r.get(0), r.get(1), r.get(2), r.get(7));
        if event_ids.is_some_and(|ids| !ids.contains(&event_id)) {
            continue;
        }
        c.execute(
            "INSERT INTO events (app_id, seq, event_id, type, cid, created_ms, payload)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[
                &app,
                &seq,
                &event_id,
                &r.get::<_, &str>(3),
                &r.get::<_, Option<&str>>(4),
                &r.get::<_, i64>(5),
                &r.get::<_, &[u8]>(6),
            ],
        )
        .await?;
        let present = c
            .query_opt(
                "SELECT 1 FROM events WHERE app_id = $1 AND seq = $2 AND event_id = $3",
                &[&app, &seq, &event_id],
            )
            .await?
            .is_some();
        if !present {
            // Another event holds this id now: the dead letter cannot be put back, and stays.
            continue;
        }
        c.execute(
            "INSERT INTO retries (hook_id, seq, attempts, first_failed_ms, next_attempt_ms, last_error)
             VALUES ($1, $2, 0, $3, $3, 'replayed from the dead letters')
             ON CONFLICT (hook_id, seq) DO UPDATE SET next_attempt_ms = excluded.next_attempt_ms",
            &[&hook.as_str(), &seq, &now.millis()],
        )
        .await?;
        c.execute("DELETE FROM dead_letters WHERE id = $1", &[&id])
            .await?;
        replayed.push(event_id);
    }
    Ok(replayed)
}

pub async fn backlog(
    c: &impl GenericClient,
    app: AppId,
    hook: &HookId,
    count_up_to: u64,
) -> Result<Option<HookBacklog>> {
    let Some(row) = c
        .query_opt(
            "SELECT cursor, CASE WHEN lease_until > now() THEN owner END FROM hooks WHERE id = $1",
            &[&hook.as_str()],
        )
        .await?
    else {
        return Ok(None);
    };
    let (cursor, owner): (Seq, Option<String>) = (row.get(0), row.get(1));
    let limit = count_up_to.min(i64::MAX as u64) as i64;
    let r = c
        .query_one(
            "SELECT
               (SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE app_id = $1 AND seq > $2 LIMIT $4) b),
               (SELECT created_ms FROM events WHERE app_id = $1 AND seq > $2 ORDER BY seq LIMIT 1),
               (SELECT MIN(e.created_ms)
                FROM (SELECT seq FROM retries WHERE hook_id = $3 ORDER BY seq LIMIT 100) r
                JOIN events e ON e.app_id = $1 AND e.seq = r.seq),
               (SELECT COUNT(*) FROM (SELECT 1 FROM retries WHERE hook_id = $3 LIMIT $4) r),
               (SELECT COUNT(*) FROM (SELECT 1 FROM dead_letters WHERE hook_id = $3 LIMIT $4) d)",
            &[&app, &cursor, &hook.as_str(), &limit],
        )
        .await?;
    let (behind, oldest_log, oldest_retry, retries, dead): (
        i64,
        Option<i64>,
        Option<i64>,
        i64,
        i64,
    ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    let oldest = match (oldest_log, oldest_retry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(Some(HookBacklog {
        cursor,
        events_behind: behind as u64,
        retries: retries as u64,
        dead_letters: dead as u64,
        oldest_pending: oldest.map(Timestamp::from_millis),
        owner,
    }))
}
