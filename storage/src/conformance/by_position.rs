//! The log's reads of single events by position ([`EventLog::read_at`]), part of the
//! [`EventLog`] conformance suite: a log that keeps everything answers them exactly, any other
//! may refuse, but never with the wrong events.

use super::log::{by_shard, event, read_tenant, run_tenant};
use crate::{Error, EventLog};
use shoal_schemas::Position;
use std::sync::Arc;

/// `read_at` gives, for any positions of a shard in any order (repeats and several records
/// included), exactly the events a read of the stream finds there; a position past a record's
/// events is an invalid argument; no positions, no events. A log that does not keep everything
/// may refuse with [`Error::Unavailable`] instead.
pub async fn read_at_returns_the_events_at_those_positions(log: Arc<dyn EventLog>) {
    let tenant = run_tenant();
    // Three appends, so every shard holds several records.
    let mut total = 0;
    for round in 0..3u64 {
        let events: Vec<_> = (0..40)
            .map(|n| event(&tenant, &format!("e{}", n % 8), round * 100 + n))
            .collect();
        total += events.len();
        log.append(events).await.expect("append");
    }
    let reads = read_tenant(log.as_ref(), &tenant, total).await;
    for (shard, reads) in by_shard(&reads) {
        // Newest first with the first event asked twice: the order of the answer is the asked one.
        let mut asked: Vec<_> = reads.iter().rev().collect();
        asked.push(&reads[0]);
        let positions: Vec<Position> = asked.iter().map(|read| read.position.clone()).collect();
        match log.read_at(&shard, &positions).await {
            Ok(found) => {
                let found: Vec<_> = found
                    .iter()
                    .map(|event| (event.id, event.properties.clone()))
                    .collect();
                let expected: Vec<_> = asked
                    .iter()
                    .map(|read| (read.event.id, read.event.properties.clone()))
                    .collect();
                assert_eq!(found, expected, "events read by position on shard {shard}");
            }
            Err(Error::Unavailable(_)) if !log.keeps_everything() => return,
            Err(error) => panic!("read_at on shard {shard}: {error}"),
        }
        let empty = log.read_at(&shard, &[]).await.expect("read_at of nothing");
        assert!(empty.is_empty(), "no positions, no events");
        let mut past = reads[0].position.clone();
        past.index += 1_000_000;
        match log.read_at(&shard, &[past.clone()]).await {
            Err(Error::InvalidArgument(_)) => {}
            other => panic!("read_at {past} (no such event) answered {other:?}"),
        }
    }
}
