//! The store contract: what every backend must do. Each test is written once, against the
//! [`Store`] trait, and run on SQLite (a fresh file) and on PostgreSQL (a fresh database on the
//! server named by `HOOKRELAY_TEST_DATABASE_URL`, default the local `test` database's server).

mod backends;
mod lost_commit;

use backends::Backend;
use hookrelay_core::event::PreparedEvent;
use hookrelay_core::hook::input::{HookRequest, HookRules, parse_hook_request};
use hookrelay_core::{EventHook, HookId, Secret, Timestamp};
use hookrelay_store::{
    AppHook, AppId, AppSettings, AttemptEvent, AttemptOutcome, AttemptRecord, Cursor,
    DeadLetterReason, DeadLetterRecord, Epoch, Progress, RetryRecord, RoundInput, RoundLimits, Seq,
    Store, StoreError,
};
use serde_json::json;

/// An app with one enabled hook (`h`, every event type), the setting most tests start from.
async fn app_with_hook(store: &dyn Store) -> (AppId, EventHook) {
    let app = store
        .create_app("a", "k", &Secret::new("s"))
        .await
        .unwrap()
        .id;
    let h = hook("h", true, &[]);
    store.replace_hooks(app, vec![h.clone()]).await.unwrap();
    (app, h)
}

/// The app's hook, as the operations take it.
async fn of_app(store: &dyn Store, app: AppId, hook: &HookId) -> AppHook {
    store
        .app_hook(app, hook)
        .await
        .unwrap()
        .expect("the app's hook")
}

/// Takes the leases of every hook (a no-op on the single-node store) and returns the hook's
/// current epoch, which a lease takeover bumps.
async fn own(store: &dyn Store, hook: &HookId) -> Epoch {
    store.lease_round().await.unwrap();
    store.cursor(hook).await.unwrap().unwrap().epoch
}

fn hook(id: &str, enabled: bool, types: &[&str]) -> EventHook {
    let v = json!({
        "id": id, "enabled": enabled, "hook_type": "sqs", "event_types": types,
        "sqs_queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
        "sqs_region": "us-east-1", "sqs_auth_type": "keys", "sqs_key": "AKIA", "sqs_secret": "shh",
    });
    match parse_hook_request(&v, false, |_| None, &HookRules::default(), Timestamp::now()).unwrap()
    {
        HookRequest::Upsert(h) => *h,
        HookRequest::Delete(_) => unreachable!(),
    }
}

/// A retry entry for `seq`, due `due_in_ms` from now.
fn retry(seq: i64, attempts: u32, due_in_ms: i64, last_error: &str) -> RetryRecord {
    let now = Timestamp::now();
    RetryRecord {
        seq: Seq(seq),
        attempts,
        first_failed_at: now,
        next_attempt_at: now.saturating_add_millis(due_in_ms),
        last_error: last_error.into(),
    }
}

