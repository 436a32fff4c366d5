//! Health scores and lifecycle stages, with a read key. Each route takes `version` = `live`
//! (default), `candidate` (the version being rebuilt: the preview) or a version number.
//! - `GET /v1/scores` — entities by score (`order` = score_desc | score_asc), filtered by
//!   `band`, `stage`, `min_score`, `max_score`, paged with `limit` and `cursor`;
//! - `GET /v1/scores/distribution` — entities per band per stage;
//! - `GET /v1/scores/compare` — the candidate against the live version: how many entities
//!   change band, in which direction, per stage (the back-test before activation);
//! - `GET /v1/entities/{id}/score` — one entity's score, band and stage, every condition with
//!   the numbers behind it, and its history of band and stage changes.

use crate::params::{Params, bad_cursor, encode_cursor};
use crate::{Error, QueryState, Result};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use shoal_projector::scores::manager::Which;
use shoal_projector::scores::projection_name;
use shoal_projector::scores::read::{self, ListScores};
use shoal_rules::Band;
use std::sync::Arc;

fn which(params: &Params) -> Result<Which> {
    Which::parse(params.get("version")).ok_or_else(|| {
        Error::bad(
            "version",
            "invalid_value",
            "version is live, candidate or a version number",
        )
    })
}

/// How far the version's projection has applied the log.
async fn freshness(state: &QueryState, tenant: &str, version: u32) -> Result<serde_json::Value> {
    let fresh =
        shoal_projector::freshness(state.tables.as_ref(), &projection_name(tenant), version)
            .await?;
    Ok(serde_json::to_value(fresh).unwrap_or_default())
}

fn score_param(params: &Params, name: &str, default: u8) -> Result<u8> {
    match params.number::<u8>(name)? {
        None => Ok(default),
        Some(score) if score <= 100 => Ok(score),
        Some(_) => Err(Error::bad(
            name,
            "invalid_value",
            format!("{name} is 0 to 100"),
        )),
    }
}

pub async fn list(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let tenant = state.tenant(&headers).await?;
    let params = Params::parse(raw.as_deref())?;
    params.only(
        &[
            "version",
            "band",
            "stage",
            "min_score",
            "max_score",
            "order",
            "cursor",
            "limit",
        ],
        &[],
    )?;
    let band = params
        .get("band")
        .map(|text| {
            Band::parse(text)
                .ok_or_else(|| Error::bad("band", "invalid_value", "band is good, normal or bad"))
        })
        .transpose()?;
    let descending = match params.get("order") {
        None | Some("score_desc") => true,
        Some("score_asc") => false,
        Some(_) => {
            return Err(Error::bad(
                "order",
                "invalid_value",
                "order must be score_desc or score_asc",
            ));
        }
    };
    let request = ListScores {
        band,
        stage: params.get("stage").map(str::to_owned),
        min_score: score_param(&params, "min_score", 0)?,
        max_score: score_param(&params, "max_score", 100)?,
        descending,
        cursor: params.cursor()?,
        limit: params.limit(50, 1000)?,
        ..ListScores::default()
    };
    if request.min_score > request.max_score {
        return Err(Error::bad(
            "min_score",
            "inverted_range",
            "min_score must not be above max_score",
        ));
    }
    let (version, _) = state.rules()?.resolve(&tenant, which(&params)?).await?;
    let page = match read::list(state.tables.as_ref(), version, &tenant, &request).await {
        Err(shoal_projector::Error::InvalidArgument(_)) => return Err(bad_cursor()),
        other => other?,
    };
    Ok(axum::Json(serde_json::json!({
        "version": version,
        "entities": page.entities,
        "next": encode_cursor(page.next),
        "freshness": freshness(&state, &tenant, version).await?,
    }))
    .into_response())
}

pub async fn distribution(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let tenant = state.tenant(&headers).await?;
    let params = Params::parse(raw.as_deref())?;
    params.only(&["version"], &[])?;
    let (version, _) = state.rules()?.resolve(&tenant, which(&params)?).await?;
    let distribution = read::distribution(state.tables.as_ref(), version, &tenant).await?;
    let mut body = serde_json::to_value(&distribution).unwrap_or_default();
    body["version"] = version.into();
    body["freshness"] = freshness(&state, &tenant, version).await?;
    Ok(axum::Json(body).into_response())
}

pub async fn compare(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let tenant = state.tenant(&headers).await?;
    Params::parse(raw.as_deref())?.only(&[], &[])?;
    let rules = state.rules()?;
    let (live, _) = rules.resolve(&tenant, Which::Live).await?;
    let (candidate, _) = rules.resolve(&tenant, Which::Candidate).await?;
    let comparison = read::compare(state.tables.as_ref(), &tenant, live, candidate).await?;
    let mut body = serde_json::to_value(&comparison).unwrap_or_default();
    let overview = state.rules()?.overview(&tenant).await?;
    let view = overview
        .versions
        .iter()
        .find(|v| v.record.version == candidate);
    body["caught_up"] = view.and_then(|v| v.caught_up).unwrap_or(false).into();
    // Until the candidate is ready its entities are evaluated as of their last events.
    body["ready"] = view.and_then(|v| v.ready).unwrap_or(false).into();
    body["freshness"] = serde_json::json!({
        "live": freshness(&state, &tenant, live).await?,
        "candidate": freshness(&state, &tenant, candidate).await?,
    });
    Ok(axum::Json(body).into_response())
}

pub async fn entity(
    State(state): State<Arc<QueryState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let tenant = state.tenant(&headers).await?;
    let params = Params::parse(raw.as_deref())?;
    params.only(&["version"], &[])?;
    let manager = state.rules()?;
    let (version, rules) = manager.resolve(&tenant, which(&params)?).await?;
    let Some(stored) = read::get(state.tables.as_ref(), version, &tenant, &id).await? else {
        return Err(Error::NotFound {
            param: "id".into(),
            message: format!("no score for entity {id:?} under rules version {version}"),
        });
    };
    // The explanation is the evaluation the stored score came from: as of the later of the
    // entity's last evaluation and the last sweep (which left unchanged entities unwritten).
    let swept = manager.swept_at(&tenant, version).await?.unwrap_or(0);
    let as_of = stored.as_of.max(swept);
    let evaluation = rules.evaluate(&stored.facts, as_of, true);
    let traits: serde_json::Map<String, serde_json::Value> = stored
        .facts
        .traits
        .iter()
        .map(|(name, value)| (name.clone(), value.to_json()))
        .collect();
    Ok(axum::Json(serde_json::json!({
        "entity": id,
        "version": version,
        "score": stored.score,
        "band": stored.band,
        "stage": stored.stage,
        "as_of": as_of,
        "scorecard": evaluation.scorecard,
        "conditions": evaluation.conditions,
        "traits": traits,
        "history": stored.history,
        "freshness": freshness(&state, &tenant, version).await?,
    }))
    .into_response())
}
