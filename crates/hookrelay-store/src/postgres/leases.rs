//! Hook leases: which node delivers which hook.
//!
//! A hook's row holds its lease (`owner`, `lease_until`, both set by the database clock). Each
//! node runs a lease round every `ttl / 4`:
//! 1. heartbeat: its `nodes` row says it is alive;
//! 2. renew: every lease it still holds is extended by `ttl`;
//! 3. share: with `live` nodes and `n` hooks, each node should hold `n / live` (the first
//!    `n % live` nodes in id order one more); a node below that takes hooks nobody holds (never
//!    leased, given back, or expired), a node above it is told its surplus, stops those workers
//!    and gives their leases back.
//!
//! A node that stops gives its leases back (`release`, `leave`) and tells every node, which
//! runs a round at once: planned moves take a database round trip, not a lease period. A node
//! that dies is noticed when its leases expire: its hooks move within `ttl` plus one round.
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

/// Says this node is alive and extends every lease it still holds. `started` is when the
/// round began: the local deadline counts from then.
pub async fn renew(
    c: &impl GenericClient,
    node: &str,
    ttl: Duration,
    started: Instant,
) -> Result<LocalLeases> {
    let ttl_ms = ttl.as_millis() as i64;
    c.execute(
        "INSERT INTO nodes (id, started_at, last_seen) VALUES ($1, now(), now())
         ON CONFLICT (id) DO UPDATE SET last_seen = now()",
        &[&node],
    )
    .await?;
    // Rows are locked in id order, as every statement locking several hook rows does.
    let owned = hook_ids(
        &c.query(
            "WITH mine AS (
                 SELECT id FROM hooks WHERE owner = $1 AND lease_until > now()
                 ORDER BY id FOR UPDATE)
             UPDATE hooks h SET lease_until = now() + $2::BIGINT * interval '1 millisecond'
             FROM mine WHERE h.id = mine.id RETURNING h.id",
            &[&node, &ttl_ms],
        )
        .await?,
    );
    Ok(LocalLeases {
        owned,
        valid_until: started + ttl.saturating_sub(margin(ttl)),
    })
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
    let LocalLeases {
        mut owned,
        valid_until,
    } = renew(c, node, ttl, started).await?;
    let counts = c
        .query_one(
            "SELECT (SELECT COUNT(*) FROM hooks),
                    ARRAY(SELECT id FROM nodes
                          WHERE last_seen > now() - $1::BIGINT * interval '1 millisecond' ORDER BY id),
                    (SELECT (EXTRACT(EPOCH FROM MIN(lease_until) - now()) * 1000)::BIGINT
                     FROM hooks WHERE owner <> $2 AND lease_until > now())",
            &[&ttl_ms, &node],
        )
        .await?;
    let (hooks, live): (i64, Vec<String>) = (counts.get(0), counts.get(1));
    let next_expiry: Option<i64> = counts.get(2);
    let share = share_of(hooks as usize, &live, node);
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
        valid_until,
    };
    let round = LeaseRound {
        owned,
        surplus,
        next_in: next_round(ttl, next_expiry),
        renew_every: ttl / 4,
    };
    Ok((round, local))
}

/// When the next round is due: a quarter of the lease length, or just after the first lease of
/// another node runs out (`expires_in_ms`) if that comes sooner. Live nodes renew long before
/// that; a dead node's hooks are then taken the moment they are free, not up to a round later.
fn next_round(ttl: Duration, expires_in_ms: Option<i64>) -> Duration {
    let expiry = expires_in_ms.map(|ms| Duration::from_millis(ms.max(0) as u64 + 20));
    expiry.map_or(ttl / 4, |e| e.min(ttl / 4))
}

/// How many hooks `node` should hold: an equal part of `hooks` for each live node, the
/// remainder going one each to the first nodes in id order. Every node computes the same
/// parts, so the shares add up to the number of hooks and a node that joins gets its part
/// (it would get nothing if every node aimed at the rounded-up average).
fn share_of(hooks: usize, live: &[String], node: &str) -> usize {
    let nodes = live.len().max(1);
    let rank = live.iter().position(|n| n == node).unwrap_or(live.len());
    hooks / nodes + usize::from(rank < hooks % nodes)
}

/// Gives leases back (their workers have stopped).
pub async fn release(c: &impl GenericClient, node: &str, hooks: &[&str]) -> Result<()> {
    c.execute(
        "WITH mine AS (
             SELECT id FROM hooks WHERE owner = $1 AND id = ANY($2) ORDER BY id FOR UPDATE),
         released AS (
             UPDATE hooks h SET owner = NULL, lease_until = NULL
             FROM mine WHERE h.id = mine.id RETURNING h.id, h.epoch)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{next_round, share_of};

    #[test]
    fn a_round_follows_the_first_foreign_lease_to_run_out() {
        let ttl = Duration::from_secs(2);
        assert_eq!(next_round(ttl, None), Duration::from_millis(500));
        // Renewed leases run out long after the next round.
        assert_eq!(next_round(ttl, Some(1_800)), Duration::from_millis(500));
        // A dead node's lease runs out sooner: the round comes just after.
        assert_eq!(next_round(ttl, Some(100)), Duration::from_millis(120));
    }

    fn nodes(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn shares_add_up_to_the_hooks_and_a_newcomer_gets_its_part() {
        let live = nodes(&["a", "b", "c", "d"]);
        let shares: Vec<usize> = live.iter().map(|n| share_of(5, &live, n)).collect();
        assert_eq!(shares, vec![2, 1, 1, 1]);
        let live = nodes(&["a", "b", "c"]);
        let shares: Vec<usize> = live.iter().map(|n| share_of(5, &live, n)).collect();
        assert_eq!(shares, vec![2, 2, 1]);
        assert_eq!(share_of(3, &nodes(&["a"]), "a"), 3);
        // Fewer hooks than nodes: some nodes hold none.
        let live = nodes(&["a", "b", "c"]);
        assert_eq!(share_of(1, &live, "c"), 0);
        assert_eq!(share_of(1, &live, "a"), 1);
    }
}
