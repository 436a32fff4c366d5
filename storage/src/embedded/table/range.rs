//! From a [`Query`] to the sort-key interval one page scans, and from the scanned items to a
//! [`Page`]: shared by every backend that scans an ordered map itself.
//!
//! Invariants:
//! - sort keys order by their UTF-8 bytes (which is also `String`'s and `char`'s order);
//! - the lower bound is always bounded (the empty string is the least key); an unbounded upper
//!   bound means "to the end of the partition", which a backend expresses as the key just before
//!   the next partition: `(pk + "\0", "")` is the least key of any partition after `pk`;
//! - a returned interval is never empty or inverted (an empty one is `None`), so it is safe to
//!   hand to `BTreeMap::range`, which panics on those;
//! - a page is full only when one more item exists: `next` is `None` on the last page.

use super::cursor;
use crate::{Error, Item, Key, Page, Query, Result, SortRange};
use std::ops::Bound;

/// The sort keys one page may return, in ascending order whatever the query's direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SortBounds {
    /// Never `Unbounded`.
    pub lower: Bound<String>,
    /// `Unbounded`: to the end of the partition.
    pub upper: Bound<String>,
}

/// The least key of every partition after `pk`, in (pk, sk) order.
pub(crate) fn partition_end(pk: &str) -> String {
    format!("{pk}\0")
}

/// The interval of the page `query` asks for, or `None` when it is empty.
pub(crate) fn page_bounds(query: &Query) -> Result<Option<SortBounds>> {
    if query.limit == 0 {
        return Err(Error::InvalidArgument(
            "a query limit is at least 1".to_owned(),
        ));
    }
    let least = || Bound::Included(String::new());
    let (lower, upper) = match &query.range {
        SortRange::All => (least(), Bound::Unbounded),
        SortRange::Prefix(prefix) => (
            Bound::Included(prefix.clone()),
            prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded),
        ),
        SortRange::Between(from, to) => {
            if from > to {
                // DynamoDB refuses BETWEEN with its bounds the wrong way round.
                return Err(Error::InvalidArgument(format!(
                    "a sort key range from {from:?} to {to:?} is inverted"
                )));
            }
            (Bound::Included(from.clone()), Bound::Included(to.clone()))
        }
        SortRange::From(from) => (Bound::Included(from.clone()), Bound::Unbounded),
        SortRange::To(to) => (least(), Bound::Included(to.clone())),
    };
    let (lower, upper) = match &query.cursor {
        None => (lower, upper),
        Some(text) => {
            let after = cursor::decode(text, &query.pk)?;
            if query.reverse {
                (lower, upper_before(upper, after))
            } else {
                (lower_after(lower, after), upper)
            }
        }
    };
    if is_empty(&lower, &upper) {
        return Ok(None);
    }
    Ok(Some(SortBounds { lower, upper }))
}

/// At most `limit` items of partition `pk` from `entries` (already in the query's order and
/// within its bounds), reading one more to know whether another page follows.
pub(crate) fn paginate<I>(pk: &str, limit: usize, entries: I) -> Result<Page>
where
    I: IntoIterator<Item = Result<(String, Item)>>,
{
    let mut pager = Pager::new(pk, limit);
    for entry in entries {
        if pager.is_full() {
            return Ok(pager.finish_before_more());
        }
        let (sk, item) = entry?;
        pager.push(sk, item);
    }
    Ok(pager.finish())
}

/// A page filled one scanned entry at a time, for a backend that scans in steps (the embedded
/// one scans the first rows on the caller's thread and may finish on the blocking pool).
pub(crate) struct Pager {
    pk: String,
    limit: usize,
    items: Vec<(Key, Item)>,
}

impl Pager {
    pub(crate) fn new(pk: &str, limit: usize) -> Pager {
        Pager {
            pk: pk.to_owned(),
            limit,
            items: Vec::with_capacity(limit.min(64)),
        }
    }

    /// Holds `limit` items: the next entry, if any, only says that another page follows.
    pub(crate) fn is_full(&self) -> bool {
        self.items.len() >= self.limit
    }

    pub(crate) fn push(&mut self, sk: String, item: Item) {
        debug_assert!(!self.is_full(), "an entry pushed past the page's limit");
        self.items.push((Key::new(self.pk.as_str(), sk), item));
    }

    /// The page when the scan ended.
    pub(crate) fn finish(self) -> Page {
        Page {
            items: self.items,
            next: None,
        }
    }

    /// The page when another entry follows it: its cursor is the last item's sort key.
    pub(crate) fn finish_before_more(self) -> Page {
        let next = self
            .items
            .last()
            .map(|(last, _)| cursor::encode(&self.pk, &last.sk));
        Page {
            items: self.items,
            next,
        }
    }
}

/// The smallest string greater than every string starting with `prefix`, when there is one: the
/// prefix with its last character replaced by the next one (dropping trailing `char::MAX`s).
/// `None` for an empty prefix or one of only `char::MAX`: nothing bounds it but the partition.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = next_char(last) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The next Unicode scalar value (UTF-8 byte order is scalar order, surrogates skipped).
fn next_char(current: char) -> Option<char> {
    match current {
        '\u{D7FF}' => Some('\u{E000}'),
        char::MAX => None,
        _ => char::from_u32(u32::from(current) + 1),
    }
}

