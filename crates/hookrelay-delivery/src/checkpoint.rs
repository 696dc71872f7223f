//! Progress recorded while a round still runs.
//!
//! A round may send many batches (up to `read_batch` events, several calls at once) and
//! settles once, when every call has come back. If the node dies before that, everything the
//! round sent is sent again by whoever delivers the hook next. A checkpoint moves the cursor
//! past the new events already delivered as soon as they are (once the round has run a few
//! milliseconds: a shorter round settles first), so after a crash only what was actually in
//! flight (or answered but not yet checkpointed) is sent again.
//!
//! A checkpoint records only what cannot be decided differently later: the cursor up to just
//! before the first new event not yet delivered (or held back, or too large, which the
//! settlement handles), and the retry entries delivered. Failures, dead letters, the delivery
//! log and the metrics wait for the round's settlement, which always comes after, and whose
//! cursor is never behind a checkpoint's (it stops only before events not delivered).

use std::collections::BTreeSet;

use hookrelay_core::HookId;
use hookrelay_store::{Epoch, Progress, Seq};

use crate::outcome::Outcome;
use crate::round::{Call, Plan};

#[derive(Debug)]
pub(crate) struct Checkpoints {
    hook: HookId,
    epoch: Epoch,
    /// New events in this round's batches not known to be delivered yet.
    undelivered: BTreeSet<Seq>,
    /// The first new event the round holds back or finds too large: the settlement decides
    /// about it, so no checkpoint passes it.
    floor: Option<Seq>,
    last_read: Option<Seq>,
    /// Where the cursor stands in the store (as of the round's start or its last checkpoint).
    recorded: Seq,
    /// Retry entries delivered since the last checkpoint.
    retries_done: Vec<Seq>,
}

impl Checkpoints {
    /// For a planned round (before its batches are taken out of the plan), with the hook's
    /// cursor where it stands.
    pub fn new(hook: &HookId, epoch: Epoch, cursor: Seq, plan: &Plan) -> Self {
        let is_new = |item: &&crate::round::Item| item.prior.is_none();
        let undelivered = plan
            .batches
            .iter()
            .flatten()
            .filter(is_new)
            .map(|i| i.event.seq)
            .collect();
        let floor = plan
            .held
            .iter()
            .chain(&plan.too_large)
            .filter(is_new)
            .map(|i| i.event.seq)
            .min();
        Self {
            hook: hook.clone(),
            epoch,
            undelivered,
            floor,
            last_read: plan.last_read,
            recorded: cursor,
            retries_done: Vec::new(),
        }
    }

    /// Takes note of a call's outcomes.
    pub fn answered(&mut self, call: &Call) {
        for (item, outcome) in call.items.iter().zip(&call.outcomes) {
            if *outcome != Outcome::Delivered {
                continue;
            }
            if item.prior.is_none() {
                self.undelivered.remove(&item.event.seq);
            } else {
                self.retries_done.push(item.event.seq);
            }
        }
    }

    /// The progress to record now, if there is any since the last checkpoint (it is then
    /// taken as recorded).
    pub fn take(&mut self) -> Option<Progress> {
        let stop = match (self.undelivered.first().copied(), self.floor) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let cursor = match stop {
            Some(seq) => Some(seq - 1),
            None => self.last_read,
        }
        .filter(|c| *c > self.recorded);
        if cursor.is_none() && self.retries_done.is_empty() {
            return None;
        }
        let mut progress = Progress::new(self.hook.clone(), self.epoch);
        if let Some(c) = cursor {
            self.recorded = c;
        }
        progress.cursor = cursor;
        progress.retries_done = std::mem::take(&mut self.retries_done);
        Some(progress)
    }
}

#[cfg(test)]
mod tests {
    use hookrelay_core::Timestamp;
    use hookrelay_store::StoredEvent;

    use super::*;
    use crate::outcome::CallError;
    use crate::round::Item;

