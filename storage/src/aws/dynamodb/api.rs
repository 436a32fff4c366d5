//! One small function per DynamoDB operation, each returning a classified [`CallError`].
//!
//! These functions make exactly one attempt (retrying is [`crate::aws::retry::retry`]'s job and
//! the callers') and consult the [`FaultPlan`](crate::aws::FaultPlan) first, so an injected
//! fault takes the place of the service's answer. Reads are strongly consistent: the projector
//! reads its own checkpoints and items right after writing them.

use crate::aws::config::AwsClients;
use crate::aws::dynamodb::value::Attributes;
use crate::aws::fault::{Injected, Operation};
use crate::aws::retry::{CallError, ErrorClass};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes, ReturnValue,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem,
    WriteRequest,
};
use std::collections::HashMap;

/// Returns early with the injected failure, or hands back the entries to withhold.
fn injected(clients: &AwsClients, operation: Operation) -> Result<Option<Vec<usize>>, CallError> {
    match clients.faults.before_call(operation) {
        None => Ok(None),
        Some(Injected::Fail(fault)) => Err(CallError::injected(operation, &fault)),
        Some(Injected::Withhold(indices)) => Ok(Some(indices)),
    }
}

/// Splits `entries` into (sent, withheld) by the indices of a `WithholdEntries` fault.
fn withhold<T>(entries: Vec<T>, indices: Option<&[usize]>) -> (Vec<T>, Vec<T>) {
    let Some(indices) = indices else {
        return (entries, Vec::new());
    };
    let mut sent = Vec::with_capacity(entries.len());
    let mut withheld = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        if indices.contains(&index) {
            withheld.push(entry);
        } else {
            sent.push(entry);
        }
    }
    (sent, withheld)
}

/// A request's expression placeholders.
#[derive(Debug, Default, Clone)]
pub(crate) struct Placeholders {
    pub names: Option<HashMap<String, String>>,
    pub values: Option<Attributes>,
}

/// [GetItem](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_GetItem.html),
/// strongly consistent.
pub(crate) async fn get_item(
    clients: &AwsClients,
    table: &str,
    key: Attributes,
) -> Result<Option<Attributes>, CallError> {
    const OPERATION: Operation = Operation::GetItem;
    injected(clients, OPERATION)?;
    let output = clients
        .dynamodb
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    Ok(output.item)
}

/// [BatchGetItem](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html)
/// of at most 100 distinct keys of one table, strongly consistent. Returns the items found and
/// the keys left unprocessed (to be asked again after a pause).
pub(crate) async fn batch_get_item(
    clients: &AwsClients,
    table: &str,
    keys: Vec<Attributes>,
) -> Result<(Vec<Attributes>, Vec<Attributes>), CallError> {
    const OPERATION: Operation = Operation::BatchGetItem;
    debug_assert!(!keys.is_empty() && keys.len() <= 100);
    let withheld_indices = injected(clients, OPERATION)?;
    let (keys, mut unprocessed) = withhold(keys, withheld_indices.as_deref());
    if keys.is_empty() {
        return Ok((Vec::new(), unprocessed));
    }
    let request = KeysAndAttributes::builder()
        .set_keys(Some(keys))
        .consistent_read(true)
        .build()
        .map_err(|error| build_error(OPERATION, error))?;
    let output = clients
        .dynamodb
        .batch_get_item()
        .request_items(table, request)
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    let found = output
        .responses
        .and_then(|mut responses| responses.remove(table))
        .unwrap_or_default();
    if let Some(mut left) = output.unprocessed_keys
        && let Some(left) = left.remove(table)
    {
        unprocessed.extend(left.keys);
    }
    Ok((found, unprocessed))
}

/// One page of a [Query](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_Query.html).
#[derive(Debug, Clone)]
pub(crate) struct QueryRequest {
    pub table: String,
    pub key_condition: String,
    pub placeholders: Placeholders,
    pub forward: bool,
    pub limit: i32,
    pub start: Option<Attributes>,
}

/// [Query](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_Query.html),
/// strongly consistent: the items of one page and the `LastEvaluatedKey`.
pub(crate) async fn query(
    clients: &AwsClients,
    request: QueryRequest,
) -> Result<(Vec<Attributes>, Option<Attributes>), CallError> {
    const OPERATION: Operation = Operation::Query;
    injected(clients, OPERATION)?;
    let output = clients
        .dynamodb
        .query()
        .table_name(request.table)
        .key_condition_expression(request.key_condition)
        .set_expression_attribute_names(request.placeholders.names)
        .set_expression_attribute_values(request.placeholders.values)
        .scan_index_forward(request.forward)
        .limit(request.limit)
        .set_exclusive_start_key(request.start)
        .consistent_read(true)
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    Ok((output.items.unwrap_or_default(), output.last_evaluated_key))
}

