//! The retention sweep: per tenant and series, deletes the items each resolution no longer
//! keeps, on every backend, through the `Table` API alone.
//!
//! One round walks every tenant's series list (`v<version>#<tenant>#serieslist`) and, per page of
//! series, loads their fence items in one `batch_get`. For each series it:
//! 1. deletes the items below the fences *as stored* (advanced by an earlier round), querying
//!    each resolution's sort-key range below its fence;
//! 2. advances the fences to what the tenant's retention asks for now (`Retention::fences_at`),
//!    conditional on the fences being what it read.
//!
//! Deleting one round after fencing is what makes the fold's decision safe on a backend whose
//! `batch_get` is not a snapshot (DynamoDB): a batch that loaded a stale fence and then found a
//! bucket deleted would recompute rollups from nothing. An item is deleted only after its fence
//! has been stored for at least one sweep interval (minutes), far longer than one load. A flush
//! from a stale cache cannot write a deleted item back either (`flush.rs`: an item that existed
//! when loaded must still exist).
//!
//! Bounded: a round spends at most `budget` units (one per series visited, one per item deleted)
//! and the next round resumes where it stopped. Cheap when nothing expires: one `batch_get` per
//! page of series, and a fence update per series when an hour (raw), a day (minute) or a block
//! (hour, day) has passed.
//!
//! The tenant's retention is its *active* rules' `series.retention_days` (a candidate's does not
//! apply until it is activated), the defaults for whatever they leave out and for tenants
//! without rules. Retention applies to every version of the series projection alike.

use super::read::Resolution;
use super::retention::{FENCE_SK, Fences, Retention};
use super::{VERSION, item_sk, list_pk, series_pk};
use crate::periodic::Periodic;
use crate::scores::manager::Clock;
use crate::scores::versions;
use crate::{Result, telemetry};
use serde::Serialize;
use shoal_storage::tenants::TenantStore;
use shoal_storage::{Item, Key, Query, SortRange, Table, TableName, Update, WriteOp};
use std::sync::Arc;
use std::time::Duration;

/// Series per page of the list (and per `batch_get` of fences).
const PAGE: usize = 100;
/// Items deleted per query-and-delete step.
const DELETE_PAGE: usize = 100;

/// How often and how much the sweeper works.
#[derive(Clone, Debug)]
pub struct RetentionConfig {
    /// Time between rounds; also the least time between fencing an item and deleting it.
    pub interval: Duration,
    /// Units of work per round: one per series visited, one per item deleted.
    pub budget: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            interval: Duration::from_secs(300),
            budget: 50_000,
        }
    }
}

/// What a sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub series: u64,
    pub deleted: u64,
    /// Series whose fences moved forward.
    pub fenced: u64,
    /// Fence updates not written because another sweeper moved the fences meanwhile.
    pub conflicts: u64,
}

impl RetentionReport {
    fn add(&mut self, other: RetentionReport) {
        self.series += other.series;
        self.deleted += other.deleted;
        self.fenced += other.fenced;
        self.conflicts += other.conflicts;
    }
}

/// The retention of `tenant`: its active rules' `series.retention_days` over the defaults.
pub async fn retention_of(tables: &dyn Table, tenant: &str) -> Result<Retention> {
    let pointer = versions::pointer(tables, tenant).await?;
    let Some(active) = pointer.active else {
        return Ok(Retention::default());
    };
    Ok(match versions::get(tables, tenant, active).await? {
        Some(record) => Retention::from_rules(&record.document.series.retention_days),
        None => Retention::default(),
    })
}

