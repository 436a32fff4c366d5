//! Tenant and key management, guarded by the admin token.
//!
//! - `POST /v1/admin/tenants` `{"id"}` → 201 with the tenant and a first write and read key;
//! - `GET /v1/admin/tenants` → the tenants;
//! - `POST /v1/admin/tenants/{tenant}/keys` `{"kind": "write" | "read"}` → 201 with the key;
//! - `DELETE /v1/admin/keys/{id}` → 204, or 404 when no key has that id.
//!
//! Secrets appear in the answer that creates them and nowhere else.

use crate::routes::IngestState;
use crate::{Error, Result, auth};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;
use shoal_storage::tenants::KeyKind;
use std::sync::Arc;

pub fn routes() -> Router<Arc<IngestState>> {
    Router::new()
        .route("/v1/admin/tenants", get(list_tenants).post(create_tenant))
        .route(
            "/v1/admin/tenants/{tenant}/keys",
            axum::routing::post(create_key),
        )
        .route("/v1/admin/keys/{id}", delete(revoke_key))
}

async fn require_admin(state: &IngestState, headers: &HeaderMap) -> Result<()> {
    let secret = auth::presented_key(headers).ok_or(Error::Unauthorized)?;
    if state.tenants.is_admin(&secret).await? {
        Ok(())
    } else {
        Err(Error::Unauthorized)
    }
}

fn json_body<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|error| {
        if error.is_data() {
            let field = error
                .to_string()
                .split('`')
                .nth(1)
                .unwrap_or("body")
                .to_owned();
            Error::Invalid {
                code: "invalid_value",
                field,
                message: error.to_string(),
            }
        } else {
            Error::malformed(&error)
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    id: String,
}

async fn create_tenant(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    require_admin(&state, &headers).await?;
    let request: NewTenant = json_body(&body)?;
    if !shoal_schemas::keys::is_valid_tenant(&request.id) {
        return Err(Error::Invalid {
            code: "invalid_value",
            field: "id".to_owned(),
            message: "tenant id must be 1-64 characters of [A-Za-z0-9_-], starting with a letter or digit".to_owned(),
        });
    }
    let tenant = match state.tenants.create_tenant(&request.id).await {
        Ok(tenant) => tenant,
        Err(shoal_storage::Error::ConditionFailed) => {
            return Err(Error::Conflict(format!("tenant {} exists", request.id)));
        }
        Err(error) => return Err(error.into()),
    };
    let write_key = state.tenants.create_key(&tenant.id, KeyKind::Write).await?;
    let read_key = state.tenants.create_key(&tenant.id, KeyKind::Read).await?;
    let body = serde_json::json!({
        "tenant": tenant,
        "write_key": write_key,
        "read_key": read_key,
    });
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

async fn list_tenants(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
) -> Result<Response> {
    require_admin(&state, &headers).await?;
    let tenants = state.tenants.list_tenants().await?;
    Ok(axum::Json(serde_json::json!({ "tenants": tenants })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyRequest {
    kind: KeyKind,
}

async fn create_key(
    State(state): State<Arc<IngestState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    require_admin(&state, &headers).await?;
    let request: NewKeyRequest = json_body(&body)?;
    if !state.tenants.tenant_exists(&tenant).await? {
        return Err(Error::NotFound);
    }
    let key = state.tenants.create_key(&tenant, request.kind).await?;
    Ok((StatusCode::CREATED, axum::Json(key)).into_response())
}

async fn revoke_key(
    State(state): State<Arc<IngestState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    require_admin(&state, &headers).await?;
    if state.tenants.revoke_key(&id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(Error::NotFound)
    }
}