/// [Scan](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_Scan.html) of one
/// segment of a parallel scan, strongly consistent: the items of one page and the
/// `LastEvaluatedKey`.
pub(crate) async fn scan(
    clients: &AwsClients,
    table: String,
    segment: i32,
    total_segments: i32,
    limit: i32,
    start: Option<Attributes>,
) -> Result<(Vec<Attributes>, Option<Attributes>), CallError> {
    const OPERATION: Operation = Operation::Scan;
    injected(clients, OPERATION)?;
    let output = clients
        .dynamodb
        .scan()
        .table_name(table)
        .segment(segment)
        .total_segments(total_segments)
        .limit(limit)
        .set_exclusive_start_key(start)
        .consistent_read(true)
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    Ok((output.items.unwrap_or_default(), output.last_evaluated_key))
}

/// [BatchWriteItem](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html)
/// of at most 25 requests on distinct keys of one table. Returns the requests left
/// unprocessed (`UnprocessedItems`), which were not applied.
pub(crate) async fn batch_write_item(
    clients: &AwsClients,
    table: &str,
    requests: Vec<WriteRequest>,
) -> Result<Vec<WriteRequest>, CallError> {
    const OPERATION: Operation = Operation::BatchWriteItem;
    debug_assert!(!requests.is_empty() && requests.len() <= 25);
    let withheld_indices = injected(clients, OPERATION)?;
    let (requests, mut unprocessed) = withhold(requests, withheld_indices.as_deref());
    if requests.is_empty() {
        return Ok(unprocessed);
    }
    let output = clients
        .dynamodb
        .batch_write_item()
        .request_items(table, requests)
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    if let Some(mut left) = output.unprocessed_items
        && let Some(left) = left.remove(table)
    {
        unprocessed.extend(left);
    }
    Ok(unprocessed)
}

/// One [UpdateItem](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html).
#[derive(Debug, Clone)]
pub(crate) struct UpdateRequest {
    pub table: String,
    pub key: Attributes,
    pub update: Option<String>,
    pub condition: Option<String>,
    pub placeholders: Placeholders,
}

/// [UpdateItem](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html):
/// creates or modifies the item and returns all its attributes afterwards.
pub(crate) async fn update_item(
    clients: &AwsClients,
    request: UpdateRequest,
) -> Result<Attributes, CallError> {
    const OPERATION: Operation = Operation::UpdateItem;
    injected(clients, OPERATION)?;
    let output = clients
        .dynamodb
        .update_item()
        .table_name(request.table)
        .set_key(Some(request.key))
        .set_update_expression(request.update)
        .set_condition_expression(request.condition)
        .set_expression_attribute_names(request.placeholders.names)
        .set_expression_attribute_values(request.placeholders.values)
        .return_values(ReturnValue::AllNew)
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    Ok(output.attributes.unwrap_or_default())
}

/// [TransactWriteItems](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html)
/// of at most 100 items. `token` is the `ClientRequestToken`: the same token for every attempt
/// of one transaction makes a retry after a lost answer a no-op instead of a second write.
///
/// A `TransactionCanceledException` is classified by its cancellation reasons: a failed
/// condition is [`ErrorClass::ConditionFailed`], a conflict with another transaction transient,
/// throttling throttled, a validation error invalid.
pub(crate) async fn transact_write_items(
    clients: &AwsClients,
    items: Vec<TransactWriteItem>,
    token: &str,
) -> Result<(), CallError> {
    const OPERATION: Operation = Operation::TransactWriteItems;
    debug_assert!(!items.is_empty() && items.len() <= 100);
    injected(clients, OPERATION)?;
    let result = clients
        .dynamodb
        .transact_write_items()
        .set_transact_items(Some(items))
        .client_request_token(token)
        .send()
        .await;
    let Err(error) = result else {
        return Ok(());
    };
    if let Some(TransactWriteItemsError::TransactionCanceledException(canceled)) =
        error.as_service_error()
    {
        let codes: Vec<&str> = canceled
            .cancellation_reasons()
            .iter()
            .filter_map(|reason| reason.code())
            .filter(|code| *code != "None")
            .collect();
        let class = cancellation_class(&codes);
        return Err(CallError::new(
            OPERATION,
            class,
            "TransactionCanceledException",
            format!("{}: reasons {codes:?}", error.message().unwrap_or_default()),
        ));
    }
    Err(CallError::from_sdk(OPERATION, &error))
}

