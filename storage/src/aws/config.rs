//! Where the AWS resources are and how to reach them: [`AwsConfig`] and [`AwsClients`].
//!
//! Invariants:
//! - the SDK's own retries are disabled: [`super::retry`] is the one retry layer, so attempts do
//!   not multiply and fault injection exercises the same path as real errors;
//! - every call has an attempt timeout, so a hung connection becomes a retryable `timeout`
//!   instead of a stuck append;
//! - an endpoint override (LocalStack, the emulators of `scripts/emulators.sh`) applies per
//!   service, because the two emulators listen on different ports.

use crate::aws::fault::FaultPlan;
use crate::aws::retry::RetryPolicy;
use crate::table::TableName;
use crate::{Error, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use std::sync::Arc;
use std::time::Duration;

/// Default dedup window of the Kinesis log: the same as the embedded log's.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// The AWS resources Shoal uses and how to reach them.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsConfig {
    pub region: String,
    /// Endpoint override for both services (e.g. LocalStack); `None` for AWS itself.
    pub endpoint_url: Option<String>,
    /// Endpoint override for Kinesis alone; wins over `endpoint_url`.
    pub kinesis_endpoint_url: Option<String>,
    /// Endpoint override for DynamoDB alone; wins over `endpoint_url`.
    pub dynamodb_endpoint_url: Option<String>,
    /// The Kinesis data stream holding the log.
    pub stream_name: String,
    /// The DynamoDB tables are `{table_prefix}-events`, `-views` and `-control`.
    pub table_prefix: String,
    /// Shards of the stream when `init` creates it (an existing stream keeps its own).
    pub shard_count: u32,
    /// An event whose `tenant + entity + id` was appended this long ago or less is a duplicate.
    pub dedup_window: Duration,
    pub retry: RetryPolicy,
    /// Time limit of one attempt of one call.
    pub attempt_timeout: Duration,
    /// How often `wait_for` polls a shard that has nothing new (the Kinesis Client Library's
    /// default idle time is 1 s; a shard serves 5 reads a second to all its readers).
    pub read_poll_interval: Duration,
}

impl AwsConfig {
    /// Defaults for a stream and table prefix in a region.
    pub fn new(
        region: impl Into<String>,
        stream_name: impl Into<String>,
        table_prefix: impl Into<String>,
    ) -> Self {
        AwsConfig {
            region: region.into(),
            endpoint_url: None,
            kinesis_endpoint_url: None,
            dynamodb_endpoint_url: None,
            stream_name: stream_name.into(),
            table_prefix: table_prefix.into(),
            shard_count: 4,
            dedup_window: DEFAULT_DEDUP_WINDOW,
            retry: RetryPolicy::default(),
            attempt_timeout: Duration::from_secs(10),
            read_poll_interval: Duration::from_secs(1),
        }
    }

    /// The DynamoDB table name of a logical table.
    pub fn table_name(&self, table: TableName) -> String {
        format!("{}-{}", self.table_prefix, table.as_str())
    }

    /// Rejects settings that cannot work, naming the field. Names follow the services' rules:
    /// stream names 1–128 of `[a-zA-Z0-9_.-]`, table names 3–255 of the same alphabet.
    pub fn validate(&self) -> Result<()> {
        let plain = |text: &str| {
            text.bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
        };
        if self.region.is_empty() {
            return Err(Error::InvalidArgument(
                "aws region must not be empty".into(),
            ));
        }
        if self.stream_name.is_empty() || self.stream_name.len() > 128 || !plain(&self.stream_name)
        {
            return Err(Error::InvalidArgument(format!(
                "stream_name {:?} must be 1 to 128 of [a-zA-Z0-9_.-]",
                self.stream_name
            )));
        }
        // The longest suffix is "-control" (8 bytes); DynamoDB allows 255.
        if self.table_prefix.len() < 3
            || self.table_prefix.len() > 255 - 8
            || !plain(&self.table_prefix)
        {
            return Err(Error::InvalidArgument(format!(
                "table_prefix {:?} must be 3 to 247 of [a-zA-Z0-9_.-]",
                self.table_prefix
            )));
        }
        if self.shard_count == 0 {
            return Err(Error::InvalidArgument(
                "shard_count must be at least 1".into(),
            ));
        }
        if self.retry.max_attempts == 0 {
            return Err(Error::InvalidArgument(
                "retry.max_attempts must be at least 1".into(),
            ));
        }
        Ok(())
    }

