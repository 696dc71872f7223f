//! The `hooks` table: configuration, cursor, pause state, epoch and lease of each hook.

use std::collections::{HashMap, HashSet};

use hookrelay_core::EventHook;
use tokio_postgres::GenericClient;

use crate::{AppId, HookRecord, Result, SecretBox, StoreError, codec};

pub async fn select(
    c: &impl GenericClient,
    secrets: &SecretBox,
    app: Option<AppId>,
) -> Result<Vec<HookRecord>> {
    let rows = c
        .query(
            "SELECT app_id, spec, secret, paused FROM hooks
             WHERE $1::BIGINT IS NULL OR app_id = $1 ORDER BY app_id, position",
            &[&app],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(HookRecord {
                app: r.get(0),
                hook: codec::decode_hook(secrets, r.get(1), r.get(2))?,
                paused: r.get(3),
            })
        })
        .collect()
}

/// Same rules as the SQLite store (see [`crate::Store::replace_hooks`]). Runs in the caller's
/// transaction; the hooks rows of the app are locked first, so two nodes replacing the same
/// app's list at once apply one after the other.
pub async fn replace(
    c: &impl GenericClient,
    secrets: &SecretBox,
    app: AppId,
    hooks: &[EventHook],
) -> Result<()> {
    // Serialises concurrent PATCHes of the same app (the row lock is held until commit).
    c.execute("SELECT 1 FROM apps WHERE id = $1 FOR UPDATE", &[&app])
        .await?;
    let ids: Vec<&str> = hooks.iter().map(|h| h.id.as_str()).collect();
    let mut owners: HashMap<String, AppId> = HashMap::new();
    for r in c
        .query(
            // Locked up front, in id order (see `progress::fence`): the upserts below go in
            // the order of the list.
            "SELECT id, app_id FROM hooks WHERE app_id = $1 OR id = ANY($2) ORDER BY id FOR UPDATE",
            &[&app, &ids],
        )
        .await?
    {
        owners.insert(r.get(0), r.get(1));
    }
    if let Some(hook) = hooks
        .iter()
        .find(|h| owners.get(h.id.as_str()).is_some_and(|owner| *owner != app))
    {
        return Err(StoreError::HookIdTaken(hook.id.clone()));
    }
    let keep: HashSet<&str> = ids.iter().copied().collect();
    let gone: Vec<&str> = owners
        .keys()
        .map(String::as_str)
        .filter(|id| !keep.contains(id))
        .collect();
    if !gone.is_empty() {
        // A deleted hook takes its pending work with it.
        c.execute("DELETE FROM retries WHERE hook_id = ANY($1)", &[&gone])
            .await?;
        c.execute("DELETE FROM attempts WHERE hook_id = ANY($1)", &[&gone])
            .await?;
        c.execute("DELETE FROM dead_letters WHERE hook_id = ANY($1)", &[&gone])
            .await?;
        c.execute("DELETE FROM hooks WHERE id = ANY($1)", &[&gone])
            .await?;
    }
    // New hooks start at the head of the log: no backfill.
    let head: i64 = c.query_one("SELECT seq FROM log_head", &[]).await?.get(0);
    let upsert = c
        .prepare(
            "INSERT INTO hooks (id, app_id, position, enabled, spec, secret, cursor)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET
                 position = excluded.position,
                 enabled  = excluded.enabled,
                 spec     = excluded.spec,
                 secret   = excluded.secret,
                 -- re-enabling starts from the head, like a new hook; other changes keep the cursor
                 cursor   = CASE WHEN NOT hooks.enabled AND excluded.enabled
                                 THEN excluded.cursor ELSE hooks.cursor END",
        )
        .await?;
    for (position, hook) in hooks.iter().enumerate() {
        let (spec, sealed) = codec::encode_hook(secrets, hook)?;
        c.execute(
            &upsert,
            &[
                &hook.id.as_str(),
                &app,
                &(position as i32),
                &hook.enabled,
                &spec,
                &sealed,
                &head,
            ],
        )
        .await?;
    }
    Ok(())
}
