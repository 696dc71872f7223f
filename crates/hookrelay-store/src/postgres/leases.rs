//! Hook leases: which node delivers which hook.
//!
//! A hook's row holds its lease (`owner`, `lease_until`, both set by the database clock). Each
//! node runs a lease round every `ttl / 4`:
//! 1. heartbeat: its `nodes` row says it is alive;
//! 2. renew: every lease it still holds is extended by `ttl`;
//! 3. share: with `live` nodes and `n` hooks, each node should hold `ceil(n / live)`; a node
//!    below that takes hooks nobody holds (never leased, given back, or expired), a node above
//!    it is told its surplus, stops those workers and gives their leases back.
//!
//! Taking a hook bumps its epoch, so whatever the previous owner still tries to record is
//! refused (`StoreError::NotOwner` / `Stale`). Locally, a node may send for a hook until the
//! start of its last successful renewal plus `ttl` minus a margin: that instant is never later
//! than the database's `lease_until`, so its sends stop before anyone else can start. A node
//! that cannot reach the database stops sending when that instant passes.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use hookrelay_core::HookId;
use tokio_postgres::GenericClient;

use crate::{LeaseRound, Result};

/// What a node knows of its own leases.
#[derive(Debug)]
pub struct LocalLeases {
    pub owned: HashSet<HookId>,
    /// Sends may start until then.
    pub valid_until: Instant,
}

impl Default for LocalLeases {
    fn default() -> Self {
        Self {
            owned: HashSet::new(),
            valid_until: Instant::now(),
        }
    }
}

/// Safety margin taken off the local deadline (clock rate differences, scheduling delays).
pub fn margin(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_millis(200))
}

fn hook_ids(rows: &[tokio_postgres::Row]) -> HashSet<HookId> {
    rows.iter()
        .filter_map(|r| HookId::try_from(r.get::<_, String>(0)).ok())
        .collect()
}

/// One lease round (see the module documentation). `started` is when it began: the local
/// deadline counts from then.
pub async fn round(
    c: &impl GenericClient,
    node: &str,
    ttl: Duration,
    started: Instant,
) -> Result<(LeaseRound, LocalLeases)> {
    let ttl_ms = ttl.as_millis() as i64;
    c.execute(
        "INSERT INTO nodes (id, started_at, last_seen) VALUES ($1, now(), now())
         ON CONFLICT (id) DO UPDATE SET last_seen = now()",
        &[&node],
    )
    .await?;
    let mut owned = hook_ids(
        &c.query(
            "UPDATE hooks SET lease_until = now() + $2::BIGINT * interval '1 millisecond'
             WHERE owner = $1 AND lease_until > now() RETURNING id",
            &[&node, &ttl_ms],
        )
        .await?,
    );
    let counts = c
        .query_one(
            "SELECT (SELECT COUNT(*) FROM nodes WHERE last_seen > now() - $1::BIGINT * interval '1 millisecond'),
                    (SELECT COUNT(*) FROM hooks)",
            &[&ttl_ms],
        )
        .await?;
    let (live, hooks): (i64, i64) = (counts.get(0), counts.get(1));
    let share = (hooks as usize).div_ceil(live.max(1) as usize);
    if owned.len() < share {
        let claimed = c
            .query(
                "WITH free AS (
                     SELECT id FROM hooks
                     WHERE owner IS NULL OR lease_until IS NULL OR lease_until <= now()
                     ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED),
                 taken AS (
                     UPDATE hooks h SET owner = $1, lease_until = now() + $2::BIGINT * interval '1 millisecond',
                                        epoch = h.epoch + 1
                     FROM free WHERE h.id = free.id RETURNING h.id, h.epoch)
                 INSERT INTO lease_log (hook_id, node_id, epoch, action)
                 SELECT id, $1, epoch, 'claimed' FROM taken RETURNING hook_id",
                &[&node, &ttl_ms, &((share - owned.len()) as i64)],
            )
            .await?;
        let claimed = hook_ids(&claimed);
        for id in &claimed {
            tracing::info!(hook_id = %id, node, "hook lease taken");
        }
        owned.extend(claimed);
    }
    // Old nodes' rows are kept a while for operators, then cleaned up.
    c.execute(
        "DELETE FROM nodes WHERE last_seen < now() - interval '1 day'",
        &[],
    )
    .await?;
    let surplus = owned.len().saturating_sub(share);
    let local = LocalLeases {
        owned: owned.clone(),
        valid_until: started + ttl.saturating_sub(margin(ttl)),
    };
    let round = LeaseRound {
        owned,
        surplus,
        next_in: ttl / 4,
    };
    Ok((round, local))
}

/// Gives leases back (their workers have stopped).
pub async fn release(c: &impl GenericClient, node: &str, hooks: &[&str]) -> Result<()> {
    c.execute(
        "WITH released AS (
             UPDATE hooks SET owner = NULL, lease_until = NULL
             WHERE owner = $1 AND id = ANY($2) RETURNING id, epoch)
         INSERT INTO lease_log (hook_id, node_id, epoch, action)
         SELECT id, $1, epoch, 'released' FROM released",
        &[&node, &hooks],
    )
    .await?;
    Ok(())
}

/// The node stops: gives back every lease and leaves the live set at once, so the others take
/// its hooks without waiting for the leases to expire.
pub async fn leave(c: &impl GenericClient, node: &str) -> Result<()> {
    let owned: Vec<String> = c
        .query("SELECT id FROM hooks WHERE owner = $1", &[&node])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let owned: Vec<&str> = owned.iter().map(String::as_str).collect();
    release(c, node, &owned).await?;
    c.execute("DELETE FROM nodes WHERE id = $1", &[&node])
        .await?;
    Ok(())
}
