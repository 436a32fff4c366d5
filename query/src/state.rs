//! What the query routes share, and the read-key check every route starts with.

use crate::{Error, Result};
use axum::http::{HeaderMap, header};
use shoal_projector::Freshness;
use shoal_projector::StatusSource;
use shoal_projector::scores::manager::RulesManager;
use shoal_storage::tenants::{KeyKind, TenantStore};
use shoal_storage::{EventLog, Table};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct QueryState {
    pub(crate) tables: Arc<dyn Table>,
    pub(crate) tenants: Arc<TenantStore>,
    pub(crate) status: StatusSource,
    /// The log, for re-driving dead letters and for raw events archived as log positions (the
    /// embedded backend's archive; without a log such a page is an error, not empty).
    pub(crate) log: Option<Arc<dyn EventLog>>,
    /// The full-text index (`GET /v1/search` answers 404 without one).
    pub(crate) search: Option<Arc<shoal_search::SearchIndex>>,
    /// Rules and scores (the routes answer 404 without it).
    pub(crate) rules: Option<RulesManager>,
    /// The last freshness read per projection name (`routes::freshness_of`).
    pub(crate) freshness: Mutex<HashMap<String, KeptFreshness>>,
}

/// How long a freshness read is kept on tables that cannot count their commits (DynamoDB):
/// reading the checkpoints was one of an entity lookup's two round trips. A kept read can only
/// understate how fresh the data is (checkpoints only move forward), by at most this long,
/// about one Kinesis poll of a shard (at most five a second).
pub(crate) const UNCOUNTED_FRESHNESS_TTL: Duration = Duration::from_millis(200);

/// A projection's freshness as read at `version`, at `read_at`, when the tables' commit count
/// was `commits` (`None`: tables that do not count).
pub(crate) struct KeptFreshness {
    pub(crate) version: u32,
    pub(crate) commits: Option<u64>,
    pub(crate) read_at: Instant,
    pub(crate) freshness: Arc<Freshness>,
}

impl KeptFreshness {
    /// Whether this read still stands for `version` when the tables' commit count is `commits`:
    /// counted tables, while nothing committed since; uncounted ones, for a short while.
    pub(crate) fn holds(&self, version: u32, commits: Option<u64>, now: Instant) -> bool {
        self.version == version
            && match (self.commits, commits) {
                (Some(kept), Some(now)) => kept == now,
                (None, None) => now.duration_since(self.read_at) < UNCOUNTED_FRESHNESS_TTL,
                _ => false,
            }
    }
}

impl QueryState {
    pub fn new(tables: Arc<dyn Table>, tenants: Arc<TenantStore>, status: StatusSource) -> Self {
        QueryState {
            tables,
            tenants,
            status,
            log: None,
            search: None,
            rules: None,
            freshness: Mutex::default(),
        }
    }

    /// Lets dead letters be re-driven from this log, and archived positions read from it.
    pub fn with_log(mut self, log: Arc<dyn EventLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// Serves `GET /v1/search` from this index.
    pub fn with_search(mut self, index: Arc<shoal_search::SearchIndex>) -> Self {
        self.search = Some(index);
        self
    }

    /// Serves rules and scores through this manager.
    pub fn with_rules(mut self, rules: RulesManager) -> Self {
        self.rules = Some(rules);
        self
    }

    pub(crate) fn rules(&self) -> Result<&RulesManager> {
        self.rules.as_ref().ok_or_else(|| Error::NotFound {
            param: "rules".into(),
            message: "this process does not serve rules and scores".into(),
        })
    }

    /// The tenant of the request's read key.
    pub(crate) async fn tenant(&self, headers: &HeaderMap) -> Result<String> {
        let secret = presented_key(headers)?;
        let info = self
            .tenants
            .authenticate(&secret)
            .await?
            .ok_or(Error::Unauthorized)?;
        if info.kind != KeyKind::Read {
            return Err(Error::Forbidden);
        }
        Ok(info.tenant)
    }

    /// Passes only requests that carry the admin token.
    pub(crate) async fn require_admin(&self, headers: &HeaderMap) -> Result<()> {
        let secret = presented_key(headers)?;
        if self.tenants.is_admin(&secret).await? {
            Ok(())
        } else {
            Err(Error::Unauthorized)
        }
    }
}

fn presented_key(headers: &HeaderMap) -> Result<String> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    shoal_storage::tenants::presented_key(text(header::AUTHORIZATION.as_str()), text("x-api-key"))
        .ok_or(Error::Unauthorized)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(version: u32, commits: Option<u64>, read_at: Instant) -> KeptFreshness {
        KeptFreshness {
            version,
            commits,
            read_at,
            freshness: Arc::new(Freshness {
                projection: "entities".into(),
                version,
                shards: Vec::new(),
                received_through: None,
            }),
        }
    }

    #[test]
    fn counted_tables_keep_a_read_until_the_next_commit() {
        let at = Instant::now();
        let read = kept(1, Some(7), at);
        let much_later = at + Duration::from_secs(3600);
        assert!(read.holds(1, Some(7), much_later));
        assert!(!read.holds(1, Some(8), at));
        assert!(!read.holds(2, Some(7), at));
        assert!(!read.holds(1, None, at));
    }

    #[test]
    fn uncounted_tables_keep_a_read_for_a_short_while() {
        let at = Instant::now();
        let read = kept(1, None, at);
        assert!(read.holds(1, None, at));
        assert!(read.holds(1, None, at + UNCOUNTED_FRESHNESS_TTL / 2));
        assert!(!read.holds(1, None, at + UNCOUNTED_FRESHNESS_TTL));
        assert!(!read.holds(2, None, at));
        assert!(!read.holds(1, Some(0), at));
    }
}
