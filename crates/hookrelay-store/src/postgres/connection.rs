//! Connections that go away: telling a connection the server or the network dropped apart from
//! an error about a statement, and learning what became of a transaction whose `COMMIT` was in
//! flight when its connection was lost.

use std::io::ErrorKind;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::time::Instant;

/// Whether the error says the connection is gone (closed, reset, or its backend ended by an
/// operator or a server shutdown), rather than anything about the statement. A connection
/// that could not be made is not "lost": trying again would only wait again.
pub fn connection_lost(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return *code == SqlState::ADMIN_SHUTDOWN || *code == SqlState::CRASH_SHUTDOWN;
    }
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| {
            matches!(
                io.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            )
        })
}

/// Drops every idle pooled connection: after one was found closed by the server (a restart,
/// an operator ending hookrelay's backends), the others most likely were too, and each would
/// fail one operation before the pool noticed.
pub fn forget_idle(pool: &Pool) {
    pool.retain(|_, _| false);
}

/// What became of a transaction whose connection was lost while its `COMMIT` was in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Committed,
    /// Rolled back: nothing it wrote is there, and it can be run again.
    Aborted,
    /// Still running after `patience` (its backend has not yet seen the connection go), or the
    /// database could not be asked.
    Unknown,
}

/// Asks the database, on another connection, whether `transaction` committed. Its backend may
/// still be finishing, so "in progress" is asked again until `patience` runs out.
pub async fn fate_of(pool: &Pool, transaction: i64, patience: Duration) -> Fate {
    let deadline = Instant::now() + patience;
    loop {
        let status = match pool.get().await {
            Ok(client) => client
                .query_one(
                    "SELECT pg_xact_status($1::TEXT::xid8)",
                    &[&transaction.to_string()],
                )
                .await
                .map(|row| row.get::<_, Option<String>>(0)),
            Err(_) => return Fate::Unknown,
        };
        match status.as_ref().map(|s| s.as_deref()) {
            Ok(Some("committed")) => return Fate::Committed,
            Ok(Some("aborted")) => return Fate::Aborted,
            Ok(Some("in progress")) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            _ => return Fate::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
    use tokio_postgres::NoTls;

    fn pool() -> Pool {
        let url = std::env::var("HOOKRELAY_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let manager = Manager::from_config(
            url.parse().unwrap(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager).max_size(2).build().unwrap()
    }

    /// The id of `tx`, given to it by asking.
    async fn transaction_id(tx: &tokio_postgres::Transaction<'_>) -> i64 {
        tx.query_one("SELECT pg_current_xact_id()::TEXT::BIGINT", &[])
            .await
            .unwrap()
            .get(0)
    }

    #[tokio::test]
    async fn the_fate_of_a_transaction_is_read_from_the_database() {
        let pool = pool();
        let patience = Duration::from_millis(200);

        let mut owner = pool.get().await.unwrap();
        let tx = owner.transaction().await.unwrap();
        let committed = transaction_id(&tx).await;
        tx.commit().await.unwrap();
        assert_eq!(fate_of(&pool, committed, patience).await, Fate::Committed);

        let tx = owner.transaction().await.unwrap();
        let rolled_back = transaction_id(&tx).await;
        tx.rollback().await.unwrap();
        assert_eq!(fate_of(&pool, rolled_back, patience).await, Fate::Aborted);

        // Still open on its connection: asked until patience runs out.
        let tx = owner.transaction().await.unwrap();
        let open = transaction_id(&tx).await;
        let asked = std::time::Instant::now();
        assert_eq!(fate_of(&pool, open, patience).await, Fate::Unknown);
        assert!(asked.elapsed() >= patience);
        tx.rollback().await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_the_server_ended_is_lost_one_never_made_is_not() {
        let pool = pool();
        let victim = pool.get().await.unwrap();
        let pid: i32 = victim
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        pool.get()
            .await
            .unwrap()
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
        let ended = victim.query_one("SELECT 1", &[]).await.unwrap_err();
        assert!(connection_lost(&ended), "{ended:?}");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let not_made =
            tokio_postgres::connect(&format!("host=127.0.0.1 port={port} user=x"), NoTls)
                .await
                .err()
                .unwrap();
        assert!(!connection_lost(&not_made), "{not_made:?}");
    }
}
