//! The query string: tantivy's query language, with errors that say where.
//!
//! Supported: terms (`error export`, all required), phrases (`"export csv"`), boolean
//! operators (`a OR b`, `a AND NOT b`, `-b`, `+a`, parentheses), fields (`name:export`,
//! `kind:track`, `plan:trial` for a property or trait, `address.city:paris` for a nested one),
//! ranges (`timestamp:[1700000000000 TO *]`) and prefixes (`exp*`).
//!
//! Syntax errors come from tantivy's lenient grammar, which reports a byte offset; errors found
//! after parsing (a value that does not fit its field) carry no position, so the position is
//! that of the field's name in the query when it can be found, else 0. Positions are returned
//! in characters, which is what a client can point at.

use crate::{Error, Result};
use tantivy::query::{Query, QueryParser, QueryParserError};
use tantivy::query_grammar::{self, Occur, UserInputAst, UserInputLeaf};

/// The schema's field for every searchable string of a document (see `schema.rs`).
const TEXT_FIELD: &str = "text";

pub(crate) fn parse(parser: &QueryParser, query: &str) -> Result<Box<dyn Query>> {
    let (ast, errors) = query_grammar::parse_query_lenient(query);
    if let Some(error) = errors.first() {
        return Err(Error::Syntax {
            position: char_offset(query, error.pos),
            message: error.message.clone(),
        });
    }
    // The lenient grammar repairs a few things silently (a dangling `AND`); the strict one
    // refuses them, without saying where.
    if query_grammar::parse_query(query).is_err() {
        return Err(Error::Syntax {
            position: guess_position(query),
            message: "the query ends with an operator or is otherwise incomplete".into(),
        });
    }
    parser
        .build_query_from_user_input_ast(with_positive(splice_exclusions(text_by_default(ast))))
        .map_err(|error| semantic(query, error))
}

/// tantivy reads `a AND NOT b` as `a AND (NOT b)`, where `(NOT b)` alone matches nothing;
/// users mean `a -b`, as in Lucene. A required sub-clause made only of exclusions is therefore
/// spliced into its parent.
fn splice_exclusions(ast: UserInputAst) -> UserInputAst {
    match ast {
        UserInputAst::Clause(children) => {
            let mut spliced = Vec::with_capacity(children.len());
            for (occur, child) in children {
                match (occur, splice_exclusions(child)) {
                    (None | Some(Occur::Must), UserInputAst::Clause(inner))
                        if only_exclusions(&inner) =>
                    {
                        spliced.extend(inner)
                    }
                    (occur, child) => spliced.push((occur, child)),
                }
            }
            UserInputAst::Clause(spliced)
        }
        UserInputAst::Boost(inner, boost) => {
            UserInputAst::Boost(Box::new(splice_exclusions(*inner)), boost)
        }
        leaf @ UserInputAst::Leaf(_) => leaf,
    }
}

/// Terms without a field search `text` only. The parser's default fields are `text` and
/// `attrs` (the JSON field, so that `plan:trial` finds `attrs.plan`), which would make each bare
/// term a union of `text:term` and `attrs:term`; the latter, a JSON term without a path, never
/// matches (every value of `attrs` is under a property name), and the union hides the plain
/// term clauses from tantivy's intersection and pruning.
fn text_by_default(ast: UserInputAst) -> UserInputAst {
    match ast {
        UserInputAst::Clause(children) => UserInputAst::Clause(
            children
                .into_iter()
                .map(|(occur, child)| (occur, text_by_default(child)))
                .collect(),
        ),
        UserInputAst::Boost(inner, boost) => {
            UserInputAst::Boost(Box::new(text_by_default(*inner)), boost)
        }
        UserInputAst::Leaf(leaf) => UserInputAst::Leaf(Box::new(match *leaf {
            UserInputLeaf::Literal(mut literal) => {
                literal
                    .field_name
                    .get_or_insert_with(|| TEXT_FIELD.to_owned());
                UserInputLeaf::Literal(literal)
            }
            other => other,
        })),
    }
}

/// A query of exclusions only (`-churn`) means "everything but"; tantivy wants the
/// "everything" said.
fn with_positive(ast: UserInputAst) -> UserInputAst {
    match ast {
        UserInputAst::Clause(mut children) if only_exclusions(&children) => {
            children.insert(
                0,
                (
                    Some(Occur::Must),
                    UserInputAst::Leaf(Box::new(UserInputLeaf::All)),
                ),
            );
            UserInputAst::Clause(children)
        }
        other => other,
    }
}

fn only_exclusions(children: &[(Option<Occur>, UserInputAst)]) -> bool {
    !children.is_empty()
        && children
            .iter()
            .all(|(occur, _)| *occur == Some(Occur::MustNot))
}

/// Where a query the strict grammar refuses most likely goes wrong: a trailing operator.
fn guess_position(query: &str) -> usize {
    let trimmed = query.trim_end();
    for operator in [" AND", " OR", " NOT", "+", "-", ":"] {
        if trimmed.ends_with(operator) {
            let start = trimmed.len() - operator.trim_start().len();
            return char_offset(query, start);
        }
    }
    char_offset(query, trimmed.len())
}

fn semantic(query: &str, error: QueryParserError) -> Error {
    let field = match &error {
        QueryParserError::FieldDoesNotExist(field)
        | QueryParserError::FieldNotIndexed(field)
        | QueryParserError::FieldDoesNotHavePositionsIndexed(field) => Some(field.as_str()),
        // Every typed (non-text) field of the schema is `timestamp`.
        QueryParserError::ExpectedInt(_)
        | QueryParserError::ExpectedFloat(_)
        | QueryParserError::ExpectedBool(_)
        | QueryParserError::DateFormatError(_)
        | QueryParserError::ExpectedBase64(_)
        | QueryParserError::RangeMustNotHavePhrase => Some("timestamp"),
        _ => None,
    };
    let position = field
        .and_then(|field| query.find(&format!("{field}:")))
        .map_or(0, |byte| char_offset(query, byte));
    Error::Syntax {
        position,
        message: error.to_string(),
    }
}

/// The character index of byte offset `byte` (clamped into the string).
fn char_offset(text: &str, byte: usize) -> usize {
    let mut end = byte.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_characters() {
        assert_eq!(char_offset("héllo", 3), 2);
        assert_eq!(char_offset("héllo", 2), 1);
        assert_eq!(char_offset("abc", 99), 3);
    }
}
