//! The `hooks` table. A hook's cursor is a column of its row, so deleting a hook deletes its
//! cursor with it, and no cursor can exist without a hook.

use std::collections::{HashMap, HashSet};

use hookrelay_core::EventHook;
use rusqlite::{Connection, params};

use crate::sqlite::events::high_water_mark;
use crate::{AppId, HookRecord, Result, SecretBox, StoreError, codec};

pub fn select(
    conn: &Connection,
    secrets: &SecretBox,
    app: Option<AppId>,
) -> Result<Vec<HookRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT app_id, spec, secret, paused FROM hooks WHERE ?1 IS NULL OR app_id = ?1 ORDER BY app_id, position",
    )?;
    let mut rows = stmt.query([app])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let spec: String = r.get(1)?;
        let secret: Option<Vec<u8>> = r.get(2)?;
        let hook = codec::decode_hook(secrets, &spec, secret.as_deref())?;
        out.push(HookRecord {
            app: r.get(0)?,
            hook,
            paused: r.get(3)?,
        });
    }
    Ok(out)
}

pub fn replace(
    tx: &rusqlite::Transaction<'_>,
    secrets: &SecretBox,
    app: AppId,
    hooks: &[EventHook],
) -> Result<()> {
    // id -> (app, enabled) of every hook that exists now.
    let mut existing: HashMap<String, (AppId, bool)> = HashMap::new();
    {
        let mut stmt = tx.prepare_cached("SELECT id, app_id, enabled FROM hooks")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            existing.insert(r.get(0)?, (r.get(1)?, r.get(2)?));
        }
    }
    for hook in hooks {
        if let Some((owner, _)) = existing.get(hook.id.as_str())
            && *owner != app
        {
            return Err(StoreError::HookIdTaken(hook.id.clone()));
        }
    }
    let keep: HashSet<&str> = hooks.iter().map(|h| h.id.as_str()).collect();
    for (id, (owner, _)) in &existing {
        if *owner == app && !keep.contains(id.as_str()) {
            // A deleted hook takes its pending work with it.
            tx.execute("DELETE FROM retries WHERE hook_id = ?1", [id])?;
            tx.execute("DELETE FROM dead_letters WHERE hook_id = ?1", [id])?;
            crate::sqlite::attempts::keep_ids_of(tx, id)?;
            tx.execute("DELETE FROM attempts WHERE hook_id = ?1", [id])?;
            tx.execute("DELETE FROM hooks WHERE id = ?1", [id])?;
        }
    }
    // New hooks start at the head of the log: no backfill.
    let head = high_water_mark(tx)?;
    let mut upsert = tx.prepare_cached(
        "INSERT INTO hooks (id, app_id, position, enabled, spec, secret, cursor)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET
             position = excluded.position,
             enabled  = excluded.enabled,
             spec     = excluded.spec,
             secret   = excluded.secret,
             -- re-enabling starts from the head, like a new hook; any other change keeps the cursor
             cursor   = CASE WHEN hooks.enabled = 0 AND excluded.enabled = 1
                             THEN excluded.cursor ELSE hooks.cursor END",
    )?;
    for (position, hook) in hooks.iter().enumerate() {
        let (spec, sealed) = codec::encode_hook(secrets, hook)?;
        upsert.execute(params![
            hook.id.as_str(),
            app,
            position as i64,
            hook.enabled,
            spec,
            sealed,
            head
        ])?;
    }
    Ok(())
}
