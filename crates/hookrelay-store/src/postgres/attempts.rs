//! The delivery log (`attempts`), as in the SQLite store: written with each round's progress,
//! read per hook and per event.

use hookrelay_core::{HookId, Timestamp};
use tokio_postgres::{GenericClient, Row};

use crate::codec::{attempt_events_json, parse_attempt_events};
use crate::postgres::events::row_to_event;
use crate::postgres::text;
use crate::{
    AppId, Attempt, AttemptOutcome, AttemptRecord, DeadLetterReason, EventTrace, HookTrace, Result,
    Seq, StoreError,
};

/// How many of a hook's rows nearest below an event are read to find the rows that include it.
const NEAREST_ROWS: i64 = 256;

pub async fn insert(
    c: &impl GenericClient,
    hook: &HookId,
    records: &[AttemptRecord],
) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut first = Vec::with_capacity(records.len());
    let mut last = Vec::with_capacity(records.len());
    let mut events = Vec::with_capacity(records.len());
    let mut at = Vec::with_capacity(records.len());
    let mut duration = Vec::with_capacity(records.len());
    let mut outcome = Vec::with_capacity(records.len());
    let mut code: Vec<Option<String>> = Vec::with_capacity(records.len());
    let mut status: Vec<Option<i32>> = Vec::with_capacity(records.len());
    let mut response: Vec<Option<String>> = Vec::with_capacity(records.len());
    for a in records {
        let Some((lo, hi)) = a.seq_range() else {
            continue;
        };
        first.push(lo);
        last.push(hi);
        events.push(attempt_events_json(&a.events)?);
        at.push(a.at.millis());
        duration.push(a.duration_us as i64);
        outcome.push(a.outcome.as_str());
        code.push(a.code.as_deref().map(|s| text(s).into_owned()));
        status.push(a.http_status.map(i32::from));
        response.push(a.response.as_deref().map(|s| text(s).into_owned()));
    }
    c.execute(
        "INSERT INTO attempts (hook_id, first_seq, last_seq, events, at_ms, duration_us, outcome,
                               code, http_status, response)
         SELECT $1, * FROM unnest($2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::BIGINT[],
                                  $6::BIGINT[], $7::TEXT[], $8::TEXT[], $9::INTEGER[], $10::TEXT[])",
        &[
            &hook.as_str(),
            &first,
            &last,
            &events,
            &at,
            &duration,
            &outcome,
            &code,
            &status,
            &response,
        ],
    )
    .await?;
    Ok(())
}

const COLUMNS: &str = "id, events, at_ms, duration_us, outcome, code, http_status, response";

fn row_to_attempt(r: &Row) -> Result<Attempt> {
    let outcome: &str = r.get(4);
    Ok(Attempt {
        id: r.get(0),
        record: AttemptRecord {
            events: parse_attempt_events(r.get(1))?,
            at: Timestamp::from_millis(r.get(2)),
            duration_us: r.get::<_, i64>(3).max(0) as u64,
            outcome: AttemptOutcome::parse(outcome)
                .ok_or_else(|| StoreError::Corrupt(format!("attempt outcome {outcome:?}")))?,
            code: r.get(5),
            http_status: r.get::<_, Option<i32>>(6).map(|s| s as u16),
            response: r.get(7),
        },
    })
}

pub async fn list(
    c: &impl GenericClient,
    hook: &HookId,
    outcome: Option<AttemptOutcome>,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<Attempt>> {
    let rows = c
        .query(
            &format!(
                "SELECT {COLUMNS} FROM attempts
                 WHERE hook_id = $1 AND id < $2 AND ($3::TEXT IS NULL OR outcome = $3)
                 ORDER BY id DESC LIMIT $4"
            ),
            &[
                &hook.as_str(),
                &before.unwrap_or(i64::MAX),
                &outcome.map(AttemptOutcome::as_str),
                &(limit as i64),
            ],
        )
        .await?;
    rows.iter().map(row_to_attempt).collect()
}

async fn of_event(c: &impl GenericClient, hook: &HookId, seq: Seq) -> Result<Vec<Attempt>> {
    let rows = c
        .query(
            &format!(
                "SELECT {COLUMNS} FROM (
                     SELECT * FROM attempts WHERE hook_id = $1 AND first_seq <= $2
                     ORDER BY first_seq DESC LIMIT $3) nearest
                 WHERE last_seq >= $2 ORDER BY id"
            ),
            &[&hook.as_str(), &seq, &NEAREST_ROWS],
        )
        .await?;
    let mut out = Vec::new();
    for row in &rows {
        let attempt = row_to_attempt(row)?;
        if attempt.record.events.iter().any(|e| e.seq == seq) {
            out.push(attempt);
        }
    }
    Ok(out)
}

pub async fn trace(
    c: &impl GenericClient,
    app: AppId,
    event_id: &str,
    hooks: &[HookId],
) -> Result<Option<EventTrace>> {
    let Some(row) = c
        .query_opt(
            "SELECT seq, event_id, type, cid, created_ms, payload FROM events
             WHERE app_id = $1 AND event_id = $2",
            &[&app, &event_id],
        )
        .await?
    else {
        return Ok(None);
    };
    let event = row_to_event(&row);
    let mut out = Vec::with_capacity(hooks.len());
    for hook in hooks {
        let Some(cursor) = c
            .query_opt("SELECT cursor FROM hooks WHERE id = $1", &[&hook.as_str()])
            .await?
        else {
            continue;
        };
        let retry = c
            .query_opt(
                "SELECT attempts, next_attempt_ms, last_error FROM retries
                 WHERE hook_id = $1 AND seq = $2",
                &[&hook.as_str(), &event.seq],
            )
            .await?
            .map(|r| {
                (
                    r.get::<_, i32>(0) as u32,
                    Timestamp::from_millis(r.get(1)),
                    r.get(2),
                )
            });
        let reason = c
            .query_opt(
                "SELECT reason FROM dead_letters WHERE hook_id = $1 AND seq = $2
                 ORDER BY id DESC LIMIT 1",
                &[&hook.as_str(), &event.seq],
            )
            .await?
            .and_then(|r| DeadLetterReason::parse(r.get(0)));
        out.push(HookTrace {
            hook: hook.clone(),
            cursor: cursor.get(0),
            retry,
            dead_letter: reason,
            attempts: of_event(c, hook, event.seq).await?,
        });
    }
    Ok(Some(EventTrace { event, hooks: out }))
}

/// Deletes up to `limit` attempts recorded before `older_than`.
pub async fn delete_old(c: &impl GenericClient, older_than: Timestamp, limit: i64) -> Result<u64> {
    Ok(c.execute(
        "DELETE FROM attempts WHERE id IN (
             SELECT id FROM attempts WHERE at_ms < $1 ORDER BY id LIMIT $2)",
        &[&older_than.millis(), &limit],
    )
    .await?)
}

/// Deletes each hook's records older than its newest `keep`.
pub async fn cap(c: &impl GenericClient, keep: i64) -> Result<u64> {
    let hooks = c.query("SELECT id FROM hooks", &[]).await?;
    let mut total = 0;
    for row in &hooks {
        let hook: &str = row.get(0);
        total += c
            .execute(
                "DELETE FROM attempts WHERE hook_id = $1 AND id <= (
                     SELECT id FROM attempts WHERE hook_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
                &[&hook, &keep],
            )
            .await?;
    }
    Ok(total)
}