/// The class of a canceled transaction from its cancellation reason codes.
pub(crate) fn cancellation_class(codes: &[&str]) -> ErrorClass {
    let any = |wanted: &[&str]| codes.iter().any(|code| wanted.contains(code));
    if any(&["ConditionalCheckFailed"]) {
        ErrorClass::ConditionFailed
    } else if any(&["ValidationError", "ItemCollectionSizeLimitExceeded"]) {
        ErrorClass::Invalid
    } else if any(&[
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
    ]) {
        ErrorClass::Throttled
    } else {
        // TransactionConflict, or a reason code newer than this list: AWS documents both
        // conflicts and unknown cancellations as safe to retry.
        ErrorClass::Transient
    }
}

/// [CreateTable](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_CreateTable.html)
/// with string keys `pk` (hash) and `sk` (range), billed on demand.
pub(crate) async fn create_table(clients: &AwsClients, table: &str) -> Result<(), CallError> {
    const OPERATION: Operation = Operation::CreateTable;
    injected(clients, OPERATION)?;
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|error| build_error(OPERATION, error))
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|error| build_error(OPERATION, error))
    };
    clients
        .dynamodb
        .create_table()
        .table_name(table)
        .attribute_definitions(attribute("pk")?)
        .attribute_definitions(attribute("sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    Ok(())
}

/// [DescribeTable](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_DescribeTable.html):
/// the table's status.
pub(crate) async fn describe_table(
    clients: &AwsClients,
    table: &str,
) -> Result<Option<TableStatus>, CallError> {
    const OPERATION: Operation = Operation::DescribeTable;
    injected(clients, OPERATION)?;
    let output = clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    Ok(output.table.and_then(|table| table.table_status))
}

/// [DeleteTable](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_DeleteTable.html).
pub(crate) async fn delete_table(clients: &AwsClients, table: &str) -> Result<(), CallError> {
    const OPERATION: Operation = Operation::DeleteTable;
    injected(clients, OPERATION)?;
    clients
        .dynamodb
        .delete_table()
        .table_name(table)
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    Ok(())
}

/// [DescribeTimeToLive](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_DescribeTimeToLive.html):
/// the TTL status and attribute.
pub(crate) async fn describe_time_to_live(
    clients: &AwsClients,
    table: &str,
) -> Result<(Option<TimeToLiveStatus>, Option<String>), CallError> {
    const OPERATION: Operation = Operation::DescribeTimeToLive;
    injected(clients, OPERATION)?;
    let output = clients
        .dynamodb
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    let description = output.time_to_live_description;
    Ok((
        description
            .as_ref()
            .and_then(|ttl| ttl.time_to_live_status.clone()),
        description.and_then(|ttl| ttl.attribute_name),
    ))
}

/// [UpdateTimeToLive](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateTimeToLive.html):
/// enables expiry by the number attribute `attribute` (epoch seconds).
pub(crate) async fn update_time_to_live(
    clients: &AwsClients,
    table: &str,
    attribute: &str,
) -> Result<(), CallError> {
    const OPERATION: Operation = Operation::UpdateTimeToLive;
    injected(clients, OPERATION)?;
    let specification = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(attribute)
        .build()
        .map_err(|error| build_error(OPERATION, error))?;
    clients
        .dynamodb
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(specification)
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    Ok(())
}

/// A request we built lacked a required field: our bug, never retried.
pub(crate) fn build_error(
    operation: Operation,
    error: aws_sdk_dynamodb::error::BuildError,
) -> CallError {
    CallError::new(operation, ErrorClass::Invalid, "build", error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancellation_reasons_decide_the_class() {
        assert_eq!(
            cancellation_class(&["ConditionalCheckFailed"]),
            ErrorClass::ConditionFailed
        );
        assert_eq!(
            cancellation_class(&["TransactionConflict", "ConditionalCheckFailed"]),
            ErrorClass::ConditionFailed,
            "a failed condition is an answer even when another item conflicted"
        );
        assert_eq!(
            cancellation_class(&["TransactionConflict"]),
            ErrorClass::Transient
        );
        assert_eq!(
            cancellation_class(&["ThrottlingError"]),
            ErrorClass::Throttled
        );
        assert_eq!(
            cancellation_class(&["ValidationError"]),
            ErrorClass::Invalid
        );
    }

    #[test]
    fn withholding_splits_by_index() {
        let (sent, withheld) = withhold(vec!['a', 'b', 'c', 'd'], Some(&[1, 3, 9]));
        assert_eq!(sent, vec!['a', 'c']);
        assert_eq!(withheld, vec!['b', 'd']);
        let (sent, withheld) = withhold(vec!['a'], None);
        assert_eq!((sent, withheld), (vec!['a'], vec![]));
    }
}
