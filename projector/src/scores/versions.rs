//! Rules versions and the active-version pointer, in `control`.
//!
//! Layout: PK `_rules#<tenant>`:
//! - SK `pointer`: `active` (version number, absent before the first activation), `candidate`
//!   (the version being built or waiting for activation, absent when none), `next` (the number
//!   the next proposal takes);
//! - SK `v<version, 10 digits>`: `document` (JSON), `status`, `created_at`, `updated_at`.
//!
//! PK `_rules`, SK `<tenant>`: the tenants that have rules, so a restart finds them all.
//!
//! Every change of the pointer is a transaction conditional on what the pointer said when it
//! was read: two proposals for one tenant cannot both become the candidate, and an activation
//! flips exactly the candidate it was asked to.

use crate::scan::each_item;
use crate::{Error, Result};
use serde::Serialize;
use shoal_rules::{Document, Rules};
use shoal_schemas::time::now_millis;
use shoal_storage::{Condition, Item, Key, Query, Table, TableName, TransactOp, Update, Value};

const REGISTRY_PK: &str = "_rules";
const POINTER_SK: &str = "pointer";

fn tenant_pk(tenant: &str) -> String {
    format!("{REGISTRY_PK}#{tenant}")
}

fn version_sk(version: u32) -> String {
    format!("v{version:010}")
}

/// Where a version is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The candidate: being rebuilt, or built and waiting for activation.
    Candidate,
    Active,
    /// Replaced by a newer active version; its read models are deleted.
    Retired,
    /// Given up before activation; its read models are deleted.
    Abandoned,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Candidate => "candidate",
            Status::Active => "active",
            Status::Retired => "retired",
            Status::Abandoned => "abandoned",
        }
    }

    fn parse(text: &str) -> Option<Status> {
        match text {
            "candidate" => Some(Status::Candidate),
            "active" => Some(Status::Active),
            "retired" => Some(Status::Retired),
            "abandoned" => Some(Status::Abandoned),
            _ => None,
        }
    }
}

/// The pointer of one tenant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pointer {
    pub active: Option<u32>,
    pub candidate: Option<u32>,
    pub next: u32,
}

/// One stored version.
#[derive(Clone, Debug, Serialize)]
pub struct VersionRecord {
    pub version: u32,
    pub status: Status,
    pub created_at: i64,
    pub updated_at: i64,
    /// Activated by the manager as soon as it is ready.
    pub auto_activate: bool,
    pub document: Document,
}

fn number(item: &Item, name: &str) -> Option<u32> {
    item.get(name)
        .and_then(Value::as_f64)
        .map(|value| value as u32)
}

pub async fn pointer(tables: &dyn Table, tenant: &str) -> Result<Pointer> {
    let item = tables
        .get(TableName::Control, &Key::new(tenant_pk(tenant), POINTER_SK))
        .await?;
    Ok(match item {
        None => Pointer {
            next: 1,
            ..Pointer::default()
        },
        Some(item) => Pointer {
            active: number(&item, "active"),
            candidate: number(&item, "candidate"),
            next: number(&item, "next").unwrap_or(1),
        },
    })
}

/// The condition that the pointer still says what `seen` says.
fn unchanged(seen: &Pointer) -> Condition {
    let field = |name: &str, value: Option<u32>| match value {
        Some(value) => Condition::Eq(name.into(), Value::N(f64::from(value))),
        None => Condition::NotExists(name.into()),
    };
    if seen.next == 1 && seen.active.is_none() && seen.candidate.is_none() {
        // Never written, or written by nothing yet.
        return Condition::Or(vec![
            Condition::ItemNotExists,
            Condition::And(vec![
                field("active", None),
                field("candidate", None),
                field("next", Some(1)),
            ]),
        ]);
    }
    Condition::And(vec![
        field("active", seen.active),
        field("candidate", seen.candidate),
        field("next", Some(seen.next)),
    ])
}

