//! How long each resolution of a series is kept, and the per-series *fences* that make expiry
//! safe to combine with replays (the rule itself is in the module docs of `series`).
//!
//! A fence is a time aligned to its resolution's item span: every item of that resolution that
//! starts before it has expired (its whole span ended before the fence). Fences live in one item
//! per series, SK [`FENCE_SK`] in the series partition, and only ever move forward: the sweep
//! (`sweep.rs`) advances them and deletes what lies below them one round later, the fold reads
//! them to decide, per point, which items it may write and which rollup slots it must merge into
//! rather than recompute. Because the fold decides from stored fences and never from a clock,
//! every process and every replay decides the same way for the same stored state.

use super::Resolution;
use shoal_storage::{Condition, Item, Value};
use std::time::Duration;

/// The sort key of a series' fence item (no `#`, so no range read of rollups ever meets it).
pub const FENCE_SK: &str = "fence";

/// How long each resolution is kept. The defaults apply to tenants without active rules and to
/// every resolution their rules do not name.
#[derive(Clone, Debug, PartialEq)]
pub struct Retention {
    pub raw: Duration,
    pub minute: Duration,
    pub hour: Duration,
    /// `None`: forever.
    pub day: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            raw: Duration::from_secs(30 * 86_400),
            minute: Duration::from_secs(90 * 86_400),
            hour: Duration::from_secs(2 * 365 * 86_400),
            day: None,
        }
    }
}

impl Retention {
    /// The rules' `series.retention_days`, each resolution it leaves out at its default.
    pub fn from_rules(days: &shoal_rules::document::Retention) -> Retention {
        let defaults = Retention::default();
        let of_days = |days: u32| Duration::from_secs(u64::from(days) * 86_400);
        let raw = days.raw.map_or(defaults.raw, of_days);
        // A default never undercuts a finer resolution the rules keep longer (validation only
        // sees the values given): a coarser resolution is what serves a range once the finer
        // one has expired.
        let minute = days.minute.map_or(defaults.minute.max(raw), of_days);
        let hour = days.hour.map_or(defaults.hour.max(minute), of_days);
        let day = match days.day {
            Some(day) => Some(of_days(day)),
            None => defaults.day.map(|day| day.max(hour)),
        };
        Retention {
            raw,
            minute,
            hour,
            day,
        }
    }

    /// How long `resolution` is kept in ms (`None`: forever).
    pub fn keep_millis(&self, resolution: Resolution) -> Option<i64> {
        let kept = match resolution {
            Resolution::Raw => Some(self.raw),
            Resolution::Minute => Some(self.minute),
            Resolution::Hour => Some(self.hour),
            Resolution::Day => self.day,
        }?;
        Some(i64::try_from(kept.as_millis()).unwrap_or(i64::MAX))
    }

    /// The fences this retention asks for at `now`: per resolution, the start of the item that
    /// holds `now - retention`, so exactly the items whose span ended before that are below it.
    pub fn fences_at(&self, now: i64) -> Fences {
        let mut fences = Fences::default();
        for resolution in Resolution::ALL {
            if let Some(kept) = self.keep_millis(resolution) {
                let horizon = now.saturating_sub(kept).max(0);
                let span = resolution.layout().1;
                fences.set(resolution, horizon.div_euclid(span) * span);
            }
        }
        fences
    }
}

/// The attribute of a resolution's fence, and of how far its deletion got.
fn attributes(resolution: Resolution) -> (&'static str, &'static str) {
    match resolution {
        Resolution::Raw => ("raw", "raw_swept"),
        Resolution::Minute => ("m1", "m1_swept"),
        Resolution::Hour => ("h1", "h1_swept"),
        Resolution::Day => ("d1", "d1_swept"),
    }
}

/// Per resolution, the time before which its items have expired (0: nothing has).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fences {
    pub raw: i64,
    pub minute: i64,
    pub hour: i64,
    pub day: i64,
}

impl Fences {
    pub fn get(&self, resolution: Resolution) -> i64 {
        match resolution {
            Resolution::Raw => self.raw,
            Resolution::Minute => self.minute,
            Resolution::Hour => self.hour,
            Resolution::Day => self.day,
        }
    }