fn event(id: &str, ty: &str) -> PreparedEvent {
    PreparedEvent {
        id: id.into(),
        event_type: ty.into(),
        cid: None,
        payload: format!(r#"{{"id":"{id}","type":"{ty}"}}"#).into_bytes(),
    }
}

async fn apps_keep_their_secrets_encrypted_and_survive_reopen(backend: impl Backend) {
    let store = backend.open().await;
    let app = store
        .create_app("chat", "key1", &Secret::new("topsecret"))
        .await
        .unwrap();
    assert!(matches!(
        store.create_app("other", "key1", &Secret::new("x")).await,
        Err(StoreError::ApiKeyTaken(_))
    ));
    let mut settings = AppSettings::default();
    settings
        .fields
        .insert("webhook_url".into(), json!("https://example.com/hook"));
    settings
        .secrets
        .insert("sqs_secret".into(), Secret::new("legacy-secret"));
    store.update_app_settings(app.id, settings).await.unwrap();
    drop(store);

    let raw = backend.raw_contents().await;
    for clear in ["topsecret", "legacy-secret"] {
        assert!(
            !raw.windows(clear.len()).any(|w| w == clear.as_bytes()),
            "{clear} is in the file"
        );
    }
    let store = backend.open().await;
    let app = store.app_by_key("key1").await.unwrap().unwrap();
    assert_eq!(app.api_secret.expose(), "topsecret");
    assert_eq!(
        app.settings.fields["webhook_url"],
        "https://example.com/hook"
    );
    assert_eq!(app.settings.secrets["sqs_secret"].expose(), "legacy-secret");
    assert!(store.app_by_key("nope").await.unwrap().is_none());
    assert_eq!(store.list_apps().await.unwrap().len(), 1);
    // The wrong server key cannot read them.
    let wrong = backend.open_with_key([1; 32]).await;
    assert!(matches!(
        wrong.app_by_key("key1").await,
        Err(StoreError::Decrypt)
    ));
}

async fn replace_hooks_orders_deletes_and_places_cursors(backend: impl Backend) {
    let store = backend.open().await;
    let app = store
        .create_app("a", "k", &Secret::new("s"))
        .await
        .unwrap()
        .id;
    store
        .append(app, vec![event("e1", "message.new")])
        .await
        .unwrap();
    let (a, b) = (
        hook("hook-a", true, &[]),
        hook("hook-b", false, &["message.*"]),
    );
    store
        .replace_hooks(app, vec![b.clone(), a.clone()])
        .await
        .unwrap();
    let got = store.hooks(app).await.unwrap();
    assert_eq!(
        got,
        vec![b.clone(), a.clone()],
        "order, fields and secrets are kept"
    );
    assert_eq!(got[0].secret().unwrap().expose(), "shh");

    // hookrelay's own fields, and the signing secrets kept apart, encrypted, with the AWS one.
    let mut signed = hook("hook-s", true, &[]);
    signed.rate_limit = Some(100);
    signed.signature = hookrelay_core::sign::SignatureScheme::Standard;
    signed.filter = Some(
        hookrelay_core::ContentFilter::compile(json!({"channel_type": ["messaging"]})).unwrap(),
    );
    signed.signing.current = Some(Secret::new("whsec_bmV3LXNpZ25pbmcta2V5LTEyMzQ1Njc4"));
    signed.signing.previous = Some((
        Secret::new("whsec_b2xkLXNpZ25pbmcta2V5LTEyMzQ1Njc4"),
        Timestamp::from_millis(1_900_000_000_000),
    ));
    store
        .replace_hooks(app, vec![b.clone(), a.clone(), signed.clone()])
        .await
        .unwrap();
    let got = store.hooks(app).await.unwrap();
    assert_eq!(got[2], signed);
    assert_eq!(got[2].secret().unwrap().expose(), "shh");
    let raw = backend.raw_contents().await;
    assert!(!raw.windows(20).any(|w| w == b"whsec_bmV3LXNpZ25pbm"));
    store
        .replace_hooks(app, vec![b.clone(), a.clone()])
        .await
        .unwrap();
    // New hooks start at the head: e1 is not theirs.
    assert_eq!(
        store.cursor(&a.id).await.unwrap().map(|c| c.seq),
        Some(Seq(1))
    );

    store
        .append(app, vec![event("e2", "message.new")])
        .await
        .unwrap();
    // Re-enabling hook-b starts it from the head; an unchanged hook keeps its cursor.
    let b_on = EventHook {
        enabled: true,
        ..b.clone()
    };
    store
        .replace_hooks(app, vec![a.clone(), b_on])
        .await
        .unwrap();
    assert_eq!(
        store.cursor(&a.id).await.unwrap().map(|c| c.seq),
        Some(Seq(1))
    );
    assert_eq!(
        store.cursor(&b.id).await.unwrap().map(|c| c.seq),
        Some(Seq(2))
    );

    // Deleting a hook deletes its pending work.
    let mut p = Progress::new(a.id.clone(), own(&*store, &a.id).await);
    p.retries.push(retry(2, 1, 0, "boom"));
    store.record_progress(p).await.unwrap();
    store.replace_hooks(app, vec![]).await.unwrap();
    assert!(store.hooks(app).await.unwrap().is_empty());
    assert_eq!(store.cursor(&a.id).await.unwrap().map(|c| c.seq), None);
    // Nothing comes back for it when a late worker reports.
    let mut late = Progress::new(a.id.clone(), Epoch(0));
    late.cursor = Some(Seq(2));
    late.retries.push(retry(2, 2, 0, "late"));
    store.record_progress(late).await.unwrap();
    assert!(
        store
            .due_retries(&a.id, Timestamp::now(), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A hook id belongs to one app.
    let other = store
        .create_app("b", "k2", &Secret::new("s"))
        .await
        .unwrap()
        .id;
    store.replace_hooks(app, vec![a.clone()]).await.unwrap();
    assert!(matches!(
        store.replace_hooks(other, vec![a.clone()]).await,
        Err(StoreError::HookIdTaken(_))
    ));
}

async fn append_is_idempotent_ordered_and_group_committed(backend: impl Backend) {
    let store = backend.open().await;
    let app = store
        .create_app("a", "k", &Secret::new("s"))
        .await
        .unwrap()
        .id;
    let mut appends = store.subscribe_appends();
    let first = store
        .append(app, vec![event("x", "a"), event("y", "b"), event("x", "a")])
        .await
        .unwrap();
    assert_eq!(first[0].seq, Some(Seq(1)));
    assert_eq!(first[1].seq, Some(Seq(2)));
    assert_eq!(
        first[2].seq, None,
        "same id in the same request is stored once"
    );
    assert!(appends.has_changed().unwrap());
    assert_eq!(*appends.borrow_and_update(), Seq(2));
    let again = store.append(app, vec![event("y", "b")]).await.unwrap();
    assert_eq!(again[0].seq, None, "same id later is not stored twice");

    // Many concurrent writers: every event gets its own sequence number.
    let tasks: Vec<_> = (0..50)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let batch = (0..20).map(|i| event(&format!("t{t}-{i}"), "c")).collect();
                store.append(app, batch).await.unwrap()
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap().into_iter().map(|a| a.seq.unwrap()));
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 1000);

    // Sequence numbers only increase; a skipped duplicate may leave a gap.
    let page = store.read_events(app, Seq(1), 3).await.unwrap();
    assert_eq!(page.len(), 3);
    assert!(page.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        (page[0].seq, &page[0].payload[..]),
        (Seq(2), &br#"{"id":"y","type":"b"}"#[..])
    );
    let head = *store.subscribe_appends().borrow();
    drop(page);
    drop(store);
    let reopened = backend.open().await;
    assert_eq!(
        reopened.read_events(app, Seq(0), 2000).await.unwrap().len(),
        1002
    );
    assert_eq!(*reopened.subscribe_appends().borrow(), head);
}

async fn progress_moves_cursor_retries_and_dead_letters_together(backend: impl Backend) {
    let store = backend.open().await;
    let (app, h) = app_with_hook(&*store).await;
    store
        .append(app, (1..=3).map(|i| event(&format!("e{i}"), "t")).collect())
        .await
        .unwrap();
    let events = store.read_events(app, Seq(0), 10).await.unwrap();
    let now = Timestamp::now();
    let epoch = own(&*store, &h.id).await;
    let mut p = Progress::new(h.id.clone(), epoch);
    p.cursor = Some(Seq(3));
    p.retries.push(RetryRecord {
        seq: Seq(2),
        attempts: 1,
        first_failed_at: now,
        next_attempt_at: now.saturating_add_millis(60_000),
        last_error: "throttled".into(),
    });
    p.dead_letters.push(DeadLetterRecord {
        event: events[2].clone(),
        reason: DeadLetterReason::TooLarge,
        attempts: 0,
        last_error: "300000 bytes".into(),
    });
    store.record_progress(p).await.unwrap();
    assert_eq!(
        store.cursor(&h.id).await.unwrap().map(|c| c.seq),
        Some(Seq(3))
    );
    assert!(
        store.due_retries(&h.id, now, 10).await.unwrap().is_empty(),
        "not due yet"
    );
    let later = now.saturating_add_millis(61_000);
    let due = store.due_retries(&h.id, later, 10).await.unwrap();
    assert_eq!(
        (due.len(), due[0].event.id.as_str(), due[0].attempts),
        (1, "e2", 1)
    );
    let retry_at = Some(later.millis() - 1000);
    assert_eq!(
        store
            .next_retry_after(&h.id, now)
            .await
            .unwrap()
            .map(|t| t.millis()),
        retry_at
    );
    assert_eq!(store.next_retry_after(&h.id, later).await.unwrap(), None);
    // A round tells when the first retry it did not take comes due: later, when none is due
    // yet; at once, when the due ones were cut at the limit.
    let cursor = store.cursor(&h.id).await.unwrap().unwrap();
    let round = |at: Timestamp, retries: usize| {
        let limits = RoundLimits {
            retries,
            events: 10,
        };
        store.round_input(&h.id, app, cursor, at, limits)
    };
    let input = round(now, 10).await.unwrap().unwrap();
    assert!(input.due.is_empty());
    assert_eq!(input.next_retry_at.map(|t| t.millis()), retry_at);
    let input = round(later, 1).await.unwrap().unwrap();
    assert_eq!((input.due.len(), input.next_retry_at), (1, Some(later)));
    let input = round(later, 10).await.unwrap().unwrap();
    assert_eq!((input.due.len(), input.next_retry_at), (1, None));

    // The cursor never moves back.
    let mut back = Progress::new(h.id.clone(), epoch);
    back.cursor = Some(Seq(1));
    back.retries_done.push(Seq(2));
    store.record_progress(back).await.unwrap();
    assert_eq!(
        store.cursor(&h.id).await.unwrap().map(|c| c.seq),
        Some(Seq(3))
    );
    assert!(
        store
            .due_retries(&h.id, later, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let dead = store
        .dead_letters(&of_app(&*store, app, &h.id).await, None, 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].event_id.as_str(), dead[0].reason),
        ("e3", DeadLetterReason::TooLarge)
    );
    assert!(
        store
            .dead_letters(&of_app(&*store, app, &h.id).await, Some(dead[0].id), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A caught-up hook's progress (`can_wait`) may be held for a commit to share, but it is always
/// recorded: alone when nothing else comes, and before the store closes.
async fn progress_that_can_wait_is_recorded_even_when_nothing_else_comes(backend: impl Backend) {
    let store = backend.open().await;
    let (app, h) = app_with_hook(&*store).await;
    store
        .append(app, vec![event("e1", "t"), event("e2", "t")])
        .await
        .unwrap();
    let epoch = own(&*store, &h.id).await;
    let caught_up = |to: i64| {
        let mut p = Progress::new(h.id.clone(), epoch);
        p.cursor = Some(Seq(to));
        p.can_wait = true;
        p
    };
    store.record_progress(caught_up(1)).await.unwrap();
    assert_eq!(
        store.cursor(&h.id).await.unwrap().map(|c| c.seq),
        Some(Seq(1))
    );

    let closing = async {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        store.close().await
    };
    let (recorded, closed) = tokio::join!(store.record_progress(caught_up(2)), closing);
    recorded.unwrap();
    closed.unwrap();
    drop(store);
    let store = backend.open().await;
    assert_eq!(
        store.cursor(&h.id).await.unwrap().map(|c| c.seq),
        Some(Seq(2))
    );
}

async fn garbage_collection_spares_what_a_hook_still_needs(backend: impl Backend) {
    let store = backend.open().await;
    let (app, h) = app_with_hook(&*store).await;
    store
        .append(app, (1..=4).map(|i| event(&format!("e{i}"), "t")).collect())
        .await
        .unwrap();
    let mut p = Progress::new(h.id.clone(), own(&*store, &h.id).await);
    p.cursor = Some(Seq(3));
    p.retries.push(retry(1, 1, 0, "x"));
    store.record_progress(p).await.unwrap();
    // Nothing is old enough yet.
    assert_eq!(
        store
            .collect_garbage(Timestamp::from_millis(0))
            .await
            .unwrap(),
        0
    );
    let future = Timestamp::now().saturating_add_millis(1000);
    assert_eq!(store.collect_garbage(future).await.unwrap(), 2, "e2 and e3");
    let left: Vec<String> = store
        .read_events(app, Seq(0), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        left,
        vec!["e1", "e4"],
        "e1 waits for a retry, e4 for the cursor"
    );
    // After GC a new event still gets a new sequence number.
    let appended = store.append(app, vec![event("e5", "t")]).await.unwrap();
    assert_eq!(appended[0].seq, Some(Seq(5)));
    let _ = HookId::generate();
}

async fn rewind_fences_rounds_started_before_it(backend: impl Backend) {
    let store = backend.open().await;
    let (app, h) = app_with_hook(&*store).await;
    let start = Timestamp::now();
    store
        .append(app, (1..=5).map(|i| event(&format!("e{i}"), "t")).collect())
        .await
        .unwrap();
    own(&*store, &h.id).await;
    let before = store.cursor(&h.id).await.unwrap().unwrap();
    let mut done = Progress::new(h.id.clone(), before.epoch);
    done.cursor = Some(Seq(5));
    store.record_progress(done).await.unwrap();

    // Rewind to the start: all 5 events are after the cursor again, under a new epoch.
    assert_eq!(
        store
            .rewind(&of_app(&*store, app, &h.id).await, start)
            .await
            .unwrap(),
        Some(5)
    );
    let after = store.cursor(&h.id).await.unwrap().unwrap();
    assert_eq!(after.seq, Seq(0));
    assert_ne!(after.epoch, before.epoch);
    // A round starting from a cursor of the old epoch starts from the rewound one instead.
    let limits = RoundLimits {
        retries: 10,
        events: 10,
    };
    let input = store
        .round_input(&h.id, app, before, Timestamp::now(), limits)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((input.cursor, input.events.len()), (after, 5));
    let ahead = Cursor {
        seq: Seq(3),
        epoch: after.epoch,
    };
    let input = store
        .round_input(&h.id, app, ahead, Timestamp::now(), limits)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(input.cursor, ahead, "the worker's own cursor, same epoch");
    let ids: Vec<_> = input.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["e4", "e5"]);
    // A round that began before the rewind cannot undo it.
    let mut stale = Progress::new(h.id.clone(), before.epoch);
    stale.cursor = Some(Seq(5));
    assert!(matches!(
        store.record_progress(stale).await,
        Err(StoreError::Stale(_))
    ));
    assert_eq!(store.cursor(&h.id).await.unwrap().unwrap().seq, Seq(0));

    let backlog = store.backlog(app, &h.id, 1_000_000).await.unwrap().unwrap();
    assert_eq!(
        (backlog.events_behind, backlog.retries, backlog.dead_letters),
        (5, 0, 0)
    );
    let capped = store.backlog(app, &h.id, 2).await.unwrap().unwrap();
    assert_eq!(capped.events_behind, 2, "counting stops at the cap");
    assert!(backlog.oldest_pending.is_some());
    let nope = HookId::try_from("nope".to_owned()).unwrap();
    assert!(store.app_hook(app, &nope).await.unwrap().is_none());
}

async fn pause_and_dead_letter_replay(backend: impl Backend) {
    let store = backend.open().await;
    let (app, h) = app_with_hook(&*store).await;
    assert!(
        store
            .set_paused(&of_app(&*store, app, &h.id).await, true)
            .await
            .unwrap()
    );
    assert!(store.all_hooks().await.unwrap()[0].paused);
    // A PATCH of the hook list keeps the operational state.
    store.replace_hooks(app, vec![h.clone()]).await.unwrap();
    assert!(store.all_hooks().await.unwrap()[0].paused);
    assert!(
        store
            .set_paused(&of_app(&*store, app, &h.id).await, false)
            .await
            .unwrap()
    );

    store
        .append(app, (1..=3).map(|i| event(&format!("e{i}"), "t")).collect())
        .await
        .unwrap();
    let events = store.read_events(app, Seq(0), 10).await.unwrap();
    let epoch = own(&*store, &h.id).await;
    let mut p = Progress::new(h.id.clone(), epoch);
    p.cursor = Some(events[2].seq);
    for e in &events[..2] {
        p.dead_letters.push(DeadLetterRecord {
            event: e.clone(),
            reason: DeadLetterReason::RetriesExhausted,
            attempts: 5,
            last_error: "HTTP 500".into(),
        });
    }
    store.record_progress(p).await.unwrap();
    // Retention deletes the dead-lettered events from the log; the dead letters keep a copy.
    let future = Timestamp::now().saturating_add_millis(1000);
    assert_eq!(store.collect_garbage(future).await.unwrap(), 3);

    let mut woken = store.subscribe_appends();
    woken.borrow_and_update();
    assert_eq!(
        store
            .replay_dead_letters(
                &of_app(&*store, app, &h.id).await,
                Some(vec!["e2".into(), "nope".into()])
            )
            .await
            .unwrap(),
        vec!["e2".to_owned()],
        "only the ids that were dead letters are replayed"
    );
    assert!(woken.has_changed().unwrap(), "workers are woken");
    let due = store
        .due_retries(&h.id, Timestamp::now(), 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].event.id.as_str(), due[0].attempts), ("e2", 0));
    assert_eq!(
        &due[0].event.payload[..],
        &events[1].payload[..],
        "restored from the dead letter"
    );
    let left = store
        .dead_letters(&of_app(&*store, app, &h.id).await, None, 10)
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|d| d.event_id.as_str()).collect::<Vec<_>>(),
        vec!["e1"]
    );
    assert_eq!(
        store
            .replay_dead_letters(&of_app(&*store, app, &h.id).await, None)
            .await
            .unwrap(),
        vec!["e1".to_owned()]
    );
    assert!(
        store
            .dead_letters(&of_app(&*store, app, &h.id).await, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.check_writable().await.unwrap();
}

async fn an_app_can_rotate_its_secret_and_be_deleted_with_all_it_holds(backend: impl Backend) {
    let store = backend.open().await;
    let (app, h) = app_with_hook(&*store).await;
    let other = store
        .create_app("b", "k2", &Secret::new("s2"))
        .await
        .unwrap()
        .id;
    store
        .replace_hooks(other, vec![hook("h2", true, &[])])
        .await
        .unwrap();
    store
        .append(app, vec![event("e1", "message.new")])
        .await
        .unwrap();
    store
        .append(other, vec![event("e1", "message.new")])
        .await
        .unwrap();

    store
        .set_api_secret(app, &Secret::new("rotated"), None)
        .await
        .unwrap();
    let stored = store.app_by_id(app).await.unwrap().unwrap();
    assert_eq!(stored.api_secret.expose(), "rotated");
    assert!(stored.previous_api_secret.is_none());
    // A rotation with a window keeps the replaced secret, until its end.
    let until = Timestamp::now().saturating_add_millis(60_000);
    store
        .set_api_secret(app, &Secret::new("rotated-again"), Some(until))
        .await
        .unwrap();
    let stored = store.app_by_id(app).await.unwrap().unwrap();
    assert_eq!(stored.api_secret.expose(), "rotated-again");
    let (previous, kept_until) = stored.previous_api_secret.unwrap();
    assert_eq!(previous.expose(), "rotated");
    assert_eq!(kept_until.millis(), until.millis());

    assert!(store.delete_app(app).await.unwrap());
    assert!(!store.delete_app(app).await.unwrap(), "already gone");
    assert!(store.app_by_key("k").await.unwrap().is_none());
    assert!(
        store.cursor(&h.id).await.unwrap().is_none(),
        "its hook is gone"
    );
    assert!(store.read_events(app, Seq(0), 10).await.unwrap().is_empty());
    // The other app keeps everything, and the freed hook id can be used again.
    assert_eq!(store.read_events(other, Seq(0), 10).await.unwrap().len(), 1);
    assert_eq!(store.hooks(other).await.unwrap().len(), 1);
    store
        .replace_hooks(other, vec![hook("h2", true, &[]), hook("h", true, &[])])
        .await
        .unwrap();
}

fn attempt(events: &[(i64, &str, u32)], outcome: AttemptOutcome, at: Timestamp) -> AttemptRecord {
    let failed = outcome != AttemptOutcome::Delivered;
    AttemptRecord {
        events: events
            .iter()
            .map(|(seq, id, attempt)| AttemptEvent {
                seq: Seq(*seq),
                id: (*id).into(),
                attempt: *attempt,
            })
            .collect(),
        at,
        duration_us: 1500,
        outcome,
        code: failed.then(|| "HTTP 500".into()),
        http_status: failed.then_some(500),
        response: failed.then(|| "try later".into()),
    }
}

async fn the_delivery_log_answers_per_hook_and_per_event(backend: impl Backend) {
    let store = backend.open().await;
    let (app, h) = app_with_hook(&*store).await;
    let other = store
        .create_app("b", "k2", &Secret::new("s2"))
        .await
        .unwrap()
        .id;
    let h2 = hook("h2", true, &[]);
    store.replace_hooks(other, vec![h2.clone()]).await.unwrap();
    store
        .append(app, (1..=3).map(|i| event(&format!("e{i}"), "t")).collect())
        .await
        .unwrap();
    store.append(other, vec![event("e1", "t")]).await.unwrap();
    let t0 = Timestamp::now();
    // Round 1: e1 and e3 delivered in one batch, e2 failed and went to the retry set.
    let mut p = Progress::new(h.id.clone(), own(&*store, &h.id).await);
    p.cursor = Some(Seq(3));
    p.retries.push(retry(2, 1, 60_000, "HTTP 500"));
    p.attempts.push(attempt(
        &[(1, "e1", 1), (3, "e3", 1)],
        AttemptOutcome::Delivered,
        t0,
    ));
    p.attempts
        .push(attempt(&[(2, "e2", 1)], AttemptOutcome::Retrying, t0));
    store.record_progress(p).await.unwrap();
    // Round 2: e2 delivered on its second attempt.
    let mut p = Progress::new(h.id.clone(), own(&*store, &h.id).await);
    p.retries_done.push(Seq(2));
    p.attempts.push(attempt(
        &[(2, "e2", 2)],
        AttemptOutcome::Delivered,
        t0.saturating_add_millis(10),
    ));
    store.record_progress(p).await.unwrap();

    let all = store
        .attempts(&of_app(&*store, app, &h.id).await, None, None, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(
        all[0].id > all[1].id && all[1].id > all[2].id,
        "newest first"
    );
    assert_eq!(
        all[2].record,
        attempt(
            &[(1, "e1", 1), (3, "e3", 1)],
            AttemptOutcome::Delivered,
            Timestamp::from_millis(t0.millis())
        )
    );
    let failed = store
        .attempts(
            &of_app(&*store, app, &h.id).await,
            Some(AttemptOutcome::Retrying),
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].record.response.as_deref(), Some("try later"));
    let page = store
        .attempts(&of_app(&*store, app, &h.id).await, None, Some(all[0].id), 1)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, all[1].id);

    // Per event: its attempts at this hook, oldest first; another app's hooks are not asked.
    let trace = store
        .event_trace(app, "e2", std::slice::from_ref(&h.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(trace.event.id, "e2");
    let at_h = &trace.hooks[0];
    assert_eq!(at_h.cursor, Seq(3));
    assert!(at_h.retry.is_none() && at_h.dead_letter.is_none());
    let outcomes: Vec<_> = at_h.attempts.iter().map(|a| a.record.outcome).collect();
    assert_eq!(
        outcomes,
        vec![AttemptOutcome::Retrying, AttemptOutcome::Delivered]
    );
    let e3 = store
        .event_trace(app, "e3", std::slice::from_ref(&h.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e3.hooks[0].attempts.len(),
        1,
        "found inside the batch's record"
    );
    assert!(
        store
            .event_trace(app, "nope", std::slice::from_ref(&h.id))
            .await
            .unwrap()
            .is_none()
    );
    let theirs = store
        .event_trace(other, "e1", std::slice::from_ref(&h2.id))
        .await
        .unwrap()
        .unwrap();
    assert!(
        theirs.hooks[0].attempts.is_empty(),
        "app b's e1 is another event"
    );

    // Bounded in size: the newest records of each hook are kept.
    assert_eq!(store.cap_delivery_log(2).await.unwrap(), 1);
    let kept: Vec<i64> = store
        .attempts(&of_app(&*store, app, &h.id).await, None, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(kept, vec![all[0].id, all[1].id]);
    assert_eq!(store.cap_delivery_log(2).await.unwrap(), 0);

    // Kept as long as the events: collected with them; gone with their hook.
    let future = Timestamp::now().saturating_add_millis(1000);
    store.collect_garbage(future).await.unwrap();
    assert!(
        store
            .attempts(&of_app(&*store, app, &h.id).await, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let mut p = Progress::new(h2.id.clone(), own(&*store, &h2.id).await);
    p.attempts.push(attempt(
        &[(4, "e1", 1)],
        AttemptOutcome::DestinationDown,
        Timestamp::now(),
    ));
    store.record_progress(p).await.unwrap();
    let theirs = store
        .attempts(&of_app(&*store, other, &h2.id).await, None, None, 10)
        .await
        .unwrap();
    assert_eq!(theirs.len(), 1);
    assert!(
        theirs[0].id > all[0].id,
        "the ids of collected records are not given out again"
    );
    let ah2 = of_app(&*store, other, &h2.id).await;
    store.replace_hooks(other, vec![]).await.unwrap();
    assert!(
        store
            .attempts(&ah2, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A hook is reached only through its own app.
    assert!(store.app_hook(app, &h2.id).await.unwrap().is_none());
}

/// Round after round, a hook's worker is told of new events, of the retries it scheduled once
/// they come due, of dead letters replayed, and of its hook being deleted: however the store
/// spares itself reads between rounds, nothing is missed.
async fn rounds_see_new_events_due_retries_replays_and_deletion(backend: impl Backend) {
    let store = backend.open().await;
    let (app, h) = app_with_hook(&*store).await;
    let epoch = own(&*store, &h.id).await;
    let limits = RoundLimits {
        retries: 10,
        events: 10,
    };
    let mut cursor = store.cursor(&h.id).await.unwrap().unwrap();
    let ids =
        |input: &RoundInput| -> Vec<String> { input.events.iter().map(|e| e.id.clone()).collect() };
    let now = Timestamp::now();
    let input = store
        .round_input(&h.id, app, cursor, now, limits)
        .await
        .unwrap()
        .unwrap();
    assert!(input.events.is_empty() && input.due.is_empty());

    store
        .append(app, vec![event("e1", "t"), event("e2", "t")])
        .await
        .unwrap();
    let input = store
        .round_input(&h.id, app, cursor, now, limits)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&input), ["e1", "e2"]);
    assert_eq!(
        input.events[1].payload.as_ref(),
        br#"{"id":"e2","type":"t"}"#
    );
    assert_eq!(
        input.events[1].created_at.nanos() % 1_000_000,
        0,
        "times as the log keeps them: milliseconds"
    );
    // e1 delivered, e2 failed: retried in 5 s.
    let mut p = Progress::new(h.id.clone(), epoch);
    p.cursor = Some(Seq(2));
    p.retries.push(retry(2, 1, 5_000, "HTTP 503"));
    store.record_progress(p).await.unwrap();
    cursor.seq = Seq(2);

    store.append(app, vec![event("e3", "t")]).await.unwrap();
    let input = store
        .round_input(&h.id, app, cursor, now, limits)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ids(&input), input.due.len()), (vec!["e3".to_owned()], 0));
    let retry_at = input.next_retry_at.expect("the scheduled retry").millis();
    assert!((now.millis() + 4_000..=now.millis() + 6_000).contains(&retry_at));
    let later = now.saturating_add_millis(6_000);
    let input = store
        .round_input(&h.id, app, cursor, later, limits)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(input.due.len(), 1, "due once its time comes");
    assert_eq!(input.due[0].event.id, "e2");

    // e2 and e3 dead-lettered; a replay makes them due at once.
    let mut p = Progress::new(h.id.clone(), epoch);
    p.cursor = Some(Seq(3));
    p.retries_done.push(Seq(2));
    for e in store.read_events(app, Seq(1), 2).await.unwrap() {
        p.dead_letters.push(DeadLetterRecord {
            event: e,
            reason: DeadLetterReason::RetriesExhausted,
            attempts: 3,
            last_error: "HTTP 500".into(),
        });
    }
    store.record_progress(p).await.unwrap();
    cursor.seq = Seq(3);
    let input = store
        .round_input(&h.id, app, cursor, later, limits)
        .await
        .unwrap()
        .unwrap();
    assert!(input.events.is_empty() && input.due.is_empty());
    let replayed = store
        .replay_dead_letters(&of_app(&*store, app, &h.id).await, None)
        .await
        .unwrap();
    assert_eq!(replayed.len(), 2);
    let input = store
        .round_input(&h.id, app, cursor, Timestamp::now(), limits)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(input.due.len(), 2, "replayed entries are due at once");

    store.replace_hooks(app, vec![]).await.unwrap();
    assert!(
        store
            .round_input(&h.id, app, cursor, later, limits)
            .await
            .unwrap()
            .is_none()
    );
}

contract_tests!(
    the_delivery_log_answers_per_hook_and_per_event,
    an_app_can_rotate_its_secret_and_be_deleted_with_all_it_holds,
    apps_keep_their_secrets_encrypted_and_survive_reopen,
    replace_hooks_orders_deletes_and_places_cursors,
    append_is_idempotent_ordered_and_group_committed,
    progress_moves_cursor_retries_and_dead_letters_together,
    progress_that_can_wait_is_recorded_even_when_nothing_else_comes,
    garbage_collection_spares_what_a_hook_still_needs,
    rewind_fences_rounds_started_before_it,
    rounds_see_new_events_due_retries_replays_and_deletion,
    pause_and_dead_letter_replay
);

/// A PostgreSQL error in a log line says what the server said, not only "db error".
#[tokio::test]
async fn postgres_errors_carry_the_servers_message() {
    let db = backends::Postgres::new().await;
    let error = db.sql().await.query("SELECT 1 / 0", &[]).await.unwrap_err();
    assert_eq!(
        hookrelay_store::StoreError::from(error).to_string(),
        "database error: division by zero (22012)"
    );
}

/// Leases exist only where several nodes share a store: PostgreSQL.
mod leases {
    use std::time::Duration;

    use hookrelay_core::{HookId, Secret};
    use hookrelay_store::{Lease, Progress, Seq, Store, StoreError};

    use super::backends::{KEY, Postgres};

    async fn owned(store: &dyn Store) -> Vec<HookId> {
        let mut ids: Vec<_> = store
            .lease_round()
            .await
            .unwrap()
            .unwrap()
            .owned
            .into_iter()
            .collect();
        ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        ids
    }

    /// Whether another transaction could lock the hook row `id` now (it takes the lock and
    /// lets it go at once).
    async fn lockable(db: &Postgres, id: &str) -> bool {
        let mut client = db.sql().await;
        let tx = client.transaction().await.unwrap();
        tx.query(
            "SELECT 1 FROM hooks WHERE id = $1 FOR UPDATE NOWAIT",
            &[&id],
        )
        .await
        .is_ok()
    }

    /// Waits until some statement of the database waits for a row lock.
    async fn until_one_waits_for_a_lock(db: &Postgres) {
        let sql = db.sql().await;
        for _ in 0..200 {
            let waiting: i64 = sql
                .query_one(
                    "SELECT COUNT(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("nothing waited for the held row");
    }

    /// Statements that lock several hook rows take them in id order, wherever the rows are
    /// stored. Otherwise a node's lease renewal and its group commit (which locks the hooks of
    /// the rounds it records) can each hold a row the other waits for: PostgreSQL ends one of
    /// them after a second, a failed renewal lets leases lapse, and sends cut short by a lapsed
    /// lease are sent again. Shown here: while the first row in id order is held elsewhere, a
    /// renewal, and then a release, waits for it holding none of the others.
    #[tokio::test]
    async fn renewals_and_releases_lock_hook_rows_in_id_order() {
        let db = Postgres::new().await;
        let node = db.node(KEY, "node-a", Duration::from_secs(30)).await;
        let app = node
            .create_app("a", "k", &Secret::new("s"))
            .await
            .unwrap()
            .id;
        let hooks = ["h3", "h2", "h1"].map(|id| super::hook(id, true, &[]));
        node.replace_hooks(app, hooks.to_vec()).await.unwrap();
        assert_eq!(owned(&*node).await.len(), 3);
        // Updated last to first, the rows are stored in the reverse of id order: a plain
        // scan meets the first id last.
        let sql = db.sql().await;
        let ids_by = async |order: &str| -> Vec<String> {
            let query = format!("SELECT id FROM hooks ORDER BY {order}");
            let rows = sql.query(&query, &[]).await.unwrap();
            rows.iter().map(|r| r.get(0)).collect()
        };
        let mut ids = ids_by("id").await;
        for id in ids.iter().rev() {
            sql.execute("UPDATE hooks SET position = position WHERE id = $1", &[id])
                .await
                .unwrap();
        }
        let stored = ids_by("ctid").await;
        ids.reverse();
        assert_eq!(
            stored, ids,
            "set-up: rows stored in the reverse of id order"
        );
        let (first, last) = (ids[2].clone(), ids[0].clone());

        let hook_ids: Vec<HookId> = hooks.iter().map(|h| h.id.clone()).collect();
        for operation in ["renewal", "release"] {
            let mut blocker = db.sql().await;
            let held = blocker.transaction().await.unwrap();
            held.query("SELECT 1 FROM hooks WHERE id = $1 FOR UPDATE", &[&first])
                .await
                .unwrap();
            let waiting = {
                let (node, hook_ids) = (node.clone(), hook_ids.clone());
                tokio::spawn(async move {
                    match operation {
                        "renewal" => node.renew_leases().await,
                        _ => node.release_leases(&hook_ids).await,
                    }
                })
            };
            until_one_waits_for_a_lock(&db).await;
            assert!(
                lockable(&db, &last).await,
                "the {operation} holds a later row while it waits for the first"
            );
            held.commit().await.unwrap();
            waiting.await.unwrap().unwrap();
        }
        assert_eq!(owned(&*node).await.len(), 3, "released, then taken again");
    }

    /// Notifications sent while a node's listening connection was down are lost: when it is
    /// back, the node wakes its workers to look again.
    #[tokio::test]
    async fn a_node_wakes_its_workers_when_its_listener_reconnects() {
        let db = Postgres::new().await;
        let node = db.node(KEY, "node-a", Duration::from_secs(30)).await;
        let sql = db.sql().await;
        let listening = "FROM pg_stat_activity
                         WHERE datname = current_database() AND query LIKE 'LISTEN%'";
        let count = async |select: &str| -> i64 {
            let query = format!("SELECT {select} {listening}");
            sql.query_one(&query, &[]).await.unwrap().get(0)
        };
        while count("count(*)").await == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The wake-up that follows its first LISTEN has come and gone.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut appended = node.subscribe_appends();
        appended.borrow_and_update();
        assert_eq!(
            count("count(pg_terminate_backend(pid))").await,
            1,
            "the listening connection"
        );
        let woken = tokio::time::timeout(Duration::from_secs(10), appended.changed()).await;
        assert!(matches!(woken, Ok(Ok(()))), "woken after reconnecting");
    }

    /// A node reads its own newest appends from memory, but never in place of another node's:
    /// an event another node numbered in between, or after, is always read.
    #[tokio::test]
    async fn a_node_reading_its_own_appends_still_sees_every_other_nodes() {
        let db = Postgres::new().await;
        let ttl = Duration::from_secs(30);
        let a = db.node(KEY, "node-a", ttl).await;
        let b = db.node(KEY, "node-b", ttl).await;
        let app = a.create_app("a", "k", &Secret::new("s")).await.unwrap().id;
        let append = async |node: &dyn Store, id: &str| {
            node.append(app, vec![super::event(id, "t")]).await.unwrap()[0]
                .seq
                .unwrap()
        };
        let ids = |events: Vec<hookrelay_store::StoredEvent>| -> Vec<String> {
            events.into_iter().map(|e| e.id).collect()
        };
        let e1 = append(&*a, "e1").await;
        append(&*b, "e2").await;
        let e3 = append(&*a, "e3").await;
        assert_eq!(ids(a.read_events(app, e1, 10).await.unwrap()), ["e2", "e3"]);
        assert_eq!(
            ids(a.read_events(app, Seq(0), 10).await.unwrap()),
            ["e1", "e2", "e3"]
        );

        // Once node b's newer append is heard of (its notification), node a reads it too.
        append(&*b, "e4").await;
        let mut read = Vec::new();
        for _ in 0..100 {
            read = ids(a.read_events(app, e3, 10).await.unwrap());
            if !read.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(read, ["e4"]);
    }

    #[tokio::test]
    async fn hooks_spread_over_nodes_and_move_when_one_stops() {
        let db = Postgres::new().await;
        let ttl = Duration::from_millis(1500);
        let a = db.node(KEY, "node-a", ttl).await;
        let b = db.node(KEY, "node-b", ttl).await;
        let app = a.create_app("a", "k", &Secret::new("s")).await.unwrap().id;
        let hooks: Vec<_> = (1..=4)
            .map(|i| super::hook(&format!("h{i}"), true, &[]))
            .collect();
        a.replace_hooks(app, hooks.clone()).await.unwrap();

        // Alone, node a takes every hook; node b joins and finds none free.
        assert_eq!(owned(&*a).await.len(), 4);
        assert!(owned(&*b).await.is_empty());
        // Node a learns its surplus, gives two back (after stopping their workers), b takes them.
        let round = a.lease_round().await.unwrap().unwrap();
        assert_eq!(round.surplus, 2);
        let give: Vec<HookId> = hooks[..2].iter().map(|h| h.id.clone()).collect();
        a.release_leases(&give).await.unwrap();
        assert_eq!(a.lease(&give[0]), Lease::None);
        assert_eq!(owned(&*b).await, give);
        assert!(b.lease(&give[0]).is_held());

        // Node a cannot record progress for a hook it gave away, even under the old epoch.
        let epoch = a.cursor(&give[0]).await.unwrap().unwrap().epoch;
        let mut p = Progress::new(give[0].clone(), epoch);
        p.cursor = Some(Seq(1));
        assert!(matches!(
            a.record_progress(p).await,
            Err(StoreError::NotOwner(_))
        ));

        // Node b stops renewing (paused, cut off): its leases lapse, locally first.
        tokio::time::sleep(ttl + Duration::from_millis(300)).await;
        assert!(!b.lease(&give[0]).is_held(), "b stops sending by itself");
        assert_eq!(owned(&*a).await.len(), 4, "a takes the lapsed hooks");
        let taken = a.cursor(&give[0]).await.unwrap().unwrap().epoch;
        assert!(taken > epoch, "a takeover bumps the epoch");
        let mut late = Progress::new(give[0].clone(), epoch);
        late.cursor = Some(Seq(1));
        assert!(matches!(
            b.record_progress(late).await,
            Err(StoreError::NotOwner(_))
        ));

        // Leaving gives everything back at once, and the other node takes it on its next round.
        a.leave().await.unwrap();
        assert_eq!(owned(&*b).await.len(), 4);
        let log = db
            .sql()
            .await
            .query(
                "SELECT node_id, action, COUNT(*) FROM lease_log GROUP BY 1, 2 ORDER BY 1, 2",
                &[],
            )
            .await
            .unwrap();
        let log: Vec<(String, String, i64)> =
            log.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        assert_eq!(
            log,
            vec![
                // 4 at first, then 4 again: its own 2 lapsed too while it did not renew.
                ("node-a".into(), "claimed".into(), 8),
                ("node-a".into(), "released".into(), 6),
                ("node-b".into(), "claimed".into(), 6),
            ]
        );
    }
}