fn pointer_update(tenant: &str, seen: &Pointer, new: &Pointer) -> TransactOp {
    let mut update = Update::new(Key::new(tenant_pk(tenant), POINTER_SK))
        .set("next", Value::N(f64::from(new.next)))
        .when(unchanged(seen));
    for (name, value) in [("active", new.active), ("candidate", new.candidate)] {
        update = match value {
            Some(value) => update.set(name, Value::N(f64::from(value))),
            None => update.remove(name),
        };
    }
    TransactOp::Update {
        table: TableName::Control,
        update,
    }
}

fn status_update(tenant: &str, version: u32, status: Status) -> TransactOp {
    TransactOp::Update {
        table: TableName::Control,
        update: Update::new(Key::new(tenant_pk(tenant), version_sk(version)))
            .set("status", Value::S(status.as_str().into()))
            .set("updated_at", Value::N(now_millis() as f64))
            .when(Condition::ItemExists),
    }
}

/// Stores `rules` as the tenant's new candidate and returns its version. Fails with
/// [`Error::Conflict`] while another candidate exists (one rebuild per tenant at a time).
/// With `auto_activate`, the manager activates the version itself once it is ready (caught up
/// and swept), as DESIGN.md describes; without, activation waits for an explicit call (the
/// issue's preview-then-activate).
pub async fn propose(
    tables: &dyn Table,
    tenant: &str,
    rules: &Rules,
    auto_activate: bool,
) -> Result<u32> {
    let seen = pointer(tables, tenant).await?;
    if let Some(candidate) = seen.candidate {
        return Err(Error::Conflict(format!(
            "tenant {tenant} already has a candidate rules version ({candidate}) being rebuilt or awaiting activation; activate or abandon it first"
        )));
    }
    let version = seen.next;
    let document = serde_json::to_string(rules.document())
        .map_err(|error| Error::InvalidArgument(error.to_string()))?;
    let now = now_millis() as f64;
    let mut record = Item::new();
    record.insert("document".into(), Value::S(document));
    record.insert("status".into(), Value::S(Status::Candidate.as_str().into()));
    record.insert("created_at".into(), Value::N(now));
    record.insert("auto_activate".into(), Value::Bool(auto_activate));
    record.insert("updated_at".into(), Value::N(now));
    let mut registry = Item::new();
    registry.insert("tenant".into(), Value::S(tenant.to_owned()));
    let new = Pointer {
        candidate: Some(version),
        next: version + 1,
        ..seen
    };
    let outcome = tables
        .transact(vec![
            pointer_update(tenant, &seen, &new),
            TransactOp::Put {
                table: TableName::Control,
                key: Key::new(tenant_pk(tenant), version_sk(version)),
                item: record,
                condition: Some(Condition::ItemNotExists),
            },
            TransactOp::Put {
                table: TableName::Control,
                key: Key::new(REGISTRY_PK, tenant),
                item: registry,
                condition: None,
            },
        ])
        .await;
    match outcome {
        Ok(()) => Ok(version),
        Err(shoal_storage::Error::ConditionFailed) => Err(Error::Conflict(format!(
            "the rules of tenant {tenant} changed meanwhile; retry"
        ))),
        Err(error) => Err(error.into()),
    }
}

/// Makes the candidate `version` active (the old active version is retired). Returns the
/// version it replaced.
pub async fn activate(tables: &dyn Table, tenant: &str, version: u32) -> Result<Option<u32>> {
    let seen = pointer(tables, tenant).await?;
    if seen.candidate != Some(version) {
        return Err(not_candidate(tenant, version, &seen));
    }
    let new = Pointer {
        active: Some(version),
        candidate: None,
        next: seen.next,
    };
    let mut ops = vec![
        pointer_update(tenant, &seen, &new),
        status_update(tenant, version, Status::Active),
    ];
    if let Some(old) = seen.active {
        ops.push(status_update(tenant, old, Status::Retired));
    }
    conditional(tables.transact(ops).await, tenant)?;
    Ok(seen.active)
}

