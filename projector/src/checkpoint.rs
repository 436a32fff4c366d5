//! Checkpoints: how far each projection has applied each shard.
//!
//! Layout (`control` table): PK `_projector#checkpoint#<projection>#v<version>`, SK `<shard>`.
//! Attributes: `position` (text `seq:index`), `pos` (its sortable form), `last_timestamp` and
//! `last_received_at` of the last applied event (freshness), `events_applied` and
//! `dead_letters` (cumulative counts), `updated_at`.
//!
//! Invariants:
//! - a checkpoint is written only in the same flush as the effects it covers (embedded: the same
//!   transaction; DynamoDB: after them);
//! - it never moves backwards: the write is conditional on the stored `pos` being absent or
//!   smaller, so a stale worker (or a replayed flush) fails instead of rewinding it;
//! - the counts are cumulative and advance only with the checkpoint, so a replayed batch does
//!   not count twice.

use crate::keys::checkpoint_pk;
use crate::projection::POS_ATTRIBUTE;
use crate::{Error, Result};
use serde::Serialize;
use shoal_schemas::{Position, ShardId};
use shoal_storage::{Condition, Item, Key, Query, Table, TableName, TransactOp, Value};

/// Where a projection stands on one shard.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Checkpoint {
    pub shard: ShardId,
    /// The last event applied (or dead-lettered); `None`: nothing yet.
    #[serde(serialize_with = "serialize_position")]
    pub position: Option<Position>,
    /// Event time of the last applied event (ms).
    pub last_timestamp: Option<i64>,
    /// `received_at` of the last applied event (ms): how fresh the read models are.
    pub last_received_at: Option<i64>,
    pub events_applied: u64,
    pub dead_letters: u64,
    /// When this checkpoint was written (ms).
    pub updated_at: i64,
    /// The shard is closed (split or merged) and every event in it was applied: its children
    /// may start.
    pub finished: bool,
    /// A worker has read this shard to its head at least once. Stored, so that a process can
    /// tell a version has caught up on shards other processes work (leases).
    pub reached_head: bool,
}

fn serialize_position<S: serde::Serializer>(
    position: &Option<Position>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    match position {
        Some(position) => serializer.serialize_some(&position.to_string()),
        None => serializer.serialize_none(),
    }
}

fn key(projection: &str, version: u32, shard: &ShardId) -> Key {
    Key::new(checkpoint_pk(projection, version), shard.clone())
}

fn number(item: &Item, name: &str) -> Option<f64> {
    item.get(name).and_then(Value::as_f64)
}

fn decode(shard: ShardId, item: &Item, key: &Key) -> Result<Checkpoint> {
    let position = match item.get("position").and_then(Value::as_str) {
        Some(text) => {
            Some(Position::parse(text).map_err(|error| Error::corrupt(key, error.to_string()))?)
        }
        None => None,
    };
    Ok(Checkpoint {
        shard,
        position,
        last_timestamp: number(item, "last_timestamp").map(|n| n as i64),
        last_received_at: number(item, "last_received_at").map(|n| n as i64),
        events_applied: number(item, "events_applied").unwrap_or(0.0) as u64,
        dead_letters: number(item, "dead_letters").unwrap_or(0.0) as u64,
        updated_at: number(item, "updated_at").unwrap_or(0.0) as i64,
        finished: matches!(item.get(FINISHED), Some(Value::Bool(true))),
        reached_head: matches!(item.get(REACHED_HEAD), Some(Value::Bool(true))),
    })
}

/// The stored checkpoint of one shard (the start of the shard when there is none).
pub async fn load(
    tables: &dyn Table,
    projection: &str,
    version: u32,
    shard: &ShardId,
) -> Result<Checkpoint> {
    let key = key(projection, version, shard);
    match tables.get(TableName::Control, &key).await? {
        Some(item) => decode(shard.clone(), &item, &key),
        None => Ok(Checkpoint {
            shard: shard.clone(),
            ..Checkpoint::default()
        }),
    }
}

