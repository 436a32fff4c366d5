//! `GET /v1/search` — full-text search over the tenant's events and entities.
//!
//! Parameters: `q` (tantivy query syntax: terms, `"phrases"`, `AND`/`OR`/`NOT`/`-`, `field:value`
//! for `name`, `kind`, `entity`, `stage`, `band` and any property or trait), `type` = event |
//! entity, `kind` (repeatable), `from`/`to` (event time, entities: last seen), `stage` and
//! `band` (repeatable), `sort` = relevance | time_desc | time_asc, `limit` (1–100, default 20),
//! `cursor`, `facets` (a comma-separated list of name, stage, band; repeatable). The answer:
//! `total` (every match) and `total_exact` (always true), `hits` (with highlighted `snippet`),
//! `facets` (only when asked for: counts per value over every match), `next`, and `freshness`
//! (the searchable commit's positions per shard and its time). `exact_total` = true | false is
//! still accepted, and checked, from when totals stopped at 10,000; it changes nothing now.

use crate::params::{Params, encode_cursor, ordered};
use crate::{Error, QueryState, Result};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use shoal_schemas::EventKind;
use shoal_search::{DocType, FacetField, MAX_LIMIT, SearchRequest, SortBy};
use std::sync::Arc;

const KNOWN: &[&str] = &[
    "q",
    "type",
    "kind",
    "from",
    "to",
    "stage",
    "band",
    "sort",
    "limit",
    "cursor",
    "facets",
    "exact_total",
];

pub async fn search(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let tenant = state.tenant(&headers).await?;
    let Some(index) = state.search.clone() else {
        return Err(Error::NotFound {
            param: "search".into(),
            message: "search is not enabled on this server".into(),
        });
    };
    let request = request(&Params::parse(raw.as_deref())?)?;
    // Searching is CPU work of up to milliseconds; it must not hold a runtime thread.
    let response = tokio::task::spawn_blocking(move || index.search(&tenant, &request))
        .await
        .map_err(|error| Error::Search(shoal_search::Error::Task(error.to_string())))??;
    let mut body = serde_json::to_value(&response).unwrap_or_default();
    body["next"] = serde_json::to_value(encode_cursor(response.next)).unwrap_or_default();
    // The index is shared by every tenant: its document count would tell one tenant how much
    // the others send.
    if let Some(freshness) = body["freshness"].as_object_mut() {
        freshness.remove("docs");
    }
    Ok(axum::Json(body).into_response())
}

fn request(params: &Params) -> Result<SearchRequest> {
    params.only(KNOWN, &[])?;
    let doc_type = match params.get("type") {
        None => None,
        Some("event") => Some(DocType::Event),
        Some("entity") => Some(DocType::Entity),
        Some(_) => {
            return Err(Error::bad(
                "type",
                "invalid_value",
                "type must be event or entity",
            ));
        }
    };
    let kinds = params
        .all("kind")
        .into_iter()
        .map(|text| {
            text.parse::<EventKind>()
                .map_err(|_| Error::bad("kind", "invalid_value", format!("unknown kind {text:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let sort = match params.get("sort") {
        None | Some("relevance") => SortBy::Relevance,
        Some("time_desc") => SortBy::TimeDesc,
        Some("time_asc") => SortBy::TimeAsc,
        Some(_) => {
            return Err(Error::bad(
                "sort",
                "invalid_value",
                "sort must be relevance, time_desc or time_asc",
            ));
        }
    };
    let from = params.time("from")?;
    let to = params.time("to")?;
    if let (Some(from), Some(to)) = (from, to) {
        ordered(from, to)?;
    }
    let mut facets = Vec::new();
    for name in params
        .all("facets")
        .into_iter()
        .flat_map(|list| list.split(','))
    {
        let facet = FacetField::ALL
            .into_iter()
            .find(|facet| facet.as_str() == name.trim())
            .ok_or_else(|| {
                Error::bad(
                    "facets",
                    "invalid_value",
                    format!("unknown facet {name:?}: facets are name, stage and band"),
                )
            })?;
        if !facets.contains(&facet) {
            facets.push(facet);
        }
    }
    // Checked for the clients that send it; every total is exact now.
    match params.get("exact_total") {
        None | Some("false") | Some("true") => {}
        Some(_) => {
            return Err(Error::bad(
                "exact_total",
                "invalid_value",
                "exact_total must be true or false",
            ));
        }
    }
    let owned = |name: &str| params.all(name).into_iter().map(str::to_owned).collect();
    Ok(SearchRequest {
        query: params.get("q").unwrap_or("").to_owned(),
        doc_type,
        kinds,
        from,
        to,
        stages: owned("stage"),
        bands: owned("band"),
        sort,
        limit: params.limit(20, MAX_LIMIT)?,
        cursor: params.cursor()?,
        facets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_of(error: Error) -> String {
        match error {
            Error::BadParam { param, .. } => param,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parameters_become_a_request() {
        let cursor = encode_cursor(Some("40".into())).unwrap();
        let params = Params::parse(Some(&format!(
            "q=name%3Aexport+plan%3Atrial&type=event&kind=track&kind=page&from=1000&to=2000&stage=active&band=good&band=bad&sort=time_desc&limit=5&cursor={cursor}&facets=band,name&facets=name&exact_total=true"
        )))
        .unwrap();
        let parsed = request(&params).unwrap();
        assert_eq!(
            parsed,
            SearchRequest {
                query: "name:export plan:trial".into(),
                doc_type: Some(DocType::Event),
                kinds: vec![EventKind::Track, EventKind::Page],
                from: Some(1000),
                to: Some(2000),
                stages: vec!["active".into()],
                bands: vec!["good".into(), "bad".into()],
                sort: SortBy::TimeDesc,
                limit: 5,
                cursor: Some("40".into()),
                facets: vec![FacetField::Band, FacetField::Name],
            }
        );
        assert_eq!(
            request(&Params::parse(None).unwrap()).unwrap(),
            SearchRequest::default()
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        for (query, param) in [
            ("type=user", "type"),
            ("kind=click", "kind"),
            ("sort=best", "sort"),
            ("limit=101", "limit"),
            ("from=5&to=1", "from"),
            ("facets=name,plan", "facets"),
            ("exact_total=yes", "exact_total"),
            ("colour=red", "colour"),
        ] {
            let params = Params::parse(Some(query)).unwrap();
            assert_eq!(param_of(request(&params).unwrap_err()), param, "{query}");
        }
    }
}