/// Gives up the candidate `version`.
pub async fn abandon(tables: &dyn Table, tenant: &str, version: u32) -> Result<()> {
    let seen = pointer(tables, tenant).await?;
    if seen.candidate != Some(version) {
        return Err(not_candidate(tenant, version, &seen));
    }
    let new = Pointer {
        candidate: None,
        ..seen
    };
    conditional(
        tables
            .transact(vec![
                pointer_update(tenant, &seen, &new),
                status_update(tenant, version, Status::Abandoned),
            ])
            .await,
        tenant,
    )
}

fn conditional(outcome: shoal_storage::Result<()>, tenant: &str) -> Result<()> {
    match outcome {
        Ok(()) => Ok(()),
        Err(shoal_storage::Error::ConditionFailed) => Err(Error::Conflict(format!(
            "the rules of tenant {tenant} changed meanwhile; retry"
        ))),
        Err(error) => Err(error.into()),
    }
}

fn not_candidate(tenant: &str, version: u32, seen: &Pointer) -> Error {
    match seen.candidate {
        Some(candidate) => Error::Conflict(format!(
            "version {version} is not the candidate of tenant {tenant} (the candidate is {candidate})"
        )),
        None => Error::Conflict(format!(
            "tenant {tenant} has no candidate rules version (version {version} is not one)"
        )),
    }
}

/// One version of a tenant's rules.
pub async fn get(tables: &dyn Table, tenant: &str, version: u32) -> Result<Option<VersionRecord>> {
    let key = Key::new(tenant_pk(tenant), version_sk(version));
    let Some(item) = tables.get(TableName::Control, &key).await? else {
        return Ok(None);
    };
    decode(version, &item, &key).map(Some)
}

/// Every version of a tenant's rules, oldest first.
pub async fn list(tables: &dyn Table, tenant: &str) -> Result<Vec<VersionRecord>> {
    let query =
        Query::partition(tenant_pk(tenant)).range(shoal_storage::SortRange::Prefix("v".into()));
    let mut records = Vec::new();
    each_item(tables, TableName::Control, query, |key, item| {
        if let Some(version) = key.sk.strip_prefix('v').and_then(|v| v.parse().ok()) {
            records.push(decode(version, &item, &key)?);
        }
        Ok(())
    })
    .await?;
    Ok(records)
}

/// The tenants that have ever had rules.
pub async fn tenants(tables: &dyn Table) -> Result<Vec<String>> {
    let mut tenants = Vec::new();
    each_item(
        tables,
        TableName::Control,
        Query::partition(REGISTRY_PK),
        |key, _| {
            tenants.push(key.sk);
            Ok(())
        },
    )
    .await?;
    Ok(tenants)
}

fn decode(version: u32, item: &Item, key: &Key) -> Result<VersionRecord> {
    let text = item
        .get("document")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::corrupt(key, "no document"))?;
    let document: Document =
        serde_json::from_str(text).map_err(|error| Error::corrupt(key, error.to_string()))?;
    let status = item
        .get("status")
        .and_then(Value::as_str)
        .and_then(Status::parse)
        .ok_or_else(|| Error::corrupt(key, "bad status"))?;
    let time = |name| item.get(name).and_then(Value::as_f64).unwrap_or(0.0) as i64;
    Ok(VersionRecord {
        version,
        status,
        created_at: time("created_at"),
        updated_at: time("updated_at"),
        auto_activate: item.get("auto_activate") == Some(&Value::Bool(true)),
        document,
    })
}

/// The compiled rules of a stored document (validated again: the validation may have grown
/// stricter since it was stored, and a document that no longer passes must not be half-used).
pub fn compile(record: &VersionRecord) -> Result<Rules> {
    shoal_rules::parse::validate(record.document.clone()).map_err(|error| {
        Error::InvalidArgument(format!(
            "stored rules version {} no longer validates: {error}",
            record.version
        ))
    })
}
