//! Rules management, behind the admin token (DESIGN.md, "Rules and re-projection"):
//! - `PUT /v1/admin/tenants/{tenant}/rules[?activate=when_ready]` — a new rules document (JSON,
//!   or YAML with `Content-Type: application/yaml`): validated, stored as the candidate version
//!   and rebuilt from the start of the log beside the live version; 202 with the version. 409
//!   while another candidate exists. With `activate=when_ready` it becomes live by itself once
//!   it has caught up and been evaluated as of now;
//! - `POST /v1/admin/tenants/{tenant}/rules/validate` — the same validation, nothing stored;
//! - `GET /v1/admin/tenants/{tenant}/rules` — every version with its status;
//! - `POST /v1/admin/tenants/{tenant}/rules/{version}/activate` — flips the live version to the
//!   candidate once it has caught up (409 before);
//! - `DELETE /v1/admin/tenants/{tenant}/rules/{version}` — abandons the candidate;
//! - `POST /v1/admin/scores/sweep` — re-evaluates every entity as of now, without waiting for
//!   the timer.
//!
//! And, with a read key, `GET /v1/rules`: the caller's tenant's versions.

use crate::params::Params;
use crate::{Error, QueryState, Result};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shoal_rules::{Format, Rules};
use std::sync::Arc;

/// Rules documents are small; this bounds what a request can make the server parse.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

fn document(headers: &HeaderMap, body: &Bytes) -> Result<Rules> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let format = Format::from_content_type(content_type).ok_or_else(|| {
        Error::UnsupportedMediaType(format!(
            "rules are JSON (application/json) or YAML (application/yaml), not {}",
            content_type.unwrap_or("")
        ))
    })?;
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::bad(
            "body",
            "too_large",
            format!("a rules document is at most {MAX_DOCUMENT_BYTES} bytes"),
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| Error::bad("body", "invalid_encoding", "the document is not UTF-8"))?;
    Ok(shoal_rules::parse(text, format)?)
}

fn version_number(text: &str) -> Result<u32> {
    text.parse()
        .map_err(|_| Error::bad("version", "invalid_value", "version must be a number"))
}

async fn existing_tenant(state: &QueryState, tenant: &str) -> Result<()> {
    if state.tenants.tenant_exists(tenant).await? {
        Ok(())
    } else {
        Err(Error::NotFound {
            param: "tenant".into(),
            message: format!("no tenant {tenant:?}"),
        })
    }
}

pub async fn put(
    State(state): State<Arc<QueryState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response> {
    state.require_admin(&headers).await?;
    let params = Params::parse(raw.as_deref())?;
    params.only(&["activate"], &[])?;
    let auto_activate = match params.get("activate") {
        None | Some("manual") => false,
        Some("when_ready") => true,
        Some(_) => {
            return Err(Error::bad(
                "activate",
                "invalid_value",
                "activate is manual (the default) or when_ready",
            ));
        }
    };
    existing_tenant(&state, &tenant).await?;
    let rules = document(&headers, &body)?;
    let version = state
        .rules()?
        .propose(&tenant, rules, auto_activate)
        .await?;
    let message = if auto_activate {
        "rebuilding from the start of the log; it becomes live as soon as it has caught up"
    } else {
        "rebuilding from the start of the log; activate it when it has caught up"
    };
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({
            "tenant": tenant,
            "version": version,
            "status": "candidate",
            "activate": if auto_activate { "when_ready" } else { "manual" },
            "message": message,
        })),
    )
        .into_response())
}

pub async fn validate(
    State(state): State<Arc<QueryState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    state.require_admin(&headers).await?;
    existing_tenant(&state, &tenant).await?;
    let rules = document(&headers, &body)?;
    Ok(
        axum::Json(serde_json::json!({ "valid": true, "document": rules.document() }))
            .into_response(),
    )
}

pub async fn overview(
    State(state): State<Arc<QueryState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    state.require_admin(&headers).await?;
    existing_tenant(&state, &tenant).await?;
    Ok(axum::Json(state.rules()?.overview(&tenant).await?).into_response())
}

/// `GET /v1/rules` with a read key.
pub async fn own(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let tenant = state.tenant(&headers).await?;
    Params::parse(raw.as_deref())?.only(&[], &[])?;
    Ok(axum::Json(state.rules()?.overview(&tenant).await?).into_response())
}

pub async fn activate(
    State(state): State<Arc<QueryState>>,
    Path((tenant, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    state.require_admin(&headers).await?;
    existing_tenant(&state, &tenant).await?;
    let version = version_number(&version)?;
    let replaced = state.rules()?.activate(&tenant, version).await?;
    Ok(axum::Json(serde_json::json!({
        "tenant": tenant,
        "active": version,
        "replaced": replaced,
    }))
    .into_response())
}

pub async fn abandon(
    State(state): State<Arc<QueryState>>,
    Path((tenant, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response> {
    state.require_admin(&headers).await?;
    existing_tenant(&state, &tenant).await?;
    let version = version_number(&version)?;
    state.rules()?.abandon(&tenant, version).await?;
    Ok(axum::Json(serde_json::json!({ "tenant": tenant, "abandoned": version })).into_response())
}

pub async fn sweep(State(state): State<Arc<QueryState>>, headers: HeaderMap) -> Result<Response> {
    state.require_admin(&headers).await?;
    let reports = state.rules()?.sweep_all().await?;
    let reports: Vec<serde_json::Value> = reports
        .into_iter()
        .map(|(tenant, version, report)| {
            serde_json::json!({ "tenant": tenant, "version": version, "report": report })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "swept": reports })).into_response())
}
