//! The `apps` table.

use hookrelay_core::Timestamp;
use tokio_postgres::GenericClient;

use crate::{App, AppId, AppSettings, Result, SecretBox, StoreError, codec};

const COLUMNS: &str = "SELECT id, name, api_key, api_secret, settings, settings_secrets, created_ms, updated_ms, previous_api_secret, previous_secret_until_ms FROM apps";

pub async fn insert(
    c: &impl GenericClient,
    name: &str,
    api_key: &str,
    sealed_secret: &[u8],
    now: Timestamp,
) -> Result<AppId> {
    let row = c
        .query_opt(
            "INSERT INTO apps (name, api_key, api_secret, created_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (api_key) DO NOTHING RETURNING id",
            &[&name, &api_key, &sealed_secret, &now.millis()],
        )
        .await?;
    match row {
        Some(r) => Ok(r.get(0)),
        None => Err(StoreError::ApiKeyTaken(api_key.to_owned())),
    }
}

pub enum Filter<'a> {
    All,
    Id(AppId),
    Key(&'a str),
}

pub async fn select(
    c: &impl GenericClient,
    secrets: &SecretBox,
    filter: Filter<'_>,
) -> Result<Vec<App>> {
    let rows = match filter {
        Filter::All => c.query(&format!("{COLUMNS} ORDER BY id"), &[]).await?,
        Filter::Id(id) => c.query(&format!("{COLUMNS} WHERE id = $1"), &[&id]).await?,
        Filter::Key(key) => {
            c.query(&format!("{COLUMNS} WHERE api_key = $1"), &[&key])
                .await?
        }
    };
    rows.iter()
        .map(|r| {
            let sealed: &[u8] = r.get(3);
            Ok(App {
                id: r.get(0),
                name: r.get(1),
                api_key: r.get(2),
                api_secret: secrets.open(sealed)?,
                previous_api_secret: codec::decode_previous_secret(secrets, r.get(8), r.get(9))?,
                settings: codec::decode_settings(secrets, r.get(4), r.get(5))?,
                created_at: Timestamp::from_millis(r.get(6)),
                updated_at: Timestamp::from_millis(r.get(7)),
            })
        })
        .collect()
}

pub async fn update_settings(
    c: &impl GenericClient,
    secrets: &SecretBox,
    id: AppId,
    settings: &AppSettings,
    now: Timestamp,
) -> Result<()> {
    let (fields, sealed) = codec::encode_settings(secrets, settings)?;
    c.execute(
        "UPDATE apps SET settings = $2, settings_secrets = $3, updated_ms = $4 WHERE id = $1",
        &[&id, &fields, &sealed, &now.millis()],
    )
    .await?;
    Ok(())
}

/// Replaces the API secret; with `keep_previous_until`, the old one is kept until then.
pub async fn set_secret(
    c: &impl GenericClient,
    id: AppId,
    sealed_secret: &[u8],
    keep_previous_until: Option<Timestamp>,
    now: Timestamp,
) -> Result<()> {
    // Every expression of an UPDATE reads the row as it was: `api_secret` is the old secret.
    c.execute(
        "UPDATE apps SET api_secret = $2, updated_ms = $3,
             previous_api_secret = CASE WHEN $4::BIGINT IS NULL THEN NULL ELSE api_secret END,
             previous_secret_until_ms = $4
         WHERE id = $1",
        &[
            &id,
            &sealed_secret,
            &now.millis(),
            &keep_previous_until.map(Timestamp::millis),
        ],
    )
    .await?;
    Ok(())
}

/// Deletes the app's events and the app itself; its hooks must be gone already.
pub async fn delete(c: &impl GenericClient, id: AppId) -> Result<bool> {
    c.execute("DELETE FROM events WHERE app_id = $1", &[&id])
        .await?;
    Ok(c.execute("DELETE FROM apps WHERE id = $1", &[&id]).await? > 0)
}
