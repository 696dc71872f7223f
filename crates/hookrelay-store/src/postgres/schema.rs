//! The PostgreSQL schema, as ordered migrations recorded in `hookrelay_schema`. Several nodes
//! may start at once: an advisory lock lets one of them migrate while the others wait.
//! A migration is never edited once released, only followed by a new one.

use tokio_postgres::Client;

use crate::Result;

/// Key of the advisory lock held while migrating ("hookrelay" in ASCII, shortened).
const MIGRATION_LOCK: i64 = 0x686f_6f6b_7265;

const MIGRATIONS: &[&str] = &[
    // 1: the same tables as the SQLite store, plus what several nodes need: the log head row,
    // hook leases (`owner`, `lease_until`), live nodes and a record of lease changes.
    r#"
    CREATE TABLE apps (
        id               BIGSERIAL PRIMARY KEY,
        name             TEXT   NOT NULL,
        api_key          TEXT   NOT NULL UNIQUE,
        api_secret       BYTEA  NOT NULL,            -- encrypted (crypto.rs)
        settings         TEXT   NOT NULL DEFAULT '{}',
        settings_secrets BYTEA,                      -- encrypted JSON object of legacy secrets
        created_ms       BIGINT NOT NULL,
        updated_ms       BIGINT NOT NULL
    );
    CREATE TABLE hooks (
        id          TEXT    PRIMARY KEY,
        app_id      BIGINT  NOT NULL REFERENCES apps(id),
        position    INTEGER NOT NULL,
        enabled     BOOLEAN NOT NULL,
        spec        TEXT    NOT NULL,                -- EventHook as JSON, without its secret
        secret      BYTEA,                           -- encrypted AWS secret of `keys` auth
        cursor      BIGINT  NOT NULL,                -- every event of the app at or below is done
        paused      BOOLEAN NOT NULL DEFAULT false,
        epoch       BIGINT  NOT NULL DEFAULT 0,      -- bumped by a rewind and by a lease takeover
        owner       TEXT,                            -- node holding the delivery lease
        lease_until TIMESTAMPTZ
    );
    CREATE INDEX hooks_by_app ON hooks(app_id, position);
    CREATE INDEX hooks_by_owner ON hooks(owner);
    -- The highest sequence number given out. Appends take it with a row lock held until
    -- commit, so sequence numbers become visible in order: a reader that has seen N can never
    -- later find a new event below N (which a plain sequence, allocated before commit, allows).
    CREATE TABLE log_head (
        singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
        seq       BIGINT  NOT NULL
    );
    INSERT INTO log_head (seq) VALUES (0);
    CREATE TABLE events (
        app_id     BIGINT NOT NULL,
        seq        BIGINT NOT NULL,
        event_id   TEXT   NOT NULL,
        type       TEXT   NOT NULL,
        cid        TEXT,
        created_ms BIGINT NOT NULL,
        payload    BYTEA  NOT NULL,
        PRIMARY KEY (app_id, seq)
    );
    CREATE UNIQUE INDEX events_by_id ON events(app_id, event_id);
    CREATE TABLE retries (
        hook_id         TEXT    NOT NULL,
        seq             BIGINT  NOT NULL,
        attempts        INTEGER NOT NULL,
        first_failed_ms BIGINT  NOT NULL,
        next_attempt_ms BIGINT  NOT NULL,
        last_error      TEXT    NOT NULL,
        PRIMARY KEY (hook_id, seq)
    );
    CREATE INDEX retries_due ON retries(hook_id, next_attempt_ms);
    CREATE INDEX retries_by_seq ON retries(seq);
    CREATE TABLE dead_letters (
        id               BIGSERIAL PRIMARY KEY,
        hook_id          TEXT    NOT NULL,
        seq              BIGINT  NOT NULL,
        event_id         TEXT    NOT NULL,
        type             TEXT    NOT NULL,
        cid              TEXT,
        event_created_ms BIGINT  NOT NULL,
        payload          BYTEA   NOT NULL,          -- kept: the event may be gone from the log
        reason           TEXT    NOT NULL,
        attempts         INTEGER NOT NULL,
        last_error       TEXT    NOT NULL,
        created_ms       BIGINT  NOT NULL
    );
    CREATE INDEX dead_letters_by_hook ON dead_letters(hook_id, id);
    CREATE TABLE nodes (
        id         TEXT        PRIMARY KEY,
        started_at TIMESTAMPTZ NOT NULL,
        last_seen  TIMESTAMPTZ NOT NULL
    );
    -- Every lease a node took or gave back, for operators and for the multi-node tests.
    CREATE TABLE lease_log (
        id      BIGSERIAL   PRIMARY KEY,
        hook_id TEXT        NOT NULL,
        node_id TEXT        NOT NULL,
        epoch   BIGINT      NOT NULL,
        action  TEXT        NOT NULL,               -- 'claimed' or 'released'
        at      TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    "#,
    // 2: hook ids are per app: inside the server an id carries its app (`<app id>-<id>`), in
    // the hook row, its spec, and the retry and dead-letter rows that refer to it.
    r#"
    UPDATE retries r SET hook_id = h.app_id || '-' || h.id FROM hooks h WHERE h.id = r.hook_id;
    UPDATE dead_letters d SET hook_id = h.app_id || '-' || h.id FROM hooks h WHERE h.id = d.hook_id;
    UPDATE hooks SET spec = jsonb_set(spec::jsonb, '{id}', to_jsonb(app_id || '-' || id))::text,
                     id = app_id || '-' || id;
    "#,
    // 3: a rotated API secret keeps authenticating for a window.
    r#"
    ALTER TABLE apps ADD COLUMN previous_api_secret BYTEA;
    ALTER TABLE apps ADD COLUMN previous_secret_until_ms BIGINT;
    "#,
    // 4: the delivery log, as in the SQLite store (one row per call and outcome).
    r#"
    CREATE TABLE attempts (
        id          BIGSERIAL PRIMARY KEY,
        hook_id     TEXT    NOT NULL,
        first_seq   BIGINT  NOT NULL,
        last_seq    BIGINT  NOT NULL,
        events      TEXT    NOT NULL,
        at_ms       BIGINT  NOT NULL,
        duration_us BIGINT  NOT NULL,
        outcome     TEXT    NOT NULL,
        code        TEXT,
        http_status INTEGER,
        response    TEXT
    );
    CREATE INDEX attempts_by_hook ON attempts(hook_id, id);
    CREATE INDEX attempts_by_seq ON attempts(hook_id, first_seq);
    CREATE INDEX attempts_by_time ON attempts(at_ms);
    "#,
];

/// Runs the migrations this database has not seen yet, each in its own transaction. Returns how
/// many ran.
pub async fn migrate(client: &mut Client) -> Result<usize> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = run_pending(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    result
}

async fn run_pending(client: &mut Client) -> Result<usize> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS hookrelay_schema (version INTEGER NOT NULL)")
        .await?;
    let done: i32 = client
        .query_opt("SELECT version FROM hookrelay_schema", &[])
        .await?
        .map_or(0, |r| r.get(0));
    let mut ran = 0;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        let version = i as i32 + 1;
        tx.execute("DELETE FROM hookrelay_schema", &[]).await?;
        tx.execute(
            "INSERT INTO hookrelay_schema (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tx.commit().await?;
        ran += 1;
    }
    Ok(ran)
}
