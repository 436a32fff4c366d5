//! The index schema: one tantivy document per event and one per entity, told apart by `doc_type`.
//!
//! How the query syntax reaches properties and traits: the searchable string values of a
//! document go into `attrs`, a JSON field, and into `text`, a plain text field. The query parser
//! has `text` and `attrs` as default fields, so a bare term searches `text`, and a field name the
//! schema does not know (`plan:trial`, `address.city:paris`) falls back to the JSON default
//! field, `attrs.plan`. Schema fields win over properties of the same name: `name:export` is
//! the event name; a property called `name` is still reachable as `attrs.name:...`.
//!
//! Every text field uses tantivy's `default` tokenizer (split on anything that is not a letter
//! or digit, lowercase, drop tokens over 40 bytes), so `name:export` matches `export_csv`.
//! `tenant`, `kind`, `doc_type`, `stage` and `band` are single raw tokens (exact,
//! case-sensitive). Fast (columnar) fields are only those read per match: `timestamp` for the
//! time sorts, `name`, `stage` and `band` for the facets. `key` is indexed only (deletes and
//! entity look-ups), never read back.
//!
//! Changing anything here changes the schema an existing index was made with: the index is then
//! deleted and rebuilt from the log when it is opened (see `index.rs`).

use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, JsonObjectOptions, STORED, STRING, Schema,
    TextFieldIndexing, TextOptions,
};

pub(crate) const EVENT: &str = "event";
pub(crate) const ENTITY: &str = "entity";

/// The fields of the schema, resolved once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    /// The tenant's partition: its id, or `<tenant>/<generation>` (`partition.rs`).
    pub tenant: Field,
    pub doc_type: Field,
    /// Entity documents only, unique: `n#<partition>#<entity>` (what an update deletes by). Events
    /// are never updated (the commit payload, not a key, keeps them from being indexed twice),
    /// so they have none: a term per event would be the largest part of the term dictionary.
    pub key: Field,
    pub id: Field,
    pub name: Field,
    pub kind: Field,
    pub entity: Field,
    pub timestamp: Field,
    pub text: Field,
    pub attrs: Field,
    pub stage: Field,
    pub band: Field,
    /// Entity documents only: the entity's whole state as JSON, read back to update it in place.
    pub state: Field,
}

fn text_indexing() -> TextFieldIndexing {
    TextFieldIndexing::default()
        .set_tokenizer("default")
        .set_index_option(IndexRecordOption::WithFreqsAndPositions)
}

pub(crate) fn build() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let searchable_text = TextOptions::default().set_indexing_options(text_indexing());
    // With frequencies, though each document has one tenant and searches use it as a filter
    // (`query.rs`): indexes made when it was a scored clause need no rebuild this way.
    let tenant = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        tenant: builder.add_text_field("tenant", tenant),
        doc_type: builder.add_text_field("doc_type", STRING | STORED),
        key: builder.add_text_field("key", STRING),
        id: builder.add_text_field("id", STORED),
        // Tokenized for search, and a raw fast column for the per-name facet counts.
        name: builder.add_text_field("name", searchable_text.clone().set_stored().set_fast("raw")),
        kind: builder.add_text_field("kind", STRING | STORED),
        entity: builder.add_text_field("entity", searchable_text.clone().set_stored()),
        timestamp: builder.add_i64_field("timestamp", INDEXED | FAST | STORED),
        text: builder.add_text_field("text", searchable_text.set_stored()),
        attrs: builder.add_json_field(
            "attrs",
            JsonObjectOptions::default().set_indexing_options(text_indexing()),
        ),
        stage: builder.add_text_field("stage", STRING | FAST | STORED),
        band: builder.add_text_field("band", STRING | FAST | STORED),
        state: builder.add_text_field("state", STORED),
    };
    (builder.build(), fields)
}

pub(crate) fn entity_key(partition: &str, entity: &str) -> String {
    format!("n#{partition}#{entity}")
}
