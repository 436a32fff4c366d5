//! What the query routes share, and the read-key check every route starts with.

use crate::{Error, Result};
use axum::http::{HeaderMap, header};
use shoal_projector::StatusSource;
use shoal_storage::tenants::{KeyKind, TenantStore};
use shoal_storage::{EventLog, Table};
use std::sync::Arc;

pub struct QueryState {
    pub(crate) tables: Arc<dyn Table>,
    pub(crate) tenants: Arc<TenantStore>,
    pub(crate) status: StatusSource,
    /// The log, for re-driving dead letters (a query-only process may not have one).
    pub(crate) log: Option<Arc<dyn EventLog>>,
}

impl QueryState {
    pub fn new(tables: Arc<dyn Table>, tenants: Arc<TenantStore>, status: StatusSource) -> Self {
        QueryState {
            tables,
            tenants,
            status,
            log: None,
        }
    }

    /// Lets dead letters be re-driven from this log.
    pub fn with_log(mut self, log: Arc<dyn EventLog>) -> Self {
        self.log = Some(log);
        self
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