/// Every stored checkpoint of a projection version, by shard id.
pub async fn list(tables: &dyn Table, projection: &str, version: u32) -> Result<Vec<Checkpoint>> {
    let mut query = Query::partition(checkpoint_pk(projection, version));
    let mut found = Vec::new();
    loop {
        let page = tables.query(TableName::Control, &query).await?;
        for (key, item) in &page.items {
            found.push(decode(key.sk.clone(), item, key)?);
        }
        match page.next {
            Some(next) => query = query.after(Some(next)),
            None => return Ok(found),
        }
    }
}

/// The conditional put that moves a checkpoint forward (and only forward).
pub fn commit_op(projection: &str, version: u32, checkpoint: &Checkpoint) -> Result<TransactOp> {
    let Some(position) = &checkpoint.position else {
        return Err(Error::InvalidArgument(
            "a checkpoint to commit needs a position".into(),
        ));
    };
    let sortable = position.sortable();
    let mut item = Item::new();
    item.insert("position".into(), Value::S(position.to_string()));
    item.insert(POS_ATTRIBUTE.into(), Value::S(sortable.clone()));
    if let Some(timestamp) = checkpoint.last_timestamp {
        item.insert("last_timestamp".into(), Value::N(timestamp as f64));
    }
    if let Some(received_at) = checkpoint.last_received_at {
        item.insert("last_received_at".into(), Value::N(received_at as f64));
    }
    item.insert(
        "events_applied".into(),
        Value::N(checkpoint.events_applied as f64),
    );
    item.insert(
        "dead_letters".into(),
        Value::N(checkpoint.dead_letters as f64),
    );
    item.insert("updated_at".into(), Value::N(checkpoint.updated_at as f64));
    if checkpoint.finished {
        item.insert(FINISHED.into(), Value::Bool(true));
    }
    if checkpoint.reached_head {
        item.insert(REACHED_HEAD.into(), Value::Bool(true));
    }
    Ok(TransactOp::Put {
        table: TableName::Control,
        key: key(projection, version, &checkpoint.shard),
        item,
        condition: Some(forward_only(sortable)),
    })
}

const FINISHED: &str = "finished";
const REACHED_HEAD: &str = "reached_head";

/// Stores the flags of a checkpoint that has not moved (`finished` once a closed shard was read
/// to its end, `reached_head` the first time a worker reads to the head): the same checkpoint
/// with its flags, on condition that nobody moved it meanwhile.
pub fn mark_op(projection: &str, version: u32, checkpoint: &Checkpoint) -> Result<TransactOp> {
    let key = key(projection, version, &checkpoint.shard);
    let Some(position) = &checkpoint.position else {
        // A shard that never held an event: nothing applied, nothing to race.
        let mut item = Item::new();
        if checkpoint.finished {
            item.insert(FINISHED.into(), Value::Bool(true));
        }
        if checkpoint.reached_head {
            item.insert(REACHED_HEAD.into(), Value::Bool(true));
        }
        item.insert("updated_at".into(), Value::N(checkpoint.updated_at as f64));
        return Ok(TransactOp::Put {
            table: TableName::Control,
            key,
            item,
            condition: Some(Condition::NotExists(POS_ATTRIBUTE.into())),
        });
    };
    let TransactOp::Put { item, .. } = commit_op(projection, version, checkpoint)? else {
        return Err(Error::InvalidArgument(
            "a checkpoint commit is a put".into(),
        ));
    };
    Ok(TransactOp::Put {
        table: TableName::Control,
        key,
        item,
        condition: Some(Condition::Eq(
            POS_ATTRIBUTE.into(),
            Value::S(position.sortable()),
        )),
    })
}

/// `pos` absent, or older than `sortable`.
pub(crate) fn forward_only(sortable: String) -> Condition {
    Condition::Or(vec![
        Condition::NotExists(POS_ATTRIBUTE.into()),
        Condition::Lt(POS_ATTRIBUTE.into(), Value::S(sortable)),
    ])
}
