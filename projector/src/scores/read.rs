//! Reads of the scores read model, for the query side.
//!
//! - [`get`]: one entity's state (the caller evaluates it with the version's rules to explain
//!   the score);
//! - [`list`]: walks the version's score index in score order within score bounds, filtering
//!   by band and stage (held in the entry), up to `limit` matches or `max_scan` entries; the
//!   cursor is the last scanned entry's sort key;
//! - [`distribution`]: bands per stage over the whole index;
//! - [`compare`]: a candidate version against the live one, entity by entity: the back-test.

use super::{ScoreState, decode_entry, index_pk, index_sk, state_key};
use crate::{Error, Result};
use serde::Serialize;
use shoal_rules::Band;
use shoal_storage::{Item, Query, SortRange, Table, TableName, Value};
use std::collections::{BTreeMap, HashMap};

/// One entity's stored state, or `None` when the version has never seen it.
pub async fn get(
    tables: &dyn Table,
    version: u32,
    tenant: &str,
    entity: &str,
) -> Result<Option<ScoreState>> {
    let key = state_key(version, tenant, entity);
    let Some(item) = tables.get(TableName::Views, &key).await? else {
        return Ok(None);
    };
    Ok(Some(decode_entry(&key, Some(&item))?.state))
}

/// A list request.
#[derive(Clone, Debug, PartialEq)]
pub struct ListScores {
    pub band: Option<Band>,
    pub stage: Option<String>,
    pub min_score: u8,
    pub max_score: u8,
    /// Highest score first (the default).
    pub descending: bool,
    pub cursor: Option<String>,
    pub limit: usize,
    pub max_scan: usize,
}

impl Default for ListScores {
    fn default() -> Self {
        ListScores {
            band: None,
            stage: None,
            min_score: 0,
            max_score: 100,
            descending: true,
            cursor: None,
            limit: 50,
            max_scan: 10_000,
        }
    }
}

/// One listed entity.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScoreRow {
    pub entity: String,
    pub score: u8,
    pub band: Band,
    pub stage: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ScorePage {
    pub entities: Vec<ScoreRow>,
    pub next: Option<String>,
}

fn row(key: &shoal_storage::Key, item: &Item) -> Result<ScoreRow> {
    let entity = item
        .get("entity")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::corrupt(key, "missing entity"))?;
    let band = item
        .get("band")
        .and_then(Value::as_str)
        .and_then(Band::parse)
        .ok_or_else(|| Error::corrupt(key, "missing band"))?;
    Ok(ScoreRow {
        entity: entity.to_owned(),
        score: item.get("score").and_then(Value::as_f64).unwrap_or(0.0) as u8,
        band,
        stage: item.get("stage").and_then(Value::as_str).map(str::to_owned),
    })
}

fn valid_cursor(cursor: &str) -> bool {
    cursor
        .split_once('#')
        .is_some_and(|(score, _)| score.len() == 3 && score.bytes().all(|b| b.is_ascii_digit()))
}

/// A page of entities by score.
pub async fn list(
    tables: &dyn Table,
    version: u32,
    tenant: &str,
    request: &ListScores,
) -> Result<ScorePage> {
    if let Some(cursor) = &request.cursor
        && !valid_cursor(cursor)
    {
        return Err(Error::InvalidArgument("cursor".into()));
    }
    let mut low = format!("{:03}#", request.min_score);
    // `$` sorts after `#`: every entity of the top score is inside the bound.
    let mut high = format!("{:03}$", request.max_score);
    if let Some(cursor) = &request.cursor {
        if request.descending {
            high = cursor.clone();
        } else {
            low = cursor.clone();
        }
    }
    if low > high {
        return Ok(ScorePage::default());
    }
    let mut query = Query::partition(index_pk(version, tenant))
        .range(SortRange::Between(low, high))
        .limit(request.limit.clamp(1, 1000));
    if request.descending {
        query = query.reverse();
    }
    let mut out = ScorePage::default();
    let mut scanned = 0usize;
    loop {
        let page = tables.query(TableName::Views, &query).await?;
        for (key, item) in &page.items {
            if request.cursor.as_deref() == Some(key.sk.as_str()) {
                continue;
            }
            scanned += 1;
            let row = row(key, item)?;
            let wanted = request.band.is_none_or(|band| band == row.band)
                && request
                    .stage
                    .as_ref()
                    .is_none_or(|stage| row.stage.as_ref() == Some(stage));
            if wanted {
                out.entities.push(row);
            }
            if out.entities.len() >= request.limit || scanned >= request.max_scan {
                out.next = Some(key.sk.clone());
                return Ok(out);
            }
        }
        match page.next {
            Some(next) => query = query.after(Some(next)),
            None => return Ok(out),
        }
    }
}

