//! `shoal dump`: every event of a stopped server's log, as NDJSON, for inspection and checks.

use crate::config::Config;
use shoal_storage::EventLog;
use std::io::Write;
use std::path::Path;

const PAGE_EVENTS: usize = 10_000;

pub async fn run(data_dir: &Path) -> anyhow::Result<()> {
    let config = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    anyhow::ensure!(
        config.log_dir().exists(),
        "no log in {} (is this a shoal data directory?)",
        data_dir.display()
    );
    let data = crate::serve::DataDir::open(&config)?;
    let log = data.log.clone();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for shard in log.shards().await? {
        let mut after = None;
        loop {
            let batch = log.read(&shard.id, after.as_ref(), PAGE_EVENTS).await?;
            if batch.records.is_empty() {
                break;
            }
            for record in &batch.records {
                for (position, event) in record.positioned() {
                    let mut line = event.to_json();
                    line["shard"] = serde_json::Value::String(shard.id.clone());
                    line["position"] = serde_json::Value::String(position.to_string());
                    serde_json::to_writer(&mut out, &line)?;
                    out.write_all(b"\n")?;
                }
            }
            after = batch.last_position();
        }
    }
    out.flush()?;
    data.log.shutdown().await;
    Ok(())
}
