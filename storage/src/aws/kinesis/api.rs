//! One small function per Kinesis Data Streams operation, each returning a classified
//! [`CallError`].
//!
//! Each makes exactly one attempt (retrying is the caller's, through
//! [`crate::aws::retry::retry`]) and consults the [`FaultPlan`](crate::aws::FaultPlan) first, so
//! an injected fault takes the place of the service's answer. A `WithholdEntries` fault on
//! `PutRecords` sends only the other records and reports the withheld ones as failed with
//! `ProvisionedThroughputExceededException` — exactly what the service does under load, and, as
//! there, the withheld records are not written.

use crate::aws::config::AwsClients;
use crate::aws::fault::{Injected, Operation};
use crate::aws::retry::{CallError, ErrorClass};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, Shard, ShardIteratorType, StreamStatus};

/// Returns early with the injected failure, or hands back the entries to withhold.
fn injected(clients: &AwsClients, operation: Operation) -> Result<Option<Vec<usize>>, CallError> {
    match clients.faults.before_call(operation) {
        None => Ok(None),
        Some(Injected::Fail(fault)) => Err(CallError::injected(operation, &fault)),
        Some(Injected::Withhold(indices)) => Ok(Some(indices)),
    }
}

fn build_error(operation: Operation, error: aws_sdk_kinesis::error::BuildError) -> CallError {
    CallError::new(operation, ErrorClass::Invalid, "build", error.to_string())
}

/// One record to put.
#[derive(Clone, Debug)]
pub(crate) struct PutEntry {
    pub partition_key: String,
    /// Decimal 128-bit hash key: routes the record to the shard owning it, instead of the
    /// partition key's MD5.
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

/// What happened to one record of a `PutRecords`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PutResult {
    Stored {
        sequence: String,
        shard: String,
    },
    /// Not written; `code` is `ProvisionedThroughputExceededException` or `InternalFailure`
    /// (both retryable), or a KMS error.
    Failed {
        code: String,
        message: String,
    },
}

/// [PutRecords](https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html):
/// at most 500 records and 5 MiB. One result per entry, in order; a failed record was not
/// written (and a later record of the same call may have been: the caller keeps order).
pub(crate) async fn put_records(
    clients: &AwsClients,
    stream: &str,
    entries: Vec<PutEntry>,
) -> Result<Vec<PutResult>, CallError> {
    const OPERATION: Operation = Operation::PutRecords;
    debug_assert!(!entries.is_empty() && entries.len() <= 500);
    let withheld = injected(clients, OPERATION)?.unwrap_or_default();
    let mut sent_positions = Vec::with_capacity(entries.len());
    let mut request = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        if withheld.contains(&index) {
            continue;
        }
        sent_positions.push(index);
        request.push(
            PutRecordsRequestEntry::builder()
                .partition_key(entry.partition_key)
                .set_explicit_hash_key(entry.explicit_hash_key)
                .data(Blob::new(entry.data))
                .build()
                .map_err(|error| build_error(OPERATION, error))?,
        );
    }
    let total = sent_positions.len() + withheld.len();
    let mut results: Vec<PutResult> = (0..total)
        .map(|_| PutResult::Failed {
            code: "ProvisionedThroughputExceededException".to_owned(),
            message: "injected fault: record withheld".to_owned(),
        })
        .collect();
    if request.is_empty() {
        return Ok(results);
    }
    let output = clients
        .kinesis
        .put_records()
        .stream_name(stream)
        .set_records(Some(request))
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    if output.records.len() != sent_positions.len() {
        return Err(CallError::new(
            OPERATION,
            ErrorClass::Fatal,
            "response",
            format!(
                "{} results for {} records",
                output.records.len(),
                sent_positions.len()
            ),
        ));
    }
    for (index, entry) in sent_positions.into_iter().zip(output.records) {
        results[index] = match (entry.sequence_number, entry.shard_id, entry.error_code) {
            (Some(sequence), Some(shard), None) => PutResult::Stored { sequence, shard },
            (_, _, code) => PutResult::Failed {
                code: code.unwrap_or_else(|| "Unknown".to_owned()),
                message: entry.error_message.unwrap_or_default(),
            },
        };
    }
    Ok(results)
}

/// Where a shard iterator starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum IteratorStart {
    /// The oldest record still in the shard.
    TrimHorizon,
    /// At this record (to resume in the middle of a record's events).
    AtSequence(String),
    /// Right after this record.
    AfterSequence(String),
}

