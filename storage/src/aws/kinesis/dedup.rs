//! The Kinesis log's dedup window: a marker per `tenant + entity + id` in the `control` table.
//!
//! Kinesis has no idempotent put, so the trait's dedup invariant ("the same `tenant + entity +
//! id` within the window is `Duplicate`, stored once") is kept beside the stream. Marker:
//! `pk = "{tenant}#dedup#{entity}"` (every key starts with its tenant), `sk = id`, attributes
//! `state` (`pending` | `committed`), `owner` (the claiming append), `ttl` (epoch seconds; the
//! table's TTL attribute, and compared by us too, because DynamoDB deletes expired items only
//! eventually) and, once committed, `position`.
//!
//! Protocol of one append:
//! 1. **claim** each event: a conditional update that succeeds only if no live marker exists
//!    (`attribute_not_exists(pk) OR ttl < now`), writing `pending` with a short lease
//!    ([`CLAIM_LEASE`]) as its `ttl`. A failed claim reads the marker: `committed` → the event
//!    is a `Duplicate`; `pending` → another append of the same event is in flight;
//! 2. PutRecords the claimed events (batch.rs);
//! 3. **commit** the stored ones: `committed`, their position, `ttl = now + window`;
//! 4. **release** the claimed but not stored ones (conditional delete, only if still ours), so
//!    the client's retry goes through at once.
//!
//! The failure windows, honestly:
//! - crash (or DynamoDB failure) between 2 and 3: the events are in the log, their markers stay
//!   `pending` until the lease runs out; a retry within the lease is refused as in flight
//!   ([`crate::Error::Unavailable`]), a retry after it is stored a second time. The window is
//!   the lease, not the dedup window, and it needs a crash in a millisecond-wide gap;
//! - crash between 1 and 2 or during 4: the lease blocks retries of those events for at most
//!   [`CLAIM_LEASE`], then they go through — delayed, never lost;
//! - PutRecords answered with an ambiguous failure (timeout after the service stored the
//!   records): the markers are released and the retry stores a second copy. Kinesis offers no
//!   way to ask whether a record landed; consumers must tolerate rare duplicates (see the
//!   report on issue 6);
//! - clocks: `ttl` compares the appenders' wall clocks; skew between ingest hosts shortens or
//!   lengthens the window by the skew.
//!
//! The lease must outlast one append's PutRecords retries, or a slow append could be overtaken
//! by a retry of itself: [`RetryPolicy::worst_case_backoff`](crate::aws::RetryPolicy) is
//! checked against it when the log is built.

use crate::aws::dynamodb::DynamoTables;
use crate::{Condition, Error, Key, Result, Table, TableName, TransactOp, Update, Value, WriteOp};
use shoal_schemas::{Event, Position};
use std::time::Duration;

/// How long a claim blocks other appends of the same event while its append runs.
pub(crate) const CLAIM_LEASE: Duration = Duration::from_secs(120);

const STATE: &str = "state";
const OWNER: &str = "owner";
const TTL: &str = crate::aws::init::TTL_ATTRIBUTE;
const POSITION: &str = "position";
const PENDING: &str = "pending";
const COMMITTED: &str = "committed";

/// The answer to a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Ours: append it.
    Claimed,
    /// Already stored within the window.
    Duplicate,
    /// Another append of the same event holds a live claim.
    InFlight,
}

/// The markers, in the control table.
#[derive(Clone, Debug)]
pub(crate) struct Dedup {
    tables: DynamoTables,
    window: Duration,
}

/// The marker key of an event.
pub(crate) fn marker_key(event: &Event) -> Key {
    Key::new(
        format!("{}#dedup#{}", event.tenant, event.entity),
        event.id.to_string(),
    )
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs() as f64
}

impl Dedup {
    pub(crate) fn new(tables: DynamoTables, window: Duration) -> Self {
        Dedup { tables, window }
    }

    /// Claims `event` for the append `owner` at `now` (epoch seconds).
    pub(crate) async fn claim(&self, event: &Event, owner: &str, now: f64) -> Result<Claim> {
        let key = marker_key(event);
        // Two rounds: a marker can expire between the failed claim and the read of it.
        for _ in 0..2 {
            let update = Update::new(key.clone())
                .set(STATE, Value::S(PENDING.to_owned()))
                .set(OWNER, Value::S(owner.to_owned()))
                .set(TTL, Value::N(now + seconds(CLAIM_LEASE)))
                .remove(POSITION)
                .when(Condition::Or(vec![
                    Condition::ItemNotExists,
                    Condition::Lt(TTL.to_owned(), Value::N(now)),
                ]));
            match self.tables.update(TableName::Control, update).await {
                Ok(_) => return Ok(Claim::Claimed),
                Err(Error::ConditionFailed) => {}
                Err(other) => return Err(other),
            }
            let Some(marker) = self.tables.get(TableName::Control, &key).await? else {
                continue;
            };
            let live = marker
                .get(TTL)
                .and_then(Value::as_f64)
                .is_some_and(|ttl| ttl >= now);
            if !live {
                continue;
            }
            return Ok(match marker.get(STATE).and_then(Value::as_str) {
                Some(COMMITTED) => Claim::Duplicate,
                _ => Claim::InFlight,
            });
        }
        Ok(Claim::InFlight)
    }

    /// Marks stored events committed, for the dedup window from `now`.
    pub(crate) async fn commit(&self, stored: &[(&Event, &Position)], now: f64) -> Result<()> {
        let ttl = now + seconds(self.window);
        let ops = stored
            .iter()
            .map(|(event, position)| WriteOp::Put {
                key: marker_key(event),
                item: [
                    (STATE.to_owned(), Value::S(COMMITTED.to_owned())),
                    (TTL.to_owned(), Value::N(ttl)),
                    (POSITION.to_owned(), Value::S(position.to_string())),
                ]
                .into_iter()
                .collect(),
            })
            .collect();
        self.tables.write(TableName::Control, ops).await
    }

    /// Deletes the claims of `owner` on events that were not stored. A claim that is no longer
    /// ours (our lease ran out and another append took it) is left alone.
    pub(crate) async fn release(&self, events: &[&Event], owner: &str) -> Result<()> {
        for event in events {
            let delete = TransactOp::Delete {
                table: TableName::Control,
                key: marker_key(event),
                condition: Some(Condition::Eq(OWNER.to_owned(), Value::S(owner.to_owned()))),
            };
            match self.tables.transact(vec![delete]).await {
                Ok(()) | Err(Error::ConditionFailed) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::kinesis::codec::tests::event;

    #[test]
    fn markers_are_keyed_under_the_tenant() {
        let sample = event(1);
        let key = marker_key(&sample);
        assert!(key.pk.starts_with("acme#dedup#"));
        assert_eq!(key.sk, sample.id.to_string());
    }
}
