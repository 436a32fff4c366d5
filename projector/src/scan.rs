//! Walking every item of a query, page by page (the cursor loop every full read needs).

use crate::Result;
use shoal_storage::{Item, Key, Query, Table, TableName};

/// Calls `visit` for every item `query` matches, in sort-key order.
pub(crate) async fn each_item(
    tables: &dyn Table,
    table: TableName,
    mut query: Query,
    mut visit: impl FnMut(Key, Item) -> Result<()>,
) -> Result<()> {
    loop {
        let page = tables.query(table, &query).await?;
        for (key, item) in page.items {
            visit(key, item)?;
        }
        match page.next {
            Some(next) => query = query.after(Some(next)),
            None => return Ok(()),
        }
    }
}
