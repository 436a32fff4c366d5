//! `shoal rules validate|apply|activate|abandon|list` and `shoal replay`.
//!
//! `validate` works offline with the server's own validation; the rest use the admin token.
//! A rules change never edits the live scores: `apply` stores a candidate version that is
//! rebuilt from the start of the log beside the live one, and `activate` flips to it once it
//! has caught up (docs/rules.md).

use super::{cell, print_json, print_table, time_cell};
use crate::client::{Client, ClientArgs, Secret, segment};
use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Check a rules document (JSON for `.json`, YAML otherwise) with the server's validation,
    /// offline; errors name the field, line and column.
    Validate {
        /// The document.
        file: PathBuf,
    },
    /// Send a new rules document for a tenant: it becomes the candidate version, rebuilt from
    /// the start of the log beside the live one (watch it with `shoal status`).
    Apply {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The document: JSON for `.json`, YAML otherwise.
        file: PathBuf,
        /// Make it live by itself as soon as it has caught up, instead of waiting for
        /// `shoal rules activate`.
        #[arg(long)]
        activate_when_ready: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a candidate version live; refused (409) until it has caught up with the log.
    Activate {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The candidate's version number.
        version: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Give up a candidate version; its read models are deleted, the live version stays.
    Abandon {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The candidate's version number.
        version: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A tenant's rules versions and their status.
    List {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn run(command: &RulesCommand) -> anyhow::Result<()> {
    match command {
        RulesCommand::Validate { file } => validate(file),
        RulesCommand::Apply {
            tenant,
            file,
            activate_when_ready,
            client,
        } => apply(client, tenant, file, *activate_when_ready).await,
        RulesCommand::Activate {
            tenant,
            version,
            client,
        } => {
            let api = Client::new(client, Secret::Admin)?;
            let path = format!("{}/{version}/activate", rules_path(tenant));
            let answer = api.call(api.request(Method::POST, &path)).await?;
            if client.json {
                return print_json(&answer);
            }
            match answer["replaced"].as_u64() {
                Some(old) => {
                    println!("tenant {tenant}: version {version} is live (replaced {old})")
                }
                None => println!("tenant {tenant}: version {version} is live"),
            }
            Ok(())
        }
        RulesCommand::Abandon {
            tenant,
            version,
            client,
        } => {
            let api = Client::new(client, Secret::Admin)?;
            let path = format!("{}/{version}", rules_path(tenant));
            let answer = api.call(api.request(Method::DELETE, &path)).await?;
            if client.json {
                return print_json(&answer);
            }
            println!("tenant {tenant}: version {version} abandoned");
            Ok(())
        }
        RulesCommand::List { tenant, client } => {
            let api = Client::new(client, Secret::Admin)?;
            let answer = api.get(&rules_path(tenant)).await?;
            if client.json {
                return print_json(&answer);
            }
            print_versions(&answer);
            Ok(())
        }
    }
}

fn rules_path(tenant: &str) -> String {
    format!("/v1/admin/tenants/{}/rules", segment(tenant))
}

fn validate(file: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let format = shoal_rules::Format::from_path(file);
    let rules = shoal_rules::parse(&text, format)
        .map_err(|error| anyhow!("{}: {error}", file.display()))?;
    let document = rules.document();
    println!(
        "{}: valid ({} conditions, {} stages, {} scorecards)",
        file.display(),
        document.conditions.len(),
        document.stages.len(),
        document.scorecards.len()
    );
    Ok(())
}

async fn apply(
    args: &ClientArgs,
    tenant: &str,
    file: &Path,
    activate_when_ready: bool,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let content_type = match shoal_rules::Format::from_path(file) {
        shoal_rules::Format::Json => "application/json",
        shoal_rules::Format::Yaml => "application/yaml",
    };
    let api = Client::new(args, Secret::Admin)?;
    let answer = propose(&api, tenant, text, content_type, activate_when_ready).await?;
    if args.json {
        return print_json(&answer);
    }
    print_proposed(tenant, &answer);
    Ok(())
}

async fn propose(
    api: &Client,
    tenant: &str,
    body: String,
    content_type: &str,
    activate_when_ready: bool,
) -> anyhow::Result<Value> {
    let mut path = rules_path(tenant);
    if activate_when_ready {
        path.push_str("?activate=when_ready");
    }
    api.call(
        api.request(Method::PUT, &path)
            .header(CONTENT_TYPE, content_type)
            .body(body),
    )
    .await
}

fn print_proposed(tenant: &str, answer: &Value) {
    let version = cell(&answer["version"]);
    println!("tenant {tenant}: rules version {version} is the candidate");
    println!("  {}", cell(&answer["message"]));
    if answer["activate"] == "when_ready" {
        println!("  follow it with `shoal status` or `shoal rules list --tenant {tenant}`");
    } else {
        println!(
            "  follow it with `shoal status`, then `shoal rules activate --tenant {tenant} {version}`"
        );
    }
}

fn print_versions(overview: &Value) {
    let rows: Vec<Vec<String>> = overview["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|version| {
            vec![
                cell(&version["version"]),
                cell(&version["status"]),
                time_cell(&version["created_at"]),
                cell(&version["auto_activate"]),
                cell(&version["caught_up"]),
                cell(&version["ready"]),
                time_cell(&version["swept_at"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("tenant {}: no rules yet", cell(&overview["tenant"]));
        return;
    }
    print_table(
        &[
            "VERSION",
            "STATUS",
            "CREATED",
            "AUTO-ACTIVATE",
            "CAUGHT UP",
            "READY",
            "SWEPT",
        ],
        &rows,
    );
}

/// `shoal replay --projection scores.<tenant>`: the live rules document sent again as a new
/// version, which rebuilds the tenant's scores from the start of the log beside the live
/// ones and takes over once caught up. Nothing is deleted first, so queries keep answering
/// from the live version throughout. The other projections have no rebuild in the API.
pub async fn replay(args: &ClientArgs, projection: &str) -> anyhow::Result<()> {
    let Some(tenant) = projection.strip_prefix("scores.") else {
        bail!(
            "only a tenant's scores (scores.<tenant>) can be replayed through the API: it rebuilds \
             a new rules version beside the live one; {projection:?} has no safe rebuild while \
             the server runs"
        );
    };
    let api = Client::new(args, Secret::Admin)?;
    let overview = api.get(&rules_path(tenant)).await?;
    let active = overview["active"]
        .as_u64()
        .ok_or_else(|| anyhow!("tenant {tenant} has no live rules version to replay"))?;
    let document = overview["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|version| version["version"].as_u64() == Some(active))
        .map(|version| &version["document"])
        .filter(|document| document.is_object())
        .ok_or_else(|| anyhow!("the server did not return the document of version {active}"))?;
    let answer = propose(
        &api,
        tenant,
        serde_json::to_string(document)?,
        "application/json",
        true,
    )
    .await?;
    if args.json {
        return print_json(&answer);
    }
    println!(
        "replaying {projection}: version {active}'s rules sent again as version {}",
        cell(&answer["version"])
    );
    print_proposed(tenant, &answer);
    Ok(())
}