    fn item(seq: i64, retry: bool) -> Item {
        Item {
            event: StoredEvent {
                seq: Seq(seq),
                id: format!("e{seq}"),
                event_type: "message.new".into(),
                cid: None,
                created_at: Timestamp::from_millis(1),
                payload: b"{}".to_vec().into(),
            },
            size: 2,
            prior: retry.then_some((1, Timestamp::from_millis(1))),
        }
    }

    fn call(items: Vec<Item>, outcome: Outcome) -> Call {
        let outcomes = vec![outcome; items.len()];
        Call {
            items,
            outcomes,
            at: Timestamp::from_millis(1),
            duration_us: 1,
        }
    }

    fn plan(batches: Vec<Vec<Item>>, last_read: i64) -> Plan {
        Plan {
            batches,
            last_read: Some(Seq(last_read)),
            ..Plan::default()
        }
    }

    fn checkpoints(plan: &Plan) -> Checkpoints {
        at_cursor(0, plan)
    }

    fn at_cursor(cursor: i64, plan: &Plan) -> Checkpoints {
        Checkpoints::new(
            &HookId::try_from("h".to_owned()).unwrap(),
            Epoch(1),
            Seq(cursor),
            plan,
        )
    }

    #[test]
    fn the_cursor_moves_over_the_delivered_prefix_only() {
        let plan = plan(
            vec![
                vec![item(1, false), item(2, false)],
                vec![item(4, false)],
                vec![item(5, false)],
            ],
            6,
        );
        let mut c = checkpoints(&plan);
        assert!(c.take().is_none(), "nothing delivered yet");
        // The second batch comes back first: the first is still in flight.
        c.answered(&call(vec![item(4, false)], Outcome::Delivered));
        assert!(c.take().is_none());
        c.answered(&call(
            vec![item(1, false), item(2, false)],
            Outcome::Delivered,
        ));
        // Up to just before 5 (3 was filtered out, 4 delivered).
        assert_eq!(c.take().unwrap().cursor, Some(Seq(4)));
        assert!(c.take().is_none(), "recorded once");
        c.answered(&call(vec![item(5, false)], Outcome::Delivered));
        // Everything delivered: up to the last event read, filtered ones included.
        assert_eq!(c.take().unwrap().cursor, Some(Seq(6)));
    }

    #[test]
    fn an_event_not_delivered_holds_the_cursor_for_the_settlement() {
        let plan = plan(
            vec![
                vec![item(1, false)],
                vec![item(2, false)],
                vec![item(3, false)],
            ],
            3,
        );
        let mut c = checkpoints(&plan);
        let error = CallError::new("InternalError", "m");
        c.answered(&call(vec![item(1, false)], Outcome::Delivered));
        c.answered(&call(vec![item(2, false)], Outcome::Retry(error)));
        c.answered(&call(vec![item(3, false)], Outcome::Delivered));
        // 2 failed: whether it waits in the log or becomes a retry entry is the settlement's call.
        assert_eq!(c.take().unwrap().cursor, Some(Seq(1)));
        assert!(c.take().is_none());
    }

    #[test]
    fn held_and_too_large_events_are_left_to_the_settlement() {
        let mut p = plan(vec![vec![item(1, false)], vec![item(5, false)]], 9);
        p.too_large = vec![item(3, false)];
        p.held = vec![item(7, false)];
        let mut c = checkpoints(&p);
        c.answered(&call(vec![item(1, false)], Outcome::Delivered));
        c.answered(&call(vec![item(5, false)], Outcome::Delivered));
        assert_eq!(c.take().unwrap().cursor, Some(Seq(2)));
    }

    #[test]
    fn delivered_retry_entries_are_checkpointed_without_moving_the_cursor() {
        // The cursor stands at 5; event 2 is a retry entry, 6 the first new event.
        let plan = plan(vec![vec![item(2, true)], vec![item(6, false)]], 9);
        let mut c = at_cursor(5, &plan);
        c.answered(&call(vec![item(2, true)], Outcome::Delivered));
        let progress = c.take().unwrap();
        assert_eq!(progress.cursor, None);
        assert_eq!(progress.retries_done, vec![Seq(2)]);
        assert!(c.take().is_none());
    }
}
