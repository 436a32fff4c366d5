//! Operations on their way to tantivy's one writer thread, handed over in batches.

use crate::Result;
use tantivy::indexer::UserOperation;
use tantivy::{IndexWriter, TantivyDocument, Term};

/// Operations handed to tantivy's writer thread at a time. One at a time (`add_document`)
/// costs a channel operation each and, once the channel is full, a wake-up of this thread per
/// document the writer thread takes: a sixth of the CPU of indexing 10 M events (BENCHMARKS.md).
const WRITE_BATCH: usize = 1024;

/// Operations on their way to the writer, in order (a delete applies to the documents before
/// it, as with `delete_term`: tantivy stamps a batch's operations in order).
#[derive(Default)]
pub(crate) struct Batch(Vec<UserOperation>);

impl Batch {
    pub(crate) fn add(&mut self, writer: &IndexWriter, doc: TantivyDocument) -> Result<()> {
        self.push(writer, UserOperation::Add(doc))
    }

    /// Deletes the documents holding `term` that were added before this.
    pub(crate) fn delete(&mut self, writer: &IndexWriter, term: Term) -> Result<()> {
        self.push(writer, UserOperation::Delete(term))
    }

    fn push(&mut self, writer: &IndexWriter, operation: UserOperation) -> Result<()> {
        self.0.push(operation);
        if self.0.len() >= WRITE_BATCH {
            self.flush(writer)?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self, writer: &IndexWriter) -> Result<()> {
        if !self.0.is_empty() {
            writer.run(self.0.drain(..))?;
        }
        Ok(())
    }
}
