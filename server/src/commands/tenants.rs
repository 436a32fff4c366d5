//! `shoal tenants create|list` and `shoal keys create|revoke`, with the admin token.
//!
//! A secret is printed once, by the command that creates it: the server keeps only its digest.

use super::{cell, print_json, print_table, time_cell};
use crate::client::{Client, ClientArgs, Secret, segment};
use clap::{Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub enum TenantsCommand {
    /// Create a tenant, with a first write key and read key (their secrets are shown once).
    Create {
        /// The tenant id: 1-64 characters of [A-Za-z0-9_-], starting with a letter or digit.
        name: String,
    },
    /// List every tenant.
    List,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key for a tenant and print its secret (shown once).
    Create {
        /// The tenant the key belongs to.
        #[arg(long)]
        tenant: String,
        /// What the key may do: `write` sends events, `read` queries.
        #[arg(long, value_enum)]
        kind: KeyKind,
    },
    /// Revoke a key by its id (not its secret); requests with it answer 401 from then on.
    Revoke {
        /// The key's id, as printed by `keys create` or `tenants create`.
        id: String,
    },
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum KeyKind {
    Write,
    Read,
}

pub async fn tenants(args: &ClientArgs, command: &TenantsCommand) -> anyhow::Result<()> {
    let client = Client::new(args, Secret::Admin)?;
    match command {
        TenantsCommand::Create { name } => {
            let answer = client
                .post_json("/v1/admin/tenants", &json!({ "id": name }))
                .await?;
            if args.json {
                return print_json(&answer);
            }
            println!("created tenant {name}");
            print_key(&answer["write_key"]);
            print_key(&answer["read_key"]);
            println!("The secrets are shown once: keep them now.");
        }
        TenantsCommand::List => {
            let answer = client.get("/v1/admin/tenants").await?;
            if args.json {
                return print_json(&answer);
            }
            let rows: Vec<Vec<String>> = answer["tenants"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|tenant| vec![cell(&tenant["id"]), time_cell(&tenant["created_at"])])
                .collect();
            print_table(&["TENANT", "CREATED"], &rows);
        }
    }
    Ok(())
}

pub async fn keys(args: &ClientArgs, command: &KeysCommand) -> anyhow::Result<()> {
    let client = Client::new(args, Secret::Admin)?;
    match command {
        KeysCommand::Create { tenant, kind } => {
            let kind = match kind {
                KeyKind::Write => "write",
                KeyKind::Read => "read",
            };
            let path = format!("/v1/admin/tenants/{}/keys", segment(tenant));
            let answer = client.post_json(&path, &json!({ "kind": kind })).await?;
            if args.json {
                return print_json(&answer);
            }
            println!("created a {kind} key for tenant {tenant}");
            print_key(&answer);
            println!("The secret is shown once: keep it now.");
        }
        KeysCommand::Revoke { id } => {
            let path = format!("/v1/admin/keys/{}", segment(id));
            client.call(client.request(Method::DELETE, &path)).await?;
            println!("revoked key {id}");
        }
    }
    Ok(())
}

fn print_key(key: &Value) {
    println!(
        "  {:<5} key {}  secret: {}",
        cell(&key["kind"]),
        cell(&key["id"]),
        cell(&key["secret"])
    );
}
