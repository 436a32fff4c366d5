//! Seeding a projection from the archive: a projection that starts from nothing (a new rules
//! version, a new projection) on a log that forgets (Kinesis keeps 24 h by default) cannot
//! replay history from the log. The `archive` projection holds every event with its shard and
//! position, so the worker of shard `s` replays the archive's events of `s` up to the archive's
//! checkpoint on `s`, in log order, then writes its checkpoint there and follows the log.
//!
//! How, and why it is exactly-once:
//! - the archive is read with a parallel scan ([`shoal_storage::Scan`]), one segment at a
//!   time: a segment holds whole partitions (every event of an entity, and every read-model
//!   item is fed by one entity), so sorting a segment's events of `s` by position gives each
//!   item its events in log order; one segment is in memory at a time;
//! - the folded items are written with the same per-item `pos` conditions as the live path, and
//!   the checkpoint goes last: a seed cut short by a crash starts over, and every item skips
//!   the events it already holds;
//! - only events at or before the archive's checkpoint are taken; later ones come from the log,
//!   which the archive was reading when it wrote that checkpoint.
//!
//! Cost: each shard's worker scans the whole archive (DynamoDB read capacity = shards × archive
//! size), in exchange for no coordination between workers beyond what leases already give.

use crate::checkpoint::{self, Checkpoint};
use crate::status::Live;
use crate::worker::fold_records;
use crate::{Projection, ProjectorConfig, Result, archive, flush};
use shoal_schemas::time::now_millis;
use shoal_schemas::{Event, Position, ShardId};
use shoal_storage::{LogRecord, Scan, Table, TableName};

/// Items read per scan page.
const SCAN_PAGE: usize = 1000;

/// Seeds `projection` on `shard` from the archive and returns the checkpoint written, or
/// `None` when the archive has nothing of the shard yet (the log is read from its start).
pub(crate) async fn from_archive(
    projection: &dyn Projection,
    tables: &dyn Table,
    shard: &ShardId,
    config: &ProjectorConfig,
    live: &Live,
) -> Result<Option<Checkpoint>> {
    let archived = checkpoint::load(tables, archive::NAME, 1, shard).await?;
    let Some(upto) = archived.position.clone() else {
        return Ok(None);
    };
    tracing::info!(projection = projection.name(), version = projection.version(), %shard, %upto, "seeding from the archive");
    let (mut applied, mut dead_letters) = (0u64, 0u64);
    for segment in 0..config.seed_segments {
        let mut events = read_segment(tables, shard, &upto, segment, config.seed_segments).await?;
        events.sort_by(|a, b| a.0.cmp(&b.0));
        for chunk in events.chunks(config.batch_events) {
            let records: Vec<LogRecord> = chunk
                .iter()
                .map(|(position, event)| LogRecord {
                    sequence: position.sequence.clone(),
                    first_index: position.index,
                    events: vec![event.clone()],
                })
                .collect();
            let folded = fold_records(
                projection,
                tables,
                shard,
                None,
                &records,
                config.poison_attempts,
                false,
            )
            .await?;
            flush::commit(tables, folded.flush).await?;
            applied += folded.applied;
            dead_letters += folded.dead_letters;
            live.record_applied(shard, folded.applied);
        }
    }
    let seeded = Checkpoint {
        shard: shard.clone(),
        position: Some(upto),
        last_timestamp: archived.last_timestamp,
        last_received_at: archived.last_received_at,
        events_applied: applied,
        dead_letters,
        updated_at: now_millis(),
        finished: archived.finished,
        // The stream after the archive's checkpoint is still to be read.
        reached_head: false,
    };
    let op = checkpoint::commit_op(projection.name(), projection.version(), &seeded)?;
    tables.transact(vec![op]).await?;
    tracing::info!(projection = projection.name(), %shard, applied, "seeded from the archive");
    Ok(Some(seeded))
}

/// The archived events of `shard` at or before `upto` in one scan segment.
async fn read_segment(
    tables: &dyn Table,
    shard: &ShardId,
    upto: &Position,
    segment: u32,
    total: u32,
) -> Result<Vec<(Position, Event)>> {
    let found = scan_segment(tables, segment, total, |from, position| {
        from == shard && position <= upto
    })
    .await?;
    Ok(found
        .into_iter()
        .map(|(_, position, event)| (position, event))
        .collect())
}

/// The archived events of one scan segment that `keep` selects, with their shards and
/// positions, in no particular order.
async fn scan_segment(
    tables: &dyn Table,
    segment: u32,
    total: u32,
    keep: impl Fn(&ShardId, &Position) -> bool,
) -> Result<Vec<(ShardId, Position, Event)>> {
    let mut found = Vec::new();
    let mut cursor = None;
    loop {
        let scan = Scan::segment(segment, total).limit(SCAN_PAGE).after(cursor);
        let page = tables.scan(TableName::Events, &scan).await?;
        for (key, item) in &page.items {
            match archive::decode_item(key, item)? {
                Some((shard, position, event)) => {
                    if keep(&shard, &position) {
                        found.push((shard, position, event));
                    }
                }
                None => {
                    tracing::warn!(pk = %key.pk, sk = %key.sk, "an archived event without its log position is left out of the seed");
                }
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(found),
        }
    }
}

/// Per shard, the archive's checkpoint: how far the archive holds each shard's history.
pub async fn archived_through(tables: &dyn Table) -> Result<Vec<Checkpoint>> {
    let mut found = checkpoint::list(tables, archive::NAME, 1).await?;
    found.retain(|checkpoint| checkpoint.position.is_some());
    Ok(found)
}

/// For consumers that seed from the archive outside the projector (the search index): the
/// archived events of one scan segment at or before `upto` of their shard (shards absent from
/// `upto` are left out). A segment holds whole partitions, so sorting its events by shard and
/// position gives every entity its events in log order.
pub async fn archived_segment(
    tables: &dyn Table,
    segment: u32,
    total: u32,
    upto: &std::collections::BTreeMap<ShardId, Position>,
) -> Result<Vec<(ShardId, Position, Event)>> {
    let mut found = scan_segment(tables, segment, total, |shard, position| {
        upto.get(shard).is_some_and(|upto| position <= upto)
    })
    .await?;
    found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Ok(found)
}
