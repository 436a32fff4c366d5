//! Dead letters: events a projection could not apply, kept so they can be inspected and
//! re-driven.
//!
//! Layout (`control` table): PK `_projector#deadletter#<projection>#v<version>`, SK
//! `<shard>#<sortable position>`. Attributes: `shard`, `position`, `after` (the position a read
//! must start after to get this event first: the previous event's, absent at the shard's start),
//! `event_id`, `tenant`, `projection`, `version`, `error`, `attempts`, `time`.
//!
//! Invariants: a dead letter is written in the same flush as the checkpoint that moves past its
//! event (so an event is either applied, dead-lettered, or still ahead of the checkpoint), and
//! its key is a function of the event's position, so a replayed flush rewrites the same item.

use crate::keys::dead_letter_pk;
use crate::{Error, Result};
use serde::Serialize;
use shoal_schemas::{Position, ShardId};
use shoal_storage::{Item, Key, Query, Table, TableName, TransactOp, Value};

/// One dead-lettered event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeadLetter {
    pub projection: String,
    pub version: u32,
    pub shard: ShardId,
    #[serde(serialize_with = "as_text")]
    pub position: Position,
    #[serde(serialize_with = "as_optional_text")]
    pub after: Option<Position>,
    pub event_id: String,
    pub tenant: String,
    pub error: String,
    pub attempts: u32,
    /// When it was dead-lettered (ms).
    pub time: i64,
}

fn as_text<S: serde::Serializer>(
    position: &Position,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&position.to_string())
}

fn as_optional_text<S: serde::Serializer>(
    position: &Option<Position>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match position {
        Some(position) => s.serialize_some(&position.to_string()),
        None => s.serialize_none(),
    }
}

impl DeadLetter {
    pub fn key(&self) -> Key {
        letter_key(&self.projection, self.version, &self.shard, &self.position)
    }

    pub(crate) fn put_op(&self) -> TransactOp {
        let mut item = Item::new();
        item.insert("shard".into(), Value::S(self.shard.clone()));
        item.insert("position".into(), Value::S(self.position.to_string()));
        if let Some(after) = &self.after {
            item.insert("after".into(), Value::S(after.to_string()));
        }
        item.insert("event_id".into(), Value::S(self.event_id.clone()));
        item.insert("tenant".into(), Value::S(self.tenant.clone()));
        item.insert("projection".into(), Value::S(self.projection.clone()));
        item.insert("version".into(), Value::N(f64::from(self.version)));
        item.insert("error".into(), Value::S(self.error.clone()));
        item.insert("attempts".into(), Value::N(f64::from(self.attempts)));
        item.insert("time".into(), Value::N(self.time as f64));
        TransactOp::Put {
            table: TableName::Control,
            key: self.key(),
            item,
            condition: None,
        }
    }

    fn decode(key: &Key, item: &Item) -> Result<DeadLetter> {
        let text = |name: &str| {
            item.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| Error::corrupt(key, format!("missing {name}")))
        };
        let number = |name: &str| item.get(name).and_then(Value::as_f64).unwrap_or(0.0);
        let position = |text: &str| {
            Position::parse(text).map_err(|error| Error::corrupt(key, error.to_string()))
        };
        Ok(DeadLetter {
            projection: text("projection")?,
            version: number("version") as u32,
            shard: text("shard")?,
            position: position(&text("position")?)?,
            after: text("after")
                .ok()
                .map(|after| position(&after))
                .transpose()?,
            event_id: text("event_id")?,
            tenant: text("tenant")?,
            error: text("error")?,
            attempts: number("attempts") as u32,
            time: number("time") as i64,
        })
    }
}

/// The key of the dead letter of `position` on `shard`.
pub fn letter_key(projection: &str, version: u32, shard: &ShardId, position: &Position) -> Key {
    Key::new(
        dead_letter_pk(projection, version),
        format!("{shard}#{}", position.sortable()),
    )
}

/// A page of dead letters, in shard then position order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DeadLetterPage {
    pub dead_letters: Vec<DeadLetter>,
    pub next: Option<String>,
}

/// Lists the dead letters of a projection version, `limit` a page.
pub async fn list(
    tables: &dyn Table,
    projection: &str,
    version: u32,
    cursor: Option<String>,
    limit: usize,
) -> Result<DeadLetterPage> {
    let query = Query::partition(dead_letter_pk(projection, version))
        .limit(limit)
        .after(cursor);
    let page = tables.query(TableName::Control, &query).await?;
    let dead_letters = page
        .items
        .iter()
        .map(|(key, item)| DeadLetter::decode(key, item))
        .collect::<Result<Vec<_>>>()?;
    Ok(DeadLetterPage {
        dead_letters,
        next: page.next,
    })
}

/// One dead letter, if it exists.
pub async fn get(
    tables: &dyn Table,
    projection: &str,
    version: u32,
    shard: &ShardId,
    position: &Position,
) -> Result<Option<DeadLetter>> {
    let key = letter_key(projection, version, shard, position);
    match tables.get(TableName::Control, &key).await? {
        Some(item) => Ok(Some(DeadLetter::decode(&key, &item)?)),
        None => Ok(None),
    }
}
