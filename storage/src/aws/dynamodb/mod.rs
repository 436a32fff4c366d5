//! The [`Table`] backend on DynamoDB: three tables `{prefix}-events`, `{prefix}-views` and
//! `{prefix}-control`, each keyed by the strings `pk` (hash) and `sk` (range).
//!
//! Invariants and why:
//! - input is checked by the same rules as the embedded backend (`embedded/table/validate.rs`:
//!   key lengths, storable numbers, 400 KB items, one op per key in a batch or transaction)
//!   *before* anything is sent, so both backends answer bad input with the same error variant and
//!   an oversize item is [`Error::TooLarge`] from our code, not a service error;
//! - `write` splits into `BatchWriteItem` calls of at most 25 requests, `batch_get` into
//!   `BatchGetItem` calls of at most 100 keys, and both re-send what the service left unprocessed
//!   after a backoff, a bounded number of times (then [`Error::Throttled`]);
//! - `transact` is one `TransactWriteItems` of at most [`MAX_TRANSACT_OPS`] ops with one
//!   `ClientRequestToken` for all its attempts, so retrying after a lost answer cannot apply it
//!   twice; a cancellation for a failed condition is [`Error::ConditionFailed`];
//! - every read is strongly consistent (the projector reads its own writes);
//! - `query` reads one item beyond the page so that `next` is `None` on the last page even when
//!   that page is full (DynamoDB's `LastEvaluatedKey` alone cannot tell), and the cursor is the
//!   embedded backend's (`c1.<pk>.<sk>`), turned into `ExclusiveStartKey`.

pub(crate) mod api;
mod expr;
pub(crate) mod value;

use crate::aws::config::{AwsClients, AwsConfig};
use crate::aws::fault::Operation;
use crate::aws::retry::{CallError, ErrorClass, retry};
use crate::embedded::table::{cursor, range, validate};
use crate::{
    Condition, Error, Item, Key, Page, Query, Result, Scan, SortRange, Table, TableName,
    TransactOp, Update, WriteOp,
};
use api::{Placeholders, QueryRequest, UpdateRequest};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    ConditionCheck, Delete, DeleteRequest, Put, PutRequest, TransactWriteItem, WriteRequest,
};
use expr::Expressions;
use futures::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use value::{Attributes, item_attributes, item_of, key_attributes, key_of};

/// DynamoDB's limit of items in one `TransactWriteItems`.
pub const MAX_TRANSACT_OPS: usize = 100;
/// DynamoDB's limit of requests in one `BatchWriteItem`.
const BATCH_WRITE_LIMIT: usize = 25;
/// DynamoDB's limit of keys in one `BatchGetItem`.
const BATCH_GET_LIMIT: usize = 100;
/// DynamoDB's limit of the summed item sizes of one transaction.
const MAX_TRANSACTION_BYTES: usize = 4 * 1024 * 1024;
/// Batch calls of one `write` / `batch_get` in flight at once: enough to hide latency, few
/// enough not to provoke throttling on their own.
const BATCH_CONCURRENCY: usize = 4;

/// The DynamoDB tables. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DynamoTables {
    clients: AwsClients,
    /// Indexed by `TableName as usize` order of [`TableName::ALL`].
    names: [String; 3],
}

impl DynamoTables {
    /// The tables named by `config` (which `init` creates), reached with `clients`.
    pub fn new(clients: AwsClients, config: &AwsConfig) -> Self {
        DynamoTables {
            clients,
            names: TableName::ALL.map(|table| config.table_name(table)),
        }
    }

    /// The DynamoDB table name of a logical table.
    pub fn table_name(&self, table: TableName) -> &str {
        match table {
            TableName::Events => &self.names[0],
            TableName::Views => &self.names[1],
            TableName::Control => &self.names[2],
        }
    }

