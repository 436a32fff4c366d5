//! `shoal dlq list|redrive`: the events a projection could not apply (dead letters), behind
//! the admin token. Re-driving reads the event from the log again and applies it; a dead letter
//! goes away only when that succeeds.

use super::{cell, print_json, print_table, time_cell};
use crate::client::{Client, ClientArgs, Secret, http_error};
use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

/// Dead letters a page, the server's largest.
const PAGE: usize = 1000;

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// List dead letters: position, event id, tenant, error and attempts.
    List {
        #[command(flatten)]
        which: Which,
        /// Only this tenant's dead letters.
        #[arg(long)]
        tenant: Option<String>,
        /// List at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Apply dead-lettered events again, one (`--shard` and `--position`) or `--all` of a
    /// projection's; an event that still fails stays a dead letter.
    Redrive {
        #[command(flatten)]
        which: Which,
        /// The shard of the dead letter (as listed).
        #[arg(long, requires = "position", conflicts_with = "all")]
        shard: Option<String>,
        /// The position of the dead letter, `<sequence>:<index>` (as listed).
        #[arg(long, requires = "shard")]
        position: Option<String>,
        /// Every dead letter of the projection (of `--tenant` only, when given).
        #[arg(long, required_unless_present = "shard")]
        all: bool,
        /// With `--all`: only this tenant's dead letters.
        #[arg(long, requires = "all")]
        tenant: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct Which {
    /// The projection: archive, series, entities, or scores.<tenant>. `list` without it looks
    /// at every projection `shoal status` shows with dead letters (that needs a read key).
    #[arg(long)]
    projection: Option<String>,
    /// For scores.<tenant>: live (default), candidate or a rules version number.
    #[arg(long)]
    version: Option<String>,
}

impl Which {
    fn query(&self, projection: &str) -> String {
        let mut pairs = vec![("projection", projection)];
        if let Some(version) = &self.version {
            pairs.push(("version", version));
        }
        query_string(&pairs)
    }
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", crate::client::segment(value)))
        .collect::<Vec<_>>()
        .join("&")
}

pub async fn run(args: &ClientArgs, command: &DlqCommand) -> anyhow::Result<()> {
    let admin = Client::new(args, Secret::Admin)?;
    match command {
        DlqCommand::List {
            which,
            tenant,
            limit,
        } => {
            let projections = match &which.projection {
                Some(projection) => vec![projection.clone()],
                None => with_dead_letters(args).await?,
            };
            let mut letters = Vec::new();
            for projection in &projections {
                let wanted = limit.saturating_sub(letters.len());
                letters.extend(list(&admin, which, projection, tenant.as_deref(), wanted).await?);
            }
            if args.json {
                return print_json(&json!({ "dead_letters": letters }));
            }
            print_letters(&letters);
            Ok(())
        }
        DlqCommand::Redrive {
            which,
            shard,
            position,
            all,
            tenant,
        } => {
            let projection = which
                .projection
                .as_deref()
                .ok_or_else(|| anyhow!("redrive needs --projection"))?;
            let targets: Vec<(String, String)> = match (shard, position) {
                (Some(shard), Some(position)) => vec![(shard.clone(), position.clone())],
                _ if *all => list(&admin, which, projection, tenant.as_deref(), usize::MAX)
                    .await?
                    .iter()
                    .map(|letter| (cell(&letter["shard"]), cell(&letter["position"])))
                    .collect(),
                _ => bail!("give --shard and --position, or --all"),
            };
            redrive(&admin, args.json, which, projection, &targets).await
        }
    }
}

/// The projections whose status shows stored dead letters.
async fn with_dead_letters(args: &ClientArgs) -> anyhow::Result<Vec<String>> {
    let reader = Client::new(args, Secret::ReadKey)
        .map_err(|error| anyhow!("{error:#}; or name the projection with --projection"))?;
    let status = reader.get("/v1/projections").await?;
    Ok(status["projections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|projection| projection["dead_letters"].as_u64().unwrap_or(0) > 0)
        .filter_map(|projection| projection["name"].as_str().map(str::to_owned))
        .collect())
}

/// Up to `limit` dead letters of `projection` (of `tenant` only, when given), page by page.
async fn list(
    admin: &Client,
    which: &Which,
    projection: &str,
    tenant: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<Value>> {
    let mut letters = Vec::new();
    let mut cursor: Option<String> = None;
    while letters.len() < limit {
        let mut path = format!(
            "/v1/admin/deadletters?{}&limit={PAGE}",
            which.query(projection)
        );
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={}", crate::client::segment(cursor)));
        }
        let page = admin.get(&path).await?;
        let found = page["dead_letters"].as_array().cloned().unwrap_or_default();
        letters.extend(
            found
                .into_iter()
                .filter(|letter| tenant.is_none_or(|tenant| letter["tenant"] == tenant)),
        );
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    letters.truncate(limit);
    Ok(letters)
}

fn print_letters(letters: &[Value]) {
    if letters.is_empty() {
        println!("no dead letters");
        return;
    }
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|letter| {
            vec![
                format!(
                    "{}@{}",
                    cell(&letter["projection"]),
                    cell(&letter["version"])
                ),
                cell(&letter["shard"]),
                cell(&letter["position"]),
                cell(&letter["tenant"]),
                cell(&letter["event_id"]),
                cell(&letter["attempts"]),
                time_cell(&letter["time"]),
                cell(&letter["error"]),
            ]
        })
        .collect();
    print_table(
        &[
            "PROJECTION",
            "SHARD",
            "POSITION",
            "TENANT",
            "EVENT",
            "ATTEMPTS",
            "DEAD-LETTERED",
            "ERROR",
        ],
        &rows,
    );
}

async fn redrive(
    admin: &Client,
    json_output: bool,
    which: &Which,
    projection: &str,
    targets: &[(String, String)],
) -> anyhow::Result<()> {
    let (mut redriven, mut failing) = (0usize, 0usize);
    let mut answers = Vec::new();
    for (shard, position) in targets {
        let path = format!(
            "/v1/admin/deadletters/redrive?{}&{}",
            which.query(projection),
            query_string(&[("shard", shard), ("position", position)])
        );
        let response = admin.send(admin.request(Method::POST, &path)).await?;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            redriven += 1;
            if !json_output {
                println!("{shard} {position}: re-driven");
            }
            answers.push(serde_json::from_slice(&body).unwrap_or(Value::Null));
        } else if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY {
            // Still failing is an answer about this event, not about the command: go on.
            failing += 1;
            let error = http_error(status, &body);
            if !json_output {
                println!("{shard} {position}: still failing: {error}");
            }
            answers.push(serde_json::from_slice(&body).unwrap_or(Value::Null));
        } else {
            return Err(http_error(status, &body).context(format!("re-driving {shard} {position}")));
        }
    }
    if json_output {
        print_json(&json!({ "redriven": redriven, "still_failing": failing, "answers": answers }))?;
    } else {
        println!("{redriven} re-driven, {failing} still failing");
    }
    if failing > 0 {
        bail!("{failing} dead letters still fail");
    }
    Ok(())
}
