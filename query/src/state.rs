//! What the query routes share, and the read-key check every route starts with.

use crate::{Error, Result};
use axum::http::{HeaderMap, header};
use shoal_projector::StatusSource;
use shoal_storage::Table;
use shoal_storage::tenants::{KeyKind, TenantStore};
use std::sync::Arc;

pub struct QueryState {
    pub(crate) tables: Arc<dyn Table>,
    pub(crate) tenants: Arc<TenantStore>,
    pub(crate) status: StatusSource,
}

impl QueryState {
    pub fn new(tables: Arc<dyn Table>, tenants: Arc<TenantStore>, status: StatusSource) -> Self {
        QueryState {
            tables,
            tenants,
            status,
        }
    }

    /// The tenant of the request's read key.
    pub(crate) async fn tenant(&self, headers: &HeaderMap) -> Result<String> {
        let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let secret = shoal_storage::tenants::presented_key(
            text(header::AUTHORIZATION.as_str()),
            text("x-api-key"),
        )
        .ok_or(Error::Unauthorized)?;
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
}