/// Sweeps one series whose fence item read as `stored`: deletes below the stored fences (within
/// `budget`), then moves the fences to at least `target`.
async fn sweep_series(
    tables: &dyn Table,
    pk: &str,
    stored: Option<&Item>,
    target: &Fences,
    budget: &mut usize,
) -> Result<RetentionReport> {
    let mut report = RetentionReport {
        series: 1,
        ..RetentionReport::default()
    };
    let fences = Fences::stored(stored);
    let swept_before = Fences::swept(stored);
    let mut swept = swept_before;
    for resolution in Resolution::ALL {
        let fence = fences.get(resolution);
        if swept.get(resolution) >= fence {
            continue;
        }
        let prefix = resolution.layout().0;
        let range = SortRange::Between(item_sk(prefix, 0), item_sk(prefix, fence - 1));
        while *budget > 0 {
            // Always the first page: the previous one is gone.
            let query = Query::partition(pk)
                .range(range.clone())
                .limit(DELETE_PAGE.min(*budget));
            let page = tables.query(TableName::Views, &query).await?;
            let ops: Vec<WriteOp> = page
                .items
                .into_iter()
                .map(|(key, _)| WriteOp::Delete { key })
                .collect();
            let count = ops.len();
            if count > 0 {
                tables.write(TableName::Views, ops).await?;
            }
            report.deleted += count as u64;
            *budget = budget.saturating_sub(count);
            if page.next.is_none() {
                swept.set(resolution, fence);
                break;
            }
        }
    }
    let mut advanced = fences;
    for resolution in Resolution::ALL {
        advanced.set(
            resolution,
            fences.get(resolution).max(target.get(resolution)),
        );
    }
    if advanced == fences && swept == swept_before {
        return Ok(report);
    }
    let (set, unchanged) = advanced.attributes_to_store(&swept, stored);
    let mut update = Update::new(Key::new(pk, FENCE_SK)).when(unchanged);
    for (name, value) in set {
        update = update.set(name, value);
    }
    match tables.update(TableName::Views, update).await {
        Ok(_) => report.fenced += u64::from(advanced != fences),
        Err(shoal_storage::Error::ConditionFailed) => report.conflicts += 1,
        Err(error) => return Err(error.into()),
    }
    Ok(report)
}

/// Sweeps the series of `tenant` from `from` (a series key, inclusive; `None`: the first) as of
/// `now`, spending at most `budget`. Returns the report and, when the budget ran out first, the
/// series to resume at.
pub async fn sweep_tenant(
    tables: &dyn Table,
    tenant: &str,
    retention: &Retention,
    now: i64,
    from: Option<String>,
    budget: &mut usize,
) -> Result<(RetentionReport, Option<String>)> {
    let target = retention.fences_at(now);
    let mut report = RetentionReport::default();
    let range = match from {
        Some(series) => SortRange::From(series),
        None => SortRange::All,
    };
    let mut query = Query::partition(list_pk(VERSION, tenant))
        .range(range)
        .limit(PAGE);
    loop {
        let page = tables.query(TableName::Views, &query).await?;
        let keys: Vec<Key> = page
            .items
            .iter()
            .map(|(key, _)| Key::new(series_pk(VERSION, tenant, &key.sk), FENCE_SK))
            .collect();
        let stored = tables.batch_get(TableName::Views, &keys).await?;
        for ((entry, _), (key, item)) in page.items.iter().zip(keys.iter().zip(&stored)) {
            if *budget == 0 {
                return Ok((report, Some(entry.sk.clone())));
            }
            *budget -= 1;
            let series = sweep_series(tables, &key.pk, item.as_ref(), &target, budget).await?;
            report.add(series);
            if *budget == 0 && series.deleted > 0 {
                // It may have more to delete: the next round starts with it again.
                return Ok((report, Some(entry.sk.clone())));
            }
        }
        match page.next {
            Some(next) => query = query.after(Some(next)),
            None => return Ok((report, None)),
        }
    }
}

/// Where the next round starts: a tenant and, within it, a series.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    pub tenant: Option<String>,
    pub series: Option<String>,
}

