//! The crate's one error: a document that is not valid, with the field at fault and, when it
//! can be found, its line and column (1-based).

use serde::Serialize;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Error {
    /// Dotted path of the field at fault (`conditions.logins.event_count.days`; list items by
    /// index: `stages.2.name`), or `document` for the whole text.
    pub field: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

impl std::error::Error for Error {}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line}")?;
            if let Some(column) = self.column {
                write!(f, ", column {column}")?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            field: field.into(),
            message: message.into(),
            line: None,
            column: None,
        }
    }

    pub(crate) fn at(mut self, line: Option<usize>, column: Option<usize>) -> Error {
        self.line = line;
        self.column = column;
        self
    }

    /// Fills in the line and column of `field` in `text` when the parser did not know them
    /// (errors found after parsing). Best effort: it follows the path's keys in order through
    /// the text, which finds the right place in the documents people write.
    pub(crate) fn locate(self, text: &str) -> Error {
        if self.line.is_some() {
            return self;
        }
        match find_path(text, &self.field) {
            Some(offset) => {
                let before = &text[..offset];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
                self.at(Some(line), Some(column))
            }
            None => self,
        }
    }
}

/// Byte offset of the last key of `path` that can be followed through `text`.
fn find_path(text: &str, path: &str) -> Option<usize> {
    let segments: Vec<&str> = path.split('.').collect();
    let mut offset = 0;
    let mut found = None;
    let mut skip = 0;
    for segment in segments {
        if let Ok(index) = segment.parse::<usize>() {
            // A list item: the item's keys come later; skip the earlier items' copies of the
            // next key.
            skip = index;
            continue;
        }
        let mut from = offset;
        let mut hit = None;
        for _ in 0..=skip {
            hit = find_key(text, from, segment);
            match hit {
                Some(at) => from = at + segment.len(),
                None => break,
            }
        }
        skip = 0;
        match hit {
            Some(at) => {
                offset = at + segment.len();
                found = Some(at);
            }
            None => break,
        }
    }
    found
}

/// The next `key` at or after `from` that is used as a key: optionally quoted, then a colon.
fn find_key(text: &str, from: usize, key: &str) -> Option<usize> {
    let mut start = from;
    while let Some(relative) = text.get(start..)?.find(key) {
        let at = start + relative;
        let before = text[..at].chars().next_back();
        let after = text[at + key.len()..]
            .trim_start_matches('"')
            .trim_start_matches('\'');
        let boundary = !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-');
        if boundary && after.trim_start_matches([' ', '\t']).starts_with(':') {
            return Some(at);
        }
        start = at + key.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_keys_in_yaml() {
        let text = "conditions:\n  a:\n    event_count: {event: x, days: 0}\n  b:\n    event_count:\n      days: 0\n";
        let error = Error::invalid("conditions.b.event_count.days", "bad").locate(text);
        assert_eq!((error.line, error.column), (Some(6), Some(7)));
    }

    #[test]
    fn locates_list_items_by_index() {
        let text = "stages:\n  - name: a\n  - name: b\n";
        let error = Error::invalid("stages.1.name", "bad").locate(text);
        assert_eq!(error.line, Some(3));
    }

    #[test]
    fn locates_quoted_json_keys() {
        let text = "{\"conditions\": {\"x\": {\"days\": 1}}}";
        let error = Error::invalid("conditions.x.days", "bad").locate(text);
        assert_eq!((error.line, error.column), (Some(1), Some(24)));
    }
}
