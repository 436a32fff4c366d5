//! Positions in the log.
//!
//! A log record holds a batch of events (the embedded log's block, a Kinesis record packing many
//! events), so an event's position is the record's [`Sequence`] plus its index in the record.
//! Kinesis sequence numbers are decimal integers of up to 128 digits that do not fit any machine
//! integer, so a `Sequence` keeps the decimal digits and compares them as a big integer: more
//! digits is larger, equal length compares digit by digit. The embedded log uses the record's
//! byte offset in the shard, which fits the same type.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use crate::keys::push_padded;

/// A shard of the log, as the backend names it (`"0"`, or `"shardId-000000000001"`).
pub type ShardId = String;

/// A record's sequence number: a non-negative integer of any size, normalised (no leading
/// zeros, `"0"` for zero).
///
/// Shared (`Arc`), because every event of a record carries its record's sequence: an append of
/// 1000 events stored in a few blocks answers 1000 positions, and cloning must not allocate.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sequence(Arc<str>);

impl Sequence {
    pub fn from_u64(value: u64) -> Self {
        Sequence(Arc::from(value.to_string()))
    }

    /// Parses decimal digits, dropping leading zeros.
    pub fn parse(text: &str) -> crate::Result<Self> {
        if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(crate::Error::InvalidSequence(text.to_owned()));
        }
        let trimmed = text.trim_start_matches('0');
        let digits = if trimmed.is_empty() { "0" } else { trimmed };
        Ok(Sequence(digits.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value as a `u64`, when it fits (always, for the embedded log).
    pub fn to_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }
}

impl Ord for Sequence {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.as_bytes().cmp(other.0.as_bytes()))
    }
}

impl PartialOrd for Sequence {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl TryFrom<String> for Sequence {
    type Error = crate::Error;

    fn try_from(text: String) -> crate::Result<Self> {
        Sequence::parse(&text)
    }
}

impl From<Sequence> for String {
    fn from(sequence: Sequence) -> String {
        sequence.0.as_ref().to_owned()
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sequence({})", self.0)
    }
}

/// Where one event sits in a shard: its record's sequence and its index inside the record.
/// Ordered by sequence, then index. Text form: `<sequence>:<index>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub sequence: Sequence,
    pub index: u32,
}

impl Position {
    pub fn new(sequence: Sequence, index: u32) -> Self {
        Position { sequence, index }
    }

    /// A text form whose byte order is the position order: the digit count (3 digits), the
    /// digits, and the index padded to 10 digits. DynamoDB compares strings byte-wise, so
    /// conditions such as "last applied position < this one" need this form, never the plain one.
    pub fn sortable(&self) -> String {
        // Built by hand, not with `format!`: every projection makes one per event.
        let digits = self.sequence.as_str();
        let mut text = String::with_capacity(3 + digits.len() + 1 + 10);
        push_padded(&mut text, digits.len() as u64, 3);
        text.push_str(digits);
        text.push(':');
        push_padded(&mut text, u64::from(self.index), 10);
        text
    }

    pub fn parse(text: &str) -> crate::Result<Self> {
        let invalid = || crate::Error::InvalidPosition(text.to_owned());
        let (sequence, index) = text.split_once(':').ok_or_else(invalid)?;
        Ok(Position {
            sequence: Sequence::parse(sequence).map_err(|_| invalid())?,
            index: index.parse().map_err(|_| invalid())?,
        })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Plain string writes: the archive writes one per event.
        f.write_str(self.sequence.as_str())?;
        f.write_str(":")?;
        f.write_str(itoa::Buffer::new().format(self.index))
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compares_as_big_integers_not_strings() {
        let small = Sequence::parse("9").unwrap();
        let large = Sequence::parse("10").unwrap();
        assert!(small < large, "as strings \"9\" > \"10\"");
        let kinesis_a =
            Sequence::parse("49590338271490256608559692538361571095921575989136588898").unwrap();
        let kinesis_b =
            Sequence::parse("49590338271490256608559692540925702759324208523137515618").unwrap();
        assert!(kinesis_a < kinesis_b);
        assert_eq!(Sequence::parse("007").unwrap(), Sequence::from_u64(7));
        assert_eq!(Sequence::parse("000").unwrap(), Sequence::from_u64(0));
    }

    #[test]
    fn rejects_non_digits() {
        assert!(Sequence::parse("").is_err());
        assert!(Sequence::parse("-1").is_err());
        assert!(Sequence::parse("1e5").is_err());
        assert!(Position::parse("12").is_err());
        assert!(Position::parse("12:x").is_err());
    }

    #[test]
    fn position_text_round_trip() {
        let position = Position::new(Sequence::from_u64(4096), 17);
        assert_eq!(position.to_string(), "4096:17");
        assert_eq!(Position::parse("4096:17").unwrap(), position);
    }

    proptest! {
        #[test]
        fn order_matches_u128_order(a in any::<u128>(), b in any::<u128>()) {
            let left = Sequence::parse(&a.to_string()).unwrap();
            let right = Sequence::parse(&b.to_string()).unwrap();
            prop_assert_eq!(left.cmp(&right), a.cmp(&b));
        }

        #[test]
        fn sortable_text_orders_like_positions(a in any::<u128>(), i in any::<u32>(), b in any::<u128>(), j in any::<u32>()) {
            let left = Position::new(Sequence::parse(&a.to_string()).unwrap(), i);
            let right = Position::new(Sequence::parse(&b.to_string()).unwrap(), j);
            prop_assert_eq!(left.sortable().cmp(&right.sortable()), left.cmp(&right));
        }

        #[test]
        fn texts_keep_their_format(a in any::<u128>(), i in any::<u32>()) {
            // The sortable text is stored in every read-model item: it must never change.
            let position = Position::new(Sequence::parse(&a.to_string()).unwrap(), i);
            prop_assert_eq!(position.sortable(), format!("{:03}{}:{:010}", a.to_string().len(), a, i));
            prop_assert_eq!(position.to_string(), format!("{a}:{i}"));
        }

        #[test]
        fn position_order_is_sequence_then_index(a in any::<u64>(), i in any::<u32>(), b in any::<u64>(), j in any::<u32>()) {
            let left = Position::new(Sequence::from_u64(a), i);
            let right = Position::new(Sequence::from_u64(b), j);
            prop_assert_eq!(left.cmp(&right), (a, i).cmp(&(b, j)));
        }
    }
}