    fn kinesis_endpoint(&self) -> Option<&str> {
        self.kinesis_endpoint_url
            .as_deref()
            .or(self.endpoint_url.as_deref())
    }

    fn dynamodb_endpoint(&self) -> Option<&str> {
        self.dynamodb_endpoint_url
            .as_deref()
            .or(self.endpoint_url.as_deref())
    }
}

/// The service clients and the fault plan, shared by the log and the tables. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub(crate) kinesis: aws_sdk_kinesis::Client,
    pub(crate) dynamodb: aws_sdk_dynamodb::Client,
    pub(crate) faults: Arc<FaultPlan>,
    pub(crate) retry: RetryPolicy,
}

impl AwsClients {
    /// Clients with the default credential chain (environment, profile, IMDS, …) in the
    /// configured region.
    pub async fn connect(config: &AwsConfig) -> Result<Self> {
        config.validate()?;
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .load()
            .await;
        Ok(Self::from_sdk_config(&sdk, config))
    }

    /// Clients from an SDK configuration the caller loaded (with its own credentials), with
    /// the endpoint overrides, timeouts and retry settings of `config`.
    pub fn from_sdk_config(sdk: &SdkConfig, config: &AwsConfig) -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(config.attempt_timeout)
            .build();
        let mut kinesis = aws_sdk_kinesis::config::Builder::from(sdk)
            .region(Region::new(config.region.clone()))
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts.clone());
        if let Some(url) = config.kinesis_endpoint() {
            kinesis = kinesis.endpoint_url(url);
        }
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk)
            .region(Region::new(config.region.clone()))
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts);
        if let Some(url) = config.dynamodb_endpoint() {
            dynamodb = dynamodb.endpoint_url(url);
        }
        AwsClients {
            kinesis: aws_sdk_kinesis::Client::from_conf(kinesis.build()),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            faults: Arc::new(FaultPlan::default()),
            retry: config.retry,
        }
    }

    /// The fault plan every call consults (tests script throttling and partial failures here).
    pub fn faults(&self) -> &Arc<FaultPlan> {
        &self.faults
    }

    /// The Kinesis client, for operations outside the log (resharding, tooling).
    pub fn kinesis(&self) -> &aws_sdk_kinesis::Client {
        &self.kinesis
    }

    /// The DynamoDB client, for operations outside the tables (tooling).
    pub fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.dynamodb
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_names() {
        let config = AwsConfig::new("us-east-1", "shoal-log", "shoal");
        assert!(config.validate().is_ok());
        assert_eq!(config.table_name(TableName::Control), "shoal-control");
        let mut bad = config.clone();
        bad.stream_name = "a b".into();
        assert!(bad.validate().is_err());
        let mut bad = config.clone();
        bad.table_prefix = "ab".into();
        assert!(bad.validate().is_err());
        let mut bad = config;
        bad.shard_count = 0;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn per_service_endpoint_wins() {
        let mut config = AwsConfig::new("us-east-1", "s", "shoal");
        config.endpoint_url = Some("http://127.0.0.1:1".into());
        config.kinesis_endpoint_url = Some("http://127.0.0.1:2".into());
        assert_eq!(config.kinesis_endpoint(), Some("http://127.0.0.1:2"));
        assert_eq!(config.dynamodb_endpoint(), Some("http://127.0.0.1:1"));
    }
}
