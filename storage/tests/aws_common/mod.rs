//! Shared set-up of the AWS backend tests: endpoints of the local emulators, a fresh stream and
//! fresh tables per test (random names), deleted again when the test's guard drops.
//!
//! The emulators are started by `scripts/emulators.sh start`, which writes `.emulators/env`.
//! Without `SHOAL_TEST_DYNAMODB_ENDPOINT` / `SHOAL_TEST_KINESIS_ENDPOINT` every test fails with
//! a message saying so: these tests are never skipped silently.

#![allow(dead_code)] // each test binary uses its own part of this module

use aws_config::{BehaviorVersion, Region};
use aws_sdk_kinesis::config::Credentials;
use shoal_storage::aws::{self, AwsClients, AwsConfig, DynamoTables, KinesisLog, RetryPolicy};
use shoal_storage::{EventLog, Table};
use std::sync::Arc;
use std::time::Duration;

pub const DYNAMODB_VARIABLE: &str = "SHOAL_TEST_DYNAMODB_ENDPOINT";
pub const KINESIS_VARIABLE: &str = "SHOAL_TEST_KINESIS_ENDPOINT";
/// Shards of each test stream: more than one, so entities spread, few, so reads stay quick.
pub const TEST_SHARDS: u32 = 2;

fn endpoint(variable: &str) -> String {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{variable} is not set. The AWS backend tests run against local emulators: \
             run `scripts/emulators.sh start` and then `source .emulators/env` \
             (or `eval \"$(scripts/emulators.sh env)\"`) before `cargo test`."
        ),
    }
}

/// A configuration naming resources unique to this test.
pub fn config() -> AwsConfig {
    let name = format!(
        "shoal-test-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut config = AwsConfig::new("us-east-1", name.clone(), name);
    config.dynamodb_endpoint_url = Some(endpoint(DYNAMODB_VARIABLE));
    config.kinesis_endpoint_url = Some(endpoint(KINESIS_VARIABLE));
    config.shard_count = TEST_SHARDS;
    config.retry = RetryPolicy::fast();
    config.attempt_timeout = Duration::from_secs(20);
    config.read_poll_interval = Duration::from_millis(100);
    config
}

/// Clients for the emulators, with fixed dummy credentials (the emulators accept any).
pub async fn clients(config: &AwsConfig) -> AwsClients {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .credentials_provider(Credentials::new(
            "shoaltestkey",
            "shoaltestsecret",
            None,
            None,
            "shoal-tests",
        ))
        .load()
        .await;
    AwsClients::from_sdk_config(&sdk, config)
}

/// What a test created; deleting it when dropped.
pub struct Resources {
    config: AwsConfig,
    stream: bool,
    tables: bool,
}

impl Resources {
    pub fn config(&self) -> &AwsConfig {
        &self.config
    }
}

impl Drop for Resources {
    fn drop(&mut self) {
        // Drop is synchronous and may run inside a single-threaded test runtime, so the cleanup
        // gets a thread, a runtime and clients of its own.
        let config = self.config.clone();
        let (stream, tables) = (self.stream, self.tables);
        let cleanup = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => return eprintln!("cleanup of {}: {error}", config.stream_name),
            };
            runtime.block_on(async {
                let clients = clients(&config).await;
                if stream && let Err(error) = aws::destroy_stream(&clients, &config).await {
                    eprintln!("could not delete stream {}: {error}", config.stream_name);
                }
                if tables && let Err(error) = aws::destroy_tables(&clients, &config).await {
                    eprintln!("could not delete tables {}-*: {error}", config.table_prefix);
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Fresh tables (and the clients, for fault injection).
pub async fn tables_with_clients() -> (Arc<DynamoTables>, AwsClients, Resources) {
    let config = config();
    let clients = clients(&config).await;
    aws::init_tables(&clients, &config)
        .await
        .expect("create test tables");
    let tables = Arc::new(DynamoTables::new(clients.clone(), &config));
    let resources = Resources {
        config,
        stream: false,
        tables: true,
    };
    (tables, clients, resources)
}

/// Fresh tables, as the table conformance suite takes them.
pub async fn tables() -> (Arc<dyn Table>, Resources) {
    let (tables, _, resources) = tables_with_clients().await;
    (tables, resources)
}

/// A fresh stream with its control table (for dedup), and the clients.
pub async fn log_with_clients(config: AwsConfig) -> (Arc<KinesisLog>, AwsClients, Resources) {
    let clients = clients(&config).await;
    aws::init(&clients, &config)
        .await
        .expect("create test stream and tables");
    let log = Arc::new(KinesisLog::new(clients.clone(), &config).expect("kinesis log"));
    let resources = Resources {
        config,
        stream: true,
        tables: true,
    };
    (log, clients, resources)
}

/// A fresh log, as the log conformance suite takes it.
pub async fn log() -> (Arc<dyn EventLog>, Resources) {
    let (log, _, resources) = log_with_clients(config()).await;
    (log, resources)
}
