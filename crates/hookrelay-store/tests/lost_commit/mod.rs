//! PostgreSQL: an append whose connection is lost while its COMMIT is in flight is neither
//! reported as failed when it committed, nor lost when it did not. A relay between the store and
//! the server cuts the connection at the COMMIT, after or instead of passing it on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{backends, event};
use hookrelay_core::Secret;
use hookrelay_store::{PostgresOptions, PostgresStore, SecretBox, Seq, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the relay does with the next COMMIT it sees.
#[derive(Clone, Copy)]
enum Cut {
    /// Passes it to the server, then closes the store's side: it committed, unanswered.
    AfterPassingOn,
    /// Closes both sides without passing it on: the server rolls back.
    Instead,
}

/// A TCP relay to PostgreSQL that cuts one connection at its COMMIT once armed.
struct CommitCutter {
    port: u16,
    armed: Arc<Mutex<Option<Cut>>>,
}

impl CommitCutter {
    async fn start(server: (String, u16)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(Mutex::new(None));
        let arm = armed.clone();
        tokio::spawn(async move {
            loop {
                let (store_side, _) = listener.accept().await.unwrap();
                let server_side = TcpStream::connect((server.0.as_str(), server.1))
                    .await
                    .unwrap();
                tokio::spawn(relay(store_side, server_side, arm.clone()));
            }
        });
        Self { port, armed }
    }

    fn arm(&self, cut: Cut) {
        *self.armed.lock().unwrap() = Some(cut);
    }

    fn fired(&self) -> bool {
        self.armed.lock().unwrap().is_none()
    }
}

async fn relay(store_side: TcpStream, server_side: TcpStream, armed: Arc<Mutex<Option<Cut>>>) {
    let (mut from_store, mut to_store) = store_side.into_split();
    let (mut from_server, mut to_server) = server_side.into_split();
    let answers = tokio::spawn(async move {
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = from_server.read(&mut buf).await {
            if to_store.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n @ 1..) = from_store.read(&mut buf).await {
        let chunk = &buf[..n];
        let is_commit = chunk.windows(7).any(|w| w == b"COMMIT\0");
        let cut = if is_commit {
            armed.lock().unwrap().take()
        } else {
            None
        };
        match cut {
            None => {
                if to_server.write_all(chunk).await.is_err() {
                    break;
                }
            }
            Some(cut) => {
                // No answer goes back from here on.
                answers.abort();
                if let Cut::AfterPassingOn = cut {
                    to_server.write_all(chunk).await.unwrap();
                }
                return; // both sides dropped: closed
            }
        }
    }
    answers.abort();
}

async fn store_through(cutter: &CommitCutter, db: &backends::Postgres) -> PostgresStore {
    let database = db.url.rsplit_once('/').unwrap().1;
    let options = PostgresOptions {
        url: format!("postgres://postgres@127.0.0.1:{}/{database}", cutter.port),
        pool_size: 4,
        lease_ttl: Duration::from_secs(30),
        node_id: Some("n".into()),
    };
    PostgresStore::connect(options, SecretBox::new(&backends::KEY))
        .await
        .unwrap()
}

fn server_address() -> (String, u16) {
    let url = backends::server_url();
    let host_port = url.split_once('@').unwrap().1.split('/').next().unwrap();
    let (host, port) = host_port.rsplit_once(':').unwrap();
    (host.to_string(), port.parse().unwrap())
}

async fn append_with_its_commit_cut(cut: Cut) {
    let db = backends::Postgres::new().await;
    let cutter = CommitCutter::start(server_address()).await;
    let store = store_through(&cutter, &db).await;
    let app = store
        .create_app("a", "k", &Secret::new("s"))
        .await
        .unwrap()
        .id;

    cutter.arm(cut);
    let appended = store
        .append(
            app,
            vec![event("x", "message.new"), event("y", "message.new")],
        )
        .await
        .expect("an append whose COMMIT lost its connection is not an error");
    assert!(cutter.fired(), "the relay saw the COMMIT");

    assert!(appended.iter().all(|a| a.seq.is_some()));
    let stored = store.read_events(app, Seq(0), 10).await.unwrap();
    let ids: Vec<&str> = stored.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["x", "y"], "stored once each");
    let seqs: Vec<Seq> = stored.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        appended.iter().map(|a| a.seq.unwrap()).collect::<Vec<_>>(),
        "the numbers answered are the numbers stored"
    );
}

#[tokio::test]
async fn an_append_that_committed_unanswered_is_answered_once_stored() {
    append_with_its_commit_cut(Cut::AfterPassingOn).await;
}

#[tokio::test]
async fn an_append_whose_commit_never_arrived_is_committed_again() {
    append_with_its_commit_cut(Cut::Instead).await;
}
