//! Searching: one tenant's documents, a user query string, filters, a sort, a page, snippets and
//! facet counts.
//!
//! The tenant is a required clause of every query, built here and never from the user's text,
//! so no query string can reach another tenant's documents. Filters are required clauses too,
//! scored 0 so that they never change the relevance order.
//!
//! Pages are offsets into the sorted result (the cursor is the offset), bounded by
//! [`MAX_WINDOW`]: a commit between two pages may shift the result by the documents it added.
//!
//! What a search costs: every match of the query within the tenant is visited once, and that
//! one pass ranks the page, counts the total (always exact) and, when asked for, the facets.
//! The tenant is a filter (constant score 0), not a scored term clause: tantivy's block-max
//! pruning of a conjunction of term clauses takes the rarest term as its leader and, inside
//! the leader's blocks, tests every document, so with the tenant as a scored clause it either
//! walked the postings of every tenant (a rare word leading) or scored every document of the
//! tenant (frequent words; the tenant leading, with score 0, prunes nothing). As a filter, the
//! conjunction is a plain leapfrog intersection, which skips the other tenants' runs of
//! documents (the indexer writes each tenant's documents of a commit together). Segments are
//! searched in parallel (`SearchIndex::open_with`). BENCHMARKS.md ("Session 7") has the
//! profile and the figures at 10 M events: the two-term p99 about halved, the phrase p99 a third.
//! The partition and the type are decided per segment (`filter.rs`): where every document
//! passes, they are left out, so a query of plain terms keeps tantivy's own term intersection
//! ("Session 15": the two-word p99 0.52–0.69× on one tenant's index).
//! The user's query is flattened into the other filters' conjunction (`a b` and a `kind` filter
//! become one intersection of three clauses rather than an intersection inside an
//! intersection).

use crate::filter::{Filtered, TermFilter};
use crate::index::{IndexStatus, SearchIndex};
use crate::partition::PartitionStatus;
use crate::schema::{self, Fields};
use crate::syntax;
use crate::{Error, Result};
use serde::Serialize;
use shoal_schemas::EventKind;
use std::collections::BTreeMap;
use std::ops::Bound;
use tantivy::aggregation::AggregationCollector;
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::agg_result::AggregationResults;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, Occur, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption, Type, Value};
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, Order, Searcher, TantivyDocument, Term};

/// How deep pages may go (offset + limit).
pub const MAX_WINDOW: usize = 10_000;
pub const MAX_LIMIT: usize = 100;
/// Values listed per facet.
const FACET_SIZE: u32 = 20;
const SNIPPET_CHARS: usize = 160;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DocType {
    #[default]
    Event,
    Entity,
}

impl DocType {
    pub fn as_str(self) -> &'static str {
        match self {
            DocType::Event => schema::EVENT,
            DocType::Entity => schema::ENTITY,
        }
    }

    fn other(self) -> DocType {
        match self {
            DocType::Event => DocType::Entity,
            DocType::Entity => DocType::Event,
        }
    }
}

/// A facet that a search may ask for: counts per value over every match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FacetField {
    /// Event name.
    Name,
    Stage,
    Band,
}

impl FacetField {
    pub const ALL: [FacetField; 3] = [FacetField::Name, FacetField::Stage, FacetField::Band];