/// One round over every tenant, from `resume`, as of `now`, within `budget`. Returns what it
/// did and where the next round starts (the beginning once a round got through everything).
pub async fn round(
    shared: &Arc<dyn Table>,
    now: i64,
    mut budget: usize,
    resume: Resume,
) -> Result<(RetentionReport, Resume)> {
    let store = TenantStore::new(shared.clone());
    let tables = shared.as_ref();
    let mut tenants: Vec<String> = store
        .list_tenants()
        .await?
        .into_iter()
        .map(|tenant| tenant.id)
        .collect();
    tenants.sort();
    let mut report = RetentionReport::default();
    let mut series_from = resume.series;
    for tenant in tenants {
        if resume.tenant.as_ref().is_some_and(|first| tenant < *first) {
            continue;
        }
        let retention = retention_of(tables, &tenant).await?;
        let from = series_from.take();
        let (done, stopped) =
            sweep_tenant(tables, &tenant, &retention, now, from, &mut budget).await?;
        report.add(done);
        if let Some(series) = stopped {
            return Ok((
                report,
                Resume {
                    tenant: Some(tenant),
                    series: Some(series),
                },
            ));
        }
    }
    Ok((report, Resume::default()))
}

/// Starts the retention sweep on `runtime`: a round every `config.interval`, each as of
/// `clock`, resuming where the previous one stopped. Stop it before the projector.
pub fn spawn_sweeper(
    runtime: &tokio::runtime::Handle,
    tables: Arc<dyn Table>,
    clock: Arc<dyn Clock>,
    config: RetentionConfig,
) -> Periodic {
    let interval = config.interval;
    Periodic::spawn(
        runtime,
        "series retention sweeper",
        interval,
        Resume::default(),
        move |resume: Resume| {
            let (tables, clock) = (tables.clone(), clock.clone());
            async move {
                let now = clock.now_millis();
                match round(&tables, now, config.budget, resume.clone()).await {
                    Ok((report, next)) => {
                        telemetry::record_retention_round(report.deleted);
                        tracing::debug!(
                            series = report.series,
                            deleted = report.deleted,
                            fenced = report.fenced,
                            conflicts = report.conflicts,
                            finished = next == Resume::default(),
                            "series retention swept"
                        );
                        next
                    }
                    Err(error) => {
                        tracing::warn!(%error, "sweeping series retention failed; retrying on the next round");
                        resume
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_storage::Value;
    use shoal_storage::memory::MemoryTables;
    use std::collections::BTreeSet;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;
    const SERIES: &str = "cpu{host=a}";

    fn floor(at: i64, span: i64) -> i64 {
        at.div_euclid(span) * span
    }

    fn retention() -> Retention {
        let days = |days: u64| Duration::from_secs(days * 86_400);
        Retention {
            raw: days(1),
            minute: days(2),
            hour: days(64),
            day: Some(days(600)),
        }
    }

    async fn seed(tables: &dyn Table, items: &[String]) {
        let mut ops = vec![WriteOp::Put {
            key: Key::new(list_pk(VERSION, "acme"), SERIES),
            item: Item::from([("name".to_owned(), Value::S("cpu".into()))]),
        }];
        for sk in items {
            ops.push(WriteOp::Put {
                key: Key::new(series_pk(VERSION, "acme", SERIES), sk.clone()),
                item: Item::from([("data".to_owned(), Value::B(vec![1, 0]))]),
            });
        }
        tables.write(TableName::Views, ops).await.unwrap();
    }

    /// The sort keys of the series partition, the fence item left out.
    async fn present(tables: &dyn Table) -> BTreeSet<String> {
        let query = Query::partition(series_pk(VERSION, "acme", SERIES));
        let page = tables.query(TableName::Views, &query).await.unwrap();
        page.items
            .into_iter()
            .map(|(key, _)| key.sk)
            .filter(|sk| sk != FENCE_SK)
            .collect()
    }

    async fn sweep_all(tables: &dyn Table, now: i64, budget: usize) -> RetentionReport {
        let mut budget = budget;
        let (report, stopped) = sweep_tenant(tables, "acme", &retention(), now, None, &mut budget)
            .await
            .unwrap();
        assert_eq!(stopped, None);
        report
    }

    #[tokio::test]
    async fn deletes_exactly_the_expired_items_one_round_after_fencing() {
        let tables = MemoryTables::new();
        let now = 2000 * DAY + 30 * 60_000;
        let raw_fence = floor(now - DAY, HOUR);
        let m1_fence = floor(now - 2 * DAY, DAY);
        let h1_fence = floor(now - 64 * DAY, 32 * DAY);
        let d1_fence = floor(now - 600 * DAY, 512 * DAY);
        let expired = [
            item_sk("raw", raw_fence - HOUR),
            item_sk("raw", raw_fence - 30 * DAY),
            item_sk("m1", m1_fence - DAY),
            item_sk("h1", h1_fence - 32 * DAY),
            item_sk("d1", d1_fence - 512 * DAY),
        ];
        let kept = [
            // The bucket holding the horizon ends after it: kept whole.
            item_sk("raw", raw_fence),
            item_sk("raw", floor(now, HOUR)),
            item_sk("m1", m1_fence),
            item_sk("h1", h1_fence),
            item_sk("d1", d1_fence),
        ];
        let all: Vec<String> = expired.iter().chain(&kept).cloned().collect();
        seed(&tables, &all).await;

        let first = sweep_all(&tables, now, 1000).await;
        assert_eq!((first.series, first.deleted, first.fenced), (1, 0, 1));
        assert_eq!(present(&tables).await, all.iter().cloned().collect());
        let fences = super::super::fences(&tables, "acme", SERIES).await.unwrap();
        assert_eq!(
            fences,
            Fences {
                raw: raw_fence,
                minute: m1_fence,
                hour: h1_fence,
                day: d1_fence
            }
        );

        let second = sweep_all(&tables, now, 1000).await;
        assert_eq!((second.deleted, second.fenced), (expired.len() as u64, 0));
        assert_eq!(present(&tables).await, kept.iter().cloned().collect());

        // Nothing left to do: the round reads and writes nothing more.
        let third = sweep_all(&tables, now, 1000).await;
        assert_eq!(
            third,
            RetentionReport {
                series: 1,
                ..Default::default()
            }
        );
        let stored = tables
            .get(
                TableName::Views,
                &Key::new(series_pk(VERSION, "acme", SERIES), FENCE_SK),
            )
            .await
            .unwrap();
        assert_eq!(Fences::swept(stored.as_ref()), fences);
    }

    #[tokio::test]
    async fn a_round_stops_at_its_budget_and_the_next_resumes() {
        let tables = MemoryTables::new();
        let now = 100 * DAY;
        let hours: Vec<String> = (0..30)
            .map(|hour| item_sk("raw", 90 * DAY + hour * HOUR))
            .collect();
        seed(&tables, &hours).await;
        let mut budget = 100;
        sweep_tenant(&tables, "acme", &retention(), now, None, &mut budget)
            .await
            .unwrap();
        let mut deleted = 0;
        let mut from = None;
        for _ in 0..10 {
            let mut budget = 12;
            let (report, stopped) =
                sweep_tenant(&tables, "acme", &retention(), now, from, &mut budget)
                    .await
                    .unwrap();
            assert!(report.deleted <= 11, "{report:?}");
            deleted += report.deleted;
            from = stopped;
            if from.is_none() && report.deleted == 0 {
                break;
            }
        }
        assert_eq!(deleted, 30);
        assert!(present(&tables).await.is_empty());
    }

    #[tokio::test]
    async fn the_active_rules_set_the_retention() {
        let tables = MemoryTables::new();
        assert_eq!(
            retention_of(&tables, "acme").await.unwrap(),
            Retention::default()
        );
        let text = "conditions: { on: { active_days: { days: 7, at_least: 1 } } }\n\
                    scorecards: { default: { weights: { on: 1 }, bands: { good_from: 1, bad_below: 1 } } }\n\
                    series: { retention_days: { raw: 3 } }\n";
        let rules = shoal_rules::parse(text, shoal_rules::Format::Yaml).unwrap();
        let version = versions::propose(&tables, "acme", &rules, false)
            .await
            .unwrap();
        // A candidate does not apply yet.
        assert_eq!(
            retention_of(&tables, "acme").await.unwrap(),
            Retention::default()
        );
        versions::activate(&tables, "acme", version).await.unwrap();
        let retention = retention_of(&tables, "acme").await.unwrap();
        assert_eq!(retention.raw, Duration::from_secs(3 * 86_400));
        assert_eq!(retention.minute, Retention::default().minute);
    }
}