    /// One chunk of at most 25 write requests, re-sending unprocessed ones after a backoff.
    async fn write_chunk(&self, table: &str, requests: Vec<WriteRequest>) -> Result<()> {
        let policy = self.clients.retry;
        let mut pending = requests;
        let mut round = 1;
        loop {
            let sent = pending.clone();
            pending = retry(&policy, || {
                api::batch_write_item(&self.clients, table, sent.clone())
            })
            .await
            .map_err(storage_error)?;
            if pending.is_empty() {
                return Ok(());
            }
            if round >= policy.max_attempts {
                return Err(Error::Throttled(format!(
                    "BatchWriteItem left {} items unprocessed after {round} rounds",
                    pending.len()
                )));
            }
            tracing::debug!(
                table,
                unprocessed = pending.len(),
                round,
                "re-sending unprocessed items"
            );
            tokio::time::sleep(policy.delay(round)).await;
            round += 1;
        }
    }

    /// One chunk of at most 100 distinct keys, asking again for unprocessed ones.
    async fn get_chunk(&self, table: &str, keys: Vec<Attributes>) -> Result<Vec<(Key, Item)>> {
        let policy = self.clients.retry;
        let mut pending = keys;
        let mut found = Vec::with_capacity(pending.len());
        let mut round = 1;
        loop {
            let asked = pending.clone();
            let (items, unprocessed) = retry(&policy, || {
                api::batch_get_item(&self.clients, table, asked.clone())
            })
            .await
            .map_err(storage_error)?;
            for attributes in items {
                let key = key_of(&attributes)?;
                found.push((key, item_of(attributes)?));
            }
            pending = unprocessed;
            if pending.is_empty() {
                return Ok(found);
            }
            if round >= policy.max_attempts {
                return Err(Error::Throttled(format!(
                    "BatchGetItem left {} keys unprocessed after {round} rounds",
                    pending.len()
                )));
            }
            tokio::time::sleep(policy.delay(round)).await;
            round += 1;
        }
    }

