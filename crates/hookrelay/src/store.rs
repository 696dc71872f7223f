//! Opening the configured store, for `serve`, `apps` and `migrate`.

use std::sync::Arc;

use anyhow::{Context, bail};
use hookrelay_store::{PostgresOptions, PostgresStore, SqliteStore, Store};

use crate::config::{Config, StoreKind};
use crate::keys;

pub fn database_url(config: &Config) -> anyhow::Result<&str> {
    match config.database_url.as_deref() {
        Some(url) if !url.is_empty() => Ok(url),
        _ => bail!(
            "store = \"postgres\" needs database_url (or HOOKRELAY_DATABASE_URL), e.g. postgres://hookrelay@127.0.0.1:5432/hookrelay"
        ),
    }
}

pub async fn open(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match config.store {
        StoreKind::Sqlite => {
            let secrets = keys::server_key(&config.data_dir, config.env.secret_key.as_ref())?;
            Arc::new(
                SqliteStore::open(config.database_path(), secrets)
                    .with_context(|| format!("opening {}", config.database_path().display()))?,
            )
        }
        StoreKind::Postgres => {
            let url = database_url(config)?;
            // Every node must encrypt with the same key, so none may make up its own.
            let secrets =
                keys::shared_server_key(&config.data_dir, config.env.secret_key.as_ref())?;
            let options = PostgresOptions {
                url: url.to_owned(),
                pool_size: config.postgres.pool_size,
                lease_ttl: config.postgres.lease_ttl,
                node_id: config.postgres.node_id.clone(),
            };
            let store = PostgresStore::connect(options, secrets)
                .await
                .context("connecting to PostgreSQL")?;
            tracing::info!(node_id = store.node_id(), "connected to PostgreSQL");
            Arc::new(store)
        }
    })
}
