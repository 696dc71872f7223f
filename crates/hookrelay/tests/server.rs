//! The whole server in-process, through [`hookrelay::run::run`] on a socket this test bound:
//! it serves, takes events, and on shutdown joins every task and closes its store, so the
//! port is free and the data is readable again by another process.

use std::time::Duration;

use hookrelay::client::server_token;
use hookrelay::config::Config;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_in_process_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(hookrelay::run::run(
        config.clone(),
        listener,
        shutdown.clone(),
    ));

    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if http.get(format!("{url}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the server answers");
    // The first app it made, read through a second handle on the same store.
    let store = hookrelay::store::open(&config).await.unwrap();
    let app = store.list_apps().await.unwrap().remove(0);
    store.close().await.unwrap();
    let answer = http
        .post(format!("{url}/v1/events?api_key={}", app.api_key))
        .header("Authorization", server_token(app.api_secret.expose(), None))
        .header("stream-auth-type", "jwt")
        .header("Content-Type", "application/json")
        .body(r#"{"id": "in-process-1", "type": "message.new"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 201);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("every task ends on shutdown")
        .unwrap()
        .unwrap();
    assert!(
        http.get(format!("{url}/healthz")).send().await.is_err(),
        "the port is closed"
    );
    // What was acknowledged is durable and readable by the next process.
    let reopened = hookrelay::store::open(&config).await.unwrap();
    let events = reopened
        .read_events(app.id, hookrelay_store::Seq(0), 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, "in-process-1");
    reopened.close().await.unwrap();
}