/// The tighter of a lower bound and "strictly after `after`".
fn lower_after(lower: Bound<String>, after: String) -> Bound<String> {
    match lower {
        Bound::Included(from) if from > after => Bound::Included(from),
        Bound::Excluded(from) if from >= after => Bound::Excluded(from),
        _ => Bound::Excluded(after),
    }
}

/// The tighter of an upper bound and "strictly before `before`".
fn upper_before(upper: Bound<String>, before: String) -> Bound<String> {
    match upper {
        Bound::Included(to) if to < before => Bound::Included(to),
        Bound::Excluded(to) if to <= before => Bound::Excluded(to),
        _ => Bound::Excluded(before),
    }
}

fn is_empty(lower: &Bound<String>, upper: &Bound<String>) -> bool {
    let (from, from_included) = match lower {
        Bound::Included(from) => (from, true),
        Bound::Excluded(from) => (from, false),
        Bound::Unbounded => return false,
    };
    let (to, to_included) = match upper {
        Bound::Included(to) => (to, true),
        Bound::Excluded(to) => (to, false),
        Bound::Unbounded => return false,
    };
    from > to || (from == to && !(from_included && to_included))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn included(text: &str) -> Bound<String> {
        Bound::Included(text.to_owned())
    }

    fn excluded(text: &str) -> Bound<String> {
        Bound::Excluded(text.to_owned())
    }

    fn bounds(query: Query) -> Option<SortBounds> {
        page_bounds(&query).expect("valid query")
    }

    #[test]
    fn prefix_end_is_the_next_string_after_the_prefix() {
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a#").as_deref(), Some("a$"));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        assert_eq!(prefix_end(""), None);
    }

    #[test]
    fn ranges_map_to_bounds() {
        let of = |range| bounds(Query::partition("p").range(range));
        let unbounded = Bound::Unbounded;
        assert_eq!(
            of(SortRange::All),
            Some(SortBounds {
                lower: included(""),
                upper: unbounded.clone()
            })
        );
        assert_eq!(
            of(SortRange::Prefix("b".into())),
            Some(SortBounds {
                lower: included("b"),
                upper: excluded("c")
            })
        );
        assert_eq!(
            of(SortRange::Between("a".into(), "b".into())),
            Some(SortBounds {
                lower: included("a"),
                upper: included("b")
            })
        );
        assert_eq!(
            of(SortRange::From("b".into())),
            Some(SortBounds {
                lower: included("b"),
                upper: unbounded
            })
        );
        assert_eq!(
            of(SortRange::To("b".into())),
            Some(SortBounds {
                lower: included(""),
                upper: included("b")
            })
        );
        let inverted = Query::partition("p").range(SortRange::Between("b".into(), "a".into()));
        assert!(matches!(
            page_bounds(&inverted),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn cursor_narrows_the_bound_in_the_query_direction() {
        let after_b = Some(cursor::encode("p", "b"));
        let forward = Query::partition("p").after(after_b.clone());
        assert_eq!(
            bounds(forward).map(|found| found.lower),
            Some(excluded("b"))
        );
        let reverse = Query::partition("p").reverse().after(after_b.clone());
        assert_eq!(
            bounds(reverse).map(|found| found.upper),
            Some(excluded("b"))
        );
        // A cursor outside the range leaves the range's own bound.
        let within = Query::partition("p")
            .range(SortRange::From("c".into()))
            .after(after_b.clone());
        assert_eq!(bounds(within).map(|found| found.lower), Some(included("c")));
        // A cursor at the range's end leaves nothing.
        let done = Query::partition("p")
            .range(SortRange::To("b".into()))
            .after(after_b.clone());
        assert_eq!(bounds(done), None);
        let done_reverse = Query::partition("p")
            .range(SortRange::From("b".into()))
            .reverse()
            .after(after_b);
        assert_eq!(bounds(done_reverse), None);
        let other_partition = Query::partition("q").after(Some(cursor::encode("p", "b")));
        assert!(matches!(
            page_bounds(&other_partition),
            Err(Error::InvalidCursor)
        ));
    }

    #[test]
    fn zero_limit_is_invalid() {
        let mut query = Query::partition("p");
        query.limit = 0;
        assert!(matches!(
            page_bounds(&query),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn pages_look_one_item_ahead() {
        let entries = |count: usize| {
            (0..count)
                .map(|index| Ok((format!("{index:02}"), BTreeMap::new())))
                .collect::<Vec<_>>()
        };
        let full = paginate("p", 3, entries(4)).expect("page");
        assert_eq!(full.items.len(), 3);
        assert_eq!(full.next, Some(cursor::encode("p", "02")));
        let last = paginate("p", 3, entries(3)).expect("page");
        assert_eq!(last.items.len(), 3);
        assert_eq!(last.next, None);
        let empty = paginate("p", 3, entries(0)).expect("page");
        assert_eq!(empty, Page::default());
    }
}
