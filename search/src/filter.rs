//! The partition and type filters of a search, decided segment by segment.
//!
//! Why not plain required clauses: tantivy intersects a conjunction of term clauses with a
//! specialised scorer, and any other clause (a constant-score filter) sends the whole query to
//! the generic intersection, which seeks every clause to each candidate. On an index that holds
//! one tenant (the embedded default), the partition and `type=event` hold nearly every
//! document, so those seeks into dense posting lists doubled a two-word search's median and
//! its p99 (BENCHMARKS.md, Session 15). Here a filter that every document of a segment passes
//! is left out of that segment, and a type filter becomes the exclusion of the other type when
//! that one is rarer; only what is left joins the intersection. The answer is the same: each
//! segment is decided from its own postings, deleted documents included.

use tantivy::postings::SegmentPostings;
use tantivy::query::{
    ConstScorer, EmptyScorer, EnableScoring, Exclude, Explanation, Query, Scorer, Weight,
    intersect_scorers,
};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, Score, SegmentReader, Term};

/// Documents must hold `term`. `complement`, when given, is held by exactly the documents
/// that do not hold `term` (every document has one `doc_type`), so excluding it is the same
/// filter.
#[derive(Clone, Debug)]
pub(crate) struct TermFilter {
    pub term: Term,
    pub complement: Option<Term>,
}

/// `inner`, restricted to the documents that pass every filter; the filters score nothing.
#[derive(Debug)]
pub(crate) struct Filtered {
    inner: Box<dyn Query>,
    filters: Vec<TermFilter>,
}

impl Filtered {
    pub(crate) fn new(inner: Box<dyn Query>, filters: Vec<TermFilter>) -> Filtered {
        Filtered { inner, filters }
    }
}

impl Clone for Filtered {
    fn clone(&self) -> Self {
        Filtered {
            inner: self.inner.box_clone(),
            filters: self.filters.clone(),
        }
    }
}

impl Query for Filtered {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(FilteredWeight {
            inner: self.inner.weight(enable_scoring)?,
            filters: self.filters.clone(),
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.inner.query_terms(visitor);
    }
}

struct FilteredWeight {
    inner: Box<dyn Weight>,
    filters: Vec<TermFilter>,
}

/// What one filter asks of one segment.
enum Need {
    Nothing,
    Postings(SegmentPostings),
    Excluded(SegmentPostings),
    /// No document of the segment passes.
    Impossible,
}

fn need(reader: &SegmentReader, filter: &TermFilter) -> tantivy::Result<Need> {
    let postings = reader.inverted_index(filter.term.field())?;
    let held = postings.doc_freq(&filter.term)?;
    if held == reader.max_doc() {
        return Ok(Need::Nothing);
    }
    if let Some(complement) = &filter.complement
        && postings.doc_freq(complement)? < held
    {
        return Ok(
            match postings.read_postings(complement, IndexRecordOption::Basic)? {
                Some(excluded) => Need::Excluded(excluded),
                None => Need::Nothing,
            },
        );
    }
    Ok(
        match postings.read_postings(&filter.term, IndexRecordOption::Basic)? {
            Some(required) => Need::Postings(required),
            None => Need::Impossible,
        },
    )
}

impl Weight for FilteredWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let mut required: Vec<Box<dyn Scorer>> = Vec::new();
        let mut excluded: Vec<SegmentPostings> = Vec::new();
        for filter in &self.filters {
            match need(reader, filter)? {
                Need::Nothing => {}
                Need::Postings(postings) => {
                    required.push(Box::new(ConstScorer::new(postings, 0.0)))
                }
                Need::Excluded(postings) => excluded.push(postings),
                Need::Impossible => return Ok(Box::new(EmptyScorer)),
            }
        }
        let inner = self.inner.scorer(reader, boost)?;
        let scorer = if required.is_empty() {
            inner
        } else {
            required.insert(0, inner);
            intersect_scorers(required, reader.num_docs())
        };
        Ok(if excluded.is_empty() {
            scorer
        } else {
            Box::new(Exclude::new(scorer, excluded))
        })
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        // The filters add nothing to a score: a passing document's explanation is the inner
        // query's.
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) != doc {
            return Err(tantivy::TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            )));
        }
        self.inner.explain(reader, doc)
    }
}
