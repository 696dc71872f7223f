//! The `apps` table.

use hookrelay_core::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use crate::{App, AppId, AppSettings, Result, SecretBox, StoreError, codec};

pub enum Filter<'a> {
    All,
    Id(AppId),
    Key(&'a str),
}

pub fn insert(
    tx: &rusqlite::Transaction<'_>,
    name: &str,
    api_key: &str,
    sealed_secret: &[u8],
    now: Timestamp,
) -> Result<AppId> {
    let taken: Option<i64> = tx
        .query_row("SELECT id FROM apps WHERE api_key = ?1", [api_key], |r| {
            r.get(0)
        })
        .optional()?;
    if taken.is_some() {
        return Err(StoreError::ApiKeyTaken(api_key.to_owned()));
    }
    tx.execute(
        "INSERT INTO apps (name, api_key, api_secret, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![name, api_key, sealed_secret, now.millis()],
    )?;
    Ok(AppId(tx.last_insert_rowid()))
}

pub fn select(conn: &Connection, secrets: &SecretBox, filter: Filter<'_>) -> Result<Vec<App>> {
    const COLUMNS: &str = "SELECT id, name, api_key, api_secret, settings, settings_secrets, created_ms, updated_ms, previous_api_secret, previous_secret_until_ms FROM apps";
    let mut stmt;
    let mut rows = match filter {
        Filter::All => {
            stmt = conn.prepare_cached(&format!("{COLUMNS} ORDER BY id"))?;
            stmt.query([])?
        }
        Filter::Id(id) => {
            stmt = conn.prepare_cached(&format!("{COLUMNS} WHERE id = ?1"))?;
            stmt.query([id])?
        }
        Filter::Key(key) => {
            stmt = conn.prepare_cached(&format!("{COLUMNS} WHERE api_key = ?1"))?;
            stmt.query([key])?
        }
    };
    let mut apps = Vec::new();
    while let Some(r) = rows.next()? {
        let sealed: Vec<u8> = r.get(3)?;
        let settings_json: String = r.get(4)?;
        let sealed_settings: Option<Vec<u8>> = r.get(5)?;
        let previous: Option<Vec<u8>> = r.get(8)?;
        let until: Option<i64> = r.get(9)?;
        apps.push(App {
            id: r.get(0)?,
            name: r.get(1)?,
            api_key: r.get(2)?,
            api_secret: secrets.open(&sealed)?,
            previous_api_secret: codec::decode_previous_secret(
                secrets,
                previous.as_deref(),
                until,
            )?,
            settings: codec::decode_settings(secrets, &settings_json, sealed_settings.as_deref())?,
            created_at: Timestamp::from_millis(r.get(6)?),
            updated_at: Timestamp::from_millis(r.get(7)?),
        });
    }
    Ok(apps)
}

pub fn update_settings(
    tx: &rusqlite::Transaction<'_>,
    secrets: &SecretBox,
    id: AppId,
    settings: &AppSettings,
    now: Timestamp,
) -> Result<()> {
    let (fields, sealed) = codec::encode_settings(secrets, settings)?;
    tx.execute(
        "UPDATE apps SET settings = ?2, settings_secrets = ?3, updated_ms = ?4 WHERE id = ?1",
        params![id, fields, sealed, now.millis()],
    )?;
    Ok(())
}

/// Replaces the API secret; with `keep_previous_until`, the old one is kept until then.
pub fn set_secret(
    tx: &rusqlite::Transaction<'_>,
    id: AppId,
    sealed_secret: &[u8],
    keep_previous_until: Option<Timestamp>,
    now: Timestamp,
) -> Result<()> {
    // Every expression of an UPDATE reads the row as it was: `api_secret` is the old secret.
    tx.execute(
        "UPDATE apps SET api_secret = ?2, updated_ms = ?3,
             previous_api_secret = CASE WHEN ?4 IS NULL THEN NULL ELSE api_secret END,
             previous_secret_until_ms = ?4
         WHERE id = ?1",
        params![
            id,
            sealed_secret,
            now.millis(),
            keep_previous_until.map(Timestamp::millis)
        ],
    )?;
    Ok(())
}

/// Deletes the app's events and the app itself; its hooks must be gone already.
pub fn delete(tx: &rusqlite::Transaction<'_>, id: AppId) -> Result<bool> {
    crate::sqlite::events::delete_app(tx, id)?;
    Ok(tx.execute("DELETE FROM apps WHERE id = ?1", [id])? > 0)
}
