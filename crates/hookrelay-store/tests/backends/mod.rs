//! The backends the contract tests run on, each in a place of its own so tests run in parallel.

use std::sync::Arc;
use std::time::Duration;

use hookrelay_store::{PostgresOptions, PostgresStore, SecretBox, SqliteStore, Store};

pub const KEY: [u8; 32] = [42; 32];

/// A fresh, empty place for one test's store, which can be opened several times.
pub trait Backend {
    async fn open_with_key(&self, key: [u8; 32]) -> Arc<dyn Store>;
    async fn open(&self) -> Arc<dyn Store> {
        self.open_with_key(KEY).await
    }
    /// Everything the store wrote, as bytes, to look for secrets in clear.
    async fn raw_contents(&self) -> Vec<u8>;
}

pub struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

impl Backend for Sqlite {
    async fn open_with_key(&self, key: [u8; 32]) -> Arc<dyn Store> {
        Arc::new(
            SqliteStore::open(self.dir.path().join("hookrelay.db"), SecretBox::new(&key)).unwrap(),
        )
    }

    async fn raw_contents(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("hookrelay.db")).unwrap()
    }
}

/// The server the PostgreSQL tests use: `HOOKRELAY_TEST_DATABASE_URL`, or the project
/// machine's local server (trust auth). The tests fail, rather than skip, when it is absent.
pub fn server_url() -> String {
    std::env::var("HOOKRELAY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} is needed by these tests: {e}"));
    tokio::spawn(connection);
    client
}

/// A database of its own, dropped when the test ends.
pub struct Postgres {
    pub url: String,
    name: String,
}

impl Postgres {
    pub async fn new() -> Self {
        let server = server_url();
        let name = format!("hookrelay_test_{}", uuid::Uuid::new_v4().simple());
        admin(&server)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = match server.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("HOOKRELAY_TEST_DATABASE_URL must end with /database"),
        };
        Self { url, name }
    }

    pub async fn node(
        &self,
        key: [u8; 32],
        node_id: &str,
        lease_ttl: Duration,
    ) -> Arc<PostgresStore> {
        let options = PostgresOptions {
            url: self.url.clone(),
            pool_size: 4,
            lease_ttl,
            node_id: Some(node_id.into()),
        };
        Arc::new(
            PostgresStore::connect(options, SecretBox::new(&key))
                .await
                .unwrap(),
        )
    }

    pub async fn sql(&self) -> tokio_postgres::Client {
        admin(&self.url).await
    }
}

impl Backend for Postgres {
    async fn open_with_key(&self, key: [u8; 32]) -> Arc<dyn Store> {
        self.node(key, "test-node", Duration::from_secs(30)).await
    }

    async fn raw_contents(&self) -> Vec<u8> {
        let client = self.sql().await;
        let mut out = Vec::new();
        for table in ["apps", "hooks", "events"] {
            for row in client
                .query(&format!("SELECT t::text FROM {table} t"), &[])
                .await
                .unwrap()
            {
                out.extend_from_slice(row.get::<_, &str>(0).as_bytes());
            }
        }
        out
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Async clean-up from a synchronous drop: a thread with its own runtime.
        let (server, name) = (server_url(), self.name.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let _ = admin(&server)
                        .await
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                })
        })
        .join();
    }
}

/// Runs each contract test once per backend.
#[macro_export]
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::backends::Sqlite::new()).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::backends::Postgres::new().await).await
                }
            )*
        }
    };
}
