//! Time-driven re-evaluation: every entity of a scores instance evaluated again as of the
//! clock, since windows slide and dates come closer with no new events.
//!
//! The sweep reads entities through the score index, so it touches each entity once, and writes
//! only those whose score, band or stage changed. Each write is conditional on the item's `pos`
//! being what the sweep read: if a projector worker applied an event meanwhile, that write
//! fails and the entity is left to the worker (which evaluated it as of that event) and to the
//! next sweep. A worker that loaded an item before the sweep wrote it may overwrite the sweep's
//! change with its own, newer evaluation; the sweep's history entry is then lost, never the
//! entity's events.
//!
//! The writes are relaxed (`Table::transact_relaxed`, no fsync of their own): what a sweep
//! writes follows from the stored facts and the clock, so a crash that undoes it only leaves
//! the change to the next sweep, which records it at its own time. A fsync per page of 1,000
//! entities was a third of a sweep in which every score moved.

use super::{Cause, Entry, Scores, decode_entry, encode_entry, state_key};
use crate::projection::POS_ATTRIBUTE;
use crate::{Projection, Result};
use serde::Serialize;
use shoal_storage::{Condition, Key, Table, TableName, TransactOp};
use std::future::Future;
use std::pin::Pin;

/// Entities read per index page and per `batch_get`.
const PAGE: usize = 1000;

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub entities: u64,
    pub changed: u64,
    /// Changes not written because a worker moved the entity meanwhile.
    pub skipped: u64,
}

/// Re-evaluates every entity of `scores` as of `now`.
///
/// The entities are listed first and processed after: an entity whose score changes moves in
/// the score index, and a walk that wrote while it paged would meet it again.
pub async fn sweep(tables: &dyn Table, scores: &Scores, now: i64) -> Result<SweepReport> {
    let version = scores.version();
    let tenant = scores.tenant();
    let mut entities = Vec::new();
    super::read::for_each(tables, version, tenant, |row| entities.push(row.entity)).await?;
    let mut report = SweepReport::default();
    // A page's writes go on while the next page is read and evaluated (the pages hold other
    // entities, so neither sees the other's writes): when most scores move, the writes are
    // most of a sweep's time.
    let mut writing: Option<Pin<Box<dyn Future<Output = Result<u64>> + Send + '_>>> = None;
    for chunk in entities.chunks(PAGE) {
        let read = evaluate_page(tables, scores, now, chunk);
        let (page, skipped) = match writing.take() {
            Some(write) => {
                let (page, skipped) = tokio::join!(read, write);
                (page?, skipped?)
            }
            None => (read.await?, 0),
        };
        report.skipped += skipped;
        report.entities += page.entities;
        report.changed += page.units.len() as u64;
        writing = Some(Box::pin(commit_units(tables, page.units)));
    }
    if let Some(write) = writing {
        report.skipped += write.await?;
    }
    Ok(report)
}

/// One page of entities read and evaluated: the write units of those whose score moved.
struct Page {
    entities: u64,
    units: Vec<Vec<TransactOp>>,
}

async fn evaluate_page(
    tables: &dyn Table,
    scores: &Scores,
    now: i64,
    chunk: &[String],
) -> Result<Page> {
    let version = scores.version();
    let tenant = scores.tenant();
    let keys: Vec<Key> = chunk
        .iter()
        .map(|entity| state_key(version, tenant, entity))
        .collect();
    let items = tables.batch_get(TableName::Views, &keys).await?;
    let mut page = Page {
        entities: 0,
        units: Vec::new(),
    };
    for ((key, entity), item) in keys.iter().zip(chunk).zip(items) {
        let Some(item) = item else { continue };
        page.entities += 1;
        let mut entry: Entry = decode_entry(key, Some(&item))?;
        if !entry.state.evaluate(scores.rules(), now, Cause::Clock) {
            continue;
        }
        let mut derived = Vec::new();
        let mut new_item = encode_entry(version, tenant, entity, &entry, &mut derived)?;
        let pos = item.get(POS_ATTRIBUTE).cloned();
        let condition = match &pos {
            Some(pos) => Condition::Eq(POS_ATTRIBUTE.into(), pos.clone()),
            None => Condition::NotExists(POS_ATTRIBUTE.into()),
        };
        if let Some(pos) = pos {
            new_item.insert(POS_ATTRIBUTE.into(), pos);
        }
        let mut unit = vec![TransactOp::Put {
            table: TableName::Views,
            key: key.clone(),
            item: new_item,
            condition: Some(condition),
        }];
        unit.extend(derived.into_iter().map(TransactOp::from));
        page.units.push(unit);
    }
    Ok(page)
}

/// Commits units packed into transactions; a transaction whose condition fails is retried unit
/// by unit, skipping the units whose own condition fails. Returns the units skipped.
async fn commit_units(tables: &dyn Table, units: Vec<Vec<TransactOp>>) -> Result<u64> {
    let mut skipped = 0;
    let batches = crate::flush::pack(units, crate::flush::Limits::of(tables))?;
    for batch in batches {
        let all: Vec<TransactOp> = batch.iter().flatten().cloned().collect();
        match tables.transact_relaxed(all).await {
            Ok(()) => {}
            Err(shoal_storage::Error::ConditionFailed) => {
                for unit in batch {
                    match tables.transact_relaxed(unit).await {
                        Ok(()) => {}
                        Err(shoal_storage::Error::ConditionFailed) => skipped += 1,
                        Err(error) => return Err(error.into()),
                    }
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(skipped)
}
