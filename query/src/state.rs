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

/// A projection's freshness as read at `version` when the tables' commit count was `commits`.
pub(crate) struct KeptFreshness {
    pub(crate) version: u32,
    pub(crate) commits: u64,
    pub(crate) freshness: Arc<Freshness>,
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