    /// The SDK form of one transaction op.
    fn transact_item(&self, op: &TransactOp) -> Result<TransactWriteItem> {
        let build = |error| api::build_error(Operation::TransactWriteItems, error);
        let item = match op {
            TransactOp::Put {
                table,
                key,
                item,
                condition,
            } => {
                let (condition, placeholders) = condition_parts(condition.as_ref());
                let put = Put::builder()
                    .table_name(self.table_name(*table))
                    .set_item(Some(item_attributes(key, item)?))
                    .set_condition_expression(condition)
                    .set_expression_attribute_names(placeholders.names)
                    .set_expression_attribute_values(placeholders.values)
                    .build()
                    .map_err(build)?;
                TransactWriteItem::builder().put(put).build()
            }
            TransactOp::Update { table, update } => {
                let request = self.update_request(*table, update);
                // Inside a transaction an update expression is required; an update that changes
                // nothing still has to create a missing item, which REMOVE of an attribute no
                // item has does (UpdateItem always creates the item).
                let (expression, names) = match request.update {
                    Some(expression) => (expression, request.placeholders.names),
                    None => {
                        let mut names = request.placeholders.names.unwrap_or_default();
                        names.insert("#shoal_nothing".to_owned(), NOTHING_ATTRIBUTE.to_owned());
                        ("REMOVE #shoal_nothing".to_owned(), Some(names))
                    }
                };
                let update = aws_sdk_dynamodb::types::Update::builder()
                    .table_name(request.table)
                    .set_key(Some(request.key))
                    .update_expression(expression)
                    .set_condition_expression(request.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(request.placeholders.values)
                    .build()
                    .map_err(build)?;
                TransactWriteItem::builder().update(update).build()
            }
            TransactOp::Delete {
                table,
                key,
                condition,
            } => {
                let (condition, placeholders) = condition_parts(condition.as_ref());
                let delete = Delete::builder()
                    .table_name(self.table_name(*table))
                    .set_key(Some(key_attributes(key)))
                    .set_condition_expression(condition)
                    .set_expression_attribute_names(placeholders.names)
                    .set_expression_attribute_values(placeholders.values)
                    .build()
                    .map_err(build)?;
                TransactWriteItem::builder().delete(delete).build()
            }
            TransactOp::Check {
                table,
                key,
                condition,
            } => {
                let (condition, placeholders) = condition_parts(Some(condition));
                let check = ConditionCheck::builder()
                    .table_name(self.table_name(*table))
                    .set_key(Some(key_attributes(key)))
                    .set_condition_expression(condition)
                    .set_expression_attribute_names(placeholders.names)
                    .set_expression_attribute_values(placeholders.values)
                    .build()
                    .map_err(build)?;
                TransactWriteItem::builder().condition_check(check).build()
            }
        };
        Ok(item)
    }

    fn update_request(&self, table: TableName, update: &Update) -> UpdateRequest {
        let mut expressions = Expressions::default();
        let expression = expressions.update(update);
        let condition = update
            .condition
            .as_ref()
            .map(|condition| expressions.condition(condition));
        let (names, values) = expressions.into_maps();
        UpdateRequest {
            table: self.table_name(table).to_owned(),
            key: key_attributes(&update.key),
            update: expression,
            condition,
            placeholders: Placeholders { names, values },
        }
    }
}

/// The attribute an empty transactional update removes (see [`DynamoTables::transact_item`]):
/// a lone `~` is never the stored name of an item attribute (`value::stored_name`).
const NOTHING_ATTRIBUTE: &str = "~";

/// A condition's expression and placeholders.
fn condition_parts(condition: Option<&Condition>) -> (Option<String>, Placeholders) {
    let Some(condition) = condition else {
        return (None, Placeholders::default());
    };
    let mut expressions = Expressions::default();
    let text = expressions.condition(condition);
    let (names, values) = expressions.into_maps();
    (Some(text), Placeholders { names, values })
}

/// The storage error for a call that failed for good, recognising the validation errors that
/// have a variant of their own.
fn storage_error(error: CallError) -> Error {
    if error.class == ErrorClass::Invalid && error.message.contains("Item size") {
        // DynamoDB found the item after an update too large; its size is not in the message,
        // only that it is above the limit.
        return Error::TooLarge {
            what: "item",
            size: validate::MAX_ITEM_BYTES + 1,
            limit: validate::MAX_ITEM_BYTES,
        };
    }
    error.into_storage()
}

/// The query's sort-key condition, adjusted for empty strings (DynamoDB refuses an empty string
/// as a key value): `None` when no item can match.
fn effective_range(range: &SortRange) -> Option<SortRange> {
    Some(match range {
        SortRange::Prefix(prefix) if prefix.is_empty() => SortRange::All,
        SortRange::From(from) if from.is_empty() => SortRange::All,
        // Sort keys are never empty, so nothing is `<= ""`.
        SortRange::To(to) if to.is_empty() => return None,
        SortRange::Between(_, to) if to.is_empty() => return None,
        SortRange::Between(from, to) if from.is_empty() => SortRange::To(to.clone()),
        other => other.clone(),
    })
}

#[async_trait]
impl Table for DynamoTables {
    async fn get(&self, table: TableName, key: &Key) -> Result<Option<Item>> {
        validate::key(key)?;
        let name = self.table_name(table);
        let found = retry(&self.clients.retry, || {
            api::get_item(&self.clients, name, key_attributes(key))
        })
        .await
        .map_err(storage_error)?;
        found.map(item_of).transpose()
    }

    async fn batch_get(&self, table: TableName, keys: &[Key]) -> Result<Vec<Option<Item>>> {
        for key in keys {
            validate::key(key)?;
        }
        // BatchGetItem refuses a key twice in one request: ask each distinct key once.
        let mut distinct: Vec<&Key> = keys.iter().collect();
        distinct.sort_unstable();
        distinct.dedup();
        let name = self.table_name(table);
        let chunks: Vec<Vec<Attributes>> = distinct
            .chunks(BATCH_GET_LIMIT)
            .map(|chunk| chunk.iter().map(|key| key_attributes(key)).collect())
            .collect();
        let found: Vec<Vec<(Key, Item)>> = futures::stream::iter(chunks)
            .map(|chunk| self.get_chunk(name, chunk))
            .buffer_unordered(BATCH_CONCURRENCY)
            .try_collect()
            .await?;
        let by_key: HashMap<Key, Item> = found.into_iter().flatten().collect();
        Ok(keys.iter().map(|key| by_key.get(key).cloned()).collect())
    }

