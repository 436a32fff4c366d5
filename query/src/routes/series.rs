//! `GET /v1/series`: one or more series over a time range, bucketed by `step` and reduced by
//! `agg`, read from the coarsest stored rollup whose slots divide the step.
//!
//! Parameters: `series` (repeatable) or `metric` (every series of that metric name); `from`,
//! `to` (RFC 3339 or epoch ms; default the last hour); `step` (`60s`, `5m`, `1h`, `1d` or ms;
//! default about 300 points); `agg` = avg | sum | min | max | count | last (default avg);
//! `combine` = sum | avg | min | max to merge all series into one.
//!
//! Retention: `resolution` in the answer is the one the step asks for; each series says the one
//! it was read from, which is coarser when the step's resolution has expired for the start of
//! the range (a minute-step query over last year is answered from the hour rollups, not with
//! nothing), and `expired_before` when even that one holds nothing before a time.

use super::freshness_of;
use crate::params::{Params, ordered};
use crate::{Error, QueryState, Result};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shoal_projector::series::{self, Resolution, SeriesPoint};
use shoal_storage::Table;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Points per series at most, as Prometheus allows: beyond it a dashboard cannot draw them.
const MAX_POINTS: i64 = 11_000;
const MAX_SERIES: usize = 1_000;
const DEFAULT_RANGE: i64 = 3_600_000;
/// Series read on the request's own task; a request for more splits them over the blocking
/// pool, one part per core: the embedded tables answer small reads on the calling thread, so
/// a thousand series read in place would hold one async worker for tens of milliseconds, and
/// would use one core of several.
const INLINE_SERIES: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Agg {
    Avg,
    Sum,
    Min,
    Max,
    Count,
    Last,
}

impl Agg {
    fn parse(param: &str, text: &str) -> Result<Agg> {
        Ok(match text {
            "avg" => Agg::Avg,
            "sum" => Agg::Sum,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "count" => Agg::Count,
            "last" => Agg::Last,
            _ => {
                return Err(Error::bad(
                    param,
                    "invalid_value",
                    format!("{param} must be one of avg, sum, min, max, count, last"),
                ));
            }
        })
    }
}

/// The rollup of one step bucket.
#[derive(Clone, Copy)]
struct Bucket {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    last_t: i64,
    last: f64,
}

impl Bucket {
    fn of(point: &SeriesPoint) -> Bucket {
        Bucket {
            count: point.count,
            sum: point.sum,
            min: point.min,
            max: point.max,
            last_t: point.t,
            last: point.last,
        }
    }

    fn merge(&mut self, point: &SeriesPoint) {
        self.count += point.count;
        self.sum += point.sum;
        self.min = self.min.min(point.min);
        self.max = self.max.max(point.max);
        if point.t >= self.last_t {
            self.last_t = point.t;
            self.last = point.last;
        }
    }

    fn value(&self, agg: Agg) -> f64 {
        match agg {
            Agg::Avg => self.sum / self.count.max(1) as f64,
            Agg::Sum => self.sum,
            Agg::Min => self.min,
            Agg::Max => self.max,
            Agg::Count => self.count as f64,
            Agg::Last => self.last,
        }
    }
}

/// Buckets the points of one series by `step` (aligned to multiples of the step since the
/// epoch, so the same bucket means the same thing in every query) and reduces each by `agg`.
fn bucketize(points: &[SeriesPoint], step: i64, agg: Agg) -> Vec<(i64, f64)> {
    if !points.is_sorted_by_key(|point| point.t) {
        return bucketize_unordered(points, step, agg);
    }
    // Points come in time order, so each bucket is one run of them: no map needed.
    let mut out = Vec::new();
    let mut current: Option<(i64, Bucket)> = None;
    for point in points.iter().filter(|point| point.count > 0) {
        let start = point.t.div_euclid(step) * step;
        match &mut current {
            Some((open, bucket)) if *open == start => bucket.merge(point),
            _ => {
                if let Some((open, bucket)) = current.replace((start, Bucket::of(point))) {
                    out.push((open, bucket.value(agg)));
                }
            }
        }
    }
    if let Some((open, bucket)) = current {
        out.push((open, bucket.value(agg)));
    }
    out
}