/// Calls `visit` for every entry of a version's index, in score order.
pub(crate) async fn for_each(
    tables: &dyn Table,
    version: u32,
    tenant: &str,
    mut visit: impl FnMut(ScoreRow),
) -> Result<()> {
    let query = Query::partition(index_pk(version, tenant)).limit(1000);
    crate::scan::each_item(tables, TableName::Views, query, |key, item| {
        visit(row(&key, &item)?);
        Ok(())
    })
    .await
}

/// The key a stage is reported under (`-` for entities no stage matched).
fn stage_label(stage: &Option<String>) -> String {
    stage.clone().unwrap_or_else(|| "-".to_owned())
}

/// Entities per band, per stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Distribution {
    pub entities: u64,
    /// Stage (`-`: none) → band → count.
    pub stages: BTreeMap<String, BTreeMap<Band, u64>>,
    /// Band → count over all stages.
    pub bands: BTreeMap<Band, u64>,
}

pub async fn distribution(tables: &dyn Table, version: u32, tenant: &str) -> Result<Distribution> {
    let mut out = Distribution::default();
    for_each(tables, version, tenant, |row| {
        out.entities += 1;
        *out.stages
            .entry(stage_label(&row.stage))
            .or_default()
            .entry(row.band)
            .or_default() += 1;
        *out.bands.entry(row.band).or_default() += 1;
    })
    .await?;
    Ok(out)
}

/// How many entities of one candidate stage move from one band to another.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Transition {
    /// The entity's stage under the candidate (`-`: none).
    pub stage: String,
    pub from: Band,
    pub to: Band,
    pub entities: u64,
}

/// A candidate version against the live one.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Comparison {
    pub live_version: u32,
    pub candidate_version: u32,
    pub entities: u64,
    pub unchanged: u64,
    /// Band better under the candidate (Bad → Normal, Normal → Good, Bad → Good).
    pub improved: u64,
    pub worsened: u64,
    /// Same band, different stage.
    pub stage_changed: u64,
    /// Every band change, by candidate stage, most entities first.
    pub transitions: Vec<Transition>,
    /// Stage moves (live stage → candidate stage) with counts.
    pub stages: Vec<StageMove>,
    pub only_live: u64,
    pub only_candidate: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageMove {
    pub from: String,
    pub to: String,
    pub entities: u64,
}

pub async fn compare(
    tables: &dyn Table,
    tenant: &str,
    live: u32,
    candidate: u32,
) -> Result<Comparison> {
    let mut before: HashMap<String, (Band, Option<String>)> = HashMap::new();
    for_each(tables, live, tenant, |row| {
        before.insert(row.entity, (row.band, row.stage));
    })
    .await?;
    let mut out = Comparison {
        live_version: live,
        candidate_version: candidate,
        ..Comparison::default()
    };
    let mut transitions: BTreeMap<(String, Band, Band), u64> = BTreeMap::new();
    let mut stages: BTreeMap<(String, String), u64> = BTreeMap::new();
    for_each(tables, candidate, tenant, |row| {
        let Some((band, stage)) = before.remove(&row.entity) else {
            out.only_candidate += 1;
            return;
        };
        out.entities += 1;
        if band != row.band {
            // `Band` orders Good < Normal < Bad.
            if row.band < band {
                out.improved += 1;
            } else {
                out.worsened += 1;
            }
            *transitions
                .entry((stage_label(&row.stage), band, row.band))
                .or_default() += 1;
        } else if stage != row.stage {
            out.stage_changed += 1;
        } else {
            out.unchanged += 1;
        }
        if stage != row.stage {
            *stages
                .entry((stage_label(&stage), stage_label(&row.stage)))
                .or_default() += 1;
        }
    })
    .await?;
    out.only_live = before.len() as u64;
    out.transitions = transitions
        .into_iter()
        .map(|((stage, from, to), entities)| Transition {
            stage,
            from,
            to,
            entities,
        })
        .collect();
    out.transitions
        .sort_by_key(|t| std::cmp::Reverse(t.entities));
    out.stages = stages
        .into_iter()
        .map(|((from, to), entities)| StageMove { from, to, entities })
        .collect();
    out.stages.sort_by_key(|m| std::cmp::Reverse(m.entities));
    Ok(out)
}

/// The index sort key of a row (for tests and cursors built by callers).
pub fn cursor_of(row: &ScoreRow) -> String {
    index_sk(row.score, &row.entity)
}