    pub(crate) fn set(&mut self, resolution: Resolution, at: i64) {
        match resolution {
            Resolution::Raw => self.raw = at,
            Resolution::Minute => self.minute = at,
            Resolution::Hour => self.hour = at,
            Resolution::Day => self.day = at,
        }
    }

    /// Whether the item of `resolution` that holds `timestamp` has expired. Fences are aligned
    /// to item starts, so the point's time decides for its whole item.
    pub fn expired(&self, resolution: Resolution, timestamp: i64) -> bool {
        timestamp < self.get(resolution)
    }

    /// The fences stored in a fence item (absent attributes: 0).
    pub(crate) fn stored(item: Option<&Item>) -> Fences {
        Fences::read(item, |resolution| attributes(resolution).0)
    }

    /// How far the deletion below each fence has got (absent attributes: 0).
    pub(crate) fn swept(item: Option<&Item>) -> Fences {
        Fences::read(item, |resolution| attributes(resolution).1)
    }

    fn read(item: Option<&Item>, name: impl Fn(Resolution) -> &'static str) -> Fences {
        let mut fences = Fences::default();
        for resolution in Resolution::ALL {
            let at = item
                .and_then(|item| item.get(name(resolution)))
                .and_then(Value::as_f64)
                .map_or(0, |at| at as i64);
            fences.set(resolution, at);
        }
        fences
    }

    /// The update's attributes for these fences and sweep marks, and the condition that the
    /// fences are still those of `read` (fences only move forward, and one sweeper at a time
    /// moves them: a concurrent one fails the condition and leaves the series to the next round).
    pub(crate) fn attributes_to_store(
        &self,
        swept: &Fences,
        read: Option<&Item>,
    ) -> (Vec<(String, Value)>, Condition) {
        let mut set = Vec::new();
        let mut unchanged = Vec::new();
        for resolution in Resolution::ALL {
            let (fence, swept_name) = attributes(resolution);
            set.push((fence.to_owned(), Value::N(self.get(resolution) as f64)));
            set.push((
                swept_name.to_owned(),
                Value::N(swept.get(resolution) as f64),
            ));
            unchanged.push(match read.and_then(|item| item.get(fence)).cloned() {
                Some(value) => Condition::Eq(fence.to_owned(), value),
                None => Condition::NotExists(fence.to_owned()),
            });
        }
        (set, Condition::And(unchanged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_override_only_what_they_name() {
        let days = shoal_rules::document::Retention {
            raw: Some(7),
            minute: None,
            hour: None,
            day: Some(3650),
        };
        let retention = Retention::from_rules(&days);
        assert_eq!(retention.raw, Duration::from_secs(7 * 86_400));
        assert_eq!(retention.minute, Retention::default().minute);
        assert_eq!(retention.hour, Retention::default().hour);
        assert_eq!(retention.day, Some(Duration::from_secs(3650 * 86_400)));
        assert_eq!(
            Retention::from_rules(&Default::default()),
            Retention::default()
        );
    }

    #[test]
    fn defaults_never_undercut_a_longer_finer_retention() {
        let days = shoal_rules::document::Retention {
            raw: Some(120),
            ..Default::default()
        };
        let retention = Retention::from_rules(&days);
        assert_eq!(retention.minute, Duration::from_secs(120 * 86_400));
        assert_eq!(retention.hour, Retention::default().hour);
    }

    const DAY_MS: i64 = 86_400_000;

    #[test]
    fn fences_align_to_item_starts() {
        let retention = Retention {
            raw: Duration::from_secs(86_400),
            minute: Duration::from_secs(2 * 86_400),
            hour: Duration::from_secs(40 * 86_400),
            day: None,
        };
        let now = 100 * DAY_MS + 5 * 3_600_000 + 123;
        let fences = retention.fences_at(now);
        // The raw bucket holding now - 1 day starts at its hour: it is kept whole.
        assert_eq!(fences.raw, 99 * DAY_MS + 5 * 3_600_000);
        assert_eq!(fences.minute, 98 * DAY_MS);
        assert_eq!(fences.hour, 32 * DAY_MS);
        assert_eq!(fences.day, 0);
        assert!(fences.expired(Resolution::Raw, fences.raw - 1));
        assert!(!fences.expired(Resolution::Raw, fences.raw));
        // Early in the epoch nothing is below a fence.
        assert_eq!(retention.fences_at(1000), Fences::default());
    }
}