    pub fn as_str(self) -> &'static str {
        match self {
            FacetField::Name => "name",
            FacetField::Stage => "stage",
            FacetField::Band => "band",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortBy {
    #[default]
    Relevance,
    /// Newest first (events by event time, entities by last seen).
    TimeDesc,
    TimeAsc,
}

/// A search. Empty `query` matches every document (of the tenant, after filters).
#[derive(Clone, Debug, PartialEq)]
pub struct SearchRequest {
    pub query: String,
    /// Only events or only entities; both when `None`.
    pub doc_type: Option<DocType>,
    /// Any of these kinds (events only); no filter when empty.
    pub kinds: Vec<EventKind>,
    /// Event time (entities: last seen) within `from..=to`, ms.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Any of these stages / bands (entities only); no filter when empty.
    pub stages: Vec<String>,
    pub bands: Vec<String>,
    pub sort: SortBy,
    pub limit: usize,
    /// A `next` of a previous answer to the same request.
    pub cursor: Option<String>,
    /// Facets to count over every match; none when empty (each costs a column read per
    /// match).
    pub facets: Vec<FacetField>,
}

impl Default for SearchRequest {
    fn default() -> Self {
        SearchRequest {
            query: String::new(),
            doc_type: None,
            kinds: Vec::new(),
            from: None,
            to: None,
            stages: Vec::new(),
            bands: Vec::new(),
            sort: SortBy::Relevance,
            limit: 20,
            cursor: None,
            facets: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SearchResponse {
    /// Matching documents, all pages.
    pub total: u64,
    /// Always true: every match is counted. Kept in the answer for clients that read it (the
    /// total was once counted only up to 10,000).
    pub total_exact: bool,
    pub hits: Vec<Hit>,
    /// Counts per value over all matching documents, for the facets asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facets: Option<Facets>,
    pub next: Option<String>,
    /// What the searched commit covers (a lower bound: a commit may land during the search).
    pub freshness: IndexStatus,
    /// The tenant's searchable fields and generation, and a rebuild under way if any.
    pub index: PartitionStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    #[serde(rename = "type")]
    pub doc_type: String,
    /// The event id (events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub entity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Event time, or an entity's last seen (ms).
    pub timestamp: Option<i64>,
    /// Relevance (relevance sort only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub band: Option<String>,
    /// Every trait (entities only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traits: Option<serde_json::Map<String, serde_json::Value>>,
    /// The searchable text around the matches, HTML-escaped, matches in `<b>`.
    pub snippet: String,
}

/// The facets asked for; the others are `None`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Facets {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Vec<FacetCount>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<Vec<FacetCount>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub band: Option<Vec<FacetCount>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FacetCount {
    pub value: String,
    pub count: u64,
}

impl SearchIndex {
    /// Searches `tenant`'s documents. CPU-bound: call it from a blocking context.
    pub fn search(&self, tenant: &str, request: &SearchRequest) -> Result<SearchResponse> {
        if !(1..=MAX_LIMIT).contains(&request.limit) {
            return Err(Error::invalid(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let offset = parse_cursor(request.cursor.as_deref())?;
        if offset + request.limit > MAX_WINDOW {
            return Err(Error::invalid(
                "cursor",
                format!("pages end at {MAX_WINDOW} results; narrow the query"),
            ));
        }
        if let (Some(from), Some(to)) = (request.from, request.to)
            && from > to
        {
            return Err(Error::invalid("from", "from must not be after to"));
        }
        let user_query: Box<dyn Query> = if request.query.trim().is_empty() {
            Box::new(AllQuery)
        } else {
            syntax::parse(&self.parser, &request.query)?
        };
        let snippets = self.snippet_generator(user_query.as_ref())?;
        // One snapshot: the searcher holds the partition searched and is at least as new as
        // the freshness reported.
        let (freshness, partition, searcher) = self.snapshot(tenant);
        let query = self.filtered(&partition, user_query, request);
        // One pass collects the page, the count and the facets: with the tenant a filter, a
        // search visits every match to rank it anyway (see the module's header).
        let facet_collector = if request.facets.is_empty() {
            None
        } else {
            Some(facet_collector(&request.facets)?)
        };
        let top = TopDocs::with_limit(request.limit).and_offset(offset);
        let (total, ranked, aggregations): (usize, Vec<(Option<f32>, DocAddress)>, _) =
            match request.sort {
                SortBy::Relevance => {
                    let (total, top, aggregations) =
                        searcher.search(&query, &(Count, top.order_by_score(), facet_collector))?;
                    let ranked = top
                        .into_iter()
                        .map(|(score, address)| (Some(score), address))
                        .collect();
                    (total, ranked, aggregations)
                }
                SortBy::TimeDesc | SortBy::TimeAsc => {
                    let order = if request.sort == SortBy::TimeDesc {
                        Order::Desc
                    } else {
                        Order::Asc
                    };
                    let by_time = top.order_by_fast_field::<i64>("timestamp", order);
                    let (total, top, aggregations) =
                        searcher.search(&query, &(Count, by_time, facet_collector))?;
                    let ranked = top
                        .into_iter()
                        .map(|(_, address)| (None, address))
                        .collect();
                    (total, ranked, aggregations)
                }
            };
        let facets = match aggregations {
            Some(aggregations) => Some(read_facets(aggregations, &request.facets)?),
            None => None,
        };
        let hits = ranked
            .into_iter()
            .map(|(score, address)| self.hit(&searcher, &snippets, score, address))
            .collect::<Result<Vec<Hit>>>()?;
        let end = offset + hits.len();
        let next = (!hits.is_empty() && end < total && end < MAX_WINDOW).then(|| end.to_string());
        Ok(SearchResponse {
            total: total as u64,
            total_exact: true,
            hits,
            facets,
            next,
            freshness,
            index: self.partition_status(tenant),
        })
    }

    /// `user_query` restricted to one tenant's partition (its live generation) and the filters.
    /// The partition and the type are decided per segment (`filter.rs`).
    fn filtered(
        &self,
        partition: &str,
        user_query: Box<dyn Query>,
        request: &SearchRequest,
    ) -> Filtered {
        let fields = &self.fields;
        let mut clauses = flatten(user_query);
        let mut filters = vec![TermFilter {
            term: Term::from_field_text(fields.tenant, partition),
            complement: None,
        }];
        if let Some(doc_type) = request.doc_type {
            filters.push(TermFilter {
                term: Term::from_field_text(fields.doc_type, doc_type.as_str()),
                complement: Some(Term::from_field_text(
                    fields.doc_type,
                    doc_type.other().as_str(),
                )),
            });
        }
        if !request.kinds.is_empty() {
            let kinds = request.kinds.iter().map(|kind| kind.as_str());
            clauses.push((Occur::Must, filter(any_of(fields.kind, kinds))));
        }
        if !request.stages.is_empty() {
            let stages = request.stages.iter().map(String::as_str);
            clauses.push((Occur::Must, filter(any_of(fields.stage, stages))));
        }
        if !request.bands.is_empty() {
            let bands = request.bands.iter().map(String::as_str);
            clauses.push((Occur::Must, filter(any_of(fields.band, bands))));
        }
        if request.from.is_some() || request.to.is_some() {
            let bound = |value: Option<i64>| match value {
                Some(millis) => Bound::Included(Term::from_field_i64(fields.timestamp, millis)),
                None => Bound::Unbounded,
            };
            let range = RangeQuery::new(bound(request.from), bound(request.to));
            clauses.push((Occur::Must, filter(Box::new(range))));
        }
        Filtered::new(Box::new(BooleanQuery::new(clauses)), filters)
    }

    /// Highlights every text term of the user's query, whichever field it names: the `text`
    /// field holds the name, the entity and every searchable value, so a match on `name` or on
    /// a property is found there too.
    fn snippet_generator(&self, query: &dyn Query) -> Result<SnippetGenerator> {
        let mut terms = BTreeMap::new();
        query.query_terms(&mut |term, _| {
            if let Some(text) = term.value().as_str().or_else(|| json_text(term)) {
                terms.insert(text.to_owned(), 1.0);
            }
        });
        let tokenizer = self.index.tokenizer_for_field(self.fields.text)?;
        Ok(SnippetGenerator::new(
            terms,
            tokenizer,
            self.fields.text,
            SNIPPET_CHARS,
        ))
    }

    fn hit(
        &self,
        searcher: &Searcher,
        snippets: &SnippetGenerator,
        score: Option<f32>,
        address: DocAddress,
    ) -> Result<Hit> {
        let fields: &Fields = &self.fields;
        let doc: TantivyDocument = searcher.doc(address)?;
        let text = |field: Field| {
            doc.get_first(field)
                .and_then(|value| value.as_str())
                .map(str::to_owned)
        };
        let doc_type = text(fields.doc_type).unwrap_or_default();
        let traits = if doc_type == schema::ENTITY {
            text(fields.state)
                .and_then(|state| serde_json::from_str::<crate::document::EntityState>(&state).ok())
                .map(|state| state.traits)
        } else {
            None
        };
        let mut snippet = snippets.snippet_from_doc(&doc);
        if snippet.is_empty() {
            // Nothing highlighted (a filter-only or negated query): show the start of the text.
            snippet = snippets.snippet(&text(fields.text).unwrap_or_default());
        }
        Ok(Hit {
            id: text(fields.id),
            entity: text(fields.entity).unwrap_or_default(),
            name: text(fields.name),
            kind: text(fields.kind),
            timestamp: doc
                .get_first(fields.timestamp)
                .and_then(|value| value.as_i64()),
            score,
            stage: text(fields.stage),
            band: text(fields.band),
            traits,
            snippet: snippet.to_html(),
            doc_type,
        })
    }
}

/// The text of a JSON-field term on a string value. tantivy keeps its accessor private; the
/// layout after the field type is: path, `JSON_END_OF_PATH` (0), value type, value.
fn json_text(term: &Term) -> Option<&str> {
    if term.value().typ() != Type::Json {
        return None;
    }
    let bytes = term.serialized_value_bytes();
    let end_of_path = bytes.iter().position(|byte| *byte == 0)?;
    let (value_type, value) = bytes.get(end_of_path + 1..)?.split_first()?;
    (*value_type == Type::Str.to_code())
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

fn parse_cursor(cursor: Option<&str>) -> Result<usize> {
    match cursor {
        None => Ok(0),
        Some(text) => text
            .parse()
            .map_err(|_| Error::invalid("cursor", "cursor is not one this API returned")),
    }
}

/// Matches documents whose `field` is any of `values` (raw tokens).
fn any_of<'a>(field: Field, values: impl IntoIterator<Item = &'a str>) -> Box<dyn Query> {
    let mut terms: Vec<Box<dyn Query>> = values
        .into_iter()
        .map(|value| {
            Box::new(TermQuery::new(
                Term::from_field_text(field, value),
                IndexRecordOption::Basic,
            )) as Box<dyn Query>
        })
        .collect();
    if terms.len() == 1 {
        return terms.remove(0);
    }
    Box::new(BooleanQuery::union(terms))
}

/// The user's query as clauses of the filters' conjunction: a conjunction's own clauses (the
/// same documents, and the same score: the filters score 0 and a conjunction sums), anything
/// else as one required clause.
fn flatten(user_query: Box<dyn Query>) -> Vec<(Occur, Box<dyn Query>)> {
    if let Some(boolean) = user_query.downcast_ref::<BooleanQuery>() {
        let clauses = boolean.clauses();
        let conjunction = clauses.iter().any(|(occur, _)| *occur == Occur::Must)
            && clauses.iter().all(|(occur, _)| *occur != Occur::Should);
        if conjunction {
            return clauses
                .iter()
                .map(|(occur, clause)| (*occur, clause.box_clone()))
                .collect();
        }
    }
    vec![(Occur::Must, user_query)]
}

fn filter(query: Box<dyn Query>) -> Box<dyn Query> {
    Box::new(ConstScoreQuery::new(query, 0.0))
}

fn facet_collector(facets: &[FacetField]) -> Result<AggregationCollector> {
    let request: serde_json::Map<String, serde_json::Value> = facets
        .iter()
        .map(|facet| {
            let field = facet.as_str();
            let terms = serde_json::json!({"terms": {"field": field, "size": FACET_SIZE}});
            (field.to_owned(), terms)
        })
        .collect();
    let request: Aggregations = serde_json::from_value(serde_json::Value::Object(request))
        .map_err(|error| Error::Corrupt(format!("facet request: {error}")))?;
    Ok(AggregationCollector::from_aggs(request, Default::default()))
}

fn read_facets(results: AggregationResults, facets: &[FacetField]) -> Result<Facets> {
    let json = serde_json::to_value(results)
        .map_err(|error| Error::Corrupt(format!("facet results: {error}")))?;
    let counts = |name: &str| -> Vec<FacetCount> {
        json[name]["buckets"]
            .as_array()
            .map(|buckets| {
                buckets
                    .iter()
                    .filter_map(|bucket| {
                        Some(FacetCount {
                            value: bucket["key"].as_str()?.to_owned(),
                            count: bucket["doc_count"].as_u64()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let asked = |facet: FacetField| facets.contains(&facet).then(|| counts(facet.as_str()));
    Ok(Facets {
        name: asked(FacetField::Name),
        stage: asked(FacetField::Stage),
        band: asked(FacetField::Band),
    })
}
