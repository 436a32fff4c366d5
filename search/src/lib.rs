//! Shoal's full-text search projection: a tantivy index over the events and entities of every
//! tenant, searched one tenant at a time.
//!
//! - `schema.rs`: the fields, and how properties map to them (a JSON field for `plan:trial`);
//! - `document.rs`: events and entities as documents; which values are searchable;
//! - `partition.rs`: per-tenant searchable fields, and rebuilding a tenant's documents beside
//!   the live ones when they change;
//! - `index.rs`: [`SearchIndex`], the index on disk, its reader and committed status;
//! - `batch.rs`: operations handed to tantivy's writer thread 1,024 at a time;
//! - `indexer.rs`: [`Indexer`], the one writer, and why a replay never duplicates anything
//!   (the log positions are the commit payload, committed with the documents);
//! - `history.rs`: seeding a new index from the archive, for logs that forget (Kinesis);
//! - `worker.rs`: [`SearchWorker`], the task that follows the log and commits in batches;
//! - `query.rs`: [`SearchIndex::search`], tenant-filtered search with facets and snippets;
//! - `syntax.rs`: the query language and error positions.
//!
//! The index is a projection like the others (see DESIGN.md), except that its checkpoint is in
//! the index rather than in the `control` table: it can be deleted and rebuilt from the log.

mod batch;
mod document;
mod error;
mod filter;
mod history;
mod index;
mod indexer;
mod partition;
mod query;
mod schema;
mod syntax;
mod worker;

pub use document::SearchFields;
pub use error::{Error, Result};
pub use history::{History, SEED_SEGMENTS};
pub use index::{IndexStatus, SearchIndex, SeedStatus, ShardProgress, ShardStatus};
pub use indexer::Indexer;
pub use partition::{PartitionStatus, RebuildStatus, TenantFields};
pub use query::{
    DocType, FacetCount, FacetField, Facets, Hit, MAX_LIMIT, MAX_WINDOW, SearchRequest,
    SearchResponse, SortBy,
};
pub use worker::{SearchConfig, SearchWorker};

#[cfg(test)]
mod tests;