fn bucketize_unordered(points: &[SeriesPoint], step: i64, agg: Agg) -> Vec<(i64, f64)> {
    let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
    for point in points.iter().filter(|point| point.count > 0) {
        let start = point.t.div_euclid(step) * step;
        buckets
            .entry(start)
            .and_modify(|bucket| bucket.merge(point))
            .or_insert_with(|| Bucket::of(point));
    }
    buckets
        .into_iter()
        .map(|(start, bucket)| (start, bucket.value(agg)))
        .collect()
}

/// Merges several series' bucket values into one, per bucket start.
fn combine(all: &[SeriesOut], how: Agg) -> Vec<(i64, f64)> {
    let mut merged: BTreeMap<i64, (f64, f64, f64, u64)> = BTreeMap::new();
    for series in all {
        for &(t, value) in &series.points {
            let entry = merged
                .entry(t)
                .or_insert((0.0, f64::INFINITY, f64::NEG_INFINITY, 0));
            entry.0 += value;
            entry.1 = entry.1.min(value);
            entry.2 = entry.2.max(value);
            entry.3 += 1;
        }
    }
    merged
        .into_iter()
        .map(|(t, (sum, min, max, count))| {
            let value = match how {
                Agg::Sum => sum,
                Agg::Min => min,
                Agg::Max => max,
                Agg::Count => count as f64,
                Agg::Avg | Agg::Last => sum / count.max(1) as f64,
            };
            (t, value)
        })
        .collect()
}

/// Fields in alphabetical order: see [`Answer`].
#[derive(Serialize)]
struct SeriesOut {
    /// Even the resolution read holds nothing before this time (ms): the range reaches back
    /// past every retention of the series.
    #[serde(skip_serializing_if = "Option::is_none")]
    expired_before: Option<i64>,
    key: String,
    /// `[bucket start (epoch ms), value]`.
    points: Vec<(i64, f64)>,
    /// The resolution the points were read from: the step's, or a coarser one when the step's
    /// no longer holds the start of the range (retention). Absent on a combined series.
    #[serde(skip_serializing_if = "Option::is_none")]
    resolution: Option<Resolution>,
}

/// The series keys the request names: given keys, each checked to exist, or every series of a
/// metric.
async fn selected(state: &QueryState, tenant: &str, params: &Params) -> Result<Vec<String>> {
    let tables = state.tables.as_ref();
    let named = params.all("series");
    if let Some(metric) = params.get("metric") {
        if !named.is_empty() {
            return Err(Error::bad(
                "metric",
                "conflicting_parameters",
                "give series or metric, not both",
            ));
        }
        let listed =
            series::list(tables, tenant, &format!("{metric}{{"), None, MAX_SERIES + 1).await?;
        if listed.series.is_empty() {
            return Err(Error::NotFound {
                param: "metric".into(),
                message: format!("no series of metric {metric:?}"),
            });
        }
        if listed.series.len() > MAX_SERIES {
            return Err(Error::bad(
                "metric",
                "too_many_series",
                format!("more than {MAX_SERIES} series; name them with series="),
            ));
        }
        return Ok(listed.series.into_iter().map(|(key, _)| key).collect());
    }
    if named.is_empty() {
        return Err(Error::bad(
            "series",
            "missing",
            "give series= (repeatable) or metric=",
        ));
    }
    if named.len() > MAX_SERIES {
        return Err(Error::bad(
            "series",
            "too_many_series",
            format!("at most {MAX_SERIES} series"),
        ));
    }
    for key in &named {
        let found = series::list(tables, tenant, key, None, 1).await?;
        if found.series.first().map(|(found, _)| found.as_str()) != Some(*key) {
            return Err(Error::NotFound {
                param: "series".into(),
                message: format!("unknown series {key:?}"),
            });
        }
    }
    Ok(named.into_iter().map(str::to_owned).collect())
}

/// What to read of each series and how to bucket it.
#[derive(Clone, Copy)]
struct Plan {
    from: i64,
    to: i64,
    step: i64,
    agg: Agg,
    resolution: Resolution,
}