    async fn query(&self, table: TableName, query: &Query) -> Result<Page> {
        validate::partition_key(&query.pk)?;
        // The embedded backend's checks, so both refuse the same queries: an inverted range, a
        // bad cursor or one of another partition, a zero limit.
        if range::page_bounds(query)?.is_none() {
            return Ok(Page::default());
        }
        let Some(sort_range) = effective_range(&query.range) else {
            return Ok(Page::default());
        };
        let start = match &query.cursor {
            Some(text) => Some(key_attributes(&Key::new(
                query.pk.clone(),
                cursor::decode(text, &query.pk)?,
            ))),
            None => None,
        };
        let mut expressions = Expressions::default();
        let key_condition = expressions.key_condition(&query.pk, &sort_range);
        let (names, values) = expressions.into_maps();
        let mut request = QueryRequest {
            table: self.table_name(table).to_owned(),
            key_condition,
            placeholders: Placeholders { names, values },
            forward: !query.reverse,
            limit: 0,
            start,
        };
        // One more than the page, to know whether another page follows.
        let wanted = query.limit.saturating_add(1);
        let mut items: Vec<(Key, Item)> = Vec::new();
        loop {
            let remaining = wanted - items.len();
            request.limit = i32::try_from(remaining).unwrap_or(i32::MAX);
            let (page, last) = retry(&self.clients.retry, || {
                api::query(&self.clients, request.clone())
            })
            .await
            .map_err(|error| {
                // A cursor whose key lies outside this query's range (made by another query).
                if error.class == ErrorClass::Invalid
                    && error.message.to_ascii_lowercase().contains("start")
                {
                    Error::InvalidCursor
                } else {
                    storage_error(error)
                }
            })?;
            for attributes in page {
                let key = key_of(&attributes)?;
                items.push((key, item_of(attributes)?));
            }
            match last {
                Some(last) if items.len() < wanted => request.start = Some(last),
                _ => break,
            }
        }
        let next = if items.len() > query.limit {
            items.truncate(query.limit);
            items
                .last()
                .map(|(key, _)| cursor::encode(&query.pk, &key.sk))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn scan(&self, table: TableName, scan: &Scan) -> Result<Page> {
        scan.validate()?;
        let start = match &scan.cursor {
            Some(text) => {
                let (pk, sk) = cursor::decode_key(text)?;
                Some(key_attributes(&Key::new(pk, sk)))
            }
            None => None,
        };
        // `validate` bounds both to DynamoDB's limits, far inside i32.
        let segment = i32::try_from(scan.segment).unwrap_or(i32::MAX);
        let total = i32::try_from(scan.total_segments).unwrap_or(i32::MAX);
        let limit = i32::try_from(scan.limit).unwrap_or(i32::MAX);
        let name = self.table_name(table).to_owned();
        let (page, last) = retry(&self.clients.retry, || {
            api::scan(
                &self.clients,
                name.clone(),
                segment,
                total,
                limit,
                start.clone(),
            )
        })
        .await
        .map_err(storage_error)?;
        let mut items = Vec::with_capacity(page.len());
        for attributes in page {
            let key = key_of(&attributes)?;
            items.push((key, item_of(attributes)?));
        }
        let next = match last {
            Some(last) => {
                let key = key_of(&last)?;
                Some(cursor::encode(&key.pk, &key.sk))
            }
            None => None,
        };
        Ok(Page { items, next })
    }

    async fn write(&self, table: TableName, ops: Vec<WriteOp>) -> Result<()> {
        validate::write(&ops)?;
        if ops.is_empty() {
            return Ok(());
        }
        let requests = ops
            .iter()
            .map(|op| -> Result<WriteRequest> {
                let build =
                    |error| storage_error(api::build_error(Operation::BatchWriteItem, error));
                Ok(match op {
                    WriteOp::Put { key, item } => {
                        let put = PutRequest::builder()
                            .set_item(Some(item_attributes(key, item)?))
                            .build()
                            .map_err(build)?;
                        WriteRequest::builder().put_request(put).build()
                    }
                    WriteOp::Delete { key } => {
                        let delete = DeleteRequest::builder()
                            .set_key(Some(key_attributes(key)))
                            .build()
                            .map_err(build)?;
                        WriteRequest::builder().delete_request(delete).build()
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let name = self.table_name(table);
        let chunks: Vec<Vec<WriteRequest>> = requests
            .chunks(BATCH_WRITE_LIMIT)
            .map(<[WriteRequest]>::to_vec)
            .collect();
        futures::stream::iter(chunks)
            .map(|chunk| self.write_chunk(name, chunk))
            .buffer_unordered(BATCH_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn update(&self, table: TableName, update: Update) -> Result<Item> {
        validate::update(&update)?;
        // What we can check before sending: the key and the values set already exceed the
        // limit. The item after the update is checked by DynamoDB (see `storage_error`).
        let set: Item = update.set.iter().cloned().collect();
        let lower_bound = validate::item_size(&update.key, &set);
        if lower_bound > validate::MAX_ITEM_BYTES {
            return Err(Error::TooLarge {
                what: "item",
                size: lower_bound,
                limit: validate::MAX_ITEM_BYTES,
            });
        }
        let request = self.update_request(table, &update);
        let attributes = retry(&self.clients.retry, || {
            api::update_item(&self.clients, request.clone())
        })
        .await
        .map_err(storage_error)?;
        item_of(attributes)
    }

    async fn transact(&self, ops: Vec<TransactOp>) -> Result<()> {
        validate::transaction(&ops)?;
        if ops.len() > MAX_TRANSACT_OPS {
            return Err(Error::InvalidArgument(format!(
                "a transaction holds at most {MAX_TRANSACT_OPS} ops, not {}",
                ops.len()
            )));
        }
        let size: usize = ops.iter().map(TransactOp::size).sum();
        if size > MAX_TRANSACTION_BYTES {
            return Err(Error::TooLarge {
                what: "transaction",
                size,
                limit: MAX_TRANSACTION_BYTES,
            });
        }
        let items = ops
            .iter()
            .map(|op| self.transact_item(op))
            .collect::<Result<Vec<_>>>()?;
        let token = uuid::Uuid::new_v4().to_string();
        retry(&self.clients.retry, || {
            api::transact_write_items(&self.clients, items.clone(), &token)
        })
        .await
        .map_err(storage_error)
    }

    fn max_transact_ops(&self) -> usize {
        MAX_TRANSACT_OPS
    }

    fn max_transact_bytes(&self) -> usize {
        MAX_TRANSACTION_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_strings_never_reach_a_key_condition() {
        assert_eq!(
            effective_range(&SortRange::Prefix(String::new())),
            Some(SortRange::All)
        );
        assert_eq!(
            effective_range(&SortRange::From(String::new())),
            Some(SortRange::All)
        );
        assert_eq!(effective_range(&SortRange::To(String::new())), None);
        assert_eq!(
            effective_range(&SortRange::Between(String::new(), "b".into())),
            Some(SortRange::To("b".into()))
        );
        assert_eq!(
            effective_range(&SortRange::Between("a".into(), "b".into())),
            Some(SortRange::Between("a".into(), "b".into()))
        );
    }

    #[test]
    fn oversize_updates_are_too_large() {
        let error = CallError::new(
            Operation::UpdateItem,
            ErrorClass::Invalid,
            "ValidationException",
            "Item size has exceeded the maximum allowed size",
        );
        assert!(matches!(
            storage_error(error),
            Error::TooLarge { what: "item", .. }
        ));
    }
}