/// [GetShardIterator](https://docs.aws.amazon.com/kinesis/latest/APIReference/API_GetShardIterator.html).
/// The iterator is valid for 5 minutes.
pub(crate) async fn get_shard_iterator(
    clients: &AwsClients,
    stream: &str,
    shard: &str,
    start: &IteratorStart,
) -> Result<String, CallError> {
    const OPERATION: Operation = Operation::GetShardIterator;
    injected(clients, OPERATION)?;
    let request = clients
        .kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard);
    let request = match start {
        IteratorStart::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        IteratorStart::AtSequence(sequence) => request
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(sequence),
        IteratorStart::AfterSequence(sequence) => request
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(sequence),
    };
    let output = request
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    output.shard_iterator.ok_or_else(|| {
        CallError::new(
            OPERATION,
            ErrorClass::Fatal,
            "response",
            "no shard iterator in the answer",
        )
    })
}

/// One record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FetchedRecord {
    pub sequence: String,
    pub data: Vec<u8>,
}

/// The answer of a `GetRecords`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fetched {
    pub records: Vec<FetchedRecord>,
    /// `None`: the shard is closed and everything in it was read.
    pub next_iterator: Option<String>,
    pub millis_behind: Option<i64>,
}

/// [GetRecords](https://docs.aws.amazon.com/kinesis/latest/APIReference/API_GetRecords.html):
/// at most `limit` records (≤ 10,000) and 10 MiB. A shard serves 5 calls and 2 MB per second
/// across all its readers; the caller paces calls.
pub(crate) async fn get_records(
    clients: &AwsClients,
    iterator: &str,
    limit: i32,
) -> Result<Fetched, CallError> {
    const OPERATION: Operation = Operation::GetRecords;
    injected(clients, OPERATION)?;
    let output = clients
        .kinesis
        .get_records()
        .shard_iterator(iterator)
        .limit(limit.clamp(1, 10_000))
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    Ok(Fetched {
        records: output
            .records
            .into_iter()
            .map(|record| FetchedRecord {
                sequence: record.sequence_number,
                data: record.data.into_inner(),
            })
            .collect(),
        next_iterator: output.next_shard_iterator,
        millis_behind: output.millis_behind_latest,
    })
}

/// [ListShards](https://docs.aws.amazon.com/kinesis/latest/APIReference/API_ListShards.html):
/// one page of shards, open and closed, and the token of the next page. With a token the
/// stream name must not be given (the token names it).
pub(crate) async fn list_shards(
    clients: &AwsClients,
    stream: &str,
    next_token: Option<&str>,
) -> Result<(Vec<Shard>, Option<String>), CallError> {
    const OPERATION: Operation = Operation::ListShards;
    injected(clients, OPERATION)?;
    let request = clients.kinesis.list_shards();
    let request = match next_token {
        Some(token) => request.next_token(token),
        None => request.stream_name(stream),
    };
    let output = request
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    Ok((output.shards.unwrap_or_default(), output.next_token))
}

/// [DescribeStreamSummary](https://docs.aws.amazon.com/kinesis/latest/APIReference/API_DescribeStreamSummary.html):
/// the stream's status and its number of open shards.
pub(crate) async fn describe_stream_summary(
    clients: &AwsClients,
    stream: &str,
) -> Result<(StreamStatus, i32), CallError> {
    const OPERATION: Operation = Operation::DescribeStreamSummary;
    injected(clients, OPERATION)?;
    let output = clients
        .kinesis
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    let summary = output.stream_description_summary.ok_or_else(|| {
        CallError::new(
            OPERATION,
            ErrorClass::Fatal,
            "response",
            "no stream summary",
        )
    })?;
    Ok((summary.stream_status, summary.open_shard_count))
}

/// [CreateStream](https://docs.aws.amazon.com/kinesis/latest/APIReference/API_CreateStream.html)
/// in provisioned mode with `shard_count` shards.
pub(crate) async fn create_stream(
    clients: &AwsClients,
    stream: &str,
    shard_count: i32,
) -> Result<(), CallError> {
    const OPERATION: Operation = Operation::CreateStream;
    injected(clients, OPERATION)?;
    clients
        .kinesis
        .create_stream()
        .stream_name(stream)
        .shard_count(shard_count)
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    Ok(())
}

/// [DeleteStream](https://docs.aws.amazon.com/kinesis/latest/APIReference/API_DeleteStream.html),
/// with its consumers.
pub(crate) async fn delete_stream(clients: &AwsClients, stream: &str) -> Result<(), CallError> {
    const OPERATION: Operation = Operation::DeleteStream;
    injected(clients, OPERATION)?;
    clients
        .kinesis
        .delete_stream()
        .stream_name(stream)
        .enforce_consumer_deletion(true)
        .send()
        .await
        .map_err(|error| CallError::from_sdk(OPERATION, &error))?;
    Ok(())
}