/// Every series of `keys`, in their order.
async fn read_all(
    tables: &Arc<dyn Table>,
    tenant: &str,
    keys: Vec<String>,
    plan: Plan,
) -> Result<Vec<SeriesOut>> {
    if keys.len() <= INLINE_SERIES {
        return read_some(tables, tenant, keys, plan).await;
    }
    let parts = blocking_parts();
    let per_part = keys.len().div_ceil(parts);
    let runtime = tokio::runtime::Handle::current();
    let mut keys = keys.into_iter();
    let mut tasks = Vec::with_capacity(parts);
    loop {
        let part: Vec<String> = keys.by_ref().take(per_part).collect();
        if part.is_empty() {
            break;
        }
        let tables = Arc::clone(tables);
        let tenant = tenant.to_owned();
        let runtime = runtime.clone();
        // `block_on` on a blocking-pool thread: a part's reads, decoding and bucketing run
        // there, off the async workers.
        tasks.push(tokio::task::spawn_blocking(move || {
            runtime.block_on(read_some(&tables, &tenant, part, plan))
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        let part = task.await.map_err(|error| {
            Error::Storage(shoal_storage::Error::Backend(format!(
                "a series read failed: {error}"
            )))
        })??;
        out.extend(part);
    }
    Ok(out)
}

/// Parts a wide read is split into: the cores this process may use (read once: the standard
/// library asks the cgroup files every time).
fn blocking_parts() -> usize {
    static PARTS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PARTS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(2, std::num::NonZeroUsize::get)
            .clamp(1, 8)
    })
}

/// The series of `keys`, in their order: every fence with one batch read, then every range with
/// one `query_many`.
async fn read_some(
    tables: &Arc<dyn Table>,
    tenant: &str,
    keys: Vec<String>,
    plan: Plan,
) -> Result<Vec<SeriesOut>> {
    let tables = tables.as_ref();
    let fences = series::fences_of(tables, tenant, &keys).await?;
    let servings: Vec<series::Serving> = fences
        .iter()
        .map(|fences| series::serving(fences, plan.resolution, plan.from))
        .collect();
    // Below a fence items may linger until the next sweep round; they are not served, so a
    // series' range starts at its fence when that is later than `from`. A range that then
    // starts after `to` is not read at all.
    let asks: Vec<Option<series::RangeAsk<'_>>> = keys
        .iter()
        .zip(&servings)
        .map(|(key, serving)| {
            let from = serving
                .expired_before
                .map_or(plan.from, |at| at.max(plan.from));
            (from <= plan.to).then_some(series::RangeAsk {
                series: key,
                from,
                to: plan.to,
                resolution: serving.resolution,
            })
        })
        .collect();
    let asked: Vec<series::RangeAsk<'_>> = asks.iter().flatten().copied().collect();
    let mut read = series::read_ranges(tables, tenant, &asked)
        .await?
        .into_iter();
    let mut out = Vec::with_capacity(keys.len());
    for ((key, serving), ask) in keys.iter().zip(servings).zip(&asks) {
        let points = match ask {
            Some(_) => read.next().unwrap_or_default(),
            None => Vec::new(),
        };
        out.push(SeriesOut {
            points: bucketize(&points, plan.step, plan.agg),
            resolution: Some(serving.resolution),
            expired_before: serving.expired_before,
            key: key.clone(),
        });
    }
    Ok(out)
}

pub async fn get_series(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let tenant = state.tenant(&headers).await?;
    let params = Params::parse(raw.as_deref())?;
    params.only(
        &["series", "metric", "from", "to", "step", "agg", "combine"],
        &[],
    )?;
    let to = params
        .time("to")?
        .unwrap_or_else(shoal_schemas::time::now_millis);
    let from = params.time("from")?.unwrap_or(to - DEFAULT_RANGE);
    ordered(from, to)?;
    let span = to - from + 1;
    let step = match params.duration_millis("step")? {
        Some(step) => step,
        // About 300 points, in whole minutes, so the minute rollup serves it.
        None => ((span / 300 + 59_999) / 60_000).max(1) * 60_000,
    };
    if span / step > MAX_POINTS {
        return Err(Error::bad(
            "step",
            "step_too_small",
            format!(
                "step gives {} points per series over this range; the limit is {MAX_POINTS}",
                span / step
            ),
        ));
    }
    let agg = match params.get("agg") {
        Some(text) => Agg::parse("agg", text)?,
        None => Agg::Avg,
    };
    let combine_how = params
        .get("combine")
        .map(|text| Agg::parse("combine", text))
        .transpose()?;
    let keys = selected(&state, &tenant, &params).await?;
    let resolution = Resolution::coarsest_for(step);

    let plan = Plan {
        from,
        to,
        step,
        agg,
        resolution,
    };
    // Before the data: see `freshness_of`.
    let freshness = freshness_of(&state, &series::Series).await?;
    let mut out = read_all(&state.tables, &tenant, keys, plan).await?;
    if let Some(how) = combine_how {
        let points = combine(&out, how);
        let expired_before = out.iter().filter_map(|series| series.expired_before).max();
        out = vec![SeriesOut {
            key: "*".into(),
            resolution: None,
            expired_before,
            points,
        }];
    }
    let answer = Answer {
        agg,
        freshness: serde_json::to_value(&*freshness).unwrap_or_default(),
        from,
        resolution,
        series: out,
        step_ms: step,
        to,
    };
    Ok(axum::Json(answer).into_response())
}

/// The answer, written straight from these structs rather than through a `serde_json::Value`
/// tree (an allocation per point). Fields are in alphabetical order, as the `Value` map wrote
/// them before, so the bytes are what they were.
#[derive(Serialize)]
struct Answer {
    agg: Agg,
    freshness: serde_json::Value,
    from: i64,
    resolution: Resolution,
    series: Vec<SeriesOut>,
    step_ms: i64,
    to: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: i64, value: f64) -> SeriesPoint {
        SeriesPoint {
            t,
            count: 1,
            sum: value,
            min: value,
            max: value,
            last: value,
        }
    }

    #[test]
    fn buckets_align_to_the_step_and_reduce() {
        let points = [
            point(0, 1.0),
            point(30_000, 3.0),
            point(60_000, 10.0),
            point(119_000, 2.0),
        ];
        assert_eq!(
            bucketize(&points, 60_000, Agg::Avg),
            [(0, 2.0), (60_000, 6.0)]
        );
        assert_eq!(
            bucketize(&points, 60_000, Agg::Sum),
            [(0, 4.0), (60_000, 12.0)]
        );
        assert_eq!(
            bucketize(&points, 60_000, Agg::Min),
            [(0, 1.0), (60_000, 2.0)]
        );
        assert_eq!(
            bucketize(&points, 60_000, Agg::Max),
            [(0, 3.0), (60_000, 10.0)]
        );
        assert_eq!(
            bucketize(&points, 60_000, Agg::Count),
            [(0, 2.0), (60_000, 2.0)]
        );
        assert_eq!(
            bucketize(&points, 60_000, Agg::Last),
            [(0, 3.0), (60_000, 2.0)]
        );
    }

    #[test]
    fn rollup_slots_merge_by_their_own_counts() {
        let slots = [
            SeriesPoint {
                t: 0,
                count: 3,
                sum: 6.0,
                min: 1.0,
                max: 3.0,
                last: 3.0,
            },
            SeriesPoint {
                t: 60_000,
                count: 1,
                sum: 10.0,
                min: 10.0,
                max: 10.0,
                last: 10.0,
            },
        ];
        assert_eq!(bucketize(&slots, 120_000, Agg::Avg), [(0, 4.0)]);
        assert_eq!(bucketize(&slots, 120_000, Agg::Last), [(0, 10.0)]);
    }

    #[test]
    fn time_ordered_points_bucket_as_the_map_does() {
        // Slots of uneven counts, gaps, empty slots and negative times, over several steps.
        let points: Vec<SeriesPoint> = (-50..200)
            .filter(|index| index % 7 != 3)
            .map(|index: i64| SeriesPoint {
                t: index * 20_000,
                count: index.rem_euclid(4) as u64,
                sum: index as f64 * 1.5,
                min: index as f64 - 1.0,
                max: index as f64 + 2.0,
                last: index as f64,
            })
            .collect();
        let mut shuffled = points.clone();
        shuffled.reverse();
        for step in [20_000, 60_000, 3_600_000] {
            for agg in [
                Agg::Avg,
                Agg::Sum,
                Agg::Min,
                Agg::Max,
                Agg::Count,
                Agg::Last,
            ] {
                let expected = bucketize_unordered(&points, step, agg);
                assert_eq!(bucketize(&points, step, agg), expected, "{step} {agg:?}");
                // Out of order, the map is used: the same answer.
                assert_eq!(bucketize(&shuffled, step, agg), expected, "{step} {agg:?}");
            }
        }
    }

    #[test]
    fn combining_series() {
        let a = SeriesOut {
            key: "a".into(),
            resolution: None,
            expired_before: None,
            points: vec![(0, 1.0), (60, 2.0)],
        };
        let b = SeriesOut {
            key: "b".into(),
            resolution: None,
            expired_before: None,
            points: vec![(0, 3.0)],
        };
        assert_eq!(combine(&[a, b], Agg::Sum), [(0, 4.0), (60, 2.0)]);
    }
}
