//! Creating the AWS resources (`shoal aws init`) and, for tests, deleting them.
//!
//! Invariants:
//! - [`init`] is safe to run twice, and concurrently: "already exists" is success, and it
//!   returns only once the stream and all three tables are ACTIVE and the control table's TTL
//!   is enabled, so the first append or write after it cannot meet a resource still CREATING;
//! - an existing stream keeps its shard count (resharding is an operation of its own);
//! - tables are billed on demand (no capacity to plan before the first event) and keyed by the
//!   strings `pk` and `sk`; the control table expires items by its `ttl` attribute (epoch
//!   seconds), which the dedup markers and leases use.

use crate::aws::config::{AwsClients, AwsConfig};
use crate::aws::dynamodb::api as dynamodb;
use crate::aws::kinesis::api as kinesis;
use crate::aws::retry::{CallError, ErrorClass, retry};
use crate::{Error, Result, TableName};
use aws_sdk_dynamodb::types::{TableStatus, TimeToLiveStatus};
use aws_sdk_kinesis::types::StreamStatus;
use std::time::{Duration, Instant};

/// The attribute of the control table DynamoDB expires items by.
pub const TTL_ATTRIBUTE: &str = "ttl";
/// How long `init` waits for a resource to become ACTIVE (AWS takes seconds to a minute).
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Creates the stream and the three tables when missing, and waits until they are ready.
pub async fn init(clients: &AwsClients, config: &AwsConfig) -> Result<()> {
    init_stream(clients, config).await?;
    init_tables(clients, config).await?;
    tracing::info!(
        stream = %config.stream_name,
        table_prefix = %config.table_prefix,
        "aws resources ready"
    );
    Ok(())
}

/// Creates the stream when missing and waits until it is ACTIVE.
pub async fn init_stream(clients: &AwsClients, config: &AwsConfig) -> Result<()> {
    config.validate()?;
    let shard_count = i32::try_from(config.shard_count)
        .map_err(|_| Error::InvalidArgument("shard_count is too large".to_owned()))?;
    let created = retry(&clients.retry, || {
        kinesis::create_stream(clients, &config.stream_name, shard_count)
    })
    .await;
    already_exists_is_fine(created)?;
    wait_for_stream(clients, &config.stream_name).await
}

/// Creates the three tables when missing, waits until they are ACTIVE, and enables TTL on
/// the control table.
pub async fn init_tables(clients: &AwsClients, config: &AwsConfig) -> Result<()> {
    config.validate()?;
    for table in TableName::ALL {
        let name = config.table_name(table);
        let created = retry(&clients.retry, || dynamodb::create_table(clients, &name)).await;
        already_exists_is_fine(created)?;
    }
    for table in TableName::ALL {
        wait_for_table(clients, &config.table_name(table)).await?;
    }
    enable_ttl(clients, &config.table_name(TableName::Control)).await
}

/// Deletes the stream and the three tables; missing ones are fine. For tests and teardown:
/// the log is the source of truth, so nothing in Shoal calls this on its own.
pub async fn destroy(clients: &AwsClients, config: &AwsConfig) -> Result<()> {
    destroy_stream(clients, config).await?;
    destroy_tables(clients, config).await
}

/// Deletes the stream; a missing one is fine.
pub async fn destroy_stream(clients: &AwsClients, config: &AwsConfig) -> Result<()> {
    let deleted = retry(&clients.retry, || {
        kinesis::delete_stream(clients, &config.stream_name)
    })
    .await;
    missing_is_fine(deleted)
}

/// Deletes the three tables; missing ones are fine.
pub async fn destroy_tables(clients: &AwsClients, config: &AwsConfig) -> Result<()> {
    for table in TableName::ALL {
        let name = config.table_name(table);
        let deleted = retry(&clients.retry, || dynamodb::delete_table(clients, &name)).await;
        missing_is_fine(deleted)?;
    }
    Ok(())
}

fn already_exists_is_fine(result: std::result::Result<(), CallError>) -> Result<()> {
    match result {
        Err(error) if error.class == ErrorClass::InUse => Ok(()),
        other => other.map_err(CallError::into_storage),
    }
}

fn missing_is_fine(result: std::result::Result<(), CallError>) -> Result<()> {
    match result {
        // A table being deleted already is "in use".
        Err(error) if matches!(error.class, ErrorClass::NotFound | ErrorClass::InUse) => Ok(()),
        other => other.map_err(CallError::into_storage),
    }
}

fn timed_out(what: &str) -> Error {
    Error::Unavailable(format!(
        "{what} did not become ACTIVE within {}s",
        ACTIVE_TIMEOUT.as_secs()
    ))
}

async fn wait_for_stream(clients: &AwsClients, stream: &str) -> Result<()> {
    let deadline = Instant::now() + ACTIVE_TIMEOUT;
    loop {
        let (status, _) = retry(&clients.retry, || {
            kinesis::describe_stream_summary(clients, stream)
        })
        .await?;
        match status {
            StreamStatus::Active => return Ok(()),
            StreamStatus::Deleting => {
                return Err(Error::Backend(format!("stream {stream} is being deleted")));
            }
            _ if Instant::now() >= deadline => return Err(timed_out(stream)),
            _ => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

async fn wait_for_table(clients: &AwsClients, table: &str) -> Result<()> {
    let deadline = Instant::now() + ACTIVE_TIMEOUT;
    loop {
        let status = retry(&clients.retry, || dynamodb::describe_table(clients, table)).await?;
        match status {
            Some(TableStatus::Active) => return Ok(()),
            Some(TableStatus::Deleting) => {
                return Err(Error::Backend(format!("table {table} is being deleted")));
            }
            _ if Instant::now() >= deadline => return Err(timed_out(table)),
            _ => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

async fn enable_ttl(clients: &AwsClients, table: &str) -> Result<()> {
    let (status, attribute) = retry(&clients.retry, || {
        dynamodb::describe_time_to_live(clients, table)
    })
    .await?;
    let enabled = matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    );
    if enabled {
        if attribute.as_deref() != Some(TTL_ATTRIBUTE) {
            return Err(Error::Backend(format!(
                "table {table} expires items by {attribute:?}, Shoal needs {TTL_ATTRIBUTE:?}"
            )));
        }
        return Ok(());
    }
    let updated = retry(&clients.retry, || {
        dynamodb::update_time_to_live(clients, table, TTL_ATTRIBUTE)
    })
    .await;
    match updated {
        // Two `init`s racing: the other one enabled it meanwhile.
        Err(error)
            if error.class == ErrorClass::Invalid
                && error
                    .message
                    .to_ascii_lowercase()
                    .contains("already enabled") =>
        {
            Ok(())
        }
        other => other.map_err(CallError::into_storage),
    }
}
